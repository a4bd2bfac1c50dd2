#!/usr/bin/env python3
"""test_faults.py - abuse the engine over loopback and check it keeps serving:
garbage bytes, an oversized frame, half a frame then silence, 1,000
connections at once, a client that never reads its ACKs, a connection reset
mid-frame, too many connections.  After each abuse a good client is served
and a final message is ACKed; the engine stops cleanly on SIGTERM.
Usage: test_faults.py CADUCEUS_BINARY [TEST]"""
import os
import resource
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, adt, check_clean_stop, connect, field, fields, frame,  # noqa: E402
                         free_port, rss_kib, run_tests, send_recv, wait_for)


def setup(binary, tmp, extra="", log_level="info", max_size="64KiB", preexec_fn=None):
    port = free_port()
    dests = "  files:\n    type: file\n    dir: %s/out\n    name: \"${MSH-10}.hl7\"\n" % tmp
    chan = ("  adt:\n    listen: [ \"127.0.0.1:%d\" ]\n    max_message_size: %s\n"
            "    frame_timeout: 500ms\n%s    to: [ files ]\n"
            % (port, max_size, extra))
    eng = Engine(binary, tmp, chan, dests, log_level=log_level)
    eng.start([port], preexec_fn=preexec_fn)
    return eng, port


def good_client(port, ctl):
    with connect(port) as s:
        ack = send_recv(s, adt(ctl))
        f = fields(ack)
        assert field(f, "MSA", 1) == "AA" and field(f, "MSA", 2) == ctl, ack


def expect_closed(sock, timeout):
    """The engine closes the connection within `timeout` seconds."""
    sock.settimeout(timeout)
    t0 = time.monotonic()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return time.monotonic() - t0
    except ConnectionResetError:
        return time.monotonic() - t0
    except socket.timeout:
        raise AssertionError("connection still open after %ss" % timeout)


def test_garbage_bytes(binary, tmp):
    eng, port = setup(binary, tmp)
    try:
        with connect(port) as s:
            junk = bytes((i * 37 + 11) % 256 for i in range(20000)).replace(b"\x0b", b"")
            s.sendall(junk)
            # After the garbage, a proper frame on the same connection works.
            ack = send_recv(s, adt("G1"))
            assert field(fields(ack), "MSA", 2) == "G1"
        # A frame cut short by a new start block: dropped, the next one is served.
        with connect(port) as s:
            s.sendall(b"\x0b" + adt("CUT1")[:30])
            ack = send_recv(s, adt("G1b"))
            assert field(fields(ack), "MSA", 2) == "G1b"
        # A frame whose body is garbage: no MSH, a NAK with an empty MSA-2;
        # the connection goes on.
        with connect(port) as s:
            nak = fields(send_recv(s, b"\x00\x01\x02garbage|||\r"))
            assert field(nak, "MSA", 1) == "AR" and field(nak, "MSA", 2) == "", nak
            ack = send_recv(s, adt("G2"))
            assert field(fields(ack), "MSA", 2) == "G2"
        good_client(port, "G3")
        check_clean_stop(eng)
        assert "event=frame.skipped" in eng.log()
        assert "event=frame.dropped" in eng.log()
        assert not os.path.exists(os.path.join(tmp, "out", "CUT1.hl7"))
    finally:
        eng.kill()


def test_garbage_flood_is_cut_off(binary, tmp):
    eng, port = setup(binary, tmp)  # max_message_size 64KiB
    try:
        s = connect(port)
        junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 4000  # ~120 KB, no MLLP at all
        try:
            s.sendall(junk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        expect_closed(s, 5)
        s.close()
        good_client(port, "GF1")
        check_clean_stop(eng)
        log = eng.log()
        assert "outcome=garbage" in log, log[-1500:]
        assert log.count("event=frame.skipped") == 1, "skipped bytes logged more than once"
    finally:
        eng.kill()


def test_oversized_frame(binary, tmp):
    eng, port = setup(binary, tmp)
    try:
        with connect(port) as s:
            # 4 MB against a 64 KiB limit: the engine stops reading at the
            # limit, NAKs, and drains the rest so the NAK is not lost to a RST.
            big = adt("BIG1") + b"OBX|1|TX|||" + b"x" * (4 << 20) + b"\r"
            s.sendall(frame(big))
            from engine_util import read_frame
            ack = read_frame(s)
            f = fields(ack)
            assert field(f, "MSA", 1) == "AR" and field(f, "MSA", 2) == "BIG1", ack
            assert field(f, "ERR", 3).startswith("207^"), ack
            assert field(f, "ERR", 4) == "E"
            expect_closed(s, 5)
        assert not os.path.exists(os.path.join(tmp, "out", "BIG1.hl7"))
        good_client(port, "BIG2")
        check_clean_stop(eng)
        assert "event=msg.too_big" in eng.log()
    finally:
        eng.kill()


def test_half_frame_then_silence(binary, tmp):
    eng, port = setup(binary, tmp)
    try:
        slow = connect(port)
        slow.sendall(b"\x0b" + adt("HALF")[:40])
        # A trickle does not keep it alive: the frame timeout counts from its start.
        time.sleep(0.2)
        slow.sendall(b"x")
        good_client(port, "H1")  # others are served meanwhile
        took = expect_closed(slow, 5)
        assert took < 3, took
        slow.close()
        good_client(port, "H2")
        check_clean_stop(eng)
        assert "outcome=frame_timeout" in eng.log()
    finally:
        eng.kill()


def test_idle_timeout(binary, tmp):
    eng, port = setup(binary, tmp, extra="    idle_timeout: 1s\n")
    try:
        with connect(port) as s:
            assert field(fields(send_recv(s, adt("ID1"))), "MSA", 1) == "AA"
            took = expect_closed(s, 5)
            assert 0.7 < took < 4, took
        good_client(port, "ID2")
        check_clean_stop(eng)
        assert "outcome=idle_timeout" in eng.log()
    finally:
        eng.kill()


def test_thousand_connections(binary, tmp):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096
    if hard != resource.RLIM_INFINITY and hard < 2200:
        raise AssertionError("RLIMIT_NOFILE hard limit %d is too low for 1,000 connections" % hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))  # for this client
    n = 1000

    def default_limit():
        # The engine starts with a soft limit below 1,000 descriptors and must
        # raise it itself for its max_connections (as it does at 1024).
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))

    eng, port = setup(binary, tmp, log_level="warn", preexec_fn=default_limit)
    socks = []
    try:
        for _ in range(n):
            socks.append(connect(port, timeout=10))
        for i, s in enumerate(socks):
            s.sendall(frame(adt("K%04d" % i)))
        from engine_util import read_frame
        for i, s in enumerate(socks):
            ack = read_frame(s, timeout=20)
            assert field(fields(ack), "MSA", 2) == "K%04d" % i
        wait_for(lambda: len(os.listdir(os.path.join(tmp, "out"))) == n, timeout=30,
                 what="%d files delivered" % n)
        for s in socks:
            s.close()
        socks = []
        good_client(port, "K-final")
        check_clean_stop(eng)
    finally:
        for s in socks:
            s.close()
        eng.kill()


