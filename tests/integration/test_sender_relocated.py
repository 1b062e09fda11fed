"""sender_login and relocated through the protocol: every option, bad
input, maps with errors (policyd -t and SIGHUP), real redis and policyd."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Redis, Policyd, req, check, eq, wait_for, greylist_triplets  # noqa: E402

SENDER_MAP = """# sender  logins
sales@example.net   alice@example.net,
    carol@example.net
bob@example.net     bob@example.net
@example.org        postmaster@example.net admin@example.net
"""

RELOCATED_MAP = """# old  new  [last day]
moved@example.net   new@example.org
@old.example        @new.example
boss@old.example    ceo@new.example
temp@example.net    t@example.org  2000-01-31
later@example.net   l@example.org  2999-12-31
"""

OK_RULE = '{ name = "rest"; action = "OK"; match = { protocol_state = [ "MAIL", "RCPT", "END-OF-MESSAGE" ]; }; }'


def rules(*groups):
    return "rules = (\n  %s\n);\n" % ",\n  ".join(groups + (OK_RULE,))


def sl_rule(opts=""):
    return ('{ name = "sl"; check = "sender_login"; map = "sender_login.map";\n'
            '    match = { protocol_state = [ "MAIL", "RCPT", "END-OF-MESSAGE" ]; }; %s }' % opts)


def rel_rule(opts=""):
    return '{ name = "rel"; check = "relocated"; map = "relocated.map"; %s }' % opts


FILES = {"sender_login.map": SENDER_MAP, "relocated.map": RELOCATED_MAP}


def auth(login, sender, **kw):
    return req(sasl_username=login, sasl_method="PLAIN", sender=sender, **kw)


def config_test(p):
    """policyd -t on the instance's configuration: (exit status, output)."""
    return p.check_config()


# ------------------------------------------------------------ sender_login --

def test_sender_login_defaults():
    with Redis() as r, Policyd(redis=r, rules=rules(sl_rule()), files=FILES) as p:
        with p.client() as c:
            eq(c.ask(auth("alice@example.net", "bob@example.net")),
               "REJECT 5.7.1 Sender address rejected: not owned by user alice@example.net",
               "alice as bob")
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK", "alice as sales")
            eq(c.ask(auth("carol@example.net", "sales@example.net")), "OK",
               "carol as sales (continuation line)")
            eq(c.ask(auth("ALICE@example.net", "Sales+Q4@Example.NET")), "OK",
               "case and +extension")
            eq(c.ask(auth("alice@example.net", "Alice+x@Example.NET")), "OK",
               "built-in: own address with extension")
            eq(c.ask(auth("bob@example.net", "bob@example.net")), "OK", "bob as bob")
            eq(c.ask(auth("postmaster@example.net", "x@example.org")), "OK", "@domain entry")
            check(c.ask(auth("alice@example.net", "x@example.org")).startswith("REJECT 5.7.1"),
                  "@domain entry does not list alice")
            eq(c.ask(auth("alice@example.net", "carol@example.net")),
               "REJECT 5.7.1 Sender address rejected: not owned by user alice@example.net",
               "same_domain is off by default")
            eq(c.ask(auth("alice@example.net", "")), "OK", "null sender allowed by default")
            eq(c.ask(req(sender="bob@example.net")), "OK", "unauthenticated: not its business")
            # the same at MAIL and END-OF-MESSAGE
            check(c.ask(auth("alice@example.net", "bob@example.net", protocol_state="MAIL",
                             recipient="")).startswith("REJECT 5.7.1"), "at MAIL")
            check(c.ask(auth("alice@example.net", "bob@example.net",
                             protocol_state="END-OF-MESSAGE", recipient_count="1"))
                  .startswith("REJECT 5.7.1"), "at END-OF-MESSAGE")
            # explain: the map entry that decided
            a = c.ask(auth("alice@example.net", "bob@example.net", policyd_explain="yes"))
            check(a.startswith("REJECT"), a)
            check(any("map entry bob@example.net does not list login alice@example.net" in l
                      for l in c.last_lines), c.last_lines)
            c.ask(auth("alice@example.net", "sales@example.net", policyd_explain="yes"))
            check(any("map entry sales@example.net lists login alice@example.net" in l
                      for l in c.last_lines), c.last_lines)
            c.ask(auth("alice@example.net", "alice@example.net", policyd_explain="yes"))
            check(any("built-in: the login is the sender" in l for l in c.last_lines),
                  c.last_lines)
        p.wait_log(r'rule=sl action=REJECT 5\.7\.1 .* detail="map entry bob@example.net')


