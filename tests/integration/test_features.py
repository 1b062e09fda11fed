"""Documented features that had no test: the access check on every key it
accepts, match conditions (CIDR networks, names, policy_context, file:
lists), SIGHUP reloading the files behind an unchanged configuration, the
metrics, ratelimit key parts and actions, SIGINT, and policyd -t reporting
every problem of a file with several."""
import os
import re
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (Redis, Policyd, req, check, eq, free_port, wait_for,  # noqa: E402
                     expects_on_error, greylist_triplets, metrics)


def access_rule(key, name=None):
    return ('{ name = "%s"; check = "access"; key = "%s"; map = "%s.map"; }'
            % (name or key, key, key))


def rules(*rs):
    return "rules = (\n  " + ",\n  ".join(rs) + "\n);\n"


# ------------------------------------------------------------ access keys --

def test_access_on_sender_most_specific_entry_wins():
    files = {"sender.map": "bad@spam.example  REJECT 5.7.1 exact address\n"
                           "@spam.example     REJECT 5.7.1 the domain\n"
                           ".spam.example     REJECT 5.7.1 a subdomain\n"
                           "postmaster@       OK\n"
                           "good@spam.example DUNNO\n"}
    with Policyd(rules=rules(access_rule("sender"), '{ name = "rest"; action = "DEFER 4.7.0 rest"; }'),
                 files=files) as p:
        with p.client() as c:
            eq(c.ask(req(sender="bad@spam.example")), "REJECT 5.7.1 exact address")
            eq(c.ask(req(sender="Bad+tag@SPAM.example")), "REJECT 5.7.1 exact address",
               "case and +extension")
            eq(c.ask(req(sender="other@spam.example")), "REJECT 5.7.1 the domain")
            eq(c.ask(req(sender="x@mx.spam.example")), "REJECT 5.7.1 a subdomain")
            eq(c.ask(req(sender="postmaster@anything.example")), "OK", "user@ entry")
            eq(c.ask(req(sender="good@spam.example")), "DEFER 4.7.0 rest",
               "DUNNO in the map goes on to the next rule")
            eq(c.ask(req(sender="a@clean.example")), "DEFER 4.7.0 rest", "no entry")
            eq(c.ask(req(sender="")), "DEFER 4.7.0 rest", "null sender: no entry")


def test_access_on_client_names_and_helo():
    files = {"client_name.map": "mx.bad.example  REJECT 5.7.1 that host\n"
                                ".dyn.example    REJECT 5.7.1 dynamic pool\n",
             "reverse_client_name.map": ".rev.example  REJECT 5.7.1 reverse name\n",
             "helo_name.map": "localhost  REJECT 5.7.1 helo localhost\n"
                              ".helo.example  REJECT 5.7.1 helo domain\n"}
    rs = rules(access_rule("client_name"), access_rule("reverse_client_name"),
               access_rule("helo_name"))
    with Policyd(rules=rs, files=files) as p:
        with p.client() as c:
            eq(c.ask(req(client_name="mx.bad.example")), "REJECT 5.7.1 that host")
            eq(c.ask(req(client_name="MX.Bad.Example")), "REJECT 5.7.1 that host", "case")
            eq(c.ask(req(client_name="other.bad.example")), "DUNNO",
               "an exact host entry does not cover its siblings")
            eq(c.ask(req(client_name="a.b.dyn.example")), "REJECT 5.7.1 dynamic pool")
            eq(c.ask(req(client_name="dyn.example")), "DUNNO", ".parent: subdomains only")
            eq(c.ask(req(reverse_client_name="x.rev.example", client_name="ok.example")),
               "REJECT 5.7.1 reverse name")
            eq(c.ask(req(client_name="x.rev.example", reverse_client_name="ok.example")),
               "DUNNO", "client_name is not reverse_client_name")
            eq(c.ask(req(helo_name="localhost")), "REJECT 5.7.1 helo localhost")
            eq(c.ask(req(helo_name="mail.helo.example")), "REJECT 5.7.1 helo domain")
            eq(c.ask(req(helo_name="mail.example", client_name="mail.helo.example")), "DUNNO",
               "helo_name is not client_name")


