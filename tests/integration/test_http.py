#!/usr/bin/env python3
"""test_http.py - the HTTP destination and the listen_http source against the
real binary.

Destination: a local HTTP(S) server written for the tests (http_fake.py,
python's http.server + ssl, a throwaway CA made with openssl): 2xx, 4xx
(dead letter), 5xx (retried), 429 with Retry-After (honoured), slow answers
and timeouts, connection refused, a server that requires a client
certificate, OAuth2 tokens that expire mid-stream and a revoked token (401,
one refresh); order per destination; nothing lost across SIGKILL.
Source: curl and python's http.client as third-party clients (plain and HTTPS with a
client certificate): the ACK in the
body with 200, 415 for a bad content type, 405, 404, 413 for an oversized
body, 422 for an unparseable message; allow-list.
Usage: test_http.py CADUCEUS_BINARY [TEST]"""
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (PATIENT, Engine, adt, check_clean_stop, connect, free_port,  # noqa: E402
                         rss_kib, run_tests, send_recv, fields, field, wait_for)
from http_fake import FakeHTTP  # noqa: E402
from test_tls import make_ca, make_cert  # noqa: E402


def channel(port, dests, extra=""):
    return ("  lab:\n    listen: [\"127.0.0.1:%d\"]\n    to: [%s]\n%s" % (port, dests, extra))


def http_dest(name, url, extra=""):
    return ("  %s:\n    type: http\n    url: \"%s\"\n"
            "    retry: {initial: 100ms, max: 500ms, attempts: 5}\n"
            "    on_failure: dead_letter\n%s" % (name, url, extra))


def send_all(port, msgs):
    s = connect(port)
    codes = []
    for m in msgs:
        a = send_recv(s, m)
        codes.append(field(fields(a), "MSA", 1))
    s.close()
    return codes


def ctl_of_body(b):
    return b.split(b"\r")[0].split(b"|")[9].decode()


def test_delivers_2xx_with_templates(binary, tmp):
    with FakeHTTP(lambda r: (201, {"Content-Type": "application/json"}, b"{}", 0)) as srv:
        port = free_port()
        url = "http://127.0.0.1:%d/v2/${MSH-4}/${PID-3.1}" % srv.port
        extra = ("    method: PUT\n    headers: [\"X-Msg: ${MSH-10}\", \"X-Src: caduceus\"]\n")
        eng = Engine(binary, tmp, channel(port, "api"), http_dest("api", url, extra))
        eng.start([port])
        try:
            msg = adt("C1").replace(b"12345^^^HOSP", b"12 3/4&?^^^HOSP")
            assert send_all(port, [msg]) == ["AA"]
            rs = srv.wait(lambda rs: len(rs) >= 1)
            r = rs[0]
            assert r.method == "PUT", r.method
            assert r.path == "/v2/NORTH/12%203%2F4%26%3F", r.path
            assert r.headers.get("Content-Type") == "x-application/hl7-v2+er7", r.headers
            assert r.headers.get("X-Msg") == "C1" and r.headers.get("X-Src") == "caduceus"
            assert r.body == msg, r.body
            wait_for(lambda: "dest.delivered" in eng.log() or "delivered=1" in eng.log(), 5,
                     what="delivered in the log")
        finally:
            check_clean_stop(eng)


def test_4xx_dead_letter_5xx_retry_order(binary, tmp):
    seen = {}

    def decide(r):
        c = ctl_of_body(r.body)
        seen[c] = seen.get(c, 0) + 1
        if c == "BAD":
            return (422, {}, b'{"issue":"' + PATIENT.encode() + b'"}', 0)
        if c == "FLAKY" and seen[c] < 3:
            return 503
        return 200
    with FakeHTTP(decide) as srv:
        port = free_port()
        eng = Engine(binary, tmp, channel(port, "api"),
                     http_dest("api", "http://127.0.0.1:%d/in" % srv.port))
        eng.start([port])
        try:
            ctls = ["M1", "BAD", "M2", "FLAKY", "M3"]
            assert send_all(port, [adt(c) for c in ctls]) == ["AA"] * 5
            srv.wait(lambda rs: "M3" in [ctl_of_body(r.body) for r in rs])
            got = [ctl_of_body(r.body) for r in srv.requests()]
            assert got == ["M1", "BAD", "M2", "FLAKY", "FLAKY", "FLAKY", "M3"], got
            wait_for(lambda: "HTTP 422" in eng.log(), 5, what="the 422 in the log")
            log = eng.log()
            assert "dest.dead_letter" in log, log[-2000:]
            out = subprocess.run([binary, "queue", "list", os.path.join(tmp, "data"), "api",
                                  "--dead"], capture_output=True, text=True, timeout=30)
            assert "HTTP 422" in out.stdout, out.stdout + out.stderr
            assert "HTTP 503" in log
            data = os.path.join(tmp, "data")

            def archived():
                p = subprocess.run([binary, "search", data, "--control-id", "FLAKY", "--json"],
                                   capture_output=True, text=True, timeout=30)
                ids = [json.loads(line)["id"] for line in p.stdout.splitlines() if line]
                if not ids:
                    return False
                p = subprocess.run([binary, "show", data, ids[0]], capture_output=True,
                                   text=True, timeout=30)
                return "HTTP 503 Service Unavailable" in p.stdout + p.stderr
            wait_for(archived, 15, step=0.5, what="the 503 attempts in the archive")
        finally:
            check_clean_stop(eng)


