#!/usr/bin/env python3
"""test_replay.py - `caduceus replay` and `caduceus preview` end to end.

replay runs against a sink (engine_util.FakeReceiver: 127.0.0.1, ephemeral
port) that records every message with the time it arrived and answers AA, or
AE with an ERR segment for the messages a test chooses.  Archives are generated
in the test's temporary directory from our own messages: plain ER7 (CR, LF,
CRLF with blank lines), MLLP captures, FHS/BHS batches, each also gzipped;
a gzip file whose members split a message; a truncated gzip file.
preview runs two configurations over an archive and checks counts and the
differences by path.
Usage: test_replay.py CADUCEUS_BINARY [TEST]"""
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (CR, EB, SB, Engine, FakeReceiver, Reply, check_clean_stop,  # noqa: E402
                         ctl_of, free_port, run_tests, wait_for)


def msg(i, trigger="A01", ts=None, code="ADT"):
    """Message number i (control id R%06d), MSH-7 one minute apart from
    2026-01-01 00:00 unless given."""
    if ts is None:
        ts = "2026%02d%02d%02d%02d00" % (1, 1 + i // 1440, (i // 60) % 24, i % 60)
    return ("MSH|^~\\&|LAB|NORTH|EHR|SOUTH|%s||%s^%s^%s_%s|R%06d|P|2.5.1\r"
            "EVN|%s|%s\r"
            "PID|1||%d^^^HOSP^MR||TEST^PATIENT%d||19700101|F\r"
            "OBX|1|NM|GLU^Glucose||%d|mg/dL\r" % (ts, code, trigger, code, trigger, i, trigger,
                                                ts, 1000 + i, i, 90 + i % 20)).encode()


UNKNOWN_MRN = "ERR||PID^1^3|103^Table value not found^HL70357|E||||unknown MRN"


def Sink(reject=lambda c: False, delay=0.0):
    """A FakeReceiver that answers AA, or AE + ERR when reject(MSH-10) is
    true; `delay` seconds before each ACK."""
    return FakeReceiver(lambda m: Reply("AE", err=UNKNOWN_MRN, delay=delay) if reject(m.ctl)
                        else Reply("AA", delay=delay))


def replay(binary, *args, stdin=None, timeout=60):
    p = subprocess.run([binary, "replay", "--quiet"] + list(args), input=stdin,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def write(path, data, gz=False):
    if gz:
        data = gzip.compress(data)
    with open(path, "wb") as f:
        f.write(data)
    return path


def formats(msgs):
    """{name: bytes} of every plain archive format."""
    out = {}
    out["er7_cr"] = b"".join(msgs)  # segments end in \r, messages back to back
    out["er7_lf"] = b"".join(m.replace(b"\r", b"\n") for m in msgs)
    out["er7_crlf_blank"] = b"\r\n\r\n".join(m.replace(b"\r", b"\r\n") for m in msgs)
    out["mllp"] = b"".join(SB + m + EB + CR for m in msgs)
    out["batch"] = (b"FHS|^~\\&|LAB\rBHS|^~\\&|LAB\r" + b"".join(msgs) +
                    b"BTS|%d\rFTS|1\r" % len(msgs))
    return out


# ---- archive formats ---------------------------------------------------------


def test_every_format_plain_and_gzip(binary, tmp):
    msgs = [msg(i) for i in range(1, 41)]
    want = [ctl_of(m) for m in msgs]
    sink = Sink()
    try:
        for name, data in formats(msgs).items():
            for gz in (False, True):
                path = write(os.path.join(tmp, name + (".hl7.gz" if gz else ".hl7")), data, gz)
                before = sink.count()
                rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink.port, path)
                assert rc == 0, (name, gz, rc, so, se)
                got = sink.ctls()[before:]
                assert got == want, (name, gz, got[:5], len(got))
                assert "40 accepted" in so, so
        # what arrives is the message itself (segments end in \r)
        assert sink.messages()[0].data == msgs[0].rstrip(b"\r"), sink.messages()[0].data
    finally:
        sink.stop()


def test_gzip_members_split_a_message_directory_and_stdin(binary, tmp):
    msgs = [msg(i) for i in range(1, 31)]
    data = b"".join(msgs)
    cut = len(data) // 2 + 7  # inside a message
    d = os.path.join(tmp, "archive")
    os.mkdir(d)
    with open(os.path.join(d, "b.hl7.gz"), "wb") as f:
        f.write(gzip.compress(data[:cut]) + gzip.compress(data[cut:]))
    # a second file, read after (sorted by name), and a sub-directory (ignored)
    write(os.path.join(d, "c.hl7"), b"".join(msg(i) for i in range(31, 36)))
    os.mkdir(os.path.join(d, "zz-subdir"))
    write(os.path.join(d, "zz-subdir", "x.hl7"), msg(99))
    sink = Sink()
    try:
        rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink.port, d)
        assert rc == 0, (rc, so, se)
        assert sink.ctls() == ["R%06d" % i for i in range(1, 36)], sink.ctls()
        assert sink.messages()[14].data == msgs[14].rstrip(b"\r")
        # stdin, gzip with three members
        n = sink.count()
        blob = gzip.compress(msgs[0]) + gzip.compress(msgs[1][:20]) + gzip.compress(msgs[1][20:])
        rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink.port, "-", stdin=blob)
        assert rc == 0, (rc, so, se)
        assert sink.ctls()[n:] == ["R000001", "R000002"], sink.ctls()[n:]
    finally:
        sink.stop()