def test_access_on_sasl_username_and_client_address():
    files = {"sasl_username.map": "mallory@example.net  REJECT 5.7.1 account disabled\n",
             "client_address.map": "192.0.2.0/24     REJECT 5.7.1 the /24\n"
                                   "192.0.2.128/25   OK\n"
                                   "192.0.2.200      REJECT 5.7.1 one host\n"
                                   "2001:db8::/32    REJECT 5.7.1 the v6 net\n"
                                   "2001:db8:1::/48  DUNNO\n"}
    rs = rules(access_rule("sasl_username"), access_rule("client_address"),
               '{ name = "rest"; action = "DEFER 4.7.0 rest"; }')
    with Policyd(rules=rs, files=files) as p:
        with p.client() as c:
            eq(c.ask(req(sasl_username="mallory@example.net", sasl_method="PLAIN")),
               "REJECT 5.7.1 account disabled")
            eq(c.ask(req(sasl_username="MALLORY@example.net", sasl_method="PLAIN")),
               "REJECT 5.7.1 account disabled", "login case")
            eq(c.ask(req(sasl_username="alice@example.net", sasl_method="PLAIN",
                         client_address="198.51.100.1")), "DEFER 4.7.0 rest")
            eq(c.ask(req(client_address="192.0.2.10")), "REJECT 5.7.1 the /24")
            eq(c.ask(req(client_address="192.0.2.130")), "OK", "the /25 is more specific")
            eq(c.ask(req(client_address="192.0.2.200")), "REJECT 5.7.1 one host",
               "a host is more specific than its /25")
            eq(c.ask(req(client_address="192.0.3.1")), "DEFER 4.7.0 rest", "outside")
            eq(c.ask(req(client_address="2001:db8:ffff::1")), "REJECT 5.7.1 the v6 net")
            eq(c.ask(req(client_address="2001:db8:1:2::1")), "DEFER 4.7.0 rest",
               "the /48 (DUNNO) is more specific than the /32")
            eq(c.ask(req(client_address="2001:db9::1")), "DEFER 4.7.0 rest")


# ------------------------------------------------------------- conditions --

def test_conditions_cidr_names_policy_context_and_file_lists():
    files = {"senders": "vip@example.org\n@partner.example\n"}
    rs = rules(
        '{ name = "nets"; match = { client_address = [ "198.51.100.0/24", "2001:db8:aa::/48", '
        '"203.0.113.7" ]; }; action = "OK"; }',
        '{ name = "vip"; match = { sender = [ "file:senders" ]; }; action = "OK"; }',
        '{ name = "dyn"; match = { client_name = [ ".dyn.example" ]; }; '
        'action = "REJECT 5.7.1 dynamic"; }',
        '{ name = "helo"; match = { helo_name = [ "friend.example" ]; }; '
        'action = "REJECT 5.7.1 helo"; }',
        '{ name = "ctx"; match = { policy_context = "submission"; }; '
        'action = "REJECT 5.7.1 context"; }',
        '{ name = "rest"; action = "DEFER 4.7.0 rest"; }')
    with Policyd(rules=rs, files=files) as p:
        with p.client() as c:
            eq(c.ask(req(client_address="198.51.100.77")), "OK", "CIDR list")
            eq(c.ask(req(client_address="198.51.101.1")), "DEFER 4.7.0 rest", "outside the /24")
            eq(c.ask(req(client_address="2001:db8:aa:1::5")), "OK", "IPv6 CIDR")
            eq(c.ask(req(client_address="2001:db8:ab::5")), "DEFER 4.7.0 rest", "outside the /48")
            eq(c.ask(req(client_address="203.0.113.7")), "OK", "a single address")
            eq(c.ask(req(client_address="203.0.113.8")), "DEFER 4.7.0 rest")
            eq(c.ask(req(sender="vip@example.org")), "OK", "file: address list")
            eq(c.ask(req(sender="anyone@partner.example")), "OK", "file: @domain entry")
            eq(c.ask(req(sender="anyone@sub.partner.example")), "DEFER 4.7.0 rest",
               "@domain is not .domain")
            eq(c.ask(req(client_name="h1.pool.dyn.example")), "REJECT 5.7.1 dynamic")
            eq(c.ask(req(client_name="dyn.example.org")), "DEFER 4.7.0 rest")
            eq(c.ask(req(helo_name="FRIEND.example")), "REJECT 5.7.1 helo")
            eq(c.ask(req(helo_name="x.friend.example")), "DEFER 4.7.0 rest",
               "a name without a dot matches only itself")
            eq(c.ask(req(policy_context="submission")), "REJECT 5.7.1 context")
            eq(c.ask(req(policy_context="smtp")), "DEFER 4.7.0 rest")
            eq(c.ask(req()), "DEFER 4.7.0 rest", "no policy_context")


