#!/usr/bin/env python3
"""kafka_pg.py - messages/s from an MLLP channel into Kafka (librdkafka's mock
cluster) and into PostgreSQL (a PostgreSQL 15 server started here), next to
the file destination measured in the same run.

  bench/kafka_pg.py [BUILD_DIR]        environment: N (default 20000), RUNS (3), C (16)

For each destination kind, RUNS times on a fresh data_dir: mllp_load sends N
messages over C connections to a channel whose only destination is that
kind; the figure is the drain rate, N / seconds from the first message sent
until `caduceus queue stats` shows all N delivered (so it measures the
destination, not only the journal).  Prints the median per kind and its ratio
to the file destination's.  Everything on 127.0.0.1, stopped at the end."""
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from engine_util import free_port  # noqa: E402
import pg_util  # noqa: E402
from test_kafka import Mock  # noqa: E402

B = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
CAD = os.path.join(B, "engine", "caduceus")
LOAD = os.path.join(B, "bench", "mllp_load")
N = int(os.environ.get("N", "20000"))
RUNS = int(os.environ.get("RUNS", "3"))
C = int(os.environ.get("C", "16"))


def delivered(data):
    r = subprocess.run([CAD, "queue", "stats", data], capture_output=True, text=True, timeout=30)
    for ln in r.stdout.splitlines():
        f = ln.split()
        if f and f[0] == "out":
            return int(f[2])
    return 0


def one(work, dest_yaml, env):
    data = os.path.join(work, "data")
    port = free_port()
    conf = os.path.join(work, "c.yaml")
    with open(conf, "w") as f:
        f.write("engine: {data_dir: %s, log_level: warn, stats_interval: 0}\n"
                "destinations:\n  out:\n%s"
                "channels:\n  c: {listen: \"127.0.0.1:%d\", to: [out]}\n" % (data, dest_yaml, port))
    log = open(os.path.join(work, "engine.log"), "wb")
    p = subprocess.Popen([CAD, "run", conf], stdout=log, stderr=log, env=dict(os.environ, **env))
    try:
        time.sleep(0.5)
        t0 = time.monotonic()
        r = subprocess.run([LOAD, "-p", str(port), "-c", str(C), "-n", str(N)],
                           capture_output=True, text=True, timeout=600)
        ack = r.stdout.strip()
        deadline = time.monotonic() + 600
        while delivered(data) < N:
            if time.monotonic() > deadline:
                raise RuntimeError("not drained: %d of %d" % (delivered(data), N))
            time.sleep(0.05)
        return N / (time.monotonic() - t0), ack
    finally:
        p.terminate()
        p.wait(60)
        log.close()


def main():
    results = {}
    with pg_util.PgServer() as pg, Mock(CAD, 1, "hl7.ADT:4") as mock:
        pg.psql("create table msg (ctl text primary key, mrn text, body_type text)")
        kinds = [
            ("file", "    type: file\n    dir: {work}/out\n", {}),
            ("kafka", "    type: kafka\n    brokers: \"%s\"\n    topic: hl7.${MSH-9.1}\n"
             % mock.bootstrap, {}),
            ("postgres", "    type: postgres\n    conninfo_env: BENCH_PG\n"
             "    sql: INSERT INTO msg VALUES ($1, $2, $3) ON CONFLICT (ctl) DO NOTHING\n"
             "    params: {$1: MSH-10, $2: PID-3.1, $3: MSH-9}\n", {"BENCH_PG": pg.conninfo()}),
        ]
        for run in range(RUNS):
            for name, yaml, env in kinds:  # interleaved: the kinds share the machine's state
                with tempfile.TemporaryDirectory(prefix="cad-bkp-") as work:
                    rate, ack = one(work, yaml.replace("{work}", work), env)
                results.setdefault(name, []).append(rate)
                print("run %d %-8s drain %8.0f msgs/s   (client: %s)" % (run + 1, name, rate, ack),
                      flush=True)
        rows = pg.psql("select count(*) from msg")
    base = statistics.median(results["file"])
    print("\nN=%d C=%d RUNS=%d, median drain rate (messages/s from MLLP to the destination):"
          % (N, C, RUNS))
    for name in ("file", "kafka", "postgres"):
        m = statistics.median(results[name])
        print("  %-8s %8.0f   %5.2fx file" % (name, m, m / base))
    print("postgres rows: %s (one per distinct control id)" % rows)


if __name__ == "__main__":
    main()
