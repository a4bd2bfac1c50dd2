#!/usr/bin/env python3
"""test_delivery_records.py - what the queue records about deliveries, end to
end with the real binary: the receiver's reason (MSA-3, ERR) kept in dead
letters, `queue list/show --dead` and the log line; dead-letter numbers that
are the log line's `seq`; `queue show` of a delivered / dead message; exact
delivered counts in `queue stats` and in the stats log lines across SIGHUP;
requeueing a channel's route-error dead letter; file destination modes.

Every downstream is an engine_util.FakeReceiver on 127.0.0.1; every wait is
bounded.  Usage: test_delivery_records.py CADUCEUS_BINARY [TEST]"""
import os
import re
import signal
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, FakeReceiver, Reply, adt, check_clean_stop, connect,  # noqa: E402
                         ctl_of, field, fields, frame, free_port, run_tests, send_recv, wait_for)


def qtool(binary, *args, timeout=20):
    return subprocess.run([binary, "queue"] + list(args), capture_output=True, text=True,
                          timeout=timeout)


def stats(binary, data):
    r = qtool(binary, "stats", data)
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines()[1:]:
        p = line.split()
        if len(p) == 6 and p[1].isdigit():
            out[p[0]] = {"depth": int(p[1]), "delivered": int(p[2]), "dead": int(p[3])}
    return out, r.stdout


def send_all(port, ctls, make=adt):
    with connect(port) as s:
        for ctl in ctls:
            f = fields(send_recv(s, make(ctl)))
            assert field(f, "MSA", 1) == "AA", "ACK for %s: %r" % (ctl, f)


def channel(port, to, extra=""):
    return ("  lab:\n    listen: [ \"127.0.0.1:%d\" ]\n%s    to: [ %s ]\n") % (port, extra, to)


def mllp_dest(name, port, extra=""):
    return ("  %s:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
            "    connect_timeout: 1s\n    ack_timeout: 3s\n"
            "    retry: {initial: 100ms, max: 500ms, attempts: 3}\n%s") % (name, port, extra)


def file_dest(name, out, extra=""):
    return "  %s:\n    type: file\n    dir: %s\n%s" % (name, out, extra)


# ---- item 12: the receiver's reason ------------------------------------------

def nak_with_reasons(m):
    if m.ctl != "BAD00002":
        return "AA"
    body = ("MSH|^~\\&|EHR|SOUTH|LAB|NORTH|20260101120000||ACK^A01^ACK|A1|P|2.5.1\r"
            "MSA|AE|%s|Patient not on file\r"
            "ERR|||204^Unknown key identifier^HL70357|E||||PID-3 12345 unknown\r" % m.ctl)
    return Reply(raw=frame(body.encode()))


def test_ae_reason_kept_in_dead_letter_list_show_and_log(binary, tmp):
    port = free_port()
    data = os.path.join(tmp, "data")
    sink = FakeReceiver(nak_with_reasons)
    extra = "    on_ae: dead_letter\n    on_failure: dead_letter\n"
    eng = Engine(binary, tmp, channel(port, "ehr"), mllp_dest("ehr", sink.port, extra))
    try:
        eng.start([port])
        send_all(port, ["BAD%05d" % i for i in range(1, 4)])
        wait_for(lambda: len(sink.accepted()) >= 2, 10, what="the two good messages")
        wait_for(lambda: stats(binary, data)[0].get("ehr", {}).get("dead") == 1, 10,
                 what="one dead letter")
        want = ("AE from receiver: MSA-3: Patient not on file; ERR-3: 204 Unknown key "
                "identifier; ERR-8: PID-3 12345 unknown")
        r = qtool(binary, "list", data, "ehr", "--dead")
        rows = [ln for ln in r.stdout.splitlines()[1:] if ln.strip()]
        assert len(rows) == 1 and want in rows[0], r.stdout
        no = rows[0].split()[0]
        r = qtool(binary, "show", data, "ehr", no, "--dead")
        assert r.returncode == 0 and ("reason: " + want) in r.stderr, r.stderr
        log = eng.log()
        m = re.search(r"event=dest\.dead_letter.*", log)
        assert m and want in m.group(0), log[-2000:]
        # item 17: the dead letter's number is the `seq` of that log line
        assert re.search(r"\bseq=%s\b" % no, m.group(0)), (no, m.group(0))
        assert no == "2"
        check_clean_stop(eng)
    finally:
        eng.kill()
        sink.stop()


# ---- item 17: queue show of a delivered / dead message -----------------------

