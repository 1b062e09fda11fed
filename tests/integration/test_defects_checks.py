"""Issue 10, the checks: long values against deny lists, ratelimit rule
names, access map actions validated at load, greylist time from Redis,
permanent refusals for what can never fit, unforgeable ratelimit keys,
long configuration paths. Real redis-server and policyd."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Redis, Policyd, req, check, eq, mktemp, run_checked  # noqa: E402

OK_RULE = '{ name = "rest"; action = "OK"; match = { protocol_state = [ "MAIL", "RCPT", "END-OF-MESSAGE" ]; }; }'


def rules(*groups):
    return "rules = (\n  %s\n);\n" % ",\n  ".join(groups + (OK_RULE,))


def config_test(p):
    """policyd -t on the instance's configuration: (exit status, output)."""
    return p.check_config()


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


# ------------------------------------------- item 2: ratelimit names --

def test_unnamed_ratelimit_rule_is_a_load_error():
    rl = ('{ check = "ratelimit"; key = "sasl_username"; '
          'windows = ( { limit = 10; seconds = 3600; } ); }')
    with Redis() as r:
        p = Policyd(redis=r, rules=rules(rl))
        out = expect_config_error(p, "a ratelimit rule needs a name", "unnamed ratelimit rule")
        check(p.conf + ":" in out, "the error carries file:line: %s" % out)
        shutil.rmtree(p.dir, ignore_errors=True)


def test_two_ratelimit_rules_never_share_a_counter():
    """A messages rule and a recipients rule on the same key: separate budgets."""
    two = ('{ name = "rcpts"; check = "ratelimit"; key = "sasl_username"; '
           '  windows = ( { limit = 2; seconds = 3600; } ); }, '
           '{ name = "msgs"; check = "ratelimit"; key = "sasl_username"; count = "messages"; '
           '  match = { protocol_state = "END-OF-MESSAGE"; }; '
           '  windows = ( { limit = 2; seconds = 3600; } ); }')
    a = dict(sasl_username="alice@example.net", sasl_method="PLAIN")
    with Redis() as r, Policyd(redis=r, rules=rules(two)) as p:
        with p.client() as c:
            for i in range(2):
                eq(c.ask(req(**a)), "OK", "recipient %d" % (i + 1))
            for i in range(2):
                eq(c.ask(req(protocol_state="END-OF-MESSAGE", recipient="", size="100",
                             recipient_count="1", **a)), "OK", "message %d" % (i + 1))
            check(c.ask(req(**a)).startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded"),
                  "the third recipient is over the recipients limit")
        check(len(r.keys("t:r{*")) == 2, "two counters: %r" % r.keys("t:r{*"))


# --------------------------------------- item 3: access map actions --

def test_access_map_action_typo_is_a_load_error():
    rl = '{ name = "sa"; check = "access"; key = "sender"; map = "sender_access"; }'
    bad = "good@example.com REJECT fine\nbad@example.com REJCT typo\n"
    with Redis() as r:
        p = Policyd(redis=r, rules=rules(rl), files={"sender_access": bad})
        out = expect_config_error(p, 'sender_access:2: key "bad@example.com": not an access(5) action',
                                  "REJCT in an access map")
        shutil.rmtree(p.dir, ignore_errors=True)
        cidr = "192.0.2.0/24 OK\n198.51.100.0/24 450x\n"
        rl2 = '{ name = "ca"; check = "access"; key = "client_address"; map = "client_access"; }'
        p = Policyd(redis=r, rules=rules(rl2), files={"client_access": cidr})
        expect_config_error(p, "client_access:2:", "a bad action in a CIDR access map")
        shutil.rmtree(p.dir, ignore_errors=True)


def test_access_map_action_typo_refused_at_reload():
    rl = '{ name = "sa"; check = "access"; key = "sender"; map = "sender_access"; }'
    with Redis() as r, Policyd(redis=r, rules=rules(rl),
                               files={"sender_access": "bad@example.com REJECT no\n"}) as p:
        with p.client() as c:
            eq(c.ask(req(sender="bad@example.com")), "REJECT no", "before")
        with open(os.path.join(p.dir, "sender_access"), "w") as f:
            f.write("bad@example.com REJCT no\n")
        out = p.reload(rules(rl))
        check("reload failed" in out and "sender_access:1:" in out, out)
        with p.client() as c:
            eq(c.ask(req(sender="bad@example.com")), "REJECT no", "the old map still answers")


