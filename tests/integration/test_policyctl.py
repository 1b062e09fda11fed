"""policyctl against a real redis-server and policyd: check and explain (exit
statuses, timeouts), ratelimit show/reset, greylist list/delete, stats.

The binary is POLICYCTL_BIN, else the policyctl next to POLICYD_BIN (so the
sanitizer pass tests the sanitizer build), else build/policyctl.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (TOP, Redis, Policyd, check, eq, free_port, mktemp, req,  # noqa: E402
                     greylist_entries, greylist_key, run_checked)

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
    p = run_checked([b] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                    timeout=timeout)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    return p.returncode, out, err


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


def test_request_reaches_policyd():
    """what policyctl sends is what policyd decides on: a value holding
    '=', a name given twice (its last value), and an attribute policyd does not know (sent, with a warning). The exact
    bytes are ctl_test's (tests/unit/ctl_test.c)."""
    with Redis() as r, Policyd(redis=r, rules=RULES) as p:
        rc, out, err = ctl("-p", str(p.port), "check", "sender=a@example.com",
                           "x_new_attr=1", "client_address=192.0.2.1",
                           "recipient=b@example.net", "sender=x=y@spam.test")
        eq((rc, out), (0, "REJECT 5.7.1 spam.test is blocked here\n"), "the last sender decides")
        check('warning: unknown attribute "x_new_attr"' in err, err)
        line = p.wait_log(r"rule=block-spammer action=REJECT .*").group(0)
        check("sender=<x=y@spam.test>" in line and "state=RCPT" in line, line)

        rc, out, err = ctl("-p", str(p.port), "explain", "sender=x=y@spam.test")
        eq((rc, err), (0, ""), "explain status")
        lines = out.splitlines()
        check("rule block-spammer: conditions matched" in lines, out)
        eq(lines[-1].split(" from rule")[0], "answer: REJECT 5.7.1 spam.test is blocked here",
           "one answer line, last")


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


def test_timeout_silent_policyd():
    """policyd waits on a hung Redis (its own timeout far away): policyctl
    gives up after its -t and says so"""
    with Redis() as r, Policyd(redis=r, rules=RULES, timeout_ms=60000) as p:
        r.pause()
        try:
            t0 = time.monotonic()
            rc, out, err = ctl("-s", "127.0.0.1:%d" % p.port, "-t", "500", "check", *TRIPLET)
            took = time.monotonic() - t0
        finally:
            r.resume()
        eq((rc, out), (1, ""), "exit status and stdout (stderr %r)" % err)
        check("no reply from 127.0.0.1:%d within 500 ms" % p.port in err, err)
        # the lower bound is exact; the upper one only says "not the 20 s
        # limit of ctl()": a loaded machine under ASan starts slowly
        check(0.45 <= took < 10.0, "took %.2fs for a 500 ms timeout" % took)
        # policyd answers once Redis is back: nothing was lost on its side
        rc, out, _ = ctl("-p", str(p.port), "check", *TRIPLET)
        eq(rc, 0, "exit status after Redis came back")
        check(out.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), out)


def test_closed_without_reply_exits_1():
    """policyd closes the connection on a request it finds malformed (here:
    a line over its limits.max_line that policyctl's default limits let
    through): exit 1 and a message that says where to look. Replies that
    are cut, hold no action= or are not the protocol are ctl_test's."""
    with Redis() as r, Policyd(redis=r, rules=RULES,
                               extra="limits = { max_line = 512; };") as p:
        rc, out, err = ctl("-p", str(p.port), "check", "sender=%s@example.com" % ("a" * 1000))
        eq((rc, out), (1, ""), "exit status and stdout")
        check("closed the connection without a reply" in err and "see its log" in err, err)
        p.wait_log(r"malformed request \(line too long\)")
        # and policyd serves the next one
        rc, out, _ = ctl("-p", str(p.port), "check", "sender=x@spam.test")
        eq((rc, out), (0, "REJECT 5.7.1 spam.test is blocked here\n"), "next request")


# ------------------------------------------------ Redis and metrics commands