def test_show_tells_state_and_delivery_time(binary, tmp):
    port = free_port()
    data = os.path.join(tmp, "data")
    sink = FakeReceiver(nak_with_reasons)
    extra = "    on_ae: dead_letter\n    on_failure: dead_letter\n"
    eng = Engine(binary, tmp, channel(port, "ehr"), mllp_dest("ehr", sink.port, extra))
    try:
        eng.start([port])
        send_all(port, ["BAD%05d" % i for i in range(1, 4)])
        wait_for(lambda: stats(binary, data)[0].get("ehr", {}).get("depth") == 0, 10,
                 what="everything finished")
        check_clean_stop(eng)
        r = qtool(binary, "show", data, "ehr", "1")
        assert r.returncode == 0, r.stderr
        assert "state: delivered" in r.stderr, r.stderr
        assert re.search(r"delivered: 20\d\d-\d\d-\d\dT", r.stderr), r.stderr
        assert "ack: AA" in r.stderr, r.stderr  # the receiver's answer, kept in its DONE
        r = qtool(binary, "show", data, "ehr", "2")
        assert "state: dead" in r.stderr, r.stderr
        r = qtool(binary, "show", data, "ehr", "3")
        assert "state: delivered" in r.stderr, r.stderr
    finally:
        eng.kill()
        sink.stop()
    # A receiver that is not there: the next message waits; purged, it says so.
    eng = Engine(binary, tmp, channel(port, "ehr"), mllp_dest("ehr", free_port()))
    try:
        eng.start([port])
        send_all(port, ["WAIT0004"])
        r = qtool(binary, "show", data, "ehr", "4")
        assert r.returncode == 0 and "state: queued" in r.stderr, r.stderr
        check_clean_stop(eng)
        r = qtool(binary, "purge", data, "ehr")
        assert r.returncode == 0, r.stderr
        r = qtool(binary, "show", data, "ehr", "4")
        assert "state: purged" in r.stderr and re.search(r"purged: 20\d\d-", r.stderr), r.stderr
        r = qtool(binary, "show", data, "ehr", "1")
        assert "state: delivered" in r.stderr, r.stderr
    finally:
        eng.kill()


# ---- item 15: delivered counts, and SIGHUP ----------------------------------

def last_dest_stat(eng, name, key):
    vals = re.findall(r"event=stats\.dest[^\n]*destination=%s\b[^\n]*" % re.escape(name),
                      eng.log())
    got = [re.search(r"\b%s=(\d+)" % key, v) for v in vals]
    return int(got[-1].group(1)) if got and got[-1] else -1


def test_stats_count_every_message_across_sighup(binary, tmp):
    port = free_port()
    data, out = os.path.join(tmp, "data"), os.path.join(tmp, "out")
    eng = Engine(binary, tmp, channel(port, "files"), file_dest("files", out))
    try:
        eng.start([port])
        send_all(port, ["S%07d" % i for i in range(200)])
        wait_for(lambda: stats(binary, data)[0].get("files", {}).get("depth") == 0, 20,
                 what="200 delivered")
        wait_for(lambda: stats(binary, data)[0]["files"]["delivered"] == 200, 5,
                 what="queue stats delivered == 200 (%s)" % stats(binary, data)[1])
        wait_for(lambda: last_dest_stat(eng, "files", "delivered") == 200, 5,
                 what="stats.dest delivered=200")
        eng.signal(signal.SIGHUP)
        wait_for(lambda: "event=reload.done" in eng.log(), 10, what="reload.done")
        send_all(port, ["T%07d" % i for i in range(57)])
        wait_for(lambda: stats(binary, data)[0]["files"]["depth"] == 0, 20, what="257 delivered")
        wait_for(lambda: last_dest_stat(eng, "files", "delivered") == 257, 5,
                 what="stats.dest delivered=257 after SIGHUP (%d)" %
                 last_dest_stat(eng, "files", "delivered"))
        st, text = stats(binary, data)
        assert st["files"]["delivered"] == 257, text
        assert len(os.listdir(out)) == 257
        check_clean_stop(eng)
        st, text = stats(binary, data)
        assert st["files"]["delivered"] == 257 and st["files"]["depth"] == 0, text
    finally:
        eng.kill()


# ---- item 14: requeue of a route-error dead letter ---------------------------

ROUTES = ("    routes:\n      - name: sex\n        transform:\n"
          "          - { map: PID-8, table: sex, default: reject }\n"
          "        to: [files]\n    on_error: dead_letter\n")


def routed_config(eng, port, out, values):
    eng.write_config(channel(port, "files", ROUTES).replace("    to: [ files ]\n", ""),
                     file_dest("files", out),
                     engine_extra="tables:\n  sex: { values: { %s } }\n" % values)


