#!/usr/bin/env python3
"""test_archive.py - the message archive end to end with the real binary:
messages of every outcome over MLLP (accepted and delivered, delivered after
a retry, dead-lettered after AR, filtered, rejected by a route, unparseable,
too big) are each found by `caduceus search` (patient, control id, type,
status, time, destination) and `caduceus show` prints the journey with every
attempt; the files are 0600 in a 0700 directory; `archive check` agrees with
the journal; after SIGKILL under a bounded load every ACKed message is
searchable after the restart (rebuilt from the journal if the writer lost it).

Every downstream is an engine_util.FakeReceiver on 127.0.0.1; every wait is
bounded.  Usage: test_archive.py CADUCEUS_BINARY [TEST]"""
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, FakeReceiver, Reply, adt, check_clean_stop, connect,  # noqa: E402
                         field, fields, frame, free_port, read_frame, run_tests, send_recv,
                         wait_for)


def oru(ctl, mrn, auth="HOSP", second=None):
    pid3 = "%s^^^%s^MR" % (mrn, auth)
    if second:
        pid3 += "~%s^^^%s^PI" % second
    return ("MSH|^~\\&|LIS|LABFAC|EHR|EHRFAC|20260101120000||ORU^R01^ORU_R01|%s|P|2.5.1\r"
            "PID|1||%s||ZZTESTPATIENT^QUINTESSA||19700101|F\r"
            "OBR|1||R1|CBC\r"
            "OBX|1|NM|WBC||7.5|10*9/L|||||F\r" % (ctl, pid3)).encode()


def tool(binary, *args, timeout=30):
    return subprocess.run([binary] + list(args), capture_output=True, text=True, timeout=timeout)


def search(binary, data, *args):
    r = tool(binary, "search", data, "--json", "--limit", "1000", *args)
    assert r.returncode == 0, "search %r: %s" % (args, r.stderr)
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def ctls(rows):
    return sorted(r["control_id"] for r in rows)


def config(eng_tmp, p_lab, p_strict, rport, big=4096):
    dests = ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
             "    connect_timeout: 1s\n    ack_timeout: 3s\n"
             "    on_ae: retry\n    on_ar: dead_letter\n"
             "    retry: {initial: 100ms, max: 300ms, attempts: 5}\n"
             "    on_failure: dead_letter\n"
             "  files:\n    type: file\n    dir: %s/out\n") % (rport, eng_tmp)
    chans = ("  lab:\n    listen: [ \"127.0.0.1:%d\" ]\n    max_message_size: %d\n"
             "    routes:\n      - { name: oru, when: { path: MSH-9.1, equals: ORU }, to: ehr }\n"
             "  strict:\n    listen: [ \"127.0.0.1:%d\" ]\n"
             "    routes:\n      - { name: oru, when: { path: MSH-9.1, equals: ORU }, to: files }\n"
             "    unrouted: reject\n") % (p_lab, big, p_strict)
    return chans, dests


def decide(m):
    if m.ctl == "C-DEAD":
        return Reply(code="AR", err="ERR|||207^Application internal error^HL70357")
    if m.ctl == "C-RETRY" and m.attempt == 1:
        return "AE"
    return "AA"


