#!/usr/bin/env python3
"""test_admin.py - the admin HTTP API (engine/runtime/admin.h) driven with curl
against the real engine: every endpoint and role (200/401/403/404/405/413/
429), the Prometheus exposition after real traffic (checked by `promtool
check metrics`), a real Prometheus scraping the engine every second, the
configuration's errors, and `caduceus token new`.

The Prometheus test skips (saying so) only when the prometheus binary is
absent; dev.sh installs Debian's `prometheus`, so CI runs it.
Usage: test_admin.py CADUCEUS_BINARY [TEST]"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, adt, check_clean_stop, connect, field, fields,  # noqa: E402
                         free_port, run_tests, send_recv, wait_for)

DESTS = "  out:\n    type: file\n    dir: out\n"


def token_new(binary, name, role):
    p = subprocess.run([binary, "token", "new", name, "--role", role], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    tok = re.search(r"^token: (\S+)$", p.stdout, re.M).group(1)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("- {")][0]
    assert tok not in line, "the config line must not hold the token itself"
    return tok, line


def curl(port, path, token=None, method="GET", data=None, headers=()):
    args = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{content_type}", "-X", method,
            "--max-time", "10"]
    if token is not None:
        args += ["-H", "Authorization: Bearer " + token]
    for h in headers:
        args += ["-H", h]
    if data is not None:
        args += ["--data-binary", "@-"]
    args.append("http://127.0.0.1:%d%s" % (port, path))
    p = subprocess.run(args, input=data, capture_output=True, timeout=20)
    assert p.returncode == 0, "curl %s: %s" % (path, p.stderr.decode())
    body, _, tail = p.stdout.rpartition(b"\n")
    status, _, ctype = tail.decode().partition(" ")
    return int(status), ctype, body.decode("utf-8", "replace")


def start(binary, tmp, admin_yaml, env=None):
    port, aport = free_port(), free_port()
    chans = "  lab:\n    listen: \"127.0.0.1:%d\"\n    to: [ out ]\n" % port
    extra = "admin:\n  listen: \"127.0.0.1:%d\"\n%s" % (aport, admin_yaml)
    eng = Engine(binary, tmp, chans, DESTS, engine_extra=extra)
    old = dict(os.environ)
    os.environ.update(env or {})
    try:
        eng.start(wait_ports=(port, aport))
    finally:
        os.environ.clear()
        os.environ.update(old)
    return eng, port, aport


def send_messages(port, n):
    s = connect(port)
    for i in range(n):
        a = send_recv(s, adt(ctl="ADM%05d" % i))
        assert field(fields(a), "MSA", 1) == "AA", a
    s.close()


def json_of(body):
    return json.loads(body)


def test_endpoints_and_roles(binary, tmp):
    vtok, vline = token_new(binary, "dash", "viewer")
    otok, _ = token_new(binary, "ops", "operator")
    atok, aline = token_new(binary, "root", "admin")
    admin = ("  open_metrics: true\n  tokens:\n    %s\n"
             "    - { name: ops, role: operator, env: CAD_TEST_OPS_TOKEN }\n    %s\n" %
             (vline, aline))
    eng, port, aport = start(binary, tmp, admin, {"CAD_TEST_OPS_TOKEN": otok})
    try:
        send_messages(port, 3)
        st, ct, body = curl(aport, "/healthz")
        assert (st, ct) == (200, "application/json"), (st, ct, body)
        assert json_of(body) == {"status": "alive"}
        st, ct, body = curl(aport, "/readyz")
        assert st == 200 and json_of(body)["ready"] is True, (st, body)
        st, ct, body = curl(aport, "/metrics")
        assert st == 200 and ct.startswith("text/plain; version=0.0.4"), (st, ct)
        assert 'caduceus_channel_received_total{channel="lab"} 3' in body, body
        # /api/v1 always needs a token: none, a wrong one, a malformed header
        for tok, hdr in ((None, ()), ("not-a-token", ()), (None, ("Authorization: Basic eA==",))):
            st, ct, body = curl(aport, "/api/v1/channels", token=tok, headers=hdr)
            assert (st, ct) == (401, "application/json"), (st, ct, body)
            assert json_of(body)["error"] == "unauthorized"
        st, ct, body = curl(aport, "/api/v1/no-such-thing")
        assert st == 401, (st, body)
        for tok in (vtok, otok, atok):
            st, ct, body = curl(aport, "/api/v1/channels", token=tok)
            assert (st, ct) == (200, "application/json"), (st, ct, body)
            doc = json_of(body)
            lab = [c for c in doc["channels"] if c["name"] == "lab"][0]
            assert lab["received"] == 3 and lab["accepted"] == 3, lab
            out = [d for d in doc["destinations"] if d["name"] == "out"][0]
            wait_for(lambda: json_of(curl(aport, "/api/v1/channels", token=tok)[2])
                     ["destinations"][0]["delivered"] == 3, what="3 delivered in the API")
            assert out["blocked"] is False
        # role: /api/v1/tokens is for admin only
        for tok in (vtok, otok):
            st, ct, body = curl(aport, "/api/v1/tokens", token=tok)
            assert (st, ct) == (403, "application/json"), (st, ct, body)
            assert json_of(body)["error"] == "forbidden"
        st, ct, body = curl(aport, "/api/v1/tokens", token=atok)
        assert st == 200, (st, body)
        names = {t["name"]: t["role"] for t in json_of(body)["tokens"]}
        assert names == {"dash": "viewer", "ops": "operator", "root": "admin"}, names
        assert "sha256" not in body
        # unknown path, bad method: JSON, never HTML
        # ("/" is the console's page: test_admin_ops.py checks it.)
        for path, tok, want in (("/nope", None, 404), ("/api/v1/nope", vtok, 404),
                                ("/console/x", None, 404), ("/metrics/../x", None, 404)):
            st, ct, body = curl(aport, path, token=tok)
            assert (st, ct) == (want, "application/json"), (path, st, ct, body)
            json_of(body)
        for method, path, tok in (("POST", "/metrics", None), ("DELETE", "/healthz", None),
                                  ("PUT", "/api/v1/channels", vtok)):
            st, ct, body = curl(aport, path, token=tok, method=method)
            assert (st, ct) == (405, "application/json"), (method, path, st, ct, body)
            assert json_of(body)["error"] == "method_not_allowed"
        # a body over the bound is refused before the handler
        st, ct, body = curl(aport, "/api/v1/channels", token=vtok, method="POST",
                            data=b"x" * (1 << 20))
        assert st == 413, (st, body)
        # and the engine still answers
        assert curl(aport, "/healthz")[0] == 200
    finally:
        check_clean_stop(eng)
    log = eng.log()
    for tok in (vtok, otok, atok):
        assert tok not in log, "a token in the log"


def test_readyz_blocked_destination(binary, tmp):
    """A destination blocked past its attempts makes /readyz 503 with the reason."""
    port, aport, down = free_port(), free_port(), free_port()
    chans = "  lab:\n    listen: \"127.0.0.1:%d\"\n    to: [ ehr ]\n" % port
    dests = ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
             "    connect_timeout: 1s\n    retry: { initial: 50ms, max: 100ms, attempts: 2 }\n"
             "    on_failure: block\n" % down)
    extra = "admin:\n  listen: \"127.0.0.1:%d\"\n  open_metrics: true\n" % aport
    eng = Engine(binary, tmp, chans, dests, engine_extra=extra)
    eng.start(wait_ports=(port, aport))
    try:
        st, ct, body = curl(aport, "/readyz")
        assert st == 200, (st, body)
        send_messages(port, 1)
        wait_for(lambda: curl(aport, "/readyz")[0] == 503, timeout=20,
                 what="/readyz 503 while ehr is blocked")
        st, ct, body = curl(aport, "/readyz")
        assert json_of(body) == {"ready": False, "reason": "a destination is blocked"}, body
        assert 'caduceus_destination_blocked{destination="ehr"} 1' in curl(aport, "/metrics")[2]
        assert curl(aport, "/healthz")[0] == 200
    finally:
        check_clean_stop(eng)


def test_closed_metrics_need_a_token(binary, tmp):
    vtok, vline = token_new(binary, "dash", "viewer")
    eng, port, aport = start(binary, tmp, "  tokens:\n    %s\n" % vline)
    try:
        for path in ("/metrics", "/healthz", "/readyz"):
            st, ct, body = curl(aport, path)
            assert (st, ct) == (401, "application/json"), (path, st, body)
            assert curl(aport, path, token=vtok)[0] == 200, path
    finally:
        check_clean_stop(eng)


def test_failed_attempts_are_rate_limited(binary, tmp):
    vtok, vline = token_new(binary, "dash", "viewer")
    eng, port, aport = start(binary, tmp, "  open_metrics: true\n  tokens:\n    %s\n" % vline)
    try:
        for i in range(10):
            assert curl(aport, "/api/v1/channels", token="guess%d" % i)[0] == 401, i
        st, ct, body = curl(aport, "/api/v1/channels", token="guess-more")
        assert (st, ct) == (429, "application/json"), (st, body)
        # locked for the address: even the right token waits for the window
        assert curl(aport, "/api/v1/channels", token=vtok)[0] == 429
        # the open endpoints are not affected
        assert curl(aport, "/metrics")[0] == 200
        assert "admin.locked" in eng.log()
    finally:
        check_clean_stop(eng)


def test_metrics_exposition_promtool(binary, tmp):
    eng, port, aport = start(binary, tmp, "  open_metrics: true\n")
    try:
        send_messages(port, 5)
        wait_for(lambda: "caduceus_destination_delivered_total{destination=\"out\"} 5" in
                 curl(aport, "/metrics")[2], what="5 delivered in /metrics")
        body = curl(aport, "/metrics")[2]
        for want in ('caduceus_channel_accepted_total{channel="lab"} 5',
                     'caduceus_channel_open_connections{channel="lab"} 0',
                     'caduceus_destination_depth{destination="out"} 0',
                     'caduceus_destination_blocked{destination="out"} 0',
                     'caduceus_build_info{version="', "process_open_fds ",
                     "process_resident_memory_bytes ", "process_start_time_seconds ",
                     "# TYPE caduceus_journal_batches_total counter"):
            assert want in body, want + "\n" + body
        wait_for(lambda: re.search(r"^caduceus_archive_records_written_total ([1-9]\d*)$",
                                   curl(aport, "/metrics")[2], re.M),
                 what="archive records written in /metrics")
        assert "# TYPE caduceus_archive_pending_records gauge" in body, body
        rec = re.search(r"^caduceus_journal_records_total (\d+)$", body, re.M)
        assert rec and int(rec.group(1)) >= 5, body
        # the rerouter queue's name holds a ':' (label values are quoted)
        assert 'destination="channel:lab"' in body
        s = connect(port)
        wait_for(lambda: 'caduceus_channel_open_connections{channel="lab"} 1' in
                 curl(aport, "/metrics")[2], what="one open connection")
        s.close()
        promtool = shutil.which("promtool")
        if promtool is None:
            print("# promtool not installed: exposition not linted", flush=True)
        else:
            p = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                               capture_output=True, timeout=30)
            assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    finally:
        check_clean_stop(eng)


def prom_query(pport, q):
    url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (pport, urllib.parse.quote(q))
    p = subprocess.run(["curl", "-sS", "--max-time", "5", url], capture_output=True, timeout=10)
    if p.returncode != 0:
        return None
    try:
        res = json.loads(p.stdout)["data"]["result"]
    except (ValueError, KeyError):
        return None
    return float(res[0]["value"][1]) if res else None


def test_real_prometheus_scrapes(binary, tmp):
    prom = shutil.which("prometheus")
    if prom is None:
        print("# SKIP test_real_prometheus_scrapes: the prometheus binary is not installed "
              "(apt-get install prometheus; dev.sh does)", flush=True)
        return
    eng, port, aport = start(binary, tmp, "  open_metrics: true\n")
    pport = free_port()
    pdir = os.path.join(tmp, "prom")
    os.makedirs(pdir)
    with open(os.path.join(pdir, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: caduceus\n    static_configs:\n"
                "      - targets: ['127.0.0.1:%d']\n" % aport)
    plog = open(os.path.join(pdir, "prometheus.log"), "wb")
    proc = subprocess.Popen([prom, "--config.file=" + os.path.join(pdir, "prometheus.yml"),
                             "--storage.tsdb.path=" + os.path.join(pdir, "data"),
                             "--web.listen-address=127.0.0.1:%d" % pport],
                            stdout=plog, stderr=plog, cwd=pdir)
    try:
        send_messages(port, 7)
        q = 'caduceus_channel_accepted_total{channel="lab",job="caduceus"}'
        wait_for(lambda: prom_query(pport, q) == 7.0, timeout=60, step=0.5,
                 what="Prometheus to report 7 accepted")
        assert prom_query(pport, 'up{job="caduceus"}') == 1.0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        plog.close()
        check_clean_stop(eng)


def test_config_errors(binary, tmp):
    conf = os.path.join(tmp, "c.yaml")
    base = ("destinations:\n  out: { type: file, dir: out }\n"
            "channels:\n  lab: { listen: \"127.0.0.1:2575\", to: [ out ] }\n")
    cases = (
        ("admin:\n  listen: \"127.0.0.1:99999\"\n", r"c\.yaml:6:11: listen: .*port"),
        ("admin:\n  open_metrics: true\n", r"c\.yaml:5:1: admin: 'listen' is required"),
        ("admin:\n  listen: \"127.0.0.1:8765\"\n  tokens:\n"
         "    - { name: a, role: root, hash: \"sha256:00\" }\n",
         r"c\.yaml:8:24: role: expected one of viewer, analyst, operator or admin"),
        ("admin:\n  listen: \"127.0.0.1:8765\"\n  tokens:\n"
         "    - { name: a, role: viewer, hash: \"sha256:00\" }\n",
         r"c\.yaml:8:32: hash: expected \"sha256:\" and 64 hex digits"),
        ("admin:\n  listen: \"127.0.0.1:8765\"\n  tokens:\n"
         "    - { name: a, role: viewer, env: CAD_TEST_UNSET_VAR }\n",
         r"c\.yaml:8:32: env: the environment variable 'CAD_TEST_UNSET_VAR' is not set"),
        ("admin:\n  listen: \"127.0.0.1:8765\"\n  tokens:\n    - { name: a, role: viewer }\n",
         r"c\.yaml:8:7: a token needs exactly one of 'hash'"),
        ("admin:\n  listen: \"127.0.0.1:8765\"\n  colour: blue\n", r"c\.yaml:7:3: .*colour"),
    )
    for extra, want in cases:
        with open(conf, "w") as f:
            f.write(base + extra)
        p = subprocess.run([binary, "check", conf], capture_output=True, text=True, timeout=10,
                           env={k: v for k, v in os.environ.items()
                                if k != "CAD_TEST_UNSET_VAR"})
        assert p.returncode != 0, extra
        assert re.search(want, p.stderr + p.stdout), "want /%s/ for\n%s\ngot:\n%s%s" % (
            want, extra, p.stderr, p.stdout)


def test_https(binary, tmp):
    """tls: as on a channel: curl trusts the test's own CA; plain HTTP gets nothing."""
    def openssl(*args):
        p = subprocess.run(["openssl"] + list(args), cwd=tmp, capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr.decode()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", "/CN=test ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(tmp, "srv.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "srv.crt", "-days", "30", "-extfile", "srv.ext")
    vtok, vline = token_new(binary, "dash", "viewer")
    eng, port, aport = start(binary, tmp, "  open_metrics: true\n  tls: { cert: %s, key: %s }\n"
                             "  tokens:\n    %s\n" % (os.path.join(tmp, "srv.crt"),
                                                      os.path.join(tmp, "srv.key"), vline))
    try:
        def https(path, tok=None, ca="ca.crt"):
            args = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"]
            if ca:
                args += ["--cacert", os.path.join(tmp, ca)]
            if tok:
                args += ["-H", "Authorization: Bearer " + tok]
            p = subprocess.run(args + ["https://127.0.0.1:%d%s" % (aport, path)],
                               capture_output=True, timeout=20)
            return p.returncode, p.stdout.decode()
        rc, out = https("/healthz")
        assert rc == 0 and out.endswith("\n200"), (rc, out)
        rc, out = https("/api/v1/channels", vtok)
        assert rc == 0 and out.endswith("\n200") and '"name":"lab"' in out, (rc, out)
        rc, out = https("/api/v1/channels")
        assert rc == 0 and out.endswith("\n401"), (rc, out)
        # a body over the bound over TLS: the 413 arrives, then a graceful close
        big = os.path.join(tmp, "big.bin")
        with open(big, "wb") as f:
            f.write(b"x" * (1 << 20))
        for _ in range(5):
            p = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                                "--cacert", os.path.join(tmp, "ca.crt"), "--data-binary",
                                "@" + big, "https://127.0.0.1:%d/api/v1/channels" % aport],
                               capture_output=True, timeout=20)
            assert p.returncode == 0 and p.stdout.decode().endswith("\n413"), (p.returncode,
                                                                             p.stderr, p.stdout)
        # not trusted (the system's CAs only): curl refuses the certificate
        rc, out = https("/healthz", ca=None)
        assert rc != 0, out
        # plain HTTP on the HTTPS port: no answer, and the engine goes on
        p = subprocess.run(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:%d/healthz" % aport],
                           capture_output=True, timeout=20)
        assert p.returncode != 0 or b"alive" not in p.stdout, p.stdout
        rc, out = https("/healthz")
        assert rc == 0 and out.endswith("\n200"), (rc, out)
        assert "(https)" in eng.log()
        # caduceus ctl over HTTPS, trusting the test's CA; refused without it
        env = dict(os.environ, CADUCEUS_TOKEN=vtok, CADUCEUS_URL="https://127.0.0.1:%d" % aport)
        p = subprocess.run([binary, "ctl", "--cacert", os.path.join(tmp, "ca.crt"), "channels"],
                           capture_output=True, text=True, timeout=20, env=env)
        assert p.returncode == 0 and json_of(p.stdout)["channels"][0]["name"] == "lab", p
        env["SSL_CERT_FILE"] = os.path.join(tmp, "srv.key")  # no usable CA at all
        p = subprocess.run([binary, "ctl", "channels"], capture_output=True, text=True,
                           timeout=20, env=env)
        assert p.returncode == 1 and "caduceus ctl" in p.stderr, p
    finally:
        check_clean_stop(eng)