def test_requeue_of_route_error_dead_letter_is_routed_again(binary, tmp):
    port = free_port()
    data, out = os.path.join(tmp, "data"), os.path.join(tmp, "out")
    eng = Engine(binary, tmp, "", "")
    routed_config(eng, port, out, "M: male")
    try:
        eng.start([port])
        send_all(port, ["R0000001"])  # PID-8 is F: not in the table, dead letter
        wait_for(lambda: stats(binary, data)[0].get("channel:lab", {}).get("dead") == 1, 10,
                 what="the route dead letter")
        r = qtool(binary, "list", data, "channel:lab", "--dead")
        rows = [ln for ln in r.stdout.splitlines()[1:] if ln.strip()]
        assert len(rows) == 1 and "R0000001" in rows[0], r.stdout
        no = rows[0].split()[0]
        # One number: the log line's seq is the dead letter's number.
        m = re.search(r"event=msg\.dead_letter[^\n]*", eng.log())
        assert m and re.search(r"\bseq=%s\b" % no, m.group(0)), (no, eng.log()[-1500:])
        r = qtool(binary, "show", data, "channel:lab", no, "--dead")
        assert "queue sequence: none" in r.stderr and "reason: route sex step 1" in r.stderr, \
            r.stderr
        check_clean_stop(eng)
        # Requeued with the table unchanged: routed again, it fails again and
        # is a dead letter again, under a new number.
        r = qtool(binary, "requeue", data, "channel:lab", no)
        assert r.returncode == 0 and "requeued" in r.stdout, (r.stdout, r.stderr)
        eng.start([port])
        wait_for(lambda: stats(binary, data)[0]["channel:lab"]["depth"] == 0, 10,
                 what="the requeued message finished")
        check_clean_stop(eng)
        r = qtool(binary, "list", data, "channel:lab", "--dead")
        rows = [ln for ln in r.stdout.splitlines()[1:] if ln.strip()]
        assert len(rows) == 1 and "R0000001" in rows[0] and "routes:" in rows[0], r.stdout
        assert rows[0].split()[0] != no, r.stdout
        no = rows[0].split()[0]
        assert not os.path.isdir(out) or not os.listdir(out)
        # The table is fixed; the dead letter is requeued and must now be routed.
        routed_config(eng, port, out, "M: male, F: female")
        r = qtool(binary, "requeue", data, "channel:lab", no)
        assert r.returncode == 0 and "requeued" in r.stdout, (r.stdout, r.stderr)
        eng.start([port])
        wait_for(lambda: os.path.isdir(out) and len(os.listdir(out)) == 1, 10,
                 what="the requeued message written by the file destination")
        with open(os.path.join(out, os.listdir(out)[0]), "rb") as f:
            assert b"|female\r" in f.read()
        wait_for(lambda: stats(binary, data)[0]["channel:lab"]["depth"] == 0, 10,
                 what="channel:lab depth 0 (%s)" % stats(binary, data)[1])
        st, txt = stats(binary, data)
        assert st["channel:lab"]["dead"] == 0, txt
        check_clean_stop(eng)
    finally:
        eng.kill()


# ---- item 19: modes through the configuration --------------------------------

def test_file_modes_from_config(binary, tmp):
    port = free_port()
    a, b = os.path.join(tmp, "a", "out"), os.path.join(tmp, "b", "out")
    dests = file_dest("priv", a) + file_dest("shared", b, "    mode: \"0640\"\n    dir_mode: "
                                                          "\"0750\"\n")
    old = os.umask(0o022)
    try:
        eng = Engine(binary, tmp, channel(port, "priv, shared"), dests)
        eng.start([port])
        send_all(port, ["MODE0001"])
        wait_for(lambda: os.path.isdir(b) and len(os.listdir(b)) == 1, 10, what="the files")
        wait_for(lambda: len(os.listdir(a)) == 1, 10, what="the files")
        check_clean_stop(eng)
    finally:
        os.umask(old)
        eng.kill()
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(a, "MODE0001.hl7")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(b).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(os.path.join(b, "MODE0001.hl7")).st_mode) == 0o640


if __name__ == "__main__":
    sys.exit(run_tests([test_ae_reason_kept_in_dead_letter_list_show_and_log,
                        test_show_tells_state_and_delivery_time,
                        test_stats_count_every_message_across_sighup,
                        test_requeue_of_route_error_dead_letter_is_routed_again,
                        test_file_modes_from_config], sys.argv))
