#!/usr/bin/env python3
"""The one configuration loader, as every command sees it (issues 12, 13):

- an include or a table that is a FIFO: `check` answers at once with the
  key's file:line:col, and a SIGHUP reload is refused while the engine goes
  on ACKing (the files are read off the event loop);
- every relative path follows the file it is written in, not the working
  directory (an included file's paths follow that file);
- `caduceus test` loads like `check` and `run`: include:, ${ENV};
- one boolean rule (YAML 1.2 true/false) for check, test and run.
Usage: test_config_files.py CADUCEUS"""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from engine_util import (Engine, adt, check_clean_stop, connect, field, fields,  # noqa: E402
                         free_port, read_frame, frame, run_tests, wait_for)


def run(binary, *args, cwd=None, env=None, timeout=10):
    """Run a command; a hang (the old FIFO behaviour) is a failure, not a stall."""
    t0 = time.monotonic()
    try:
        p = subprocess.run([binary, *args], capture_output=True, timeout=timeout, cwd=cwd,
                           env=env)
    except subprocess.TimeoutExpired:
        raise AssertionError("caduceus %s did not return within %ss" % (" ".join(args), timeout))
    return p.returncode, p.stdout.decode(), p.stderr.decode(), time.monotonic() - t0


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def check_fifo_include(binary, tmp):
    port = free_port()
    write(os.path.join(tmp, "main.yaml"),
          "include: [ dests.yaml ]\n"
          "channels:\n  lab:\n    listen: 127.0.0.1:%d\n    to: out\n" % port)
    os.mkfifo(os.path.join(tmp, "dests.yaml"))
    rc, out, err, took = run(binary, "check", "main.yaml", cwd=tmp)
    assert rc == 1, (rc, out, err)
    assert ("main.yaml:1:12: cannot read included file 'dests.yaml': "
            "a FIFO, not a regular file") in err, err
    assert took < 5, took


def check_fifo_table(binary, tmp):
    port = free_port()
    write(os.path.join(tmp, "main.yaml"),
          "destinations:\n  out: {type: file, dir: out}\n"
          "tables:\n  codes: { file: codes.csv }\n"
          "channels:\n  lab:\n    listen: 127.0.0.1:%d\n    to: out\n" % port)
    os.mkfifo(os.path.join(tmp, "codes.csv"))
    for cmd in ("check", "test"):
        rc, out, err, took = run(binary, cmd, "main.yaml", cwd=tmp)
        assert rc == 1, (cmd, rc, out, err)
        assert ("main.yaml:4:18: cannot read table file 'codes.csv': "
                "a FIFO, not a regular file") in err, (cmd, err)
        assert took < 5, (cmd, took)


def reload_fifo_keeps_acking(binary, tmp):
    port = free_port()
    eng = Engine(binary, tmp, "", "")
    dests = os.path.join(tmp, "dests.yaml")
    write(dests, "destinations:\n  out: {type: file, dir: out}\n")
    with open(eng.conf, "w") as f:
        f.write("engine:\n  data_dir: data\n  log_level: info\n"
                "include: dests.yaml\n"
                "channels:\n  lab:\n    listen: 127.0.0.1:%d\n    to: out\n" % port)
    eng.start(wait_ports=[port])
    try:
        with connect(port) as s:
            s.sendall(frame(adt("BEFORE")))
            assert field(fields(read_frame(s, timeout=5)), "MSA", 1) == "AA"
            # The include becomes a FIFO nobody writes to: a blocking open
            # would stop the loop for good.
            os.unlink(dests)
            os.mkfifo(dests)
            eng.signal(signal.SIGHUP)
            wait_for(lambda: "reload.refused" in eng.log(), timeout=5, what="reload.refused")
            for i in range(20):  # during and after: every frame ACKed promptly
                s.sendall(frame(adt("DURING%d" % i)))
                ack = fields(read_frame(s, timeout=2))
                assert field(ack, "MSA", 1) == "AA", ack
        log = eng.log()
        assert "a FIFO, not a regular file" in log, log[-2000:]
        assert "the running configuration stays" in log, log[-2000:]
        # Back to a regular file: the next reload is applied.
        os.unlink(dests)
        write(dests, "destinations:\n  out: {type: file, dir: out2}\n")
        eng.signal(signal.SIGHUP)
        wait_for(lambda: "reload.done" in eng.log(), timeout=5, what="reload.done")
        with connect(port) as s:
            s.sendall(frame(adt("AFTER")))
            assert field(fields(read_frame(s, timeout=5)), "MSA", 1) == "AA"
        # Every ACKed message is delivered (the last one by the old or the
        # new runtime's worker: they share the destination's queue).
        def files():
            return sum(len(os.listdir(os.path.join(tmp, d)))
                       for d in ("out", "out2") if os.path.isdir(os.path.join(tmp, d)))
        wait_for(lambda: files() == 22, what="22 files")
        check_clean_stop(eng)
    finally:
        eng.kill()


