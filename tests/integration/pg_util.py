"""pg_util.py - a throwaway PostgreSQL 15 server for the integration tests.

initdb in a fresh directory, the server on 127.0.0.1 at a free port and a
unix socket in that directory, trust authentication for one user; stopped
and removed by stop().  initdb refuses to run as root: as root the server
runs as the unprivileged user `cadtest` (created when missing).  Everything
is bounded in time."""
import os
import pwd
import shutil
import subprocess
import tempfile

from engine_util import free_port

PGBIN = "/usr/lib/postgresql/15/bin"
USER = "cadtest"


def available():
    return os.path.exists(os.path.join(PGBIN, "initdb")) and shutil.which("psql") is not None


class PgServer:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cad-pg-")
        os.chmod(self.dir, 0o700)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.user = USER if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        if self.as_root:
            try:
                pwd.getpwnam(USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", USER], check=True,
                               timeout=30)
            shutil.chown(self.dir, USER, USER)
        self._run([PGBIN + "/initdb", "-D", self.data, "-A", "trust", "-U", self.user,
                   "--no-sync", "-E", "UTF8"], timeout=120)
        self.start()

    def _run(self, argv, timeout=60, check=True):
        if self.as_root:
            argv = ["runuser", "-u", USER, "--"] + argv
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)

    def start(self):
        self._run([PGBIN + "/pg_ctl", "-D", self.data, "-w", "-t", "60", "-l",
                   os.path.join(self.dir, "server.log"), "-o",
                   "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (self.port, self.dir),
                   "start"], timeout=90)

    def stop(self, mode="fast"):
        self._run([PGBIN + "/pg_ctl", "-D", self.data, "-w", "-t", "60", "-m", mode, "stop"],
                  timeout=90, check=False)

    def pids(self):
        """The server's processes: the postmaster (postmaster.pid) and its children."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            main = int(f.readline())
        out = [main]
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open("/proc/%s/stat" % d) as f:
                        st = f.read()
                    if int(st.rsplit(")", 1)[1].split()[1]) == main:
                        out.append(int(d))
                except (OSError, ValueError, IndexError):
                    pass
        return out

    def freeze(self, on):
        """SIGSTOP (on) or SIGCONT the server's own processes: a server that
        stops answering without closing its connections."""
        import signal
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGSTOP if on else signal.SIGCONT)
            except ProcessLookupError:
                pass

    def env(self):
        """libpq's environment for this server (what psql and the engine read)."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGUSER": self.user,
                "PGDATABASE": "postgres"}

    def conninfo(self):
        return "host=127.0.0.1 port=%d user=%s dbname=postgres" % (self.port, self.user)

    def psql(self, sql=None, file=None):
        argv = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                str(self.port), "-U", self.user, "-d", "postgres"]
        argv += ["-f", file] if file else ["-c", sql]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError("psql failed: %s" % r.stderr)
        return r.stdout.strip()

    def close(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
