#!/usr/bin/env python3
"""Lanes: per-key order over many messages, a hostile receiver, and a crash.

Clients send CAD_LANES_MSGS messages (default 100,000; fewer under ASan) with
random patient ids (PID-3.1, 400 keys) to an engine whose MLLP destination has
`lanes: 8` and `order_by: PID-3.1`.  Each key is sent by one client connection,
one message after the other, so the order of a key's messages in the queue is
the order they were numbered in.  The receiver, written here, answers with
random delays, AE (the engine retries) and dropped connections (no answer).
Midway the engine is killed with SIGKILL and started again on the same
data_dir; clients resend a message whose ACK they did not get.

Also: lanes reduced with messages waiting still drain; a key always refused
goes to its lane's dead letters without holding the other keys, and `queue
requeue` puts it back in that lane, in order; a hot, slow key does not hold
the keys of other lanes; `check` and `queue stats` show
the lanes.

Checks: every message the engine ACKed reaches the receiver (AA); per key, no
message is first accepted before an earlier message of that key (no overtaking,
through the crash too); the engine really delivered on several connections at
once; duplicates (at-least-once: resends after AE timeouts, drops and the
crash) are counted and reported.

Usage: test_lanes.py CADUCEUS   (bounded: about 30-90 s)
"""
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import Checks, Engine, free_port  # noqa: E402

BIN = sys.argv[1]
TOTAL = int(os.environ.get("CAD_LANES_MSGS", "100000"))
KEYS = 400
CONNS = 8
LANES = 8
SB, EB = b"\x0b", b"\x1c\x0d"


def msg(key, n):
    return ("MSH|^~\\&|LANES|TEST|EHR|TEST|20261205120000||ADT^A08^ADT_A01|K%d-%d|P|2.5\r"
            "EVN|A08|20261205120000\rPID|1||%d^^^TEST^MR||LANE^TEST\r" % (key, n, key)).encode()


def read_frame(sock, buf):
    while True:
        i = buf.find(EB)
        if i >= 0:
            j = buf.find(SB)
            frame = bytes(buf[j + 1:i]) if 0 <= j < i else bytes(buf[:i])
            del buf[:i + 2]
            return frame
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf.extend(chunk)