def relative_paths_follow_the_file(binary, tmp):
    """data_dir and outputs follow main.yaml's directory, an included file's
    outputs follow that file, whatever directory the engine starts in."""
    port = free_port()
    conf = os.path.join(tmp, "conf")
    write(os.path.join(conf, "main.yaml"),
          "engine:\n  data_dir: state\n"
          "include: sub/more.yaml\n"
          "destinations:\n  a: {type: file, dir: out-a}\n"
          "channels:\n  lab:\n    listen: 127.0.0.1:%d\n    to: [a, b]\n" % port)
    write(os.path.join(conf, "sub", "more.yaml"),
          "destinations:\n  b: {type: file, append: out-b.hl7}\n")
    rc, out, err, _ = run(binary, "check", os.path.join(conf, "main.yaml"), cwd=tmp)
    assert rc == 0, err
    # Started in tmp (the Engine's cwd) on conf/main.yaml.
    eng = Engine(binary, tmp, "", "")
    os.unlink(eng.conf)
    eng.conf = os.path.join(conf, "main.yaml")
    eng.start(wait_ports=[port])
    try:
        with connect(port) as s:
            s.sendall(frame(adt("REL1")))
            assert field(fields(read_frame(s, timeout=5)), "MSA", 1) == "AA"
        wait_for(lambda: os.path.isdir(os.path.join(conf, "out-a")) and
                 os.listdir(os.path.join(conf, "out-a")), what="out-a")
        wait_for(lambda: os.path.exists(os.path.join(conf, "sub", "out-b.hl7")), what="out-b")
        assert os.path.isdir(os.path.join(conf, "state")), os.listdir(conf)
        assert sorted(os.listdir(tmp)) == ["conf", "engine.log"], os.listdir(tmp)
        check_clean_stop(eng)
    finally:
        eng.kill()


MSG = "MSH|^~\\&|LAB|HOSP|EHR|HOSP|20240105083000||ADT^A01|CTL1|P|2.5.1\\rPID|1||12345\\r"


def route_tests_use_include_and_env(binary, tmp):
    """`caduceus test` reads include: and ${ENV} like check and run; the test
    messages of an included file are relative to that file."""
    write(os.path.join(tmp, "main.yaml"),
          "include: [ chans/lab.yaml ]\n"
          "destinations:\n  out:\n    type: file\n    dir: ${CAD_T_OUT}\n")
    write(os.path.join(tmp, "chans", "lab.yaml"),
          "channels:\n  lab:\n    listen: 127.0.0.1:${CAD_T_PORT}\n    to: out\n"
          "    tests:\n      - name: goes out\n        input: { file: msg/in.hl7 }\n"
          "        expect: { out: { file: msg/in.hl7 } }\n")
    write(os.path.join(tmp, "chans", "msg", "in.hl7"), MSG.replace("\\r", "\r"))
    env = dict(os.environ, CAD_T_OUT="out", CAD_T_PORT=str(free_port()))
    rc, out, err, _ = run(binary, "test", "main.yaml", cwd=tmp, env=env)
    assert rc == 0, (rc, out, err)
    assert "ok   lab / goes out" in out, out
    assert "1 tests: 1 passed, 0 failed" in out, out
    # Unset variable: the same error from test as from check.
    env.pop("CAD_T_PORT")
    rc1, _, err1, _ = run(binary, "check", "main.yaml", cwd=tmp, env=env)
    rc2, _, err2, _ = run(binary, "test", "main.yaml", cwd=tmp, env=env)
    want = "chans/lab.yaml:3:23: environment variable 'CAD_T_PORT' is not set"
    assert rc1 == 1 and want in err1, err1
    assert rc2 == 1 and want in err2, err2


def booleans_one_rule(binary, tmp):
    """A boolean is YAML 1.2's true/false for every key and every command:
    `yes` is refused by check, test and run alike; `True` accepted by all."""
    port = free_port()
    write(os.path.join(tmp, "codes.csv"), "key,value\nA,B\n")
    for spelling, ok in (("true", True), ("True", True), ("FALSE", True),
                         ("yes", False), ("on", False), ("no", False)):
        write(os.path.join(tmp, "c.yaml"),
              "engine:\n  data_dir: data\n"
              "destinations:\n  out: {type: file, dir: out}\n"
              "  ehr: {type: mllp, host: 127.0.0.1, port: 9, persistent: %s}\n"
              "tables:\n  codes: { file: codes.csv, header: %s }\n"
              "channels:\n  lab:\n    listen: 127.0.0.1:%d\n"
              "    routes:\n      - to: [out]\n        continue: %s\n"
              % (spelling, spelling, port, spelling))
        results = {}
        for cmd in ("check", "test", "run"):
            if cmd == "run":
                p = subprocess.Popen([binary, "run", "c.yaml"], cwd=tmp,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    p.wait(1.5)  # a refused configuration exits at once
                    rc, err = p.returncode, p.stderr.read().decode()
                except subprocess.TimeoutExpired:
                    p.send_signal(signal.SIGTERM)
                    p.wait(20)
                    rc, err = 0, ""
                p.stdout.close()
                p.stderr.close()
            else:
                rc, _, err, _ = run(binary, cmd, "c.yaml", cwd=tmp)
            results[cmd] = rc
            if ok:
                assert rc == 0, (spelling, cmd, err)
            else:
                assert rc == 1, (spelling, cmd, err)
                assert ("c.yaml:5:59: persistent: expected true or false, got '%s'" % spelling
                        in err), (cmd, err)
                assert "c.yaml:7:37: 'header' must be true or false" in err, (cmd, err)
                assert "c.yaml:13:19: 'continue' must be true or false" in err, (cmd, err)
        assert len(set(results.values())) == 1, (spelling, results)


TESTS = [check_fifo_include, check_fifo_table, reload_fifo_keeps_acking,
         relative_paths_follow_the_file, route_tests_use_include_and_env, booleans_one_rule]

if __name__ == "__main__":
    sys.exit(run_tests(TESTS, sys.argv))