def test_429_retry_after_honoured(binary, tmp):
    def decide(r):
        if len(srv.requests()) == 1:
            return (429, {"Retry-After": "2"}, b"", 0)
        return 200
    with FakeHTTP(lambda r: decide(r)) as srv:
        port = free_port()
        eng = Engine(binary, tmp, channel(port, "api"),
                     http_dest("api", "http://127.0.0.1:%d/in" % srv.port))
        eng.start([port])
        try:
            assert send_all(port, [adt("R1")]) == ["AA"]
            rs = srv.wait(lambda rs: len(rs) >= 2)
            gap = rs[1].t - rs[0].t
            assert gap >= 1.9, "retried after %.2fs despite Retry-After: 2" % gap
            assert "retry after 2s" in eng.log()
        finally:
            check_clean_stop(eng)


def test_slow_answer_timeout_then_delivered(binary, tmp):
    def decide(r):
        return (200, {}, b"", 2.5) if len(srv.requests()) == 1 else 200
    with FakeHTTP(lambda r: decide(r)) as srv:
        port = free_port()
        eng = Engine(binary, tmp, channel(port, "api"),
                     http_dest("api", "http://127.0.0.1:%d/in" % srv.port, "    timeout: 1s\n"))
        eng.start([port])
        try:
            assert send_all(port, [adt("S1")]) == ["AA"]
            rs = srv.wait(lambda rs: len(rs) >= 2)
            assert rs[1].t - rs[0].t < 2.5, "the engine waited for the slow answer (2.5 s)"
            wait_for(lambda: "imeout" in eng.log(), 5, what="a timeout in the log")
        finally:
            check_clean_stop(eng)


def test_connection_refused_then_up(binary, tmp):
    hport = free_port()
    port = free_port()
    eng = Engine(binary, tmp, channel(port, "api"),
                 http_dest("api", "http://127.0.0.1:%d/in" % hport,
                           "").replace("attempts: 5", "attempts: 1000"))
    eng.start([port])
    try:
        assert send_all(port, [adt("U1"), adt("U2")]) == ["AA", "AA"]
        wait_for(lambda: "onnect" in eng.log() and "dest.retry" in eng.log(), 5,
                 what="a refused connection retried")
        with FakeHTTP(port=hport) as srv:
            rs = srv.wait(lambda rs: len(rs) >= 2)
            assert [ctl_of_body(r.body) for r in rs] == ["U1", "U2"]
    finally:
        check_clean_stop(eng)


def test_hostile_huge_answer_bounded(binary, tmp):
    """A server that answers with a 64 MiB body: read and dropped past
    keep_body, so the engine's memory does not follow it."""
    big = b"x" * (64 << 20)
    with FakeHTTP(lambda r: (500 if len(srv.requests()) == 1 else 200, {}, big, 0)) as srv:
        port = free_port()
        eng = Engine(binary, tmp, channel(port, "api"),
                     http_dest("api", "http://127.0.0.1:%d/in" % srv.port, "    timeout: 20s\n"))
        eng.start([port])
        try:
            before = rss_kib(eng.proc.pid)
            assert send_all(port, [adt("B1"), adt("B2")]) == ["AA", "AA"]
            srv.wait(lambda rs: len(rs) >= 3, 30)
            wait_for(lambda: "HTTP 500" in eng.log(), 10, what="the 500 logged")
            time.sleep(0.5)
            grown = rss_kib(eng.proc.pid) - before
            assert grown < 16 << 10, "RSS grew by %d KiB reading 64 MiB answers" % grown
        finally:
            check_clean_stop(eng)


