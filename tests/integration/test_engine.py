#!/usr/bin/env python3
"""test_engine.py - `caduceus run` end to end with the project's own MLLP
client: every ACK field, both acknowledgment modes, rejects with ERR, the
file destination (names, content, no traversal, append mode), per-connection
order, control ids unique across restarts, SIGHUP reload, JSON logs, clean
SIGTERM.  Usage: test_engine.py CADUCEUS_BINARY [TEST]"""
import datetime
import json
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (PATIENT, Engine, adt, check_clean_stop, connect, field, fields,  # noqa: E402
                         frame, free_port, read_frame, run_tests, send_recv, wait_for)


def files_dest(tmp, name="${MSH-7}_${MSH-10}.hl7", dest="files", sub="out"):
    return ("  %s:\n    type: file\n    dir: %s/%s\n    name: \"%s\"\n" % (dest, tmp, sub, name))


def channel(port, name="adt", to="files", extra=""):
    return ("  %s:\n    listen: [ \"127.0.0.1:%d\" ]\n    frame_timeout: 2s\n%s"
            "    to: [ %s ]\n" % (name, port, extra, to))


def parse_ts(ts):
    m = re.fullmatch(r"(\d{14})([+-])(\d{2})(\d{2})", ts)
    assert m, "MSH-7 %r is not YYYYMMDDHHMMSS+ZZZZ" % ts
    base = datetime.datetime.strptime(m.group(1), "%Y%m%d%H%M%S")
    off = datetime.timedelta(hours=int(m.group(3)), minutes=int(m.group(4)))
    if m.group(2) == "-":
        off = -off
    return (base - off).replace(tzinfo=datetime.timezone.utc)


def check_ack(ack, ctl, trigger="A01", version="2.5.1", code="AA"):
    f = fields(ack)
    assert field(f, "MSH", 1) == "|"
    assert field(f, "MSH", 2) == "^~\\&"
    assert field(f, "MSH", 3) == "EHR", f
    assert field(f, "MSH", 4) == "SOUTH"
    assert field(f, "MSH", 5) == "LAB"
    assert field(f, "MSH", 6) == "NORTH"
    when = parse_ts(field(f, "MSH", 7))
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 30, "MSH-7 %s is not now" % field(f, "MSH", 7)
    assert field(f, "MSH", 9) == "ACK^%s^ACK" % trigger, field(f, "MSH", 9)
    own = field(f, "MSH", 10)
    assert own and own != ctl and len(own) <= 20, own
    assert field(f, "MSH", 11) == "P"
    assert field(f, "MSH", 12) == version
    assert field(f, "MSA", 1) == code, ack
    assert field(f, "MSA", 2) == ctl
    return f


def test_ack_fields_and_file(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp))
    try:
        eng.start([port])
        ids = set()
        with connect(port) as s:
            for i in range(3):
                ctl = "MSG%05d" % i
                msg = adt(ctl)
                f = check_ack(send_recv(s, msg), ctl)
                ids.add(field(f, "MSH", 10))
                path = os.path.join(tmp, "out", "20260101120000_%s.hl7" % ctl)
                # The ACK says the message is durable; delivery follows.
                wait_for(lambda: os.path.exists(path), what="delivery of " + ctl)
                with open(path, "rb") as fh:
                    assert fh.read() == msg, "file content differs from the message"
        assert len(ids) == 3
        # No temp file left behind, nothing but the three messages.
        assert sorted(os.listdir(os.path.join(tmp, "out"))) == [
            "20260101120000_MSG%05d.hl7" % i for i in range(3)]
        check_clean_stop(eng)
        log = eng.log()
        assert "event=msg.accepted" in log and "ctl=MSG00000" in log and "type=ADT^A01^ADT_A01" in log
        assert re.search(r"event=stats channel=adt received=3 accepted=3 rejected=0", log), log
        # Control ids stay unique across a restart.
        eng2 = Engine(binary, tmp, channel(port), files_dest(tmp))
        eng2.start([port])
        with connect(port) as s:
            f = check_ack(send_recv(s, adt("AFTER1")), "AFTER1")
            assert field(f, "MSH", 10) not in ids
        check_clean_stop(eng2)
    finally:
        eng.kill()


