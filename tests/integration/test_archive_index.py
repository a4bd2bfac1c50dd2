#!/usr/bin/env python3
"""test_archive_index.py - the archive's declared fields and full text with
the real binary: messages sent over MLLP are found by `caduceus search
--field OBR-4.1=GLU` (engine.archive.index), by a channel's named field
(`archive: {index: {visit: PV1-19}}`) and by `--text` (FTS5, on for one
channel only); `--count` and `--json` agree; hostile --text (FTS5 syntax,
SQL metacharacters, quotes) is taken literally: no error, no injection; a
bad index path is refused with file:line:column; a damaged day file is
reported by `archive check`.

Usage: test_archive_index.py CADUCEUS_BINARY [TEST]"""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (SB, Engine, FakeReceiver, Reply, check_clean_stop,  # noqa: E402
                         connect, field, fields, frame, free_port, read_frame, run_tests,
                         send_recv, wait_for)


def oru(ctl, test, visit, note):
    return ("MSH|^~\\&|LIS|LABFAC|EHR|EHRFAC|20260101120000||ORU^R01^ORU_R01|%s|P|2.5.1\r"
            "PID|1||P%s^^^HOSP^MR||ZZTEST^PATIENT\r"
            "PV1|1|O|LAB||||||||||||||||%s\r"
            "OBR|1||R1|%s^%s test^L\r"
            "OBX|1|NM|%s||5.5|mmol/L|||||F\r"
            "NTE|1||%s\r" % (ctl, ctl, visit, test, test.lower(), test, note)).encode()


def tool(binary, *args, timeout=30):
    return subprocess.run([binary] + list(args), capture_output=True, text=True, timeout=timeout)


def search(binary, data, *args):
    r = tool(binary, "search", data, "--json", "--limit", "1000", *args)
    assert r.returncode == 0, "search %r: %s" % (args, r.stderr)
    return sorted(json.loads(line)["control_id"] for line in r.stdout.splitlines() if line)


def count(binary, data, *args):
    r = tool(binary, "search", data, "--count", *args)
    assert r.returncode == 0, "count %r: %s" % (args, r.stderr)
    return int(r.stdout.strip())


def start(binary, tmp, lab_extra=""):
    p_lab, p_adt = free_port(), free_port()
    dests = "  files:\n    type: file\n    dir: %s/out\n" % tmp
    chans = ("  lab:\n    listen: [ \"127.0.0.1:%d\" ]\n    to: [ files ]\n"
             "    archive: { index: { visit: PV1-19 }, fts: true%s }\n"
             "  adt:\n    listen: [ \"127.0.0.1:%d\" ]\n    to: [ files ]\n") % (p_lab, lab_extra,
                                                                         p_adt)
    extra = "  archive: { index: [ obr-4.1 ] }\n"
    eng = Engine(binary, tmp, chans, dests, engine_extra=extra).start(wait_ports=(p_lab, p_adt))
    return eng, p_lab, p_adt


