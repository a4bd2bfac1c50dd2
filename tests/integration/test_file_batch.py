#!/usr/bin/env python3
"""The file destination's batch mode against the real binary.

  rolls     messages sent over MLLP land in FHS/BHS ... BTS/FTS files rolled
            by count (max_messages); BTS-1 is the number of messages in each
            file, every message is there once, in order, files are 0600, no
            temporary file is left; those staged at shutdown are published at
            the next start
  age       a batch that does not fill is written max_age after its first
  bytes     rolled by size (max_bytes): no batch over the limit
  crash     messages staged (and ACKed) but not yet in a batch when the
            engine is killed with SIGKILL: the next start publishes them as a
            batch, and no message is lost or written twice

Usage: test_file_batch.py CADUCEUS [CASE...]
"""
import os
import signal
import stat
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import Engine, adt, check_clean_stop, connect, free_port, send_recv, \
    wait_for  # noqa: E402

BIN = os.path.abspath(sys.argv[1])


def batches(out):
    """[(name, [control ids], BTS-1, FTS-1)] of the batch files, by name."""
    res = []
    for n in sorted(os.listdir(out)):
        if n.startswith("."):
            continue
        data = open(os.path.join(out, n), "rb").read()
        segs = [s for s in data.split(b"\r") if s]
        assert segs[0].startswith(b"FHS|^~\\&|LAB|NORTH|EHR|SOUTH|"), segs[0]
        assert segs[1].startswith(b"BHS|^~\\&|LAB|NORTH|EHR|SOUTH|"), segs[1]
        assert segs[0].split(b"|")[8].decode() == n, (segs[0], n)
        assert segs[-2].startswith(b"BTS|") and segs[-1] == b"FTS|1", segs[-2:]
        ids = [s.split(b"|")[9].decode() for s in segs if s.startswith(b"MSH|")]
        assert stat.S_IMODE(os.stat(os.path.join(out, n)).st_mode) == 0o600
        res.append((n, ids, int(segs[-2].split(b"|")[1]), 1))
    return res


def engine(tmp, port, batch):
    return Engine(BIN, tmp, "  in:\n    listen: 127.0.0.1:%d\n    to: out\n" % port,
                  "  out:\n    type: file\n    dir: out\n    batch: %s\n" % batch)


def send_all(port, ids, pad=0):
    s = connect(port)
    for c in ids:
        ack = send_recv(s, adt(ctl=c, pid_name="DOE" + "X" * pad))
        assert b"MSA|AA|" + c.encode() in ack, ack
    s.close()


def case_rolls(tmp):
    """By count (max_age far away, so timing cannot roll a batch early)."""
    port = free_port()
    e = engine(tmp, port, "{ max_messages: 10, max_age: 1h }").start(wait_ports=[port])
    out = os.path.join(tmp, "out")
    try:
        ids = ["R%03d" % i for i in range(25)]
        send_all(port, ids)
        wait_for(lambda: sum(len(b[1]) for b in batches(out)) == 20, timeout=15,
                 what="20 messages in batch files")
        time.sleep(0.5)
        bs = batches(out)
        assert [len(b[1]) for b in bs] == [10, 10], [(b[0], len(b[1])) for b in bs]
        assert all(b[2] == len(b[1]) for b in bs), "BTS-1 is not the message count"
        assert [i for b in bs for i in b[1]] == ids[:20]
        assert [n for n in os.listdir(out) if n.startswith(".batch-tmp")] == []
        assert os.path.getsize(os.path.join(out, ".batch.stage")) > 0  # the 5 others
    finally:
        check_clean_stop(e)
    # The 5 staged at shutdown are published at the next start.
    e = engine(tmp, port, "{ max_messages: 10, max_age: 1h }").start(wait_ports=[port])
    try:
        wait_for(lambda: sum(len(b[1]) for b in batches(out)) == 25, timeout=15,
                 what="the 5 staged published")
        assert [i for b in batches(out) for i in b[1]] == ids
    finally:
        check_clean_stop(e)


def case_age(tmp):
    """By age: a batch that does not fill is written max_age after its first message."""
    port = free_port()
    e = engine(tmp, port, "{ max_messages: 1000, max_age: 500ms }").start(wait_ports=[port])
    out = os.path.join(tmp, "out")
    try:
        send_all(port, ["A1", "A2", "A3"])
        wait_for(lambda: sum(len(b[1]) for b in batches(out)) == 3, timeout=10,
                 what="3 messages in a batch written by age")
        assert all(b[2] == len(b[1]) for b in batches(out))
        # the stage is emptied after the batch file is published (never before:
        # a crash between the two must not lose the messages), so wait for it
        wait_for(lambda: os.path.getsize(os.path.join(out, ".batch.stage")) == 0, timeout=10,
                 what="the stage emptied after the batch was published")
    finally:
        check_clean_stop(e)


def case_bytes(tmp):
    port = free_port()
    size = len(adt(ctl="B000", pid_name="DOE" + "X" * 400))
    e = engine(tmp, port, "{ max_bytes: %d, max_age: 1h }" % (size * 4 + 10)).start(
        wait_ports=[port])
    out = os.path.join(tmp, "out")
    try:
        send_all(port, ["B%03d" % i for i in range(9)], pad=400)
        wait_for(lambda: sum(len(b[1]) for b in batches(out)) == 8, timeout=15,
                 what="8 messages in batch files")
        time.sleep(0.3)
        assert [len(b[1]) for b in batches(out)] == [4, 4]
    finally:
        check_clean_stop(e)


def case_crash(tmp):
    port = free_port()
    e = engine(tmp, port, "{ max_messages: 100000, max_age: 1h }").start(wait_ports=[port])
    out = os.path.join(tmp, "out")
    ids = ["K%04d" % i for i in range(300)]
    send_all(port, ids)
    stage = os.path.join(out, ".batch.stage")
    # Wait until the destination has staged them all (delivered, in the log's counters).
    want = sum(len(adt(ctl=c, pid_name="DOE")) + 12 for c in ids)
    try:
        wait_for(lambda: os.path.exists(stage) and os.path.getsize(stage) >= want,
                 timeout=60, what="300 messages staged (%d bytes)" % want)
        time.sleep(0.3)
    finally:
        e.kill()  # SIGKILL
    assert batches(out) == [], "published before the kill"
    e2 = engine(tmp, port, "{ max_messages: 100000, max_age: 1h }").start(wait_ports=[port])
    try:
        wait_for(lambda: batches(out) != [], timeout=15, what="the staged batch published")
        time.sleep(1.0)
        got = [i for b in batches(out) for i in b[1]]
        assert sorted(set(got)) == ids, "lost: %s" % sorted(set(ids) - set(got))[:5]
        print("crash: %d messages staged before SIGKILL, %d in batches after the restart "
              "(%d repeated)" % (len(ids), len(got), len(got) - len(set(got))))
        assert len(got) == len(set(got)), "a message written twice"
    finally:
        check_clean_stop(e2)


CASES = {"rolls": case_rolls, "age": case_age, "bytes": case_bytes, "crash": case_crash}


def main():
    failed = 0
    for name in sys.argv[2:] or list(CASES):
        tmp = tempfile.mkdtemp(prefix="cad_batch_")
        t0 = time.monotonic()
        try:
            CASES[name](tmp)
            print("ok   %-8s %.1fs" % (name, time.monotonic() - t0))
        except Exception as ex:  # noqa: BLE001
            failed += 1
            import traceback
            traceback.print_exc()
            print("FAIL %-8s %s" % (name, ex))
            try:
                print(open(os.path.join(tmp, "engine.log")).read()[-3000:])
            except OSError:
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
