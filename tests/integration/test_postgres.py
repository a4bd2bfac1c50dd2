#!/usr/bin/env python3
"""test_postgres.py - the PostgreSQL destination against a real PostgreSQL 15
server that each test starts (pg_util.PgServer: initdb in a temporary
directory, 127.0.0.1, stopped at the end); rows are checked with psql.

  example     examples/results-to-postgres as written (schema.sql through
              psql, the engine reaching the server through libpq's PG*
              environment): patient, order and observation rows, values
              and NULLs; an admission refused with AR.
  constraint  a row the database refuses (NOT NULL) dead-letters that
              message with its SQLSTATE and constraint, the others go on;
              no patient data in the log.
  restart     the server stopped mid-stream and started again: every
              message arrives, none twice (the statements upsert), rows
              exactly as sent.
  frozen      the server's processes stopped (SIGSTOP): the batch times
              out (timeout: 1s) and is retried; all rows once it answers.

Usage: test_postgres.py CADUCEUS_BINARY [TEST]"""
import os
import re
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (PATIENT, Engine, check_clean_stop, connect, field, fields,  # noqa: E402
                         free_port, run_tests, send_recv, wait_for)
import pg_util  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "results-to-postgres")


def oru(ctl, mrn="700001", nobx=3, code3=True):
    segs = ["MSH|^~\\&|LIS|CITY_LAB|LAB_IN|CITY_HOSP|20240305143000||ORU^R01^ORU_R01|%s|P|2.5.1"
            % ctl,
            "PID|1||%s^^^CITYHOSP^MR||%s||19800412|F" % (mrn, PATIENT),
            "OBR|1|ORD%s|LAB%s|BMP^Basic metabolic panel^L|||20240305121045||||||||||||||||CH|F"
            % (ctl, ctl)]
    for i in range(1, nobx + 1):
        code = ("C%d^Code %d^L" % (i, i)) if code3 else ""
        segs.append("OBX|%d|NM|%s||%d.5|mg/dL|1-9|N|||F" % (i, code, i))
    return ("\r".join(segs) + "\r").encode()


def msa(ackmsg):
    f = fields(ackmsg)
    return field(f, "MSA", 1)


def example_engine(binary, tmp, pg, port):
    """The example as written, on its own port and data directory."""
    exdir = os.path.join(tmp, "ex")
    shutil.copytree(EXAMPLE, exdir)
    conf = os.path.join(exdir, "results-to-postgres.yaml")
    with open(conf) as f:
        text = f.read()
    text = text.replace("127.0.0.1:2581", "127.0.0.1:%d" % port)
    text = text.replace("../../var/data/results-to-postgres", os.path.join(tmp, "data"))
    with open(conf, "w") as f:
        f.write(text)
    return exdir, conf


class Proc:
    """caduceus run CONF with the server's PG* environment."""

    def __init__(self, binary, conf, env, logpath):
        self.logf = open(logpath, "ab")
        self.logpath = logpath
        self.proc = subprocess.Popen([binary, "run", conf], stdout=self.logf, stderr=self.logf,
                                     env=dict(os.environ, **env))

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        self.proc.terminate()
        rc = self.proc.wait(30)
        self.logf.close()
        return rc


def wait_port(port, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.proc.poll() is None, "engine exited:\n" + proc.log()
        try:
            connect(port, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("engine did not listen:\n" + proc.log())


def test_example_rows_through_libpq_environment(binary, tmp):
    with pg_util.PgServer() as pg:
        port = free_port()
        exdir, conf = example_engine(binary, tmp, pg, port)
        # The README's three commands: psql -f schema.sql, then caduceus run.
        r = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f",
                            os.path.join(exdir, "schema.sql")], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, **pg.env()))
        assert r.returncode == 0, r.stderr
        eng = Proc(binary, conf, pg.env(), os.path.join(tmp, "engine.log"))
        try:
            wait_port(port, eng)
            s = connect(port)
            for name in ("oru_final.hl7", "oru_corrected.hl7"):
                with open(os.path.join(exdir, "messages", name), "rb") as f:
                    assert msa(send_recv(s, f.read().replace(b"\n", b"\r"))) == "AA"
            for i in range(20):
                assert msa(send_recv(s, oru("R%04d" % i, mrn="8%05d" % i))) == "AA"
            with open(os.path.join(exdir, "messages", "adt_admit.hl7"), "rb") as f:
                assert msa(send_recv(s, f.read())) == "AR"
            s.close()
            wait_for(lambda: pg.psql("select count(*) from observation") == str(3 + 1 + 60) and
                     pg.psql("select count(*) from orders") == "22" and
                     pg.psql("select count(*) from patient") == "21",
                     timeout=30, what="rows in PostgreSQL")
            assert pg.psql("select value, units, flag from observation where msg_id='LAB000101' "
                           "and set_id=3") == "1.4|mg/dL|H"
            assert pg.psql("select code, value from observation where msg_id='R0007' order by "
                           "set_id") == "C1|1.5\nC2|2.5\nC3|3.5"
            assert pg.psql("select family, given, sex from patient where mrn='556677'") == \
                "Rivera|Ana|F"
            assert pg.psql("select placer, service, status from orders where "
                           "msg_id='LAB000101'") == "ORD4411|BMP|F"
            assert pg.psql("select placer from orders where msg_id='R0003'") == "ORDR0003"
            # Every mapped element of these messages is present: no NULL.
            assert pg.psql("select count(*) from observation where units is null") == "0"
            assert pg.psql("select count(*) from patient where birth_date is null") == "0"
            # The route for a non-result: nothing written for the admission.
            assert pg.psql("select count(*) from orders where msg_id='ADT000201'") == "0"
        finally:
            rc = eng.stop()
        assert rc == 0, eng.log()[-2000:]


