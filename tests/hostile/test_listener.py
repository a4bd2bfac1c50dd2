#!/usr/bin/env python3
"""test_listener.py - hostile senders against the MLLP listener (issue 13,
items 5-9).  Each test starts the real engine on 127.0.0.1 and plays one
abuse, then checks the engine kept its promises: ACKed messages delivered,
slots freed, memory bounded, logs bounded, every frame answered.
Usage: test_listener.py CADUCEUS_BINARY [TEST]"""
import os
import re
import resource
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from engine_util import (SB, EB, Engine, FakeReceiver, Reply, adt, ack, connect,  # noqa: E402
                         field, fields, frame, free_port, rss_kib, run_tests, send_recv,
                         wait_for)


def files_dest(tmp, extra=""):
    return ("  files:\n    type: file\n    dir: %s/out\n    name: \"${MSH-10}.hl7\"\n%s"
            % (tmp, extra))


def channel(port, extra=""):
    return "  adt:\n    listen: [ \"127.0.0.1:%d\" ]\n%s    to: [ files ]\n" % (port, extra)


def start(binary, tmp, chan_extra="", dest_extra="", engine_extra="", log_level="info",
          preexec_fn=None):
    port = free_port()
    eng = Engine(binary, tmp, channel(port, chan_extra), files_dest(tmp, dest_extra),
                 engine_extra=engine_extra, log_level=log_level)
    eng.start([port], preexec_fn=preexec_fn)
    return eng, port