def test_client_address_file_list_one_network_per_line():
    """policyd.conf(5): "Any list entry may be file:NAME with one entry per
    line" - for client_address too."""
    files = {"nets": "# our networks\n198.51.100.0/24\n2001:db8:aa::/48\n"}
    rs = rules('{ name = "nets"; match = { client_address = [ "file:nets", "203.0.113.7" ]; }; '
               'action = "OK"; }', '{ name = "rest"; action = "DEFER 4.7.0 rest"; }')
    p = Policyd(rules=rs, files=files, expect_start=False)
    try:
        rc, out = p.check_config()
        eq(rc, 0, "policyd -t: %s" % out)
        p.expect_start = True
        p.start()
        with p.client() as c:
            eq(c.ask(req(client_address="198.51.100.77")), "OK", "file: CIDR list")
            eq(c.ask(req(client_address="2001:db8:aa:1::5")), "OK", "file: IPv6 CIDR")
            eq(c.ask(req(client_address="203.0.113.7")), "OK", "a literal entry next to file:")
            eq(c.ask(req(client_address="203.0.113.8")), "DEFER 4.7.0 rest")
    finally:
        p.cleanup(check_exit=p.proc is not None)


# ------------------------------------------------------------------ SIGHUP --

def hup(p):
    """SIGHUP with an unchanged configuration; wait for the outcome."""
    start = len(p.log())
    p.signal(signal.SIGHUP)
    p.wait_log(r"reloaded: generation|reload failed", 10, start)
    return p.log()[start:]


