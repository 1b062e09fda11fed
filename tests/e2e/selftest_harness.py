#!/usr/bin/env python3
"""Self-test of postfix_harness.py against a trivial Python policy server.

Prints TAP-style lines and "N passed, N failed"; exits non-zero on failure.
Prints "SKIP ..." and exits 0 when not root or Postfix/swaks are missing.
"""

import os
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import postfix_harness  # noqa: E402
from postfix_harness import Postfix, free_port, missing_prerequisites  # noqa: E402


class PolicyHandler(socketserver.StreamRequestHandler):
    """Reads name=value lines until an empty line; answers; repeats."""

    timeout = 600   # Postfix keeps idle policy connections open

    def handle(self):
        while True:
            attrs = {}
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                line = line.decode("utf-8", "replace").rstrip("\r\n")
                if line == "":
                    break
                name, _, value = line.partition("=")
                attrs[name] = value
            if not attrs:
                continue
            action = self.server.decide(attrs)
            with self.server.lock:
                self.server.requests.append((attrs, action))
            self.wfile.write(("action=%s\n\n" % action).encode())
            self.wfile.flush()


class PolicyServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port):
        self.lock = threading.Lock()
        self.requests = []
        super().__init__(("127.0.0.1", port), PolicyHandler)

    @staticmethod
    def decide(a):
        rcpt = a.get("recipient", "").lower()
        sender = a.get("sender", "").lower()
        login = a.get("sasl_username", "").lower()
        if a.get("protocol_state") == "END-OF-MESSAGE":
            if sender == "eom@example.com":
                return "REJECT 5.7.1 rejected at end of data"
            return "DUNNO"
        if rcpt == "hold@example.net":
            return "HOLD held by test"
        if rcpt == "moved@example.net":
            return "551 5.1.6 User has moved; please try <new@example.org>"
        if rcpt == "dave@example.net":
            return "DEFER_IF_PERMIT Greylisted"
        if login and sender.split("@")[0] != login.split("@")[0]:
            return "REJECT 5.7.1 not owned"
        return "DUNNO"


class UnixPolicyServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    decide = staticmethod(PolicyServer.decide)

    def __init__(self, path):
        self.lock = threading.Lock()
        self.requests = []
        super().__init__(path, PolicyHandler)
        os.chmod(path, 0o666)   # smtpd connects as user postfix


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=""):
        self.n += 1
        if cond:
            print("ok %d - %s" % (self.n, name))
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name))
            for l in str(diag).splitlines():
                print("#   " + l)
        sys.stdout.flush()
        return cond


