"""engine_util.py - shared pieces of the engine integration tests.

Start the real caduceus binary on a configuration in a temporary directory,
on an ephemeral 127.0.0.1 port, talk MLLP to it, read its ACKs, stop it with
SIGTERM.  Everything is bounded in time; nothing leaves 127.0.0.1.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"

# A patient name that must never appear in the engine's log at info level.
PATIENT = "ZZTESTPATIENT^QUINTESSA"


def adt(ctl="MSG00001", version="2.5.1", extra_msh="", trigger="A01", pid_name=PATIENT,
        ts="20260101120000"):
    """A small ADT message (segments end in \\r, as on the wire)."""
    return ("MSH|^~\\&|LAB|NORTH|EHR|SOUTH|%s||ADT^%s^ADT_A01|%s|P|%s%s\r"
            "EVN|%s|%s\r"
            "PID|1||12345^^^HOSP^MR||%s||19700101|F\r"
            "PV1|1|I|W^101^1\r" % (ts, trigger, ctl, version, extra_msh, trigger, ts,
                                   pid_name)).encode()


def frame(msg: bytes) -> bytes:
    return SB + msg + EB + CR


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def read_frame(sock, timeout=10.0) -> bytes:
    """Read one MLLP frame; returns the message without framing.  Raises on
    timeout or when the peer closes first."""
    sock.settimeout(timeout)
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        i = buf.find(EB + CR)
        if i >= 0:
            j = buf.find(SB)
            assert j == 0, "bytes before the start block: %r" % buf[:j]
            rest = buf[i + 2:]
            assert rest == b"", "more than one frame: %r" % rest
            return buf[1:i]
        if time.monotonic() > deadline:
            raise TimeoutError("no complete ACK frame; got %r" % buf)
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the engine; got %r" % buf)
        buf += chunk


def send_recv(sock, msg: bytes, timeout=10.0) -> bytes:
    sock.sendall(frame(msg))
    return read_frame(sock, timeout)


def connect(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def fields(msg: bytes):
    """Split an ACK: {segment id: [fields]} with HL7 numbering (for MSH,
    f[1] is the field separator, f[2] the encoding characters)."""
    text = msg.decode("latin-1")
    fs = text[3]
    out = {}
    for seg in text.split("\r"):
        if not seg:
            continue
        parts = seg.split(fs)
        if parts[0] == "MSH":
            parts = ["MSH", fs] + parts[1:]
        out.setdefault(parts[0], parts)
    return out


def field(f, seg, n):
    row = f.get(seg)
    if row is None or n >= len(row):
        return ""
    return row[n]


class Engine:
    """A caduceus process on a generated configuration."""

    def __init__(self, binary, tmp, channels_yaml, dests_yaml, engine_extra="",
                 log_level="info"):
        self.binary = binary
        self.tmp = tmp
        self.conf = os.path.join(tmp, "caduceus.yaml")
        self.logpath = os.path.join(tmp, "engine.log")
        self.write_config(channels_yaml, dests_yaml, engine_extra, log_level)
        self.proc = None
        self.logf = None

    def write_config(self, channels_yaml, dests_yaml, engine_extra="", log_level="info"):
        text = ("engine:\n"
                "  data_dir: %s/data\n"
                "  log_level: %s\n"
                "  stats_interval: 1s\n"
                "%s"
                "destinations:\n%s"
                "channels:\n%s") % (self.tmp, log_level, engine_extra, dests_yaml,
                                     channels_yaml)
        with open(self.conf + ".new", "w") as f:
            f.write(text)
        os.replace(self.conf + ".new", self.conf)

    def start(self, wait_ports=(), timeout=10.0, preexec_fn=None):
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen([self.binary, "run", self.conf], stdout=self.logf,
                                     stderr=self.logf, cwd=self.tmp, preexec_fn=preexec_fn)
        deadline = time.monotonic() + timeout
        for port in wait_ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("engine exited with %d:\n%s" %
                                       (self.proc.returncode, self.log()))
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("engine did not listen on %d:\n%s" % (port, self.log()))
                    time.sleep(0.05)
        return self

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20.0):
        """SIGTERM; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("engine did not stop within %ss after SIGTERM" % timeout)
        self.logf.close()
        return self.proc.returncode

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.logf and not self.logf.closed:
            self.logf.close()


def check_clean_stop(eng):
    rc = eng.stop()
    log = eng.log()
    assert rc == 0, "exit status %r\n%s" % (rc, log[-3000:])
    if "level=info" in log or '"level":"info"' in log:
        assert "event=stopped" in log or '"event":"stopped"' in log, \
            "no clean shutdown line:\n" + log[-2000:]
    assert PATIENT.split("^")[0] not in log, "PHI (patient name) in the log"
    assert "shutdown.leak" not in log


def wait_for(pred, timeout=10.0, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(step)
    raise AssertionError("timed out waiting for " + what)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def run_tests(tests, argv):
    """Run each test function(binary, tmpdir); print ok/FAIL lines and the
    closing 'N passed, N failed'."""
    if len(argv) < 2:
        print("usage: %s CADUCEUS_BINARY [TEST]" % argv[0])
        return 2
    binary = os.path.abspath(argv[1])
    only = argv[2] if len(argv) > 2 else None
    passed = failed = 0
    for t in tests:
        if only and only not in t.__name__:
            continue
        with tempfile.TemporaryDirectory(prefix="cad-it-") as tmp:
            t0 = time.monotonic()
            try:
                t(binary, tmp)
                passed += 1
                print("ok - %s (%.1fs)" % (t.__name__, time.monotonic() - t0), flush=True)
            except Exception:
                failed += 1
                print("FAIL - %s" % t.__name__, flush=True)
                traceback.print_exc()
                sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