def test_sender_login_options():
    opts = ('builtin = true; same_domain = true; null_sender = "reject";\n'
            '    reply = "554 5.7.1 <%s> is not yours, %l (100%%)";\n'
            '    protect_domains = [ "example.net", ".example.com" ];\n'
            '    unauth_reply = "REJECT 5.7.1 log in to send as <%s>";')
    with Redis() as r, Policyd(redis=r, rules=rules(sl_rule(opts)), files=FILES) as p:
        with p.client() as c:
            eq(c.ask(auth("alice@example.net", "carol@example.net")), "OK",
               "same_domain: any sender of the login's domain")
            eq(c.ask(auth("alice@example.net", "bob@example.net")),
               "554 5.7.1 <bob@example.net> is not yours, alice@example.net (100%)",
               "an address entry in the map beats same_domain; reply template")
            eq(c.ask(auth("alice", "carol@example.net")),
               "554 5.7.1 <carol@example.net> is not yours, alice (100%)",
               "a login without @domain: same_domain does not apply")
            eq(c.ask(auth("alice@example.net", "")),
               "554 5.7.1 <> is not yours, alice@example.net (100%)", "null_sender = reject")
            eq(c.ask(req(sender="Bob@Example.NET")),
               "REJECT 5.7.1 log in to send as <Bob@Example.NET>", "protect_domains")
            eq(c.ask(req(sender="x@mx.example.com")),
               "REJECT 5.7.1 log in to send as <x@mx.example.com>", ".parent protects subdomains")
            eq(c.ask(req(sender="x@example.com")), "OK", ".example.com: not the domain itself")
            eq(c.ask(req(sender="x@example.org")), "OK", "unprotected domain")
            eq(c.ask(req(sender="")), "OK", "unauthenticated null sender")
            eq(c.ask(req(sender="nodomain")), "OK", "unauthenticated sender without @")

    opts = 'builtin = false; protect_domains = "example.net";'
    with Redis() as r, Policyd(redis=r, rules=rules(sl_rule(opts)), files=FILES) as p:
        with p.client() as c:
            eq(c.ask(auth("alice@example.net", "alice@example.net")),
               "REJECT 5.7.1 Sender address rejected: not owned by user alice@example.net",
               "builtin = false: the map alone decides")
            eq(c.ask(auth("bob@example.net", "bob@example.net")), "OK", "listed in the map")
            eq(c.ask(req(sender="bob@example.net")),
               "REJECT 5.7.1 Sender address rejected: authentication required for "
               "<bob@example.net>", "default unauth_reply")


def test_sender_login_dry_run_and_condition():
    rule = ('{ name = "sl"; check = "sender_login"; map = "sender_login.map"; '
            'mode = "dry-run"; match = { authenticated = true; }; }')
    with Redis() as r, Policyd(redis=r, rules="rules = ( %s );" % rule, files=FILES) as p:
        with p.client() as c:
            eq(c.ask(auth("alice@example.net", "bob@example.net")),
               "WARN policyd dry-run: rule sl would answer REJECT 5.7.1 Sender address "
               "rejected: not owned by user alice@example.net", "dry-run: WARN, not enforced")
            eq(c.ask(auth("alice@example.net", "alice@example.net")), "DUNNO", "owned")
            eq(c.ask(req(sender="bob@example.net")), "DUNNO",
               "condition authenticated = true skips the unauthenticated")