def test_connections_bounded(binary, tmp):
    """128 idle connections at most; more are closed at once; then it answers again."""
    import socket
    eng, port, aport = start(binary, tmp, "  open_metrics: true\n")
    held = []
    try:
        for _ in range(128):
            held.append(socket.create_connection(("127.0.0.1", aport), timeout=5))
        time.sleep(0.5)
        extra = socket.create_connection(("127.0.0.1", aport), timeout=5)
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            got = extra.recv(100)
        except ConnectionResetError:
            got = b""
        assert got == b"", got
        extra.close()
        for c in held:
            c.close()
        held = []
        wait_for(lambda: curl(aport, "/healthz")[0] == 200, what="answers after the flood")
    finally:
        for c in held:
            c.close()
        check_clean_stop(eng)


def test_refused_body_is_answered_not_reset(binary, tmp):
    """A body over the bound: h2o answers 413 after the headers and closes.  The
    client, still sending, must be able to finish and read that 413 and a
    clean end (before the lingering close, the unread body made the kernel
    reset the connection: the send failed and the answer could be lost)."""
    import socket
    eng, port, aport = start(binary, tmp, "  open_metrics: true\n")
    held = []
    try:
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", aport), timeout=10)
            s.sendall(b"POST /api/v1/channels HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 4194304\r\n\r\n" + b"x" * 65536)
            time.sleep(0.3)              # h2o has answered and closed its descriptor
            s.sendall(b"x" * (1 << 20))  # was: ConnectionResetError / BrokenPipeError
            s.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = s.recv(65536)    # was: ConnectionResetError
                if not chunk:
                    break
                got += chunk
            s.close()
            assert got.startswith(b"HTTP/1.1 413"), got[:200]
            assert b'"error":"payload_too_large"' in got, got
        # a client that stops sending and never closes is let go: the slot comes back
        for _ in range(128):
            c = socket.create_connection(("127.0.0.1", aport), timeout=10)
            c.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\nxx")
            held.append(c)
        def healthy():
            try:
                return curl(aport, "/healthz")[0] == 200
            except AssertionError:   # refused at accept while the drains hold the slots
                return False
        t0 = time.monotonic()
        try:
            wait_for(healthy, timeout=10,
                     what="answers while 128 refused clients hold their sockets open")
            assert time.monotonic() - t0 < 8, "the drains held the slots too long (2 s each)"
        finally:
            for c in held:
                c.close()
        # a drain under way does not hold up a stop: stopping ends it at once
        c = socket.create_connection(("127.0.0.1", aport), timeout=10)
        c.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 9999999\r\n\r\nxx")
        time.sleep(0.3)
        held = [c]
        t0 = time.monotonic()
        check_clean_stop(eng)
        assert time.monotonic() - t0 < 1.5, "the stop waited for a drain"
        eng = None
    finally:
        for c in held:
            c.close()
        if eng:
            check_clean_stop(eng)