def test_fields_and_text(binary, tmp):
    eng, p_lab, p_adt = start(binary, tmp)
    data = os.path.join(tmp, "data")
    try:
        with connect(p_lab) as s:
            for ctl, test, visit, note in (("L1", "GLU", "V100", "fasting sample"),
                                           ("L2", "NA", "V200", "hemolyzed sample"),
                                           ("L3", "GLU", "V300", "repeat \"quoted\" OR NOT")):
                assert field(fields(send_recv(s, oru(ctl, test, visit, note))), "MSA", 1) == "AA"
        with connect(p_adt) as s:
            a = fields(send_recv(s, oru("A1", "GLU", "V100", "fasting sample")))
            assert field(a, "MSA", 1) == "AA", a
        wait_for(lambda: count(binary, data) == 4, what="4 messages archived")

        # engine.archive.index (every channel), by path in any case.
        assert search(binary, data, "--field", "OBR-4.1=GLU") == ["A1", "L1", "L3"]
        assert search(binary, data, "--field", "obr-4.1=GLU") == ["A1", "L1", "L3"]
        assert search(binary, data, "--field", "OBR-4.1=glu") == []  # values are exact
        assert count(binary, data, "--field", "OBR-4.1=GLU") == 3
        # The lab channel's own named field, and two fields together.
        assert search(binary, data, "--field", "visit=V100") == ["L1"]
        assert search(binary, data, "--field", "visit=V300", "--field", "OBR-4.1=GLU") == ["L3"]
        assert search(binary, data, "--field", "visit=V300", "--field", "OBR-4.1=NA") == []
        # Full text: only the lab channel has fts on.
        assert search(binary, data, "--text", "fasting") == ["L1"]
        assert search(binary, data, "--text", "SAMPLE") == ["L1", "L2"]
        assert search(binary, data, "--text", "sample hemolyzed") == ["L2"]
        assert search(binary, data, "--text", "GLU^glu") == ["L1", "L3"]  # a phrase
        assert search(binary, data, "--text", "mmol/L", "--field", "visit=V200") == ["L2"]
        assert count(binary, data, "--text", "sample", "--channel", "lab") == 2
        # --json is stable: exactly these keys, id a string, size a number.
        r = tool(binary, "search", data, "--json", "--control-id", "L1")
        row = json.loads(r.stdout)
        assert sorted(row) == sorted(["id", "time", "channel", "peer", "status", "reason", "ack",
                                      "type", "control_id", "sender", "receiver", "size",
                                      "destinations"]), row
        assert isinstance(row["id"], str) and isinstance(row["size"], int), row
        r = tool(binary, "search", data, "--count", "--json", "--text", "sample")
        assert r.returncode == 0 and json.loads(r.stdout) == {"count": 2}, r

        # Hostile --text: FTS5 operators and SQL are words to look for.
        for hostile in ('OR', 'NOT', '"quoted"', 'repeat "quoted" OR NOT', "x' OR '1'='1",
                        "\"; DROP TABLE msg; --", "NEAR(a b)", "*", "body:GLU", "^", "(", ")",
                        '""', "a\"b", "-sample", "sample*", "{body}: x", "'"):
            r = tool(binary, "search", data, "--json", "--text", hostile)
            assert r.returncode == 0, (hostile, r.stderr)
            assert "error" not in r.stderr.lower(), (hostile, r.stderr)
        assert search(binary, data, "--text", '"quoted"') == ["L3"]
        assert search(binary, data, "--text", 'repeat "quoted" OR NOT') == ["L3"]
        assert search(binary, data, "--text", "OR") == ["L3"]  # the word, not the operator
        assert search(binary, data, "--text", "x' OR '1'='1") == []
        assert count(binary, data) == 4  # nothing was dropped
        for bad in ("", "   "):
            r = tool(binary, "search", data, "--text", bad)
            assert r.returncode == 2 and "--text" in r.stderr, r
        r = tool(binary, "search", data, "--field", "nothing")
        assert r.returncode == 2 and "--field" in r.stderr, r
        r = tool(binary, "search", data, "--text", "x" * 2000)
        assert r.returncode == 2 and "--text" in r.stderr, r
        # Delivered at the first attempt: no attempt row, show still says it.
        wait_for(lambda: count(binary, data, "--status", "delivered") == 4, what="4 delivered")
        rid = json.loads(tool(binary, "search", data, "--json", "--control-id", "L1").stdout)["id"]
        out = tool(binary, "show", data, rid).stdout
        assert re.search(r"files \(queue record \d+\): delivered after 1 attempt", out), out
        assert re.search(r"attempt 1 +\S+ +delivered", out), out
        # SQL in a field value is a value.
        assert search(binary, data, "--field", "OBR-4.1=GLU' OR 1=1 --") == []
    finally:
        check_clean_stop(eng)


def test_bad_index_path_refused(binary, tmp):
    conf = os.path.join(tmp, "bad.yaml")
    with open(conf, "w") as f:
        f.write("engine:\n  data_dir: %s/data\n  archive:\n    index: [ PV1-19, OBR-x ]\n"
                "destinations:\n  files: { type: file, dir: %s/out }\n"
                "channels:\n  lab:\n    listen: [ \"127.0.0.1:%d\" ]\n    to: [ files ]\n"
                "    archive: { index: { visit: PID }, fts: maybe, retain: 1h }\n"
                % (tmp, tmp, free_port()))
    r = tool(binary, "check", conf)
    assert r.returncode != 0, r
    err = r.stderr
    assert "bad.yaml:4:22: index: 'OBR-x'" in err, err
    assert "bad.yaml:11:32: index: 'PID': expected a field" in err, err
    assert "bad.yaml:11:44: fts: expected one of true or false" in err, err
    assert "bad.yaml:11:59: retain:" in err, err


def test_damaged_day_file(binary, tmp):
    eng, p_lab, _ = start(binary, tmp)
    data = os.path.join(tmp, "data")
    try:
        with connect(p_lab) as s:
            for i in range(50):
                a = fields(send_recv(s, oru("D%d" % i, "GLU", "V%d" % i, "sample " * 40)))
                assert field(a, "MSA", 1) == "AA", a
        wait_for(lambda: count(binary, data) == 50, what="50 messages archived")
    finally:
        check_clean_stop(eng)
    adir = os.path.join(data, "archive")
    r = tool(binary, "archive", "check", data)
    assert r.returncode == 0 and ": ok" in r.stdout, r.stdout + r.stderr
    day = [n for n in os.listdir(adir) if n.endswith(".db")][0]
    path = os.path.join(adir, day)
    size = os.path.getsize(path)
    assert size > 8 * 4096, size
    with open(path, "r+b") as f:  # garbage over pages 3 and 4 (b-tree pages)
        f.seek(2 * 4096)
        f.write(b"\xA5" * 8192)
    r = tool(binary, "archive", "check", data)
    assert r.returncode == 1 and "DAMAGED" in r.stdout, r.stdout + r.stderr
    # Searching a damaged file fails with a message, never a crash.
    r = tool(binary, "search", data, "--text", "sample")
    assert r.returncode in (0, 1) and r.returncode >= 0, r