def test_every_outcome_is_searchable(binary, tmp):
    p_lab, p_strict = free_port(), free_port()
    with FakeReceiver(decide) as rcv:
        chans, dests = config(tmp, p_lab, p_strict, rcv.port)
        eng = Engine(binary, tmp, chans, dests).start(wait_ports=(p_lab, p_strict))
        data = os.path.join(tmp, "data")
        t_start = time.time()
        try:
            with connect(p_lab) as s:
                for ctl, mrn in (("C-ACC", "P100"), ("C-DEAD", "P200"), ("C-RETRY", "P300")):
                    a = fields(send_recv(s, oru(ctl, mrn, second=("X9", "OTHER"))))
                    assert field(a, "MSA", 1) == "AA", a
                a = fields(send_recv(s, adt("C-FLT")))
                assert field(a, "MSA", 1) == "AA", a  # filtered: AA, nothing queued
                s.sendall(frame(b"HELLO THIS IS NOT HL7"))
                a = fields(read_frame(s))
                assert field(a, "MSA", 1) == "AR", a
            with connect(p_strict) as s:
                a = fields(send_recv(s, adt("C-REJ")))
                assert field(a, "MSA", 1) == "AR", a
            with connect(p_lab) as s:
                big = oru("C-BIG", "P900") + b"NTE|1||" + b"x" * 5000 + b"\r"
                s.sendall(frame(big))
                a = fields(read_frame(s))
                assert field(a, "MSA", 1) == "AR", a
            rcv.wait(lambda msgs: len([m for m in msgs if m.ctl == "C-RETRY"]) >= 2,
                     what="C-RETRY delivered after one AE")
            # The archive is written by its own thread: wait until it has
            # the last delivery and the dead letter.
            wait_for(lambda: ctls(search(binary, data, "--status", "dead")) == ["C-DEAD"],
                     what="C-DEAD dead in the archive")
            wait_for(lambda: "C-RETRY" in ctls(search(binary, data, "--status", "delivered")),
                     what="C-RETRY delivered in the archive")

            assert ctls(search(binary, data, "--patient", "P100")) == ["C-ACC"]
            assert ctls(search(binary, data, "--patient", "P100^HOSP")) == ["C-ACC"]
            assert ctls(search(binary, data, "--patient", "P100^ELSEWHERE")) == []
            # Every repetition of PID-3 is indexed.
            assert ctls(search(binary, data, "--patient", "X9^OTHER")) == \
                ["C-ACC", "C-DEAD", "C-RETRY"]
            rows = search(binary, data, "--control-id", "C-DEAD")
            assert len(rows) == 1 and rows[0]["status"] == "accepted", rows
            assert rows[0]["destinations"] == "ehr:dead", rows
            assert rows[0]["channel"] == "lab" and rows[0]["ack"] == "AA", rows
            # C-BIG too: a frame too big is indexed from its first bytes.
            assert ctls(search(binary, data, "--type", "ORU^R01")) == \
                ["C-ACC", "C-BIG", "C-DEAD", "C-RETRY"]
            assert ctls(search(binary, data, "--type", "ADT")) == ["C-FLT", "C-REJ"]
            assert ctls(search(binary, data, "--status", "filtered")) == ["C-FLT"]
            rej = search(binary, data, "--status", "rejected")
            assert sorted(r["status"] for r in rej) == ["rejected", "too_big", "unparseable"], rej
            assert all(r["ack"] == "AR" for r in rej), rej
            unp = search(binary, data, "--status", "unparseable")
            assert len(unp) == 1 and unp[0]["reason"], unp
            big = search(binary, data, "--status", "too_big")
            assert len(big) == 1 and big[0]["size"] > 5000, big
            assert ctls(search(binary, data, "--dest", "ehr")) == ["C-ACC", "C-DEAD", "C-RETRY"]
            assert ctls(search(binary, data, "--channel", "strict")) == ["C-REJ"]
            assert len(search(binary, data, "--since", "10m")) == 7
            assert search(binary, data, "--until", "1h") == []
            since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t_start - 2))
            assert len(search(binary, data, "--since", since)) == 7
            # Newest first, limit.
            rows = search(binary, data, "--limit", "2")
            assert len(rows) == 2 and int(rows[0]["id"]) > int(rows[1]["id"]), rows
            # The table (default) and the config file as argument.
            r = tool(binary, "search", eng.conf, "--patient", "P300")
            assert r.returncode == 0 and "C-RETRY" in r.stdout and "ehr:delivered" in r.stdout, \
                r.stdout + r.stderr

            # show: the record, the tree, the journey with both attempts.
            rid = search(binary, data, "--control-id", "C-RETRY")[0]["id"]
            r = tool(binary, "show", data, rid)
            assert r.returncode == 0, r.stderr
            out = r.stdout
            assert "channel     lab" in out and "ack sent    AA" in out, out
            assert re.search(r"PID-3\[2\]\.1\s+X9", out), out
            assert "ehr (queue record" in out and "delivered after 2 attempt(s)" in out, out
            assert re.search(r"attempt 1 .* retry ", out), out
            assert re.search(r"attempt 2 .* delivered", out), out
            # The id in the log line is the archive's.
            assert ("id=%s " % rid) in eng.log() or ("id=%s\n" % rid) in eng.log(), \
                eng.log()[-2000:]
            r = subprocess.run([binary, "show", data, rid, "--raw"], capture_output=True,
                               timeout=30)
            assert r.returncode == 0 and r.stdout == oru("C-RETRY", "P300",
                                                         second=("X9", "OTHER")), r.stdout
            did = search(binary, data, "--control-id", "C-DEAD")[0]["id"]
            out = tool(binary, "show", data, did).stdout
            assert "ehr (queue record" in out and ": dead after 1 attempt(s)" in out, out
            assert re.search(r"attempt 1 .* failed ", out) and "attempt 2" in out, out
            r = tool(binary, "search", data, "--status", "deliverd")
            assert r.returncode == 2 and "expected accepted" in r.stderr, r
            r = tool(binary, "search", data, "--since", "yesterday")
            assert r.returncode == 2 and "--since" in r.stderr, r
            r = tool(binary, "show", data, "12345")
            assert r.returncode == 1 and "not in the archive" in r.stderr, r

            # Files: 0700 directory, 0600 files.
            adir = os.path.join(data, "archive")
            assert stat.S_IMODE(os.stat(adir).st_mode) == 0o700
            for n in os.listdir(adir):
                assert stat.S_IMODE(os.stat(os.path.join(adir, n)).st_mode) == 0o600, n
            r = tool(binary, "archive", "check", data)
            assert r.returncode == 0 and "0 missing" in r.stdout, r.stdout + r.stderr
            r = tool(binary, "archive", "stats", data)
            assert r.returncode == 0 and "7 messages" in r.stdout, r.stdout + r.stderr
            # prune: a day file past retention goes whole; today's stays.
            import shutil
            today = [n for n in os.listdir(adir) if n.endswith(".db")][0]
            shutil.copy(os.path.join(adir, today), os.path.join(adir, "2020-01-01.db"))
            r = tool(binary, "archive", "prune", data, "--retain", "7d")
            assert r.returncode == 0 and "deleted 1 day file(s)" in r.stdout, r.stdout + r.stderr
            assert sorted(n for n in os.listdir(adir) if n.endswith(".db")) == [today]
            assert len(search(binary, data, "--since", "10m")) == 7
            # The engine's counters (stats_interval 1s in the test config).
            wait_for(lambda: re.search(r"event=stats.archive written=\d+ dropped=0 failed=0",
                                       eng.log()), what="a stats.archive line")
        finally:
            check_clean_stop(eng)


