"""policyctl: check and explain against a real policyd, exit statuses, timeouts.

The binary is POLICYCTL_BIN, else the policyctl next to POLICYD_BIN (so the
sanitizer pass tests the sanitizer build), else build/policyctl.
"""
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import TOP, Redis, Policyd, check, eq, free_port, mktemp  # noqa: E402

GREYLIST_DEFER = "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 300 seconds"

RULES = """
rules = (
  { name = "block-spammer"; match = { sender = [ "@spam.test" ]; };
    action = "REJECT 5.7.1 spam.test is blocked here"; },
  { name = "authenticated"; match = { authenticated = true; }; action = "DUNNO"; },
  { name = "greylist"; match = { authenticated = false; }; check = "greylist"; }
);
"""

TRIPLET = ["client_address=192.0.2.1", "client_name=mx.sender.test",
           "sender=a@sender.test", "recipient=b@example.net"]


def policyctl_bin():
    b = os.environ.get("POLICYCTL_BIN")
    if b:
        return b
    d = os.environ.get("POLICYD_BIN")
    if d:
        b = os.path.join(os.path.dirname(d), "policyctl")
        if os.path.exists(b):
            return b
    return os.path.join(TOP, "build", "policyctl")


def ctl(*args, timeout=20):
    """Run policyctl; returns (exit status, stdout, stderr)."""
    b = policyctl_bin()
    check(os.access(b, os.X_OK), "policyctl not built: %s" % b)
    p = subprocess.run([b] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    check("Sanitizer" not in err and "runtime error" not in err, "sanitizer: %s" % err)
    return p.returncode, out, err


class FakeServer:
    """A loopback server that runs handler(conn) for each connection."""

    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.requests = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.sock.settimeout(0.1)
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns.append(c)
            try:
                self.handler(self, c)
            except OSError:
                pass

    def read_request(self, c):
        c.settimeout(5)
        buf = b""
        while b"\n\n" not in buf:
            d = c.recv(65536)
            if not d:
                break
            buf += d
        self.requests.append(buf)
        return buf

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join(5)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_check_prints_greylist_defer():
    with Redis() as r, Policyd(redis=r, rules=RULES) as p:
        rc, out, err = ctl("-s", "inet:127.0.0.1:%d" % p.port, "check", *TRIPLET)
        eq(rc, 0, "exit status (stderr %r)" % err)
        eq(out, GREYLIST_DEFER + "\n", "check output")
        eq(err, "", "stderr")
        # the same triplet again, HOST:PORT form and -p: still greylisted
        rc, out, _ = ctl("-s", "127.0.0.1:%d" % p.port, "check", *TRIPLET)
        eq(rc, 0, "exit status")
        check(out.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), out)
        rc, out, _ = ctl("-p", str(p.port), "check", "sender=x@spam.test",
                         "recipient=b@example.net", "client_address=192.0.2.1")
        eq((rc, out), (0, "REJECT 5.7.1 spam.test is blocked here\n"), "static rule")
        p.wait_log(r"rule=block-spammer action=REJECT")


def test_explain_prints_daemon_trace():
    with Redis() as r, Policyd(redis=r, rules=RULES) as p:
        addr = "inet:127.0.0.1:%d" % p.port
        rc, out, err = ctl("-s", addr, "explain", *TRIPLET)
        eq(rc, 0, "exit status (stderr %r)" % err)
        lines = out.splitlines()
        check(lines[0].startswith("rule block-spammer: skipped"), out)
        check("rule greylist: conditions matched" in lines, out)
        check(any(l.startswith("  check greylist:") for l in lines), out)
        check(not any(l.startswith("trace=") or l.startswith("action=") for l in lines), out)
        check(lines[-1].startswith("answer: " + GREYLIST_DEFER), out)
        eq(sum(l.startswith("answer: ") for l in lines), 1, "one answer line")

        rc, out, _ = ctl("-s", addr, "explain", "sasl_username=alice@example.net",
                         "sender=bob@example.net", "recipient=carol@example.org")
        eq(rc, 0, "exit status")
        lines = out.splitlines()
        check("rule authenticated: conditions matched" in lines, out)
        check(any(l.startswith("rule greylist: skipped") for l in lines), out)
        eq(lines[-1], "answer: DUNNO", "authenticated answer")

        rc, out, _ = ctl("-s", addr, "explain", "sender=x@spam.test", "recipient=b@example.net")
        lines = out.splitlines()
        check("rule block-spammer: conditions matched" in lines, out)
        check(lines[-1].startswith("answer: REJECT 5.7.1 spam.test is blocked here"), out)
        check(not any(l.startswith("rule greylist") for l in lines), "first final rule decides")


def test_protocol_state_override():
    with Redis() as r, Policyd(redis=r, rules=RULES) as p:
        rc, out, _ = ctl("-p", str(p.port), "explain", "protocol_state=END-OF-MESSAGE", *TRIPLET)
        eq(rc, 0, "exit status")
        check(any(l.startswith("rule greylist: skipped") for l in out.splitlines()), out)
        eq(out.splitlines()[-1], "answer: DUNNO", "END-OF-MESSAGE answer")