def test_client_never_reads(binary, tmp):
    eng, port = setup(binary, tmp, log_level="warn")
    try:
        base = rss_kib(eng.proc.pid)
        hog = connect(port)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.setblocking(False)
        one = frame(adt("NR"))
        sent = 0
        burst = one * 64
        deadline = time.monotonic() + 6
        stalled_since = None
        # Push until the engine stops reading (our sends block) for a while.
        pending = b""
        while time.monotonic() < deadline:
            try:
                # A partial send leaves the rest of a frame: send it first, so
                # the stream stays well-framed.
                if not pending:
                    pending = burst
                n = hog.send(pending)
                pending = pending[n:]
                sent += n
                stalled_since = None
            except BlockingIOError:
                if stalled_since is None:
                    stalled_since = time.monotonic()
                elif time.monotonic() - stalled_since > 0.5:
                    break
                time.sleep(0.01)
        assert stalled_since is not None, "the engine never pushed back (%d bytes sent)" % sent
        grown = rss_kib(eng.proc.pid) - base
        assert grown < 64 * 1024, "engine grew by %d KiB for a client that does not read" % grown
        # Others are served while the hog is stuck.
        good_client(port, "NR-good")
        hog.close()
        good_client(port, "NR-final")
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_reset_mid_frame(binary, tmp):
    eng, port = setup(binary, tmp)
    try:
        for k in range(20):
            s = connect(port)
            s.sendall(frame(adt("RS%d" % k)) + b"\x0b" + adt("CUT")[:50])
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST
        good_client(port, "RS-final")
        wait_for(lambda: eng.log().count("event=conn.close") >= 21, what="close events")
        check_clean_stop(eng)
        assert "outcome=reset" in eng.log(), eng.log()[-1500:]
        assert not os.path.exists(os.path.join(tmp, "out", "CUT.hl7"))
    finally:
        eng.kill()


def test_max_connections(binary, tmp):
    eng, port = setup(binary, tmp, extra="    max_connections: 3\n")
    try:
        # The start-up probe's connection must be gone before we count.
        wait_for(lambda: "event=conn.close" in eng.log(), what="probe closed")
        held = [connect(port) for _ in range(3)]
        for i, s in enumerate(held):
            assert field(fields(send_recv(s, adt("M%d" % i))), "MSA", 1) == "AA"
        extra = connect(port)
        expect_closed(extra, 5)
        extra.close()
        held[0].close()
        wait_for(lambda: eng.log().count("event=conn.close") >= 2, what="close of the first")
        good_client(port, "M-final")
        for s in held[1:]:
            s.close()
        check_clean_stop(eng)
        assert "event=conn.refused" in eng.log()
    finally:
        eng.kill()


def test_sigterm_with_messages_in_flight(binary, tmp):
    eng, port = setup(binary, tmp, log_level="warn")
    try:
        s = connect(port)
        n = 300
        s.sendall(b"".join(frame(adt("T%04d" % i)) for i in range(n)))
        time.sleep(0.05)
        rc = eng.stop()
        assert rc == 0, eng.log()
        # Every message that was ACKed is on disk.
        s.settimeout(5)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            buf += chunk
        acked = [field(fields(a.lstrip(b"\x0b")), "MSA", 2)
                 for a in buf.split(b"\x1c\x0d") if a.strip(b"\x0b")]
        s.close()
        # Every message that was ACKed is in the durable queue: what was not
        # delivered before the stop is delivered after a restart.
        eng.start([port])
        for ctl in acked:
            p = os.path.join(tmp, "out", ctl + ".hl7")
            wait_for(lambda: os.path.exists(p), what="delivery of " + ctl)
        assert eng.stop() == 0, eng.log()
    finally:
        eng.kill()


TESTS = [test_garbage_bytes, test_garbage_flood_is_cut_off, test_oversized_frame, test_half_frame_then_silence,
         test_idle_timeout, test_thousand_connections, test_client_never_reads, test_reset_mid_frame,
         test_max_connections, test_sigterm_with_messages_in_flight]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
