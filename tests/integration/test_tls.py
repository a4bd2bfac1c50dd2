#!/usr/bin/env python3
"""test_tls.py - MLLP over TLS with certificates made by the test itself
(openssl command line, in the test's temporary directory): a CA, a server
certificate for 127.0.0.1 and localhost, a client certificate, an expired
certificate, a certificate for another name, and a second CA.

Client side: `caduceus send --tls` (the engine's sender and transport)
against a TLS MLLP server (engine_util.FakeReceiver with python's ssl
module): a good handshake,
wrong CA, expired certificate, hostname mismatch, a server that demands a
client certificate, --insecure-no-verify.

Server side (when the engine's listener speaks TLS): python's ssl module as
a real third-party client sends a message and gets its ACK; wrong CA,
expired and missing client certificates are refused, logged with the peer
and the reason, and counted.
Usage: test_tls.py CADUCEUS_BINARY [TEST]"""
import os
import re
import signal
import socket
import ssl
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, FakeReceiver, adt, check_clean_stop, frame,  # noqa: E402
                         free_port, read_frame, run_tests, fields, field, wait_for)
from test_send import send, write_messages  # noqa: E402

LINE = re.compile(r"^(\S+) (AA|AE|AR|CA|CE|CR) (\d+\.\d)ms$")


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    assert p.returncode == 0, "openssl %s: %s" % (" ".join(args), p.stderr.decode())


def make_ca(d, name, cn):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".crt", "-days", "30",
            "-subj", "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_cert(d, name, cn, ca="ca", san=None, usage="serverAuth", days="30"):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=%s\n" % usage)
        if san:
            f.write("subjectAltName=%s\n" % san)
    # -days -1: the certificate ends one day before it starts, so it is expired now
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", name + ".crt", "-days", days, "-extfile", ext, cwd=d)


def make_pki(tmp):
    d = os.path.join(tmp, "pki")
    os.makedirs(d)
    make_ca(d, "ca", "Caduceus Test CA")
    make_ca(d, "ca2", "Another CA")
    make_cert(d, "server", "localhost", san="DNS:localhost,IP:127.0.0.1")
    make_cert(d, "other", "other.example", san="DNS:other.example")
    make_cert(d, "expired", "localhost", san="DNS:localhost,IP:127.0.0.1", days="-1")
    make_cert(d, "client", "lab-analyzer-1", usage="clientAuth")
    make_cert(d, "client2", "lab-analyzer-2", usage="clientAuth")
    make_cert(d, "client_expired", "lab-analyzer-1", usage="clientAuth", days="-1")
    make_cert(d, "client_ca2", "lab-analyzer-1", ca="ca2", usage="clientAuth")
    return d