def test_lanes_parallel_in_order_per_key(binary, tmp):
    """lanes: 4 opens the HTTP destination once per lane: requests of
    different patients overlap, those of one patient stay in order."""
    with FakeHTTP(lambda r: (200, {}, b"", 0.05)) as srv:   # the delay outside its lock
        port = free_port()
        eng = Engine(binary, tmp, channel(port, "api"),
                     http_dest("api", "http://127.0.0.1:%d/in" % srv.port,
                               "    lanes: 4\n    order_by: PID-3.1\n"))
        eng.start([port])
        try:
            msgs, sent = [], {}
            for i in range(40):
                pid = "P%d" % (i % 8)
                c = "L%03d" % i
                sent.setdefault(pid, []).append(c)
                msgs.append(adt(c).replace(b"12345^^^HOSP", pid.encode() + b"^^^HOSP"))
            t0 = time.monotonic()
            assert send_all(port, msgs) == ["AA"] * 40
            rs = srv.wait(lambda rs: len(rs) >= 40, 30)
            took = rs[-1].t - t0
            assert took < 40 * 0.05 * 0.8, "no overlap: 40 requests of 50 ms took %.2fs" % took
            got = {}
            for r in rs:
                b = r.body
                pid = b.split(b"\rPID|")[1].split(b"|")[2].split(b"^")[0].decode()
                got.setdefault(pid, []).append(ctl_of_body(b))
            assert got == sent, "order per patient broken"
        finally:
            check_clean_stop(eng)


def make_pki(tmp):
    make_ca(tmp, "ca", "Test CA")
    make_cert(tmp, "server", "localhost", san="IP:127.0.0.1,DNS:localhost")
    make_cert(tmp, "client", "engine-client", usage="clientAuth")