def closed_by_peer(sock, timeout):
    """True when the engine closes `sock` within `timeout` seconds (EOF or
    reset); False when it is still open then."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class Frames:
    """Reads MLLP frames from a socket, keeping what follows a frame for the
    next call (answers to pipelined frames may come in one read)."""

    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def next(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\x1c\x0d")
            if i >= 0:
                j = self.buf.find(b"\x0b")
                assert j == 0, "bytes before a start block: %r" % self.buf[:40]
                out, self.buf = self.buf[1:i], self.buf[i + 2:]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame; got %r" % self.buf[:200])
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the engine; got %r" % self.buf[:200])
            self.buf += chunk


def stop_clean(eng):
    rc = eng.stop()
    assert rc == 0, "exit status %r\n%s" % (rc, eng.log()[-3000:])


def out_files(tmp):
    d = os.path.join(tmp, "out")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


# ---- item 5: descriptors ------------------------------------------------------

FD_LIMIT = 256


def low_fd_limit():
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def test_fd_limit_too_low_for_max_connections_refused_at_start(binary, tmp):
    """An explicit 4,096 connections cannot fit 256 descriptors: a clear
    error at start instead of ACKed messages dead-lettered later."""
    port = free_port()
    eng = Engine(binary, tmp, channel(port, "    max_connections: 4096\n"), files_dest(tmp))
    eng.start([], preexec_fn=low_fd_limit)
    try:
        rc = eng.proc.wait(10)
    except Exception:
        eng.kill()
        raise AssertionError("the engine started with max_connections 4096 and 256 descriptors")
    log = eng.log()
    assert rc == 1, (rc, log[-2000:])
    assert "event=start.fd_limit" in log and "max_connections" in log, log[-2000:]
    eng.kill()
    # `check` says the same before anything runs ...
    import subprocess
    r = subprocess.run([binary, "check", eng.conf], capture_output=True, text=True, timeout=10,
                       preexec_fn=low_fd_limit)
    assert r.returncode == 1 and "max_connections" in r.stderr, (r.returncode, r.stderr)
    # ... and passes once max_connections fits.
    eng.write_config(channel(port, "    max_connections: 100\n"), files_dest(tmp))
    r = subprocess.run([binary, "check", "-q", eng.conf], capture_output=True, text=True,
                       timeout=10, preexec_fn=low_fd_limit)
    assert r.returncode == 0, (r.returncode, r.stderr)


def test_default_max_connections_fits_the_fd_limit(binary, tmp):
    """Left unset, max_connections is what the limit fits (at most 4,096):
    the shipped default starts on a host with 256 descriptors, and `check`
    shows the number it took."""
    import subprocess
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp))
    r = subprocess.run([binary, "check", eng.conf], capture_output=True, text=True, timeout=10,
                       preexec_fn=low_fd_limit)
    assert r.returncode == 0, (r.returncode, r.stderr)
    m = re.search(r"max_connections (\d+)", r.stdout)
    assert m and 0 < int(m.group(1)) < FD_LIMIT - 64, r.stdout
    r = subprocess.run([binary, "check", eng.conf], capture_output=True, text=True, timeout=10)
    assert "max_connections 4096" in r.stdout, r.stdout  # the usual limit fits the default
    eng.start([port], preexec_fn=low_fd_limit)
    try:
        with connect(port) as s:
            reply = send_recv(s, adt("F1"))
            assert b"MSA|AA|F1" in reply, reply
    finally:
        assert eng.stop() == 0, eng.log()[-2000:]


def test_fd_reserve_keeps_acked_messages_deliverable(binary, tmp):
    """Started within the limit, then reloaded to max_connections 4096 (a
    reload does not re-check descriptors): a flood of connections must stop
    short of the reserve, and every ACKed message reaches the file."""
    retry = "    retry: {initial: 50ms, max: 100ms, attempts: 3}\n    on_failure: dead_letter\n"
    eng, port = start(binary, tmp, chan_extra="    max_connections: 150\n", dest_extra=retry,
                      preexec_fn=low_fd_limit)
    socks = []
    try:
        eng.write_config(channel(port, "    max_connections: 4096\n"), files_dest(tmp, retry))
        eng.signal(signal.SIGHUP)
        time.sleep(0.5)
        for _ in range(FD_LIMIT + 40):
            try:
                socks.append(connect(port, timeout=2))
            except OSError:
                break
        time.sleep(1.0)
        alive = [s for s in socks if not closed_by_peer(s, 0.01)]
        print("  %d connections opened, %d kept by the engine" % (len(socks), len(alive)))
        assert len(alive) < len(socks), "no connection was refused (%d open)" % len(socks)
        assert len(alive) >= 60, "only %d connections kept" % len(alive)
        acked = []
        for i, s in enumerate(alive[:60]):
            ctl = "FD%03d" % i
            try:
                a = send_recv(s, adt(ctl), timeout=10)
            except (OSError, TimeoutError):
                continue
            if field(fields(a), "MSA", 1) == "AA":
                acked.append(ctl)
        assert len(acked) >= 50, "only %d of 60 messages ACKed" % len(acked)
        # Delivered while the flood still holds every connection it got.
        want = sorted(c + ".hl7" for c in acked)
        wait_for(lambda: set(want) <= set(out_files(tmp)), timeout=10,
                 what="%d ACKed messages in the output directory" % len(want))
        for s in socks:
            s.close()
        socks = []
        log = eng.log()
        assert "reason=EMFILE" not in log, [x for x in log.splitlines() if "EMFILE" in x][:3]
        assert "event=msg.dead_letter" not in log and "event=dest.dead" not in log, log[-3000:]
        stop_clean(eng)
        dead = re.findall(r"event=stats.dest .*dead=(\d+)", eng.log())
        assert dead and dead[-1] == "0", eng.log()[-3000:]
        assert "fd_reserve" in eng.log() or "EMFILE" in eng.log(), eng.log()[-3000:]
    finally:
        for s in socks:
            s.close()
        eng.kill()


# ---- item 6: trickled garbage ---------------------------------------------------

def test_garbage_outside_frames_is_not_activity(binary, tmp):
    """Four connections trickling one garbage byte every 0.25 s hold all the
    slots; idle_timeout must free them so a real client gets in."""
    eng, port = start(binary, tmp, chan_extra="    max_connections: 4\n    idle_timeout: 1s\n"
                      "    frame_timeout: 30s\n")
    hogs = []
    try:
        wait_for(lambda: "event=conn.close" in eng.log(), what="start-up probe closed")
        hogs = [connect(port) for _ in range(4)]
        t0 = time.monotonic()
        closed = set()
        while time.monotonic() - t0 < 4 and len(closed) < len(hogs):
            for i, h in enumerate(hogs):
                if i in closed:
                    continue
                try:
                    h.sendall(b"x")
                except OSError:
                    closed.add(i)
            time.sleep(0.25)
            for i, h in enumerate(hogs):
                if i not in closed and closed_by_peer(h, 0.001):
                    closed.add(i)
        assert len(closed) == 4, "%d of 4 garbage tricklers still hold a slot after 4 s" % (
            4 - len(closed))
        with connect(port) as s:
            a = send_recv(s, adt("G6"))
            assert field(fields(a), "MSA", 2) == "G6"
        stop_clean(eng)
        assert eng.log().count("outcome=idle_timeout") >= 4, eng.log()[-2000:]
    finally:
        for h in hogs:
            h.close()
        eng.kill()


def test_frame_must_finish_within_frame_timeout_from_its_start(binary, tmp):
    """A start block every 0.25 s (each cuts the frame before it) must not
    restart the frame clock: closed at frame_timeout from the first one."""
    eng, port = start(binary, tmp, chan_extra="    idle_timeout: 60s\n    frame_timeout: 1s\n")
    try:
        with connect(port) as s:
            t0 = time.monotonic()
            closed_at = None
            while time.monotonic() - t0 < 4:
                try:
                    s.sendall(b"\x0bMSH|")
                except OSError:
                    closed_at = time.monotonic() - t0
                    break
                if closed_by_peer(s, 0.25):
                    closed_at = time.monotonic() - t0
                    break
            assert closed_at is not None, "still open after 4 s of restarted frames"
            assert closed_at < 2.5, "closed only after %.1fs" % closed_at
        stop_clean(eng)
        assert "outcome=frame_timeout" in eng.log(), eng.log()[-2000:]
    finally:
        eng.kill()


# ---- item 7: stalled half frames --------------------------------------------------

def test_stalled_half_frames_memory_is_bounded(binary, tmp):
    """64 connections each stall after 256 KiB of half a frame (16 MiB in
    all) with a 1 MiB process-wide bound: RSS grows by a few MiB, not 16,
    and once the stalled ones are closed a real client is answered."""
    eng, port = start(binary, tmp, chan_extra="    frame_timeout: 3s\n",
                      engine_extra="  max_inbound_buffer: 1MiB\n", log_level="warn")
    socks = []
    try:
        time.sleep(0.3)
        base = rss_kib(eng.proc.pid)
        half = frame(adt("H7") * 2000)[:256 * 1024]
        for _ in range(64):
            s = connect(port)
            s.setblocking(False)
            try:
                s.send(half)
            except BlockingIOError:
                pass
            socks.append(s)
        time.sleep(1.0)
        grown = rss_kib(eng.proc.pid) - base
        print("  RSS growth with 64 stalled 256 KiB half frames: %d KiB" % grown)
        assert grown < 4 * 1024, "RSS grew by %d KiB" % grown
        with connect(port) as s:
            a = send_recv(s, adt("G7"), timeout=15)
            assert field(fields(a), "MSA", 2) == "G7"
        assert eng.proc.poll() is None
        for s in socks:
            s.close()
        socks = []
        stop_clean(eng)
    finally:
        for s in socks:
            s.close()
        eng.kill()


def test_frame_in_progress_finishes_past_the_bound(binary, tmp):
    """A 2 MiB message being sent while 32 hogs stall on half frames past a
    1 MiB bound: it is finished and ACKed (the bound refuses new frames, it
    does not starve one in progress), well before the hogs' frame_timeout."""
    import threading
    eng, port = start(binary, tmp, chan_extra="    frame_timeout: 6s\n",
                      engine_extra="  max_inbound_buffer: 1MiB\n", log_level="warn")
    hogs, result = [], {}
    try:
        big = frame(adt("BIG") + b"OBX|1|TX|||" + b"A" * (2 << 20) + b"\r")
        legit = connect(port)

        def send_big():
            try:
                for i in range(0, len(big), 64 << 10):
                    legit.sendall(big[i:i + (64 << 10)])
                    time.sleep(0.01)
                result["ack"] = Frames(legit).next(10)
            except Exception as e:  # noqa: BLE001 - reported below
                result["error"] = repr(e)
        t0 = time.monotonic()
        th = threading.Thread(target=send_big)
        th.start()
        time.sleep(0.1)
        half = frame(adt("H") * 1000)[:128 * 1024]
        for _ in range(32):
            h = connect(port)
            h.setblocking(False)
            try:
                h.send(half)
            except BlockingIOError:
                pass
            hogs.append(h)
        th.join(15)
        took = time.monotonic() - t0
        assert "ack" in result, result
        a = fields(result["ack"])
        assert field(a, "MSA", 1) == "AA" and field(a, "MSA", 2) == "BIG", a
        assert took < 5, "the message in progress waited %.1fs (the hogs' timeout)" % took
        legit.close()
        for h in hogs:
            h.close()
        hogs = []
        stop_clean(eng)
    finally:
        for h in hogs:
            h.close()
        eng.kill()


