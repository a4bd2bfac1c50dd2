#!/usr/bin/env python3
"""HL7 v2 to FHIR R4 (parsers/fhir) through the real binary: `caduceus fhir`
on one message per supported type (tests/fixtures/fhir), the mappings checked
value by value, every Bundle validated against FHIR R4 by npm's `fhir`
package (tests/integration/fhir_validate.cjs: zero errors is the pass
condition), the json and xml formats, route tests that expect FHIR, the
engine delivering `format: fhir` to a file, and the shared corpus."""
import base64
import glob
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, connect, free_port, frame, read_frame, run_tests,  # noqa: E402
                         wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FIX = os.path.join(ROOT, "tests", "fixtures", "fhir")
GH = "urn:oid:2.16.840.1.113883.3.72"
NS = "{urn:hl7-org:v2xml}"


def fhir(binary, *args, check=True):
    p = subprocess.run([binary, "fhir"] + list(args), capture_output=True, timeout=120)
    if check:
        assert p.returncode == 0, (p.returncode, p.stderr.decode()[-2000:])
    return p


def bundle(binary, name, *extra):
    out = fhir(binary, "--system", "GH=" + GH, *extra, os.path.join(FIX, name)).stdout
    return json.loads(out)


def resources(b, rtype):
    return [e["resource"] for e in b["entry"] if e["resource"]["resourceType"] == rtype]


def validator():
    node = shutil.which("node")
    if not node or not os.path.isdir(os.path.join(HERE, "node_modules", "fhir")):
        return None
    return node


def validate(docs, tmp):
    """Validate Bundles with fhir_validate.cjs; returns the error list."""
    node = validator()
    if node is None:
        print("  SKIP validation: node or node_modules/fhir absent (dev.sh runs npm ci)")
        return []
    path = os.path.join(tmp, "bundles.json")
    with open(path, "w") as f:
        json.dump(docs, f)
    p = subprocess.run([node, os.path.join(HERE, "fhir_validate.cjs")], stdin=open(path, "rb"),
                       capture_output=True, timeout=300, cwd=HERE)
    errs = []
    for line in p.stdout.decode().splitlines():
        d = json.loads(line)
        errs += [(d["file"], e) for e in d["errors"]]
    assert p.returncode in (0, 1), p.stderr.decode()[-2000:]
    assert (p.returncode == 0) == (not errs)
    return errs


def test_validator_catches_errors(binary, tmp):
    """The validator is not a rubber stamp: broken Bundles are refused."""
    if validator() is None:
        print("  SKIP: node or node_modules/fhir absent")
        return
    good = bundle(binary, "oru_r01.hl7")
    bad = json.loads(json.dumps(good))
    obs = [e for e in bad["entry"] if e["resource"]["resourceType"] == "Observation"]
    obs[0]["resource"]["status"] = "done"                       # not in the value set
    obs[1]["resource"]["valueQuantity"]["value"] = "1.25"       # a string for a decimal
    obs[2]["resource"]["effectiveDateTime"] = "2026-11-25T09:00"  # time without seconds/zone
    obs[3]["resource"]["colour"] = "red"                        # unknown element
    del bad["entry"][0]["resource"]["resourceType"]
    errs = validate([bad], tmp)
    text = json.dumps(errs)
    assert len(errs) >= 4, errs
    for what in ("done", "Number", "dateTime", "colour"):
        assert what in text, (what, text)
    assert validate([good], tmp) == []


def test_fixtures_validate(binary, tmp):
    """Every fixture's Bundle (and with another zone / no table) is valid R4."""
    docs = []
    for path in sorted(glob.glob(os.path.join(FIX, "*.hl7"))):
        for extra in ([], ["--timezone", "+01:00"]):
            docs.append(bundle(binary, os.path.basename(path), *extra))
        docs.append(json.loads(fhir(binary, path).stdout))
    assert len(docs) == 27
    # and the example's expected Bundles (examples/lab-to-fhir)
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "lab-to-fhir", "expected",
                                              "*.json"))):
        docs.append(json.load(open(path)))
    assert len(docs) == 29
    errs = validate(docs, tmp)
    assert errs == [], errs[:20]