def main():
    why = missing_prerequisites()
    if why:
        print("SKIP postfix e2e harness self-test: %s" % why)
        return 0

    t = Tap()
    port = free_port()
    server = PolicyServer(port)
    th = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                          daemon=True)
    th.start()
    pf = Postfix("inet:127.0.0.1:%d" % port)
    try:
        t0 = time.monotonic()
        pf.start()
        t.ok(True, "postfix started in %.1fs (smtp %d, submission %d, sink %d, dir %s)"
             % (time.monotonic() - t0, pf.smtp_port, pf.submission_port,
                pf.sink_port, pf.dir))

        r = pf.swaks("carol@example.com", "moved@example.net")
        t.ok(r.rcpt_reply.startswith("551 5.1.6 <moved@example.net>: Recipient address"
                                     " rejected: User has moved"),
             "moved@ gets 551 5.1.6", r.transcript)
        t.ok(not r.accepted, "moved@ message not accepted", r.transcript)

        r = pf.swaks("carol@example.com", "dave@example.net")
        t.ok(r.rcpt_reply.startswith("450 4.7.1 <dave@example.net>: Recipient address"
                                     " rejected: Greylisted"),
             "dave@ gets 450 4.7.1 Greylisted", r.transcript)

        r = pf.swaks("bob@example.net", "carol@example.org",
                     auth_user="alice@example.net")
        t.ok(r.auth_reply.startswith("235"), "alice authenticates (235)", r.transcript)
        t.ok(r.rcpt_reply.startswith("554 5.7.1 <carol@example.org>: Recipient address"
                                     " rejected: not owned"),
             "alice sending as bob@ gets 554 5.7.1", r.transcript)

        r = pf.swaks("alice@example.net", "carol@example.org",
                     auth_user="alice@example.net")
        t.ok(r.rcpt_reply.startswith("250"), "alice as alice: RCPT 250", r.transcript)
        t.ok(r.accepted and r.queue_id, "alice as alice: accepted after DATA (%s)"
             % r.queue_id, r.transcript)

        r = pf.swaks("alice@example.net", "carol@example.org",
                     auth_user="alice@example.net", password="wrong")
        t.ok(r.auth_reply.startswith("535") and not r.rcpt_replies,
             "wrong password gets 535, no RCPT", r.transcript)

        r = pf.swaks("carol@example.com", "someone@example.com")
        t.ok(r.rcpt_reply.startswith("554 5.7.1") and "Relay access denied" in r.rcpt_reply,
             "unauthenticated relay to example.com denied by relay restrictions",
             r.transcript)

        r = pf.swaks("carol@example.com", ["moved@example.net", "erin@example.net"])
        t.ok(len(r.rcpt_replies) == 2 and r.rcpt_replies[0].startswith("551")
             and r.rcpt_replies[1].startswith("250") and r.accepted,
             "two recipients: one reply per RCPT, message accepted", r.transcript)

        with server.lock:
            reqs = list(server.requests)
        users = {a.get("sasl_username") for a, _ in reqs}
        t.ok("alice@example.net" in users,
             "policy server saw sasl_username=alice@example.net", repr(users))
        t.ok(any(a.get("recipient") == "dave@example.net" and a.get("sasl_username") == ""
                 and a.get("protocol_state") == "RCPT" for a, _ in reqs),
             "policy server saw unauthenticated RCPT for dave@", repr(reqs[:3]))

        try:
            msgs = pf.wait_sink_messages(2, timeout=30)
            ok = any("carol@example.org" in m for m in msgs)
            t.ok(ok, "smtp-sink received the relayed messages (%d)" % len(msgs),
                 "\n---\n".join(msgs))
        except postfix_harness.PostfixError as e:
            t.ok(False, "smtp-sink received the relayed messages", e)
        c = pf.sink_counts()
        t.ok(c.get("mesg", 0) >= 2, "smtp-sink -c counter mesg=%s" % c.get("mesg"), repr(c))

        r = pf.swaks("carol@example.com", "hold@example.net")
        t.ok(r.accepted and r.queue_id, "HOLD answer: message accepted", r.transcript)
        q = pf.queue_json()
        held = [e for e in q if e.get("queue_id") == r.queue_id]
        t.ok(len(held) == 1 and held[0].get("queue_name") == "hold"
             and held[0]["recipients"][0]["address"] == "hold@example.net",
             "queue_json finds it in the hold queue", repr(q))
        t.ok(pf.queue_ids("hold") == [r.queue_id], "queue_ids('hold')", repr(q))

        log = pf.maillog()
        t.ok("Recipient address rejected: Greylisted" in log,
             "maillog has the reject lines", pf.maillog_tail())

        t0 = time.monotonic()
        sid = pf._master_sid
        pf.stop()
        left = postfix_harness._session_pids(sid) if sid else []
        t.ok(sid and not left, "postfix stopped in %.1fs, no process of session %s left"
             % (time.monotonic() - t0, sid), repr(left))
    except Exception as e:  # report, then clean up
        import traceback
        t.ok(False, "harness raised %s" % type(e).__name__, traceback.format_exc())
    finally:
        d = pf.dir
        pf.cleanup()
        server.shutdown()
        server.server_close()
    t.ok(not os.path.exists(d), "instance directory removed")
    server.requests.clear()

    # Second instance: unix: endpoint, end-of-data policy, fixed ports.
    import tempfile
    sockdir = tempfile.mkdtemp(prefix="policy-sock-")
    os.chmod(sockdir, 0o755)
    path = os.path.join(sockdir, "policy.sock")
    userver = UnixPolicyServer(path)
    threading.Thread(target=userver.serve_forever, kwargs={"poll_interval": 0.1},
                     daemon=True).start()
    smtp_port, sub_port = postfix_harness.free_ports(2)
    try:
        with Postfix("unix:" + path, smtp_port=smtp_port, submission_port=sub_port,
                     end_of_data_policy=True, users={"carol": "pw"}) as pf2:
            t.ok(pf2.smtp_port == smtp_port, "given smtp_port used")
            r = pf2.swaks("eom@example.com", "erin@example.net")
            t.ok(r.rcpt_reply.startswith("250") and not r.accepted
                 and r.data_reply.startswith("554 5.7.1")
                 and "rejected at end of data" in r.data_reply,
                 "unix: endpoint; end-of-data REJECT seen in data_reply", r.transcript)
            r = pf2.swaks("carol@example.net", "erin@example.net",
                          auth_user="carol@example.net", password="pw",
                          auth_mech="LOGIN")
            t.ok(r.auth_reply.startswith("235") and r.accepted,
                 "AUTH LOGIN with custom user; accepted", r.transcript)
            with userver.lock:
                states = [a.get("protocol_state") for a, _ in userver.requests]
                methods = {a.get("sasl_method") for a, _ in userver.requests}
            t.ok("END-OF-MESSAGE" in states and "RCPT" in states,
                 "policy saw RCPT and END-OF-MESSAGE requests", repr(states))
            t.ok("LOGIN" in methods, "policy saw sasl_method=LOGIN", repr(methods))
            sid = pf2._master_sid
            t0 = time.monotonic()
            pf2.stop(fast=True)
            left = postfix_harness._session_pids(sid)
            t.ok(not left and not postfix_harness._listening(smtp_port),
                 "fast stop in %.2fs, nothing left, port closed"
                 % (time.monotonic() - t0), repr(left))
    except Exception:
        import traceback
        t.ok(False, "second instance raised", traceback.format_exc())
    finally:
        userver.shutdown()
        userver.server_close()
        import shutil
        shutil.rmtree(sockdir, ignore_errors=True)

    # A broken configuration must raise with a hint, and leave nothing running.
    bad = Postfix("inet:127.0.0.1:%d" % port,
                  extra_main_cf={"maillog_file_prefixes": "/var"})
    try:
        bad.start()
        t.ok(False, "maillog_file outside maillog_file_prefixes raises")
    except postfix_harness.PostfixError as e:
        t.ok("maillog_file_prefixes" in str(e),
             "maillog_file outside maillog_file_prefixes raises PostfixError", e)
    finally:
        bad.cleanup()
    t.ok(bad._sink is None and not os.path.exists(bad.dir),
         "failed start: sink stopped, directory removed")

    print("%d passed, %d failed" % (t.n - t.failed, t.failed))
    return 1 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