class Receiver:
    """An MLLP receiver with random delays, AE answers and dropped connections."""

    def __init__(self, port=0, calm=False):
        self.calm = calm       # no random delays, AE or drops
        self.reject = set()    # keys always answered AE
        self.slow = {}         # key -> seconds before answering it
        self.when = {}         # (key, n) -> time of its first AA
        self.lock = threading.Lock()
        self.accepted = []     # (key, n) in the order AA was sent
        self.ae = self.drops = self.delayed = 0
        self.active = self.max_active = 0
        self.conns = 0
        self.stop = False
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", port))
        self.srv.listen(64)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.srv.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        rng = random.Random()
        buf = bytearray()
        c.settimeout(30)
        try:
            while not self.stop:
                m = read_frame(c, buf)
                segs = m.split(b"\r")
                ctl = segs[0].split(b"|")[9]
                key, n = (int(x) for x in ctl[1:].split(b"-"))
                with self.lock:
                    self.active += 1
                    self.max_active = max(self.max_active, self.active)
                if key in self.slow:
                    time.sleep(self.slow[key])
                r = 1.0 if self.calm else rng.random()
                if r < 0.03:
                    with self.lock:
                        self.delayed += 1
                    time.sleep(rng.uniform(0.001, 0.02))
                elif r < 0.3:
                    time.sleep(0.0003)  # a little work, so that lanes overlap
                with self.lock:
                    self.active -= 1
                r = 1.0 if self.calm else rng.random()
                if key in self.reject:
                    r = 0.005  # AE
                if r < 0.002:
                    with self.lock:
                        self.drops += 1
                    c.close()          # no answer: the engine retries on a new connection
                    return
                code = b"AE" if r < 0.012 else b"AA"
                ack = (b"MSH|^~\\&|EHR|TEST|LANES|TEST|20261205120000||ACK|A" + ctl +
                       b"|P|2.5\rMSA|" + code + b"|" + ctl + b"\r")
                with self.lock:
                    if code == b"AA":
                        self.accepted.append((key, n))
                        self.when.setdefault((key, n), time.monotonic())
                    else:
                        self.ae += 1
                c.sendall(SB + ack + EB)
        except (OSError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            c.close()


class Client(threading.Thread):
    """Sends its keys' messages one at a time; resends until AA (crash or not)."""

    def __init__(self, cid, port, plan, stop):
        super().__init__(daemon=True)
        self.cid, self.port, self.plan, self.stop = cid, port, plan, stop
        self.acked = set()
        self.sent = 0

    def run(self):
        sock, buf = None, bytearray()
        for key, n in self.plan:
            while not self.stop.is_set():
                try:
                    if sock is None:
                        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                        buf = bytearray()
                    sock.sendall(SB + msg(key, n) + EB)
                    a = read_frame(sock, buf)
                    if b"MSA|AA" in a or b"MSA|CA" in a:
                        self.acked.add((key, n))
                        self.sent += 1
                        break
                    time.sleep(0.01)  # a refusal (queue full?): send again
                except (OSError, ConnectionError):
                    if sock:
                        sock.close()
                    sock = None
                    time.sleep(0.05)
        if sock:
            sock.close()


def main():
    ck = Checks()
    rx = Receiver()
    port = free_port()
    rng = random.Random(16)
    # Numbered per key in sending order; each key belongs to one client.
    counters = [0] * KEYS
    plans = [[] for _ in range(CONNS)]
    for _ in range(TOTAL):
        k = rng.randrange(KEYS)
        counters[k] += 1
        plans[k % CONNS].append((k, counters[k]))
    with tempfile.TemporaryDirectory() as tmp:
        dests = ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
                 "    ack_timeout: 2s\n    lanes: %d\n    order_by: PID-3.1\n"
                 "    retry: { initial: 10ms, max: 50ms, attempts: 1000 }\n"
                 "    on_failure: block\n") % (rx.port, LANES)
        chans = ("  lab:\n    listen: 127.0.0.1:%d\n"
                 "    to: [ ehr ]\n") % port
        eng = Engine(BIN, tmp, chans, dests, log_level="warn")
        eng.start(wait_ports=[port])
        stop = threading.Event()
        clients = [Client(i, port, plans[i], stop) for i in range(CONNS)]
        t0 = time.monotonic()
        for c in clients:
            c.start()
        # SIGKILL once about 40 % is acknowledged, then start again.
        deadline = time.monotonic() + 240
        while sum(c.sent for c in clients) < TOTAL * 0.4 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = len(rx.accepted)
        eng.proc.send_signal(signal.SIGKILL)
        eng.proc.wait()
        eng.logf.close()
        time.sleep(0.2)
        eng.start(wait_ports=[port])
        for c in clients:
            c.join(max(1, deadline - time.monotonic()))
        stop.set()
        sent_all = all(not c.is_alive() for c in clients)
        acked = set()
        for c in clients:
            acked |= c.acked
        ck("every message was sent and ACKed by the engine", sent_all and len(acked) == TOTAL,
           "%d of %d" % (len(acked), TOTAL))

        def got_all():
            with rx.lock:
                return acked <= set(rx.accepted)
        while not got_all() and time.monotonic() < deadline:
            time.sleep(0.1)
        took = time.monotonic() - t0
        with rx.lock:
            accepted = list(rx.accepted)
        seen = set(accepted)
        missing = acked - seen
        ck("nothing lost: every ACKed message reached the receiver", not missing,
           "%d missing, e.g. %s" % (len(missing), sorted(missing)[:5]))
        # Per key: first acceptances in increasing number (no overtaking).
        first = set()
        last = {}
        overtakes = []
        for key, n in accepted:
            if (key, n) in first:
                continue
            first.add((key, n))
            if last.get(key, 0) > n:
                overtakes.append((key, last[key], n))
            last[key] = max(last.get(key, 0), n)
        ck("per-key order holds through AE, drops and SIGKILL", not overtakes,
           "%d overtakes, e.g. %s" % (len(overtakes), overtakes[:5]))
        # Every key's numbers are contiguous from 1 (nothing skipped).
        gaps = [k for k in range(KEYS) if counters[k] and
                {n for (kk, n) in first if kk == k} != set(range(1, counters[k] + 1))]
        ck("every key's messages all arrived", not gaps, "keys with gaps: %s" % gaps[:5])
        ck("delivered in parallel on several connections", rx.max_active >= 2,
           "at most %d at once" % rx.max_active)
        ck("the crash happened mid-run", 0 < before < TOTAL, "%d accepted before" % before)
        dups = len(accepted) - len(seen)
        ck("the receiver misbehaved as planned", rx.ae > 0 and rx.drops > 0,
           "AE %d, drops %d" % (rx.ae, rx.drops))
        print("lanes: %d messages, %d keys, %d lanes in %.1f s; AE %d, drops %d, delayed %d, "
              "connections %d, max parallel %d, duplicates %d (at-least-once)" %
              (TOTAL, KEYS, LANES, took, rx.ae, rx.drops, rx.delayed, rx.conns, rx.max_active,
               dups))
        # queue stats shows the lanes.
        import subprocess
        rc = eng.stop()
        ck("the engine stops cleanly (exit 0: no leak or sanitizer report)", rc == 0,
           "exit %r\n%s" % (rc, eng.log()[-2000:]))
        out = subprocess.run([BIN, "queue", "stats", os.path.join(tmp, "data")],
                             capture_output=True, text=True, timeout=30)
        ck("queue stats lists every lane", all(("ehr#%d" % k) in out.stdout
                                               for k in range(1, LANES)),
           out.stdout + out.stderr)
        tot = [ln.split() for ln in out.stdout.splitlines() if ln.startswith("ehr (8 lanes)")]
        ck("queue stats sums the lanes: nothing waits, every message delivered",
           len(tot) == 1 and tot[0][3] == "0" and int(tot[0][4]) >= TOTAL, out.stdout)
        if ck.failed:
            print(eng.log()[-3000:])
    rx.stop = True
    fewer_lanes(ck)
    dead_letters(ck)
    hot_key(ck)
    return ck.finish()