RL_RULES = """
rules = (
  { name = "user-rate"; match = { authenticated = true; }; check = "ratelimit";
    key = "sasl_username"; windows = ( { limit = 3; seconds = 3600; },
                                       { limit = 100; seconds = 60; } );
    overrides = "rl.overrides"; },
  { name = "pair"; match = { authenticated = false; }; check = "ratelimit";
    key = [ "client_network", "sender_domain" ]; windows = { limit = 2; seconds = 600; }; }
);
"""

RL_OVERRIDES = "bulk@example.net  5/3600, 100/60\n@example.org  unlimited\n"


def login_req(login, **kw):
    a = dict(sasl_username=login, sasl_method="PLAIN", sender=login)
    a.update(kw)
    return req(**a)


def window_lines(out):
    return [l for l in out.splitlines() if " per " in l and "used" in l]


def test_ratelimit_show_and_reset():
    with Redis() as r, Policyd(redis=r, rules=RL_RULES,
                               files={"rl.overrides": RL_OVERRIDES}) as p:
        c = p.client()
        rc, out, err = ctl("-c", p.conf, "ratelimit", "show", "user-rate", "alice@example.net")
        eq((rc, err), (0, ""), "show of an unused key")
        check(all("used 0," in l for l in window_lines(out)), out)
        for _ in range(3):
            eq(c.ask(login_req("alice@example.net")), "DUNNO", "within the limit")
        check(c.ask(login_req("alice@example.net")).startswith("DEFER_IF_PERMIT 4.7.1 Rate limit"),
              "the 4th is over 3 per hour")
        rc, out, err = ctl("-c", p.conf, "ratelimit", "show", "user-rate", "alice@example.net")
        eq((rc, err), (0, ""), "show")
        w = window_lines(out)
        eq(len(w), 2, "two windows: %r" % out)
        check(w[0].startswith("  3 recipients per hour (3600 s): used 3, 0 left, all free again in "),
              w[0])
        check(w[1].startswith("  100 recipients per minute (60 s): used 3, 97 left"), w[1])
        check("windows: rule default" in out, out)
        check("t:r{" in out, "the Redis key is shown: %r" % out)
        # another key of the same rule is untouched
        rc, out, _ = ctl("-c", p.conf, "ratelimit", "show", "user-rate", "bob@example.net")
        check(all("used 0," in l for l in window_lines(out)), out)

        rc, out, err = ctl("-c", p.conf, "ratelimit", "reset", "user-rate", "alice@example.net")
        eq((rc, err), (0, ""), "reset")
        check("used 3, 0 left" in out, "reset prints what it removes: %r" % out)
        check("reset: removed 1 key" in out, out)
        rc, out, _ = ctl("-c", p.conf, "ratelimit", "show", "user-rate", "alice@example.net")
        check(all("used 0," in l for l in window_lines(out)) and len(window_lines(out)) == 2, out)
        eq(c.ask(login_req("alice@example.net")), "DUNNO", "accepted again after reset")
        rc, out, _ = ctl("-c", p.conf, "ratelimit", "reset", "user-rate", "nobody@example.net")
        check(rc == 0 and "nothing was stored" in out, out)
        eq(r.keys("t:r{*").__len__(), 1, "only alice's counter is left")