def test_enhanced_mode(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp))
    try:
        eng.start([port])
        with connect(port) as s:
            check_ack(send_recv(s, adt("E1", extra_msh="|||AL|NE")), "E1", code="CA")
            # NE: no ACK at all; the next message's ACK comes next, in order.
            s.sendall(frame(adt("E2", extra_msh="|||NE|NE")))
            check_ack(send_recv(s, adt("E3")), "E3", code="AA")
            # ER: no accept ACK for a good message.
            s.sendall(frame(adt("E4", extra_msh="|||ER|NE")))
            check_ack(send_recv(s, adt("E5", extra_msh="|||SU")), "E5", code="CA")
        for ctl in ("E1", "E2", "E3", "E4", "E5"):
            p = os.path.join(tmp, "out", "20260101120000_%s.hl7" % ctl)
            wait_for(lambda: os.path.exists(p), what="delivery of " + ctl)
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_forced_ack_modes(binary, tmp):
    p1, p2 = free_port(), free_port()
    chans = (channel(p1, "orig", extra="    ack:\n      mode: original\n") +
             channel(p2, "enh", extra="    ack:\n      mode: enhanced\n"))
    eng = Engine(binary, tmp, chans, files_dest(tmp))
    try:
        eng.start([p1, p2])
        with connect(p1) as s:
            check_ack(send_recv(s, adt("F1", extra_msh="|||AL|AL")), "F1", code="AA")
        with connect(p2) as s:
            check_ack(send_recv(s, adt("F2")), "F2", code="CA")
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_rejects_with_err(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp))
    try:
        eng.start([port])
        with connect(port) as s:
            # A bad segment id: the parser refuses, the header is readable.
            bad = adt("R1").replace(b"\rPV1|", b"\rP!1|")
            f = check_ack(send_recv(s, bad), "R1", code="AR")
            assert field(f, "ERR", 1) == ""
            e3 = field(f, "ERR", 3).split("^")
            assert e3[0] == "100" and e3[2] == "HL70357" and e3[1], e3
            assert field(f, "ERR", 4) == "E"
            # A v2.3 message: the older ERR-1 layout, and MSA-3 text.
            bad23 = adt("R2", version="2.3").replace(b"\rPV1|", b"\rP!1|")
            f = check_ack(send_recv(s, bad23), "R2", version="2.3", code="AR")
            e1 = field(f, "ERR", 1).split("^")
            assert len(e1) == 4 and e1[3].startswith("100&") and e1[3].endswith("&HL70357"), e1
            assert field(f, "MSA", 3)
            # MSH-10 missing: 101 with its location.
            nomsh10 = adt("").replace(b"|ADT_A01||P|", b"|ADT_A01||P|")
            f = fields(send_recv(s, nomsh10))
            assert field(f, "MSA", 1) == "AR" and field(f, "MSA", 2) == ""
            assert field(f, "ERR", 2) == "MSH^1^10", f
            assert field(f, "ERR", 3).startswith("101^")
            # No MSH at all: a NAK from a stand-in header (test_pipeline.py has
            # the details); the connection goes on.
            f = fields(send_recv(s, b"PID|1||x\r"))
            assert field(f, "MSA", 1) == "AR" and field(f, "MSA", 2) == "", f
            check_ack(send_recv(s, adt("R3")), "R3")
        # Rejected messages are not written.
        assert not os.path.exists(os.path.join(tmp, "out", "20260101120000_R1.hl7"))
        time.sleep(1.2)  # one stats line
        check_clean_stop(eng)
        log = eng.log()
        assert "event=msg.rejected" in log
        assert re.search(r"received=5 accepted=1 rejected=4 errors=0 unanswered=0", log), log
    finally:
        eng.kill()


