#!/usr/bin/env python3
"""test_kafka.py - the Kafka destination against librdkafka's mock cluster
(tests/kafka/cad_kafka_mock: no broker needed), read back with kcat as the
third-party consumer.

  order      messages sent over MLLP reach the topic the template names,
             keyed by PID-3.1, with the MSH headers, every patient's
             messages in the order they were sent.
  down/up    the broker down while messages keep coming, then up again:
             nothing lost, order per key kept.

Usage: test_kafka.py CADUCEUS_BINARY [TEST]"""
import json
import re
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (PATIENT, Engine, check_clean_stop, connect, field,  # noqa: E402
                         fields, free_port, run_tests, send_recv, wait_for)


def mock_path(binary):
    p = os.environ.get("CAD_KAFKA_MOCK")
    if p and os.path.exists(p):
        return p
    return os.path.join(os.path.dirname(os.path.abspath(binary)), "..", "tests", "kafka",
                        "cad_kafka_mock")


class Mock:
    def __init__(self, binary, brokers, *topics):
        self.proc = subprocess.Popen([mock_path(binary), str(brokers)] + list(topics),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.bootstrap = self.proc.stdout.readline().strip()
        assert self.bootstrap, "the mock cluster did not start"

    def cmd(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(15)
        except Exception:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def oru(ctl, mrn):
    return ("MSH|^~\\&|LIS|CITY_LAB|LAB_IN|CITY_HOSP|20240305143000||ORU^R01^ORU_R01|%s|P|2.5.1\r"
            "PID|1||%s^^^CITYHOSP^MR||%s||19800412|F\r"
            "OBX|1|NM|GLU^Glucose^L||98|mg/dL|70-99|N|||F\r" % (ctl, mrn, PATIENT)).encode()


def kcat_read(bootstrap, topic, want, timeout=30):
    """Every message of topic (kcat -C -J), once `want` are there."""
    deadline = time.monotonic() + timeout
    out = []
    while time.monotonic() < deadline:
        r = subprocess.run(["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e",
                            "-q", "-J"], capture_output=True, text=True, timeout=60)
        out = [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
        if len(out) >= want:
            return out
        time.sleep(0.5)
    raise AssertionError("kcat read %d of %d messages" % (len(out), want))


DEST = """  bus:
    type: kafka
    brokers: "%s"
    topic: "hl7.${MSH-9.1}"
    librdkafka: { linger.ms: 2 }
    retry: { initial: 100ms, max: 1s, attempts: 1000 }
"""


def check_order(msgs, sent):
    """Per key, the MSH-10 values in the order they were sent."""
    by_key = {}
    for m in msgs:
        ctl = field(fields(m["payload"].encode()), "MSH", 10)
        by_key.setdefault(m["key"], []).append(ctl)
    want = {}
    for ctl, mrn in sent:
        want.setdefault(mrn, []).append(ctl)
    for mrn, ctls in want.items():
        got = by_key.get(mrn, [])
        # At-least-once: a resend may repeat one, never reorder or lose.
        dedup = [c for i, c in enumerate(got) if c not in got[:i]]
        assert dedup == ctls, "key %s: %r != %r" % (mrn, dedup, ctls)


def test_messages_keyed_and_in_order_per_patient(binary, tmp):
    if not shutil.which("kcat"):
        raise AssertionError("kcat not installed (./dev.sh installs it)")
    with Mock(binary, 1, "hl7.ORU:3") as mock:
        port = free_port()
        eng = Engine(binary, tmp, "  lab:\n    listen: [\"127.0.0.1:%d\"]\n    to: [bus]\n" % port,
                     DEST % mock.bootstrap).start(wait_ports=[port])
        sent = []
        try:
            s = connect(port)
            for i in range(30):
                mrn = "P%d" % (i % 3)
                assert field(fields(send_recv(s, oru("K%04d" % i, mrn))), "MSA", 1) == "AA"
                sent.append(("K%04d" % i, mrn))
            s.close()
            msgs = kcat_read(mock.bootstrap, "hl7.ORU", 30)
        finally:
            check_clean_stop(eng)
        assert len(msgs) == 30, len(msgs)
        check_order(msgs, sent)
        # One patient, one partition.
        parts = {}
        for m in msgs:
            parts.setdefault(m["key"], set()).add(m["partition"])
        assert all(len(p) == 1 for p in parts.values()), parts
        h = msgs[0].get("headers") or []
        hd = dict(zip(h[0::2], h[1::2]))
        assert hd.get("MSH-9") == "ORU^R01^ORU_R01" and hd.get("MSH-3") == "LIS", h
        assert hd.get("MSH-10", "").startswith("K"), h


def test_broker_down_then_up_nothing_lost_order_kept(binary, tmp):
    with Mock(binary, 1, "hl7.ORU:2") as mock:
        port = free_port()
        eng = Engine(binary, tmp, "  lab:\n    listen: [\"127.0.0.1:%d\"]\n    to: [bus]\n" % port,
                     DEST % mock.bootstrap).start(wait_ports=[port])
        sent = []
        try:
            s = connect(port)

            def send(i):
                mrn = "Q%d" % (i % 2)
                assert field(fields(send_recv(s, oru("D%04d" % i, mrn))), "MSA", 1) == "AA"
                sent.append(("D%04d" % i, mrn))
            for i in range(10):
                send(i)
            kcat_read(mock.bootstrap, "hl7.ORU", 10)
            mock.cmd("down 1")
            for i in range(10, 30):
                send(i)
            time.sleep(2)
            mock.cmd("up 1")
            s.close()
            msgs = kcat_read(mock.bootstrap, "hl7.ORU", 30, timeout=60)
        finally:
            check_clean_stop(eng)
        ctls = {field(fields(m["payload"].encode()), "MSH", 10) for m in msgs}
        assert ctls == {c for c, _ in sent}, sorted(ctls)
        check_order(msgs, sent)


def test_broker_down_past_message_timeout_retried_nothing_lost(binary, tmp):
    """Down for longer than message.timeout.ms (1.5 s here): the reports come
    back as errors, the worker retries, and once the broker is back every
    message is on the topic, in order per key (a resend may repeat one)."""
    with Mock(binary, 1, "hl7.ORU:2") as mock:
        port = free_port()
        dest = DEST.replace("linger.ms: 2", "linger.ms: 2, message.timeout.ms: 1500")
        eng = Engine(binary, tmp, "  lab:\n    listen: [\"127.0.0.1:%d\"]\n    to: [bus]\n" % port,
                     dest % mock.bootstrap).start(wait_ports=[port])
        sent = []
        try:
            s = connect(port)
            for i in range(5):
                assert field(fields(send_recv(s, oru("T%04d" % i, "Q%d" % (i % 2)))), "MSA", 1) == "AA"
                sent.append(("T%04d" % i, "Q%d" % (i % 2)))
            kcat_read(mock.bootstrap, "hl7.ORU", 5)
            mock.cmd("down 1")
            for i in range(5, 20):
                assert field(fields(send_recv(s, oru("T%04d" % i, "Q%d" % (i % 2)))), "MSA", 1) == "AA"
                sent.append(("T%04d" % i, "Q%d" % (i % 2)))
            wait_for(lambda: "dest.retry" in eng.log(), timeout=20, what="a retry after the timeout")
            mock.cmd("up 1")
            s.close()
            deadline = time.monotonic() + 60
            while True:
                msgs = kcat_read(mock.bootstrap, "hl7.ORU", 20, timeout=60)
                ctls = {field(fields(m["payload"].encode()), "MSH", 10) for m in msgs}
                if ctls == {c for c, _ in sent} or time.monotonic() > deadline:
                    break
                time.sleep(1)
        finally:
            check_clean_stop(eng)
        assert ctls == {c for c, _ in sent}, sorted(ctls)
        check_order(msgs, sent)


def test_message_too_large_is_dead_lettered_others_delivered(binary, tmp):
    with Mock(binary, 1, "hl7.ORU:1") as mock:
        port = free_port()
        dest = DEST.replace("linger.ms: 2", "linger.ms: 2, message.max.bytes: 1000") + \
            "    on_failure: dead_letter\n"
        eng = Engine(binary, tmp, "  lab:\n    listen: [\"127.0.0.1:%d\"]\n    to: [bus]\n" % port,
                     dest % mock.bootstrap).start(wait_ports=[port])
        try:
            s = connect(port)
            big = oru("BIG1", "P1").replace(b"OBX|1|NM|", b"NTE|1||" + b"x" * 1500 + b"\rOBX|1|NM|")
            for ctl, m in (("S1", oru("S1", "P1")), ("BIG1", big), ("S2", oru("S2", "P1"))):
                assert field(fields(send_recv(s, m)), "MSA", 1) == "AA"
            s.close()
            msgs = kcat_read(mock.bootstrap, "hl7.ORU", 2)
            got = [field(fields(m["payload"].encode()), "MSH", 10) for m in msgs]
            assert got == ["S1", "S2"], got

            def dead():
                r = subprocess.run([binary, "queue", "list", os.path.join(tmp, "data"), "bus",
                                    "--dead"], capture_output=True, text=True, timeout=30)
                return "BIG1" in r.stdout and "MSG_SIZE_TOO_LARGE" in r.stdout
            wait_for(dead, timeout=20, what="the large message in the dead letters")
        finally:
            check_clean_stop(eng)


def kcat_produce(bootstrap, topic, msgs):
    """Produce with kcat (-P), one message per line, key before a tab."""
    data = b"".join(k.encode() + b"\t" + m + b"\n" for k, m in msgs)
    r = subprocess.run(["kcat", "-P", "-b", bootstrap, "-t", topic, "-K", "\t"], input=data,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr


SOURCE = """  in:
    listen_kafka:
      brokers: "%s"
      topic: hl7.in
      group: cad-test
      max_in_flight: 16
      # A killed member's partitions move after its session times out.
      librdkafka: { session.timeout.ms: 6000, heartbeat.interval.ms: 500 }
    to: [out]
"""
FILE_DEST = """  out:
    type: file
    dir: %s/out
"""


def out_ctls(tmp):
    d = os.path.join(tmp, "out")
    return {f[:-4] for f in os.listdir(d) if f.endswith(".hl7")} if os.path.isdir(d) else set()


def test_kcat_produces_messages_flow_through_channel(binary, tmp):
    with Mock(binary, 1, "hl7.in:2") as mock:
        msgs = [("P%d" % (i % 4), oru("IN%04d" % i, "P%d" % (i % 4))) for i in range(50)]
        msgs.insert(20, ("PX", b"this is not HL7 at all"))
        kcat_produce(mock.bootstrap, "hl7.in", msgs)
        eng = Engine(binary, tmp, SOURCE % mock.bootstrap, FILE_DEST % tmp).start()
        try:
            wait_for(lambda: len(out_ctls(tmp)) == 50, timeout=60,
                     what="the 50 messages in the file destination")
            r = None

            def dead():
                nonlocal r
                r = subprocess.run([binary, "queue", "list", os.path.join(tmp, "data"),
                                    "channel:in", "--dead"], capture_output=True, text=True,
                                   timeout=30)
                return "kafka:hl7.in/" in r.stdout
            wait_for(dead, timeout=30, what="the unparseable message in the dead letters")
        finally:
            check_clean_stop(eng)
        assert out_ctls(tmp) == {"IN%04d" % i for i in range(50)}
        log = eng.log()
        assert "kafka:hl7.in/" in log, log[-2000:]
        # Offsets were committed: a second run reads nothing again.
        shutil.rmtree(os.path.join(tmp, "out"))
        eng2 = Engine(binary, tmp, SOURCE % mock.bootstrap, FILE_DEST % tmp).start()
        try:
            time.sleep(4)
            assert out_ctls(tmp) == set(), sorted(out_ctls(tmp))[:5]
        finally:
            check_clean_stop(eng2)


def test_reload_keeps_the_consumer_and_a_changed_topic_restarts_it(binary, tmp):
    import signal
    with Mock(binary, 1, "hl7.in:1", "hl7.other:1") as mock:
        kcat_produce(mock.bootstrap, "hl7.in", [("P1", oru("RL%04d" % i, "P1")) for i in range(5)])
        eng = Engine(binary, tmp, SOURCE % mock.bootstrap, FILE_DEST % tmp).start()
        try:
            wait_for(lambda: len(out_ctls(tmp)) == 5, timeout=60, what="the first 5")
            eng.signal(signal.SIGHUP)  # same configuration: the source is kept
            kcat_produce(mock.bootstrap, "hl7.in",
                         [("P1", oru("RL%04d" % i, "P1")) for i in range(5, 10)])
            wait_for(lambda: len(out_ctls(tmp)) == 10, timeout=60, what="5 more after SIGHUP")
            assert "kafka source stopping" not in eng.log()
            eng.write_config(SOURCE.replace("topic: hl7.in", "topic: hl7.other") % mock.bootstrap,
                             FILE_DEST % tmp)
            eng.signal(signal.SIGHUP)  # its topic changed: stopped and started again
            kcat_produce(mock.bootstrap, "hl7.other",
                         [("P1", oru("RL%04d" % i, "P1")) for i in range(10, 15)])
            wait_for(lambda: len(out_ctls(tmp)) == 15, timeout=60, what="the other topic's 5")
            assert "kafka source stopping" in eng.log()
        finally:
            check_clean_stop(eng)
        assert out_ctls(tmp) == {"RL%04d" % i for i in range(15)}


def test_sigkill_while_consuming_skips_nothing(binary, tmp):
    with Mock(binary, 1, "hl7.in:3") as mock:
        n = 400
        kcat_produce(mock.bootstrap, "hl7.in",
                     [("P%d" % (i % 7), oru("KL%04d" % i, "P%d" % (i % 7))) for i in range(n)])
        eng = Engine(binary, tmp, SOURCE % mock.bootstrap, FILE_DEST % tmp).start()
        wait_for(lambda: len(out_ctls(tmp)) >= 20, timeout=60, what="the first messages")
        eng.kill()
        got_before = len(out_ctls(tmp))
        eng2 = Engine(binary, tmp, SOURCE % mock.bootstrap, FILE_DEST % tmp).start()
        try:
            wait_for(lambda: len(out_ctls(tmp)) == n, timeout=90,
                     what="every message after the restart (had %d)" % got_before)
        finally:
            check_clean_stop(eng2)
        assert out_ctls(tmp) == {"KL%04d" % i for i in range(n)}


def test_backed_up_channel_pauses_reading_bounded(binary, tmp):
    """ack.policy delivered to a receiver that is not there: the source holds
    at most max_in_flight (16) messages (plus one poll turn) while 400 wait
    in Kafka; when the receiver comes up every one arrives."""
    from engine_util import FakeReceiver
    with Mock(binary, 1, "hl7.in:2") as mock:
        n = 400
        kcat_produce(mock.bootstrap, "hl7.in",
                     [("P%d" % (i % 5), oru("BP%04d" % i, "P%d" % (i % 5))) for i in range(n)])
        rport = free_port()
        src = SOURCE.replace("    to: [out]\n", "    ack: {policy: delivered}\n    to: [ehr]\n")
        dest = ("  ehr:\n    type: mllp\n    host: 127.0.0.1\n    port: %d\n"
                "    retry: {initial: 100ms, max: 300ms, attempts: 1000000}\n" % rport)
        eng = Engine(binary, tmp, src % mock.bootstrap, dest).start()
        try:
            time.sleep(6)  # group join, then reading until paused
            counts = [int(x) for x in re.findall(r"event=stats channel=in received=(\d+)", eng.log())]
            assert counts, eng.log()[-2000:]
            # max_in_flight 16, plus at most one poll turn (64) read while pausing.
            assert max(counts) <= 16 + 64, counts
            with FakeReceiver(port=rport) as rx:
                rx.wait(lambda ms: len({m.ctl for m in ms}) >= n, timeout=120,
                        what="every message at the receiver")
        finally:
            check_clean_stop(eng)


TESTS = [test_messages_keyed_and_in_order_per_patient,
         test_broker_down_then_up_nothing_lost_order_kept,
         test_kcat_produces_messages_flow_through_channel,
         test_sigkill_while_consuming_skips_nothing,
         test_backed_up_channel_pauses_reading_bounded,
         test_message_too_large_is_dead_lettered_others_delivered,
         test_reload_keeps_the_consumer_and_a_changed_topic_restarts_it,
         test_broker_down_past_message_timeout_retried_nothing_lost]

if __name__ == "__main__":
    if not shutil.which("kcat"):
        print("SKIP: kcat not installed; ./dev.sh installs it")
        sys.exit(77)
    sys.exit(run_tests(TESTS, sys.argv))