def test_ratelimit_overrides_and_combined_keys():
    with Redis() as r, Policyd(redis=r, rules=RL_RULES,
                               files={"rl.overrides": RL_OVERRIDES}) as p:
        c = p.client()
        for _ in range(2):
            eq(c.ask(login_req("bulk@example.net")), "DUNNO", "bulk")
        rc, out, _ = ctl("-c", p.conf, "ratelimit", "show", "user-rate", "bulk@example.net")
        check("override bulk@example.net" in out, out)
        check(window_lines(out)[0].startswith("  5 recipients per hour (3600 s): used 2, 3 left"),
              out)
        rc, out, _ = ctl("-c", p.conf, "ratelimit", "show", "user-rate", "x@example.org")
        check(rc == 0 and "unlimited (override @example.org" in out, out)
        # a combined key: the parts in the rule's order, joined with "|"
        for _ in range(2):
            eq(c.ask(req(client_address="192.0.2.77", sender="Ann+tag@Sender.TEST")), "DUNNO",
               "pair")
        check(c.ask(req(client_address="192.0.2.78", sender="b@sender.test"))
              .startswith("DEFER_IF_PERMIT"), "3rd of the pair")
        rc, out, err = ctl("-c", p.conf, "ratelimit", "show", "pair", "192.0.2.0/24|sender.test")
        eq((rc, err), (0, ""), "combined show")
        check(window_lines(out)[0].startswith("  2 recipients per 10 minutes (600 s): used 2, 0 left"),
              out)
        rc, out, err = ctl("-c", p.conf, "ratelimit", "show", "pair", "192.0.2.0/24|Sender.test")
        check("lowercases" in err, "a key with capitals is flagged: %r" % err)


ERR_RULES = RL_RULES.replace(
    "\n);", ',\n  { name = "greylist"; match = { authenticated = false; }; check = "greylist"; }\n);')


def test_ratelimit_errors():
    with Redis() as r, Policyd(redis=r, rules=ERR_RULES,
                               files={"rl.overrides": RL_OVERRIDES}) as p:
        for args, status, want in [
                (["ratelimit", "show", "nosuch", "a"], 2, 'no rule named "nosuch"'),
                (["ratelimit", "show", "user-rate"], 2, "usage:"),
                (["ratelimit", "frob", "user-rate", "a"], 2, "usage:"),
                (["ratelimit", "show", "user-rate", ""], 2, "KEY"),
                (["-r", "user-rate", "greylist", "list"], 2, "not a greylist rule"),
                (["greylist", "delete", "not-an-ip"], 2, "expected a client IP address"),
                (["greylist", "delete", "192.0.2.0/16"], 2, "/24 networks"),
                (["greylist", "list", "a", "b"], 2, "usage:"),
                (["stats", "extra"], 2, "usage:")]:
            rc, out, err = ctl("-c", p.conf, *args)
            eq(rc, status, "exit status of %r (stderr %r)" % (args, err))
            check(want in err, "%r: stderr %r lacks %r" % (args, err, want))
            eq(out, "", "stdout of %r" % (args,))
        r.stop()
        rc, out, err = ctl("-c", p.conf, "-t", "1000", "ratelimit", "show", "user-rate", "a@b")
        eq(rc, 1, "redis down")
        check("cannot connect to redis at %s" % r.address in err, err)
    # the greylist commands need a greylist rule (policyd need not run)
    d = mktemp("policyctl-conf.")
    try:
        conf = os.path.join(d, "policyd.conf")
        with open(conf, "w") as f:
            f.write('redis = { address = "127.0.0.1:1"; };\n' + RULES.replace(
                'check = "greylist";', 'action = "DUNNO";'))
        rc, _, err = ctl("-c", conf, "greylist", "list")
        eq(rc, 2, "no greylist rule")
        check("no greylist rule" in err, err)
        with open(conf, "a") as f:
            f.write("bogus = 1;\n")
        rc, _, err = ctl("-c", conf, "greylist", "list")
        eq(rc, 1, "a configuration with errors")
        check('unknown setting "bogus"' in err and "cannot use this configuration" in err, err)
    finally:
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
        os.rmdir(d)
    rc, _, err = ctl("-c", "/nonexistent/policyd.conf", "ratelimit", "show", "a", "b")
    eq(rc, 1, "missing configuration")
    check("cannot read" in err, err)
    rc, _, err = ctl("-m", "127.0.0.1:%d" % free_port(), "stats")
    eq(rc, 1, "no metrics listener")
    check("cannot connect" in err, err)
    rc, _, err = ctl("-m", "nohostport", "stats")
    eq(rc, 2, "bad -m")
    check("bad metrics address" in err, err)




GL_RULES = """
rules = (
  { name = "greylist"; check = "greylist"; delay = 1; retry_window = 30;
    auto_whitelist = 5; local_cache = 10; }
);
"""


