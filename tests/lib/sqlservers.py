"""sqlservers.py - private PostgreSQL and MariaDB servers for tests.

Each runs from a fresh temp dir on a free loopback port (and a unix
socket in that dir), as its own unprivileged user (postgres / mysql:
initdb and mariadbd refuse root), and is stopped by PID or pg_ctl on
exit. Both are Debian's packages (postgresql, mariadb-server); the caller
skips when they are missing (available()).

    with PostgreSQL() as pg:
        pg.sql("CREATE TABLE t (k text, v text)")
    with MariaDB() as my:
        my.sql("CREATE TABLE t (k varchar(255), v text)")
"""
import glob
import os
import shutil
import subprocess
import time

from harness import TestFailure, free_port, mktemp, wait_for


def _pgbin():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return bins[-1] if bins else None


def pg_available():
    b = _pgbin()
    return bool(b and os.path.exists(os.path.join(b, "initdb")) and shutil.which("psql")
                and shutil.which("runuser"))


def my_available():
    return bool(shutil.which("mariadbd") and shutil.which("mariadb-install-db")
                and shutil.which("mariadb"))


def _owned_dir(base, name, user):
    d = os.path.join(base, name)
    os.mkdir(d)
    shutil.chown(d, user)
    return d


class PostgreSQL:
    """initdb + pg_ctl in a temp dir; database "mail" owned by "postfix"."""

    def __init__(self):
        self.bin = _pgbin()
        self.dir = mktemp("policyd-pg.")
        self.port = free_port()
        self.data = _owned_dir(self.dir, "data", "postgres")
        self.sock = _owned_dir(self.dir, "sock", "postgres")
        self.logdir = _owned_dir(self.dir, "log", "postgres")
        self.running = False

    def _ctl(self, *args, timeout=60):
        cp = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(self.bin, "pg_ctl"),
                             "-D", self.data] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        if cp.returncode != 0:
            raise TestFailure("pg_ctl %s: %s" % (" ".join(args), cp.stdout.decode(errors="replace")))

    def init(self):
        cp = subprocess.run(["runuser", "-u", "postgres", "--", os.path.join(self.bin, "initdb"),
                             "-D", self.data, "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if cp.returncode != 0:
            raise TestFailure("initdb: %s" % cp.stdout.decode(errors="replace"))
        self.start()
        self.sql("CREATE USER postfix PASSWORD 'secret'", db="postgres")
        self.sql("CREATE DATABASE mail OWNER postfix", db="postgres")
        return self

    def start(self):
        self._ctl("-l", os.path.join(self.logdir, "pg.log"), "-w", "-t", "60", "-o",
                  "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (self.port, self.sock),
                  "start")
        self.running = True

    def stop(self, mode="fast"):
        if self.running:
            self._ctl("-m", mode, "-w", "stop")
            self.running = False

    def sql(self, text, db="mail"):
        cp = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v",
                             "ON_ERROR_STOP=1", "-h", self.sock, "-p", str(self.port), "-d", db,
                             "-At", "-c", text],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if cp.returncode != 0:
            raise TestFailure("psql: %s: %s" % (text, cp.stdout.decode(errors="replace")))
        return cp.stdout.decode()

    def cleanup(self):
        try:
            self.stop("immediate")
        finally:
            if not os.environ.get("KEEP_TMP"):
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.init()

    def __exit__(self, *exc):
        self.cleanup()


class MariaDB:
    """mariadb-install-db + mariadbd in a temp dir; database "mail",
    user postfix@127.0.0.1 (password "secret", SELECT only)."""

    def __init__(self):
        self.dir = mktemp("policyd-my.")
        self.port = free_port()
        self.data = _owned_dir(self.dir, "data", "mysql")
        self.run = _owned_dir(self.dir, "run", "mysql")
        self.tmp = _owned_dir(self.dir, "tmp", "mysql")
        self.sock = os.path.join(self.run, "my.sock")
        self.proc = None

    def init(self):
        # --no-defaults: /etc/mysql's files would make two bootstraps at once
        # (two test runs side by side) share state and fail each other; a
        # tmpdir of its own keeps the bootstrap's temporary tables apart too.
        # A bootstrap that still fails (seen once in 36 runs side by side:
        # "Unknown table 'mysql.tmp_proxies_priv'") is tried once more in a
        # fresh datadir, and the first failure is printed.
        for attempt in (1, 2):
            cp = subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + self.data,
                                 "--user=mysql", "--auth-root-authentication-method=normal",
                                 "--skip-test-db", "--tmpdir=" + self.tmp],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
            if cp.returncode == 0:
                break
            out = cp.stdout.decode(errors="replace")
            errs = [l for l in out.splitlines() if "ERROR" in l]
            msg = "mariadb-install-db failed: %s" % ("\n".join(errs[:5]) or out)
            if attempt == 2:
                raise TestFailure(msg)
            print("# " + msg.replace("\n", "\n# ") + "\n# bootstrap tried again in a fresh datadir")
            shutil.rmtree(self.data, ignore_errors=True)
            self.data = _owned_dir(self.dir, "data", "mysql")
        self.start()
        self.sql("CREATE DATABASE mail CHARACTER SET utf8mb4; "
                 "CREATE USER 'postfix'@'127.0.0.1' IDENTIFIED BY 'secret'; "
                 "GRANT SELECT ON mail.* TO 'postfix'@'127.0.0.1';", db=None)
        return self

    def start(self):
        self.errlog = open(os.path.join(self.dir, "mariadbd.out"), "ab")
        self.proc = subprocess.Popen(
            ["mariadbd", "--no-defaults", "--datadir=" + self.data, "--user=mysql",
             "--port=%d" % self.port, "--bind-address=127.0.0.1", "--socket=" + self.sock,
             "--pid-file=" + os.path.join(self.run, "my.pid"), "--skip-log-bin",
             "--tmpdir=" + self.tmp,
             "--log-error=" + os.path.join(self.run, "my.err"), "--innodb-buffer-pool-size=16M",
             "--performance-schema=OFF", "--skip-name-resolve"],
            stdin=subprocess.DEVNULL, stdout=self.errlog, stderr=subprocess.STDOUT)
        wait_for(self._up, 60, 0.2, "mariadbd to answer")

    def _up(self):
        if self.proc.poll() is not None:
            try:
                with open(os.path.join(self.run, "my.err")) as f:
                    err = f.read()[-2000:]
            except OSError:
                err = ""
            raise TestFailure("mariadbd exited with %s: %s" % (self.proc.returncode, err))
        return subprocess.run(["mariadb", "-S", self.sock, "-uroot", "-e", "select 1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=10).returncode == 0

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
        if getattr(self, "errlog", None):
            self.errlog.close()
            self.errlog = None

    def sql(self, text, db="mail"):
        args = ["mariadb", "-S", self.sock, "-uroot", "-N", "-B", "-e", text]
        if db:
            args.insert(1, db)
        cp = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        if cp.returncode != 0:
            raise TestFailure("mariadb: %s: %s" % (text, cp.stdout.decode(errors="replace")))
        return cp.stdout.decode()

    def cleanup(self):
        try:
            self.stop()
        finally:
            if not os.environ.get("KEEP_TMP"):
                shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.init()

    def __exit__(self, *exc):
        self.cleanup()


def timed(fn):
    t0 = time.monotonic()
    v = fn()
    return v, time.monotonic() - t0
