#!/usr/bin/env python3
"""The directory source (listen_dir:) against the real binary.

Each case runs its own engine on a temporary folder, drops files into the
watched folder while it runs, and checks what reached the destination (an
append file, read back with hl7 control ids) and where each file ended
(done/ or error/ with its .reason):

  appearing      files dropped while the engine runs, one written slowly
                 (a partial file is not taken before it is stable)
  bad_message    one bad message among good ones: the good ones are
                 delivered, the file goes to error/ with a reason naming it
  hostile        a FIFO, a symlink, a folder and odd-byte names in the
                 folder: skipped (never opened, nothing blocks) or read
  replaced       a file renamed over while it is read: the old one read to
                 its end, the new one read on its own
  reload         SIGHUP with the same settings, then with a new pattern
  permissions    a file the engine cannot read (engine run as nobody when
                 root): left in place and warned about, the others go on
  big            a batch file of CAD_DIR_BIG_MB MB (default 20) in FHS/BHS
                 envelopes: every message delivered, peak RSS bounded
                 (CAD_DIR_BIG_READ_ONLY=1: stop once the file is read, for 1 GB by hand)
  crash          SIGKILL mid-file, then restart: every message delivered
                 (duplicates counted and bounded), the file in done/

Usage: test_dir_source.py CADUCEUS [CASE...]
"""
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import Engine, PATIENT, check_clean_stop, wait_for  # noqa: E402

BIN = os.path.abspath(sys.argv[1])


def sanitized():
    """ASan keeps freed memory in quarantine (256 MB): RSS says nothing there."""
    try:
        out = subprocess.run(["ldd", BIN], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "libasan" in out


def msg(ctl, pid_name="DOE^JOHN"):
    return ("MSH|^~\\&|LAB|NORTH|EHR|SOUTH|20260101120000||ADT^A01^ADT_A01|%s|P|2.5.1\r"
            "EVN|A01|20260101120000\r"
            "PID|1||%s^^^HOSP^MR||%s||19700101|F\r" % (ctl, ctl, pid_name)).encode()


def channel(extra=""):
    return ("  files:\n"
            "    listen_dir:\n"
            "      dir: in\n"
            "      pattern: \"*.hl7\"\n"
            "%s"
            "    to: out\n") % extra


DESTS = "  out:\n    type: file\n    append: out/all.hl7\n"


def delivered(tmp):
    """Control ids in the destination's append file, in order."""
    p = os.path.join(tmp, "out", "all.hl7")
    if not os.path.exists(p):
        return []
    ids = []
    with open(p, "rb") as f:
        lines = f.read().replace(b"\n", b"\r").split(b"\r")
    for i, line in enumerate(lines):
        if line.startswith(b"MSH|"):
            fields = line.split(b"|")
            # The engine may be writing the last message as we read: only
            # the file's last line can be cut short.
            if len(fields) < 10 and i == len(lines) - 1:
                break
            ids.append(fields[9].decode())
    return ids


def write_file(path, data):
    """Write under a temporary name, then rename (a well-behaved writer)."""
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.rename(path + ".part", path)


def engine(tmp, extra="", log_level="info", archive=True):
    return Engine(BIN, tmp, channel(extra), DESTS, log_level=log_level,
                  engine_extra="" if archive else "  archive: { enabled: false }\n")


def in_dir(tmp, *p):
    return os.path.join(tmp, "in", *p)


def case_appearing(tmp):
    e = engine(tmp, "      stable: 1500ms\n").start()
    try:
        wait_for(lambda: os.path.isdir(in_dir(tmp, "done")), what="the source to start")
        write_file(in_dir(tmp, "a.hl7"), msg("A1") + b"\n" + msg("A2"))
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "a.hl7")), what="a.hl7 in done/")
        # A slow writer: half a file, a pause shorter than `stable`, the rest.
        half = msg("B1") + msg("B2")
        with open(in_dir(tmp, "b.hl7"), "wb") as f:
            f.write(half[:70])
            f.flush()
            time.sleep(0.4)
            f.write(half[70:])
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "b.hl7")), what="b.hl7 in done/")
        # A name already in done/ gets a suffix.
        write_file(in_dir(tmp, "a.hl7"), msg("A3"))
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "a~2.hl7")), what="a~2.hl7")
        # Not matching the pattern, or a writer's temporary name: left alone.
        write_file(in_dir(tmp, "c.txt"), msg("C1"))
        with open(in_dir(tmp, "d.hl7.tmp"), "wb") as f:
            f.write(msg("D1"))
        wait_for(lambda: len(delivered(tmp)) >= 5, what="5 messages")
        time.sleep(1.0)
        ids = delivered(tmp)
        assert ids == ["A1", "A2", "B1", "B2", "A3"], ids
        assert os.path.exists(in_dir(tmp, "c.txt")) and os.path.exists(in_dir(tmp, "d.hl7.tmp"))
        assert os.listdir(in_dir(tmp, "error")) == []
        assert [n for n in os.listdir(in_dir(tmp, ".caduceus")) if n.startswith("p-")] == []
    finally:
        check_clean_stop(e)


