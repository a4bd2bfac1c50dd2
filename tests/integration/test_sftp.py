#!/usr/bin/env python3
"""SFTP source and destination against a real OpenSSH server.

The test starts /usr/sbin/sshd itself on a free 127.0.0.1 port with a
throwaway host key, a throwaway user key (key login only, the sftp
subsystem forced), runs the engine against it, and stops it:

  roundtrip     files on the server's outbound folder are copied in (the
                remote file deleted once its local copy is durable), their
                messages routed to a `type: sftp` destination that writes
                one file per message into the server's inbound folder
  move          `after: move`: the remote file goes to move_to instead
  batch         `batch:` on the sftp destination: FHS/BHS ... BTS/FTS files made
                in the local stage_dir, uploaded, removed locally
  bad_message   a file with a bad message: the good one is delivered, the
                file ends in the spool's error/ with its .reason
  ledger        a crash between the durable local copy and the remote delete:
                the next start deletes it without copying it again
  mismatch      known_hosts holds another key for the server: the source
                and the destination refuse to connect, say so, and nothing
                is copied or written
  unknown_host  known_hosts does not name the server: refused the same way

Usage: test_sftp.py CADUCEUS [CASE...]
"""
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import Engine, check_clean_stop, wait_for  # noqa: E402

BIN = os.path.abspath(sys.argv[1])
SSHD = "/usr/sbin/sshd"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def msg(ctl):
    return ("MSH|^~\\&|CC|PRACTICE|ENGINE|HOSP|20260101120000||ADT^A04^ADT_A01|%s|P|2.5.1\r"
            "PID|1||%s^^^CC^MR||DOE^JANE\r" % (ctl, ctl)).encode()


