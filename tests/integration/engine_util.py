"""engine_util.py - shared pieces of the engine integration tests.

Start the real caduceus binary on a configuration in a temporary directory,
on an ephemeral 127.0.0.1 port, talk MLLP to it, read its ACKs, stop it with
SIGTERM.  FakeReceiver is the one fake downstream MLLP server of the tests
(plain or TLS), scripted per message: an ACK code, silence, a close, bytes of
our choosing, a delay.  Everything is bounded in time; nothing leaves
127.0.0.1.
"""
import collections
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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


# ---- a fake downstream MLLP receiver -------------------------------------------


def ctl_of(msg: bytes) -> str:
    """MSH-10 (the control id) of a message, "" when it has none."""
    head = msg.split(CR, 1)[0]
    if not head.startswith(b"MSH") or len(head) < 4:
        return ""
    parts = head.split(head[3:4])
    return parts[9].decode("latin-1") if len(parts) > 9 else ""


def ack(msg: bytes, code="AA", ctl=None, err=None) -> bytes:
    """A framed ACK for msg: MSA-1 `code`, MSA-2 `ctl` (by default the
    message's MSH-10; another one makes an ACK for another message), and an
    ERR segment whose text is `err` (no terminator) when given."""
    ctl = ctl_of(msg) if ctl is None else ctl
    body = ("MSH|^~\\&|EHR|SOUTH|LAB|NORTH|20260101120000||ACK^A01^ACK|A%s|P|2.5.1\r"
            "MSA|%s|%s\r" % (ctl, code, ctl))
    if err:
        body += err + "\r"
    return frame(body.encode("latin-1"))


class Reply:
    """What a FakeReceiver does with one message.

    code   MSA-1 of the ACK to send ("AA", "AE", "AR", "CA", ...); None: no ACK
    ctl    MSA-2 of that ACK instead of the message's MSH-10
    err    the text of an ERR segment to add to that ACK
    raw    bytes to send as they are instead of an ACK (garbage, half a
           frame, two ACKs ...)
    delay  seconds to wait first (cut short by stop())
    close  close the connection after that (with nothing to send: instead
           of answering); frames already read behind it are dropped unrecorded
    """
    __slots__ = ("code", "ctl", "err", "raw", "delay", "close")

    def __init__(self, code=None, ctl=None, err=None, raw=None, delay=0.0, close=False):
        assert raw is None or code is None, "an ACK code or raw bytes, not both"
        self.code, self.ctl, self.err, self.raw = code, ctl, err, raw
        self.delay, self.close = delay, close

    def __repr__(self):
        kw = ["%s=%r" % (k, getattr(self, k)) for k in self.__slots__ if getattr(self, k)]
        return "Reply(%s)" % ", ".join(kw)


SILENCE = Reply()                       # read the message, never answer it
CLOSE = Reply(close=True)               # close the connection instead of answering
GARBAGE = Reply(raw=b"this is not an MLLP frame\r\n")   # bytes that are not an ACK

# One message as a FakeReceiver saw it.  index: its place in arrival order
# (from 0, since the last clear()); conn: the connection it came on (from 1,
# in accept order); attempt: 1 the first time this control id arrived, 2 the
# second ...; time: time.monotonic() on arrival; ctl: its MSH-10; data: the
# message without framing; reply: the Reply it got (None while `decide` runs).
Received = collections.namedtuple("Received", "index conn attempt time ctl data reply")


def script(*replies, then="AA"):
    """A `decide` for FakeReceiver: message n (in arrival order over all
    connections, from 0) gets replies[n], every later one `then`.  Each may
    be anything `decide` may return, e.g. script("AA", "AE", CLOSE)."""
    def decide(m):
        return replies[m.index] if m.index < len(replies) else then
    return decide