def test_sender_login_bad_input():
    opts = 'reply = "REJECT 5.7.1 <%s> not owned by %l";'
    with Redis() as r, Policyd(redis=r, rules=rules(sl_rule(opts)), files=FILES) as p:
        with p.client() as c:
            eq(c.ask(auth("alice@example.net", "bob")),
               "REJECT 5.7.1 <bob> not owned by alice@example.net", "sender without @")
            eq(c.ask(auth("bob", "bob")), "OK", "login and sender without @: equal")
            eq(c.ask(auth("alice@example.net", "@example.net")),
               "REJECT 5.7.1 <@example.net> not owned by alice@example.net", "sender @domain")
            eq(c.ask(auth("alice@example.net", "alice@example.net@evil.test")),
               "REJECT 5.7.1 <alice@example.net@evil.test> not owned by alice@example.net",
               "two @: the domain is after the last one")
            eq(c.ask(auth("", "bob@example.net")), "OK", "empty login is unauthenticated")
            # 8000-byte sender (Postfix allows 8 KiB values): refused, reply bounded
            big = "a" * 7985 + "@example.net"
            a = c.ask(auth("alice@example.net", big))
            check(a.startswith("REJECT 5.7.1 <" + "a" * 400 + "> not owned by alice@example.net"),
                  "long sender cut at 400: %r" % a[:120])
            check(len(a) < 500, "reply length %d" % len(a))
            # a very long login
            a = c.ask(auth("l" * 5000 + "@example.net", "bob@example.net"))
            eq(a, "REJECT 5.7.1 <bob@example.net> not owned by " + "l" * 400,
               "long login cut at 400")
            # control characters and a would-be format string in the sender
            a = c.ask(auth("alice@example.net", "x\ty%s%n@example.org"))
            eq(a, "REJECT 5.7.1 <x?y%s%n@example.org> not owned by alice@example.net",
               "tab replaced, no format expansion of values")
            # the connection still works
            eq(c.ask(auth("alice@example.net", "alice@example.net")), "OK", "still answering")


def test_sender_login_config_errors():
    cases = [
        ({"sender_login.map": "a@example.net a@example.net\n\nlonely@example.net\n"},
         sl_rule(), r"sender_login\.map:3: missing value for key \"lonely@example.net\""),
        ({"sender_login.map": "  x@example.net y\n"}, sl_rule(),
         r"sender_login\.map:1: continuation line without a preceding entry"),
        ({}, sl_rule(), r"sender_login\.map: No such file or directory"),
        (FILES, sl_rule('\n null_sender = "maybe";'),
         r"policyd\.conf:\d+: null_sender: expected \"allow\" or \"reject\""),
        (FILES, sl_rule('\n reply = "ACCEPT %l";'), r"policyd\.conf:\d+: reply: invalid action"),
        (FILES, '{ name = "sl"; check = "sender_login"; builtin = false; }',
         r"sender_login: builtin = false needs a map"),
        (FILES, '{ name = "sl"; check = "sender_login"; match = { protocol_state = "CONNECT"; }; }',
         r"check sender_login cannot work at every protocol_state"),
    ]
    import re
    for files, rule, want in cases:
        p = Policyd(rules="rules = (\n  %s\n);\n" % rule, files=files, expect_start=False)
        try:
            rc, out = config_test(p)
            check(rc != 0, "policyd -t accepted %r" % rule)
            check(re.search(want, out), "want /%s/ in %r" % (want, out))
        finally:
            import shutil
            shutil.rmtree(p.dir, ignore_errors=True)


# --------------------------------------------------------------- relocated --

