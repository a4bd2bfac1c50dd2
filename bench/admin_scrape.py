#!/usr/bin/env python3
"""admin_scrape.py - what the admin API costs, measured in one run.

  bench/admin_scrape.py [BUILD_DIR] [WORK_DIR]

1. Scrape cost: an engine with 100 channels (each has received a message, so
   every ACK-latency histogram is filled) answers GET /metrics and GET /healthz
   (the empty endpoint: same HTTP path, no work) alternately, 200 times each
   per round, 5 rounds; prints the median time per request of each, the
   difference (the exposition's own cost) and the exposition's size.
2. Throughput: `mllp_load -c 16` against a one-channel engine with a file
   destination (durable path), alternately without and with a scraper that
   GETs /metrics every second and the console's poll (/api/v1/channels every
   5 s), ROUNDS times each; prints the medians and the ratio.

Environment: N16 (messages per load run, default 20000), ROUNDS (default 3).
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

B = sys.argv[1] if len(sys.argv) > 1 else "build"
W = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="cad-bench-admin-")
N16 = int(os.environ.get("N16", "20000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
CAD = os.path.join(B, "engine", "caduceus")
LOAD = os.path.join(B, "bench", "mllp_load")
TOKEN = "bench-token-0123456789"


def free_ports(n):
    """n distinct free ports (held open together while chosen)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_port(port, proc):
    for _ in range(200):
        if proc.poll() is not None:
            raise SystemExit("engine exited; see the log in " + W)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("engine did not listen on %d" % port)


def start(name, chans_yaml, dests_yaml, aport):
    conf = os.path.join(W, name + ".yaml")
    with open(conf, "w") as f:
        f.write("engine:\n  data_dir: %s/data-%s\n  log_level: warn\n  stats_interval: 0\n"
                "admin:\n  listen: \"127.0.0.1:%d\"\n  open_metrics: true\n  tokens:\n"
                "    - { name: bench, role: admin, env: CAD_BENCH_TOKEN }\n"
                "destinations:\n%schannels:\n%s" % (W, name, aport, dests_yaml, chans_yaml))
    log = open(os.path.join(W, name + ".log"), "wb")
    env = dict(os.environ, CAD_BENCH_TOKEN=TOKEN)
    return subprocess.Popen([CAD, "run", conf], stdout=log, stderr=log, env=env)


def get(port, path, token=None):
    """One GET over a fresh connection (the server closes after each answer)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    req = "GET %s HTTP/1.1\r\nHost: x\r\n" % path
    if token:
        req += "Authorization: Bearer %s\r\n" % token
    s.sendall((req + "\r\n").encode())
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        chunks.append(b)
    s.close()
    data = b"".join(chunks)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    return len(data)


def adt(i):
    return ("MSH|^~\\&|LAB|N|EHR|S|20240101120000||ADT^A01|B%d|P|2.5\rPID|1||%d\r" %
            (i, i)).encode()


def send_one(port, msg):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"\x0b" + msg + b"\x1c\r")
    buf = b""
    while b"\x1c\r" not in buf:
        b = s.recv(4096)
        if not b:
            break
        buf += b
    s.close()
    assert b"MSA|AA" in buf, buf


def scrape_cost():
    aport, *ports = free_ports(101)
    chans = "".join("  ch%03d:\n    listen: \"127.0.0.1:%d\"\n    to: [ out ]\n" % (i, p)
                    for i, p in enumerate(ports))
    dests = "  out:\n    type: file\n    append: %s/scrape-out.hl7\n" % W
    eng = start("scrape", chans, dests, aport)
    try:
        wait_port(aport, eng)
        for p in ports:
            wait_port(p, eng)
        for i, p in enumerate(ports):
            send_one(p, adt(i))
        size = get(aport, "/metrics")
        med = {"/metrics": [], "/healthz": []}
        for _ in range(5):
            t = {"/metrics": [], "/healthz": []}
            for _ in range(200):
                for path in ("/metrics", "/healthz"):
                    t0 = time.perf_counter()
                    get(aport, path)
                    t[path].append(time.perf_counter() - t0)
            for path in t:
                med[path].append(statistics.median(t[path]))
        m = statistics.median(med["/metrics"]) * 1e6
        h = statistics.median(med["/healthz"]) * 1e6
        print("scrape, 100 channels: /metrics median %.0f us, /healthz median %.0f us (same run),"
              " exposition cost %.0f us, %d bytes" % (m, h, m - h, size))
        print("  per round medians us: metrics %s healthz %s" %
              ([round(x * 1e6) for x in med["/metrics"]], [round(x * 1e6) for x in med["/healthz"]]))
    finally:
        eng.terminate()
        eng.wait(20)


def throughput():
    port, aport = free_ports(2)
    chans = "  bench:\n    listen: \"127.0.0.1:%d\"\n    to: [ out ]\n" % port
    dests = "  out:\n    type: file\n    append: %s/tp-out.hl7\n" % W
    eng = start("tp", chans, dests, aport)
    try:
        wait_port(port, eng)
        wait_port(aport, eng)
        rates = {"plain": [], "scraped": []}
        for _ in range(ROUNDS):
            for mode in ("plain", "scraped"):
                stop = threading.Event()
                scrapes = [0]

                def scraper():
                    k = 0
                    while not stop.wait(1.0):
                        get(aport, "/metrics")
                        if k % 5 == 0:
                            get(aport, "/api/v1/channels", TOKEN)
                        k += 1
                        scrapes[0] += 1
                th = threading.Thread(target=scraper) if mode == "scraped" else None
                if th:
                    th.start()
                out = subprocess.run([LOAD, "-p", str(port), "-c", "16", "-n", str(N16)],
                                     capture_output=True, text=True, timeout=600).stdout
                stop.set()
                if th:
                    th.join()
                r = float(out.split("msgs_per_s=")[1].split()[0])
                rates[mode].append(r)
                print("  %-7s %8.0f msgs/s%s" % (mode, r, "  (%d scrapes)" % scrapes[0]
                                                  if th else ""))
        p = statistics.median(rates["plain"])
        s = statistics.median(rates["scraped"])
        print("throughput c=16: plain median %.0f msgs/s, with /metrics every 1 s + console poll "
              "median %.0f msgs/s: %.1f %% of plain" % (p, s, 100.0 * s / p))
    finally:
        eng.terminate()
        eng.wait(20)


if __name__ == "__main__":
    os.makedirs(W, exist_ok=True)
    scrape_cost()
    throughput()
