#!/usr/bin/env python3
"""README.md's commands run as written, on a copy of the tree.

Every shell block of README.md (a ```sh block, or a ``` block whose first
line starts with "$ ") must be preceded by a marker comment, so that no
command is left out silently:

  <!-- readme-test -->                  run every command; exit status 0
  <!-- readme-test: engine -->          the same, with the engine running on
                                        examples/quickstart.yaml
  <!-- readme-test: skip REASON -->     not run, for the reason given
                                        (installs packages, starts the engine
                                        in the foreground, a synopsis, ...)

In a ```sh block every line is a command (a trailing `# comment` is the
shell's).  In a "$ " block the lines after a command are its output, which
must be what the command prints ("..." stands for any lines), unless the
marker says "output not compared" (and why).

The commands run in a temporary directory holding a copy of examples/ and
tests/fixtures/, with build/engine/caduceus linking to the binary under
test.  README.md and docs/*.md may link only to files inside the
repository, which must exist.  Port 2575 (the quickstart's) is replaced by a free port, in the
copied configuration and in the commands, so that the test can run beside
others.  Usage: test_readme.py CADUCEUS"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import Checks, free_port  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
ROOT = os.environ.get("CAD_SOURCE_ROOT",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MARK = re.compile(r"^<!-- readme-test(?::\s*(.*?))?\s*-->$")
check = Checks()


def blocks(text):
    """(line number, marker or None, kind, lines) for every shell block."""
    lines = text.split("\n")
    out = []
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```"):
            lang = fence[3:].strip()
            j = i + 1
            while j < len(lines) and lines[j].strip() != "```":
                j += 1
            body = lines[i + 1:j]
            prev = lines[i - 1].strip() if i > 0 else ""
            m = MARK.match(prev)
            marker = (m.group(1) or "") if m else None
            if lang == "sh":
                out.append((i + 1, marker, "sh", body))
            elif lang == "" and body and body[0].startswith("$ "):
                out.append((i + 1, marker, "session", body))
            i = j + 1
        else:
            i += 1
    return out


def output_matches(got, want):
    """want: expected lines, where a line "..." stands for any lines."""
    got = got.rstrip("\n").split("\n") if got.strip() else []

    def match(g, w):
        if not w:
            return not g
        if w[0].strip() == "...":
            return any(match(g[k:], w[1:]) for k in range(len(g) + 1))
        return bool(g) and g[0] == w[0] and match(g[1:], w[1:])
    return match(got, want)


def commands(kind, body):
    """(command, expected output lines or None) of a block."""
    if kind == "sh":
        return [(ln, None) for ln in body if ln.strip() and not ln.lstrip().startswith("#")]
    out = []
    for ln in body:
        if ln.startswith("$ "):
            out.append((ln[2:], []))
        elif out:
            out[-1][1].append(ln)
    return out


ADMIN_PORT = free_port()  # the quickstart's admin port 8765, replaced like 2575


def run_cmd(cmd, cwd, port):
    cmd = cmd.replace("2575", str(port)).replace("8765", str(ADMIN_PORT))
    p = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


class QuickstartEngine:
    def __init__(self, cwd, port):
        self.cwd, self.port, self.proc = cwd, port, None

    def __enter__(self):
        self.log = open(os.path.join(self.cwd, "engine.log"), "wb")
        self.proc = subprocess.Popen([BIN, "run", "examples/quickstart.yaml"], cwd=self.cwd,
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("the quickstart engine exited with %d" % self.proc.returncode)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the quickstart engine did not listen")
                time.sleep(0.05)

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def main():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    found = blocks(text)
    check("README has shell blocks", len(found) >= 5, len(found))
    for line, marker, _, _ in found:
        check("README.md:%d: the block is marked run or skip (with a reason)" % line,
              marker is not None and (not marker.startswith("skip") or
                                      len(marker.split(None, 1)) == 2), repr(marker))
    # README and docs/ link only to files inside the repository
    docs = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", n) for n in os.listdir(os.path.join(ROOT, "docs"))
        if n.endswith(".md"))
    for doc in docs:
        with open(doc, encoding="utf-8") as f:
            body = f.read()
        for target in re.findall(r"\]\(([^)\s]+)\)", body):
            if target.startswith("#"):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(doc), target.split("#")[0]))
            check("%s: link %s stays in the repository and exists" %
                  (os.path.relpath(doc, ROOT), target),
                  not re.match(r"[a-z]+:", target) and
                  path.startswith(os.path.normpath(ROOT) + os.sep) and os.path.exists(path))

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(os.path.join(ROOT, "examples"), os.path.join(tmp, "examples"))
        shutil.copytree(os.path.join(ROOT, "tests", "fixtures"),
                        os.path.join(tmp, "tests", "fixtures"))
        os.makedirs(os.path.join(tmp, "build", "engine"))
        os.symlink(BIN, os.path.join(tmp, "build", "engine", "caduceus"))
        port = free_port()
        qs = os.path.join(tmp, "examples", "quickstart.yaml")
        with open(qs) as f:
            conf = f.read()
        check("quickstart listens on 2575", "127.0.0.1:2575" in conf)
        with open(qs, "w") as f:
            f.write(conf.replace("2575", str(port)).replace("8765", str(ADMIN_PORT)))

        def run_block(line, marker, kind, body):
            compare = "output not compared" not in marker
            for cmd, want in commands(kind, body):
                rc, out, err = run_cmd(cmd, tmp, port)
                check("README.md:%d: `%s` exits 0" % (line, cmd), rc == 0,
                      "rc %d\n%s%s" % (rc, out[-1500:], err[-1500:]))
                if want is not None and compare:
                    check("README.md:%d: `%s` prints what README shows" % (line, cmd),
                          output_matches(out, want), "\n--- got:\n%s--- README:\n%s" %
                          (out, "\n".join(want)))

        runnable = [b for b in found if b[1] is not None and not b[1].startswith("skip")]
        for line, marker, kind, body in runnable:
            if "engine" not in marker.split(";")[0]:
                run_block(line, marker, kind, body)
        with QuickstartEngine(tmp, port):
            for line, marker, kind, body in runnable:
                if "engine" in marker.split(";")[0]:
                    run_block(line, marker, kind, body)
        check("some README blocks ran with the engine",
              any("engine" in b[1] for b in runnable))

    check.finish()


main()