def test_unit_bundles_validate(binary, tmp):
    """The Bundles the C unit tests make (tests/unit/parsers/test_fhir.c)
    are valid R4 too."""
    unit = os.path.join(os.path.dirname(binary), "..", "tests", "unit", "test_fhir")
    if not os.path.exists(unit):
        print("  SKIP: %s not built" % unit)
        return
    dump = os.path.join(tmp, "unit.ndjson")
    env = dict(os.environ, CAD_FHIR_DUMP=dump)
    p = subprocess.run([unit], env=env, capture_output=True, timeout=120)
    assert p.returncode == 0, p.stdout.decode()[-2000:]
    docs = [json.loads(x) for x in open(dump) if x.strip()]
    assert len(docs) >= 20, len(docs)
    errs = validate(docs, tmp)
    assert errs == [], errs[:20]


def test_adt_a01(binary, tmp):
    b = bundle(binary, "adt_a01.hl7")
    assert b["type"] == "transaction" and b["timestamp"] == "2026-12-01T08:30:00-05:00"
    for e in b["entry"]:
        r = e["resource"]
        assert e["fullUrl"] == "urn:uuid:" + r["id"]
        assert e["request"] == {"method": "PUT", "url": "%s/%s" % (r["resourceType"], r["id"])}
    (p,) = resources(b, "Patient")
    ids = p["identifier"]
    # PID-3 repetitions with their authorities, then PID-19
    assert [i["value"] for i in ids] == ["PATID1234", "123456789", "ALT77", "444-33-3333"]
    assert ids[0]["system"] == GH and ids[0]["type"]["coding"][0]["code"] == "MR"
    assert "system" not in ids[1] and ids[1]["assigner"] == {"display": "USSSA"}
    assert "system" not in ids[2] and "assigner" not in ids[2]
    assert ids[3]["system"] == "http://hl7.org/fhir/sid/us-ssn"
    assert p["name"][0] == {"use": "official", "family": "EVERYMAN", "given": ["ADAM", "A"],
                            "prefix": ["DR"], "suffix": ["III"]}
    assert p["name"][1]["use"] == "nickname"
    assert p["gender"] == "male" and p["birthDate"] == "1961-06-15"
    assert p["telecom"] == [
        {"system": "phone", "value": "+1 (555) 5552004", "use": "home"},
        {"system": "email", "value": "adam@example.org", "use": "home"},
        {"system": "phone", "value": "+1 (555) 5553001 x22", "use": "work"}]
    assert p["address"][0]["line"] == ["2222 HOME STREET", "APT 5"]
    assert p["address"][0]["postalCode"] == "27401-1020" and p["address"][0]["use"] == "home"
    assert p["maritalStatus"]["coding"][0]["system"].endswith("/v2-0002")
    assert p["multipleBirthBoolean"] is False
    assert p["generalPractitioner"][0]["display"] == "DR PAT PRIMARY"
    (enc,) = resources(b, "Encounter")
    assert enc["status"] == "in-progress"
    assert enc["class"]["code"] == "IMP"
    assert enc["period"] == {"start": "2026-12-01T08:00:00-05:00"}
    assert enc["identifier"][0]["value"] == "V1001"
    assert [x["type"][0]["coding"][0]["code"] for x in enc["participant"]] == ["ATND", "ADM"]
    assert enc["reasonCode"][0]["coding"][0] == {"code": "CHEST PAIN", "display": "Chest pain"}
    assert enc["subject"]["reference"] == "urn:uuid:" + p["id"]
    (rp,) = resources(b, "RelatedPerson")
    assert rp["relationship"][0]["coding"][0]["code"] == "SPO" and rp["gender"] == "female"
    al = resources(b, "AllergyIntolerance")
    assert [a["category"] for a in al] == [["medication"], ["food"]]
    assert al[0]["reaction"][0]["severity"] == "severe"
    assert [m["text"] for m in al[0]["reaction"][0]["manifestation"]] == ["HIVES", "RASH"]
    assert al[1]["code"]["coding"][0]["system"] == "http://snomed.info/sct"
    (cond,) = resources(b, "Condition")
    assert cond["code"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/icd-10",
                                         "code": "I21.9",
                                         "display": "Acute myocardial infarction"}
    assert cond["encounter"]["reference"] == "urn:uuid:" + enc["id"]
    (cov,) = resources(b, "Coverage")
    assert cov["payor"][0]["display"] == "Blue Cross Blue Shield"
    assert cov["period"] == {"start": "2026-01-01", "end": "2026-12-31"}
    assert cov["identifier"][0]["value"] == "POL998877"
    assert {c["type"]["coding"][0]["code"]: c["value"] for c in cov["class"]} == \
        {"plan": "BCBS-PPO", "group": "GRP123"}