def test_sigkill_under_load_keeps_acked_messages_searchable(binary, tmp):
    """Bounded load (4 connections x 150 messages), SIGKILL in the middle,
    restart: every ACKed message is found by its control id."""
    p_lab, p_strict = free_port(), free_port()
    with FakeReceiver() as rcv:
        chans, dests = config(tmp, p_lab, p_strict, rcv.port)
        eng = Engine(binary, tmp, chans, dests).start(wait_ports=(p_lab, p_strict))
        data = os.path.join(tmp, "data")
        acked, lock = [], threading.Lock()

        def client(k):
            try:
                with connect(p_lab) as s:
                    for i in range(150):
                        ctl = "K%d-%d" % (k, i)
                        a = fields(send_recv(s, oru(ctl, "M%d" % i), timeout=5))
                        if field(a, "MSA", 1) == "AA":
                            with lock:
                                acked.append(ctl)
            except (OSError, ConnectionError, TimeoutError):
                pass  # the kill

        ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        wait_for(lambda: len(acked) >= 200, timeout=30, what="200 ACKs")
        eng.kill()
        for t in ts:
            t.join(20)
        got = set(acked)
        assert len(got) >= 200
        eng = Engine(binary, tmp, chans, dests).start(wait_ports=(p_lab,))
        try:
            def all_found():
                rows = search(binary, data, "--type", "ORU^R01", "--limit", "100000")
                return got <= {r["control_id"] for r in rows}
            wait_for(all_found, timeout=30, what="every ACKed message in the archive")
            # Say whether this run needed the rebuild (it depends on timing).
            m = re.search(r"event=archive.rebuilt .*", eng.log())
            print("# %d ACKed before SIGKILL; %s" % (len(got), m.group(0) if m else
                                                     "nothing to rebuild"))
            r = tool(binary, "archive", "check", data)
            assert r.returncode == 0 and "0 missing" in r.stdout, r.stdout + r.stderr
        finally:
            check_clean_stop(eng)


def test_archive_off(binary, tmp):
    p_lab, p_strict = free_port(), free_port()
    with FakeReceiver() as rcv:
        chans, dests = config(tmp, p_lab, p_strict, rcv.port)
        eng = Engine(binary, tmp, chans, dests, engine_extra="  archive: { enabled: false }\n")
        eng.start(wait_ports=(p_lab,))
        try:
            with connect(p_lab) as s:
                assert field(fields(send_recv(s, oru("C-OFF", "P1"))), "MSA", 1) == "AA"
        finally:
            check_clean_stop(eng)
        assert not os.path.exists(os.path.join(tmp, "data", "archive"))
        assert " id=" not in eng.log()


if __name__ == "__main__":
    sys.exit(run_tests([test_every_outcome_is_searchable,
                        test_sigkill_under_load_keeps_acked_messages_searchable,
                        test_archive_off], sys.argv))