def test_https_client_cert_required(binary, tmp):
    make_pki(tmp)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(tmp, "server.crt"), os.path.join(tmp, "server.key"))
    ctx.load_verify_locations(os.path.join(tmp, "ca.crt"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    with FakeHTTP(ssl_context=ctx) as srv:
        port = free_port()
        url = "https://127.0.0.1:%d/in" % srv.port
        dests = (http_dest("nocert", url, "    tls: {ca: ca.crt}\n") +
                 http_dest("mtls", url, "    tls: {ca: ca.crt, cert: client.crt, key: client.key}\n"))
        eng = Engine(binary, tmp, channel(port, "nocert, mtls"), dests)
        eng.start([port])
        try:
            assert send_all(port, [adt("T1")]) == ["AA"]
            rs = srv.wait(lambda rs: len(rs) >= 1)
            assert ctl_of_body(rs[0].body) == "T1"
            wait_for(lambda: "destination=nocert" in eng.log() or "dest=nocert" in eng.log(), 5)
            time.sleep(1.0)
            assert len(srv.requests()) == 1, "a request without a client certificate got through"
            assert "dest.retry" in eng.log()
        finally:
            check_clean_stop(eng)


def test_oauth2_expiry_and_revocation(binary, tmp):
    os.environ["CAD_TEST_SECRET"] = "s3cret"
    with FakeHTTP(oauth=("engine", "s3cret"), token_ttl=2) as srv:
        port = free_port()
        extra = ("    oauth2: {token_url: \"http://127.0.0.1:%d/token\", client_id: engine,\n"
                 "             client_secret_env: CAD_TEST_SECRET, scope: \"system/*.write\","
                 " margin: 500ms}\n" % srv.port)
        eng = Engine(binary, tmp, channel(port, "api"),
                     http_dest("api", "http://127.0.0.1:%d/in" % srv.port, extra))
        eng.start([port])
        try:
            sent = []

            def one(c):
                sent.append(c)
                assert send_all(port, [adt(c)]) == ["AA"]
                srv.wait(lambda rs: len(rs) >= len(sent), what="request %d" % len(sent))
            for i in range(8):   # each delivered before the next, 0.6 s apart: tokens of
                one("O%d" % i)   # 2 s (1.5 s with the margin) expire mid-stream
                time.sleep(0.6)
            assert srv.token_requests >= 3, srv.token_requests
            # Revocation: right after a fresh token was fetched, revoke it; the next
            # request gets 401, and the engine fetches another and sends again once.
            for i in range(8, 14):
                before = srv.token_requests
                one("O%d" % i)
                if srv.token_requests > before:
                    srv.revoke_all()
                    one("O%d" % (i + 100))
                    break
                time.sleep(0.3)
            assert srv.rejected_401 >= 1, "the revoked token was never refused"
            rs = srv.requests()
            assert [ctl_of_body(r.body) for r in rs] == sent
            log = eng.log()
            assert "s3cret" not in log
            for r in rs:
                assert r.headers["Authorization"] not in log
        finally:
            check_clean_stop(eng)
            del os.environ["CAD_TEST_SECRET"]


def test_sigkill_nothing_lost_in_order(binary, tmp):
    def decide(r):
        time.sleep(0.002)
        return 200
    with FakeHTTP(decide) as srv:
        port = free_port()
        eng = Engine(binary, tmp, channel(port, "api"),
                     http_dest("api", "http://127.0.0.1:%d/in" % srv.port))
        eng.start([port])
        sent = ["K%04d" % i for i in range(300)]
        s = connect(port)
        for i, c in enumerate(sent):
            a = send_recv(s, adt(c))
            assert field(fields(a), "MSA", 1) == "AA"
            if i == 150:
                eng.proc.send_signal(signal.SIGKILL)
                eng.proc.wait()
                eng.logf.close()
                eng.start([port])
                s.close()
                s = connect(port)
        s.close()
        try:
            srv.wait(lambda rs: set(sent) <= {ctl_of_body(r.body) for r in rs}, 30,
                     "every ACKed message")
            first = []
            for r in srv.requests():
                c = ctl_of_body(r.body)
                if c not in first:
                    first.append(c)
            assert first == sent, "order broken"
        finally:
            check_clean_stop(eng)


# ---- the source -------------------------------------------------------------

def source_engine(binary, tmp, extra=""):
    hport = free_port()
    mport = free_port()
    chan = ("  lab:\n    listen_http: {listen: \"127.0.0.1:%d\", path: /hl7, max_body: 64KiB%s}\n"
            "    to: [out]\n" % (hport, extra))
    dests = "  out:\n    type: file\n    dir: out\n"
    eng = Engine(binary, tmp, chan, dests)
    eng.start([hport])
    return eng, hport, mport


def post(port, body, ctype="x-application/hl7-v2+er7", method="POST", path="/hl7"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    hdrs = {"Content-Type": ctype} if ctype else {}
    c.request(method, path, body=body, headers=hdrs)
    r = c.getresponse()
    out = (r.status, r.getheader("Content-Type"), r.read())
    c.close()
    return out


def test_source_curl_and_http_client(binary, tmp):
    eng, hport, _ = source_engine(binary, tmp)
    try:
        msg = os.path.join(tmp, "m.hl7")
        with open(msg, "wb") as f:
            f.write(adt("H1"))
        p = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code} %{content_type}",
                            "-H", "Content-Type: x-application/hl7-v2+er7", "--data-binary",
                            "@" + msg, "http://127.0.0.1:%d/hl7" % hport],
                           capture_output=True, timeout=30)
        out = p.stdout.decode()
        assert out.endswith("200 x-application/hl7-v2+er7"), out
        assert "MSA|AA|H1" in out or "MSA|CA|H1" in out, out
        st, ct, body = post(hport, adt("H2"))
        assert st == 200 and b"MSA|AA|H2" in body, (st, body)
        wait_for(lambda: len(os.listdir(os.path.join(tmp, "out"))) == 2, 5, what="2 files")
        assert post(hport, adt("H3"), ctype="application/json")[0] == 415
        assert post(hport, adt("H3"), ctype=None)[0] == 415
        assert post(hport, None, method="GET")[0] == 405
        assert post(hport, adt("H3"), path="/other")[0] == 404
        assert post(hport, b"")[0] == 400
        st, _, body = post(hport, b"this is not HL7")
        assert st == 422 and b"MSA|AR" in body, (st, body)
        big = adt("H4") + b"OBX|1|TX|||" + b"x" * (70 << 10) + b"\r"
        st = post(hport, big)[0]   # answered, not reset: the server drains the rest
        assert st == 413, st
        assert post(hport, adt("H5"))[0] == 200   # still serving
    finally:
        check_clean_stop(eng)


def test_source_allow_list(binary, tmp):
    eng, hport, _ = source_engine(binary, tmp, ", allow: [10.0.0.0/8]")
    try:
        assert post(hport, adt("A1"))[0] == 403
        assert "http.refused" in eng.log()
    finally:
        check_clean_stop(eng)