def test_adt_null_and_missing_pv1(binary, tmp):
    """A08 without PV1: no Encounter; `""` leaves the element out."""
    raw = open(os.path.join(FIX, "adt_a08_nopv1.hl7"), "rb").read()
    assert b'""' in raw
    out = fhir(binary, os.path.join(FIX, "adt_a08_nopv1.hl7")).stdout.decode()
    assert '\\"\\"' not in out and '""' not in out
    b = json.loads(out)
    assert [e["resource"]["resourceType"] for e in b["entry"]] == ["Patient"]
    (p,) = resources(b, "Patient")
    assert p["name"] == [{"family": "EVERYMAN", "given": ["ADAM"]}]
    for k in ("gender", "address", "telecom"):
        assert k not in p, k
    # A28 with "PV1|1|N": no visit either; an OID as the namespace is a urn:oid
    b = bundle(binary, "adt_a28.hl7")
    assert [e["resource"]["resourceType"] for e in b["entry"]] == ["Patient"]
    p = b["entry"][0]["resource"]
    assert p["identifier"][1]["system"] == "urn:oid:2.16.840.1.113883.19.5"
    assert p["birthDate"] == "1990" and b["timestamp"] == "2026-12-03T10:00:00Z"


def test_dates_keep_precision_and_zone(binary, tmp):
    """A time without a zone: date only, unless MSH-7 or --timezone gives one."""
    b = bundle(binary, "adt_a03.hl7")
    (enc,) = resources(b, "Encounter")
    assert enc["status"] == "finished" and enc["class"]["code"] == "EMER"
    assert enc["period"] == {"start": "2026-12-03", "end": "2026-12-03"}
    assert "timestamp" not in b  # an instant needs a zone
    b = bundle(binary, "adt_a03.hl7", "--timezone", "+01:00")
    (enc,) = resources(b, "Encounter")
    # minute precision given: FHIR wants seconds, so :00 is added
    assert enc["period"] == {"start": "2026-12-03T02:00:00+01:00",
                             "end": "2026-12-03T09:30:00+01:00"}


def test_oru_r01(binary, tmp):
    b = bundle(binary, "oru_r01.hl7")
    reports = resources(b, "DiagnosticReport")
    obs = resources(b, "Observation")
    assert len(reports) == 2 and len(obs) == 12
    url = {e["resource"]["id"]: e["fullUrl"] for e in b["entry"]}
    assert [r["reference"] for r in reports[0]["result"]] == [url[o["id"]] for o in obs[:10]]
    assert [r["reference"] for r in reports[1]["result"]] == [url[o["id"]] for o in obs[10:]]
    assert reports[0]["status"] == "final" and reports[1]["status"] == "preliminary"
    assert reports[0]["issued"] == "2026-11-25T10:10:00-05:00"
    assert reports[0]["identifier"][0]["value"] == "ORD1"
    (spm,) = resources(b, "Specimen")
    assert reports[0]["specimen"] == [{"reference": url[spm["id"]]}]
    assert "specimen" not in reports[1]
    assert spm["collection"]["collectedDateTime"] == "2026-11-25T08:45:00-05:00"
    assert [i["value"] for i in spm["identifier"]] == ["SP1", "FS1"]
    glu, crea, sg, titer, gram, note, na, dt, bad, k = obs[:10]
    assert glu["valueQuantity"] == {"value": 95, "unit": "milligram per deciliter",
                                    "system": "http://unitsofmeasure.org", "code": "mg/dL"}
    assert glu["effectiveDateTime"] == "2026-11-25T10:00:00-05:00"       # OBX-14
    assert glu["referenceRange"][0]["low"]["value"] == 70
    assert glu["note"] == [{"text": "Fasting sample & checked"}]         # NTE, \T\ decoded
    assert glu["interpretation"][0]["coding"][0]["code"] == "N"
    assert crea["status"] == "corrected" and crea["valueQuantity"]["value"] == 1.25
    assert crea["effectiveDateTime"] == "2026-11-25T09:00:00-05:00"      # OBR-7 (MSH-7 zone)
    assert crea["referenceRange"][0]["high"]["value"] == 1.3 and \
        "low" not in crea["referenceRange"][0]
    assert crea["interpretation"][0]["coding"][0]["code"] == "H"
    assert sg["valueQuantity"]["comparator"] == ">" and sg["valueQuantity"]["value"] == 1.03
    assert titer["valueRatio"] == {"numerator": {"value": 1}, "denominator": {"value": 128}}
    assert gram["valueCodeableConcept"]["coding"][0]["display"] == "Gram positive cocci"
    assert gram["status"] == "preliminary"
    assert note["valueString"] == "Line one\nLine |two|"                 # \.br\ and \F\
    assert na["status"] == "cancelled" and not [k2 for k2 in na if k2.startswith("value")]
    assert dt["valueDateTime"] == "2026-11-24"
    assert bad["valueString"] == "abc"                                   # NM that is no number
    assert k["valueRange"]["low"]["value"] == 3.5 and k["valueRange"]["high"]["unit"] == "mmol/L"
    assert obs[11]["valueString"] == "first\nsecond"
    for o in obs:
        assert o["subject"]["reference"] == b["entry"][0]["fullUrl"]
        assert o["code"]["coding"][0]["system"] == "http://loinc.org"


