#!/usr/bin/env python3
"""test_console.py - the web console in a real browser: Debian's headless
Chromium, driven by playwright-core (tests/integration/console_driver.cjs),
against the real engine.  The receiver rejects the first message (a dead
letter); the test logs in with an operator token, sees the channel, searches
messages sent over MLLP by patient id, opens one with its journey and its
body as a tree, resends it (confirming), and requeues the dead letter from the
console; the receiver then gets both.
Screenshots go to the test's directory (copied to $CAD_SCREENSHOTS when set).  Fails when an element is missing or
the page logs a JavaScript error.

Skips (saying so) only when chromium or playwright-core is absent; dev.sh
installs both (apt chromium, npm ci).  Usage: test_console.py CADUCEUS_BINARY"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import FakeReceiver, check_clean_stop, run_tests, script, wait_for  # noqa: E402
from test_admin_ops import api, send, setup  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def test_console_in_chromium(binary, tmp):
    if not os.path.exists("/usr/bin/chromium") or not shutil.which("node"):
        print("SKIP: /usr/bin/chromium or node absent (dev.sh installs them)")
        return
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        print("SKIP: playwright-core absent (npm ci in tests/integration)")
        return
    with FakeReceiver(script("AR")) as rx:
        eng, port, aport, t, _ = setup(binary, tmp, rx.port)
        try:
            assert send(port, "DEAD1") == "AA"  # rejected downstream: a dead letter
            assert send(port, "SEEN1") == "AA"
            rx.wait(lambda m: "SEEN1" in rx.ctls(), what="SEEN1 delivered")
            shots = os.path.join(tmp, "screenshots")
            os.makedirs(shots)
            profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp)
            # The archive is written by its own thread: wait until the message
            # is searchable, so the console's one search finds it.
            wait_for(lambda: api(aport, "/api/v1/messages?control_id=SEEN1", t["view"])[1]
                     ["messages"], what="SEEN1 in the archive")
            r = subprocess.run(["node", os.path.join(HERE, "console_driver.cjs"),
                                "http://127.0.0.1:%d" % aport, t["ops"], "SEEN1", "rx", shots,
                                profile, t["root"]], capture_output=True, text=True, timeout=120, cwd=HERE)
            assert r.returncode == 0 and "console-ok" in r.stdout, (r.stdout, r.stderr)
            rx.wait(lambda m: rx.ctls().count("DEAD1") == 2, what="DEAD1 requeued from the console")
            rx.wait(lambda m: rx.ctls().count("SEEN1") == 2, what="SEEN1 resent from the console")
            assert len(os.listdir(shots)) == 6, os.listdir(shots)
            keep = os.environ.get("CAD_SCREENSHOTS")  # where to keep them after the test
            if keep:
                shutil.copytree(shots, keep, dirs_exist_ok=True)
            log = open(os.path.join(tmp, "data", "audit.jsonl")).read()
            assert '"action":"deadletter.requeue"' in log and '"token":"ops"' in log, log
        finally:
            check_clean_stop(eng)


TESTS = [test_console_in_chromium]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