class Sshd:
    """sshd on 127.0.0.1 with throwaway keys, for the current user."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.port = free_port()
        self.user = getpass.getuser()
        k = lambda n: os.path.join(tmp, n)  # noqa: E731
        for name in ("host_key", "user_key", "other_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k(name)],
                           check=True)
        shutil.copy(k("user_key.pub"), k("authorized_keys"))
        os.chmod(k("authorized_keys"), 0o600)
        with open(k("sshd_config"), "w") as f:
            f.write("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nPidFile %s\n"
                    "AuthorizedKeysFile %s\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
                    "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
                    "Subsystem sftp internal-sftp\nForceCommand internal-sftp\n"
                    "LogLevel ERROR\n" % (self.port, k("host_key"), k("sshd.pid"),
                                          k("authorized_keys")))
        self.known_hosts("known_hosts", "host_key")
        self.known_hosts("wrong_known_hosts", "other_key")
        with open(k("empty_known_hosts"), "w") as f:
            f.write("")
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.log = open(k("sshd.log"), "wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", k("sshd_config")],
                                     stdout=self.log, stderr=self.log)
        wait_for(self.listening, timeout=10, what="sshd to listen")

    def known_hosts(self, name, key):
        with open(os.path.join(self.tmp, key + ".pub")) as f:
            pub = " ".join(f.read().split()[:2])
        with open(os.path.join(self.tmp, name), "w") as f:
            f.write("[127.0.0.1]:%d %s\n" % (self.port, pub))

    def listening(self):
        if self.proc.poll() is not None:
            raise RuntimeError("sshd exited: %s" % open(self.log.name).read())
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def conn_yaml(sshd, known="known_hosts", indent="      "):
    return ("{i}host: 127.0.0.1\n{i}port: {p}\n{i}user: {u}\n{i}known_hosts: {k}\n"
            "{i}key: {key}\n{i}timeout: 5s\n").format(
                i=indent, p=sshd.port, u=sshd.user, k=os.path.join(sshd.tmp, known),
                key=os.path.join(sshd.tmp, "user_key"))


def setup(tmp, sshd, known="known_hosts", after=""):
    remote_out = os.path.join(tmp, "remote", "outbound")
    remote_in = os.path.join(tmp, "remote", "inbound")
    for d in (remote_out, remote_in, os.path.join(tmp, "remote", "archive")):
        os.makedirs(d)
    chans = ("  pull:\n    listen_sftp:\n" + conn_yaml(sshd, known) +
             "      dir: %s\n      pattern: \"*.hl7\"\n      poll: 300ms\n%s"
             "    to: push\n") % (remote_out, after)
    dests = ("  push:\n    type: sftp\n" + conn_yaml(sshd, known, "    ") +
             "    dir: %s\n    name: \"${MSH-10}.hl7\"\n"
             "    retry: { initial: 200ms, max: 1s }\n") % remote_in
    return Engine(BIN, tmp, chans, dests), remote_out, remote_in


def drop(folder, name, data):
    with open(os.path.join(folder, "." + name), "wb") as f:
        f.write(data)
    os.rename(os.path.join(folder, "." + name), os.path.join(folder, name))


def case_roundtrip(tmp, sshd):
    e, out, inb = setup(tmp, sshd)
    e.start()
    try:
        drop(out, "batch1.hl7", msg("R1") + b"\r\n" + msg("R2"))
        drop(out, "batch2.hl7", msg("R3"))
        drop(out, "notes.txt", b"not a message file")
        want = {"R1.hl7", "R2.hl7", "R3.hl7"}
        wait_for(lambda: want <= set(os.listdir(inb)), timeout=20, what="3 files written")
        for n in want:
            data = open(os.path.join(inb, n), "rb").read()
            # As split from the file: the message without its last terminator.
            assert data == msg(n[:-4]).rstrip(b"\r"), (n, data)
            assert oct(os.stat(os.path.join(inb, n)).st_mode & 0o777) == "0o600"
        wait_for(lambda: os.listdir(out) == ["notes.txt"], what="remote files deleted")
        spool = os.path.join(tmp, "data", "sftp", "pull")
        wait_for(lambda: sorted(os.listdir(os.path.join(spool, "done"))) ==
                 ["batch1.hl7", "batch2.hl7"], what="local copies in done/")
        assert not [n for n in os.listdir(inb) if n.startswith(".")], os.listdir(inb)
        # The same control id again: the destination never replaces a file.
        drop(out, "batch3.hl7", msg("R1"))
        wait_for(lambda: "R1~2.hl7" in os.listdir(inb), timeout=20, what="R1~2.hl7")
    finally:
        check_clean_stop(e)


def case_move(tmp, sshd):
    archive = os.path.join(tmp, "remote", "archive")
    e, out, inb = setup(tmp, sshd, after="      after: move\n      move_to: %s\n" % archive)
    e.start()
    try:
        drop(out, "m.hl7", msg("M1"))
        wait_for(lambda: os.listdir(archive) == ["m.hl7"], timeout=20, what="m.hl7 moved")
        wait_for(lambda: os.listdir(inb) == ["M1.hl7"], timeout=20, what="M1 written")
        assert os.listdir(out) == []
    finally:
        check_clean_stop(e)


def case_bad_message(tmp, sshd):
    e, out, inb = setup(tmp, sshd)
    e.start()
    try:
        drop(out, "mixed.hl7", msg("G1") + b"\r\nMSH|^~\\&|X|Y|Z|W|20260101|||BAD|P|2.5\r")
        spool = os.path.join(tmp, "data", "sftp", "pull")
        reason = os.path.join(spool, "error", "mixed.hl7.reason")
        wait_for(lambda: os.path.exists(reason), timeout=20, what="the reason file")
        text = open(reason).read()
        assert "message 2" in text and "MSH-9 is required" in text, text
        wait_for(lambda: os.listdir(inb) == ["G1.hl7"], timeout=20, what="G1 written")
        assert os.listdir(out) == []
    finally:
        check_clean_stop(e)


def refused(tmp, sshd, known, words):
    e, out, inb = setup(tmp, sshd, known=known)
    e.start()
    try:
        drop(out, "kept.hl7", msg("K1"))
        wait_for(lambda: "event=sftp.poll_failed" in e.log(), timeout=20, what="a refusal")
        time.sleep(1.0)
        log = e.log()
        for w in words:
            assert w in log, (w, log[-3000:])
        assert "SHA256:" in log, log[-2000:]
        assert os.listdir(out) == ["kept.hl7"], "copied from a server that was not trusted"
        assert not os.path.exists(os.path.join(tmp, "data", "sftp", "pull", "kept.hl7"))
        # One warning, not one per poll.
        assert log.count("level=warn event=sftp.poll_failed") == 1, log[-3000:]
    finally:
        check_clean_stop(e)


def case_batch(tmp, sshd):
    """`batch:` on the sftp destination: batch files made locally, uploaded."""
    e, out, inb = setup(tmp, sshd)
    e.write_config(
        ("  pull:\n    listen_sftp:\n" + conn_yaml(sshd) +
         "      dir: %s\n      poll: 300ms\n    to: push\n") % out,
        ("  push:\n    type: sftp\n" + conn_yaml(sshd, indent="    ") +
         "    dir: %s\n    stage_dir: stage\n"
         "    batch: { max_messages: 3, max_age: 700ms, name: \"cc_%%Y%%m%%d.hl7\" }\n") % inb)
    e.start()
    try:
        drop(out, "seven.hl7", b"\r\n".join(msg("B%d" % i) for i in range(7)))
        def got():
            ids = []
            for n in sorted(os.listdir(inb)):
                if n.startswith("."):
                    continue
                segs = [x for x in open(os.path.join(inb, n), "rb").read().split(b"\r") if x]
                assert segs[0].startswith(b"FHS|") and segs[1].startswith(b"BHS|"), segs[:2]
                k = [x.split(b"|")[9].decode() for x in segs if x.startswith(b"MSH|")]
                assert segs[-2] == b"BTS|%d" % len(k) and segs[-1] == b"FTS|1", segs[-2:]
                ids += k
            return ids
        wait_for(lambda: len(got()) == 7, timeout=20, what="7 messages in uploaded batches")
        assert sorted(got()) == ["B%d" % i for i in range(7)], got()
        names = sorted(n for n in os.listdir(inb) if not n.startswith("."))
        assert len(names) == 3 and names[0].startswith("cc_"), names
        wait_for(lambda: [n for n in os.listdir(os.path.join(tmp, "stage"))
                          if not n.startswith(".")] == [], what="the local batches removed")
    finally:
        check_clean_stop(e)


def fnv64(name):
    h = 1469598103934665603
    for c in name.encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def case_ledger(tmp, sshd):
    """A crash after the local copy was durable and before the remote file
    was deleted: the ledger entry makes the next start delete it, not copy
    it again."""
    e, out, inb = setup(tmp, sshd)
    drop(out, "done-before.hl7", msg("L1"))
    state = os.path.join(tmp, "data", "sftp", "pull", ".caduceus")
    os.makedirs(state, mode=0o700)
    with open(os.path.join(state, "r-%016x" % fnv64("done-before.hl7")), "w") as f:
        f.write("done-before.hl7")
    e.start()
    try:
        wait_for(lambda: os.listdir(out) == [], timeout=20, what="the remote file deleted")
        time.sleep(1.0)
        assert os.listdir(inb) == [], "copied again: %s" % os.listdir(inb)
        assert [n for n in os.listdir(state) if n.startswith("r-")] == []
    finally:
        check_clean_stop(e)


def case_mismatch(tmp, sshd):
    refused(tmp, sshd, "wrong_known_hosts", ["host key mismatch", "refusing to connect"])


def case_unknown_host(tmp, sshd):
    refused(tmp, sshd, "empty_known_hosts", ["is not in", "refusing to connect"])


def case_dest_mismatch(tmp, sshd):
    """The destination alone, fed over MLLP, with the wrong key recorded."""
    from engine_util import connect, send_recv, free_port as fp
    port = fp()
    inb = os.path.join(tmp, "remote", "inbound")
    os.makedirs(inb)
    e = Engine(BIN, tmp, "  in:\n    listen: 127.0.0.1:%d\n    to: push\n" % port,
               ("  push:\n    type: sftp\n" + conn_yaml(sshd, "wrong_known_hosts", "    ") +
                "    dir: %s\n    retry: { initial: 200ms, max: 1s }\n") % inb)
    e.start(wait_ports=[port])
    try:
        s = connect(port)
        ack = send_recv(s, msg("D1"))
        s.close()
        assert b"MSA|AA|D1" in ack, ack
        wait_for(lambda: "host key mismatch" in e.log(), timeout=20, what="the refusal")
        assert os.listdir(inb) == [], os.listdir(inb)
    finally:
        check_clean_stop(e)


def case_carecloud(tmp, sshd):
    """examples/ehr/carecloud/caduceus-sftp.yaml against a real sshd: the
    example's messages go over MLLP and arrive as FHS/BHS batch files, one
    folder per message type, with the charge codes mapped."""
    root = os.environ.get("CAD_SOURCE_ROOT",
                          os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ex = os.path.join(tmp, "examples", "ehr", "carecloud")
    shutil.copytree(os.path.join(root, "examples", "ehr", "carecloud"), ex)
    conf = os.path.join(ex, "caduceus-sftp.yaml")
    with open(conf) as f:
        text = f.read()
    # The example closes a batch after 5 minutes: shorter here.
    assert "max_age: 5m" in text
    with open(conf, "w") as f:
        f.write(text.replace("max_age: 5m", "max_age: 500ms"))
    remote = os.path.join(tmp, "remote")
    for kind in ("adt", "siu", "dft"):
        os.makedirs(os.path.join(remote, kind))
    env = dict(os.environ, CARECLOUD_SFTP_HOST="127.0.0.1", CARECLOUD_SFTP_PORT=str(sshd.port),
               CARECLOUD_SFTP_USER=sshd.user, CARECLOUD_SFTP_DIR=remote,
               CARECLOUD_KNOWN_HOSTS=os.path.join(sshd.tmp, "known_hosts"),
               CARECLOUD_SFTP_KEY=os.path.join(sshd.tmp, "user_key"))
    chk = subprocess.run([BIN, "check", conf], env=env, capture_output=True, text=True)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    assert "HL7 batch files over SFTP" in chk.stdout, chk.stdout
    log = open(os.path.join(tmp, "engine.log"), "wb")
    proc = subprocess.Popen([BIN, "run", conf], env=env, cwd=tmp, stdout=log, stderr=log)
    try:
        wait_for(lambda: _listening(2599) or proc.poll() is not None, what="listen 2599")
        assert proc.poll() is None, "engine exited"
        sent = {"a04_registration.hl7": "adt", "s12_appointment.hl7": "siu",
                "p03_charges.hl7": "dft"}
        for name in sorted(sent):
            data = open(os.path.join(ex, "messages", name), "rb").read()
            data = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
            with socket.create_connection(("127.0.0.1", 2599), timeout=10) as c:
                c.sendall(b"\x0b" + data + b"\x1c\r")
                ack = b""
                while not ack.endswith(b"\x1c\r"):
                    chunk = c.recv(4096)
                    assert chunk, "connection closed before the ACK"
                    ack += chunk
            assert b"MSA|AA|" in ack, ack
        def batches(kind):
            d = os.path.join(remote, kind)
            return [n for n in os.listdir(d) if not n.startswith(".")]
        for kind in ("adt", "siu", "dft"):
            wait_for(lambda: batches(kind), timeout=20, what="a %s batch file" % kind)
            names = batches(kind)
            assert len(names) == 1 and names[0].startswith(kind.upper() + "_"), names
            segs = [x for x in open(os.path.join(remote, kind, names[0]), "rb").read()
                    .split(b"\r") if x]
            assert segs[0].startswith(b"FHS|") and segs[1].startswith(b"BHS|"), segs[:2]
            assert segs[-2] == b"BTS|1" and segs[-1] == b"FTS|1", segs[-2:]
            assert any(x.startswith(b"MSH|") and b"|CARECLOUD|" in x for x in segs), segs
            want = open(os.path.join(ex, "expected", [e for e in os.listdir(
                os.path.join(ex, "expected")) if e.endswith(".carecloud_%s.hl7" % kind)][0]),
                "rb").read().replace(b"\r\n", b"\r").replace(b"\n", b"\r")
            body = b"\r".join(segs[2:-2])
            assert body == want.rstrip(b"\r"), (kind, body, want)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        log.close()
        assert rc == 0, open(os.path.join(tmp, "engine.log")).read()[-3000:]


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


CASES = {
    "carecloud": case_carecloud,
    "roundtrip": case_roundtrip,
    "move": case_move,
    "batch": case_batch,
    "ledger": case_ledger,
    "bad_message": case_bad_message,
    "mismatch": case_mismatch,
    "unknown_host": case_unknown_host,
    "dest_mismatch": case_dest_mismatch,
}


def main():
    if not os.path.exists(SSHD) or not shutil.which("ssh-keygen"):
        print("SKIP: OpenSSH server not installed (apt-get install openssh-server; "
              "./dev.sh installs it)")
        sys.exit(77)
    names = sys.argv[2:] or list(CASES)
    failed = 0
    for name in names:
        tmp = tempfile.mkdtemp(prefix="cad_sftp_")
        os.chmod(tmp, 0o755)
        os.makedirs(os.path.join(tmp, "ssh"))
        os.makedirs(os.path.join(tmp, "case"))
        sshd = Sshd(os.path.join(tmp, "ssh"))
        t0 = time.monotonic()
        try:
            CASES[name](os.path.join(tmp, "case"), sshd)
            print("ok   %-14s %.1fs" % (name, time.monotonic() - t0))
        except Exception as ex:  # noqa: BLE001
            failed += 1
            print("FAIL %-14s %s" % (name, ex))
            import traceback
            traceback.print_exc()
            try:
                print(open(os.path.join(tmp, "case", "engine.log")).read()[-3000:])
            except OSError:
                pass
        finally:
            sshd.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