def test_vxu_orders_mdm(binary, tmp):
    b = bundle(binary, "vxu_v04.hl7")
    imm = resources(b, "Immunization")
    assert [i["status"] for i in imm] == ["completed", "not-done"]
    i = imm[0]
    assert i["vaccineCode"]["coding"][0] == {"system": "http://hl7.org/fhir/sid/cvx",
                                             "code": "08", "display": "Hep B pediatric"}
    assert i["occurrenceDateTime"] == "2026-11-20" and i["primarySource"] is True
    assert i["doseQuantity"] == {"value": 0.5, "unit": "mL",
                                 "system": "http://unitsofmeasure.org", "code": "mL"}
    assert i["lotNumber"] == "LOT123" and i["expirationDate"] == "2027-12-31"
    assert i["manufacturer"] == {"display": "Merck"}
    assert i["route"]["coding"][0]["code"] == "IM" and i["site"]["coding"][0]["code"] == "LA"
    assert i["performer"][0]["actor"]["display"] == "AMY JONES"
    assert "doseQuantity" not in imm[1] and imm[1]["primarySource"] is False
    (o,) = resources(b, "Observation")
    assert o["partOf"][0]["reference"].endswith(i["id"])

    b = bundle(binary, "orm_o01.hl7")
    sr = resources(b, "ServiceRequest")
    assert [s["status"] for s in sr] == ["active", "revoked"]
    assert sr[0]["intent"] == "order" and sr[0]["priority"] == "stat"
    assert sr[0]["note"] == [{"text": "Patient fasting"}]
    assert sr[0]["requester"]["display"] == "MARCUS WELBY"
    assert sr[0]["authoredOn"] == "2026-11-20T13:55:00-06:00"
    assert sr[0]["requisition"]["value"] == "GRP1"
    assert sr[0]["code"]["coding"][0]["code"] == "24323-8" and "code" not in sr[1]

    b = bundle(binary, "oml_o21.hl7")
    sr = resources(b, "ServiceRequest")
    (spm,) = resources(b, "Specimen")
    assert len(sr) == 2 and sr[0]["specimen"][0]["reference"].endswith(spm["id"])
    assert "specimen" not in sr[1]

    b = bundle(binary, "mdm_t02.hl7")
    (doc,) = resources(b, "DocumentReference")
    assert doc["status"] == "current" and doc["docStatus"] == "final"
    assert doc["masterIdentifier"]["value"] == "DOC555"
    assert doc["date"] == "2026-11-21T09:55:00-05:00"
    (enc,) = resources(b, "Encounter")
    assert doc["context"]["encounter"][0]["reference"].endswith(enc["id"])
    text, pdf = [c["attachment"] for c in doc["content"]]
    assert base64.b64decode(text["data"]).decode() == \
        "Patient discharged home.\nFollow up in 2 weeks."
    assert pdf == {"contentType": "application/pdf", "data": "SGVsbG8="}