# --------------------------------------- item 6: greylist and clocks --

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def start_faked(p, offset):
    """Start p with its clock shifted by offset (libfaketime)."""
    if not os.path.exists(FAKETIME_LIB):
        subprocess.run(["sh", os.path.join(os.path.dirname(__file__), "..", "install-deps.sh"),
                        "faketime"], check=False, timeout=300)
    check(os.path.exists(FAKETIME_LIB), "libfaketime is installed")
    saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "FAKETIME", "ASAN_OPTIONS")}
    os.environ["LD_PRELOAD"] = FAKETIME_LIB
    os.environ["FAKETIME"] = offset
    os.environ["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS") or
                                  "detect_leaks=1:exitcode=23") + ":verify_asan_link_order=0"
    try:
        p.logf = None
        p.start()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return p


def test_greylist_time_comes_from_redis():
    """Two instances, one 10 minutes ahead (libfaketime): the delay holds
    either way. Time passes in Redis (the stored times are moved back), so
    no margin depends on the machine's speed."""
    # local_cache = 0: the instances' memory of a waiting triplet would
    # not see the ageing in Redis
    grey = ('{ name = "grey"; check = "greylist"; delay = 60; retry_window = 3600; '
            'local_cache = 0; }')
    with Redis() as r, Policyd(redis=r, rules="rules = ( %s );" % grey) as a:
        b = Policyd(redis=r, rules="rules = ( %s );" % grey)
        try:
            start_faked(b, "+10m")
            t1 = dict(sender="one@sender.test", recipient="x@example.net")
            t2 = dict(sender="two@sender.test", recipient="y@example.net")
            with a.client() as ca, b.client() as cb:
                check(cb.ask(req(**t1)).startswith("DEFER_IF_PERMIT"), "t1 first seen via the fast host")
                check(ca.ask(req(**t2)).startswith("DEFER_IF_PERMIT"), "t2 first seen via the right host")
                a1 = ca.ask(req(**t1))
                b2 = cb.ask(req(**t2))
                check(a1.startswith("DEFER_IF_PERMIT"), "t1 retried early via the right host: %s" % a1)
                check(b2.startswith("DEFER_IF_PERMIT"), "t2 retried early via the fast host: %s" % b2)
                check(r.age_greylist(61) >= 2, "two triplets aged past the delay")
                a1 = ca.ask(req(**t1))
                b2 = cb.ask(req(**t2))
                check(a1.startswith("PREPEND X-Greylist: delayed"),
                      "t1 passes after the delay via the right host: %s" % a1)
                check(b2.startswith("PREPEND X-Greylist: delayed"),
                      "t2 passes after the delay via the fast host: %s" % b2)
        finally:
            b.cleanup()


# ------------------------------ item 8: what can never fit is refused --

def eom(login, size, rcpts=1, **kw):
    return req(sasl_username=login, sasl_method="PLAIN", protocol_state="END-OF-MESSAGE",
               recipient="", size=str(size), recipient_count=str(rcpts), **kw)


def test_message_above_the_whole_limit_is_refused_permanently():
    rl = ('{ name = "bytes"; check = "ratelimit"; key = "sasl_username"; count = "bytes"; '
          '  match = { protocol_state = "END-OF-MESSAGE"; }; '
          '  windows = ( { limit = 1000; seconds = 3600; } ); }, '
          '{ name = "rcpts"; check = "ratelimit"; key = "sasl_username"; count = "messages"; '
          '  match = { protocol_state = "END-OF-MESSAGE"; }; oversize_action = "REJECT"; '
          '  windows = ( { limit = 5; seconds = 3600; } ); }')
    with Redis() as r, Policyd(redis=r, rules=rules(rl)) as p:
        with p.client() as c:
            a = c.ask(eom("big@example.net", 5000))
            check(a.startswith("552 5.3.4 Rate limit for big@example.net is 1000 bytes per hour: "
                               "this message alone exceeds it"), a)
            eq(c.ask(eom("big@example.net", 900)), "OK", "a message that fits still passes")
            a = c.ask(eom("big@example.net", 200))
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded"),
                  "over the limit for now: a deferral: %s" % a)