def test_sighup_rereads_maps_lists_whitelists_and_overrides():
    files = {"sender.map": "a@spam.example  REJECT 5.7.1 one\n",
             "rcpts": "listed@example.net\n",
             "wl_rcpts": "postmaster@\n",
             "ov": "alice@example.net 1/1h\n"}
    rs = rules(
        access_rule("sender"),
        '{ name = "listed"; match = { recipient = [ "file:rcpts" ]; }; '
        'action = "REJECT 5.7.1 listed"; }',
        '{ name = "rl"; match = { authenticated = true; }; check = "ratelimit"; '
        'key = "sasl_username"; count = "recipients"; '
        'windows = ( { limit = 100; seconds = 3600; } ); overrides = "ov"; }',
        '{ name = "greylist"; match = { authenticated = false; }; check = "greylist"; '
        'delay = 60; retry_window = 600; whitelist_recipients = "wl_rcpts"; }')

    def auth(rcpt, login="alice@example.net"):
        return req(sasl_username=login, sasl_method="PLAIN", recipient=rcpt)

    with Redis() as r, Policyd(redis=r, rules=rs, files=files) as p:
        with p.client() as c:
            eq(c.ask(req(sender="a@spam.example")), "REJECT 5.7.1 one")
            check(c.ask(req(sender="b@spam.example")).startswith("DEFER_IF_PERMIT 4.7.1 Grey"),
                  "not in the map yet")
            eq(c.ask(req(recipient="listed@example.net")), "REJECT 5.7.1 listed")
            eq(c.ask(req(recipient="postmaster@example.net")), "DUNNO", "whitelisted")
            check(c.ask(req(recipient="abuse@example.net")).startswith("DEFER_IF_PERMIT"),
                  "abuse@ greylisted")
            eq(c.ask(auth("x1@example.org")), "DUNNO", "alice: 1 per hour")
            check(c.ask(auth("x2@example.org")).startswith("DEFER_IF_PERMIT 4.7.1 Rate"),
                  "alice over her override")
            # the configuration stays; only the files behind it change
            with open(os.path.join(p.dir, "sender.map"), "w") as f:
                f.write("b@spam.example  REJECT 5.7.1 two\n")
            with open(os.path.join(p.dir, "rcpts"), "w") as f:
                f.write("other@example.net\n")
            with open(os.path.join(p.dir, "wl_rcpts"), "w") as f:
                f.write("abuse@\n")
            with open(os.path.join(p.dir, "ov"), "w") as f:
                f.write("alice@example.net 1/1h\nbob@example.net 1/1h\n")
            out = hup(p)
            check("reloaded: generation" in out, out)
            eq(c.ask(req(sender="b@spam.example")), "REJECT 5.7.1 two", "new map entry")
            check(c.ask(req(sender="a@spam.example", recipient="n@example.net"))
                  .startswith("DEFER_IF_PERMIT 4.7.1 Grey"), "old map entry gone")
            eq(c.ask(req(recipient="other@example.net")), "REJECT 5.7.1 listed", "new file: list")
            check(c.ask(req(recipient="listed@example.net")).startswith("DEFER_IF_PERMIT"),
                  "old file: list entry gone")
            eq(c.ask(req(recipient="abuse@example.net")), "DUNNO", "new whitelist")
            check(c.ask(req(recipient="postmaster@example.net")).startswith("DEFER_IF_PERMIT"),
                  "old whitelist entry gone")
            eq(c.ask(auth("x3@example.org", "bob@example.net")), "DUNNO", "bob: 1 per hour now")
            check(c.ask(auth("x4@example.org", "bob@example.net"))
                  .startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for bob@example.net: "
                              "1 recipients per hour"), "bob's new override")
            # a broken file at SIGHUP keeps everything as it was
            with open(os.path.join(p.dir, "ov"), "w") as f:
                f.write("alice@example.net 1/1h\nbob@example.net 100/1h\ncarol@example.net 1/x\n")
            out = hup(p)
            check("reload failed" in out and "ov:3" in out, out)
            eq(c.ask(req(sender="b@spam.example")), "REJECT 5.7.1 two", "old generation kept")
            check(c.ask(auth("x5@example.org", "bob@example.net")).startswith("DEFER_IF_PERMIT"),
                  "bob's 1/h override kept")


# ------------------------------------------------------------------ metrics --

COUNTED = ("policyd_on_error_total", "policyd_connections", "policyd_connections_total",
           "policyd_redis_commands_total", "policyd_redis_errors_total",
           "policyd_redis_timeouts_total", "policyd_redis_reconnects_total",
           "policyd_reloads_total", "policyd_reload_failures_total")