def test_relocated_defaults():
    with Redis() as r, Policyd(redis=r, rules=rules(rel_rule()), files=FILES) as p:
        with p.client() as c:
            eq(c.ask(req(recipient="moved@example.net")),
               "551 5.1.6 User has moved; please try <new@example.org>", "moved")
            eq(c.ask(req(recipient="Moved+Tag@EXAMPLE.net")),
               "551 5.1.6 User has moved; please try <new@example.org>", "case, +extension")
            eq(c.ask(req(recipient="Jane.Doe@old.example")),
               "551 5.1.6 User has moved; please try <Jane.Doe@new.example>",
               "domain entry keeps the local part")
            eq(c.ask(req(recipient="boss@old.example")),
               "551 5.1.6 User has moved; please try <ceo@new.example>",
               "address entry before @domain")
            eq(c.ask(req(recipient="x@sub.old.example")), "OK", "subdomain not included")
            eq(c.ask(req(recipient="temp@example.net")), "OK",
               "expired entry: expired_action DUNNO by default")
            eq(c.ask(req(recipient="later@example.net")),
               "551 5.1.6 User has moved; please try <l@example.org>", "entry not yet expired")
            eq(c.ask(req(recipient="stay@example.net")), "OK", "no entry")
            eq(c.ask(req(recipient="moved@example.net", sasl_username="alice@example.net")),
               "551 5.1.6 User has moved; please try <new@example.org>",
               "authenticated senders are told too")
            # RCPT only: the rule's default protocol_state skips other states
            eq(c.ask(req(recipient="moved@example.net", protocol_state="END-OF-MESSAGE")),
               "OK", "not at END-OF-MESSAGE")
            c.ask(req(recipient="Jane@old.example", policyd_explain="yes"))
            check(any("entry @old.example -> @new.example" in l for l in c.last_lines),
                  c.last_lines)
            c.ask(req(recipient="temp@example.net", policyd_explain="yes"))
            check(any("has expired" in l for l in c.last_lines), c.last_lines)
        p.wait_log(r'rule=rel action=551 5\.1\.6 .*recipient=<moved@example.net>')


def test_relocated_options():
    with Redis() as r, Policyd(redis=r, files=FILES, rules=rules(rel_rule(
            'strict = true; expired_action = "550 5.1.1 <%a> no longer here";'))) as p:
        with p.client() as c:
            eq(c.ask(req(recipient="moved@example.net")),
               "550 5.1.6 User has moved; please try <new@example.org>", "strict")
            eq(c.ask(req(recipient="temp@example.net")),
               "550 5.1.1 <t@example.org> no longer here", "expired_action with %a")
    with Redis() as r, Policyd(redis=r, files=FILES, rules=rules(rel_rule(
            'reply = "REJECT 5.1.6 moved to %a, 100%% sure";'))) as p:
        with p.client() as c:
            eq(c.ask(req(recipient="moved@example.net")),
               "REJECT 5.1.6 moved to new@example.org, 100% sure", "reply template")
    # several map files; dry-run
    files = dict(FILES, **{"more.map": "moved@example.net other@example.org\n"})
    with Redis() as r, Policyd(redis=r, files=files, rules=rules(
            '{ name = "rel"; check = "relocated"; map = [ "relocated.map", "more.map" ]; }')) as p:
        with p.client() as c:
            eq(c.ask(req(recipient="moved@example.net")),
               "551 5.1.6 User has moved; please try <other@example.org>",
               "a later file replaces an equal key")
            eq(c.ask(req(recipient="x@old.example")),
               "551 5.1.6 User has moved; please try <x@new.example>", "first file still used")