def TlsServer(cert, key, client_ca=None):
    """A FakeReceiver speaking TLS with cert/key that answers every message
    AA; with client_ca it demands a client certificate signed by that CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(client_ca)
    return FakeReceiver(ssl_context=ctx)


def p(d, name):
    return os.path.join(d, name)


# ---- client side: caduceus send --tls ------------------------------------


def test_send_tls_good_and_failures(binary, tmp):
    d = make_pki(tmp)
    msgs = write_messages(tmp, ["T1", "T2"])
    one = write_messages(tmp, ["T3"], "one.hl7")
    good = TlsServer(p(d, "server.crt"), p(d, "server.key"))
    expired = TlsServer(p(d, "expired.crt"), p(d, "expired.key"))
    other = TlsServer(p(d, "other.crt"), p(d, "other.key"))
    try:
        to = "127.0.0.1:%d" % good.port
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca.crt"), "--to", to, msgs)
        assert rc == 0, (rc, so, se)
        assert [LINE.match(x).group(1, 2) for x in so.splitlines()] == [("T1", "AA"), ("T2", "AA")]
        assert good.count() == 2
        # localhost is in the certificate too
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca.crt"), "--to",
                          "localhost:%d" % good.port, one)
        assert rc == 0, (rc, so, se)
        # wrong CA
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca2.crt"), "--to", to, one)
        assert rc == 1 and "TLS: unknown CA" in so, so
        # ... unless verification is off
        rc, so, se = send(binary, "--tls", "--insecure-no-verify", "--to", to, one)
        assert rc == 0, (rc, so, se)
        # expired
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca.crt"), "--to",
                          "127.0.0.1:%d" % expired.port, one)
        assert rc == 1 and "TLS: certificate expired" in so, so
        # hostname mismatch, then the right name
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca.crt"), "--to",
                          "127.0.0.1:%d" % other.port, one)
        assert rc == 1 and "TLS: hostname mismatch" in so, so
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca.crt"), "--server-name",
                          "other.example", "--to", "127.0.0.1:%d" % other.port, one)
        assert rc == 0, (rc, so, se)
        # plain MLLP to a TLS port: no ACK, and nothing accepted
        rc, so, se = send(binary, "--timeout", "1", "--to", to, one)
        assert rc == 1 and " - error: " in so, so
    finally:
        good.stop()
        expired.stop()
        other.stop()


def test_send_tls_client_certificate(binary, tmp):
    d = make_pki(tmp)
    one = write_messages(tmp, ["C1"])
    srv = TlsServer(p(d, "server.crt"), p(d, "server.key"), client_ca=p(d, "ca.crt"))
    try:
        to = "127.0.0.1:%d" % srv.port
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca.crt"), "--cert", p(d, "client.crt"),
                          "--key", p(d, "client.key"), "--to", to, one)
        assert rc == 0, (rc, so, se)
        # Without an acceptable client certificate.  TLS 1.3: the server judges
        # it after our side of the handshake is done, so its alert may be
        # overtaken by its reset; either way nothing is accepted.
        assert srv.peers() == ["lab-analyzer-1"], srv.peers()
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca.crt"), "--to", to, one)
        assert rc == 1 and "C1 - error: " in so, so
        assert "TLS: peer rejected our certificate" in so or "ECONNRESET" in so, so
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca.crt"), "--cert",
                          p(d, "client_ca2.crt"), "--key", p(d, "client_ca2.key"), "--to", to, one)
        assert rc == 1 and "C1 - error: " in so, so
        assert "TLS: peer rejected our certificate" in so or "ECONNRESET" in so, so
        assert srv.count() == 1, "only the good client's message arrived"
        # configuration errors are reported before connecting
        rc, so, se = send(binary, "--tls", "--ca", p(d, "nope.crt"), "--to", to, one)
        assert rc == 1 and "cannot read CA file" in se, se
        rc, so, se = send(binary, "--tls", "--cert", p(d, "client.crt"), "--key",
                          p(d, "server.key"), "--to", to, one)
        assert rc == 1 and "does not belong to certificate" in se, se
    finally:
        srv.stop()


# ---- server side: the engine's listener over TLS ------------------------------


def tls_channel(port, d, extra=""):
    return ("  secure:\n    listen: \"127.0.0.1:%d\"\n    frame_timeout: 2s\n"
            "    tls:\n      cert: %s\n      key: %s\n      ca: %s\n"
            "      require_client_cert: true\n%s"
            "    allow: [ 127.0.0.1/32 ]\n    to: [ files ]\n"
            % (port, p(d, "live.crt"), p(d, "live.key"), p(d, "ca.crt"), extra))


def files_dest(tmp):
    return "  files:\n    type: file\n    dir: %s/out\n" % tmp


def py_client(port, d, cert="client", ca="ca", name="localhost"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(p(d, ca + ".crt"))
    if cert:
        ctx.load_cert_chain(p(d, cert + ".crt"), p(d, cert + ".key"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=name)


def try_message(port, d, ctl, **kw):
    """Send one message with python's ssl module; the ACK or the exception."""
    try:
        s = py_client(port, d, **kw)
        try:
            s.sendall(frame(adt(ctl=ctl)))
            return read_frame(s, timeout=5)
        finally:
            s.close()
    except (ssl.SSLError, OSError, ConnectionError, TimeoutError) as e:
        return e


def copy_cert(d, src, dst="live"):
    for ext in ("crt", "key"):
        with open(p(d, "%s.%s" % (src, ext)), "rb") as f, open(p(d, "%s.%s" % (dst, ext)), "wb") as g:
            g.write(f.read())


