"""harness.py - real redis-server and policyd processes for integration tests.

Everything runs on loopback or unix sockets under a fresh temp dir, every
wait is bounded, and only processes started here are stopped (by PID).

    with Redis() as r, Policyd(redis=r, rules=greylist_rules()) as p:
        c = p.client()
        assert c.ask(req(recipient="a@example.net")).startswith("DEFER_IF_PERMIT")

POLICYD_BIN selects the binary (default build/policyd); the test runner
points it at the sanitizer build for the second pass.

Fail-open answers: a request that a check could not decide is answered
with the rule's on_error (DUNNO by default), which looks like a pass. Every
policyd started here is watched for such answers (the log's "on_error=yes"
and, when a metrics listener is configured, policyd_on_error_total); a test
in which one happens fails unless it says it expects them, with the
@expects_on_error decorator or Policyd(..., expect_on_error=True).

Sanitizers: every policyd and policyctl process is checked for ASan/LSan/
UBSan output and their exit statuses (23, 24); run_checked() does it for
one-shot runs (policyd -t, policyctl), and a sanitizer exit is never the
expected failure.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TestFailure(AssertionError):
    pass


# ------------------------------------------------ per-test declarations ----

# set by the runner around each test: does the running test expect on_error
# answers (see expects_on_error)?
_test_expects_on_error = [False]
# every Policyd started during the run, for the runner's after-test check
STARTED = []


def expects_on_error(fn):
    """Decorator: this test makes policyd answer on_error (Redis down,
    hung, failing over...); without it any such answer fails the test."""
    fn.expects_on_error = True
    return fn


def time_limit(seconds):
    """Decorator: this test may run for up to seconds instead of the
    runner's TEST_TIMEOUT (a cold download or build on a loaded machine)."""
    def mark(fn):
        fn.time_limit = seconds
        return fn
    return mark


def begin_test(fn):
    _test_expects_on_error[0] = bool(getattr(fn, "expects_on_error", False))


def end_test():
    """After a test: on_error answers of policyd processes still running
    (a module-wide policyd) that the test did not expect; returns the
    problems found (the runner fails the test with them)."""
    problems = []
    for p in list(STARTED):
        if p.proc is None or p.cleaned:
            STARTED.remove(p)
            continue
        try:
            p.check_on_error()
        except TestFailure as e:
            problems.append(str(e))
    _test_expects_on_error[0] = False
    return problems


# ------------------------------------------------------ sanitizer checks ----

SANITIZER_RE = re.compile(r"(ERROR: (Address|Leak|Undefined|Memory|Thread)Sanitizer.*"
                          r"|SUMMARY: (Address|Leak|Undefined)Sanitizer.*"
                          r"|runtime error:.*)")
SANITIZER_EXITS = (23, 24)


def sanitizer_env(env=None):
    env = dict(os.environ if env is None else env)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=24")
    return env