def case_bad_message(tmp):
    e = engine(tmp, "      stable: 0\n").start()
    try:
        wait_for(lambda: os.path.isdir(in_dir(tmp, "done")), what="the source to start")
        body = (msg("G1") + b"\r\n" + msg("G2", PATIENT) + b"\r\n" +
                b"MSH|^~\\&|LAB|NORTH|EHR|SOUTH|20260101||ADT^A01|BAD3|P|2.5.1\rPID|1||X||" +
                PATIENT.encode() + b"\r" +  # fine so far, but...
                b"\r\n" + msg("G4"))
        # ...message 3 is made bad: MSH-9 empty.
        body = body.replace(b"||ADT^A01|BAD3", b"|||BAD3")
        write_file(in_dir(tmp, "mixed.hl7"), body)
        wait_for(lambda: os.path.exists(in_dir(tmp, "error", "mixed.hl7.reason")),
                 what="mixed.hl7 in error/")
        reason = open(in_dir(tmp, "error", "mixed.hl7.reason")).read()
        assert "4 read, 3 taken, 1 refused" in reason, reason
        assert "message 3 at byte" in reason and "(MSH-10 BAD3)" in reason, reason
        assert "MSH-9 is required" in reason, reason
        assert PATIENT.split("^")[0] not in reason, "PHI in the reason file"
        assert stat.S_IMODE(os.stat(in_dir(tmp, "error", "mixed.hl7.reason")).st_mode) == 0o600
        assert os.path.exists(in_dir(tmp, "error", "mixed.hl7"))
        wait_for(lambda: len(delivered(tmp)) >= 3, what="the good messages")
        assert delivered(tmp) == ["G1", "G2", "G4"], delivered(tmp)
    finally:
        check_clean_stop(e)


def case_hostile(tmp):
    e = engine(tmp, "      stable: 0\n      rescan: 300ms\n").start()
    try:
        wait_for(lambda: os.path.isdir(in_dir(tmp, "done")), what="the source to start")
        os.mkfifo(in_dir(tmp, "fifo.hl7"))
        os.symlink("/etc/passwd", in_dir(tmp, "link.hl7"))
        os.mkdir(in_dir(tmp, "folder.hl7"))
        odd = b"odd\x01\xff name.hl7"
        write_file(os.path.join(os.fsencode(in_dir(tmp)), odd).decode("utf-8", "surrogateescape"),
                   msg("O1"))
        write_file(in_dir(tmp, "z.hl7"), msg("Z1"))
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "z.hl7")), what="z.hl7 in done/")
        wait_for(lambda: os.path.exists(os.path.join(os.fsencode(in_dir(tmp, "done")), odd)),
                 what="the odd name in done/")
        time.sleep(0.8)  # a few rescans: still skipped, warned once
        log = e.log()
        assert log.count("event=dir.skipped") == 2, log  # the folder: silently
        assert stat.S_ISFIFO(os.lstat(in_dir(tmp, "fifo.hl7")).st_mode)
        assert os.path.islink(in_dir(tmp, "link.hl7"))
        assert sorted(delivered(tmp)) == ["O1", "Z1"], delivered(tmp)
        # A huge line (no terminator, over max_message_size) is refused, not buffered.
        write_file(in_dir(tmp, "huge.hl7"), msg("H1") + b"OBX|1|" + b"x" * (5 << 20) + b"\r" +
                   msg("H3"))
        wait_for(lambda: os.path.exists(in_dir(tmp, "error", "huge.hl7.reason")),
                 what="huge.hl7 in error/")
        reason = open(in_dir(tmp, "error", "huge.hl7.reason")).read()
        assert "msg.too_big" in reason, reason
        wait_for(lambda: "H3" in delivered(tmp), what="the message after the huge one")
    finally:
        check_clean_stop(e)