DEST_OBS = """  obs:
    type: postgres
    conninfo_env: CAD_TEST_PG
    rows: OBX
    sql: >
      INSERT INTO obs (msg_id, set_id, code, value) VALUES ($1, $2, $3, $4)
      ON CONFLICT (msg_id, set_id) DO UPDATE SET value = EXCLUDED.value
    params: { $1: MSH-10, $2: "OBX[*]-1", $3: "OBX[*]-3.1", $4: "OBX[*]-5" }
    on_failure: dead_letter
    retry: { initial: 100ms, max: 500ms, attempts: 1000 }
"""
TABLE = ("create table obs (msg_id text not null, set_id int not null, code text "
         "constraint obs_code_required not null, value text, primary key (msg_id, set_id))")


def channel(port):
    return ("  lab:\n    listen: [\"127.0.0.1:%d\"]\n    to: [obs]\n" % port)


def test_constraint_violation_dead_letters_with_sqlstate(binary, tmp):
    with pg_util.PgServer() as pg:
        pg.psql(TABLE)
        os.environ["CAD_TEST_PG"] = pg.conninfo()
        port = free_port()
        eng = Engine(binary, tmp, channel(port), DEST_OBS).start(wait_ports=[port])
        try:
            s = connect(port)
            for i in range(10):
                bad = i == 4
                assert msa(send_recv(s, oru("C%03d" % i, code3=not bad))) == "AA"
            s.close()
            wait_for(lambda: pg.psql("select count(*) from obs") == "27", timeout=30,
                     what="the 9 good messages' rows")
            assert pg.psql("select count(*) from obs where msg_id='C004'") == "0"
            r = subprocess.run([binary, "queue", "list", os.path.join(tmp, "data"), "obs",
                                "--dead"], capture_output=True, text=True, timeout=30)
            rows = [ln for ln in r.stdout.splitlines()[1:] if ln.strip()]
            assert len(rows) == 1 and "C004" in rows[0], r.stdout
            assert "23502" in r.stdout, r.stdout
        finally:
            check_clean_stop(eng)
        log = eng.log()
        assert "23502" in log, log[-2000:]
        assert PATIENT.split("^")[0] not in log


def test_server_stopped_mid_stream_nothing_lost_no_duplicates(binary, tmp):
    with pg_util.PgServer() as pg:
        pg.psql(TABLE)
        os.environ["CAD_TEST_PG"] = pg.conninfo()
        port = free_port()
        eng = Engine(binary, tmp, channel(port), DEST_OBS).start(wait_ports=[port])
        n = 300
        sent = []
        try:
            def sender():
                s = connect(port)
                for i in range(n):
                    if msa(send_recv(s, oru("S%04d" % i, nobx=2))) == "AA":
                        sent.append(i)
                    time.sleep(0.005)
                s.close()
            t = threading.Thread(target=sender)
            t.start()
            wait_for(lambda: int(pg.psql("select count(*) from obs")) >= 60, timeout=30,
                     what="the first rows")
            pg.stop("fast")
            time.sleep(1.5)  # messages keep arriving while the server is down
            pg.start()
            t.join(120)
            assert len(sent) == n, "not every message accepted: %d" % len(sent)
            wait_for(lambda: pg.psql("select count(*) from obs") == str(2 * n), timeout=60,
                     what="every row after the restart")
            assert pg.psql("select count(distinct msg_id) from obs") == str(n)
            assert pg.psql("select count(*) from (select msg_id, set_id from obs group by 1, 2 "
                           "having count(*) > 1) d") == "0"
        finally:
            check_clean_stop(eng)
        assert re.search(r"dest\.retry", eng.log()), "the outage was never seen"


def test_server_that_stops_answering_times_out_and_recovers(binary, tmp):
    with pg_util.PgServer() as pg:
        pg.psql(TABLE)
        os.environ["CAD_TEST_PG"] = pg.conninfo()
        port = free_port()
        dest = DEST_OBS + "    timeout: 1s\n"
        eng = Engine(binary, tmp, channel(port), dest).start(wait_ports=[port])
        try:
            s = connect(port)
            for i in range(5):
                assert msa(send_recv(s, oru("T%03d" % i, nobx=1))) == "AA"
            wait_for(lambda: pg.psql("select count(*) from obs") == "5", timeout=30,
                     what="the first rows")
            pg.freeze(True)
            try:
                for i in range(5, 10):
                    assert msa(send_recv(s, oru("T%03d" % i, nobx=1))) == "AA"
                wait_for(lambda: "reason=timeout" in eng.log(), timeout=20,
                         what="a timeout retry in the log")
            finally:
                pg.freeze(False)
            s.close()
            wait_for(lambda: pg.psql("select count(*) from obs") == "10", timeout=60,
                     what="every row once the server answers again")
        finally:
            check_clean_stop(eng)


TESTS = [test_example_rows_through_libpq_environment,
         test_server_that_stops_answering_times_out_and_recovers,
         test_constraint_violation_dead_letters_with_sqlstate,
         test_server_stopped_mid_stream_nothing_lost_no_duplicates]

if __name__ == "__main__":
    if not pg_util.available():
        print("SKIP: PostgreSQL 15 (postgresql) or psql not installed; ./dev.sh installs them")
        sys.exit(77)
    sys.exit(run_tests(TESTS, sys.argv))