# ---- item 8: floods of warnings ---------------------------------------------------

def test_empty_frames_do_not_flood_the_log(binary, tmp):
    """20,000 empty frames (60 KB): a bounded number of warning lines and a
    line that says how many were suppressed."""
    eng, port = start(binary, tmp, chan_extra="    idle_timeout: 60s\n")
    try:
        with connect(port) as s:
            s.sendall(b"\x0b\x1c\x0d" * 20000 + frame(adt("G8")))
            r, answers = Frames(s), 0
            while True:  # each empty frame may get its NAK: the last answer is G8's
                a = fields(r.next(15))
                answers += 1
                if field(a, "MSA", 2) == "G8":
                    break
            assert field(a, "MSA", 1) == "AA" and answers <= 20001, (answers, a)
        log = eng.log()
        warns = sum(1 for line in log.splitlines() if "level=warn" in line)
        assert warns <= 100, "%d warning lines for 20,000 empty frames" % warns
        stop_clean(eng)
        m = re.findall(r"event=log.suppressed .*suppressed=(\d+)", eng.log())
        assert m and sum(int(x) for x in m) >= 19000, eng.log()[-2000:]
        assert os.path.getsize(eng.logpath) < 64 * 1024
    finally:
        eng.kill()


# ---- item 9: a 0x1C inside a message -----------------------------------------------

