#!/usr/bin/env python3
"""test_pipeline.py - what the message path answers and logs for input that
goes wrong, over real MLLP: a broken header still gets a NAK (issue 13 item
13), log lines stay valid UTF-8 whatever bytes the message holds (item 11),
the too-big line says the real size and ERR-2 locates a bad segment (item
18).  Usage: test_pipeline.py CADUCEUS_BINARY [TEST]"""
import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, adt, check_clean_stop, connect, field, fields,  # noqa: E402
                         frame, free_port, read_frame, run_tests, send_recv)


def files_dest(tmp):
    return "  files:\n    type: file\n    dir: %s/out\n    name: \"${MSH-10}.hl7\"\n" % tmp


def channel(port, extra=""):
    return ("  adt:\n    listen: [ \"127.0.0.1:%d\" ]\n    frame_timeout: 2s\n%s"
            "    to: [ files ]\n" % (port, extra))


def log_records(eng):
    """Every line of a JSON log, parsed strictly: the bytes must be UTF-8
    and each line one JSON object."""
    with open(eng.logpath, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8")  # strict: raises on any invalid byte
    return [json.loads(line) for line in text.split("\n") if line]


def test_broken_header_gets_a_nak(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp))
    try:
        eng.start([port])
        cases = [
            (b"MSH|", "102"),                                        # MSH-2 missing
            (b"MSHX|^~\\&|A|B|C|D|20260101||ADT^A01|X1|P|2.5\r", "102"),  # MSH-1 unreadable
            (b"PID|1||MRN7Q4ZX\rPV1|1|I\r", "100"),                     # no MSH at all
        ]
        with connect(port) as s:
            for msg, code in cases:
                ack = send_recv(s, msg, timeout=5)
                f = fields(ack)
                assert field(f, "MSH", 1) == "|" and field(f, "MSH", 2) == "^~\\&", ack
                assert field(f, "MSH", 9) == "ACK^^ACK", ack
                assert field(f, "MSA", 1) == "AR" and field(f, "MSA", 2) == "", ack
                e3 = field(f, "ERR", 3).split("^")
                assert e3[0] == code and e3[2] == "HL70357", (msg, ack)
                assert field(f, "ERR", 4) == "E"
                assert field(f, "ERR", 8), "no reason in ERR-8: %r" % ack
            # The connection still works.
            ok = fields(send_recv(s, adt("OK1")))
            assert field(ok, "MSA", 1) == "AA" and field(ok, "MSA", 2) == "OK1"
            # A field separator that can be read is kept.
            f = fields(send_recv(s, b"MSH#"))
            assert field(f, "MSA", 1) == "AR", f
        check_clean_stop(eng)
        log = eng.log()
        rej = [ln for ln in log.splitlines() if "event=msg.rejected" in ln]
        assert len(rej) == 4, log
        assert "no encoding characters (MSH-2)" in rej[0], rej[0]
        assert "invalid field separator (MSH-1)" in rej[1], rej[1]
        assert "first segment is not MSH" in rej[2], rej[2]
        assert all("outcome=AR" in ln for ln in rej), rej
        assert "MRN7Q4ZX" not in log, "message content in the log"
    finally:
        eng.kill()


# Every class of bytes that is not UTF-8, and bytes that could forge a line
# or a key.
BAD_UTF8 = [
    b"\xed\xa0\x80",          # an encoded surrogate (U+D800)
    b"\xed\xbf\xbf",          # U+DFFF
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",  # overlong '/'
    b"\xff", b"\xfe", b"\x80", b"\xbf",                 # stray bytes
    b"\xc3", b"\xe2\x82",     # truncated sequences
    b"\xf4\x90\x80\x80",      # above U+10FFFF
    b"\xf5\x80\x80\x80",
]


def forging_ctl(i, bad):
    """A control id holding invalid UTF-8, control bytes, quotes and what
    would forge a key in either log format (no CR/LF: they end MSH)."""
    return b"C" + bytes([48 + i % 10]) + bad + b"\x01\x7f\\\",\"event\":\"forged\" event=forged"


def send_bad(port):
    with connect(port) as s:
        for i, bad in enumerate(BAD_UTF8):
            msg = adt("PLACEHOLDER").replace(b"PLACEHOLDER", forging_ctl(i, bad))
            msg = msg.replace(b"ADT^A01^ADT_A01", b"ADT^A01" + bad)
            ack = fields(send_recv(s, msg, 5))
            assert field(ack, "MSA", 1) == "AA", ack
        # Valid UTF-8 passes through as it is.
        send_recv(s, adt("caf\u00e9"))