def sanitizer_problem(rc, text):
    """A sanitizer report in a process's output or exit status, or None."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    m = SANITIZER_RE.search(text or "")
    if m:
        return m.group(0)
    if rc in SANITIZER_EXITS:
        return "exit status %d (a sanitizer's exitcode)" % rc
    if rc is not None and rc < 0 and -rc in (signal.SIGABRT, signal.SIGSEGV, signal.SIGBUS,
                                              signal.SIGILL, signal.SIGFPE):
        return "killed by signal %d" % -rc
    return None


def _text(x):
    if x is None:
        return ""
    return x.decode("utf-8", "replace") if isinstance(x, bytes) else x


def run_checked(argv, **kw):
    """subprocess.run for a policyd or policyctl one-shot run; raises
    TestFailure on sanitizer output or exit status whatever the exit code
    the caller expects. Returns the CompletedProcess."""
    kw["env"] = sanitizer_env(kw.get("env"))
    cp = subprocess.run(argv, **kw)
    why = sanitizer_problem(cp.returncode, _text(cp.stdout) + _text(cp.stderr))
    if why:
        raise TestFailure("sanitizer in %s: %s\n%s%s" % (
            " ".join(map(str, argv)), why, _text(cp.stdout)[-3000:], _text(cp.stderr)[-3000:]))
    return cp


def check(cond, msg="check failed"):
    if not cond:
        raise TestFailure(msg)


def eq(got, want, msg=""):
    if got != want:
        raise TestFailure("%s: got %r, want %r" % (msg or "values differ", got, want))


_ports_given = set()


def free_port():
    """A loopback port free now and not handed out before in this run: the
    kernel may offer a port again once it is closed, and two servers of one
    test given the same port would meet (policyd's metrics listener runs
    without metrics when its port is taken, and the test then talks to
    whatever has it)."""
    for _ in range(1000):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _ports_given:
            break
    _ports_given.add(port)
    return port


def wait_for(pred, timeout=5.0, step=0.02, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise TestFailure("timed out after %.1fs waiting for %s" % (timeout, what))


def wait_tcp_read(server_port, client_sock, timeout=10):
    """Wait until the server side of a loopback TCP connection has read
    everything the client sent (its receive queue in /proc/net/tcp is
    empty): "the request has arrived" without sleeping on luck."""
    cport = client_sock.getsockname()[1]
    want_local = ":%04X" % server_port
    want_rem = ":%04X" % cport

    def drained():
        for path in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                rows = open(path).read().split("\n")[1:]
            except OSError:
                continue
            for row in rows:
                f = row.split()
                if len(f) > 4 and f[1].endswith(want_local) and f[2].endswith(want_rem):
                    rxq = int(f[4].split(":")[1], 16)
                    return rxq == 0
        return False
    return wait_for(drained, timeout, what="policyd to read the bytes sent")


def mktemp(prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


# ---------------------------------------------------------------- Redis ----

class Redis:
    """A private redis-server on a free loopback port (and a unix socket)."""

    def __init__(self, port=None, password=None, extra=()):
        self.port = port or free_port()
        self.dir = mktemp("policyd-redis.")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.password = password
        self.extra = list(extra)
        self.proc = None

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def start(self):
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--unixsocket", self.sock, "--unixsocketperm", "777",
                "--dir", self.dir, "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args + self.extra, stdin=subprocess.DEVNULL)
        wait_for(self._up, 10, what="redis-server on port %d" % self.port)
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise TestFailure("redis-server exited: %s" % self.logtail())
        try:
            return self.cmd("PING") in ("PONG", b"PONG")
        except OSError:
            return False
        except RedisError as e:
            return "NOAUTH" in str(e)

    def logtail(self):
        try:
            with open(os.path.join(self.dir, "redis.log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def cmd(self, *args, timeout=5, db=None, raw=False):
        """One command over a fresh connection; returns the decoded reply
        (bulk strings as bytes with raw=True). db: SELECT that database first."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            f = s.makefile("rb")
            if self.password:
                s.sendall(resp_encode(["AUTH", self.password]))
                resp_read(f)
            if db is not None:
                s.sendall(resp_encode(["SELECT", db]))
                resp_read(f)
            s.sendall(resp_encode(args))
            return resp_read(f, raw)
        finally:
            s.close()

    def keys(self, pattern="*", db=None):
        """Every key matching pattern (SCAN), as bytes."""
        out, cursor = [], "0"
        for _ in range(100000):
            cursor, batch = self.cmd("SCAN", cursor, "MATCH", pattern,
                                     "COUNT", 1000, db=db)
            out += [k if isinstance(k, bytes) else k.encode() for k in batch]
            if cursor in ("0", b"0"):
                break
        return out

    def ttl(self, key, db=None):
        return self.cmd("TTL", key, db=db)

    def used_memory(self):
        info = self.cmd("INFO", "memory")
        m = re.search(r"used_memory:(\d+)", info)
        return int(m.group(1))

    # -- time travel: the checks take their time from Redis (TIME), and
    # libfaketime cannot run redis-server (jemalloc recursion), so a test
    # that needs time to pass moves the stored times back instead of
    # sleeping: deterministic on a loaded machine, whatever its speed.

    def _shorten_ttl(self, key, ms, db=None):
        pttl = self.cmd("PTTL", key, db=db)
        if pttl is None or pttl < 0:
            return
        if pttl <= ms:
            self.cmd("DEL", key, db=db)
        else:
            self.cmd("PEXPIRE", key, pttl - ms, db=db)

    def age_greylist(self, seconds, pattern="t:g{*", db=None):
        """As if `seconds` had passed for every greylist entry (buckets of
        greylist.lua: a triplet field holds T*2+passed, a client counter
        field "a..." holds count*2^32+T): every T moves back, the buckets'
        TTLs shrink. Returns the number of entries moved. (policyd's
        local_cache does not see this: a test that ages entries runs its
        greylist rule with local_cache = 0.)"""
        n = 0
        for k in self.keys(pattern, db=db):
            flat = self.cmd("HGETALL", k, db=db, raw=True) or []
            for f, v in zip(flat[0::2], flat[1::2]):
                v = int(v)
                if f[:1] == b"a":
                    v -= int(seconds)
                else:
                    v -= 2 * int(seconds)
                self.cmd("HSET", k, f, v, db=db)
                n += 1
            self._shorten_ttl(k, int(seconds) * 1000, db=db)
        return n

    def age_ratelimit(self, seconds, pattern="t:r{*", db=None):
        """As if `seconds` had passed for every rate-limit key: each window's
        theoretical arrival time (ms) and the notification fence move back,
        the TTLs shrink (the networks sets too)."""
        ms = int(seconds * 1000)
        n = 0
        for k in self.keys(pattern, db=db):
            flat = self.cmd("HGETALL", k, db=db) or []
            for f, v in zip(flat[0::2], flat[1::2]):
                self.cmd("HSET", k, f, repr(float(v) - ms), db=db)
            self._shorten_ttl(k, ms, db=db)
            n += 1
        for k in self.keys(pattern.replace("r{", "n{", 1), db=db):
            self._shorten_ttl(k, ms, db=db)
        return n

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.resume()
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


