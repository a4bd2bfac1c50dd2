#!/usr/bin/env python3
"""test_charset.py - character sets end to end, over real MLLP: a Latin-1
message (MSH-18 8859/1, shaped like an Oracle Health / Cerner sample) is
ACKed with its MSH-18 echoed, reaches a destination without `encoding:`
byte for byte, a UTF-8 destination converted (MSH-18 rewritten) and an MLLP
receiver that requires 8859/1 with a character it cannot hold escaped; a
UTF-8 message is passed on untouched; a message without MSH-18 follows the
channel's `charset:`; bytes that are not valid in the declared set and an
unknown set are refused (AR, ERR 102 / 103) and the connection goes on; a
character a destination cannot hold under `unrepresentable: reject` is AE.
Usage: test_charset.py CADUCEUS_BINARY [TEST]"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, FakeReceiver, check_clean_stop, connect, field,  # noqa: E402
                         fields, free_port, run_tests, send_recv, wait_for)

NAME_L1 = "M\xdcLLER^JOS\xc9"  # as Latin-1 text; never in the log

def cerner(ctl, charset="8859/1", name=NAME_L1):
    """An ADT^A08 as Oracle Health (Cerner Millennium) samples show them:
    HNAM sender, v2.3, alias-pool identifiers, FIN in PID-18, Latin-1."""
    msh18 = "||||||" + charset if charset is not None else ""
    return ("MSH|^~\\&|HNAM_PM|HNA500|RECEIVER|SITE|20240305083000||ADT^A08|%s|P|2.3%s\r"
            "EVN|A08|20240305083000\r"
            "PID|1||1234567^^^MRN^MRN~7654321^^^CMRN^CMRN||%s||19580211|M|||"
            "Stra\xdfe 5^^K\xd6LN^^50667^DE|||||||FIN12345^^^FIN NBR^FIN NBR\r"
            "PV1|1|I|4WEST^401^1\r" % (ctl, msh18, name)).encode("latin-1")


def files(tmp, name, extra=""):
    return ("  %s:\n    type: file\n    dir: %s/%s\n    name: \"${MSH-10}.hl7\"\n%s"
            % (name, tmp, name, extra))


def read_out(tmp, dest, ctl):
    path = os.path.join(tmp, dest, ctl + ".hl7")
    wait_for(lambda: os.path.exists(path), what="%s/%s" % (dest, ctl))
    with open(path, "rb") as f:
        return f.read()


def setup(binary, tmp, port, ehr_port):
    dests = (files(tmp, "as_is")
             + files(tmp, "utf8", "    encoding: UNICODE UTF-8\n")
             + ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
                "    encoding: 8859/1\n    unrepresentable: escape\n" % ehr_port)
             + files(tmp, "ascii", "    encoding: ASCII\n"))
    chans = ("  cerner:\n    listen: [ \"127.0.0.1:%d\" ]\n    charset: 8859/1\n"
             "    routes:\n"
             "      - { name: keep, to: [as_is, utf8], continue: true }\n"
             "      - name: ehr\n"
             "        when: { path: MSH-9.2, equals: A08 }\n"
             "        transform:\n"
             "          - { set: PV1-3.1, value: \"4 OUEST \u20ac\" }\n"
             "        to: [ehr]\n"
             "        continue: true\n"
             "      - name: strict\n"
             "        when: { path: MSH-10, prefix: STRICT }\n"
             "        to: [ascii]\n" % port)
    return Engine(binary, tmp, chans, dests)


class running:
    """The engine of setup(), stopped whatever the test does."""

    def __init__(self, eng):
        self.eng = eng

    def __enter__(self):
        return self.eng

    def __exit__(self, *exc):
        if self.eng.proc and self.eng.proc.poll() is None:
            self.eng.stop()


def test_latin1_over_mllp(binary, tmp):
    port = free_port()
    with FakeReceiver() as ehr, running(setup(binary, tmp, port, ehr.port)) as eng:
        eng.start([port])
        msg = cerner("Q150084616T145947960")
        with connect(port) as s:
            ack = send_recv(s, msg)
        f = fields(ack)
        assert field(f, "MSA", 1) == "AA", ack
        assert field(f, "MSH", 18) == "8859/1", ack
        # No encoding: the bytes as sent.
        assert read_out(tmp, "as_is", "Q150084616T145947960") == msg
        # UTF-8: converted, MSH-18 rewritten, nothing else changed.
        want = msg.decode("latin-1").replace("||||||8859/1", "||||||UNICODE UTF-8").encode()
        assert read_out(tmp, "utf8", "Q150084616T145947960") == want
        # The EHR requires 8859/1: the route wrote UTF-8 (with a euro sign,
        # which Latin-1 lacks: escaped); the rest is Latin-1 again.
        wait_for(lambda: ehr.count() >= 1, what="the EHR's copy")
        got = ehr.messages()[0].data
        assert b"M\xdcLLER^JOS\xc9" in got and b"Stra\xdfe 5^^K\xd6LN" in got, got
        assert b"PV1|1|I|4 OUEST \\XE282AC\\^401^1" in got, got
        assert b"||||||8859/1\r" in got
        check_clean_stop(eng)
        log = eng.log()
        assert "M\xc3\x9cLLER" not in log and "MÜLLER" not in log


def test_utf8_untouched_and_channel_default(binary, tmp):
    port = free_port()
    with FakeReceiver() as ehr, running(setup(binary, tmp, port, ehr.port)) as eng:
        eng.start([port])
        utf = ("MSH|^~\\&|A|B|C|D|20240305||ADT^A01|U1|P|2.5.1||||||UNICODE UTF-8\r"
               "PID|1||9^^^H^MR||\u5c71\u7530^\u592a\u90ce\r").encode()
        nodecl = cerner("N1", charset=None)
        with connect(port) as s:
            assert field(fields(send_recv(s, utf)), "MSA", 1) == "AA"
            a2 = fields(send_recv(s, nodecl))
            assert field(a2, "MSA", 1) == "AA"
            assert field(a2, "MSH", 18) == ""  # nothing to echo
        assert read_out(tmp, "as_is", "U1") == utf
        assert read_out(tmp, "utf8", "U1") == utf
        # No MSH-18: read as the channel's 8859/1; back as it came.
        assert read_out(tmp, "as_is", "N1") == nodecl
        conv = read_out(tmp, "utf8", "N1")
        assert "M\u00dcLLER^JOS\u00c9".encode() in conv
        assert conv.split(b"\r")[0].endswith(b"|P|2.3||||||UNICODE UTF-8")
        check_clean_stop(eng)


def test_refusals(binary, tmp):
    port = free_port()
    with FakeReceiver() as ehr, running(setup(binary, tmp, port, ehr.port)) as eng:
        eng.start([port])
        with connect(port) as s:
            # ASCII declared, a Latin-1 byte in PID-5: AR, 102, where it is.
            bad = cerner("B1", charset="ASCII")
            f = fields(send_recv(s, bad))
            assert field(f, "MSA", 1) == "AR", f
            err = field(f, "ERR", 1)  # v2.3: ERR-1 is SEG^seq^field^code&text
            assert err.startswith("PID^3^5^102"), err
            assert field(f, "MSH", 18) == "ASCII"
            # A set that is not supported: AR, 103 at MSH-18.
            f = fields(send_recv(s, cerner("B2", charset="ISO IR87")))
            assert field(f, "MSA", 1) == "AR" and field(f, "ERR", 1).startswith("MSH^1^18^103"), f
            # A destination that requires ASCII and refuses: AE, 102.
            f = fields(send_recv(s, cerner("STRICT1")))
            assert field(f, "MSA", 1) == "AE" and "^102" in field(f, "ERR", 1), f
            # The connection goes on.
            assert field(fields(send_recv(s, cerner("OK2"))), "MSA", 1) == "AA"
        for ctl in ("B1", "B2", "STRICT1"):
            assert not os.path.exists(os.path.join(tmp, "as_is", ctl + ".hl7"))
        log = eng.log()
        assert "not valid ASCII" in log and "not supported" in log
        assert "cannot represent" in log
        check_clean_stop(eng)


def test_archive_finds_latin1_ids_in_utf8(binary, tmp):
    """The archive indexes PID-3 of a Latin-1 message in UTF-8: a search
    typed in UTF-8 finds it (the body is kept as received)."""
    import json
    import subprocess
    port = free_port()
    with FakeReceiver() as ehr, running(setup(binary, tmp, port, ehr.port)) as eng:
        eng.start([port])
        msg = cerner("ARCH1").replace(b"1234567^^^MRN^MRN", b"K\xd6LN-77^^^H\xd4PITAL^MR")
        with connect(port) as s:
            assert field(fields(send_recv(s, msg)), "MSA", 1) == "AA"

        def found():
            r = subprocess.run([binary, "search", os.path.join(tmp, "data"), "--json",
                                "--patient", "K\u00d6LN-77^H\u00d4PITAL"],
                               capture_output=True, timeout=30)
            rows = [json.loads(x) for x in r.stdout.decode().splitlines() if x.strip()]
            return [x["control_id"] for x in rows] == ["ARCH1"]
        wait_for(found, timeout=10, what="the archive to find the Latin-1 id")
        check_clean_stop(eng)


def test_check_refuses_bad_names(binary, tmp):
    import subprocess
    conf = os.path.join(tmp, "c.yaml")
    with open(conf, "w") as f:
        f.write("destinations:\n  o:\n    type: file\n    dir: out\n    encoding: EBCDIC\n"
                "  p:\n    type: file\n    dir: out2\n    encoding: windows-1252\n"
                "    unrepresentable: drop\n"
                "channels:\n  c:\n    listen: [\"127.0.0.1:1\"]\n    charset: KOI8\n"
                "    to: [o]\n")
    r = subprocess.run([binary, "check", conf], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "c.yaml:5:15: encoding: unknown character set 'EBCDIC'" in r.stderr, r.stderr
    assert "c.yaml:9:15: encoding: 'windows-1252' can be read but not written" in r.stderr
    assert "c.yaml:10:22:" in r.stderr and "reject, replace or escape" in r.stderr
    assert "c.yaml:14:14: charset: unknown character set 'KOI8'" in r.stderr, r.stderr
    # A good one: check says what it will do.
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    r = subprocess.run([binary, "check", os.path.join(root, "examples", "ehr", "oracle-health",
                                                      "caduceus.yaml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "charset     8859/1 for messages without MSH-18" in r.stdout, r.stdout
    assert "encoding    8859/1, MSH-18 rewritten; a character it lacks: escaped" in r.stdout


if __name__ == "__main__":
    sys.exit(run_tests([test_latin1_over_mllp, test_utf8_untouched_and_channel_default,
                        test_refusals, test_archive_finds_latin1_ids_in_utf8,
                        test_check_refuses_bad_names], sys.argv))