def test_stray_end_block_gets_a_nak_and_the_next_frame_its_ack(binary, tmp):
    """A 0x1C inside a message, not followed by 0x0D, at several places:
    pipelined with a good frame behind it, the bad one gets one NAK (never a
    truncated message accepted), the good one its ACK, in order."""
    eng, port = start(binary, tmp)
    try:
        with connect(port) as s:
            r = Frames(s)
            for pos in (2, 20, 100, 160):
                m = adt("B%d" % pos)
                bad = m[:pos] + b"\x1c" + m[pos:]
                s.sendall(frame(bad) + frame(adt("N%d" % pos)))
                first = fields(r.next())
                assert field(first, "MSA", 1) == "AR", (pos, first)
                assert "0x1C" in "|".join(first.get("ERR", [])), (pos, first)
                second = fields(r.next())
                assert field(second, "MSA", 1) == "AA", (pos, second)
                assert field(second, "MSA", 2) == "N%d" % pos, (pos, second)
            # a sender that ends its frames with 0x1C alone and waits
            s.sendall(b"\x0b" + adt("NOCR") + b"\x1c")
            a = fields(r.next())
            assert field(a, "MSA", 2) == "NOCR", a
            assert r.buf == b"", r.buf
        wait_for(lambda: "N160.hl7" in out_files(tmp), what="N160 delivered")
        assert not any(f.startswith("B") for f in out_files(tmp)), out_files(tmp)
        stop_clean(eng)
        assert "stray_end_block" in eng.log() or "frame.dropped" in eng.log()
    finally:
        eng.kill()


def test_receiver_ack_without_cr_is_taken_at_once(binary, tmp):
    """The framer now waits for the byte after 0x1C; a downstream receiver
    that ends its ACK with 0x1C alone must still be understood at once (not
    after ack_timeout), and one whose ACK holds a stray 0x1C is a bad ACK."""
    def decide(m):
        body = ack(m.data)[1:-2]  # the ACK without its framing
        if m.ctl == "BADACK" and m.attempt == 1:
            return Reply(raw=SB + body[:20] + EB + body[20:] + EB + b"\r")
        return Reply(raw=SB + body + EB)
    with FakeReceiver(decide) as rx:
        port = free_port()
        dest = ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
                "    ack_timeout: 5s\n    retry: {initial: 100ms, max: 200ms}\n" % rx.port)
        chan = "  adt:\n    listen: [ \"127.0.0.1:%d\" ]\n    to: [ ehr ]\n" % port
        eng = Engine(binary, tmp, chan, dest)
        eng.start([port])
        try:
            t0 = time.monotonic()
            with connect(port) as s:
                for ctl in ("NOCR1", "NOCR2", "NOCR3"):
                    send_recv(s, adt(ctl))
            rx.wait(lambda ms: [m.ctl for m in ms][:3] == ["NOCR1", "NOCR2", "NOCR3"], 10)
            wait_for(lambda: "delivered=3" in eng.log(), timeout=3, what="3 delivered")
            assert time.monotonic() - t0 < 3, "ACKs without CR waited for ack_timeout"
            with connect(port) as s:
                send_recv(s, adt("BADACK"))
            rx.wait(lambda ms: [m.ctl for m in ms].count("BADACK") >= 2, 10,
                    "BADACK sent again after a broken ACK")
            stop_clean(eng)
            assert "broken ACK frame" in eng.log() or "bad_acks" in eng.log(), eng.log()[-2000:]
        finally:
            eng.kill()


TESTS = [test_fd_limit_too_low_for_max_connections_refused_at_start,
         test_default_max_connections_fits_the_fd_limit,
         test_fd_reserve_keeps_acked_messages_deliverable,
         test_garbage_outside_frames_is_not_activity,
         test_frame_must_finish_within_frame_timeout_from_its_start,
         test_stalled_half_frames_memory_is_bounded,
         test_frame_in_progress_finishes_past_the_bound,
         test_empty_frames_do_not_flood_the_log,
         test_stray_end_block_gets_a_nak_and_the_next_frame_its_ack,
         test_receiver_ack_without_cr_is_taken_at_once]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