def test_request_on_the_wire():
    def answer(srv, c):
        srv.read_request(c)
        c.sendall(b"trace=step one\ntrace=step two\naction=OK fine\naction=REJECT second\n\n")
        c.close()

    with FakeServer(answer) as s:
        rc, out, err = ctl("-p", str(s.port), "check", "sender=a=b@example.com",
                           "protocol_state=DATA", "x_new_attr=1", "sender=c@example.com")
        eq((rc, out), (0, "OK fine\n"), "first action wins, traces ignored")
        check('warning: unknown attribute "x_new_attr"' in err, err)
        eq(s.requests[-1], b"request=smtpd_access_policy\nprotocol_state=DATA\n"
           b"sender=c@example.com\nx_new_attr=1\n\n", "request bytes")

        rc, out, err = ctl("-p", str(s.port), "explain", "sender=a=b@example.com")
        eq((rc, err), (0, ""), "explain status")
        eq(out, "step one\nstep two\nanswer: OK fine\n", "explain output")
        eq(s.requests[-1], b"request=smtpd_access_policy\nprotocol_state=RCPT\n"
           b"sender=a=b@example.com\npolicyd_explain=yes\n\n", "explain request bytes")


def test_connection_refused_exits_1():
    port = free_port()
    rc, out, err = ctl("-s", "inet:127.0.0.1:%d" % port, "check", "sender=a@example.com")
    eq(rc, 1, "exit status")
    eq(out, "", "stdout")
    check("cannot connect to inet:127.0.0.1:%d" % port in err and "refused" in err, err)
    rc, _, err = ctl("-s", "unix:/nonexistent/policyd.sock", "check", "sender=a@example.com")
    eq(rc, 1, "missing unix socket")
    check("No such file or directory" in err, err)


def test_usage_errors_exit_2():
    for args, want in [
            (["check", "sender"], "expected name=value"),
            (["check", "=value"], "empty attribute name"),
            (["check", "sender=a\nb"], "newline"),
            (["check"], "no attributes"),
            (["-t", "soon", "check", "sender=a"], "bad timeout"),
            (["-s", "::1:10040", "check", "sender=a"], "brackets"),
            (["-s", "nohost", "check", "sender=a"], "bad address"),
            (["frobnicate"], "unknown command"),
            ([], "usage:"),
            (["-Q"], "usage:"),
            (["check", "sender=" + "a" * 20000], "line too long")]:
        rc, out, err = ctl("-p", str(free_port()), *args)
        eq(rc, 2, "exit status of %r (stderr %r)" % (args[:3], err))
        check(want in err, "%r: stderr %r lacks %r" % (args[:3], err, want))
        eq(out, "", "stdout of %r" % (args[:3],))
    rc, out, _ = ctl("-h")
    check(rc == 0 and "explain" in out, out)
    rc, out, _ = ctl("-V")
    check(rc == 0 and out.startswith("policyctl "), out)


def test_unix_socket():
    d = mktemp("policyctl-sock.")
    path = os.path.join(d, "policyd.sock")
    try:
        with Redis() as r, Policyd(redis=r, rules=RULES,
                                   listen=["unix:" + path]) as p:
            p.wait_log("listening on unix:")
            for addr in ("unix:" + path, path):
                rc, out, err = ctl("-s", addr, "check", *TRIPLET)
                eq(rc, 0, "exit status via %s (stderr %r)" % (addr, err))
                check(out.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), out)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
        os.rmdir(d)


def test_timeout_silent_server():
    with FakeServer(lambda srv, c: None) as s:
        t0 = time.monotonic()
        rc, out, err = ctl("-s", "127.0.0.1:%d" % s.port, "-t", "500", "check",
                           "sender=a@example.com")
        took = time.monotonic() - t0
        eq(rc, 1, "exit status")
        check("no reply from 127.0.0.1:%d within 500 ms" % s.port in err, err)
        check(0.45 <= took < 3.0, "took %.2fs for a 500 ms timeout" % took)


def test_bad_replies_exit_1():
    def close_silently(srv, c):
        srv.read_request(c)
        c.close()

    def no_action(srv, c):
        srv.read_request(c)
        c.sendall(b"trace=x\n\n")
        c.close()

    def half_reply(srv, c):
        srv.read_request(c)
        c.sendall(b"action=DUNNO\n")
        c.close()

    def junk(srv, c):
        srv.read_request(c)
        c.sendall(b"hello world\n\n")
        c.close()

    for handler, want in [(close_silently, "without a reply"),
                          (no_action, "no action= line"),
                          (half_reply, "without a complete reply"),
                          (junk, "malformed reply")]:
        with FakeServer(handler) as s:
            rc, out, err = ctl("-p", str(s.port), "check", "sender=a@example.com")
            eq(rc, 1, "%s: exit status" % handler.__name__)
            check(want in err, "%s: %r" % (handler.__name__, err))
            eq(out, "", "%s: stdout" % handler.__name__)
