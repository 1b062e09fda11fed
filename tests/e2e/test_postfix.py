"""End-to-end: a real Postfix asks policyd; swaks sees the SMTP replies.

One redis-server, one policyd and one Postfix serve the whole module: they
start on first use and stop in the last test (and at exit, should the run
be cut short). policyd runs the sender_login and relocated checks and
greylists unauthenticated mail with a 2 s delay. Needs root, postfix and
swaks (postfix_harness.missing_prerequisites() says what is missing).
"""
import atexit
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import postfix_harness  # noqa: E402
from postfix_harness import Postfix  # noqa: E402
from harness import Redis, Policyd, check  # noqa: E402

RULES = """
rules = (
  { name = "sender-login"; match = { authenticated = true; };
    check = "sender_login"; map = "sender_login.map"; },
  { name = "relocated"; check = "relocated"; map = "relocated.map"; },
  { name = "authenticated"; match = { authenticated = true; }; action = "DUNNO"; },
  { name = "greylist"; match = { authenticated = false; }; check = "greylist";
    delay = 2; retry_window = 600; auto_whitelist = 0; }
);
"""

FILES = {
    "sender_login.map": "alice@example.net  alice@example.net\n"
                        "sales@example.net  alice@example.net\n"
                        "bob@example.net    bob@example.net\n",
    "relocated.map": "moved@example.net  new@example.org\n",
}

_env = {}


def _transcript(what, r):
    """Print the RCPT reply lines swaks saw (kept in the test output)."""
    for line in (r.rcpt_replies or ["(no RCPT reply)"]):
        for part in line.split("\n"):
            print("#   %-34s RCPT -> %s" % (what, part))
    if r.data_reply:
        print("#   %-34s DATA -> %s" % (what, r.data_reply.split("\n")[0]))
    sys.stdout.flush()


def _teardown():
    pf, p, r = _env.pop("postfix", None), _env.pop("policyd", None), _env.pop("redis", None)
    errors = []
    for name, obj in (("postfix", pf), ("policyd", p), ("redis", r)):
        if obj is None:
            continue
        try:
            obj.cleanup()
        except Exception as e:  # report after everything is stopped
            errors.append("%s: %s" % (name, e))
    return errors


def _instance():
    """The module's Postfix (and policyd), started on first use."""
    why = postfix_harness.missing_prerequisites()
    if why:
        raise Skip(why)  # noqa: F821 - the runner injects Skip
    if "error" in _env:
        raise RuntimeError("set-up failed earlier: %s" % _env["error"])
    if "postfix" not in _env:
        atexit.register(_teardown_at_exit)
        try:
            _env["redis"] = Redis().start()
            p = Policyd(redis=_env["redis"], rules=RULES, files=FILES)
            p.logf = None
            _env["policyd"] = p.start()
            pf = Postfix("inet:127.0.0.1:%d" % p.port)
            _env["postfix"] = pf
            pf.start()
        except Exception as e:
            _env["error"] = repr(e)
            _teardown()
            raise
    return _env["postfix"]


def test_authenticated_sender_not_owned_rejected():
    pf = _instance()
    r = pf.swaks("bob@example.net", "carol@example.org", auth_user="alice@example.net")
    _transcript("alice as bob@example.net", r)
    check(r.auth_reply.startswith("235"), "AUTH failed:\n" + r.transcript)
    check(r.rcpt_reply.startswith("554 5.7.1 <carol@example.org>: Recipient address "
                                  "rejected: Sender address rejected: not owned by user "
                                  "alice@example.net"), r.transcript)
    check(not r.accepted, r.transcript)


def test_authenticated_own_sender_accepted():
    pf = _instance()
    r = pf.swaks("alice@example.net", "carol@example.org", auth_user="alice@example.net")
    _transcript("alice as alice@example.net", r)
    check(r.rcpt_reply.startswith("250"), r.transcript)
    check(r.accepted and r.queue_id, r.transcript)
    r = pf.swaks("sales@example.net", "carol@example.org", auth_user="alice@example.net")
    _transcript("alice as sales@example.net", r)
    check(r.rcpt_reply.startswith("250") and r.accepted, r.transcript)


def test_relocated_recipient_551():
    pf = _instance()
    r = pf.swaks("carol@example.com", "moved@example.net")
    _transcript("mail to moved@example.net", r)
    check(r.rcpt_reply.startswith("551 5.1.6 <moved@example.net>: Recipient address "
                                  "rejected: User has moved; please try <new@example.org>"),
          r.transcript)
    check("new@example.org" in r.rcpt_reply and not r.accepted, r.transcript)


def test_unauthenticated_greylisted_then_passes():
    pf = _instance()
    rcpt = "erin.%d@example.net" % os.getpid()
    r = pf.swaks("carol@example.com", rcpt)
    _transcript("new triplet, first try", r)
    check(r.rcpt_reply.startswith("450 4.7.1 <%s>: Recipient address rejected: "
                                  "Greylisted, please try again in" % rcpt), r.transcript)
    check(not r.accepted, r.transcript)
    # a real MTA retries; the delay is 2 s: retry for at most 15 s
    deadline = time.monotonic() + 15
    time.sleep(2.0)
    while True:
        r = pf.swaks("carol@example.com", rcpt)
        if r.rcpt_reply.startswith("250") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    _transcript("same triplet, retry after 2 s", r)
    check(r.rcpt_reply.startswith("250") and r.accepted and r.queue_id, r.transcript)


def test_policyd_log_and_clean_shutdown():
    """Last test: the decisions are in policyd's log; everything stops."""
    try:
        pf = _instance()
        for line in (r"rule=sender-login action=REJECT 5\.7\.1", r"rule=relocated action=551 5\.1\.6",
                     r"rule=greylist action=DEFER_IF_PERMIT 4\.7\.1"):
            _env["policyd"].wait_log(line, 10)
        check("Sender address rejected: not owned by user alice@example.net"
              in pf.maillog(), pf.maillog_tail())
    finally:
        errors = _teardown()
    check(not errors, "; ".join(errors))


def teardown_module():
    """The runner calls this after the module's tests (also when -k left
    out the last one): what stops badly here is a failed test."""
    errors = _teardown()
    check(not errors, "teardown: " + "; ".join(errors))


def _teardown_at_exit():
    errors = _teardown()
    for e in errors:
        print("# test_postfix teardown at exit: %s" % e, flush=True)
    if errors:
        os._exit(1)
