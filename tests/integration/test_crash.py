#!/usr/bin/env python3
"""Crash test of the durable queue: kill -9 under load, many times.

Clients send numbered messages on several connections and record every control
id that got a positive ACK.  The engine is killed with SIGKILL at random moments
(at least 20 times) and restarted each time; clients reconnect and go on (a
message whose ACK never came is sent again, as a real sender would).  At the
end every ACKed control id must have reached the destination (an append file),
in order per connection.  Duplicates are counted and reported (at-least-once).

Usage: test_crash.py CADUCEUS [ROUNDS]   (bounded: about 30-60 s)
"""
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 20
CONNS = 4
SB, EB = b"\x0b", b"\x1c\x0d"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def msg(ctl):
    return ("MSH|^~\\&|CRASH|TEST|ENGINE|TEST|20261125120000||ADT^A08^ADT_A01|%s|P|2.5\r"
            "EVN|A08|20261125120000\rPID|1||%s^^^TEST^MR||CRASH^TEST\r" % (ctl, ctl)).encode()


def read_frame(sock, buf):
    while True:
        i = buf.find(EB)
        if i >= 0:
            j = buf.find(SB)
            frame = buf[j + 1:i] if j >= 0 and j < i else buf[:i]
            del buf[:i + 2]
            return frame
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf.extend(chunk)


class Client(threading.Thread):
    def __init__(self, cid, port, stop):
        super().__init__(daemon=True)
        self.cid, self.port, self.stop = cid, port, stop
        self.acked = []       # control ids with AA, in order
        self.next = 1
        self.nak = 0

    def run(self):
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            except OSError:
                time.sleep(0.05)
                continue
            s.settimeout(5)
            buf = bytearray()
            try:
                while not self.stop.is_set():
                    ctl = "C%d-%06d" % (self.cid, self.next)
                    s.sendall(SB + msg(ctl) + EB)
                    ack = read_frame(s, buf).decode("latin-1")
                    msa = [seg for seg in ack.split("\r") if seg.startswith("MSA")]
                    fields = msa[0].split("|") if msa else []
                    if len(fields) > 2 and fields[1] in ("AA", "CA") and fields[2] == ctl:
                        self.acked.append(ctl)
                        self.next += 1
                    else:
                        self.nak += 1
                        time.sleep(0.01)
            except (OSError, ConnectionError, IndexError):
                pass
            finally:
                s.close()


def main():
    work = tempfile.mkdtemp(prefix="cad_crash_")
    port = free_port()
    out = os.path.join(work, "out.hl7")
    cfg = os.path.join(work, "crash.yaml")
    with open(cfg, "w") as f:
        f.write(f"""engine:
  data_dir: {work}/data
  log_level: warn
destinations:
  sink:
    type: file
    append: {out}
channels:
  crash:
    listen: ["127.0.0.1:{port}"]
    to: [sink]
""")
    log = open(os.path.join(work, "engine.log"), "ab")

    def start():
        p = subprocess.Popen([BIN, "run", cfg], stdout=log, stderr=log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return p
            except OSError:
                if p.poll() is not None:
                    raise SystemExit("engine exited at start; see " + log.name)
                time.sleep(0.02)
        raise SystemExit("engine did not listen")

    stop = threading.Event()
    clients = [Client(i, port, stop) for i in range(CONNS)]
    proc = start()
    for c in clients:
        c.start()
    rng = random.Random(int(os.environ.get("CAD_CRASH_SEED", "1")))
    kills = 0
    for _ in range(ROUNDS):
        time.sleep(rng.uniform(0.2, 1.0))
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        if proc.wait() == -signal.SIGKILL and alive:
            kills += 1
        proc = start()
    time.sleep(1.0)
    stop.set()
    for c in clients:
        c.join(10)
    # Let delivery drain, then stop cleanly.
    acked = {ctl for c in clients for ctl in c.acked}
    deadline = time.time() + 20
    seen = []
    while time.time() < deadline:
        with open(out, "rb") as f:
            data = f.read()
        seen = []
        for line in data.replace(b"\n", b"\r").split(b"\r"):
            if line.startswith(b"MSH|"):
                parts = line.split(b"|")
                if len(parts) > 9:
                    seen.append(parts[9].decode())
        if acked <= set(seen):
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(15)

    missing = sorted(acked - set(seen))
    dups = len(seen) - len(set(seen))
    order_ok = True
    for c in clients:
        first = []
        got = set()
        for ctl in seen:
            if ctl.startswith("C%d-" % c.cid) and ctl not in got:
                got.add(ctl)
                first.append(ctl)
        if first != sorted(first):
            order_ok = False
    total = sum(len(c.acked) for c in clients)
    print(f"kills: {kills}, acked: {total}, delivered records: {len(seen)}, "
          f"duplicates: {dups}, missing: {len(missing)}, naks: {sum(c.nak for c in clients)}")
    failed = 0
    checks = [
        ("at least 20 kills" if ROUNDS >= 20 else f"{ROUNDS} kills", kills >= ROUNDS),
        ("some messages acked", total > 0),
        ("every acked message delivered (zero loss)", not missing),
        ("order per connection kept", order_ok),
        ("clean exit on SIGTERM", rc == 0),
    ]
    for name, ok in checks:
        print(("ok - " if ok else "FAIL - ") + name)
        failed += 0 if ok else 1
    if missing:
        print("missing (first 10):", missing[:10])
    print(f"{len(checks) - failed} passed, {failed} failed")
    if not failed:
        subprocess.run(["rm", "-rf", work])
    else:
        print("work directory kept:", work)
    sys.exit(1 if failed else 0)


main()