@expects_on_error
def test_metrics_count_on_error_redis_connections_and_reload_failures():
    """A known sequence, and after each step every counter has exactly the
    value it must: two clients with a new triplet each (2 commands, and
    the one SCAN step that finds no old-format key), an
    error reply (Redis over maxmemory refuses the script's writes), a
    timeout (Redis stopped: the late connection is dropped and retried), a
    Redis restart (the lost connection is retried), a failed and a good
    reload."""
    mport = free_port()
    extra = 'metrics = { address = "127.0.0.1:%d"; };' % mport
    rs = rules('{ name = "greylist"; check = "greylist"; delay = 60; retry_window = 600; }')
    want = dict.fromkeys(COUNTED, 0)

    def closed():
        wait_for(lambda: metrics(mport).get("policyd_connections") == 0, 10,
                 what="connections back to 0")

    def expect(what, **changes):
        for k, v in changes.items():
            want["policyd_" + k] += v
        got = metrics(mport)
        eq({k: got.get(k) for k in COUNTED}, want, what)

    with Redis() as r, Policyd(redis=r, rules=rs, extra=extra, timeout_ms=300) as p:
        wait_for(lambda: metrics(mport).get("policyd_redis_up") == 1, 10, what="redis up")
        expect("at start")
        with p.client() as c1, p.client() as c2:
            check(c1.ask(req(recipient="a@example.net")).startswith("DEFER_IF_PERMIT"), "c1")
            check(c2.ask(req(recipient="b@example.net")).startswith("DEFER_IF_PERMIT"), "c2")
            # and one SCAN step: the look for old-format greylist keys
            # (an almost empty database: done in one step, never again)
            expect("two clients, a command each", connections=2, connections_total=2,
                   redis_commands_total=3)
        closed()
        expect("both closed", connections=-2)
        r.cmd("CONFIG", "SET", "maxmemory", "1")
        try:
            with p.client() as c:
                eq(c.ask(req(recipient="oom@example.net")), "DUNNO", "on_error: OOM reply")
                expect("an error reply", connections=1, connections_total=1,
                       redis_commands_total=1, redis_errors_total=1, on_error_total=1)
        finally:
            r.cmd("CONFIG", "SET", "maxmemory", "0")
        closed()
        want["policyd_connections"] = 0
        r.pause()
        try:
            with p.client() as c:
                eq(c.ask(req(recipient="c@example.net")), "DUNNO", "on_error while Redis hangs")
                expect("a timeout", connections=1, connections_total=1, redis_commands_total=1,
                       redis_errors_total=1, redis_timeouts_total=1,
                       redis_reconnects_total=1, on_error_total=1)
        finally:
            r.resume()
        closed()
        want["policyd_connections"] = 0
        # the dropped connection is set up again (Redis runs again)
        wait_for(lambda: metrics(mport).get("policyd_redis_up") == 1, 10, what="redis up")
        n = len(p.log())
        r.kill()
        r.start()
        p.wait_log(r"(?s)redis: connection to %s lost: .*redis: connected to %s"
                   % (re.escape(r.address), re.escape(r.address)), 15, n)
        expect("a Redis restart", redis_reconnects_total=1)
        with open(p.conf, "a") as f:
            f.write("\nthis is not a setting\n")
        out = hup(p)
        check("reload failed" in out, out)
        expect("a failed reload", reload_failures_total=1)
        p.write_config(rs, extra)
        out = hup(p)
        check("reloaded: generation 2" in out, out)
        expect("a good reload", reloads_total=1)


# --------------------------------------------------- ratelimit key parts --

def rl_rule(key, windows="{ limit = 2; seconds = 3600; }", extra="", name="rl"):
    return ('{ name = "%s"; check = "ratelimit"; key = [ %s ]; count = "recipients"; '
            'windows = ( %s ); %s }' % (name, key, windows, extra))


def test_ratelimit_key_parts_client_address_recipient_domain():
    rs = rules(rl_rule('"client_address"', name="by-ip"),
               rl_rule('"recipient"', windows="{ limit = 3; seconds = 3600; }", name="by-rcpt"),
               rl_rule('"recipient_domain"', windows="{ limit = 4; seconds = 3600; }",
                       name="by-domain"))
    with Redis() as r, Policyd(redis=r, rules=rs) as p:
        with p.client() as c:
            ip = dict(client_address="198.51.100.1")
            eq(c.ask(req(recipient="a@one.example", **ip)), "DUNNO")
            eq(c.ask(req(recipient="b@one.example", **ip)), "DUNNO")
            a = c.ask(req(recipient="c@two.example", **ip))
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for 198.51.100.1:"), a)
            # another address: its own budget; recipients count on their own keys
            for i, ipaddr in enumerate(("198.51.100.2", "198.51.100.3")):
                eq(c.ask(req(recipient="a@one.example", client_address=ipaddr)), "DUNNO",
                   "a@one.example from %s" % ipaddr)
            a = c.ask(req(recipient="a@one.example", client_address="198.51.100.4"))
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for a@one.example:"),
                  "4th to a@one.example: %r" % a)
            # one.example has had 4 recipients charged (a, b, a, a): the domain is full
            a = c.ask(req(recipient="z@one.example", client_address="198.51.100.5"))
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for one.example:"),
                  "recipient_domain: %r" % a)
            eq(c.ask(req(recipient="z@three.example", client_address="198.51.100.6")), "DUNNO")


