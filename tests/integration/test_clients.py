#!/usr/bin/env python3
"""test_clients.py - third-party MLLP clients against `caduceus run`:
Debian's python3-hl7 `mllp_send` and npm's node-hl7-client (1.1.3 on any
Node, 3.2.0 where Node >= 20.15).  Each sends a message; the ACK fields and
the file written are checked.
Usage: test_clients.py CADUCEUS_BINARY [TEST]"""
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (SB, Engine, wait_for, adt, check_clean_stop, connect, field, fields,  # noqa: E402
                         free_port, run_tests, send_recv)

HERE = os.path.dirname(os.path.abspath(__file__))


def start(binary, tmp):
    port = free_port()
    dests = ("  files:\n    type: file\n    dir: %s/out\n    name: \"${MSH-3}_${MSH-10}.hl7\"\n"
             % tmp)
    chan = "  adt:\n    listen: [ \"127.0.0.1:%d\" ]\n    to: [ files ]\n" % port
    return Engine(binary, tmp, chan, dests).start([port]), port


def test_mllp_send(binary, tmp):
    tool = "/usr/bin/mllp_send"
    if not os.path.exists(tool):
        raise AssertionError("python3-hl7 is not installed (%s missing): dev.sh installs it" % tool)
    eng, port = start(binary, tmp)
    try:
        msgs = [adt("MS%d" % i) for i in range(3)]
        path = os.path.join(tmp, "msgs.mllp")
        with open(path, "wb") as f:
            for m in msgs:
                f.write(SB + m + b"\x1c\x0d")
        # Debian's tool runs on Debian's python (a pyenv python3 on PATH may
        # lack the hl7 module), so it is called directly with a clean env.
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        out = subprocess.run([tool, "--port", str(port), "--file", path, "127.0.0.1"],
                             capture_output=True, timeout=30, env=env)
        assert out.returncode == 0, out
        text = out.stdout.decode()
        acks = [a for a in text.replace("\n", "\r").split("\r\r") if "MSA" in a]
        assert len(acks) == 3, text
        for i, a in enumerate(acks):
            f = fields(a.strip("\r\x0b\x1c").encode())
            assert field(f, "MSH", 3) == "EHR" and field(f, "MSH", 5) == "LAB", a
            assert field(f, "MSH", 9) == "ACK^A01^ACK", a
            assert field(f, "MSA", 1) == "AA" and field(f, "MSA", 2) == "MS%d" % i, a
        # mllp_send strips the final \r of each message; the file holds
        # exactly what it sent.
        for i, m in enumerate(msgs):
            path = os.path.join(tmp, "out", "LAB_MS%d.hl7" % i)
            # The ACK says durable; the file is written by delivery just after.
            wait_for(lambda: os.path.exists(path), what="delivery of MS%d" % i)
            with open(path, "rb") as fh:
                assert fh.read() == m.rstrip(b"\r")
        with connect(port) as s:
            assert field(fields(send_recv(s, adt("MS-final"))), "MSA", 1) == "AA"
        check_clean_stop(eng)
    finally:
        eng.kill()


def node_client_case(binary, tmp, node, package, ctl):
    """One message through npm's node-hl7-client (the copy installed under
    node_modules/PACKAGE): its ACK and the delivered file are checked."""
    os.makedirs(tmp, exist_ok=True)
    eng, port = start(binary, tmp)
    try:
        out = subprocess.run([node, os.path.join(HERE, "node_client.cjs"), str(port), ctl, package],
                             capture_output=True, timeout=30)
        lines = [ln for ln in out.stdout.decode().splitlines() if ln.startswith("{")]
        assert out.returncode == 0 and lines, out
        r = json.loads(lines[-1])
        assert "error" not in r and "skip" not in r, r
        assert r["msa1"] == "AA" and r["msa2"] == ctl, r
        f = fields(r["raw"].encode())
        assert field(f, "MSH", 3) == "EHR" and field(f, "MSH", 4) == "SOUTH"
        assert field(f, "MSH", 5) == "NODEAPP" and field(f, "MSH", 6) == "NODEFAC"
        assert field(f, "MSH", 9) == "ACK^A04^ACK" and field(f, "MSH", 12) == "2.5"
        path = os.path.join(tmp, "out", "NODEAPP_%s.hl7" % ctl)
        wait_for(lambda: os.path.exists(path), what="delivery of " + ctl)
        with open(path, "rb") as fh:
            assert fh.read().startswith(b"MSH|^~\\&|NODEAPP|NODEFAC|")
        with connect(port) as s:
            assert field(fields(send_recv(s, adt(ctl + "-final"))), "MSA", 1) == "AA"
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_node_hl7_client(binary, tmp):
    """npm's node-hl7-client: 1.1.3 on any Node (Debian 12 has 18), and the
    current 3.x where Node is new enough for it (>= 20.15)."""
    node = shutil.which("node")
    mods = os.path.join(HERE, "node_modules")
    if not node or not os.path.isdir(os.path.join(mods, "node-hl7-client-v1")):
        print("  SKIP: node or tests/integration/node_modules is absent "
              "(dev.sh runs npm ci there)")
        return
    node_client_case(binary, os.path.join(tmp, "v1"), node, "node-hl7-client-v1", "NODEV1")
    ver = subprocess.run([node, "--version"], capture_output=True, timeout=10).stdout.decode()
    nums = tuple(int(x) for x in ver.strip().lstrip("v").split(".")[:2])
    if nums < (20, 15):
        print("  SKIP (3.x only): node %s is older than the 20.15 node-hl7-client 3.x needs; "
              "1.1.3 ran" % ver.strip())
        return
    node_client_case(binary, os.path.join(tmp, "v3"), node, "node-hl7-client", "NODEV3")


TESTS = [test_mllp_send, test_node_hl7_client]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