def test_truncated_gzip(binary, tmp):
    msgs = [msg(i) for i in range(1, 201)]
    full = gzip.compress(b"".join(msgs))
    path = write(os.path.join(tmp, "cut.hl7.gz"), full[:len(full) * 2 // 3])
    sink = Sink()
    try:
        rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink.port, path)
        assert rc == 1, (rc, so, se)
        assert "truncated gzip" in se, se
        got = [m.data for m in sink.messages()]
        assert len(got) > 20, len(got)
        # every message sent is complete and in order; the cut one is not sent
        for i, m in enumerate(got):
            assert m == msgs[i].rstrip(b"\r"), (i, m)
        # corrupt data: a clear error too
        bad = bytearray(full)
        bad[len(bad) // 2] ^= 0xFF
        bad[len(bad) // 2 + 1] ^= 0xFF
        path2 = write(os.path.join(tmp, "bad.hl7.gz"), bytes(bad))
        rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink.port, path2)
        assert rc == 1 and ("corrupt gzip" in se or "truncated gzip" in se), (rc, se)
    finally:
        sink.stop()


def test_replay_into_the_engine(binary, tmp):
    port = free_port()
    out = os.path.join(tmp, "out")
    eng = Engine(binary, tmp,
                 "  lab:\n    listen: \"127.0.0.1:%d\"\n    to: [ files ]\n" % port,
                 "  files:\n    type: file\n    dir: %s\n    name: \"${MSH-10}.hl7\"\n" % out)
    eng.start(wait_ports=[port])
    try:
        msgs = [msg(i) for i in range(1, 26)]
        path = write(os.path.join(tmp, "a.mllp.gz"), b"".join(SB + m + EB + CR for m in msgs), True)
        rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % port, "--connections", "4", path)
        assert rc == 0 and "25 accepted" in so, (rc, so, se)
        wait_for(lambda: len([n for n in os.listdir(out) if not n.startswith(".")]) == 25,
                 what="25 files")
        with open(os.path.join(out, "R000007.hl7"), "rb") as f:
            assert f.read() == msgs[6].rstrip(b"\r")
    finally:
        check_clean_stop(eng)


# ---- selection ----------------------------------------------------------------


def test_filters(binary, tmp):
    msgs = []
    for i in range(1, 61):
        trig = ["A01", "A08", "A03"][i % 3]
        msgs.append(msg(i, trigger=trig, code="ORU" if i % 10 == 0 else "ADT"))
    path = write(os.path.join(tmp, "mixed.hl7.gz"), b"".join(msgs), gz=True)
    sink = Sink()
    to = ["--to", "127.0.0.1:%d" % sink.port]

    def run(*a):
        n = sink.count()
        rc, so, se = replay(binary, *(to + list(a) + [path]))
        assert rc == 0, (a, rc, so, se)
        return sink.ctls()[n:]

    def ids(pred):
        return ["R%06d" % i for i in range(1, 61) if pred(i)]

    try:
        assert run("--where", "MSH-9.2 = A08") == ids(lambda i: i % 3 == 1)
        assert run("--where", "MSH-9.1 = ADT and MSH-9.2 in (A01, A03)") == \
            ids(lambda i: i % 10 and i % 3 != 1)
        assert run("--where", "MSH-9.1 ^= OR or PID-3.1 = 1005") == \
            ids(lambda i: i % 10 == 0 or i == 5)
        assert run("--where", "not (MSH-9.1 = ADT) and OBX-5 exists") == ids(lambda i: i % 10 == 0)
        assert run("--where", "{ path: MSH-9.1, equals: ORU }") == ids(lambda i: i % 10 == 0)
        assert run("--type", "ADT^A03") == ids(lambda i: i % 3 == 2 and i % 10)
        assert run("--type", "ORU", "--type", "ADT^A01") == \
            ids(lambda i: i % 10 == 0 or i % 3 == 0)
        # MSH-7 is 2026-01-01 00:i; since is inclusive, until exclusive
        assert run("--since", "202601010010", "--until", "20260101002000") == \
            ids(lambda i: 10 <= i < 20)
        assert run("--since", "2026-01-01T00:50") == ids(lambda i: i >= 50)
        assert run("--limit", "7", "--where", "MSH-9.2 = A01") == ids(lambda i: i % 3 == 0)[:7]
        # errors in --where name the column
        rc, so, se = replay(binary, *(to + ["--where", "MSH-9.1 = ORU and PID-3 %%", path]))
        assert rc == 2 and "--where:1:" in se, (rc, se)
        rc, so, se = replay(binary, *(to + ["--where", "MSH-99x = A", path]))
        assert rc == 2 and "--where:1:7" in se and "MSH-99x" in se, (rc, se)
        rc, so, se = replay(binary, *(to + ["--since", "yesterday", path]))
        assert rc == 2, (rc, se)
    finally:
        sink.stop()


# ---- pacing ---------------------------------------------------------------------


def test_rate_accuracy(binary, tmp):
    n = 401  # 400 intervals at 200/s: 2.0 s
    path = write(os.path.join(tmp, "rate.hl7"), b"".join(msg(i) for i in range(n)))
    sink = Sink()
    try:
        rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink.port, "--rate", "200/s", path)
        assert rc == 0, (rc, so, se)
        got = sink.messages()
        assert len(got) == n
        span = got[-1].time - got[0].time
        assert abs(span - 2.0) <= 0.1, "400 intervals at 200/s took %.3f s" % span
        # 2 connections, same rate
        sink.clear()
        rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink.port, "--rate", "12000/min",
                            "--connections", "2", path)
        assert rc == 0, (rc, so, se)
        got = sink.messages()
        span = got[-1].time - got[0].time
        assert abs(span - 2.0) <= 0.1, "12000/min took %.3f s" % span
        assert sorted(sink.ctls()) == ["R%06d" % i for i in range(n)]
    finally:
        sink.stop()