def test_json_log_is_valid_utf8(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp),
                 engine_extra="  log_format: json\n")
    try:
        eng.start([port])
        send_bad(port)
        check_clean_stop(eng)
        recs = log_records(eng)  # strict UTF-8, strict JSON, line by line
        assert not any(r.get("event") == "forged" for r in recs)
        got = [r for r in recs if r.get("event") == "msg.accepted"]
        assert len(got) == len(BAD_UTF8) + 1, [r.get("event") for r in recs]
        for i, (r, bad) in enumerate(zip(got, BAD_UTF8)):
            # Each byte that is not UTF-8 is written as \u00XX: the text is
            # those bytes read as Latin-1.
            assert r["ctl"] == forging_ctl(i, bad).decode("latin-1"), r
            assert r["type"] == ("ADT^A01" + bad.decode("latin-1")), r
        assert got[-1]["ctl"] == "caf\u00e9", got[-1]
    finally:
        eng.kill()


def test_kv_log_is_valid_utf8(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp))
    try:
        eng.start([port])
        send_bad(port)
        check_clean_stop(eng)
        with open(eng.logpath, "rb") as f:
            text = f.read().decode("utf-8")  # strict
        lines = [ln for ln in text.split("\n") if "event=msg.accepted" in ln]
        assert len(lines) == len(BAD_UTF8) + 1, text
        for ln in lines:
            assert re.match(r"\S+ level=info event=msg.accepted ", ln), ln
        assert ("ctl=\"C0\\xed\\xa0\\x80\\x01\\x7f\\\\\\\",\\\"event\\\":\\\"forged\\\" "
                "event=forged\"") in lines[0], lines[0]
        assert "ctl=\"caf\u00e9\"" in lines[-1] or "ctl=caf\u00e9" in lines[-1], lines[-1]
    finally:
        eng.kill()


def test_bad_segment_id_located_in_err2(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port), files_dest(tmp))
    try:
        eng.start([port])
        with connect(port) as s:
            bad = adt("E1").replace(b"\rPV1|", b"\rP!1|")
            f = fields(send_recv(s, bad))
            assert field(f, "MSA", 1) == "AR" and field(f, "MSA", 2) == "E1"
            assert field(f, "ERR", 2) == "P!1^4", f
            # An empty segment id: the sequence alone.
            f = fields(send_recv(s, adt("E2").replace(b"\rPV1|", b"\r|")))
            assert field(f, "ERR", 2) == "^4", f
        check_clean_stop(eng)
    finally:
        eng.kill()


def test_too_big_says_the_size(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, channel(port, "    max_message_size: 4096\n"), files_dest(tmp))
    try:
        eng.start([port])
        big = adt("B1") + b"NTE|1||" + b"A" * 6000 + b"\r"
        # Whole in one write: its exact size.
        with connect(port) as s:
            s.sendall(frame(big))
            f = fields(read_frame(s, 5))
            assert field(f, "MSA", 1) == "AR" and field(f, "MSA", 2) == "B1", f
        # Cut off: the engine answers before the end, with what it has seen.
        with connect(port) as s:
            s.sendall(b"\x0b" + big.replace(b"B1", b"B2")[:5000])
            f = fields(read_frame(s, 5))
            assert field(f, "MSA", 1) == "AR" and field(f, "MSA", 2) == "B2", f
        check_clean_stop(eng)
        log = eng.log()
        lines = [ln for ln in log.splitlines() if "event=msg.too_big" in ln]
        assert len(lines) == 2, log
        assert ("msg=\"message of %d bytes, larger than max_message_size (4096 bytes)\"" %
                len(big)) in lines[0], lines[0]
        assert "bytes=%d " % len(big) in lines[0], lines[0]
        m = re.search(r"msg=\"message of at least (\d+) bytes, larger than max_message_size "
                      r"\(4096 bytes\)\"", lines[1])
        assert m and 4096 < int(m.group(1)) <= 5000, lines[1]
    finally:
        eng.kill()


TESTS = [test_broken_header_gets_a_nak, test_json_log_is_valid_utf8, test_kv_log_is_valid_utf8,
         test_bad_segment_id_located_in_err2, test_too_big_says_the_size]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
