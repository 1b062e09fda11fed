"""Logging as shipped (issue 11): decision lines batched per event-loop turn
on stderr, syslog over policyd's own non-blocking datagram socket with
syslog(3)'s framing, and a sink that cannot keep up: lines dropped and
counted, requests never stalled. Real redis-server and policyd."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (Redis, Policyd, req, check, eq, free_port, wait_for,  # noqa: E402
                     run_checked, TestFailure)

RULES = 'rules = ( { name = "all"; action = "DUNNO"; } );'


def test_decision_lines_in_order_on_stderr():
    """500 pipelined requests: 500 decision lines, in request order."""
    with Redis() as r, Policyd(redis=r, rules=RULES) as p:
        with p.client() as c:
            batch = b"".join(
                ("request=smtpd_access_policy\nprotocol_state=RCPT\nqueue_id=Q%04d\n"
                 "client_address=192.0.2.1\nrecipient=r@example.net\nsender=s@example.org\n\n"
                 % i).encode() for i in range(500))
            c.send_raw(batch)
            for i in range(500):
                eq(c.reply(), "DUNNO", "reply %d" % i)
        wait_for(lambda: len(re.findall(r"Q\d{4}: rule=", p.log())) >= 500, 10,
                 what="500 decision lines")
        ids = re.findall(r"(Q\d{4}): rule=", p.log())
        eq(ids, ["Q%04d" % i for i in range(500)], "one line per decision, in order")


class Daemon:
    """policyd without -f (syslog), its log socket bound by the test."""

    def __init__(self, redis, sink_path, extra=""):
        self.p = Policyd(redis=redis, rules=RULES)
        self.p.logf = None
        self.metrics_port = free_port()
        self.pidfile = os.path.join(self.p.dir, "policyd.pid")
        self.p.write_config(RULES, 'pidfile = "%s";\nmetrics = { address = "127.0.0.1:%d"; };\n%s'
                            % (self.pidfile, self.metrics_port, extra))
        self.sink_path = sink_path
        self.pid = None

    def start(self):
        env = dict(os.environ, POLICYD_LOG_SOCKET=self.sink_path)
        # a daemon's stderr is /dev/null: sanitizer reports go to files
        env["ASAN_OPTIONS"] = "detect_leaks=1:exitcode=23:log_path=%s/asan" % self.p.dir
        env["UBSAN_OPTIONS"] = ("print_stacktrace=1:halt_on_error=1:exitcode=24:"
                                "log_path=%s/ubsan" % self.p.dir)
        cp = run_checked([self.p.bin, "-c", self.p.conf], env=env, timeout=30,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        check(cp.returncode == 0, "daemon start: %s %s" % (cp.returncode, cp.stdout))
        wait_for(lambda: os.path.exists(self.pidfile) and open(self.pidfile).read().strip(), 10,
                 what="pidfile")
        self.pid = int(open(self.pidfile).read().strip())
        return self

    def metric(self, name):
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                      timeout=5).read().decode()
        m = re.search(r"^%s (\d+)" % name, body, re.M)
        return int(m.group(1)) if m else None

    def stop(self):
        if self.pid:
            os.kill(self.pid, signal.SIGTERM)
            wait_for(lambda: not os.path.exists("/proc/%d" % self.pid) or
                     open("/proc/%d/stat" % self.pid).read().split()[2] == "Z", 15,
                     what="policyd to exit")
            self.pid = None
        reports = [f for f in os.listdir(self.p.dir) if f.startswith(("asan", "ubsan"))]
        if reports:
            raise TestFailure("sanitizer report of the daemon: %s" % "".join(
                open(os.path.join(self.p.dir, f)).read()[-2000:] for f in reports))


def sink(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    return s


def read_all(s, timeout=0.5):
    out = []
    s.settimeout(timeout)
    try:
        while True:
            out.append(s.recv(65536).decode("utf-8", "replace"))
    except socket.timeout:
        pass
    return out


def test_syslog_datagrams_with_syslog_framing():
    with Redis() as r:
        d = Daemon(r, None)
        path = os.path.join(d.p.dir, "log.sock")
        d.sink_path = path
        s = sink(path)
        try:
            d.start()
            with d.p.client() as c:
                for i in range(20):
                    eq(c.ask(req(queue_id="S%02d" % i)), "DUNNO", "request %d" % i)
            msgs = []
            wait_for(lambda: msgs.extend(read_all(s, 0.2)) or
                     sum("action=DUNNO" in m for m in msgs) >= 20, 10, what="20 decision datagrams")
            dec = [m for m in msgs if "action=DUNNO" in m]
            # <PRI> = mail (2) * 8 + info (6) = 22; "Mmm dd hh:mm:ss policyd[PID]: "
            for m in dec:
                check(re.match(r"<22>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d policyd\[%d\]: S\d\d: rule=- action=DUNNO "
                               % d.pid, m), "syslog framing: %r" % m)
                check("\n" not in m.rstrip("\n"), "one line per datagram")
            started = [m for m in msgs if "started:" in m]
            check(started and started[0].startswith("<22>"), "the start line went to syslog too")
        finally:
            d.stop()
            s.close()
            d.p.cleanup(check_exit=False)


def test_full_sink_drops_and_counts_never_stalls():
    """A syslog reader that stops reading: requests are still answered at
    once, lines beyond the batch are dropped and counted, and once the
    reader drains, a warning says how many were lost."""
    with Redis() as r:
        d = Daemon(r, None)
        path = os.path.join(d.p.dir, "log.sock")
        d.sink_path = path
        s = sink(path)
        try:
            d.start()
            slowest = 0
            with d.p.client() as c:
                for i in range(3000):
                    t = time.monotonic()
                    eq(c.ask(req(queue_id="F%04d" % i)), "DUNNO", "request %d" % i)
                    slowest = max(slowest, time.monotonic() - t)
            print("#   3000 requests with a sink that does not read; slowest answer %.1f ms"
                  % (slowest * 1000))
            check(slowest < 1.0, "no request waited for the log sink: slowest %.3f s" % slowest)
            dropped = d.metric("policyd_log_dropped_total")
            check(dropped is not None and dropped > 0, "dropped lines are counted: %r" % dropped)
            msgs = []
            wait_for(lambda: msgs.extend(read_all(s, 0.2)) or
                     any("lines dropped" in m or "line dropped" in m for m in msgs), 10,
                     what="the dropped-lines warning")
            w = [m for m in msgs if "dropped" in m][0]
            n = int(re.search(r"log: (\d+) lines? dropped", w).group(1))
            print("#   %d lines dropped, %d datagrams delivered; %s" % (dropped, len(msgs), w.strip()))
            check(n > 0 and n <= dropped, "the warning gives the count: %s" % w)
            with d.p.client() as c:
                eq(c.ask(req(queue_id="AFTER")), "DUNNO", "still answering")
            wait_for(lambda: msgs.extend(read_all(s, 0.2)) or any("AFTER" in m for m in msgs), 10,
                     what="logging again once the sink drains")
        finally:
            d.stop()
            s.close()
            d.p.cleanup(check_exit=False)