def case_replaced(tmp):
    """A file replaced (renamed over) while it is read: the old one is read to
    its end through its open descriptor, the new one read on its own."""
    e = engine(tmp, "      stable: 0\n", log_level="warn", archive=False).start()
    try:
        wait_for(lambda: os.path.isdir(in_dir(tmp, "done")), what="the source to start")
        n = big_body(in_dir(tmp, "r.hl7.part"), 16 << 20, "O")
        os.rename(in_dir(tmp, "r.hl7.part"), in_dir(tmp, "r.hl7"))
        state = in_dir(tmp, ".caduceus")
        wait_for(lambda: any(p.startswith("p-") for p in os.listdir(state)), timeout=60,
                 step=0.01, what="a progress file")
        write_file(in_dir(tmp, "r.hl7"), msg("NEW1"))
        wait_for(lambda: "event=dir.file_replaced" in e.log(), timeout=60,
                 what="the replaced file noticed")
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "r.hl7")), timeout=30,
                 what="the new r.hl7 in done/")
        out = os.path.join(tmp, "out", "all.hl7")
        last = [-1, time.monotonic()]

        def settled():
            sz = os.path.getsize(out) if os.path.exists(out) else 0
            if sz != last[0]:
                last[0], last[1] = sz, time.monotonic()
            return time.monotonic() - last[1] > 2.0
        wait_for(settled, timeout=120, step=0.5, what="delivery to settle")
        ids = delivered(tmp)
        assert "NEW1" in ids, "the new file was not read"
        assert len(set(ids) - {"NEW1"}) == n, (len(set(ids)), n)
    finally:
        check_clean_stop(e)


def case_reload(tmp):
    """SIGHUP: the same settings keep the source running; a new pattern
    restarts it (the new one waits for the old one's lock)."""
    e = engine(tmp, "      stable: 0\n").start()
    try:
        wait_for(lambda: os.path.isdir(in_dir(tmp, "done")), what="the source to start")
        write_file(in_dir(tmp, "a.hl7"), msg("RA"))
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "a.hl7")), what="a.hl7 in done/")
        e.signal(signal.SIGHUP)  # unchanged
        wait_for(lambda: e.log().count("event=reload") >= 1 or "reload" in e.log(),
                 what="the reload")
        write_file(in_dir(tmp, "b.hl7"), msg("RB"))
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "b.hl7")), what="b.hl7 in done/")
        e.write_config(channel("      stable: 0\n").replace('"*.hl7"', '"*.txt"'), DESTS)
        e.signal(signal.SIGHUP)
        wait_for(lambda: e.log().count("dir source stopping") >= 1, what="the old source stopped")
        write_file(in_dir(tmp, "c.txt"), msg("RC"))
        write_file(in_dir(tmp, "d.hl7"), msg("RD"))
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "c.txt")), what="c.txt in done/")
        time.sleep(0.5)
        assert os.path.exists(in_dir(tmp, "d.hl7")), "the old pattern still applies"
        wait_for(lambda: delivered(tmp) == ["RA", "RB", "RC"], what="RA, RB, RC")
    finally:
        check_clean_stop(e)