def greylist_req(client, sender="a@sender.test", rcpt="b@example.net"):
    return req(client_address=client, sender=sender, recipient=rcpt)


def test_greylist_list_and_delete():
    with Redis() as r, Policyd(redis=r, rules=GL_RULES) as p:
        c = p.client()
        rc, out, err = ctl("-c", p.conf, "greylist", "list")
        eq((rc, err), (0, ""), "empty list")
        check(out.startswith("0 triplets, 0 auto-whitelist counters"), out)
        for client, rcpt in [("192.0.2.1", "b@example.net"), ("192.0.2.200", "c@example.net"),
                             ("198.51.100.7", "b@example.net"), ("2001:db8::5", "b@example.net")]:
            check(c.ask(greylist_req(client, rcpt=rcpt)).startswith("DEFER_IF_PERMIT"), client)
        rc, out, err = ctl("-c", p.conf, "greylist", "list")
        eq((rc, err), (0, ""), "list")
        rows = [l.split() for l in out.splitlines()[1:] if l and l[0].isdigit() and "/" in l.split()[0]]
        eq(sorted(x[0] for x in rows),
           ["192.0.2.0/24", "192.0.2.0/24", "198.51.100.0/24", "2001:db8::/64"], "networks")
        check(all(x[4] == "waiting" for x in rows), out)
        check(all(0 < int(x[5]) <= 30 for x in rows), "TTL within retry_window: %r" % out)
        check("4 triplets" in out and "cannot be shown" in out, out)
        # an address selects its network, a glob the network text
        rc, out, _ = ctl("-c", p.conf, "greylist", "list", "192.0.2.99")
        check("2 triplets" in out and "198.51" not in out, out)
        rc, out, _ = ctl("-c", p.conf, "greylist", "list", "2001:*")
        check("1 triplet," in out and "2001:db8::/64" in out, out)

        # the retry passes: "passed", and the network's auto-whitelist counter
        time.sleep(1.2)
        check(c.ask(greylist_req("192.0.2.1")).startswith("PREPEND X-Greylist"), "retry passes")
        rc, out, _ = ctl("-c", p.conf, "greylist", "list", "192.0.2.1")
        check(any(l.startswith("192.0.2.0/24") and " passed " in l for l in out.splitlines()), out)
        check("auto-whitelist: 1 successful retry" in out, out)
        eq(c.ask(greylist_req("192.0.2.1")), "DUNNO", "known triplet")

        rc, out, err = ctl("-c", p.conf, "greylist", "delete", "192.0.2.1")
        eq((rc, err), (0, ""), "delete")
        check("192.0.2.0/24: deleted 2 triplets and the auto-whitelist counter" in out, out)
        name = greylist_key("c00002")[1]
        left = greylist_entries(r)
        eq([f for (_, f) in left if f.startswith(name) or f.startswith(b"a" + name)], [],
           "entries of 192.0.2.0/24")
        eq(len(left), 2, "other networks untouched: %r" % left)
        rc, out, _ = ctl("-c", p.conf, "greylist", "list")
        check("192.0.2." not in out and "2 triplets" in out, out)
        # the running daemon's local cache still knows the pass for up to
        # local_cache seconds (README); then the network's mail is new again
        rc, out, _ = ctl("-p", str(p.port), "explain", "client_address=192.0.2.1",
                         "sender=a@sender.test", "recipient=b@example.net")
        check("(local cache)" in out and out.splitlines()[-1] == "answer: DUNNO", out)
        # local_cache = 10: room for a loaded machine between the pass and
        # the explain above; the expiry below only needs a lower bound
        time.sleep(10.5)
        rc, out, _ = ctl("-p", str(p.port), "explain", "client_address=192.0.2.1",
                         "sender=a@sender.test", "recipient=b@example.net")
        check("new triplet" in out and out.splitlines()[-1].startswith(
            "answer: DEFER_IF_PERMIT 4.7.1 Greylisted"), out)
        rc, out, _ = ctl("-c", p.conf, "greylist", "delete", "203.0.113.9")
        check(rc == 0 and "203.0.113.0/24: no greylist entries" in out, out)
        rc, out, _ = ctl("-c", p.conf, "greylist", "delete", "2001:db8::1234/64")
        check("2001:db8::/64: deleted 1 triplet;" in out, out)