def fnv_lane(key, n):
    h = 0xcbf29ce484222325
    for b in key.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % n


def dead_letters(ck):
    """One key always refused: its messages go to its lane's dead letters,
    the other keys (its lane's too) go on; requeued, they arrive in order."""
    import subprocess
    rx = Receiver(calm=True)
    rx.reject.add(7)
    port = free_port()
    lane = fnv_lane("7", 4)
    qname = "ehr" if lane == 0 else "ehr#%d" % lane
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        dests = ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
                 "    lanes: 4\n    order_by: PID-3.1\n"
                 "    retry: { initial: 10ms, max: 20ms, attempts: 2 }\n"
                 "    on_failure: dead_letter\n") % rx.port
        chans = "  lab:\n    listen: 127.0.0.1:%d\n    to: [ ehr ]\n" % port
        eng = Engine(BIN, tmp, chans, dests, log_level="error")
        eng.start(wait_ports=[port])
        plan = [(k, n) for n in (1, 2, 3) for k in range(20)]
        Client(0, port, plan, threading.Event()).run()
        want = {(k, n) for (k, n) in plan if k != 7}
        deadline = time.monotonic() + 30
        while not want <= set(rx.accepted) and time.monotonic() < deadline:
            time.sleep(0.05)
        ck("a refused key, dead-lettered, does not hold the others (its lane's too)",
           want <= set(rx.accepted), "%d of %d" % (len(want & set(rx.accepted)), len(want)))
        out = ""
        while time.monotonic() < deadline:
            out = subprocess.run([BIN, "queue", "list", data, qname, "--dead"],
                                 capture_output=True, text=True, timeout=30).stdout
            if out.count("K7-") >= 3:
                break
            time.sleep(0.1)
        ck("its messages are dead letters of its lane (%s)" % qname,
           out.count("K7-") == 3, out)
        eng.stop()
        rx.reject.clear()
        rq = subprocess.run([BIN, "queue", "requeue", data, qname, "--all"],
                            capture_output=True, text=True, timeout=30)
        ck("requeue puts them back in that lane", rq.returncode == 0, rq.stdout + rq.stderr)
        eng.start(wait_ports=[port])
        deadline = time.monotonic() + 30
        while len([x for x in rx.accepted if x[0] == 7]) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        got7 = [n for (k, n) in rx.accepted if k == 7]
        ck("requeued, they arrive in their order", got7 == [1, 2, 3], str(got7))
        rc = eng.stop()
        ck("the engine stops cleanly after the requeue", rc == 0, eng.log()[-2000:])
    rx.stop = True


