#!/usr/bin/env python3
"""Integration tests of `caduceus parse` and `caduceus get`: the real binary on
the project's own fixtures (tests/fixtures/hl7).  Usage: test_cli.py CADUCEUS"""
import json
import os
import subprocess
import sys
import tempfile

BIN = sys.argv[1]
FIX = os.environ.get("CAD_FIXTURES", os.path.join(os.path.dirname(__file__), "..", "fixtures"))
HL7 = os.path.join(FIX, "hl7")
passed = failed = 0


def run(*args, stdin=None):
    p = subprocess.run([BIN, *args], input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"FAIL - {name} {detail}")


def f(name):
    return os.path.join(HL7, name)


# --help everywhere, usage errors exit 2
for cmd in ("parse", "get"):
    rc, out, _ = run(cmd, "--help")
    check(f"{cmd} --help", rc == 0 and "usage: caduceus " + cmd in out)
rc, out, _ = run("--help")
check("top-level --help lists commands", rc == 0 and "parse" in out and "get" in out)
rc, _, err = run("nosuchcommand")
check("unknown command exits 2", rc == 2 and "unknown command" in err)
rc, _, err = run("get", "PID-5")
check("get with missing FILE exits 2", rc == 2 and "usage" in err)

# get: decoded leaves, raw structures, repetitions, wildcards, null
rc, out, _ = run("get", "PID-5.1", f("oru_r01.hl7"))
check("get PID-5.1", rc == 0 and out == "DOE\n", repr(out))
rc, out, _ = run("get", "PID-5", f("oru_r01.hl7"))
check("get PID-5 (structure -> raw)", out == "DOE^JANE^Q\n", repr(out))
rc, out, _ = run("get", "PID-3[2].1", f("oru_r01.hl7"))
check("get PID-3[2].1", out == "998877\n", repr(out))
rc, out, _ = run("get", "PID-3[*].4", f("oru_r01.hl7"))
check("get PID-3[*].4", out == "GH\nSSA\n", repr(out))
rc, out, _ = run("get", "OBX[*]-5", f("oru_r01.hl7"))
check("get OBX[*]-5 decodes \\T\\ and keeps \\.br\\", out == '95\nFasting & rested\\.br\\second line\n""\n', repr(out))
rc, out, _ = run("get", "--raw", "OBX[2]-5", f("oru_r01.hl7"))
check("get --raw", out == "Fasting \\T\\ rested\\.br\\second line\n", repr(out))
rc, out, _ = run("get", "MSH-1", f("oru_r01.hl7"))
check("get MSH-1", out == "|\n", repr(out))
rc, out, _ = run("get", "MSH-2", f("oru_r01.hl7"))
check("get MSH-2", out == "^~\\&\n", repr(out))
rc, out, _ = run("get", "MSH-9.2", f("oru_r01.hl7"))
check("get MSH-9.2", out == "R01\n", repr(out))
rc, out, _ = run("get", "ZZZ-1", f("oru_r01.hl7"))
check("absent element prints an empty line", rc == 0 and out == "\n", repr(out))

# custom delimiters, LF terminators
rc, out, _ = run("get", "PID-5.2", f("custom_delims.hl7"))
check("custom delimiters $ %", out == "ANN\n", repr(out))
rc, out, _ = run("get", "MSH-1", f("custom_delims.hl7"))
check("custom MSH-1", out == "$\n", repr(out))

# batch: one line per message, envelope skipped
rc, out, _ = run("get", "-n", "MSH-10", f("adt_batch.hl7"))
check("batch: one line per message with -n", rc == 0 and out == "1\tADT001\n2\tADT002\n", repr(out))

# a bad message in the middle: error on stderr, others still processed, exit 1, aligned output
rc, out, err = run("get", "MSH-10", f("mixed_good_bad.hl7"))
check("bad message: exit 1", rc == 1, rc)
check("bad message: output aligned", out == "OK1\n\nOK2\n", repr(out))
check("bad message: error names message 2 and the segment", "message 2" in err and "segment 2" in err, err)
check("bad message: no PHI-ish content in error", "broken segment id" not in err, err)

# stdin
with open(f("oru_r01.hl7"), "rb") as fh:
    data = fh.read()
rc, out, _ = run("get", "MSH-10", "-", stdin=data)
check("stdin", out == "LAB0001\n", repr(out))

# bad path: exit 2 with the position
rc, out, err = run("get", "PID-3[x]", f("oru_r01.hl7"))
check("bad path exits 2", rc == 2, rc)
check("bad path shows position", "position 7" in err, err)
rc, _, err = run("get", "PID-0", f("oru_r01.hl7"))
check("field 0 refused", rc == 2 and "start at 1" in err, err)

# unreadable file
rc, _, err = run("get", "PID-3", "/nonexistent/file.hl7")
check("unreadable file exits 1 with reason", rc == 1 and "cannot open" in err, err)

# parse: text tree shows paths
rc, out, _ = run("parse", f("oru_r01.hl7"))
check("parse exit 0", rc == 0)
check("parse shows PID-5.1 path and value", any(l.split() == ["PID-5.1", "DOE"] for l in out.splitlines()), out[:400])
check("parse shows repetition paths", "PID-3[2].1" in out)
check("parse shows OBX occurrence paths", "OBX[2]-5" in out)
check("parse marks null", "(null)" in out)

# parse --json: valid JSON, paths, decoded values
rc, out, _ = run("parse", "--json", f("oru_r01.hl7"))
try:
    doc = json.loads(out)
    ok = True
except ValueError as e:
    doc, ok = None, False
