#!/usr/bin/env python3
"""test_admin_ops.py - engine control through the admin API with the real
binary, over HTTP (curl): channel pause/resume with MLLP traffic (a paused
channel closes the connection without an ACK), destination pause/resume (the
queue holds, then delivers), dead letters listed, requeued and purged while
the engine runs (the journal is changed by the engine's own commit thread),
archive search and show with roles (bodies need analyst and are audited),
resend of an archived message, reload with a broken then a fixed file (the
errors come back in the answer), the audit trail (file 0600, JSON lines, GET
/api/v1/audit), every error as JSON, and `caduceus ctl`.

Usage: test_admin_ops.py CADUCEUS_BINARY [TEST]"""
import json
import os
import socket
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, FakeReceiver, adt, check_clean_stop, connect,  # noqa: E402
                         field, fields, free_port, run_tests, script, send_recv, wait_for)
from test_admin import curl, token_new  # noqa: E402


def setup(binary, tmp, rx_port):
    toks, lines = {}, []
    for name, role in (("view", "viewer"), ("ana", "analyst"), ("ops", "operator"),
                       ("root", "admin")):
        toks[name], line = token_new(binary, name, role)
        lines.append("    " + line)
    port, aport = free_port(), free_port()
    chans = "  lab:\n    listen: \"127.0.0.1:%d\"\n    to: [ rx ]\n" % port
    dests = ("  rx:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
             "    connect_timeout: 1s\n    ack_timeout: 3s\n    on_ar: dead_letter\n"
             "    retry: {initial: 100ms, max: 300ms, attempts: 2}\n"
             "    on_failure: dead_letter\n" % rx_port)
    extra = ("  archive: { index: [ MSH-3 ], fts: true }\n"
             "admin:\n  listen: \"127.0.0.1:%d\"\n  ready_max_age: 1s\n  tokens:\n%s\n" %
             (aport, "\n".join(lines)))
    eng = Engine(binary, tmp, chans, dests, engine_extra=extra)
    eng.start(wait_ports=(port, aport))
    return eng, port, aport, toks, (chans, dests, extra)