def test_prune_per_channel(binary, tmp):
    """lab keeps 1 day, adt the engine's 7: a day file of three days ago
    loses lab's messages (and their words), keeps adt's."""
    eng, p_lab, p_adt = start(binary, tmp, lab_extra=", retain: 1d")
    data = os.path.join(tmp, "data")
    try:
        with connect(p_lab) as s:
            assert field(fields(send_recv(s, oru("L1", "GLU", "V1", "labword"))), "MSA", 1) == "AA"
        with connect(p_adt) as s:
            assert field(fields(send_recv(s, oru("A1", "GLU", "V1", "adtword"))), "MSA", 1) == "AA"
        wait_for(lambda: count(binary, data) == 2, what="2 messages archived")
    finally:
        check_clean_stop(eng)
    adir = os.path.join(data, "archive")
    today = [n for n in os.listdir(adir) if n.endswith(".db")][0]
    old = time.strftime("%Y-%m-%d.db", time.gmtime(time.time() - 3 * 86400))
    import shutil
    shutil.copy(os.path.join(adir, today), os.path.join(adir, old))
    assert count(binary, data, "--text", "labword") == 2  # today's and the copy
    r = tool(binary, "archive", "prune", eng.conf)
    assert r.returncode == 0 and "1 message(s) past their channel's retention" in r.stdout, \
        r.stdout + r.stderr
    assert count(binary, data, "--text", "labword") == 1
    assert count(binary, data, "--channel", "adt") == 2
    r = tool(binary, "archive", "check", data)
    assert "DAMAGED" not in r.stdout, r.stdout


def test_refusals_and_queue_changes(binary, tmp):
    """A client outside `allow:` and a frame cut by a new start block are
    archive records (denied, bad_frame); `queue requeue` and `queue purge`
    are recorded with who and when, and the delivery rows they end say so."""
    p_lab, p_closed = free_port(), free_port()
    with FakeReceiver(lambda m: Reply(code="AR", err="ERR|||207^x^HL70357")) as rcv:
        dests = ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
                 "    on_ar: dead_letter\n") % rcv.port
        chans = ("  lab:\n    listen: [ \"127.0.0.1:%d\" ]\n    to: [ ehr ]\n"
                 "  closed:\n    listen: [ \"127.0.0.1:%d\" ]\n    to: [ ehr ]\n"
                 "    allow: [ 10.0.0.0/8 ]\n") % (p_lab, p_closed)
        eng = Engine(binary, tmp, chans, dests).start(wait_ports=(p_lab,))
        data = os.path.join(tmp, "data")
        try:
            with connect(p_lab) as s:
                for ctl in ("Q1", "Q2"):
                    a = fields(send_recv(s, oru(ctl, "GLU", "V1", "n")))
                    assert field(a, "MSA", 1) == "AA", a
                # A frame cut by a new start block: dropped by the listener.
                s.sendall(SB + b"MSH|^~\\&|half")
                s.sendall(frame(oru("Q3", "GLU", "V1", "n")))
                assert field(fields(read_frame(s)), "MSA", 1) == "AA"
            try:
                with connect(p_closed) as s:
                    s.recv(10)
            except OSError:
                pass
            wait_for(lambda: search(binary, data, "--status", "dead") == ["Q1", "Q2", "Q3"],
                     what="three dead letters in the archive")
            wait_for(lambda: count(binary, data, "--status", "denied") == 1, what="denied")
            wait_for(lambda: count(binary, data, "--status", "bad_frame") == 1, what="bad_frame")
            r = tool(binary, "search", data, "--json", "--status", "denied")
            row = json.loads(r.stdout.splitlines()[0])
            assert row["channel"] == "closed" and row["peer"].startswith("127.0.0.1:"), row
            assert "allow list" in row["reason"], row
        finally:
            check_clean_stop(eng)
    r = tool(binary, "queue", "list", data, "ehr", "--dead")
    assert r.returncode == 0, r.stderr
    r = tool(binary, "queue", "requeue", data, "ehr", "--all")
    assert r.returncode == 0 and r.stdout.count("requeued dead letter") == 3, r.stdout + r.stderr
    r = tool(binary, "queue", "purge", data, "ehr")
    assert r.returncode == 0, r.stdout + r.stderr
    assert search(binary, data, "--status", "requeued") == ["Q1", "Q2", "Q3"]
    r = tool(binary, "archive", "events", data)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sum(" requeue " in x for x in lines) == 3 and sum(" purge " in x for x in lines) == 1, \
        r.stdout
    assert all(" by " in x and "uid %d" % os.getuid() in x for x in lines), r.stdout
    rid = tool(binary, "search", data, "--json", "--control-id", "Q1").stdout
    out = tool(binary, "show", data, json.loads(rid)["id"]).stdout
    assert "requeued after 1 attempt(s), last: requeued as queue record" in out, out


if __name__ == "__main__":
    sys.exit(run_tests([test_fields_and_text, test_bad_index_path_refused,
                        test_damaged_day_file, test_prune_per_channel,
                        test_refusals_and_queue_changes], sys.argv))