class RedisError(Exception):
    pass


def resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, int):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def resp_read(f, raw=False):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RedisError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        if raw:
            return data
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f, raw) for _ in range(n)]
    raise RedisError("bad reply %r" % line)


# -------------------------------------------------------------- policyd ----

GREYLIST_RULES = """
rules = (
  { name = "authenticated"; match = { authenticated = true; }; action = "DUNNO"; },
  { name = "greylist"; match = { authenticated = false; }; check = "greylist";
    delay = %(delay)d; retry_window = %(window)d; auto_whitelist = %(awl)d; %(extra)s }
);
"""


def greylist_rules(delay=2, window=6, awl=0, cache=None):
    """cache: local_cache; tests that age entries in Redis (age_greylist)
    set 0, since policyd's memory of a waiting triplet does not see it"""
    extra = "" if cache is None else "local_cache = %d;" % cache
    return GREYLIST_RULES % {"delay": delay, "window": window, "awl": awl, "extra": extra}


class Policyd:
    """policyd -f with a generated configuration, on a free loopback port.

    redis.timeout_ms is 2000 by default: on a loaded machine under ASan a
    Redis reply can take longer than 200 ms, and the answer would be the
    rule's on_error; tests of a hung Redis pass a short timeout_ms."""

    def __init__(self, redis=None, rules="", extra="", redis_block=None,
                 listen=None, timeout_ms=2000, binary=None, files=None,
                 expect_start=True, expect_on_error=None):
        self.dir = mktemp("policyd-test.")
        self.expect_on_error = expect_on_error
        self.cleaned = False
        self.logf = None
        self._on_error_off = 0
        self._on_error_metric = 0
        self.port = free_port()
        self.listen = listen or ['inet:127.0.0.1:%d' % self.port]
        self.bin = binary or os.environ.get("POLICYD_BIN") or os.path.join(TOP, "build", "policyd")
        self.conf = os.path.join(self.dir, "policyd.conf")
        self.logpath = os.path.join(self.dir, "policyd.log")
        self.proc = None
        self.expect_start = expect_start
        for name, text in (files or {}).items():
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
        if redis_block is None:
            addr = redis.address if redis else "127.0.0.1:%d" % free_port()
            redis_block = ('redis = { address = "%s"; timeout_ms = %d; '
                           'connect_timeout_ms = 500; prefix = "t:"; };' % (addr, timeout_ms))
        self.write_config(rules, extra, redis_block)

    def write_config(self, rules, extra="", redis_block=None):
        if redis_block is not None:
            self.redis_block = redis_block
        # an entry starting with "{" is a raw group (unix socket with mode)
        listen = ", ".join(a if a.startswith("{") else '"%s"' % a for a in self.listen)
        brackets = "()" if any(a.startswith("{") for a in self.listen) else "[]"
        text = ('listen = %s %s %s;\nrun_as_root = true;\nhostname = "mx.test";\n'
                'log = { level = "info"; };\n%s\n%s\n%s\n'
                % (brackets[0], listen, brackets[1], self.redis_block, extra, rules))
        with open(self.conf, "w") as f:
            f.write(text)
        m = re.search(r'metrics\s*=\s*\{\s*address\s*=\s*"([^"]*)"', text)
        self.metrics_address = m.group(1) if m else None
        return text

    def check_config(self, timeout=30):
        """policyd -t on this configuration: (exit status, output); a
        sanitizer report fails the test whatever the status."""
        cp = run_checked([self.bin, "-t", "-c", self.conf], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=timeout)
        return cp.returncode, cp.stdout.decode("utf-8", "replace")

    def _expects_on_error(self):
        if self.expect_on_error is not None:
            return self.expect_on_error
        return _test_expects_on_error[0]

    def on_error_metric(self):
        """policyd_on_error_total from the metrics listener, or None."""
        addr = self.metrics_address
        if not addr or self.proc is None or self.proc.poll() is not None:
            return None
        host, _, port = addr.rpartition(":")
        try:
            s = socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=3)
        except (OSError, ValueError):
            return None
        try:
            s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while len(data) < 1 << 20:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except OSError:
            return None
        finally:
            s.close()
        m = re.search(rb"^policyd_on_error_total (\d+)", data, re.M)
        return int(m.group(1)) if m else None

    def check_on_error(self, final=False):
        """Fail when policyd answered on_error since the last check and
        nobody said that was expected."""
        text = self.log()
        new = text[self._on_error_off:]
        self._on_error_off = len(text)
        lines = [l for l in new.split("\n") if " on_error=yes" in l]
        metric = None if final else self.on_error_metric()
        grew = 0
        if metric is not None:
            grew, self._on_error_metric = metric - self._on_error_metric, metric
        if self._expects_on_error() or (not lines and grew <= 0):
            return
        raise TestFailure("policyd answered on_error (a check could not decide, the "
                          "answer only looks like a pass) %d times%s; a test that means "
                          "it says @expects_on_error:\n%s" % (
                              max(len(lines), grew),
                              "" if metric is None else " (policyd_on_error_total +%d)" % grew,
                              "\n".join(lines[:5])))

    def start(self):
        self.logf = open(self.logpath, "ab")
        env = sanitizer_env()
        if self not in STARTED:
            STARTED.append(self)
        self.proc = subprocess.Popen([self.bin, "-f", "-c", self.conf],
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=env)
        if self.expect_start:
            wait_for(self._listening, 10, what="policyd to listen")
        return self

    def _listening(self):
        if self.proc.poll() is not None:
            raise TestFailure("policyd exited with %s:\n%s" % (self.proc.returncode, self.log()))
        return "started:" in self.log()

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=5, start=0):
        return wait_for(lambda: re.search(pattern, self.log()[start:]), timeout,
                        what="log line /%s/" % pattern)

    def client(self, timeout=5):
        return PolicyClient(("127.0.0.1", self.port), timeout)

    def connect(self, addr, timeout=5):
        """A client on another listener: ("::1", port) or "/unix/path"."""
        return PolicyClient(addr, timeout)

    def reload(self, rules, extra="", redis_block=None, timeout=5):
        """Rewrite the configuration, SIGHUP, wait for the outcome; returns
        the log text written since (contains "reloaded" or "reload failed")."""
        start = len(self.log())
        self.write_config(rules, extra, redis_block)
        self.signal(signal.SIGHUP)
        self.wait_log(r"reloaded: generation|reload failed", timeout, start)
        return self.log()[start:]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=10):
        """SIGTERM, wait, and check for a clean exit without sanitizer reports."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise TestFailure("policyd did not exit within %ds of SIGTERM" % timeout)
        return rc

    def sanitizer_report(self):
        m = SANITIZER_RE.search(self.log())
        if m:
            return m.group(0)
        rc = self.proc.returncode if self.proc else None
        return sanitizer_problem(rc, "")

    def cleanup(self, check_exit=True):
        """Stop policyd and remove its directory. A sanitizer report fails
        even with check_exit=False (that only accepts a non-zero exit);
        so does an unexpected on_error answer."""
        on_error = None
        if not self.cleaned and self.proc is not None:
            try:
                self.check_on_error()
            except TestFailure as e:
                on_error = e
        rc = self.stop()
        if self.logf:
            self.logf.close()
            self.logf = None
        report = self.sanitizer_report()
        if on_error is None and not self.cleaned and self.proc is not None:
            try:
                self.check_on_error(final=True)
            except TestFailure as e:
                on_error = e
        self.cleaned = True
        if self in STARTED:
            STARTED.remove(self)
        tail = self.log()[-3000:] if report else ""
        keep = os.environ.get("KEEP_TMP")
        if not keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if report:
            raise TestFailure("sanitizer: %s\n%s" % (report, tail))
        if on_error is not None:
            raise on_error
        if check_exit and rc not in (0, None):
            raise TestFailure("policyd exited with status %s" % rc)

    def __enter__(self):
        self.logf = None
        return self.start()

    def __exit__(self, exc_type, exc, tb):
        # a failing test body wins over a cleanup complaint
        try:
            self.cleanup(check_exit=exc_type is None)
        except TestFailure:
            if exc_type is None:
                raise


# ---------------------------------------------------- daemons, syslog ----

def pid_alive(pid):
    """A process that exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