def test_keep_timing(binary, tmp):
    stamps = ["20260101120000", "20260101120002", "20260101120003", "20260101120007"]
    path = write(os.path.join(tmp, "t.hl7"), b"".join(msg(i, ts=t) for i, t in enumerate(stamps)))
    sink = Sink()
    try:
        rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink.port, "--keep-timing",
                            "--speed", "10x", path)
        assert rc == 0, (rc, so, se)
        got = sink.messages()
        t0 = got[0].time
        offs = [m.time - t0 for m in got]
        for got, want in zip(offs, [0, 0.2, 0.3, 0.7]):
            assert abs(got - want) < 0.06, offs
    finally:
        sink.stop()


# ---- report and resume ------------------------------------------------------------


def test_report_lists_refused_and_replays(binary, tmp):
    msgs = [msg(i) for i in range(1, 51)]
    path = write(os.path.join(tmp, "r.hl7.gz"), b"".join(msgs), gz=True)
    rejected = {"R%06d" % i for i in range(5, 51, 5)}
    sink = Sink(reject=lambda c: c in rejected)
    report = os.path.join(tmp, "report.hl7")
    try:
        rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink.port, "--report", report,
                            "--connections", "3", path)
        assert rc == 1, (rc, so, se)
        assert "40 accepted, 10 not accepted" in so, so
        with open(report, "rb") as f:
            text = f.read()
        heads = [ln for ln in text.split(b"\n") if ln.startswith(b"# source=")]
        assert len(heads) == 10, text[:500]
        seen = set()
        for h in heads:
            h = h.decode()
            assert "ack=AE" in h and path in h, h
            assert 'error="unknown MRN"' in h, h  # ERR-8 of the ACK
            ctl = h.split("control_id=")[1].split()[0]
            off = int(h.split("offset=")[1].split()[0])
            i = int(ctl[1:])
            assert off == sum(len(m) for m in msgs[:i - 1]), (h, off)
            seen.add(ctl)
        assert seen == rejected
        # the report is an archive: replay it to a sink that accepts everything
        sink2 = Sink()
        try:
            rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % sink2.port, report)
            assert rc == 0, (rc, so, se)
            assert set(sink2.ctls()) == rejected and sink2.count() == 10
            for m in sink2.messages():
                assert m.data == msgs[int(m.ctl[1:]) - 1].rstrip(b"\r")
        finally:
            sink2.stop()
    finally:
        sink.stop()