def test_greylist_rule_prefix_and_database():
    rules = """
rules = (
  { name = "gl-wide"; check = "greylist"; ipv4_prefix = 16; ipv6_prefix = 48; },
  { name = "gl-narrow"; check = "greylist"; ipv4_prefix = 32; }
);
"""
    with Redis(password="s3cret pw") as r:
        block = ('redis = { address = "%s"; password = "s3cret pw"; database = 3; '
                 'prefix = "x*"; timeout_ms = 500; };' % r.address)
        with Policyd(redis=r, rules=rules, redis_block=block) as p:
            c = p.client()
            check(c.ask(greylist_req("10.1.2.3")).startswith("DEFER_IF_PERMIT"), "first")
            rc, out, err = ctl("-c", p.conf, "greylist", "list")
            eq((rc, err), (0, ""), "list with AUTH, SELECT and a glob character in the prefix")
            check("10.1.0.0/16" in out and "1 triplet," in out, out)
            rc, out, err = ctl("-c", p.conf, "-r", "gl-narrow", "greylist", "delete", "10.1.2.3")
            check(rc == 0 and "10.1.2.3/32: no greylist entries" in out, out + err)
            rc, out, _ = ctl("-c", p.conf, "greylist", "delete", "10.1.200.200")
            check("10.1.0.0/16: deleted 1 triplet" in out, out)
            eq(r.keys("*", db=3), [], "database 3 is empty")


def parse_stats(out):
    d = {}
    for l in out.splitlines():
        parts = l.split()
        if len(parts) >= 2 and not l.startswith(" "):
            d[parts[0]] = parts[1:]
    return d


def test_stats():
    mport = free_port()
    extra = 'metrics = { address = "127.0.0.1:%d"; };' % mport
    with Redis() as r, Policyd(redis=r, rules=RULES, extra=extra) as p:
        p.wait_log("metrics on http://127.0.0.1:%d" % mport)
        c = p.client()
        n = 7
        for i in range(n):
            c.ask(req(client_address="192.0.2.%d" % (i + 1)))
        c.ask(req(sender="x@spam.test"))
        rc, out, err = ctl("-c", p.conf, "stats")
        eq((rc, err), (0, ""), "stats via the configuration")
        s = parse_stats(out)
        eq(s["requests"][0], str(n + 1), "requests: %r" % out)
        eq(s["replies"][0], str(n + 1), "replies")
        check("(RCPT %d)" % (n + 1) in out, out)
        lines = out.splitlines()
        check(any(l.split() == ["greylist", "DEFER_IF_PERMIT", str(n)] for l in lines), out)
        check(any(l.split() == ["block-spammer", "REJECT", "1"] for l in lines), out)
        check(s["latency"][0] == "mean" and "p50" in out and "p99" in out, out)
        check(s["redis"][0].startswith("up"), out)
        check(re.search(r"up, \d+ commands, 0 errors, 0 timeouts", out), out)
        check(s["connections"][:2] == ["1", "open,"], out)
        check(s["configuration"][:2] == ["generation", "1,"], out)
        # -m instead of the configuration
        rc, out2, _ = ctl("-m", "127.0.0.1:%d" % mport, "stats")
        eq(rc, 0, "stats via -m")
        eq(parse_stats(out2)["requests"][0], str(n + 1), "same figures")
        # something else than policyd's metrics
        rc, _, err = ctl("-m", "127.0.0.1:%d" % p.port, "stats")
        eq(rc, 1, "not an HTTP server")
    with Redis() as r, Policyd(redis=r, rules=RULES, extra='metrics = { address = ""; };') as p:
        rc, _, err = ctl("-c", p.conf, "stats")
        eq(rc, 1, "metrics off")
        check("metrics.address is empty" in err, err)