def test_relocated_bad_input():
    with Redis() as r, Policyd(redis=r, rules=rules(rel_rule()), files=FILES) as p:
        with p.client() as c:
            eq(c.ask(req(recipient="")), "OK", "empty recipient")
            eq(c.ask(req(recipient="moved")), "OK", "recipient without @")
            eq(c.ask(req(recipient="@old.example")),
               "551 5.1.6 User has moved; please try <@new.example>", "bare @domain recipient")
            big = "a" * 8000 + "@old.example"
            a = c.ask(req(recipient=big))
            check(a.startswith("551 5.1.6 User has moved; please try <aaaa") and len(a) < 500,
                  "an 8 KB local part still meets @old.example (reply cut): %d bytes" % len(a))
            a = c.ask(req(recipient="a" * 900 + "@old.example"))
            check(a.startswith("551 5.1.6 User has moved; please try <" + "a" * 400) and len(a) < 500,
                  "long kept local part cut at 400: %d bytes" % len(a))
            eq(c.ask(req(recipient="x\ty@old.example")),
               "551 5.1.6 User has moved; please try <x?y@new.example>", "tab replaced")
            eq(c.ask(req(recipient="moved@example.net")),
               "551 5.1.6 User has moved; please try <new@example.org>", "still answering")


def test_relocated_config_errors():
    import re
    import shutil
    cases = [
        ("a@example.net b@example.net\nc@example.net d@example.net 2024-02-30\n",
         rel_rule(), r"relocated\.map:2: relocated: bad end date \"2024-02-30\" \(want YYYY-MM-DD\)"),
        ("# x\nolddomain.example @new.example\n", rel_rule(),
         r"relocated\.map:2: relocated: key \"olddomain.example\" is not user@domain or @domain"),
        ("a@example.net\n", rel_rule(), r"relocated\.map:1: missing value for key"),
        ("a@example.net newaddress\n", rel_rule(),
         r"relocated\.map:1: relocated: new address \"newaddress\" is not user@domain"),
        ("a@example.net b@example.net\n", rel_rule('\n strict = true; reply = "551 x";'),
         r"policyd\.conf:\d+: relocated: give reply or strict = true, not both"),
        ("a@example.net b@example.net\n", rel_rule('\n expired_action = "GONE";'),
         r"policyd\.conf:\d+: expired_action: invalid action"),
        ("a@example.net b@example.net\n",
         '{ name = "rel"; check = "relocated"; map = "relocated.map"; '
         'match = { protocol_state = [ "RCPT", "DATA" ]; }; }',
         r"check relocated cannot work at every protocol_state"),
    ]
    for text, rule, want in cases:
        p = Policyd(rules="rules = (\n  %s\n);\n" % rule,
                    files={"relocated.map": text}, expect_start=False)
        try:
            rc, out = config_test(p)
            check(rc != 0, "policyd -t accepted %r" % text)
            check(re.search(want, out), "want /%s/ in %r" % (want, out))
        finally:
            shutil.rmtree(p.dir, ignore_errors=True)


# ------------------------------------------------------------------ reload --