def run_killed(binary, args, after):
    p = subprocess.Popen([binary, "replay", "--quiet"] + args, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    time.sleep(after)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    return p


def test_resume_after_sigkill_sends_each_once(binary, tmp):
    n = 3000
    d = os.path.join(tmp, "arch")
    os.mkdir(d)
    msgs = [msg(i) for i in range(n)]
    write(os.path.join(d, "1.hl7.gz"), b"".join(msgs[:1500]), gz=True)
    write(os.path.join(d, "2.mllp"), b"".join(SB + m + EB + CR for m in msgs[1500:]))
    ck = os.path.join(tmp, "ck")
    sink = Sink()
    try:
        for conns in ("1", "3"):
            sink.clear()
            for f in (ck, ck + ".log"):
                if os.path.exists(f):
                    os.unlink(f)
            args = ["--to", "127.0.0.1:%d" % sink.port, "--rate", "1500/s", "--connections",
                    conns, "--resume", ck, "--checkpoint-every", "100", d]
            run_killed(binary, args, 0.8)
            first = sink.count()
            assert 100 < first < n, first
            run_killed(binary, args, 0.6)  # killed twice
            rc, so, se = replay(binary, *args)
            assert rc == 0, (rc, so, se)
            ids = sink.ctls()
            missing = set("R%06d" % i for i in range(n)) - set(ids)
            assert not missing, sorted(missing)[:5]
            dups = len(ids) - len(set(ids))
            print("  %s connection(s): %d messages received, %d duplicates" %
                  (conns, len(ids), dups))
            # only a message in flight at a kill may come twice: at most one
            # per connection per kill
            assert dups <= 2 * int(conns), (conns, dups)
            assert "3000 finished in all runs" in so, so
            # resuming a finished replay sends nothing
            before = sink.count()
            rc, so, se = replay(binary, *args)
            assert rc == 0 and sink.count() == before, (rc, so, se)
    finally:
        sink.stop()


def test_resume_after_sigterm_is_exactly_once(binary, tmp):
    n = 1500
    path = write(os.path.join(tmp, "a.hl7"), b"".join(msg(i) for i in range(n)))
    ck = os.path.join(tmp, "ck")
    sink = Sink(delay=0.002)
    try:
        args = ["--to", "127.0.0.1:%d" % sink.port, "--rate", "1000/s", "--connections", "2",
                "--resume", ck, path]
        p = subprocess.Popen([binary, "replay", "--quiet"] + args, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        time.sleep(0.6)
        p.send_signal(signal.SIGTERM)
        so, se = p.communicate(timeout=20)
        assert p.returncode == 3, (p.returncode, so, se)
        assert b"interrupted" in so, so
        rc, so, se = replay(binary, *args)
        assert rc == 0, (rc, so, se)
        ids = sink.ctls()
        assert sorted(ids) == ["R%06d" % i for i in range(n)], (len(ids), len(set(ids)))
    finally:
        sink.stop()


def test_unreachable_and_usage(binary, tmp):
    path = write(os.path.join(tmp, "a.hl7"), msg(1) + msg(2))
    port = free_port()  # nothing listens there
    report = os.path.join(tmp, "rep")
    rc, so, se = replay(binary, "--to", "127.0.0.1:%d" % port, "--retries", "1", "--timeout",
                        "1", "--report", report, path)
    assert rc == 1 and "2 failed" in so, (rc, so, se)
    with open(report) as f:
        t = f.read()
    assert t.count("# source=") == 2 and "ack=-" in t and "refused" in t, t
    for bad in (["--rate", "fast"], ["--connections", "0"], ["--speed", "2"], [],
                ["--keep-timing", "--rate", "5"], ["--limit", "0"], ["--bogus"]):
        rc, so, se = replay(binary, *(["--to", "127.0.0.1:1"] + bad + ([path] if bad else [])))
        assert rc == 2, (bad, rc, se)
    rc, so, se = replay(binary, "--to", "127.0.0.1:1", os.path.join(tmp, "nope"))
    assert rc == 1 and "nope" in se, (rc, se)


# ---- preview ------------------------------------------------------------------------

OLD = """\
engine:
  data_dir: %(tmp)s/data
destinations:
  ehr: { type: file, dir: %(tmp)s/out-ehr }
  archive: { type: file, dir: %(tmp)s/out-archive }
  legacy: { type: file, dir: %(tmp)s/out-legacy }
tables:
  loinc: { values: { GLU: "2345-7" } }
channels:
  lab:
    listen: "127.0.0.1:%(port)d"
    routes:
      - name: results
        when: { path: MSH-9.1, equals: ORU }
        to: [ehr, archive]
      - name: adt
        when: { path: MSH-9.2, in: [A01, A08] }
        to: [legacy]
    unrouted: drop
"""

NEW = """\
engine:
  data_dir: %(tmp)s/data
destinations:
  ehr: { type: file, dir: %(tmp)s/out-ehr }
  archive: { type: file, dir: %(tmp)s/out-archive }
tables:
  loinc: { values: { GLU: "2345-7" } }
channels:
  lab:
    listen: "127.0.0.1:%(port)d"
    routes:
      - name: results
        when: { path: MSH-9.1, equals: ORU }
        transform:
          - { map: "OBX[*]-3.1", table: loinc, default: keep }
          - { set: MSH-5, value: EHR2 }
        to: [ehr]
        continue: true
      - name: everything
        to: [archive]
      - name: never
        when: { path: MSH-9.2, equals: ZZZ }
        to: [ehr]
    unrouted: reject
"""


def test_preview_counts_and_diffs(binary, tmp):
    msgs = []
    for i in range(1, 21):
        code = "ORU" if i % 4 == 0 else "ADT"
        trig = "R01" if code == "ORU" else ["A01", "A03"][i % 2]
        msgs.append(msg(i, trigger=trig, code=code))
    arch = write(os.path.join(tmp, "a.hl7.gz"), b"\n".join(msgs), gz=True)
    old = os.path.join(tmp, "old.yaml")
    new = os.path.join(tmp, "new.yaml")
    with open(old, "w") as f:
        f.write(OLD % {"tmp": tmp, "port": 1})
    with open(new, "w") as f:
        f.write(NEW % {"tmp": tmp, "port": 1})
    p = subprocess.run([binary, "preview", "--config", new, "--baseline", old, arch],
                       capture_output=True, timeout=30)
    out = p.stdout.decode()
    assert p.returncode == 0, (p.returncode, out, p.stderr)
    assert 'ehr: OBX-3.1: "GLU" -> "2345-7"' in out, out
    assert 'ehr: MSH-5: "EHR" -> "EHR2"' in out, out
    assert "legacy: lost" in out and "archive: gained" in out, out
    assert "20 messages would change" in out, out
    p = subprocess.run([binary, "preview", "--json", "--config", new, "--baseline", old, arch],
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["messages"] == 20
    # ORU: 5 of 20 (i % 4 == 0); ADT^A01 (even i, not ORU): 5, to legacy in the old one
    assert doc["destinations"]["ehr"] == {"sent": 5, "baseline_sent": 5}, doc["destinations"]
    assert doc["destinations"]["archive"] == {"sent": 20, "baseline_sent": 5}
    assert doc["destinations"]["legacy"]["baseline_sent"] == 5
    assert doc["destinations"]["legacy"]["removed"] is True
    assert doc["dispositions"]["deliver"] == {"new": 20, "old": 10}
    assert doc["dispositions"]["filtered"] == {"new": 0, "old": 10}
    assert doc["changed"] == 20
    c0 = [c for c in doc["changes"] if c["control_id"] == "R000004"][0]
    assert c0["offset"] == sum(len(m) + 1 for m in msgs[:3]), c0
    paths = {(x["destination"], x.get("path")) for x in c0["changes"]}
    assert ("ehr", "OBX-3.1") in paths and ("ehr", "MSH-5") in paths, c0
    # no baseline: counts only; a config without routes for unknown messages rejects
    p = subprocess.run([binary, "preview", "--json", "--config", new, arch], capture_output=True,
                       timeout=30)
    doc = json.loads(p.stdout)
    assert doc["dispositions"]["deliver"] == 20 and "changed" not in doc, doc
    p = subprocess.run([binary, "preview", "--config", new, arch, os.path.join(tmp, "missing")],
                       capture_output=True, timeout=30)
    assert p.returncode == 1 and b"missing" in p.stderr, p.stderr
    p = subprocess.run([binary, "preview", arch], capture_output=True, timeout=30)
    assert p.returncode == 2


FAILING = """\
engine:
  data_dir: %(tmp)s/data
destinations:
  ehr: { type: file, dir: %(tmp)s/out-ehr }
tables:
  sexes: { values: { M: male } }
channels:
  lab:
    listen: "127.0.0.1:1"
    routes:
      - name: results
        when: { path: MSH-9.1, equals: ORU }
        transform:
          - { map: PID-8, table: sexes, default: reject }
        to: [ehr]
    unrouted: reject
"""


def test_preview_says_why_a_message_fails(binary, tmp):
    """Every failing message is listed with its reason, with or without a
    baseline (issue 13 item 18)."""
    msgs = [msg(1, code="ORU", trigger="R01"), msg(2), b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|R9|P|2.5\rP!1|x"]
    arch = write(os.path.join(tmp, "a.hl7"), b"\n".join(msgs))
    cfg = os.path.join(tmp, "c.yaml")
    with open(cfg, "w") as f:
        f.write(FAILING % {"tmp": tmp})
    p = subprocess.run([binary, "preview", "--config", cfg, arch], capture_output=True, timeout=30)
    out = p.stdout.decode()
    assert p.returncode == 0, (p.returncode, out, p.stderr)
    assert re.search(r"R000001: error: route results step 1: PID-8: .*not in table 'sexes' "
                     r"\(HL7 103\)", out), out
    assert "R000002: rejected: no route accepts this message (HL7 200)" in out, out
    assert "R9: rejected: segment id is not 3 letters or digits (HL7 100)" in out, out
    assert "3 messages would fail" in out, out
    p = subprocess.run([binary, "preview", "--json", "--config", cfg, arch], capture_output=True,
                       timeout=30)
    doc = json.loads(p.stdout)
    assert doc["failed"] == 3, doc
    by = {c["control_id"]: c for c in doc["changes"]}
    assert by["R000002"]["reason"] == "no route accepts this message (HL7 200)", by
    assert by["R000001"]["disposition"] == {"old": "error", "new": "error"}, by
    # Against a baseline that delivers them: the change carries the reason.
    with open(os.path.join(tmp, "base.yaml"), "w") as f:
        f.write((FAILING % {"tmp": tmp}).replace("unrouted: reject", "unrouted: ehr")
                .replace("default: reject", "default: keep"))
    p = subprocess.run([binary, "preview", "--config", cfg, "--baseline",
                        os.path.join(tmp, "base.yaml"), arch], capture_output=True, timeout=30)
    out = p.stdout.decode()
    assert "R000002: deliver -> rejected: no route accepts this message (HL7 200)" in out, out


TESTS = [
    test_every_format_plain_and_gzip,
    test_gzip_members_split_a_message_directory_and_stdin,
    test_truncated_gzip,
    test_replay_into_the_engine,
    test_filters,
    test_rate_accuracy,
    test_keep_timing,
    test_report_lists_refused_and_replays,
    test_resume_after_sigkill_sends_each_once,
    test_resume_after_sigterm_is_exactly_once,
    test_unreachable_and_usage,
    test_preview_counts_and_diffs,
    test_preview_says_why_a_message_fails,
]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