class SyslogSink:
    """The datagram socket a daemon logs to: $POLICYD_LOG_SOCKET points
    policyd at it instead of /dev/log. read() collects every datagram
    received so far; wait() waits for one matching a pattern."""

    def __init__(self, path):
        self.path = path
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind(path)
        self.s.setblocking(False)
        self.lines = []

    def read(self):
        while True:
            try:
                self.lines.append(self.s.recv(65536).decode("utf-8", "replace"))
            except BlockingIOError:
                return self.lines

    def wait(self, pattern, timeout=10):
        return wait_for(lambda: [l for l in self.read() if re.search(pattern, l)], timeout,
                        what="syslog /%s/ in %s" % (pattern, self.lines[-5:]))

    def close(self):
        self.s.close()


def start_daemon(p, syslog_path, argv=None, pidfile=None):
    """Start policyd without -f (it forks; logs go to the syslog socket
    at syslog_path) for Policyd p, whose configuration must name pidfile;
    returns the daemon's pid once the pidfile names it. Sanitizer reports
    go to files in p.dir (a daemon's stderr is /dev/null): stop_daemon()
    checks them."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:exitcode=23:log_path=%s/asan" % p.dir
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=24:log_path=%s/ubsan" % p.dir
    env["POLICYD_LOG_SOCKET"] = syslog_path
    cp = run_checked(argv or [p.bin, "-c", p.conf], cwd=p.dir, env=env,
                     stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    eq(cp.returncode, 0, "daemon start: %s" % cp.stderr.decode("utf-8", "replace"))
    pidfile = pidfile or os.path.join(p.dir, "policyd.pid")
    wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().endswith("\n"),
             10, what="the daemon's pidfile")
    return int(open(pidfile).read())


def stop_daemon(p, pid, timeout=15):
    """SIGTERM a daemon started by start_daemon(), wait for it to go, and
    fail on a sanitizer report it left."""
    if pid is not None and pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        try:
            wait_for(lambda: not pid_alive(pid), timeout, what="the daemon to exit")
        except TestFailure:
            os.kill(pid, signal.SIGKILL)
            raise
    reports = [f for f in os.listdir(p.dir) if f.startswith(("asan", "ubsan"))]
    if reports:
        raise TestFailure("sanitizer report of the daemon: %s" % "".join(
            open(os.path.join(p.dir, f)).read()[-2000:] for f in reports))


def metrics(port, host="127.0.0.1"):
    """GET /metrics: {sample (with its labels): value}."""
    s = socket.create_connection((host, port), timeout=5)
    try:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
    finally:
        s.close()
    head, _, body = data.decode("utf-8", "replace").partition("\r\n\r\n")
    if " 200 " not in head.split("\r\n")[0]:
        raise TestFailure("GET /metrics: %s" % head.split("\r\n")[0])
    out = {}
    for line in body.split("\n"):
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def cleanup_all(ps):
    """Clean up every Policyd of ps even when one fails its checks (an
    unexpected on_error, a sanitizer report): none is left running; the
    first failure is raised afterwards."""
    first = None
    for p in ps:
        try:
            p.cleanup()
        except TestFailure as e:
            first = first or e
    if first is not None:
        raise first


POSTFIX_ORDER = ["request", "protocol_state", "protocol_name", "client_address",
                 "client_name", "client_port", "reverse_client_name", "server_address",
                 "server_port", "helo_name", "sender", "recipient", "recipient_count",
                 "queue_id", "instance", "size", "etrn_domain", "stress", "sasl_method",
                 "sasl_username", "sasl_sender", "ccert_subject", "ccert_issuer",
                 "ccert_fingerprint", "ccert_pubkey_fingerprint", "encryption_protocol",
                 "encryption_cipher", "encryption_keysize", "policy_context"]


def req(**kw):
    """A request with every attribute Postfix 3.7 sends; keywords override."""
    a = {k: "" for k in POSTFIX_ORDER}
    a.update(request="smtpd_access_policy", protocol_state="RCPT", protocol_name="ESMTP",
             client_address="192.0.2.10", client_name="mx.sender.test", client_port="40000",
             reverse_client_name="mx.sender.test", server_address="127.0.0.1",
             server_port="25", helo_name="mx.sender.test", sender="alice@sender.test",
             recipient="bob@example.net", recipient_count="0",
             instance="1f31.6b038c20.1e88a.0", size="0", encryption_keysize="0")
    a.update(kw)
    return a


def encode(attrs):
    if isinstance(attrs, (bytes, bytearray)):
        return bytes(attrs)
    return "".join("%s=%s\n" % (k, v) for k, v in attrs.items()).encode() + b"\n"


class PolicyClient:
    def __init__(self, addr, timeout=5):
        if isinstance(addr, str):       # a unix socket path
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(timeout)
            self.s.connect(addr)
        else:
            self.s = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def send(self, attrs):
        self.s.sendall(encode(attrs))

    def send_raw(self, data):
        self.s.sendall(data)

    def reply(self):
        """The next reply's action text; raises on close or timeout."""
        while b"\n\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("policyd closed the connection")
            self.buf += d
        raw, self.buf = self.buf.split(b"\n\n", 1)
        lines = raw.decode().split("\n")
        acts = [l for l in lines if l.startswith("action=")]
        if len(acts) != 1:
            raise TestFailure("bad reply %r" % raw)
        self.last_lines = lines
        return acts[0][len("action="):]

    def ask(self, attrs):
        self.send(attrs)
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closes without sending anything more."""
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        return d == b"" and self.buf == b""

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- greylist storage (policyd/greylist.h), for tests that look at Redis

_M64 = (1 << 64) - 1
GREYLIST_SEED = 0x70646772796c7374


def _mix64(x):
    x ^= x >> 30
    x = (x * 0xbf58476d1ce4e5b9) & _M64
    x ^= x >> 27
    x = (x * 0x94d049bb133111eb) & _M64
    x ^= x >> 31
    return x


def hash64(data, seed):
    """addr_hash64() of policyd/addr.c."""
    h = 0xcbf29ce484222325 ^ _mix64((seed + 0x9e3779b97f4a7c15) & _M64)
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & _M64
    h ^= len(data)
    return _mix64(h)


def greylist_name(client):
    """N of greylist.h: the client part as kind + bytes."""
    try:
        if client.startswith("x"):
            return b"x" + bytes.fromhex(client[1:])
        if len(client) % 2 == 1 and client.startswith("6"):
            return b"6" + bytes.fromhex(client[1:])
        return b"4" + bytes.fromhex(client)
    except ValueError:
        return b"h" + hash64(client.encode(), GREYLIST_SEED).to_bytes(8, "big")


def greylist_key(client, sender=None, recipient=None, prefix="t:"):
    """(bucket, field, counter, counter_field) of a triplet as greylist.h
    places it; client is the client part (addr_net_hex: "c00002" for
    192.0.2.0/24), sender normalised and lowercase, recipient lowercase.
    Without sender: (None, N, counter, counter_field)."""
    cb = client.encode()
    c = hash64(cb, GREYLIST_SEED)
    counter = "%sg{%02x}%02x" % (prefix, c & 0xff, (c >> 24) & 0xff)
    name = greylist_name(client)
    if sender is None:
        return None, name, counter, b"a" + name
    t = hash64(cb + b"\0" + sender.encode() + b"\0" + recipient.encode(), GREYLIST_SEED)
    bucket = "%sg{%02x}%02x" % (prefix, c & 0xff, (t >> 8) & 0xff)
    field = name + ((t >> 32) & 0xffffffff).to_bytes(4, "big")
    return bucket, field, counter, b"a" + name


def greylist_entries(r, prefix="t:"):
    """Every greylist entry in Redis: {(bucket, field): value}; client
    counters' fields start with "a"."""
    out = {}
    for k in r.keys(prefix + "g{*"):
        k = k.decode() if isinstance(k, bytes) else k
        v = r.cmd("HGETALL", k, raw=True)
        for i in range(0, len(v), 2):
            out[(k, v[i])] = int(v[i + 1])
    return out


def greylist_triplets(r, prefix="t:"):
    return {k: v for k, v in greylist_entries(r, prefix).items() if k[1][:1] != b"a"}