def test_ratelimit_actions_discard_and_5nn():
    rs = rules(rl_rule('"sender"', windows="{ limit = 1; seconds = 3600; }",
                       extra='exceeded_action = "DISCARD";', name="d"),
               rl_rule('"recipient"', windows="{ limit = 1; seconds = 3600; }",
                       extra='exceeded_action = "554 5.7.1";', name="f"))
    with Redis() as r, Policyd(redis=r, rules=rs) as p:
        with p.client() as c:
            eq(c.ask(req(sender="s1@example.org", recipient="r1@example.net")), "DUNNO")
            a = c.ask(req(sender="s1@example.org", recipient="r2@example.net"))
            check(a.startswith("DISCARD "), "DISCARD with a text: %r" % a)
            a = c.ask(req(sender="s2@example.org", recipient="r1@example.net"))
            check(re.match(r"554 5\.7\.1 Rate limit exceeded for r1@example\.net", a), a)


def test_ratelimit_refund_after_a_later_defer_or_discard():
    """A charge is refunded when a later rule of the same request refuses,
    whether the refusal is a DEFER, a 4NN or a DISCARD."""
    rs = rules(rl_rule('"sasl_username"', windows="{ limit = 2; seconds = 3600; }"),
               '{ name = "d1"; match = { recipient = [ "defer@example.org" ]; }; '
               'action = "DEFER 4.7.0 later"; }',
               '{ name = "d2"; match = { recipient = [ "tempfail@example.org" ]; }; '
               'action = "450 4.2.0 later"; }',
               '{ name = "d3"; match = { recipient = [ "discard@example.org" ]; }; '
               'action = "DISCARD later"; }')

    def auth(rcpt):
        return req(sasl_username="u@example.net", sasl_method="PLAIN", recipient=rcpt)

    with Redis() as r, Policyd(redis=r, rules=rs) as p:
        with p.client() as c:
            for i in range(3):
                eq(c.ask(auth("defer@example.org")), "DEFER 4.7.0 later")
                eq(c.ask(auth("tempfail@example.org")), "450 4.2.0 later")
                eq(c.ask(auth("discard@example.org")), "DISCARD later")
            eq(c.ask(auth("ok1@example.org")), "DUNNO", "budget 1 of 2: nothing was charged")
            eq(c.ask(auth("ok2@example.org")), "DUNNO", "budget 2 of 2")
            check(c.ask(auth("ok3@example.org")).startswith("DEFER_IF_PERMIT 4.7.1 Rate"),
                  "and then the limit")


# ------------------------------------------------------ per-rule prefixes --

def test_greylist_prefixes_per_rule():
    """ipv4_prefix/ipv6_prefix size the client network of each greylist
    rule: a retry from another address of the same /16 (/48) passes under
    the wide rule; under the narrow one (/32, /128) only the same address
    does. The default /24 (/64) would decide every case the other way."""
    rs = rules('{ name = "wide"; match = { client_address = [ "198.51.0.0/16", "2001:db8::/32" ]; }; '
               'check = "greylist"; delay = 60; retry_window = 600; auto_whitelist = 0; '
               'ipv4_prefix = 16; ipv6_prefix = 48; local_cache = 0; }',
               '{ name = "narrow"; match = { client_address = [ "203.0.113.0/24", "2001:db9::/32" ]; }; '
               'check = "greylist"; delay = 60; retry_window = 600; auto_whitelist = 0; '
               'ipv4_prefix = 32; ipv6_prefix = 128; local_cache = 0; }')

    def ask(c, ip):
        return c.ask(req(client_address=ip))

    with Redis() as r, Policyd(redis=r, rules=rs) as p:
        with p.client() as c:
            for ip in ("198.51.100.1", "2001:db8:1:1::1", "203.0.113.1", "2001:db9::1"):
                check(ask(c, ip).startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), "first from " + ip)
            check(r.age_greylist(61) >= 4, "entries aged")
            for ip, passes in (("198.51.7.9", True), ("2001:db8:1:ffff::2", True),
                               ("203.0.113.2", False), ("2001:db9::2", False),
                               ("2001:db8:2::1", False), ("203.0.113.1", True),
                               ("2001:db9::1", True)):
                a = ask(c, ip)
                if passes:
                    check(a.startswith("PREPEND X-Greylist: delayed"), "retry from %s: %r" % (ip, a))
                else:
                    check(a.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 60"),
                          "%s is another client network: %r" % (ip, a))