class FakeReceiver:
    """A downstream MLLP server on 127.0.0.1 (a thread per connection).

    decide(m) is called for every message m (a Received, reply None) in
    arrival order, one call at a time under the receiver's lock (so it may
    keep state without locks of its own, but must not block: a delay goes in
    the Reply).  It returns what to do:
        "AA", "AE", ...   an ACK with that MSA-1 for this message
        Reply(...)        anything else: a wrong control id, an ERR segment,
                          raw bytes, a delay, closing the connection
        SILENCE / None    nothing; CLOSE: close the connection; GARBAGE
        bytes             sent as they are (frame them yourself if needed)
    The default answers every message AA.  script(...) plays a fixed list.

    port 0 takes an ephemeral port (see .port); a given port is bound with
    SO_REUSEADDR (a destination that comes back on the port a test gave the
    engine).  ssl_context (server side) makes it a TLS server: failed
    handshakes go to errors(), the CN of each client certificate to peers().

    Every message is recorded before it is answered, so once a client has
    its ACK the message is in messages().  All accessors are thread-safe and
    return copies.  wait() is bounded.  stop() (or leaving a `with` block)
    closes everything, normally within POLL seconds and never waiting more
    than its timeout; it raises if decide() raised.
    """

    POLL = 0.2          # how often blocked threads look at the stop flag
    HANDSHAKE = 10.0    # TLS handshake time limit
    SEND = 5.0          # time limit of one answer's sendall
    MAX_BUFFER = 16 << 20   # unframed bytes kept per connection before giving up

    def __init__(self, decide=None, port=0, ssl_context=None):
        self._decide = decide or (lambda m: "AA")
        self._ssl = ssl_context
        self._cv = threading.Condition(threading.RLock())
        self._stopping = threading.Event()
        self._msgs, self._attempts = [], {}
        self._gen = 0                    # bumped on every change, for wait()
        self._conns = 0
        self._peers, self._errors, self._failure = [], [], None
        self._socks, self._threads = set(), []
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._lsock.bind(("127.0.0.1", port))
            self._lsock.listen(64)
            self._lsock.settimeout(self.POLL)
        except OSError:
            self._lsock.close()
            raise
        self.port = self._lsock.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name="fake-receiver-%d" % self.port)
        self._acceptor.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- what it saw ------------------------------------------------------------

    def messages(self):
        """Every message received, in arrival order (a list of Received)."""
        with self._cv:
            return list(self._msgs)

    def count(self):
        with self._cv:
            return len(self._msgs)

    def ctls(self):
        """MSH-10 of every message received, in arrival order, repeats kept."""
        with self._cv:
            return [m.ctl for m in self._msgs]

    def answers(self):
        """[(MSH-10, ACK code or None)] in arrival order."""
        with self._cv:
            return [(m.ctl, m.reply.code) for m in self._msgs]

    def accepted(self):
        """MSH-10 of the messages answered AA or CA, each once (its first
        such answer), in that order."""
        seen, out = set(), []
        for ctl, code in self.answers():
            if code in ("AA", "CA") and ctl not in seen:
                seen.add(ctl)
                out.append(ctl)
        return out

    @property
    def connections(self):
        """How many connections it has accepted."""
        with self._cv:
            return self._conns

    def peers(self):
        """Common name of each TLS client certificate, in handshake order."""
        with self._cv:
            return list(self._peers)

    def errors(self):
        """Failed TLS handshakes, connection errors and other trouble, as text."""
        with self._cv:
            return list(self._errors)

    def clear(self):
        """Forget the messages (index and attempt count start again);
        connections, peers and errors stay."""
        with self._cv:
            self._msgs, self._attempts = [], {}
            self._gen += 1

    def wait(self, pred, timeout=10.0, what="messages at the fake receiver"):
        """Wait until pred(messages()) is true and return those messages;
        AssertionError naming `what` after `timeout` seconds.  pred runs
        outside the lock: it may be slow (e.g. run the queue tool)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._cv:
                msgs, gen = list(self._msgs), self._gen
            if pred(msgs):
                return msgs
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out after %.1fs waiting for %s; %d received, last %s"
                                     % (timeout, what, len(msgs), [m.ctl for m in msgs[-5:]]))
            with self._cv:
                if self._gen == gen:
                    self._cv.wait(min(left, 0.5))

    def wait_count(self, n, timeout=10.0, what=None):
        """Wait until at least n messages have arrived (repeats count)."""
        return self.wait(lambda msgs: len(msgs) >= n, timeout, what or "%d messages" % n)

    # -- stopping -----------------------------------------------------------------

    def stop(self, timeout=5.0):
        """Stop accepting, close every connection, join the threads (bounded).
        Idempotent.  Raises AssertionError if decide() raised."""
        if not self._stopping.is_set():
            self._stopping.set()
            self._lsock.close()
            deadline = time.monotonic() + timeout
            self._acceptor.join(timeout)
            with self._cv:
                threads = list(self._threads)
            for t in threads:   # each sees the flag within POLL and closes its socket
                t.join(max(0.0, deadline - time.monotonic()))
            with self._cv:
                socks, self._socks = list(self._socks), set()
            for s in socks:     # only those of threads stuck past the deadline
                try:
                    s.close()
                except OSError:
                    pass
        if self._failure:
            raise AssertionError("the fake receiver's decide() raised:\n" + self._failure)

    # -- the threads ------------------------------------------------------------------

    def _note(self, text):
        with self._cv:
            self._errors.append(text)
            self._gen += 1
            self._cv.notify_all()

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                c, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cv:
                if self._stopping.is_set():
                    c.close()
                    return
                self._conns += 1
                self._socks.add(c)
                t = threading.Thread(target=self._serve, args=(c, self._conns), daemon=True,
                                     name="fake-receiver-%d-conn%d" % (self.port, self._conns))
                self._threads.append(t)
                self._gen += 1
                self._cv.notify_all()
            t.start()

    def _serve(self, c, conn):
        try:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                s = self._handshake(c)
                if s is None:
                    return
                c = s                    # from here on the TLS socket
            c.settimeout(self.POLL)
            buf = b""
            while not self._stopping.is_set():
                try:
                    chunk = c.recv(65536)
                except socket.timeout:
                    continue
                except OSError as e:
                    if not self._stopping.is_set():
                        self._note("connection %d: %s" % (conn, e))
                    return
                if not chunk:
                    return
                buf += chunk
                while True:
                    end = buf.find(EB + CR)
                    if end < 0:
                        break
                    start = buf.find(SB, 0, end)
                    data = buf[start + 1:end] if start >= 0 else buf[:end]
                    buf = buf[end + 2:]
                    if not self._answer(c, conn, data):
                        return
                if len(buf) > self.MAX_BUFFER:
                    self._note("connection %d: %d bytes without a frame end" % (conn, len(buf)))
                    return
        finally:
            with self._cv:
                self._socks.discard(c)
            c.close()

    def _handshake(self, c):
        """The TLS socket (c is detached into it), or None (the reason in
        errors()) when the handshake failed; the caller closes c then."""
        c.settimeout(self.HANDSHAKE)
        try:
            s = self._ssl.wrap_socket(c, server_side=True)
        except OSError as e:   # ssl.SSLError is one
            self._note(str(e))
            return None
        cert = s.getpeercert()
        with self._cv:
            self._socks.discard(c)
            self._socks.add(s)
            if cert:
                self._peers.append(dict(x[0] for x in cert["subject"])["commonName"])
        return s

    def _answer(self, c, conn, data):
        """Record one message, decide and answer; False: close the connection."""
        with self._cv:
            ctl = ctl_of(data)
            attempt = self._attempts.get(ctl, 0) + 1
            self._attempts[ctl] = attempt
            m = Received(len(self._msgs), conn, attempt, time.monotonic(), ctl, data, None)
            try:
                r = self._decide(m)
                if r is None:
                    r = SILENCE
                elif isinstance(r, str):
                    r = Reply(r)
                elif isinstance(r, (bytes, bytearray)):
                    r = Reply(raw=bytes(r))
                elif not isinstance(r, Reply):
                    raise TypeError("decide() returned %r" % (r,))
            except Exception:
                self._failure = self._failure or traceback.format_exc()
                traceback.print_exc()
                r = CLOSE
            self._msgs.append(m._replace(reply=r))
            self._gen += 1
            self._cv.notify_all()
        if r.delay and self._stopping.wait(r.delay):
            return False
        out = r.raw if r.raw is not None else ack(data, r.code, r.ctl, r.err) if r.code else b""
        if out:
            try:
                c.settimeout(self.SEND)
                c.sendall(out)
                c.settimeout(self.POLL)
            except OSError as e:
                if not self._stopping.is_set():
                    self._note("connection %d: answer to %s: %s" % (conn, ctl, e))
                return False
        return not r.close


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


class Checks:
    """For scripts that check many things in one run: check(name, cond,
    detail) prints 'ok - name' or 'FAIL - name detail'; finish() prints the
    closing 'N passed, N failed' and exits 1 when any failed."""

    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print("ok - " + name, flush=True)
        else:
            self.failed += 1
            print("FAIL - %s %s" % (name, detail), flush=True)
        return bool(cond)

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed))
        sys.exit(1 if self.failed else 0)
