#!/usr/bin/env python3
"""Helpers the commands share, one each:
- `caduceus test` and `caduceus preview` report differences by path with
  the one HL7 diff (parsers/hl7/hl7_diff.c): the same element gets the same
  path in both commands, down to a subcomponent (PID-3[1].1.2);
- `parse`, `get` and `send` read message files with the reader of `replay`
  and `preview` (engine/cli/cli_archive.c), so a gzip file works in each.
Usage: test_cli_shared.py CADUCEUS"""
import gzip
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import Checks  # noqa: E402

BIN = sys.argv[1]
check = Checks()


MSG = ("MSH|^~\\\\&|LAB|X|Y|Z|20240301120000||ORU^R01|C1|P|2.5\\r"
       "PID|1||123^^^H&1.2&ISO||DOE\\r"
       "OBX|1|NM|2345-7^Glucose||5\\rOBX|2|NM|2345-7^Glucose||6\\r")

CONFIG = """engine:
  data_dir: var/data
destinations:
  out: {{ type: file, dir: var/out }}
channels:
  lab:
    listen: ["127.0.0.1:2999"]
    routes:
      - name: all
        transform:
          - {{ set: MSH-5, value: {msh5} }}
          - {{ set: "OBX[*]-3.1", value: GLU }}
{extra}        to: [out]
    tests:
      - name: differs
        input: "{msg}"
        expect:
          out: "{msg}"
"""
EXTRA = """          - { set: PID-3.1.2, value: SUB }
          - { set: "PID-3[2].1", value: R2 }
          - { add: "ZZZ|1" }
"""


def run(*args, cwd):
    p = subprocess.run([BIN] + list(args), cwd=cwd, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


with tempfile.TemporaryDirectory() as d:
    with open(os.path.join(d, "new.yaml"), "w") as f:
        f.write(CONFIG.format(msh5="EHR", extra=EXTRA, msg=MSG))
    with open(os.path.join(d, "old.yaml"), "w") as f:
        f.write(CONFIG.format(msh5="OLD", extra="", msg=MSG))
    with open(os.path.join(d, "msgs.hl7"), "w", newline="") as f:
        f.write(MSG.replace("\\r", "\r").replace("\\\\", "\\") + "\n")
        f.write(MSG.replace("\\r", "\r").replace("\\\\", "\\")
                .replace("20240301120000", "20240302120000+0100").replace("C1", "C2")
                .replace("123^^^H&1.2&ISO", "9") + "\n")

    rc, out, err = run("test", "new.yaml", cwd=d)
    want = [
        '    out: MSH-5: expected "Y", got "EHR"',
        '    out: PID-3[1].1.2: expected "", got "SUB"',
        '    out: PID-3[2]: expected "", got "R2"',
        '    out: OBX[1]-3.1: expected "2345-7", got "GLU"',
        '    out: OBX[2]-3.1: expected "2345-7", got "GLU"',
        '    out: segment 5: expected nothing, got ZZZ',
    ]
    lines = out.splitlines()
    check("test: exits 1 on a difference", rc == 1, (rc, err))
    check("test: every difference by path, in order", lines[1:7] == want, repr(lines))

    rc, out, err = run("preview", "--config", "new.yaml", "--baseline", "old.yaml", "msgs.hl7",
                       cwd=d)
    check("preview: exits 0", rc == 0, (rc, err))
    check("preview: a field value by path", '    out: MSH-5: "OLD" -> "EHR"' in out, out)
    # before the shared diff, preview named this PID-3[1].2 (component 2)
    check("preview: a subcomponent by the same path as test",
          '    out: PID-3[1].1.2: "" -> "SUB"' in out and "PID-3[1].2:" not in out, out)
    check("preview: a subcomponent of a field without components",
          '    out: PID-3[1].1.2: "" -> "SUB"' in out.split("C2")[1], out)
    check("preview: a segment gained", "    out: segment 5: (none) -> ZZZ" in out, out)
    check("preview: every message counted", "2 messages would change" in out, out)

    # one reader of message files: parse and get read gzip like replay
    with gzip.open(os.path.join(d, "msgs.hl7.gz"), "wb") as f:
        f.write(open(os.path.join(d, "msgs.hl7"), "rb").read())
    rc, out, err = run("get", "-n", "MSH-10", "msgs.hl7.gz", cwd=d)
    check("get reads a gzip file", rc == 0 and out == "1\tC1\n2\tC2\n", (rc, out, err))
    rc, out, err = run("parse", "msgs.hl7.gz", cwd=d)
    check("parse reads a gzip file", rc == 0 and "C2" in out, (rc, out, err))
    rc, out, err = run("parse", "nosuch.hl7", cwd=d)
    check("parse: a missing file exits 1 with the reason",
          rc == 1 and "cannot open nosuch.hl7" in err, (rc, err))

    # a directory given with a trailing slash names its files dir/x, not dir//x
    os.mkdir(os.path.join(d, "arch"))
    os.replace(os.path.join(d, "msgs.hl7"), os.path.join(d, "arch", "msgs.hl7"))
    rc, out, err = run("preview", "--config", "new.yaml", "--baseline", "old.yaml", "arch/",
                       cwd=d)
    check("preview: files of dir/ are named dir/x", rc == 0 and "arch/msgs.hl7 @0" in out and
          "//" not in out, (rc, out, err))

check.finish()