def case_permissions(tmp):
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chmod(tmp, 0o777)
        os.makedirs(in_dir(tmp), exist_ok=True)
        os.chown(in_dir(tmp), nobody.pw_uid, nobody.pw_gid)
        write_file(in_dir(tmp, "secret.hl7"), msg("S1"))
        os.chmod(in_dir(tmp, "secret.hl7"), 0o600)  # root's: nobody cannot read it
        for d in ("data", "out"):
            os.makedirs(os.path.join(tmp, d), exist_ok=True)
            os.chown(os.path.join(tmp, d), nobody.pw_uid, nobody.pw_gid)

        def drop():
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
        pre = drop
    else:
        os.makedirs(in_dir(tmp), exist_ok=True)
        write_file(in_dir(tmp, "secret.hl7"), msg("S1"))
        os.chmod(in_dir(tmp, "secret.hl7"), 0)
        pre = None
    e = engine(tmp, "      stable: 0\n      rescan: 300ms\n")
    e.start(preexec_fn=pre)
    try:
        wait_for(lambda: os.path.isdir(in_dir(tmp, "done")), what="the source to start")
        write_file(in_dir(tmp, "ok.hl7"), msg("K1"))
        os.chmod(in_dir(tmp, "ok.hl7"), 0o644)
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "ok.hl7")), what="ok.hl7 in done/")
        time.sleep(1.0)
        log = e.log()
        assert log.count("event=dir.cannot_open") == 1, log
        assert "EACCES" in log or "ermission" in log, log
        assert os.path.exists(in_dir(tmp, "secret.hl7"))
        assert delivered(tmp) == ["K1"], delivered(tmp)
        # Once readable it is taken at the next rescan.
        os.chmod(in_dir(tmp, "secret.hl7"), 0o644)
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "secret.hl7")),
                 what="secret.hl7 in done/ once readable")
        assert delivered(tmp) == ["K1", "S1"], delivered(tmp)
    finally:
        check_clean_stop(e)


def big_body(path, target_bytes, prefix):
    """A FHS/BHS batch file of about target_bytes; returns its message count."""
    n = 0
    with open(path, "wb") as f:
        f.write(b"FHS|^~\\&|LAB|NORTH|EHR|SOUTH|20260101120000\rBHS|^~\\&|LAB|NORTH\r")
        size = 0
        while size < target_bytes:
            chunk = b"".join(msg("%s%09d" % (prefix, n + i)) for i in range(1000))
            f.write(chunk)
            size += len(chunk)
            n += 1000
        f.write(b"BTS|%d\rFTS|1\r" % n)
    return n


def peak_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def case_big(tmp):
    mb = int(os.environ.get("CAD_DIR_BIG_MB", "20"))
    e = engine(tmp, "      stable: 0\n", log_level="warn", archive=False).start()
    try:
        wait_for(lambda: os.path.isdir(in_dir(tmp, "done")), what="the source to start")
        # Warm up with a small file, then note the peak RSS.
        write_file(in_dir(tmp, "small.hl7"), b"".join(msg("W%05d" % i) for i in range(2000)))
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "small.hl7")), timeout=60,
                 what="the warm-up file")
        base = peak_rss_kib(e.proc.pid)
        n = big_body(in_dir(tmp, "big.hl7.part"), mb << 20, "B")
        size = os.path.getsize(in_dir(tmp, "big.hl7.part"))
        t0 = time.monotonic()
        os.rename(in_dir(tmp, "big.hl7.part"), in_dir(tmp, "big.hl7"))
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "big.hl7")), timeout=60 + mb * 3,
                 step=0.2, what="big.hl7 in done/")
        secs = time.monotonic() - t0
        peak_read = peak_rss_kib(e.proc.pid)
        # Delivery to the append file lags the reading: wait until it stops growing.
        out = os.path.join(tmp, "out", "all.hl7")
        last = [-1, time.monotonic()]

        def settled():
            sz = os.path.getsize(out)
            if sz != last[0]:
                last[0], last[1] = sz, time.monotonic()
            return sz >= size and time.monotonic() - last[1] > 2.0
        if os.environ.get("CAD_DIR_BIG_READ_ONLY"):
            # By hand (1 GB): the figure is reading in constant memory; the
            # delivery of millions of messages to the append file follows.
            print("big: %d MB, %d messages read and durable in %.1f s (%.0f msg/s, %.1f MB/s); "
                  "peak RSS %d KiB after the warm-up, %d KiB once the file was read (+%d KiB)"
                  % (size >> 20, n, secs, n / secs, size / secs / 1e6, base, peak_read,
                     peak_read - base))
            assert sanitized() or peak_read - base < 64 * 1024
            return
        wait_for(settled, timeout=60 + mb * 3, step=0.5, what="every message at the destination")
        peak = peak_rss_kib(e.proc.pid)
        ids = delivered(tmp)
        assert len(ids) == 2000 + n, (len(ids), n)
        assert ids[2000] == "B000000000" and ids[-1] == "B%09d" % (n - 1)
        print("big: %d MB, %d messages read and durable in %.1f s (%.0f msg/s, %.1f MB/s); "
              "peak RSS %d KiB after the warm-up, %d KiB once the file was read, %d KiB once "
              "delivered (+%d KiB)" % (size >> 20, n, secs, n / secs, size / secs / 1e6, base,
                                       peak_read, peak, peak - base))
        if not sanitized():
            assert peak - base < 64 * 1024, "RSS grew by %d KiB reading %d MB" % (peak - base, mb)
    finally:
        check_clean_stop(e)