def test_admin_port_in_use_fails_start(binary, tmp):
    import socket
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    aport = blocker.getsockname()[1]
    port = free_port()
    chans = "  lab:\n    listen: \"127.0.0.1:%d\"\n    to: [ out ]\n" % port
    eng = Engine(binary, tmp, chans, DESTS,
                 engine_extra="admin:\n  listen: \"127.0.0.1:%d\"\n" % aport)
    try:
        eng.start()
        rc = eng.proc.wait(20)
        assert rc == 1, rc
        assert re.search(r"event=admin.failed msg=\"127.0.0.1 port %d: [Aa]ddress already in use" % aport, eng.log()), eng.log()
        assert "shutdown.leak" not in eng.log()
    finally:
        eng.kill()
        blocker.close()


def test_check_summary(binary, tmp):
    conf = os.path.join(tmp, "c.yaml")
    with open(conf, "w") as f:
        f.write("destinations:\n  out: { type: file, dir: out }\n"
                "channels:\n  lab: { listen: \"127.0.0.1:2575\", to: [ out ] }\n"
                "admin: { listen: \"[::1]:8765\", tokens: [ { name: a, role: admin, "
                "hash: \"sha256:%s\" } ] }\n" % ("ab" * 32))
    p = subprocess.run([binary, "check", conf], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    assert "admin API     http://[::1]:8765  metrics need a token, 1 token\n" in p.stdout, p.stdout


def test_token_new(binary, tmp):
    tok, line = token_new(binary, "ops", "operator")
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", tok), tok
    assert re.fullmatch(r'- \{ name: ops, role: operator, hash: "sha256:[0-9a-f]{64}" \}', line)
    tok2, _ = token_new(binary, "ops", "operator")
    assert tok2 != tok
    for bad in (["token", "new", "ops", "--role", "root"], ["token", "new", "--role", "viewer"],
                ["token", "new", "a b", "--role", "viewer"], ["token"]):
        p = subprocess.run([binary] + bad, capture_output=True, text=True, timeout=10)
        assert p.returncode == 2, (bad, p.stdout, p.stderr)


def test_reload_applies_tokens(binary, tmp):
    """A SIGHUP applies the tokens at once: a token removed from the file stops
    working, a new one works; a changed admin listener says it waits for a
    restart, and a reload that changes nothing of admin: says nothing."""
    import signal
    tok, line = token_new(binary, "gone", "viewer")
    eng, port, aport = start(binary, tmp, "  tokens:\n    %s\n" % line)
    chans = "  lab:\n    listen: \"127.0.0.1:%d\"\n    to: [ out ]\n" % port
    try:
        assert curl(aport, "/api/v1/channels", tok)[0] == 200
        keep, kline = token_new(binary, "kept", "viewer")
        eng.write_config(chans, DESTS, "admin:\n  listen: \"127.0.0.1:%d\"\n  tokens:\n    %s\n"
                         % (aport, kline))
        eng.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "event=reload.done" in eng.log(), what="the reload")
        assert curl(aport, "/api/v1/channels", tok)[0] == 401
        assert curl(aport, "/api/v1/channels", keep)[0] == 200
        assert "event=reload.start_only" not in eng.log(), eng.log()
        eng.write_config(chans, DESTS, "admin:\n  listen: \"127.0.0.1:%d\"\n  tokens:\n    %s\n"
                         % (free_port(), kline))
        eng.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: eng.log().count("event=reload.done") == 2, what="the second reload")
        assert "event=reload.start_only" in eng.log() and "next start" in eng.log(), eng.log()
        assert curl(aport, "/api/v1/channels", keep)[0] == 200  # still served where it was
    finally:
        check_clean_stop(eng)

TESTS = [test_endpoints_and_roles, test_readyz_blocked_destination,
         test_closed_metrics_need_a_token,
         test_failed_attempts_are_rate_limited, test_metrics_exposition_promtool,
         test_real_prometheus_scrapes, test_config_errors, test_https,
         test_connections_bounded, test_refused_body_is_answered_not_reset,
         test_admin_port_in_use_fails_start,
         test_check_summary, test_token_new,
         test_reload_applies_tokens]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