def test_oversize_action_is_checked():
    rl = ('{ name = "bytes"; check = "ratelimit"; key = "sasl_username"; count = "bytes"; '
          '  match = { protocol_state = "END-OF-MESSAGE"; }; oversize_action = "REJCT"; '
          '  windows = ( { limit = 1000; seconds = 3600; } ); }')
    with Redis() as r:
        p = Policyd(redis=r, rules=rules(rl))
        expect_config_error(p, "oversize_action", "a typo in oversize_action")
        shutil.rmtree(p.dir, ignore_errors=True)


# ------------------------------------- item 9: unforgeable ratelimit keys --

def test_ratelimit_key_parts_cannot_be_forged():
    """login "a|b" + recipient "c" must not be login "a" + recipient "b|c"."""
    rl = ('{ name = "pair"; check = "ratelimit"; key = [ "sasl_username", "recipient" ]; '
          '  windows = ( { limit = 1; seconds = 3600; } ); }')
    with Redis() as r, Policyd(redis=r, rules=rules(rl)) as p:
        with p.client() as c:
            victim = req(sasl_username="alice@x.test|bob@y.test", sasl_method="PLAIN",
                         recipient="carol@z.test")
            forger = req(sasl_username="alice@x.test", sasl_method="PLAIN",
                         recipient="bob@y.test|carol@z.test")
            eq(c.ask(victim), "OK", "the victim's first recipient")
            eq(c.ask(forger), "OK", "the forger has a counter of its own")
            check(c.ask(victim).startswith("DEFER_IF_PERMIT"), "the victim's own limit holds")
        secret = r.cmd("GET", "t:secret")
        check(isinstance(secret, (bytes, str)) and len(secret) == 32,
              "a 32-hex-digit secret is kept in Redis: %r" % (secret,))


def test_ratelimit_secret_is_shared_and_survives_restarts():
    rl = ('{ name = "one"; check = "ratelimit"; key = "sasl_username"; '
          '  windows = ( { limit = 2; seconds = 3600; } ); }')
    a = dict(sasl_username="alice@example.net", sasl_method="PLAIN")
    with Redis() as r:
        with Policyd(redis=r, rules=rules(rl)) as p1, Policyd(redis=r, rules=rules(rl)) as p2:
            with p1.client() as c1, p2.client() as c2:
                eq(c1.ask(req(**a)), "OK", "first via instance 1")
                eq(c2.ask(req(**a)), "OK", "second via instance 2")
        secret = r.cmd("GET", "t:secret")
        with Policyd(redis=r, rules=rules(rl)) as p3:
            with p3.client() as c3:
                check(c3.ask(req(**a)).startswith("DEFER_IF_PERMIT"),
                      "a restarted instance meets the same counter")
        eq(r.cmd("GET", "t:secret"), secret, "the secret is made once")
        eq(len(r.keys("t:r{*")), 1, "one counter for the login")


# ----------------------------------- item 11: long configuration paths --

def test_long_configuration_path_error_does_not_overflow():
    base = mktemp("policyd-longpath.")
    d = base
    for i in range(4):
        d = os.path.join(d, ("d%d" % i) * 75)
    os.makedirs(d)
    conf = os.path.join(d, "policyd.conf")
    check(len(conf) > 520, "the path is longer than 512 bytes")
    with open(conf, "w") as f:
        f.write('listen = [ "inet:127.0.0.1:1" ];\nredis = { address = "127.0.0.1:1"; };\n'
                'rules = ( { name = "r"; check = "ratelimit"; key = "sasl_username"; '
                'count = "bogus"; windows = ( { limit = 1; seconds = 60; } ); } );\n')
    bin_ = os.environ.get("POLICYD_BIN") or os.path.join(os.path.dirname(__file__), "..", "..", "build", "policyd")
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:exitcode=23")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=24")
    cp = run_checked([bin_, "-t", "-c", conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                     timeout=30, env=env)
    out = cp.stdout.decode("utf-8", "replace")
    shutil.rmtree(base, ignore_errors=True)
    check(cp.returncode == 1, "exit 1, not a crash or sanitizer exit (got %s): %s" % (cp.returncode, out[-400:]))
    check("Sanitizer" not in out and "runtime error" not in out, out[-600:])