def test_safe_file_names(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp, name="${MSH-10}_${PID-3.1}.hl7"))
    try:
        eng.start([port])
        with connect(port) as s:
            for ctl in ("../../evil", "/etc/passwd", ".hidden", "a b&c"):
                msg = adt(ctl)
                ack = send_recv(s, msg)
                assert field(fields(ack), "MSA", 1) == "AA", ack
        out = os.path.join(tmp, "out")
        wait_for(lambda: len([n for n in os.listdir(out) if not n.startswith(".")]) == 4,
                 what="four files delivered")
        names = sorted(os.listdir(out))
        assert len(names) == 4, names
        for n in names:
            assert "/" not in n and not n.startswith(".") and n.endswith("_12345.hl7"), n
            assert re.fullmatch(r"[A-Za-z0-9._+-]+", n), n
        assert "_._.._evil_12345.hl7" in names, names
        assert "_etc_passwd_12345.hl7" in names, names
        # Nothing was written outside the destination directory.
        assert not os.path.exists(os.path.join(tmp, "evil_12345.hl7"))
        assert sorted(os.listdir(tmp)) == sorted(["caduceus.yaml", "engine.log", "out"] +
                                                 (["data"] if os.path.exists(tmp + "/data") else []))
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_append_mode(binary, tmp):
    port = free_port()
    dest = "  all:\n    type: file\n    append: %s/out/all.hl7\n" % tmp
    eng = Engine(binary, tmp, channel(port, to="all"), dest)
    try:
        eng.start([port])
        msgs = [adt("AP%d" % i) for i in range(5)]
        msgs.append(adt("AP5").rstrip(b"\r"))  # no final terminator
        with connect(port) as s:
            for i, m in enumerate(msgs):
                check_ack(send_recv(s, m), "AP%d" % i)
        want = b"".join(m + b"\n" for m in msgs[:5]) + msgs[5] + b"\r\n"

        def appended():
            with open(os.path.join(tmp, "out", "all.hl7"), "rb") as fh:
                return fh.read()
        wait_for(lambda: len(appended()) >= len(want), what="all six appended")
        data = appended()
        assert data == want, "append file differs"
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_pipelined_order(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp), log_level="warn")
    try:
        eng.start([port])
        n = 200
        with connect(port) as s:
            s.sendall(b"".join(frame(adt("P%04d" % i)) for i in range(n)))
            buf = b""
            s.settimeout(20)
            while buf.count(b"\x1c\x0d") < n:
                chunk = s.recv(65536)
                assert chunk, "closed early"
                buf += chunk
        acks = [a.lstrip(b"\x0b") for a in buf.split(b"\x1c\x0d") if a]
        assert [field(fields(a), "MSA", 2) for a in acks] == ["P%04d" % i for i in range(n)]
        wait_for(lambda: len(os.listdir(os.path.join(tmp, "out"))) == n, timeout=20,
                 what="%d files delivered" % n)
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_reload(binary, tmp):
    p1, p2 = free_port(), free_port()
    eng = Engine(binary, tmp, channel(p1), files_dest(tmp))
    try:
        eng.start([p1])
        s = connect(p1)
        check_ack(send_recv(s, adt("H1")), "H1")
        # A bad configuration is refused; the running one stays.
        with open(eng.conf, "a") as f:
            f.write("  bogus_key: 1\n")
        eng.signal(signal.SIGHUP)
        wait_for(lambda: "event=reload.refused" in eng.log(), what="reload refused")
        check_ack(send_recv(s, adt("H2")), "H2")
        # A new listener and a new destination; the open connection is kept.
        eng.write_config(channel(p1) + channel(p2, name="lab", to="second"),
                         files_dest(tmp) + files_dest(tmp, dest="second", sub="out2"))
        eng.signal(signal.SIGHUP)
        wait_for(lambda: "event=reload.done" in eng.log(), what="reload done")
        check_ack(send_recv(s, adt("H3")), "H3")
        with connect(p2) as s2:
            check_ack(send_recv(s2, adt("H4")), "H4")
        wait_for(lambda: os.path.exists(os.path.join(tmp, "out2", "20260101120000_H4.hl7")),
                 what="delivery of H4")
        # Remove the first listener: its connections close, the other stays.
        eng.write_config(channel(p2, name="lab", to="second"),
                         files_dest(tmp, dest="second", sub="out2"))
        eng.signal(signal.SIGHUP)
        wait_for(lambda: eng.log().count("event=reload.done") == 2, what="second reload")
        s.settimeout(5)
        assert s.recv(100) == b"", "connection of a removed listener stays open"
        s.close()
        try:
            connect(p1, timeout=1).close()
            raise AssertionError("removed listener still accepts")
        except OSError:
            pass
        with connect(p2) as s2:
            check_ack(send_recv(s2, adt("H5")), "H5")
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_reload_refused_when_it_cannot_apply(binary, tmp):
    p1 = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    eng = Engine(binary, tmp, channel(p1), files_dest(tmp))
    try:
        eng.start([p1])
        s = connect(p1)
        check_ack(send_recv(s, adt("U1")), "U1")
        # A new listener on a port already taken: the whole reload is refused.
        eng.write_config(channel(p1) + channel(busy, name="lab"), files_dest(tmp))
        eng.signal(signal.SIGHUP)
        wait_for(lambda: eng.log().count("event=reload.refused") >= 1, what="refusal 1")
        assert "event=listen.failed" in eng.log()
        check_ack(send_recv(s, adt("U2")), "U2")
        # A destination that cannot be opened (its directory is a file).
        with open(os.path.join(tmp, "notadir"), "w") as f:
            f.write("x")
        eng.write_config(channel(p1), files_dest(tmp, sub="notadir"))
        eng.signal(signal.SIGHUP)
        wait_for(lambda: eng.log().count("event=reload.refused") >= 2, what="refusal 2")
        assert "event=dest.open_failed" in eng.log()
        check_ack(send_recv(s, adt("U3")), "U3")
        wait_for(lambda: os.path.exists(os.path.join(tmp, "out", "20260101120000_U3.hl7")),
                 what="delivery of U3")
        s.close()
        check_clean_stop(eng)
    finally:
        blocker.close()
        eng.kill()


