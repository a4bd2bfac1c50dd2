#!/usr/bin/env python3
"""test_send.py - outbound MLLP end to end.

`caduceus send` against the real engine (a quickstart-like configuration on
an ephemeral port: every message ACKed AA and written to a file), and
against fake MLLP receivers (engine_util.FakeReceiver) that answer AE, a
wrong control id, or nothing; a refused port; usage errors.  The engine's
MLLP destination against a fake receiver (AA, AE retried, AR dead-lettered,
wrong control id and silence retried on a new connection; in order, nothing
lost), and a chain client -> Caduceus A -> Caduceus B -> files with B
killed and restarted mid-flow.
Usage: test_send.py CADUCEUS_BINARY [TEST]"""
import collections
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (SILENCE, Engine, FakeReceiver, Reply, adt, check_clean_stop,  # noqa: E402
                         free_port, run_tests, script, wait_for)

LINE = re.compile(r"^(\S+) (AA|AE|AR|CA|CE|CR) (\d+\.\d)ms$")


def send(binary, *args, stdin=None, timeout=30):
    p = subprocess.run([binary, "send"] + list(args), input=stdin, capture_output=True,
                       timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def write_messages(tmp, ids, name="in.hl7"):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(b"\n".join(adt(ctl=c) for c in ids))
    return path


def test_send_to_engine(binary, tmp):
    port = free_port()
    out = os.path.join(tmp, "out")
    eng = Engine(binary, tmp,
                 "  quickstart:\n    listen: \"127.0.0.1:%d\"\n    to: [ files ]\n" % port,
                 "  files:\n    type: file\n    dir: %s\n    name: \"${MSH-10}.hl7\"\n" % out)
    eng.start(wait_ports=[port])
    try:
        path = write_messages(tmp, ["MSG00001", "MSG00002", "MSG00003"])
        rc, so, se = send(binary, "--to", "127.0.0.1:%d" % port, path)
        assert rc == 0, (rc, so, se)
        lines = so.splitlines()
        assert len(lines) == 3, so
        for i, line in enumerate(lines):
            m = LINE.match(line)
            assert m, line
            assert m.group(1) == "MSG0000%d" % (i + 1) and m.group(2) == "AA", line
        wait_for(lambda: len([n for n in os.listdir(out) if not n.startswith(".")]) == 3,
                 what="3 files")
        with open(os.path.join(out, "MSG00002.hl7"), "rb") as f:
            assert f.read() == adt(ctl="MSG00002").rstrip(b"\r")
        # stdin, --quiet: only the summary
        rc, so, se = send(binary, "--quiet", "--to", "127.0.0.1:%d" % port, "-",
                          stdin=adt(ctl="MSG00004"))
        assert rc == 0, (rc, so, se)
        assert so == "1 sent, 1 accepted, 0 not accepted (AE/AR), 0 failed\n", so
        wait_for(lambda: os.path.exists(os.path.join(out, "MSG00004.hl7")), what="4th file")
    finally:
        check_clean_stop(eng)


def test_send_reports_ae(binary, tmp):
    srv = FakeReceiver(lambda m: "AE" if m.ctl == "M2" else "AA")
    try:
        path = write_messages(tmp, ["M1", "M2", "M3"])
        rc, so, se = send(binary, "--to", "127.0.0.1:%d" % srv.port, path)
        assert rc == 1, (rc, so, se)
        lines = so.splitlines()
        assert [LINE.match(x).group(1, 2) for x in lines] == \
            [("M1", "AA"), ("M2", "AE"), ("M3", "AA")], so
        assert srv.connections == 1, "one connection for all messages"
        assert srv.count() == 3, "an AE is an answer: the message is not resent"
        rc, so, se = send(binary, "-q", "--to", "127.0.0.1:%d" % srv.port, path)
        assert rc == 1 and so.strip() == "3 sent, 2 accepted, 1 not accepted (AE/AR), 0 failed", so
    finally:
        srv.stop()


def test_send_wrong_control_id_and_silence(binary, tmp):
    srv = FakeReceiver(script(Reply("AA", ctl="NOTYOURS"), then=SILENCE))
    try:
        path = write_messages(tmp, ["W1", "W2"])
        rc, so, se = send(binary, "--timeout", "0.5", "--to", "127.0.0.1:%d" % srv.port, path)
        assert rc == 1, (rc, so, se)
        lines = so.splitlines()
        assert len(lines) == 2, so
        assert lines[0].startswith("W1 - error: ") and "another message" in lines[0], lines[0]
        assert lines[1] == "W2 - error: no ACK within 500ms", lines[1]
        # the wrong ACK closed the connection: the second message came on a new one
        assert srv.connections == 2, srv.connections
    finally:
        srv.stop()


def test_send_prints_the_receivers_reason(binary, tmp):
    """AE/AR lines carry MSA-3 and the ERR segment's code, text and reason."""
    port = free_port()
    eng = Engine(binary, tmp,
                 "  quickstart:\n    listen: \"127.0.0.1:%d\"\n    to: [ files ]\n" % port,
                 "  files:\n    type: file\n    dir: %s/out\n" % tmp)
    eng.start(wait_ports=[port])
    srv = FakeReceiver(script(Reply("AE", err="ERR||PID^1^3|207^Application internal error"
                                              "^HL70357|E||||db \"down\"")))
    try:
        path = os.path.join(tmp, "bad.hl7")
        with open(path, "wb") as f:
            f.write(adt(ctl="B25").replace(b"\rPV1|", b"\rP!1|") + b"\n" +
                    adt(ctl="B23", version="2.3").replace(b"\rPV1|", b"\rP!1|"))
        rc, so, se = send(binary, "--to", "127.0.0.1:%d" % port, path)
        assert rc == 1, (rc, so, se)
        lines = so.splitlines()
        assert len(lines) == 2, so
        assert re.match(r'^B25 AR \d+\.\dms ERR="100 Segment sequence error: segment id is not '
                        r'3 letters or digits"$', lines[0]), lines[0]
        assert re.match(r'^B23 AR \d+\.\dms MSA-3="Segment sequence error" '
                        r'ERR="100 Segment sequence error"$', lines[1]), lines[1]
        rc, so, se = send(binary, "--to", "127.0.0.1:%d" % srv.port,
                          write_messages(tmp, ["F1"]))
        assert rc == 1, (rc, so, se)
        assert re.match(r'^F1 AE \d+\.\dms ERR="207 Application internal error: db \\"down\\""$',
                        so.strip()), so
    finally:
        srv.stop()
        check_clean_stop(eng)


def test_send_refused_and_usage(binary, tmp):
    port = free_port()
    path = write_messages(tmp, ["R1"])
    rc, so, se = send(binary, "--to", "127.0.0.1:%d" % port, path)
    assert rc == 1, (rc, so, se)
    assert so.startswith("R1 - error: connect to 127.0.0.1:%d failed: " % port), so
    assert "ECONNREFUSED" in so, so
    rc, so, se = send(binary, path)
    assert rc == 2 and "--to HOST:PORT is required" in se, se
    rc, so, se = send(binary, "--to", "127.0.0.1", path)
    assert rc == 2 and "expected HOST:PORT" in se, se
    rc, so, se = send(binary, "--to", "127.0.0.1:%d" % port, "--ca", "x.pem", path)
    assert rc == 2 and "need --tls" in se, se
    rc, so, se = send(binary, "--to", "127.0.0.1:%d" % port, os.path.join(tmp, "missing.hl7"))
    assert rc == 1 and "missing.hl7" in se, se
    rc, so, se = send(binary, "--help")
    assert rc == 0 and "usage: caduceus send" in so


def test_engine_mllp_destination(binary, tmp):
    """Caduceus -> a downstream MLLP server of ours: AA, AE (retried), AR
    (dead letter), a wrong control id and silence (both retried on a new
    connection); delivered in order, nothing lost."""
    def decide(m):
        if m.ctl == "AE1" and m.attempt == 1:
            return "AE"
        if m.ctl == "AR1":
            return "AR"
        if m.ctl == "WRONG1" and m.attempt == 1:
            return Reply("AA", ctl="SOMEONEELSE")
        if m.ctl == "SILENT1" and m.attempt == 1:
            return SILENCE
        return "AA"

    down = FakeReceiver(decide)
    port = free_port()
    eng = Engine(binary, tmp,
                 "  lab:\n    listen: \"127.0.0.1:%d\"\n    to: [ down ]\n" % port,
                 "  down:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
                 "    ack_timeout: 500ms\n    on_ae: retry\n    on_ar: dead_letter\n"
                 "    retry: {initial: 20ms, max: 100ms, attempts: 5}\n"
                 "    on_failure: dead_letter\n" % down.port)
    eng.start(wait_ports=[port])
    try:
        ids = ["M1", "AE1", "M2", "AR1", "M3", "WRONG1", "SILENT1", "M4"]
        path = write_messages(tmp, ids)
        rc, so, se = send(binary, "--to", "127.0.0.1:%d" % port, path)
        assert rc == 0, (rc, so, se)
        down.wait(lambda msgs: any(m.ctl == "M4" for m in msgs), timeout=20,
                  what="M4 downstream")
        got = down.ctls()
        seen = collections.Counter(got)
        firsts = []
        for c in got:
            if c not in firsts:
                firsts.append(c)
        assert firsts == ids, got  # in order
        assert seen["AE1"] == 2 and seen["WRONG1"] == 2 and seen["SILENT1"] == 2, seen
        assert seen["AR1"] == 1, "AR goes to the dead letters at once: %r" % seen
        for c in ("M1", "M2", "M3", "M4"):
            assert seen[c] == 1, seen
        # each retry came after its failure, never overtaken by the next message
        assert got.index("M2") > max(i for i, c in enumerate(got) if c == "AE1"), got
        assert down.connections >= 3, "wrong id and silence closed the connection"
    finally:
        try:
            check_clean_stop(eng)
        finally:
            down.stop()


def test_chain_with_restart(binary, tmp):
    """client -> Caduceus A -> (MLLP) -> Caduceus B -> files, with B killed
    and restarted in the middle: every message A acknowledged reaches the
    files (duplicates allowed: delivery is at least once)."""
    ta, tb = os.path.join(tmp, "a"), os.path.join(tmp, "b")
    os.makedirs(ta)
    os.makedirs(tb)
    pa, pb = free_port(), free_port()
    sink = os.path.join(tb, "out")
    b = Engine(binary, tb, "  in:\n    listen: \"127.0.0.1:%d\"\n    to: [ files ]\n" % pb,
               "  files:\n    type: file\n    dir: %s\n    name: \"${MSH-10}.hl7\"\n" % sink)
    a = Engine(binary, ta, "  in:\n    listen: \"127.0.0.1:%d\"\n    to: [ b ]\n" % pa,
               "  b:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
               "    connect_timeout: 1s\n    ack_timeout: 2s\n"
               "    retry: {initial: 20ms, max: 200ms, attempts: 1000}\n" % pb)
    b.start(wait_ports=[pb])
    a.start(wait_ports=[pa])
    try:
        n = 3000
        ids = ["CH%05d" % i for i in range(n)]
        path = write_messages(tmp, ids)
        proc = subprocess.Popen([binary, "send", "--quiet", "--to", "127.0.0.1:%d" % pa, path],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_for(lambda: os.path.isdir(sink) and len(os.listdir(sink)) >= 50, timeout=20,
                 what="50 messages through the chain")
        b.kill()  # SIGKILL in the middle of the flow
        at_kill = len(os.listdir(sink))
        assert at_kill < n, "the flow was over before B was killed"
        time.sleep(0.3)
        b.start(wait_ports=[pb])
        so, se = proc.communicate(timeout=60)
        assert proc.returncode == 0, (so, se)
        assert so.decode().startswith("%d sent, %d accepted" % (n, n)), so
        want = set(i + ".hl7" for i in ids)
        wait_for(lambda: want <= set(os.listdir(sink)), timeout=30,
                 what="every message A acknowledged at the sink")
        with open(os.path.join(sink, "CH00123.hl7"), "rb") as f:
            assert f.read() == adt(ctl="CH00123").rstrip(b"\r")
    finally:
        try:
            check_clean_stop(a)
        finally:
            check_clean_stop(b)


TESTS = [test_send_to_engine, test_engine_mllp_destination, test_chain_with_restart, test_send_reports_ae, test_send_wrong_control_id_and_silence,
         test_send_refused_and_usage]
TESTS.append(test_send_prints_the_receivers_reason)

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