def test_source_reload_keeps_port(binary, tmp):
    eng, hport, _ = source_engine(binary, tmp)
    try:
        assert post(hport, adt("L1"))[0] == 200
        eng.signal(signal.SIGHUP)   # the same configuration: the server stays
        wait_for(lambda: eng.log().count("reload.done") == 1, 10, what="reload.done")
        assert "source.stop" not in eng.log()
        assert post(hport, adt("L2"))[0] == 200
        with open(eng.conf) as f:
            text = f.read()
        with open(eng.conf, "w") as f:
            f.write(text.replace("max_body: 64KiB", "max_body: 128KiB"))
        eng.signal(signal.SIGHUP)   # changed: stopped and started again on the same port
        wait_for(lambda: eng.log().count("reload.done") == 2, 10, what="second reload.done")
        assert "source.stop" in eng.log()
        wait_for(lambda: eng.log().count("source.start") == 2, 10, what="restarted source")
        big = adt("L3") + b"NTE|1||" + b"y" * (90 << 10) + b"\r"
        assert post(hport, big)[0] == 200   # the new limit applies
    finally:
        check_clean_stop(eng)


def test_source_https_client_cert(binary, tmp):
    make_pki(tmp)
    eng, hport, _ = source_engine(binary, tmp, ", tls: {cert: server.crt, key: server.key, "
                                  "ca: ca.crt, require_client_cert: true}")
    try:
        msg = os.path.join(tmp, "m.hl7")
        with open(msg, "wb") as f:
            f.write(adt("S1"))
        base = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--cacert", "ca.crt", "-H",
                "Content-Type: x-application/hl7-v2+er7", "--data-binary", "@m.hl7",
                "https://127.0.0.1:%d/hl7" % hport]
        p = subprocess.run(base[:1] + ["--cert", "client.crt", "--key", "client.key"] + base[1:],
                           capture_output=True, timeout=30, cwd=tmp)
        out = p.stdout.decode()
        assert out.endswith("200") and "MSA|AA|S1" in out, (out, p.stderr)
        p = subprocess.run(base, capture_output=True, timeout=30, cwd=tmp)
        assert p.returncode != 0, "a client without a certificate was served"
        ctx = ssl.create_default_context(cafile=os.path.join(tmp, "ca.crt"))
        ctx.load_cert_chain(os.path.join(tmp, "client.crt"), os.path.join(tmp, "client.key"))
        c = http.client.HTTPSConnection("127.0.0.1", hport, context=ctx, timeout=10)
        c.request("POST", "/hl7", body=adt("S2"),
                  headers={"Content-Type": "x-application/hl7-v2+er7"})
        r = c.getresponse()
        assert r.status == 200 and b"MSA|AA|S2" in r.read()
        c.close()
    finally:
        check_clean_stop(eng)


def test_config_errors(binary, tmp):
    conf = os.path.join(tmp, "c.yaml")
    cases = [
        ("url: \"ftp://x/\"", "http:// or https://"),
        ("url: \"http://x/\"\n    headers: [\"Authorization: Bearer x\"]", "no Authorization"),
        ("url: \"http://x/\"\n    retry_on: [\"6xx\"]", "not an HTTP status"),
        ("url: \"http://x/\"\n    auth: {bearer_env: A, basic_user_env: B}", "auth: expected"),
        ("url: \"http://x/\"\n    oauth2: {token_url: x, client_id: c, client_secret_env: S}",
         "token_url: expected"),
        ("url: \"http://x/\"\n    tls: {ca: nothere.crt}", "nothere.crt"),
    ]
    for body, want in cases:
        with open(conf, "w") as f:
            f.write("engine: {data_dir: d}\ndestinations:\n  api:\n    type: http\n    %s\n"
                    "channels:\n  lab:\n    listen: [\"127.0.0.1:1\"]\n    to: [api]\n" % body)
        p = subprocess.run([binary, "check", conf], capture_output=True, text=True, timeout=30)
        assert p.returncode != 0 and want in p.stderr and "c.yaml:" in p.stderr, (want, p.stderr)


TESTS = [test_delivers_2xx_with_templates, test_4xx_dead_letter_5xx_retry_order,
         test_429_retry_after_honoured, test_slow_answer_timeout_then_delivered,
         test_connection_refused_then_up, test_hostile_huge_answer_bounded,
         test_https_client_cert_required,
         test_oauth2_expiry_and_revocation, test_sigkill_nothing_lost_in_order,
         test_lanes_parallel_in_order_per_key,
         test_source_curl_and_http_client, test_source_allow_list, test_source_reload_keeps_port,
         test_source_https_client_cert, test_config_errors]

if __name__ == "__main__":
    if not shutil.which("curl") or not shutil.which("openssl"):
        print("skip: curl or openssl not found")
        sys.exit(0)
    sys.exit(run_tests(TESTS, sys.argv))