def test_sighup_reload_maps_atomically():
    with Redis() as r, Policyd(redis=r, rules=rules(sl_rule(), rel_rule()), files=FILES) as p:
        with p.client() as c:
            eq(c.ask(req(recipient="moved@example.net")),
               "551 5.1.6 User has moved; please try <new@example.org>", "before")
            check(c.ask(auth("alice@example.net", "bob@example.net")).startswith("REJECT"),
                  "before: alice as bob")
            # break the relocated map (a new valid line and a bad one) and
            # give alice bob's address in the other map
            with open(os.path.join(p.dir, "relocated.map"), "a") as f:
                f.write("fresh@example.net   f@example.org\nbroken@example.net  b@example.org  2024-13-01\n")
            with open(os.path.join(p.dir, "sender_login.map"), "a") as f:
                f.write("bob@example.net     bob@example.net, alice@example.net\n")
            n = len(p.log())
            p.signal(signal.SIGHUP)
            p.wait_log(r"relocated\.map:8: relocated: bad end date \"2024-13-01\"", start=n)
            p.wait_log(r"reload failed", start=n)
            # the old snapshot answers, both maps unchanged
            eq(c.ask(req(recipient="fresh@example.net")), "OK", "broken map: new entry not used")
            check(c.ask(auth("alice@example.net", "bob@example.net")).startswith("REJECT"),
                  "broken relocated map: the sender map is not half-reloaded either")
            eq(c.ask(req(recipient="moved@example.net")),
               "551 5.1.6 User has moved; please try <new@example.org>", "old entries answer")
        # fix it: the next SIGHUP takes both maps
        with open(os.path.join(p.dir, "relocated.map")) as f:
            text = f.read().replace("2024-13-01", "2999-12-01")
        with open(os.path.join(p.dir, "relocated.map"), "w") as f:
            f.write(text)
        n = len(p.log())
        p.signal(signal.SIGHUP)
        p.wait_log(r"reloaded: generation", start=n)
        with p.client() as c:
            eq(c.ask(req(recipient="fresh@example.net")),
               "551 5.1.6 User has moved; please try <f@example.org>", "fixed map: new entry")
            eq(c.ask(req(recipient="broken@example.net")),
               "551 5.1.6 User has moved; please try <b@example.org>", "fixed line")
            eq(c.ask(auth("alice@example.net", "bob@example.net")), "OK",
               "sender map reloaded with it")
        rc, out = config_test(p)
        eq(rc, 0, "policyd -t on the fixed configuration: " + out)


def test_sample_configuration():
    """rules/policyd.conf with its maps: what README's make run shows."""
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rdir = os.path.join(top, "rules")
    with open(os.path.join(rdir, "policyd.conf")) as f:
        conf = f.read()
    start = conf.index("rules = (")
    files = {}
    for name in os.listdir(rdir):
        if name != "policyd.conf" and not name.startswith("."):
            with open(os.path.join(rdir, name)) as f:
                files[name] = f.read()
    with Redis() as r, Policyd(redis=r, rules=conf[start:], files=files) as p:
        with p.client() as c:
            eq(c.ask(auth("alice@example.net", "bob@example.net")),
               "REJECT 5.7.1 Sender address rejected: not owned by user alice@example.net",
               "alice as bob")
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "DUNNO", "alice as sales")
            eq(c.ask(auth("alice@example.net", "alice@example.net")), "DUNNO", "alice as alice")
            eq(c.ask(req(recipient="moved@example.net")),
               "551 5.1.6 User has moved; please try <new@example.org>", "moved")
            # client-access and sender-access
            eq(c.ask(req(client_address="198.51.100.66")),
               "REJECT 5.7.1 Client blocked by local policy", "client_access")
            eq(c.ask(req(sender="spammer@example.com")),
               "REJECT 5.7.1 Sender blocked by local policy", "sender_access")
            # user-rate: bulk@example.net's override is 10 an hour
            for i in range(10):
                eq(c.ask(auth("bulk@example.net", "bulk@example.net",
                              recipient="b%d@example.org" % i)), "DUNNO", "bulk %d" % i)
            a = c.ask(auth("bulk@example.net", "bulk@example.net", recipient="b10@example.org"))
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for bulk@example.net: "
                               "10 recipients per hour"), "the override: %r" % a)
            # greylist (300 s), its whitelists, and the authenticated bypass
            a = c.ask(req(client_address="203.0.113.5", recipient="carol@example.net"))
            eq(a, "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 300 seconds", "greylist")
            eq(c.ask(req(client_address="203.0.113.5", recipient="postmaster@example.net")),
               "DUNNO", "whitelist_recipients")
            eq(c.ask(req(client_address="203.0.113.6", client_name="mail-x.google.com",
                         recipient="carol@example.net")), "DUNNO", "whitelist_clients")
            eq(c.ask(auth("alice@example.net", "alice@example.net",
                          client_address="203.0.113.7", recipient="dave@example.net")),
               "DUNNO", "authenticated: not greylisted")
            eq(len(greylist_triplets(r)), 1, "one triplet: the greylisted one")
