"""Issue 10, the checks: long values against deny lists, ratelimit rule
names, access map actions validated at load, greylist time from Redis,
permanent refusals for what can never fit, unforgeable ratelimit keys,
long configuration paths. Real redis-server and policyd."""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Redis, Policyd, req, check, eq, mktemp  # noqa: E402

OK_RULE = '{ name = "rest"; action = "OK"; match = { protocol_state = [ "MAIL", "RCPT", "END-OF-MESSAGE" ]; }; }'


def rules(*groups):
    return "rules = (\n  %s\n);\n" % ",\n  ".join(groups + (OK_RULE,))


def config_test(p):
    """policyd -t on the instance's configuration: (exit status, output)."""
    cp = subprocess.run([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, timeout=30)
    return cp.returncode, cp.stdout.decode("utf-8", "replace")


def expect_config_error(p, pattern, what):
    rc, out = config_test(p)
    check(rc == 1, "%s: policyd -t exits 1 (got %s): %s" % (what, rc, out))
    check("Sanitizer" not in out and "runtime error" not in out, "%s: sanitizer: %s" % (what, out))
    check(pattern in out, "%s: %r not in %r" % (what, pattern, out))
    return out


# ------------------------------------------------ item 1: long values --

ACCESS_MAP = """# sender access
@spam.example       REJECT 5.7.1 spam domain
.bulk.example       REJECT 5.7.1 bulk parent
abuser@             REJECT 5.7.1 abuser anywhere
"""

GREY = ('{ name = "grey"; check = "greylist"; delay = 300; }')


def long_sender(n, domain):
    return "x" * n + "@" + domain


def test_long_local_part_meets_access_map():
    rl = ('{ name = "sender-access"; check = "access"; key = "sender"; map = "sender_access"; }')
    with Redis() as r, Policyd(redis=r, rules="rules = ( %s, %s );" % (rl, GREY),
                               files={"sender_access": ACCESS_MAP}) as p:
        with p.client() as c:
            for n in (10, 1030, 8000):
                eq(c.ask(req(sender=long_sender(n, "spam.example"))),
                   "REJECT 5.7.1 spam domain", "%d-byte local part @spam.example" % n)
                eq(c.ask(req(sender=long_sender(n, "Mx.Bulk.Example"))),
                   "REJECT 5.7.1 bulk parent", "%d-byte local part under .bulk.example" % n)
                check(c.ask(req(sender=long_sender(n, "ham.example"))).startswith(
                    "DEFER_IF_PERMIT"), "%d-byte local part elsewhere is greylisted" % n)
            eq(c.ask(req(sender="ABUSER@x.example")), "REJECT 5.7.1 abuser anywhere",
               "user@ entry")


def test_long_values_meet_conditions():
    deny = ('{ name = "deny-sender"; action = "REJECT 5.7.1 listed sender"; '
            'match = { sender = [ "@spam.example", ".bulk.example" ]; }; }, '
            '{ name = "deny-rcpt"; action = "REJECT 5.7.1 listed recipient"; '
            'match = { recipient = [ "@closed.example" ]; }; }, '
            '{ name = "deny-helo"; action = "REJECT 5.7.1 listed helo"; '
            'match = { helo_name = [ ".bad.example" ]; }; }, '
            '{ name = "deny-client"; action = "REJECT 5.7.1 listed client"; '
            'match = { client_name = [ ".dyn.example" ]; }; }')
    with Redis() as r, Policyd(redis=r, rules="rules = ( %s, %s );" % (deny, GREY)) as p:
        with p.client() as c:
            for n in (1030, 8000):
                eq(c.ask(req(sender=long_sender(n, "SPAM.example"))),
                   "REJECT 5.7.1 listed sender", "%d-byte sender condition" % n)
                eq(c.ask(req(sender=long_sender(n, "a.bulk.example"))),
                   "REJECT 5.7.1 listed sender", "%d-byte sender, parent entry" % n)
                eq(c.ask(req(recipient=long_sender(n, "closed.example"))),
                   "REJECT 5.7.1 listed recipient", "%d-byte recipient condition" % n)
                eq(c.ask(req(helo_name="h" * n + ".bad.example")),
                   "REJECT 5.7.1 listed helo", "%d-byte helo_name" % n)
                eq(c.ask(req(client_name="c" * n + ".dyn.example")),
                   "REJECT 5.7.1 listed client", "%d-byte client_name" % n)
                check(c.ask(req(sender=long_sender(n, "ham.example"))).startswith(
                    "DEFER_IF_PERMIT"), "%d-byte sender elsewhere is greylisted" % n)


RELOCATED_MAP = "@old.example  @new.example\n"


def test_long_recipient_is_relocated():
    rel = '{ name = "rel"; check = "relocated"; map = "relocated.map"; }'
    with Redis() as r, Policyd(redis=r, rules=rules(rel), files={"relocated.map": RELOCATED_MAP}) as p:
        with p.client() as c:
            for n in (1030, 8000):
                a = c.ask(req(recipient=long_sender(n, "old.example")))
                check(a.startswith("551 5.1.6 User has moved; please try <xxxx"),
                      "%d-byte local part @old.example: %s" % (n, a[:80]))