def case_crash(tmp):
    n_target = 32 << 20
    e = engine(tmp, "      stable: 0\n", log_level="warn", archive=False).start()
    wait_for(lambda: os.path.isdir(in_dir(tmp, "done")), what="the source to start")
    n = big_body(in_dir(tmp, "crash.hl7.part"), n_target, "K")
    os.rename(in_dir(tmp, "crash.hl7.part"), in_dir(tmp, "crash.hl7"))
    state = in_dir(tmp, ".caduceus")
    try:
        wait_for(lambda: any(p.startswith("p-") for p in os.listdir(state)), timeout=60,
                 step=0.01, what="a progress file")
        time.sleep(0.3)
    finally:
        e.kill()  # SIGKILL
    before = len(delivered(tmp))
    assert before < n, "the whole file was read before the kill: make it bigger"
    assert os.path.exists(in_dir(tmp, "crash.hl7")), "moved before it was finished"
    progress = [p for p in os.listdir(in_dir(tmp, ".caduceus")) if p.startswith("p-")]
    assert progress, "no progress file while the file was read"
    e2 = engine(tmp, "      stable: 0\n", log_level="info", archive=False).start()
    try:
        wait_for(lambda: os.path.exists(in_dir(tmp, "done", "crash.hl7")), timeout=120,
                 step=0.1, what="crash.hl7 in done/ after the restart")
        wait_for(lambda: len(set(delivered(tmp))) >= n, timeout=30, what="every message")
        ids = delivered(tmp)
        want = {"K%09d" % i for i in range(n)}
        missing = want - set(ids)
        assert not missing, "%d messages lost, e.g. %s" % (len(missing), sorted(missing)[:5])
        dups = len(ids) - len(set(ids))
        log = e2.log()
        assert "event=dir.resume" in log, log[-2000:]
        print("crash: %d messages, %d delivered before the kill, %d repeated after the "
              "restart" % (n, before, dups))
        # The repeats are what was answered in the last ~200 ms before the
        # kill (and in flight): far less than the file, never all of it.
        assert dups < n // 3, "too many repeats: %d of %d" % (dups, n)
    finally:
        check_clean_stop(e2)


CASES = {
    "appearing": case_appearing,
    "bad_message": case_bad_message,
    "hostile": case_hostile,
    "permissions": case_permissions,
    "replaced": case_replaced,
    "reload": case_reload,
    "big": case_big,
    "crash": case_crash,
}


def main():
    names = sys.argv[2:] or list(CASES)
    failed = 0
    for name in names:
        tmp = tempfile.mkdtemp(prefix="cad_dir_")
        t0 = time.monotonic()
        try:
            CASES[name](tmp)
            print("ok   %-12s %.1fs" % (name, time.monotonic() - t0))
        except Exception as ex:  # noqa: BLE001
            failed += 1
            print("FAIL %-12s %s" % (name, ex))
            import traceback
            traceback.print_exc()
            try:
                print(open(os.path.join(tmp, "engine.log")).read()[-3000:])
            except OSError:
                pass
        finally:
            subprocess.run(["rm", "-rf", tmp])
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