def fewer_lanes(ck):
    """Messages queued in 8 lanes, the engine restarted with 2: the old lanes drain."""
    dport = free_port()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        def conf(lanes):
            return ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
                    "    lanes: %d\n    order_by: PID-3.1\n"
                    "    retry: { initial: 10ms, max: 50ms, attempts: 1000 }\n") % (dport, lanes)
        chans = "  lab:\n    listen: 127.0.0.1:%d\n    to: [ ehr ]\n" % port
        eng = Engine(BIN, tmp, chans, conf(8), log_level="error")
        import subprocess
        out = subprocess.run([BIN, "check", eng.conf], capture_output=True, text=True, timeout=30)
        ck("check shows the lanes and the key",
           out.returncode == 0 and "8 in parallel, in order per key PID-3.1" in out.stdout,
           out.stdout + out.stderr)
        eng.start(wait_ports=[port])
        stop = threading.Event()
        plan = [(k, 1) for k in range(40)]
        c = Client(0, port, plan, stop)
        c.run()
        eng.stop()
        eng.write_config(chans, conf(2), log_level="error")
        rx = Receiver(dport)
        eng.start(wait_ports=[port])
        deadline = time.monotonic() + 30
        while len(set(rx.accepted)) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        ck("lanes: 8 -> 2 with messages waiting: the old lanes still drain",
           set(rx.accepted) >= set(plan), "%d of 40" % len(set(rx.accepted)))
        rc = eng.stop()
        ck("the engine with drained extra lanes stops cleanly", rc == 0, eng.log()[-2000:])
        rx.stop = True



def hot_key(ck):
    """One hot, slow key (300 messages, 5 ms each at the receiver) beside 60
    keys of 3 messages: the keys in other lanes are all delivered long before
    the hot key is through (its lane alone carries it)."""
    rx = Receiver(calm=True)
    rx.slow[0] = 0.005
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        dests = ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
                 "    lanes: 8\n    order_by: PID-3.1\n") % rx.port
        chans = "  lab:\n    listen: 127.0.0.1:%d\n    to: [ ehr ]\n" % port
        eng = Engine(BIN, tmp, chans, dests, log_level="error")
        eng.start(wait_ports=[port])
        hot = [(0, n) for n in range(1, 301)]
        cold = [(k, n) for n in (1, 2, 3) for k in range(1, 61)]
        a = Client(0, port, hot, threading.Event())
        b = Client(1, port, cold, threading.Event())
        a.start()
        b.start()
        a.join(60)
        b.join(60)
        want = set(hot) | set(cold)
        deadline = time.monotonic() + 60
        while not want <= set(rx.accepted) and time.monotonic() < deadline:
            time.sleep(0.05)
        hot_lane = fnv_lane("0", 8)
        others = [x for x in cold if fnv_lane(str(x[0]), 8) != hot_lane]
        with rx.lock:
            t_hot = max(rx.when.get(x, float("inf")) for x in hot)
            t_others = max(rx.when.get(x, float("inf")) for x in others)
            t0 = min(rx.when.values()) if rx.when else 0
        print("hot key: other lanes done after %.2f s, the hot key after %.2f s" %
              (t_others - t0, t_hot - t0))
        ck("a hot key does not hold the keys of other lanes",
           want <= set(rx.accepted) and (t_others - t0) < 0.5 * (t_hot - t0),
           "other lanes done after %.2f s, the hot key after %.2f s" % (t_others - t0,
                                                                        t_hot - t0))
        rc = eng.stop()
        ck("the engine stops cleanly after the hot key", rc == 0, eng.log()[-2000:])
    rx.stop = True


if __name__ == "__main__":
    sys.exit(main())