def test_destination_failure_is_retried(binary, tmp):
    """A destination that fails does not lose what was ACKed: the message
    waits in the queue, retried with backoff, and arrives once it works."""
    import shutil
    port = free_port()
    dest = files_dest(tmp) + "    retry: {initial: 100ms, max: 200ms}\n"
    eng = Engine(binary, tmp, channel(port), dest)
    try:
        eng.start([port])
        with connect(port) as s:
            check_ack(send_recv(s, adt("D1")), "D1")
            wait_for(lambda: os.path.exists(os.path.join(tmp, "out", "20260101120000_D1.hl7")),
                     what="delivery of D1")
            # The directory becomes a file: writes fail; the message is ACKed
            # (it is durable) and retried.
            # (The engine's own retry may recreate the directory between the
            # two steps: try again until the file is in place.)
            def plant_file():
                shutil.rmtree(os.path.join(tmp, "out"), ignore_errors=True)
                try:
                    with open(os.path.join(tmp, "out"), "x") as f:
                        f.write("x")
                    return True
                except (FileExistsError, IsADirectoryError):
                    return False
            wait_for(plant_file, what="a file where the output directory was")
            check_ack(send_recv(s, adt("D2")), "D2")
            wait_for(lambda: "event=dest.retry" in eng.log(), what="a retry")
            # The destination comes back: D2 is delivered, then D3, in order.
            os.unlink(os.path.join(tmp, "out"))
            os.makedirs(os.path.join(tmp, "out"), exist_ok=True)  # the engine may be first
            check_ack(send_recv(s, adt("D3")), "D3")
        for ctl in ("D2", "D3"):
            p = os.path.join(tmp, "out", "20260101120000_%s.hl7" % ctl)
            wait_for(lambda: os.path.exists(p), what="delivery of " + ctl)
        time.sleep(1.2)
        check_clean_stop(eng)
        log = eng.log()
        assert re.search(r"received=3 accepted=3 rejected=0 errors=0", log), log
        assert re.search(r"event=stats.dest .*retries=[1-9]", log), log
    finally:
        eng.kill()