check("parse --json is valid JSON", ok, out[:200])
if ok:
    segs = doc[0]["segments"]
    check("json: 6 segments", len(segs) == 6, len(segs))

    def find(node, path):
        if node.get("path") == path:
            return node
        for ch in node.get("children", []):
            r = find(ch, path)
            if r:
                return r
        return None

    pid = next(s for s in segs if s["segment"] == "PID")
    node = None
    for fld in pid["fields"]:
        node = node or find(fld, "PID-5[1].1")
    check("json: PID-5[1].1 value DOE", node is not None and node.get("value") == "DOE", node)
    obx2 = next(s for s in segs if s["path"] == "OBX[2]")
    f5 = next(x for x in obx2["fields"] if x["path"] == "OBX[2]-5")
    check("json: decoded leaf", f5.get("value") == "Fasting & rested\\.br\\second line", f5)

rc, out, err = run("parse", "--json", f("mixed_good_bad.hl7"))
try:
    doc = json.loads(out)
    check("json with a bad message is still valid JSON", len(doc) == 3 and "error" in doc[1], doc)
except ValueError:
    check("json with a bad message is still valid JSON", False, out[:300])

# MLLP-framed file
with tempfile.TemporaryDirectory() as td:
    p = os.path.join(td, "framed.mllp")
    with open(p, "wb") as fh:
        fh.write(b"\x0b" + data + b"\x1c\x0d" + b"\x0b" + data.replace(b"LAB0001", b"LAB0002") + b"\x1c\x0d")
    rc, out, _ = run("get", "MSH-10", p)
    check("MLLP-framed file", rc == 0 and out == "LAB0001\nLAB0002\n", repr(out))

# parse --json is valid UTF-8 JSON whatever bytes the fields hold (each
# byte that is not UTF-8 written as \u00XX of the byte).
bad = (b"MSH|^~\\&|A\xff|B\xed\xa0\x80|C\xc0\xaf|D\"x\x01|2026||ADT^A01|U1|P|2.5\r"
       b"PID|1||\xf4\x90\x80\x80^\xe2\x82||caf\xc3\xa9\r")
p = subprocess.run([BIN, "parse", "--json", "-"], input=bad, capture_output=True, timeout=60)
try:
    doc = json.loads(p.stdout.decode("utf-8"))  # strict UTF-8, strict JSON
    vals = json.dumps(doc, ensure_ascii=False)
    ok = "A\u00ff" in vals and "B\u00ed\u00a0\u0080" in vals and "caf\u00e9" in vals
except (UnicodeDecodeError, ValueError) as e:
    ok, vals = False, repr(e)
check("parse --json: invalid UTF-8 escaped, valid kept", p.returncode == 0 and ok, vals[:300])

# get reaches batch headers and trailers (FHS BHS BTS FTS) like any segment:
# one line per such segment, BHS-1/BHS-2 the delimiters as for MSH.
rc, out, err = run("get", "BHS-4", f("batch_headers.hl7"))
check("get BHS-4 prints each batch header", rc == 0 and out == "BFAC\nBFAC2\n", repr((rc, out, err)))
rc, out, _ = run("get", "-n", "BHS-1", f("batch_headers.hl7"))
check("get -n BHS-1: separator, message count before it", out == "0\t#\n2\t|\n", repr(out))
rc, out, _ = run("get", "BHS-2", f("batch_headers.hl7"))
check("get BHS-2 is the encoding characters", out == "^~\\&\n^~\\&\n", repr(out))
rc, out, _ = run("get", "BHS-9.2", f("batch_headers.hl7"))
check("get BHS-9.2 with the batch's own delimiters", out == "two\n\n", repr(out))
rc, out, _ = run("get", "-n", "BTS-2", f("batch_headers.hl7"))
check("get BTS-2", out == "2\tfirst batch\n3\tsecond\n", repr(out))
rc, out, _ = run("get", "FHS-9", f("batch_headers.hl7"))
check("get FHS-9", out == "file1.hl7\n", repr(out))
rc, out, _ = run("get", "FTS-1", f("batch_headers.hl7"))
check("get FTS-1", out == "2\n", repr(out))
rc, out, _ = run("get", "MSH-10", f("batch_headers.hl7"))
check("get MSH-10 still one line per message", out == "M1\nM2\nM3\n", repr(out))
rc, out, _ = run("get", "BHS-3", f("adt_batch.hl7"))
check("get BHS-3 on adt_batch", rc == 0 and out == "SENDER\n", repr(out))
CORPUS = os.environ.get("CAD_CORPUS", os.path.join(os.path.dirname(__file__), "..", "..", "..",
                                                   "shared", "corpus"))
if os.path.isdir(CORPUS):
    def c(name):
        return os.path.join(CORPUS, name)
    rc, out, _ = run("get", "BHS-4", c("pythonhl7__batch_bhs_bts_2msg.hl7"))
    check("corpus: BHS-4", rc == 0 and out == "ABCHS\n", repr(out))
    rc, out, _ = run("get", "BHS-11", c("pythonhl7__batch_bhs_bts_2msg.hl7"))
    check("corpus: BHS-11", out == "abchs20070101123401-1\n", repr(out))
    rc, out, _ = run("get", "-n", "BTS-1", c("pythonhl7__file_2batches_3msg.hl7"))
    check("corpus: BTS-1 of two batches", out == "2\t2\n3\t1\n", repr(out))
    rc, out, _ = run("get", "BTS-1", c("pythonhl7__batch_bts_no_bhs.hl7"))
    check("corpus: a trailer without a header", rc == 0 and out == "1\n", repr(out))
    rc, out, _ = run("get", "BHS-1", c("nodehl7client__batch_bhs_colon_msh_pipe.hl7"))
    check("corpus: BHS-1 is the batch's own separator", out == ":\n", repr(out))
else:
    print("# corpus not found at %s: corpus checks skipped" % CORPUS)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