def api(aport, path, tok, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    hdr = ("Content-Type: application/json",) if data is not None else ()
    st, ct, text = curl(aport, path, tok, method=method, data=data, headers=hdr)
    assert ct.startswith("application/json"), (path, st, ct, text)
    return st, json.loads(text)


def send(port, ctl):
    s = connect(port)
    try:
        return field(fields(send_recv(s, adt(ctl=ctl))), "MSA", 1)
    finally:
        s.close()


def test_control(binary, tmp):
    with FakeReceiver(script("AR", "AR")) as rx:
        eng, port, aport, t, cfg = setup(binary, tmp, rx.port)
        try:
            # ---- roles: a viewer may not change anything
            st, doc = api(aport, "/api/v1/channels/lab/pause", t["view"], "POST")
            assert st == 403 and doc["error"] == "forbidden", (st, doc)
            st, doc = api(aport, "/api/v1/channels/lab/pause", None, "POST")
            assert st == 401 and doc["error"] == "unauthorized", (st, doc)
            st, doc = api(aport, "/api/v1/channels/nosuch/pause", t["ops"], "POST")
            assert st == 404 and set(doc) == {"error", "detail"}, (st, doc)

            # ---- two messages the receiver rejects (AR): dead letters
            assert send(port, "DL1") == "AA"
            assert send(port, "DL2") == "AA"
            rx.wait_count(2)

            def dead():
                st, doc = api(aport, "/api/v1/destinations/rx/deadletters", t["view"])
                assert st == 200, (st, doc)
                return doc
            wait_for(lambda: dead()["total"] == 2, what="two dead letters listed")
            d = dead()["dead_letters"]
            assert [x["control_id"] for x in d] == ["DL1", "DL2"], d
            assert all("AR" in x["reason"] or x["reason"] for x in d), d
            st, q = api(aport, "/api/v1/destinations/rx/queue", t["view"])
            assert st == 200 and q["dead_letters"] == 2 and q["depth"] == 0, q

            # ---- requeue one while running: delivered (the receiver now says AA)
            st, doc = api(aport, "/api/v1/destinations/rx/deadletters/requeue", t["ops"], "POST",
                          {"number": d[0]["number"]})
            assert st == 200 and doc["requeued"] == 1, (st, doc)
            rx.wait(lambda _m: "DL1" in rx.ctls()[2:], what="DL1 redelivered")
            wait_for(lambda: dead()["total"] == 1, what="one dead letter left")
            # a bad body, an unknown number
            st, doc = api(aport, "/api/v1/destinations/rx/deadletters/requeue", t["ops"], "POST",
                          {"number": "x"})
            assert st == 400 and doc["error"] == "bad_request", (st, doc)
            st, doc = api(aport, "/api/v1/destinations/rx/deadletters/requeue", t["ops"], "POST",
                          {"number": 999999})
            assert st == 404, (st, doc)
            # purge needs admin
            st, doc = api(aport, "/api/v1/destinations/rx/deadletters/purge", t["ops"], "POST",
                          {"all": True})
            assert st == 403, (st, doc)
            st, doc = api(aport, "/api/v1/destinations/rx/deadletters/purge", t["root"], "POST",
                          {"all": True})
            assert st == 200 and doc["purged"] == 1, (st, doc)
            assert dead()["total"] == 0

            # ---- channel pause: the connection closes without an ACK
            st, doc = api(aport, "/api/v1/channels/lab/pause", t["ops"], "POST")
            assert st == 200 and doc["paused"] is True and doc["changed"] is True, doc
            s = connect(port)
            s.settimeout(5)
            s.sendall(b"\x0b" + adt(ctl="PAUSED1") + b"\x1c\r")
            assert s.recv(100) == b"", "a paused channel must close without an ACK"
            s.close()
            st, doc = api(aport, "/api/v1/channels", t["view"])
            lab = [c for c in doc["channels"] if c["name"] == "lab"][0]
            assert lab["paused"] is True and lab["refused_while_paused"] == 1, lab
            st, doc = api(aport, "/api/v1/channels/lab/resume", t["ops"], "POST")
            assert st == 200 and doc["paused"] is False, doc
            assert send(port, "AFTER1") == "AA"
            rx.wait(lambda _m: "AFTER1" in rx.ctls(), what="AFTER1 delivered")

            # ---- per-minute counts for the dashboard: 60 minutes + the one in progress
            st, doc = api(aport, "/api/v1/rates", t["view"])
            assert st == 200 and doc["minutes"] == 60, doc
            lab = doc["channels"]["lab"]["received"]
            assert len(lab) == 61 and lab[-1] == 3 and sum(lab[:-1]) == 0, lab  # DL1 DL2 AFTER1
            assert len(doc["destinations"]["rx"]["delivered"]) == 61, doc

            # ---- destination pause: messages wait in the queue, then go
            st, doc = api(aport, "/api/v1/destinations/rx/pause", t["ops"], "POST")
            assert st == 200 and doc["paused"] is True, doc
            n0 = rx.count()
            for i in range(3):
                assert send(port, "HELD%d" % i) == "AA"
            st, q = api(aport, "/api/v1/destinations/rx/queue", t["view"])
            assert q["paused"] is True and q["depth"] == 3, q
            assert q["oldest_waiting_seconds"] >= 0, q
            assert rx.count() == n0, "a paused destination must not deliver"
            # held longer than ready_max_age: not ready, saying why
            wait_for(lambda: api(aport, "/readyz", t["view"])[0] == 503, timeout=5,
                     what="readyz 503 while messages wait too long")
            assert "older than ready_max_age" in api(aport, "/readyz", t["view"])[1]["reason"]
            st, _, text = curl(aport, "/metrics", t["view"])
            assert 'caduceus_destination_paused{destination="rx"} 1' in text, text
            assert 'caduceus_channel_paused{channel="lab"} 0' in text
            assert 'caduceus_destination_depth{destination="rx"} 3' in text
            age = text.split('caduceus_destination_oldest_waiting_seconds{destination="rx"} ')[1]
            assert 1.0 <= float(age.split()[0]) < 60, age[:40]
            st, doc = api(aport, "/api/v1/destinations/rx/resume", t["ops"], "POST")
            assert st == 200, doc
            rx.wait(lambda _m: all("HELD%d" % i in rx.ctls() for i in range(3)),
                    what="held messages delivered after resume")
            wait_for(lambda: api(aport, "/readyz", t["view"])[0] == 200, what="ready again")

            # ---- archive: search by control id, show, body by role
            def found():
                st, doc = api(aport, "/api/v1/messages?control_id=AFTER1", t["view"])
                assert st == 200, doc
                return doc["messages"]
            wait_for(lambda: len(found()) == 1, what="AFTER1 in the archive")
            m = found()[0]
            assert m["channel"] == "lab" and m["type"].startswith("ADT"), m
            st, one = api(aport, "/api/v1/messages/" + m["id"], t["view"])
            assert st == 200 and "body" not in one and one["journey"], one
            assert one["journey"][0]["destination"] == "rx", one
            st, doc = api(aport, "/api/v1/messages/%s?body=1" % m["id"], t["view"])
            assert st == 403, (st, doc)
            st, one = api(aport, "/api/v1/messages/%s?body=1" % m["id"], t["ana"])
            assert st == 200 and "AFTER1" in one["body"], one
            tree = {x["path"]: x["value"] for x in one["tree"]}
            assert tree["MSH-10"] == "AFTER1" and tree["MSH-9.1"] == "ADT", tree
            assert tree["PID-3.1"] and tree["MSH-1"] == "|", tree
            st, doc = api(aport, "/api/v1/messages/123", t["view"])
            assert st == 404, (st, doc)
            # declared index fields and full text (text reads bodies: analyst)
            st, doc = api(aport, "/api/v1/messages?field=MSH-3%3DLAB&control_id=AFTER1",
                          t["view"])
            assert st == 200 and len(doc["messages"]) == 1, (st, doc)
            st, doc = api(aport, "/api/v1/messages?field=MSH-3%3DNOPE", t["view"])
            assert st == 200 and doc["messages"] == [], (st, doc)
            st, doc = api(aport, "/api/v1/messages?field=MSH-3", t["view"])
            assert st == 400, (st, doc)
            st, doc = api(aport, "/api/v1/messages?text=AFTER1", t["view"])
            assert st == 403, (st, doc)
            st, doc = api(aport, "/api/v1/messages?text=AFTER1", t["ana"])
            assert st == 200 and [x["control_id"] for x in doc["messages"]] == ["AFTER1"], doc
            st, doc = api(aport, "/api/v1/messages?status=nonsense", t["view"])
            assert st == 400, (st, doc)
            st, doc = api(aport, "/api/v1/messages?since=%zz", t["view"])
            assert st == 400, (st, doc)

            # ---- resend the archived message to rx: a new delivery
            n0 = rx.ctls().count("AFTER1")
            st, doc = api(aport, "/api/v1/messages/%s/resend" % m["id"], t["ana"], "POST",
                          {"destination": "rx"})
            assert st == 403, (st, doc)
            st, doc = api(aport, "/api/v1/messages/%s/resend" % m["id"], t["ops"], "POST",
                          {"destination": "rx"})
            assert st == 200 and doc["queue_seq"] > 0, (st, doc)
            rx.wait(lambda _m: rx.ctls().count("AFTER1") == n0 + 1, what="AFTER1 resent")
            st, doc = api(aport, "/api/v1/messages/%s/resend" % m["id"], t["ops"], "POST",
                          {"destination": "nosuch"})
            assert st == 404, (st, doc)
            # with edits: the receiver gets the edited copy; a bad path is refused
            st, doc = api(aport, "/api/v1/messages/%s/resend" % m["id"], t["ops"], "POST",
                          {"destination": "rx", "set": {"MSH-5": "OTHERAPP", "PID-3.1": "99"}})
            assert st == 200, (st, doc)
            msgs = rx.wait(lambda ms: any(b"OTHERAPP" in x.data for x in ms),
                           what="the edited copy")
            edited = [x.data for x in msgs if b"OTHERAPP" in x.data][0]
            assert b"|AFTER1|" in edited and b"PID|1||99^" in edited, edited
            for bad in ({"MSH-1": "x"}, {"NOPE!": "x"}, {"PID-3": 5}, ["MSH-5"]):
                st, doc = api(aport, "/api/v1/messages/%s/resend" % m["id"], t["ops"], "POST",
                              {"destination": "rx", "set": bad})
                assert st == 400 and doc["error"] == "bad_request", (bad, st, doc)

            # ---- reload: a broken file is refused with its errors, then a good one
            good = open(eng.conf).read()
            with open(eng.conf, "w") as f:
                f.write(good.replace("to: [ rx ]", "to: [ nowhere ]"))
            st, doc = api(aport, "/api/v1/reload", t["ops"], "POST")
            assert st == 422 and "nowhere" in doc["detail"], (st, doc)
            with open(eng.conf, "w") as f:
                f.write(good)
            st, doc = api(aport, "/api/v1/reload", t["ops"], "POST")
            assert st == 200 and doc["reloaded"] is True, (st, doc)
            assert send(port, "POSTRELOAD") == "AA"

            # ---- the audit trail: a file of JSON lines, 0600, listed newest first
            path = os.path.join(tmp, "data", "audit.jsonl")
            assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
            lines = [json.loads(x) for x in open(path).read().splitlines()]
            acts = [(x["token"], x["action"], x["result"].split(":")[0]) for x in lines]
            for want in [("ops", "deadletter.requeue", "ok"), ("root", "deadletter.purge", "ok"),
                         ("ops", "channel.pause", "ok"), ("ops", "destination.resume", "ok"),
                         ("ana", "message.body", "ok"), ("view", "message.body", "forbidden"),
                         ("ops", "message.resend", "ok"), ("ops", "reload", "refused"),
                         ("ops", "reload", "ok")]:
                assert want in acts, (want, acts)
            assert all(x["peer"] == "127.0.0.1" for x in lines), lines
            assert any("edited MSH-5 PID-3.1" in x["target"] for x in lines), lines
            assert "OTHERAPP" not in open(path).read(), "edit values stay out of the audit"
            assert "AFTER1" not in open(path).read(), "no message contents in the audit"
            st, doc = api(aport, "/api/v1/audit?limit=2", t["view"])
            assert st == 403, (st, doc)
            st, doc = api(aport, "/api/v1/audit?limit=2", t["root"])
            assert st == 200 and len(doc["entries"]) == 2, doc
            assert doc["entries"][0]["action"] == "reload", doc
            assert "event=admin.audit" in eng.log()
        finally:
            check_clean_stop(eng)


def test_errors_are_json(binary, tmp):
    with FakeReceiver() as rx:
        eng, port, aport, t, _ = setup(binary, tmp, rx.port)
        try:
            for path, method, status in [("/api/v1/nothing", "GET", 404),
                                         ("/api/v1/channels", "DELETE", 405),
                                         ("/api/v1/channels/%zz/pause", "POST", 400),
                                         ("/api/v1/destinations/rx/deadletters?limit=0", "GET",
                                          400),
                                         ("/api/v1/messages/abc", "GET", 400)]:
                st, doc = api(aport, path, t["root"], method)
                assert st == status and set(doc) == {"error", "detail"}, (path, st, doc)
            # a hostile body: not JSON, deep nesting, wrong types
            for body in (b"{", b"[" * 5000, b'{"number": 1, "all": true}', b"\x00\xff"):
                st, ct, text = curl(aport, "/api/v1/destinations/rx/deadletters/requeue",
                                    t["ops"], method="POST", data=body)
                assert st == 400 and json.loads(text)["error"] == "bad_request", (body, st, text)
            # a body over 64 KiB: h2o refuses it before the API, still as JSON
            st, ct, text = curl(aport, "/api/v1/destinations/rx/deadletters/requeue", t["ops"],
                                method="POST", data=b"{" + b" " * 70000 + b"}")
            assert st == 413 and ct.startswith("application/json"), (st, ct, text)
            assert json.loads(text)["error"] == "payload_too_large", text
            # clients that go away before a deferred answer (a reload, a queue
            # read on the commit thread): the engine drops the answer and goes on
            import struct
            for i in range(30):
                path = ("/api/v1/reload", "/api/v1/destinations/rx/queue",
                        "/api/v1/destinations/rx/deadletters")[i % 3]
                method = "POST" if i % 3 == 0 else "GET"
                c = socket.create_connection(("127.0.0.1", aport), timeout=5)
                c.sendall(("%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                           "Content-Length: 0\r\n\r\n" % (method, path, t["ops"])).encode())
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                c.close()  # a reset, at once
            st, doc = api(aport, "/api/v1/destinations/rx/queue", t["view"])
            assert st == 200 and doc["destination"] == "rx", (st, doc)
            wait_for(lambda: api(aport, "/api/v1/reload", t["ops"], "POST")[0] == 200,
                     what="a reload once the abandoned ones are done")
            # the console's files need no token and carry a CSP
            out = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null",
                                  "http://127.0.0.1:%d/" % aport], capture_output=True,
                                 text=True, timeout=10).stdout.lower()
            assert "200" in out.splitlines()[0] and "content-security-policy" in out, out
            assert "set-cookie" not in out
            st, ct, text = curl(aport, "/console/app.js")
            assert st == 200 and ct.startswith("text/javascript"), (st, ct)
            assert "sessionStorage" in text and "document.cookie" not in text
            st, ct, text = curl(aport, "/console/nope.js")
            assert st == 404 and json.loads(text)["error"] == "not_found"
        finally:
            check_clean_stop(eng)


def test_ctl_cli(binary, tmp):
    with FakeReceiver() as rx:
        eng, port, aport, t, _ = setup(binary, tmp, rx.port)
        try:
            env = dict(os.environ, CADUCEUS_TOKEN=t["ops"])
            url = "http://127.0.0.1:%d" % aport

            def ctl(*args, token=True):
                e = env if token else {k: v for k, v in env.items() if k != "CADUCEUS_TOKEN"}
                return subprocess.run([binary, "ctl", "--url", url] + list(args),
                                      capture_output=True, text=True, timeout=20, env=e)
            r = ctl("channels")
            assert r.returncode == 0 and json.loads(r.stdout)["channels"][0]["name"] == "lab", r
            r = ctl("pause", "channel", "lab")
            assert r.returncode == 0 and json.loads(r.stdout)["paused"] is True, r
            r = ctl("resume", "channel", "lab")
            assert r.returncode == 0, r
            r = ctl("deadletters", "rx")
            assert r.returncode == 0 and json.loads(r.stdout)["total"] == 0, r
            r = ctl("requeue", "rx", "5")
            assert r.returncode == 1 and json.loads(r.stdout)["error"] == "not_found", r
            r = ctl("purge", "rx", "--all")
            assert r.returncode == 1 and json.loads(r.stdout)["error"] == "forbidden", r
            r = ctl("channels", token=False)
            assert r.returncode == 2 and "CADUCEUS_TOKEN" in r.stderr, r
            r = ctl("bogus")
            assert r.returncode == 2, r
            assert send(port, "CTL1") == "AA"
            rx.wait(lambda _m: "CTL1" in rx.ctls(), what="CTL1 delivered")
            r = ctl("search", "control_id=CTL1")
            assert r.returncode == 0, r
            wait_for(lambda: json.loads(ctl("search", "control_id=CTL1").stdout)["messages"],
                     what="CTL1 found")
            mid = json.loads(ctl("search", "control_id=CTL1").stdout)["messages"][0]["id"]
            r = ctl("show", mid)
            assert r.returncode == 0 and json.loads(r.stdout)["id"] == mid, r
            r = ctl("resend", mid, "rx")
            assert r.returncode == 0, r
            rx.wait(lambda _m: rx.ctls().count("CTL1") == 2, what="CTL1 resent")
            r = ctl("resend", mid, "rx", "--set", 'MSH-10=CTL1-"again"')
            assert r.returncode == 0, r
            rx.wait(lambda _m: 'CTL1-"again"' in rx.ctls(), what="CTL1 resent with an edit")
            r = ctl("resend", mid, "rx", "--set")
            assert r.returncode == 2, r
            r = ctl("reload")
            assert r.returncode == 0 and json.loads(r.stdout)["reloaded"] is True, r
        finally:
            check_clean_stop(eng)


def test_systemd_unit(binary, tmp):
    """examples/systemd/caduceus.service is the unit docs/operations.md shows,
    hardened, and systemd accepts it (with the built binary as ExecStart)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    unit = open(os.path.join(root, "examples", "systemd", "caduceus.service")).read()
    doc = open(os.path.join(root, "docs", "operations.md")).read()
    block = doc.split("```ini\n", 1)[1].split("```", 1)[0]
    assert block == unit, "docs/operations.md and examples/systemd/caduceus.service differ"
    for key in ("User=caduceus", "NoNewPrivileges=yes", "ProtectSystem=strict",
                "ReadWritePaths=/var/lib/caduceus", "PrivateTmp=yes", "CapabilityBoundingSet=",
                "UMask=0077", "SystemCallFilter=@system-service"):
        assert ("\n" + key + "\n") in unit, key
    analyze = "/usr/bin/systemd-analyze"
    if not os.path.exists(analyze):
        print("SKIP systemd-analyze verify: systemd-analyze absent")
        return
    local = os.path.join(tmp, "caduceus.service")
    with open(local, "w") as f:
        f.write(unit.replace("/usr/local/bin/caduceus", os.path.abspath(binary)))
    r = subprocess.run([analyze, "verify", local], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "caduceus.service" not in r.stderr, r


TESTS = [test_control, test_errors_are_json, test_ctl_cli, test_systemd_unit]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