def test_ratelimit_prefixes_per_rule():
    """ipv4_prefix = 16, ipv6_prefix = 48: client_network keys are /16
    and /48 networks, and max_networks counts networks of that size."""
    rs = rules(rl_rule('"client_network"', extra='ipv4_prefix = 16; ipv6_prefix = 48; '
                                                   'match = { authenticated = false; };',
                       name="by-net"),
               rl_rule('"sasl_username"', windows="{ limit = 1000; seconds = 3600; }",
                       extra='max_networks = 2; ipv4_prefix = 16; '
                             'networks_action = "REJECT 5.7.1 locked %k (%c networks)";',
                       name="by-login"))

    def auth(ip):
        return req(sasl_username="pfx@example.net", sasl_method="PLAIN", client_address=ip,
                   recipient="r-%s@example.org" % ip.replace(":", "-"))

    with Redis() as r, Policyd(redis=r, rules=rs) as p:
        with p.client() as c:
            for ip in ("198.51.100.1", "198.51.7.9"):
                eq(c.ask(req(client_address=ip)), "DUNNO", ip)
            a = c.ask(req(client_address="198.51.200.200"))
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for 198.51.0.0/16: "
                               "2 recipients per hour"), "the /16 is full: %r" % a)
            eq(c.ask(req(client_address="198.52.0.1")), "DUNNO", "another /16")
            for ip in ("2001:db8:1:1::1", "2001:db8:1:ffff::2"):
                eq(c.ask(req(client_address=ip)), "DUNNO", ip)
            a = c.ask(req(client_address="2001:db8:1:abcd::3"))
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for 2001:db8:1::/48: "),
                  "the /48 is full: %r" % a)
            # three /24s of one /16 are one network for max_networks
            for ip in ("10.1.1.1", "10.1.2.2", "10.1.3.3", "10.2.0.1"):
                eq(c.ask(auth(ip)), "DUNNO", "login from " + ip)
            eq(c.ask(auth("10.3.0.1")), "REJECT 5.7.1 locked pfx@example.net (3 networks)")


# ------------------------------------------------------ SIGINT and -t ----

def test_sigint_stops_cleanly():
    with Redis() as r:
        p = Policyd(redis=r, rules=rules('{ name = "all"; action = "DUNNO"; }'))
        p.start()
        try:
            with p.client() as c:
                eq(c.ask(req()), "DUNNO")
            p.signal(signal.SIGINT)
            eq(p.proc.wait(15), 0, "exit status after SIGINT")
            check(re.search(r"stopping", p.log()), p.log()[-1000:])
        finally:
            p.cleanup()


def test_config_test_reports_every_problem():
    """policyd -t on a file with four mistakes names all four, file:line."""
    bad = rules(
        '{ name = "a"; action = "ACCEPT"; }',
        '{ name = "b"; check = "greylist"; delay = "soon"; }',
        '{ name = "c"; check = "access"; key = "colour"; map = "x.map"; }',
        '{ name = "d"; action = "DUNNO"; no_such_setting = 1; }')
    p = Policyd(rules=bad, files={"x.map": "k OK\n"}, expect_start=False)
    try:
        rc, out = p.check_config()
        check(rc != 0, "policyd -t accepted it: %s" % out)
        found = re.findall(r"policyd\.conf:\d+: [^\n]*", out)
        for want in ("ACCEPT", "delay", "colour", "no_such_setting"):
            check(any(want in line for line in found),
                  "want a file:line error about %s in:\n%s" % (want, out))
        lines = sorted({int(re.match(r"policyd\.conf:(\d+):", x).group(1)) for x in found})
        check(len(lines) >= 4, "four lines named: %r\n%s" % (lines, out))
    finally:
        import shutil
        shutil.rmtree(p.dir, ignore_errors=True)


