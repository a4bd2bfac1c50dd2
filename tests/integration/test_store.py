#!/usr/bin/env python3
"""test_store.py - the data directory with the real binary: one engine per
data_dir even when data_dir/lock is deleted under a running engine, and every
dead-letter destination registered at start (not on the loop at the first
dead letter).  Usage: test_store.py CADUCEUS_BINARY [TEST]"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, adt, check_clean_stop, connect, field, fields,  # noqa: E402
                         free_port, run_tests, send_recv)


def file_dest(tmp):
    return "  out:\n    type: file\n    dir: %s/out\n" % tmp


def channel(port):
    return "  adt:\n    listen: [ \"127.0.0.1:%d\" ]\n    to: [ out ]\n" % port


def send_one(port, ctl):
    with connect(port) as s:
        f = fields(send_recv(s, adt(ctl)))
    assert field(f, "MSA", 1) == "AA" and field(f, "MSA", 2) == ctl, "ACK for %s: %r" % (ctl, f)


def test_deleted_lock_file_does_not_admit_a_second_engine(binary, tmp):
    port, port2 = free_port(), free_port()
    eng = Engine(binary, tmp, channel(port), file_dest(tmp))
    try:
        eng.start([port])
        send_one(port, "LOCK0001")
        lockfile = os.path.join(tmp, "data", "lock")
        if os.path.exists(lockfile):
            os.unlink(lockfile)  # a tmp cleaner, a config-management tool
        # A second engine on the same data_dir (another port, same data).
        with open(eng.conf) as f:
            text = f.read()
        conf2 = os.path.join(tmp, "second.yaml")
        with open(conf2, "w") as f:
            f.write(text.replace("127.0.0.1:%d" % port, "127.0.0.1:%d" % port2))
        r = subprocess.run([binary, "run", conf2], capture_output=True, text=True, timeout=20,
                           cwd=tmp)
        assert r.returncode != 0, "second engine started on the same data_dir:\n" + r.stderr
        assert "in use by another process (pid %d)" % eng.proc.pid in r.stderr, \
            "no clear refusal naming pid %d:\n%s" % (eng.proc.pid, r.stderr)
        # The queue tool's changing commands are refused the same way.
        q = subprocess.run([binary, "queue", "purge", os.path.join(tmp, "data"), "out"],
                           capture_output=True, text=True, timeout=20)
        assert q.returncode != 0 and "in use by another process" in q.stderr, q.stderr
        # The first engine keeps working.
        send_one(port, "LOCK0002")
        check_clean_stop(eng)
    finally:
        eng.kill()
    # Once it is gone, an engine starts on that data_dir again.
    eng = Engine(binary, tmp, channel(port), file_dest(tmp))
    try:
        eng.start([port])
        send_one(port, "LOCK0003")
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_dead_letter_destinations_registered_at_start(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), file_dest(tmp))
    try:
        eng.start([port])
        r = subprocess.run([binary, "queue", "stats", os.path.join(tmp, "data")],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert re.search(r"^channel:adt\s", r.stdout, re.M), \
            "the channel's dead-letter destination is not registered at start:\n" + r.stdout
        check_clean_stop(eng)
    finally:
        eng.kill()


if __name__ == "__main__":
    sys.exit(run_tests([test_deleted_lock_file_does_not_admit_a_second_engine,
                        test_dead_letter_destinations_registered_at_start], sys.argv))