def test_json_log(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp), engine_extra="  log_format: json\n")
    try:
        eng.start([port])
        with connect(port) as s:
            check_ack(send_recv(s, adt("J\"1")), "J\"1")
        check_clean_stop(eng)
        lines = [json.loads(line) for line in eng.log().splitlines() if line.strip()]
        acc = [r for r in lines if r.get("event") == "msg.accepted"]
        assert acc and acc[0]["ctl"] == "J\"1" and acc[0]["outcome"] == "AA", acc
        assert all("ts" in r and "level" in r for r in lines)
    finally:
        eng.kill()


def test_ipv6_listener(binary, tmp):
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
        probe.close()
    except OSError:
        print("  (skipped: no IPv6 loopback here)")
        return
    p4 = free_port()
    chan = ("  adt:\n    listen: [ \"127.0.0.1:%d\", \"[::1]:%d\" ]\n    to: [ files ]\n" % (p4, port))
    eng = Engine(binary, tmp, chan, files_dest(tmp))
    try:
        eng.start([p4])  # the IPv6 listener is bound just after the IPv4 one
        wait_for(lambda: "event=listen channel=adt peer=[::1]:%d" % port in eng.log(),
                 what="IPv6 listener")
        with socket.create_connection(("::1", port), timeout=5) as s:
            check_ack(send_recv(s, adt("V6")), "V6")
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_cli_usage_and_bad_config(binary, tmp):
    import subprocess
    r = subprocess.run([binary, "run", "--help"], capture_output=True, timeout=10)
    assert r.returncode == 0 and b"usage: caduceus run CONFIG" in r.stdout, r
    r = subprocess.run([binary, "run"], capture_output=True, timeout=10)
    assert r.returncode == 2 and b"usage" in r.stderr, r
    r = subprocess.run([binary, "run", "--bogus", "x.yaml"], capture_output=True, timeout=10)
    assert r.returncode == 2, r
    bad = os.path.join(tmp, "bad.yaml")
    with open(bad, "w") as f:
        f.write("channels:\n  a:\n    listen: [ \"127.0.0.1:1\" ]\n    to: [ nowhere ]\n")
    r = subprocess.run([binary, "run", bad], capture_output=True, timeout=10)
    assert r.returncode == 1 and b"bad.yaml:" in r.stderr, r
    r = subprocess.run([binary, "run", os.path.join(tmp, "missing.yaml")], capture_output=True,
                       timeout=10)
    assert r.returncode == 1 and r.stderr, r


def test_port_in_use_fails_cleanly(binary, tmp):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        eng = Engine(binary, tmp, channel(port), files_dest(tmp))
        eng.logf = open(eng.logpath, "ab")
        import subprocess
        p = subprocess.run([binary, "run", eng.conf], capture_output=True, timeout=20)
        assert p.returncode == 1, p
        assert b"event=listen.failed" in p.stderr and b"EADDRINUSE" in p.stderr, p.stderr
        assert b"shutdown.leak" not in p.stderr
        eng.logf.close()
    finally:
        blocker.close()


def test_sigint_stops_cleanly(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp))
    try:
        eng.start([port])
        with connect(port) as s:
            check_ack(send_recv(s, adt("SI1")), "SI1")
            eng.signal(signal.SIGINT)
            s.settimeout(10)
            assert s.recv(100) == b"", "open connection not closed on SIGINT"
        assert eng.proc.wait(10) == 0
        assert "SIGINT" in eng.log() and "event=stopped" in eng.log()
        eng.logf.close()
    finally:
        eng.kill()


TESTS = [test_cli_usage_and_bad_config, test_port_in_use_fails_cleanly, test_sigint_stops_cleanly,
         test_ack_fields_and_file, test_enhanced_mode, test_forced_ack_modes,
         test_rejects_with_err, test_safe_file_names, test_append_mode, test_pipelined_order,
         test_reload, test_reload_refused_when_it_cannot_apply, test_destination_failure_is_retried, test_json_log, test_ipv6_listener]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