def test_deterministic_ids(binary, tmp):
    """Same message, same Bundle; another MSH-10: new ids, but the same
    Patient (keyed by its first identifier)."""
    a = fhir(binary, os.path.join(FIX, "oru_r01.hl7")).stdout
    assert a == fhir(binary, os.path.join(FIX, "oru_r01.hl7")).stdout
    raw = open(os.path.join(FIX, "oru_r01.hl7"), "rb").read().replace(b"LAB0002", b"LAB0003")
    other = os.path.join(tmp, "other.hl7")
    open(other, "wb").write(raw)
    b1, b2 = json.loads(a), json.loads(fhir(binary, other).stdout)
    ids1 = [e["resource"]["id"] for e in b1["entry"]]
    ids2 = [e["resource"]["id"] for e in b2["entry"]]
    assert ids1[0] == ids2[0]                        # Patient
    assert ids1[1] == ids2[1]                        # Encounter (visit number)
    assert not set(ids1[2:]) & set(ids2[2:])
    assert len(set(ids1)) == len(ids1)


def test_errors(binary, tmp):
    p = fhir(binary, "--help")
    assert b"usage: caduceus fhir" in p.stdout
    assert fhir(binary, check=False).returncode == 2
    assert fhir(binary, "--format", "yaml", "x", check=False).returncode == 2
    p = fhir(binary, os.path.join(tmp, "missing.hl7"), check=False)
    assert p.returncode == 1 and p.stderr
    msgs = os.path.join(tmp, "two.hl7")
    with open(msgs, "wb") as f:
        f.write(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A40|X1|P|2.5\rPID|1||SECRETID^^^GH||SECRETNAME\r\n")
        f.write(open(os.path.join(FIX, "adt_a28.hl7"), "rb").read() + b"\r\n")
    p = fhir(binary, msgs, check=False)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert "unsupported message type ADT^A40" in err and "SECRET" not in err, err
    assert json.loads(p.stdout)["entry"][0]["resource"]["resourceType"] == "Patient"


def test_json_and_xml(binary, tmp):
    src = os.path.join(FIX, "oru_r01.hl7")
    parsed = json.loads(subprocess.run([binary, "parse", "--json", src], capture_output=True,
                                       check=True, timeout=60).stdout)
    mine = json.loads(fhir(binary, "--format", "json", src).stdout)
    assert mine == {"segments": parsed[0]["segments"]}
    # bytes that are not UTF-8 (Latin-1 é, a C1 byte) and an escaped NUL read the same
    odd = os.path.join(tmp, "latin1.hl7")
    with open(odd, "wb") as f:
        f.write(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|L1|P|2.5\rPID|1||9||REN\xe9^\x85X\\X00\\Y\r")
    parsed = json.loads(subprocess.run([binary, "parse", "--json", odd], capture_output=True,
                                       check=True, timeout=60).stdout)
    assert json.loads(fhir(binary, "--format", "json", odd).stdout) == \
        {"segments": parsed[0]["segments"]}
    b = json.loads(fhir(binary, odd).stdout)
    assert b["entry"][0]["resource"]["name"][0] == {"family": "REN\u00e9", "given": ["\u2026X\ufffdY"]}
    er7 = fhir(binary, "--format", "er7", src).stdout
    assert er7.rstrip(b"\n") == open(src, "rb").read().rstrip(b"\r")
    x = fhir(binary, "--format", "xml", src).stdout
    root = ET.fromstring(x)
    assert root.tag == NS + "ORU_R01"
    segs = [c.tag[len(NS):] for c in root]
    assert segs[:5] == ["MSH", "PID", "PV1", "ORC", "OBR"] and segs.count("OBX") == 12
    pid = root.find(NS + "PID")
    assert pid.find("%sPID.3/%sCX.1" % (NS, NS)).text == "MRN001"
    assert pid.find("%sPID.3/%sCX.4/%sHD.1" % (NS, NS, NS)).text == "GH"
    assert pid.find("%sPID.5/%sXPN.1/%sFN.1" % (NS, NS, NS)).text == "DOE"
    obx6 = root.findall(NS + "OBX")[5]
    assert obx6.find(NS + "OBX.5").text == "Line one\\.br\\Line |two|"
    assert root.findall(NS + "OBX")[4].find("%sOBX.5/%sCWE.2" % (NS, NS)).text == \
        "Gram positive cocci"


CONFIG = """
engine:
  data_dir: %(tmp)s/data
fhir:
  systems: { GH: "%(gh)s" }
destinations:
  ehr: { type: file, dir: %(tmp)s/ehr }
  fhir_api: { type: file, append: %(tmp)s/fhir.ndjson, format: fhir }
  xml_out: { type: file, append: %(tmp)s/v2.xml, format: xml }
channels:
  lab:
    listen: "127.0.0.1:%(port)d"
    to: [ehr, fhir_api, xml_out]
    tests:
      - name: an ORU goes as v2 to the EHR and as a Bundle to the FHIR API
        input: { file: %(fix)s/oru_r01.hl7 }
        expect:
          ehr: { file: %(fix)s/oru_r01.hl7 }
          fhir_api: { file: %(tmp)s/expected.json }
          xml_out: { file: %(tmp)s/expected.xml }
      - name: the same Bundle named with a fhir key
        input: { file: %(fix)s/oru_r01.hl7 }
        expect:
          ehr: { fhir: %(tmp)s/expected.json }
          fhir_api: { file: %(tmp)s/expected.json }
          xml_out: { file: %(tmp)s/expected.xml }
"""


def test_route_tests_expect_fhir(binary, tmp):
    port = free_port()
    src = os.path.join(FIX, "oru_r01.hl7")
    expected = bundle(binary, "oru_r01.hl7")
    with open(os.path.join(tmp, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    with open(os.path.join(tmp, "expected.xml"), "wb") as f:
        f.write(fhir(binary, "--format", "xml", src).stdout)
    conf = os.path.join(tmp, "c.yaml")
    with open(conf, "w") as f:
        f.write(CONFIG % {"tmp": tmp, "gh": GH, "port": port, "fix": FIX})
    p = subprocess.run([binary, "test", conf], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    assert b"2 tests: 2 passed" in p.stdout
    # a wrong expectation is reported by JSON path
    obs = [e for e in expected["entry"] if e["resource"]["resourceType"] == "Observation"]
    obs[0]["resource"]["valueQuantity"]["value"] = 96
    obs[1]["resource"]["status"] = "final"
    with open(os.path.join(tmp, "expected.json"), "w") as f:
        json.dump(expected, f)
    p = subprocess.run([binary, "test", conf], capture_output=True, timeout=60)
    out = p.stdout.decode()
    assert p.returncode == 1, out
    assert "fhir_api: entry[3].resource.valueQuantity.value: expected 96, got 95" in out, out
    assert 'fhir_api: entry[4].resource.status: expected "final", got "corrected"' in out, out
    assert "ehr: entry[3].resource.valueQuantity.value" in out, out

    # the engine delivers the same Bundle (compact, one a line) and the XML
    with open(os.path.join(tmp, "expected.json"), "w") as f:
        json.dump(bundle(binary, "oru_r01.hl7"), f)
    eng = Engine(binary, tmp, "", "")
    eng.conf = conf
    eng.start(wait_ports=[port])
    try:
        s = connect(port)
        for _ in range(2):
            s.sendall(frame(open(src, "rb").read()))
            assert b"MSA|AA" in read_frame(s)
        s.close()
        path = os.path.join(tmp, "fhir.ndjson")
        wait_for(lambda: os.path.exists(path) and open(path, "rb").read().count(b"\n") >= 2,
                 what="two bundles")
        wait_for(lambda: os.path.exists(os.path.join(tmp, "v2.xml")), what="xml")
    finally:
        eng.stop()
    lines = open(path, "rb").read().splitlines()
    assert len(lines) == 2 and lines[0] == lines[1]
    assert json.loads(lines[0]) == bundle(binary, "oru_r01.hl7")
    assert validate([json.loads(lines[0])], tmp) == []
    docs = [b"<?xml" + d for d in open(os.path.join(tmp, "v2.xml"), "rb").read().split(b"<?xml")
            if d.strip()]
    assert len(docs) == 2 and docs[0].strip() == fhir(binary, "--format", "xml", src).stdout.strip()
    assert ET.fromstring(docs[0]).tag == NS + "ORU_R01"


def test_config_refusals(binary, tmp):
    for bad, what in (("fhir: { systems: { GH: 'not a uri' } }", "expected a URI"),
                      ("fhir: { timezone: '+25:00' }", "fhir.timezone"),
                      ("fhir: { zone: Z }", "unknown key 'zone' in fhir")):
        conf = os.path.join(tmp, "bad.yaml")
        with open(conf, "w") as f:
            f.write("engine: { data_dir: %s/d }\n%s\ndestinations:\n  o: { type: file, dir: %s/o, "
                    "format: fhir }\nchannels:\n  c: { listen: '127.0.0.1:1', to: o }\n"
                    % (tmp, bad, tmp))
        p = subprocess.run([binary, "check", conf], capture_output=True, timeout=30)
        assert p.returncode != 0 and what in p.stderr.decode(), p.stderr.decode()
        assert "bad.yaml:" in p.stderr.decode()
    with open(conf, "w") as f:
        f.write("engine: { data_dir: %s/d }\ndestinations:\n  o: { type: file, dir: %s/o, "
                "format: hl7 }\nchannels:\n  c: { listen: '127.0.0.1:1', to: o }\n" % (tmp, tmp))
    p = subprocess.run([binary, "check", conf], capture_output=True, timeout=30)
    assert p.returncode != 0 and "er7, fhir, json or xml" in p.stderr.decode(), p.stderr.decode()


def test_corpus(binary, tmp):
    """Every message of the shared corpus converts without a crash; every
    Bundle made is valid R4."""
    corpus = os.environ.get("CAD_CORPUS") or os.path.join(ROOT, "..", "shared", "corpus")
    files = sorted(glob.glob(os.path.join(corpus, "*.hl7")))
    if not files:
        print("  skip: corpus not found (%s)" % corpus)
        return
    docs, converted, refused = [], 0, 0
    for i in range(0, len(files), 50):
        p = subprocess.run([binary, "fhir", "--timezone", "Z"] + files[i:i + 50],
                           capture_output=True, timeout=300)
        assert p.returncode in (0, 1), (p.returncode, p.stderr[-2000:])
        refused += p.stderr.count(b"\n")
        dec = json.JSONDecoder()
        text, pos = p.stdout.decode(), 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos >= len(text):
                break
            d, pos = dec.raw_decode(text, pos)
            docs.append(d)
    converted = len(docs)
    print("  corpus: %d files, %d bundles, %d messages refused (unsupported types)"
          % (len(files), converted, refused))
    assert converted > 100
    errs = validate(docs, tmp)
    assert errs == [], errs[:20]


def test_example_lab_to_fhir_over_https(binary, tmp):
    """examples/lab-to-fhir as written: ORU^R01 over MLLP in; v2 to an MLLP
    receiver (the EHR), Bundles over HTTPS with a bearer token to a local
    FHIR endpoint; every Bundle received validates against R4 and equals
    the example's expected Bundle."""
    import signal
    import ssl
    from engine_util import FakeReceiver
    from http_fake import FakeHTTP
    from test_tls import make_ca, make_cert
    make_ca(tmp, "ca", "Test CA")
    make_cert(tmp, "server", "localhost", san="IP:127.0.0.1,DNS:localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(tmp, "server.crt"), os.path.join(tmp, "server.key"))
    ex = os.path.join(tmp, "examples", "lab-to-fhir")
    shutil.copytree(os.path.join(ROOT, "examples", "lab-to-fhir"), ex)
    conf = os.path.join(ex, "lab-to-fhir.yaml")
    with FakeHTTP(ssl_context=ctx) as srv, FakeReceiver() as ehr:
        env = dict(os.environ, EHR_MLLP_PORT=str(ehr.port),
                   FHIR_BASE_URL="https://127.0.0.1:%d/r4" % srv.port,
                   FHIR_CA_FILE=os.path.join(tmp, "ca.crt"), FHIR_TOKEN="t0ken-for-the-test")
        log = open(os.path.join(tmp, "engine.log"), "wb")
        proc = subprocess.Popen([binary, "run", conf], env=env, cwd=tmp, stdout=log, stderr=log)
        try:
            def up():
                try:
                    connect(2578).close()
                    return True
                except OSError:
                    return proc.poll() is not None
            wait_for(up, what="listen 2578")
            assert proc.poll() is None, open(os.path.join(tmp, "engine.log")).read()[-2000:]
            for name in ("oru_final.hl7", "oru_preliminary.hl7"):
                data = open(os.path.join(ex, "messages", name), "rb").read()
                data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
                s = connect(2578)
                s.sendall(frame(data))
                ack = read_frame(s)
                s.close()
                assert b"MSA|AA|" in ack or b"MSA|CA|" in ack, ack
            rs = srv.wait(lambda rs: len(rs) >= 2, what="two Bundles")
            ehr.wait_count(1, what="the final result at the EHR")
            assert ehr.count() == 1, ehr.count()
            docs = []
            for r, stem in zip(rs, ("oru_final", "oru_preliminary")):
                assert r.method == "POST" and r.path == "/r4", (r.method, r.path)
                hdr = {k.lower(): v for k, v in r.headers.items()}
                assert hdr.get("content-type", "").startswith("application/fhir+json"), hdr
                assert hdr.get("authorization") == "Bearer t0ken-for-the-test", hdr
                got = json.loads(r.body)
                want = json.load(open(os.path.join(ex, "expected", stem + ".bundle.json")))
                assert got == want, stem
                docs.append(got)
            node = validator()
            if node:
                assert validate(docs, tmp) == []
            log_text = open(os.path.join(tmp, "engine.log")).read()
            assert "t0ken-for-the-test" not in log_text
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(20)
            log.close()
        assert rc == 0, open(os.path.join(tmp, "engine.log")).read()[-2000:]


def test_example_drchrono_oauth2(binary, tmp):
    """examples/ehr/drchrono as written: a final ORU^R01 over MLLP arrives at
    a local FHIR endpoint as the example's Bundle, with a token fetched by
    OAuth2 client credentials; an order status message is accepted and not
    sent; the secret never reaches the log."""
    import signal
    from http_fake import FakeHTTP
    ex = os.path.join(tmp, "examples", "ehr", "drchrono")
    shutil.copytree(os.path.join(ROOT, "examples", "ehr", "drchrono"), ex)
    conf = os.path.join(ex, "caduceus.yaml")
    with FakeHTTP(oauth=("lab-interface", "dr-s3cret")) as srv:
        env = dict(os.environ, DRCHRONO_FHIR_URL="http://127.0.0.1:%d/fhir/r4" % srv.port,
                   DRCHRONO_TOKEN_URL="http://127.0.0.1:%d/token" % srv.port,
                   DRCHRONO_CLIENT_ID="lab-interface", DRCHRONO_CLIENT_SECRET="dr-s3cret")
        log = open(os.path.join(tmp, "engine.log"), "wb")
        proc = subprocess.Popen([binary, "run", conf], env=env, cwd=tmp, stdout=log, stderr=log)
        try:
            def up():
                try:
                    connect(2597).close()
                    return True
                except OSError:
                    return proc.poll() is not None
            wait_for(up, what="listen 2597")
            assert proc.poll() is None, open(os.path.join(tmp, "engine.log")).read()[-2000:]
            for name in ("orm_status.hl7", "oru_a1c_final.hl7"):
                data = open(os.path.join(ex, "messages", name), "rb").read()
                s = connect(2597)
                s.sendall(frame(data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")))
                ack = read_frame(s)
                s.close()
                assert b"MSA|AA|" in ack or b"MSA|CA|" in ack, ack
            rs = srv.wait(lambda rs: len(rs) >= 1, what="the Bundle")
            time.sleep(0.5)
            rs = srv.requests()
            assert len(rs) == 1, [r.path for r in rs]
            assert srv.token_requests >= 1
            r = rs[0]
            assert r.method == "POST" and r.path == "/fhir/r4", (r.method, r.path)
            hdr = {k.lower(): v for k, v in r.headers.items()}
            assert hdr.get("content-type", "").startswith("application/fhir+json"), hdr
            assert hdr.get("authorization", "").startswith("Bearer "), hdr
            got = json.loads(r.body)
            want = json.load(open(os.path.join(ex, "expected", "oru_a1c_final.bundle.json")))
            assert got == want
            if validator():
                assert validate([got], tmp) == []
            assert "dr-s3cret" not in open(os.path.join(tmp, "engine.log")).read()
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(20)
            log.close()
        assert rc == 0, open(os.path.join(tmp, "engine.log")).read()[-2000:]


TESTS = [test_validator_catches_errors, test_fixtures_validate, test_unit_bundles_validate,
         test_adt_a01,
         test_adt_null_and_missing_pv1, test_dates_keep_precision_and_zone, test_oru_r01,
         test_vxu_orders_mdm, test_deterministic_ids, test_errors, test_json_and_xml,
         test_route_tests_expect_fhir, test_config_refusals, test_corpus,
         test_example_lab_to_fhir_over_https, test_example_drchrono_oauth2]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