def test_ratelimit_networks_window_expires():
    """max_networks = 2 in 10 minutes: a third network is refused until the
    window has passed (moved back in Redis), then it is a new window."""
    rs = rules(rl_rule('"sasl_username"', windows="{ limit = 1000; seconds = 3600; }",
                       extra='max_networks = 2; networks_window = 600; '
                             'networks_action = "REJECT 5.7.1 locked %k (%c networks)";'))

    def auth(ip):
        return req(sasl_username="nw@example.net", sasl_method="PLAIN", client_address=ip)

    with Redis() as r, Policyd(redis=r, rules=rs) as p:
        with p.client() as c:
            eq(c.ask(auth("192.0.2.1")), "DUNNO")
            eq(c.ask(auth("198.51.100.1")), "DUNNO")
            eq(c.ask(auth("203.0.113.1")), "REJECT 5.7.1 locked nw@example.net (3 networks)")
            r.age_ratelimit(590)
            check(c.ask(auth("203.0.113.1")).startswith("REJECT 5.7.1 locked"),
                  "still inside the networks window")
            r.age_ratelimit(11)
            eq(r.keys("t:n{*"), [], "the networks set expired with its window")
            eq(c.ask(auth("203.0.113.1")), "DUNNO", "a new window: the network is the first")


# ------------------------------------------------------------------ Redis --

def greylist_only():
    return rules('{ name = "greylist"; check = "greylist"; delay = 60; retry_window = 600; }')


def test_redis_acl_username():
    with Redis() as r:
        r.cmd("ACL", "SETUSER", "policyd", "on", ">s3cret", "~*", "&*", "+@all")
        # the default user has another password: AUTH s3cret alone fails
        r.cmd("ACL", "SETUSER", "default", "resetpass", ">other")
        r.password = "other"
        block = ('redis = { address = "%s"; username = "policyd"; password = "s3cret"; '
                 'prefix = "t:"; };' % r.address)
        with Policyd(redis=r, rules=greylist_only(), redis_block=block) as p:
            with p.client() as c:
                a = c.ask(req())
                check(a.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"),
                      "greylisted as ACL user policyd: %r" % a)
        eq(len(greylist_triplets(r)), 1, "the triplet is in Redis")


def test_redis_ipv6_address():
    with Redis(extra=["--bind", "127.0.0.1", "::1"]) as r:
        block = 'redis = { address = "[::1]:%d"; prefix = "t:"; };' % r.port
        with Policyd(redis=r, rules=greylist_only(), redis_block=block) as p:
            with p.client() as c:
                check(c.ask(req()).startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), "via [::1]")
            p.wait_log(r"::1")
        eq(len(greylist_triplets(r)), 1, "the triplet went to Redis over IPv6")


def test_slow_redis_within_timeout_is_answered_normally():
    """Redis busy for 0.8 s (DEBUG SLEEP), timeout_ms 5000: the request
    waits and gets the real answer, not on_error."""
    import threading
    import time
    with Redis(extra=["--enable-debug-command", "yes"]) as r, \
            Policyd(redis=r, rules=greylist_only(), timeout_ms=5000) as p:
        with p.client(timeout=20) as c:
            check(c.ask(req(recipient="warm@example.net")).startswith("DEFER_IF_PERMIT"), "warm")
            t = threading.Thread(target=lambda: r.cmd("DEBUG", "SLEEP", "0.8", timeout=10))
            t.start()
            time.sleep(0.1)
            t0 = time.monotonic()
            a = c.ask(req(recipient="slow@example.net"))
            dt = time.monotonic() - t0
            t.join(10)
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), "real answer: %r" % a)
            check(dt >= 0.3, "the answer waited for Redis (%.2fs)" % dt)
