#!/usr/bin/env python3
"""The examples end to end: each example configuration is run by the real
engine; its sample messages (examples/<x>/messages/) are sent over MLLP in
name order, and what the file destinations receive is compared with
examples/<x>/expected/<message>.<destination>.hl7.

Destinations follow the examples' layout: a `dir:` destination writes into
var/out/<example>/<destination>/, an `append:` one into
var/out/<example>/<destination>.hl7 (relative to the configuration's own
directory: ../../var; the example is copied to a temporary tree first, so
nothing is written into the source tree).  A destination with expected files must
receive exactly those messages (per-message files: as a set; an append file:
in order); a message whose route test (in the configuration's `tests:`)
expects a disposition (rejected or error) must be refused (not AA).
Usage: test_examples.py CADUCEUS"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import connect, field, fields, send_recv, wait_for  # noqa: E402

BIN = sys.argv[1]
ROOT = os.environ.get("CAD_SOURCE_ROOT",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
EXAMPLES = ["lab-to-ehr", "pharmacy-orders", "adt-fanout"]
# examples/ehr/<system>/caduceus.yaml, writing under var/out/ehr/<system>/;
# their channels listen on several ports: each message goes to the channel
# whose route tests name it (docs/ehr.md).
EHR_EXAMPLES = ["epic", "oracle-health", "athenahealth", "meditech", "carecloud"]
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print("ok - " + name)
    else:
        failed += 1
        print("FAIL - %s %s" % (name, detail))


def norm(b):
    """Segments end in CR; a trailing terminator does not matter."""
    return b.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip(b"\r")


def refused_inputs(conf):
    """Messages whose route test expects a disposition (a refusal)."""
    with open(conf) as f:
        text = f.read()
    out = set()
    for block in re.split(r"\n\s*- name:", text):
        m = re.search(r"input:\s*\{\s*file:\s*messages/([^\s}]+)", block)
        if m and re.search(r"\bdisposition:\s*(rejected|error)", block):
            out.add(m.group(1))
    return out


def listen_port(conf):
    with open(conf) as f:
        m = re.search(r'listen:\s*\[\s*"127\.0\.0\.1:(\d+)"', f.read())
    return int(m.group(1))


def message_ports(conf):
    """{message file: port} from the route tests of each channel."""
    with open(conf) as f:
        text = f.read()
    out = {}
    for block in re.split(r"\n  (?=[\w-]+:\n    listen:)", text):
        m = re.search(r'listen:\s*\[\s*"127\.0\.0\.1:(\d+)"', block)
        if m:
            for f in re.findall(r"input:\s*\{\s*file:\s*messages/([^\s}]+)", block):
                out[f] = int(m.group(1))
    return out


def run_example(name, ehr=False):
    work = tempfile.mkdtemp(prefix="cad_ex_")
    rel = os.path.join("ehr", name) if ehr else name
    exdir = os.path.join(work, "examples", rel)
    shutil.copytree(os.path.join(ROOT, "examples", rel), exdir)
    conf = os.path.join(exdir, "caduceus.yaml" if ehr else name + ".yaml")
    port = listen_port(conf)
    ports = message_ports(conf)
    log = open(os.path.join(work, "engine.log"), "wb")
    # Started elsewhere: paths follow the configuration file, not the cwd.
    proc = subprocess.Popen([BIN, "run", conf], cwd=exdir, stdout=log, stderr=log)
    try:
        wait_for(lambda: _can_connect(port) or proc.poll() is not None, what="listen")
        check("%s: engine started" % name, proc.poll() is None)
        msgs = sorted(os.listdir(os.path.join(exdir, "messages")))
        refused = refused_inputs(conf)
        expected = {}  # dest -> {msg stem: bytes}
        for e in sorted(os.listdir(os.path.join(exdir, "expected"))):
            stem, dest, _ = e.rsplit(".", 2)
            with open(os.path.join(exdir, "expected", e), "rb") as f:
                expected.setdefault(dest, {})[stem] = norm(f.read())
        socks = {}
        try:
            for m in msgs:
                with open(os.path.join(exdir, "messages", m), "rb") as f:
                    data = norm(f.read()) + b"\r"
                p = ports.get(m, port)
                if p not in socks:
                    wait_for(lambda: _can_connect(p), what="listen %d" % p)
                    socks[p] = connect(p)
                ack = fields(send_recv(socks[p], data))
                code = field(ack, "MSA", 1)
                if m in refused:
                    check("%s: %s refused (%s)" % (name, m, code), code in ("AE", "AR", "CE", "CR"))
                else:
                    check("%s: %s accepted" % (name, m), code in ("AA", "CA"), code)
        finally:
            for s in socks.values():
                s.close()
        out = os.path.join(work, "var", "out", rel)
        for dest, want in sorted(expected.items()):
            d = os.path.join(out, dest)
            order = [norm_stem(m) for m in msgs if norm_stem(m) in want]
            if os.path.isdir(d) or not os.path.exists(d + ".hl7"):
                def got_files():
                    if not os.path.isdir(d):
                        return []
                    res = []
                    for fn in os.listdir(d):
                        if fn.startswith("."):
                            continue
                        with open(os.path.join(d, fn), "rb") as f:
                            res.append(norm(f.read()))
                    return res
                try:
                    wait_for(lambda: len(got_files()) >= len(want), timeout=10, what=dest)
                except AssertionError:
                    pass
                got = sorted(got_files())
                check("%s: %s received exactly the expected messages" % (name, dest),
                      got == sorted(want.values()),
                      "got %d, expected %d" % (len(got), len(want)))
            else:
                def got_appended():
                    with open(d + ".hl7", "rb") as f:
                        return [norm(x) for x in re.split(rb"(?=MSH\|)", f.read()) if x.strip()]
                try:
                    wait_for(lambda: len(got_appended()) >= len(want), timeout=10, what=dest)
                except AssertionError:
                    pass
                got = got_appended()
                check("%s: %s appended the expected messages in order" % (name, dest),
                      got == [want[k] for k in order],
                      "got %d, expected %d" % (len(got), len(want)))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        check("%s: clean stop" % name, rc == 0, rc)
        log.close()
        subprocess.run(["rm", "-rf", work])


def norm_stem(m):
    return m.rsplit(".", 1)[0]


def _can_connect(port):
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        time.sleep(0.05)
        return False


for ex in EXAMPLES:
    run_example(ex)
for ex in EHR_EXAMPLES:
    run_example(ex, ehr=True)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