def test_listener_tls_mutual(binary, tmp):
    d = make_pki(tmp)
    copy_cert(d, "server")
    port = free_port()
    eng = Engine(binary, tmp, tls_channel(port, d, "      allowed_clients: [ lab-analyzer-1 ]\n"),
                 files_dest(tmp))
    eng.start(wait_ports=[port])
    try:
        # a real third-party TLS client: python's ssl module
        ack = try_message(port, d, "PY1")
        assert isinstance(ack, bytes), ack
        f = fields(ack)
        assert field(f, "MSA", 1) == "AA" and field(f, "MSA", 2) == "PY1", ack
        wait_for(lambda: os.path.exists(os.path.join(tmp, "out", "PY1.hl7")), what="file")
        # and our own client
        one = write_messages(tmp, ["CS1"])
        rc, so, se = send(binary, "--tls", "--ca", p(d, "ca.crt"), "--cert", p(d, "client.crt"),
                          "--key", p(d, "client.key"), "--to", "127.0.0.1:%d" % port, one)
        assert rc == 0 and so.startswith("CS1 AA "), (rc, so, se)
        # refused: no certificate, a client not in allowed_clients, an expired
        # certificate, another CA, plain MLLP, and a client that distrusts us
        for kw in ({"cert": None}, {"cert": "client2"}, {"cert": "client_expired"},
                   {"cert": "client_ca2"}, {"ca": "ca2"}):
            r = try_message(port, d, "BAD", **kw)
            assert not isinstance(r, bytes), (kw, r)
        plain = socket.create_connection(("127.0.0.1", port), timeout=5)
        plain.sendall(frame(adt(ctl="PLAIN")))
        try:
            plain.settimeout(5)
            while plain.recv(65536):
                pass
        except OSError:
            pass
        plain.close()
        want = ["no client certificate", "client not allowed", "certificate expired",
                "unknown CA", "peer rejected our certificate", "peer does not speak TLS"]
        wait_for(lambda: all(w in eng.log() for w in want), timeout=10,
                 what="every handshake failure in the log")
        fails = [x for x in eng.log().splitlines() if "event=tls.handshake_failed" in x]
        assert len(fails) == 6, "\n".join(fails)
        for line in fails:
            assert "peer=127.0.0.1:" in line and "channel=secure" in line, line
        wait_for(lambda: "tls_failures=6" in eng.log(), timeout=5, what="tls_failures=6 counted")
        assert "client certificate: lab-analyzer-1" in eng.log()
        assert not os.path.exists(os.path.join(tmp, "out", "BAD.hl7"))
        assert not os.path.exists(os.path.join(tmp, "out", "PLAIN.hl7"))
    finally:
        check_clean_stop(eng)


def test_listener_tls_reload_and_allow(binary, tmp):
    d = make_pki(tmp)
    copy_cert(d, "server")
    make_cert(d, "renewed", "renewed.localhost", san="DNS:localhost,IP:127.0.0.1")
    port = free_port()
    eng = Engine(binary, tmp, tls_channel(port, d), files_dest(tmp))
    eng.start(wait_ports=[port])
    try:
        s = py_client(port, d)
        first = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
        assert first == "localhost", first
        # SIGHUP with renewed files: new connections get the new certificate,
        # the open one keeps working
        copy_cert(d, "renewed")
        eng.signal(signal.SIGHUP)
        wait_for(lambda: "event=reload.done" in eng.log(), what="reload")
        s2 = py_client(port, d)
        second = dict(x[0] for x in s2.getpeercert()["subject"])["commonName"]
        assert second == "renewed.localhost", second
        s.sendall(frame(adt(ctl="OLD1")))
        assert field(fields(read_frame(s)), "MSA", 1) == "AA"
        s2.sendall(frame(adt(ctl="NEW1")))
        assert field(fields(read_frame(s2)), "MSA", 1) == "AA"
        s.close()
        s2.close()
        # a reload whose key does not match is refused: the old context stays
        with open(p(d, "live.key"), "wb") as g, open(p(d, "client.key"), "rb") as f:
            g.write(f.read())
        eng.signal(signal.SIGHUP)
        wait_for(lambda: "event=tls.config_failed" in eng.log(), what="refused reload")
        assert isinstance(try_message(port, d, "STILL1"), bytes)
        # allow: only 10.0.0.0/8 now; 127.0.0.1 is closed at once
        copy_cert(d, "renewed")
        eng.write_config(tls_channel(port, d).replace("127.0.0.1/32", "10.0.0.0/8"),
                         files_dest(tmp))
        n = eng.log().count("event=reload.done")
        eng.signal(signal.SIGHUP)
        wait_for(lambda: eng.log().count("event=reload.done") > n, what="second reload")
        r = try_message(port, d, "DENIED1")
        assert not isinstance(r, bytes), r
        wait_for(lambda: "event=conn.denied" in eng.log(), what="conn.denied")
        assert not os.path.exists(os.path.join(tmp, "out", "DENIED1.hl7"))
    finally:
        check_clean_stop(eng)


TESTS = [test_send_tls_good_and_failures, test_send_tls_client_certificate,
         test_listener_tls_mutual, test_listener_tls_reload_and_allow]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
