"""Greylisting: the triplet life cycle, auto-whitelist, whitelist files,
IPv6 /64 grouping, sender normalisation, TTLs, the header, SASL bypass."""
import os, re, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (Redis, Policyd, req, greylist_rules, check, eq, greylist_key,  # noqa: E402
                     greylist_entries, greylist_triplets, expects_on_error, wait_for)

DEFER_RE = re.compile(r"^DEFER_IF_PERMIT 4\.7\.1 Greylisted, please try again in (\d+) seconds$")
PREPEND_RE = re.compile(r"^PREPEND X-Greylist: delayed (\d+) seconds by policyd at mx\.test; "
                        r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
                        r"|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d UTC$")


def greylist_rule(delay=1, window=6, awl=0, extra="", cache=None):
    """cache: local_cache (default: not set). Tests that age entries in
    Redis (r.age_greylist) set 0: policyd's own memory of a waiting
    triplet does not see the time moved there."""
    if cache is not None:
        extra += " local_cache = %d;" % cache
    return ('rules = ( { name = "greylist"; check = "greylist"; delay = %d; '
            'retry_window = %d; auto_whitelist = %d; %s } );' % (delay, window, awl, extra))


def deferred(a):
    m = DEFER_RE.match(a)
    check(m, "expected a greylist defer, got %r" % a)
    return int(m.group(1))


def triplet_keys(r):
    """the greylist triplets in Redis (fields of the bucket hashes)"""
    return list(greylist_triplets(r))


def test_new_triplet_deferred_exact_text():
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=2, window=6)) as p:
        with p.client() as c:
            eq(c.ask(req()), "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 2 seconds")
        eq(len(triplet_keys(r)), 1, "one triplet key")


def test_early_retry_counts_down():
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=300, window=900, cache=0)) as p:
        with p.client() as c:
            eq(deferred(c.ask(req())), 300)
            eq(r.age_greylist(100), 1, "one triplet aged by 100 s")
            n = deferred(c.ask(req()))
            check(180 <= n <= 200, "early retry should have ~200 seconds left, got %d" % n)
        p.wait_log(r"early retry, \d+ s left")    # logged after the reply


def test_pass_after_delay_with_header_then_dunno():
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=600, cache=0)) as p:
        with p.client() as c:
            deferred(c.ask(req()))
            r.age_greylist(61)
            a = c.ask(req())
            m = PREPEND_RE.match(a)
            check(m, "expected the X-Greylist header, got %r" % a)
            check(60 <= int(m.group(1)) <= 90, a)
            eq(c.ask(req()), "DUNNO", "known triplet")
            eq(c.ask(req()), "DUNNO", "known triplet again")


def test_retry_after_window_is_greylisted_again():
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=300, cache=0)) as p:
        with p.client() as c:
            deferred(c.ask(req()))
            r.age_greylist(299)
            check(c.ask(req()).startswith("PREPEND"), "a retry inside the window passes")
            deferred(c.ask(req(recipient="late@example.net")))
            r.age_greylist(301)
            eq(deferred(c.ask(req(recipient="late@example.net"))), 60,
               "a retry after the window starts over")


def test_retry_after_window_while_key_exists():
    """The script itself must treat age >= retry_window as a new triplet even
    when the key is still there (max_age TTL kept by another version)."""
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=300, cache=0)) as p:
        with p.client() as c:
            deferred(c.ask(req()))
            keys = triplet_keys(r)
            eq(len(keys), 1)
            r.cmd("PERSIST", keys[0][0])      # the bucket
            r.age_greylist(301)
            eq(len(triplet_keys(r)), 1, "the entry is still there")
            eq(deferred(c.ask(req())), 60, "stale pending entry starts over")


def test_auto_whitelist_client_network():
    rules = greylist_rule(delay=60, window=600, awl=2, cache=0)
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            rcpts = ["r1@example.net", "r2@example.net"]
            for rc in rcpts:
                deferred(c.ask(req(client_address="192.0.2.10", recipient=rc)))
            r.age_greylist(61)
            for rc in rcpts:
                check(c.ask(req(client_address="192.0.2.10", recipient=rc)).startswith("PREPEND"))
            # a new triplet from the same /24 passes at once
            eq(c.ask(req(client_address="192.0.2.77", sender="new@other.test",
                         recipient="r3@example.net", policyd_explain="yes")), "DUNNO",
               "auto-whitelisted /24")
            check(any("auto-whitelisted" in l for l in c.last_lines), c.last_lines)
            # but not from another /24
            deferred(c.ask(req(client_address="192.0.3.10", recipient="r3@example.net")))
        _, _, counter, awl = greylist_key("c00002")
        check(r.cmd("HGET", counter, awl, raw=True),
              "the awl counter of 192.0.2.0/24: %r" % greylist_entries(r))


def test_whitelist_clients_file():
    wl = ("# postgrey whitelist_clients\n"
          "trusted.test\n"
          "198.51.100.7\n"
          "203.0.113\n"
          "10.1.0.0/16\n"
          "/^mail[0-9]+\\.regex\\.test$/\n")
    rules = greylist_rule(delay=5, window=10, extra='whitelist_clients = [ "wl_clients" ];')
    with Redis() as r, Policyd(redis=r, rules=rules, files={"wl_clients": wl}) as p:
        with p.client() as c:
            def ask(addr, name):
                return c.ask(req(client_address=addr, client_name=name,
                                 reverse_client_name=name))
            eq(ask("192.0.2.1", "trusted.test"), "DUNNO", "name")
            eq(ask("192.0.2.1", "mx1.trusted.test"), "DUNNO", "subdomain")
            eq(ask("198.51.100.7", "unknown"), "DUNNO", "IP")
            eq(ask("203.0.113.200", "unknown"), "DUNNO", "partial IP")
            eq(ask("10.1.200.3", "unknown"), "DUNNO", "CIDR")
            eq(ask("192.0.2.1", "mail42.regex.test"), "DUNNO", "regex")
            deferred(ask("192.0.2.1", "nottrusted.test"))
            deferred(ask("198.51.100.8", "unknown"))
            deferred(ask("203.0.114.1", "unknown"))
            deferred(ask("10.2.0.1", "unknown"))
            deferred(ask("192.0.2.1", "mailx.regex.test"))
            eq(c.ask(req(client_address="10.1.2.3", policyd_explain="yes")), "DUNNO")
            check(any("whitelist_clients" in l for l in c.last_lines), c.last_lines)


def test_whitelist_clients_perl_regex_digits():
    """postgrey's own whitelist_clients is full of Perl regexes such as
    /^mail\\d+\\.telekom\\.de$/: \\d must mean a digit."""
    wl = "/^mail\\d+\\.telekom\\.de$/\n/^smtp\\d+\\.orange\\.fr$/\n"
    rules = greylist_rule(delay=5, window=10, extra='whitelist_clients = [ "wl_clients" ];')
    with Redis() as r, Policyd(redis=r, rules=rules, files={"wl_clients": wl}) as p:
        with p.client() as c:
            eq(c.ask(req(client_name="mail42.telekom.de")), "DUNNO", "\\d+ matches digits")
            deferred(c.ask(req(client_name="maild.telekom.de")))


def test_whitelist_recipients_file():
    wl = ("# postgrey whitelist_recipients\n"
          "postmaster@\n"
          "abuse@example.net\n"
          "wl.example\n"
          "/^list-.*@lists\\.example$/\n")
    rules = greylist_rule(delay=5, window=10, extra='whitelist_recipients = "wl_rcpts";')
    with Redis() as r, Policyd(redis=r, rules=rules, files={"wl_rcpts": wl}) as p:
        with p.client() as c:
            for rc in ("postmaster@anything.test", "Postmaster@Other.test", "abuse@example.net",
                       "x@wl.example", "y@sub.wl.example", "list-dev@lists.example"):
                eq(c.ask(req(recipient=rc)), "DUNNO", rc)
            for rc in ("abuse@example.org", "x@notwl.example", "dev@lists.example"):
                deferred(c.ask(req(recipient=rc)))
        eq(len(triplet_keys(r)), 3, "whitelisted recipients cost no key")


def test_ipv6_clients_grouped_by_64():
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=600, cache=0)) as p:
        with p.client() as c:
            deferred(c.ask(req(client_address="2001:db8:1:2::5")))
            r.age_greylist(61)
            check(c.ask(req(client_address="2001:db8:1:2::99")).startswith("PREPEND"),
                  "same /64 shares the triplet")
            deferred(c.ask(req(client_address="2001:db8:1:3::5")))
        keys = triplet_keys(r)
        eq(len(keys), 2)
        b, f, _, _ = greylist_key("620010db800010002", "alice@sender.test", "bob@example.net")
        check((b, f) in keys, "the /64's triplet is where greylist.h puts it: %r" % keys)


def test_sender_extension_same_triplet():
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=600, cache=0)) as p:
        with p.client() as c:
            deferred(c.ask(req(sender="a+tag@x.test")))
            r.age_greylist(61)
            check(c.ask(req(sender="A@X.test")).startswith("PREPEND"), "a+tag@x == a@x")
            eq(c.ask(req(sender="a+other@x.test")), "DUNNO")
            deferred(c.ask(req(sender="b@x.test")))


def test_sender_srs_prvs_and_digits_same_triplet():
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=600, cache=0)) as p:
        with p.client() as c:
            deferred(c.ask(req(sender="user@orig.test")))
            deferred(c.ask(req(sender="bounce-123@lists.test")))
            r.age_greylist(61)
            check(c.ask(req(sender="prvs=1234abcd=user@orig.test")).startswith("PREPEND"),
                  "BATV prvs unwrapped")
            eq(c.ask(req(sender="SRS0=HHH=TT=orig.test=user@forwarder.test")), "DUNNO",
               "SRS0 unwrapped")
            check(c.ask(req(sender="bounce-98765@lists.test")).startswith("PREPEND"),
                  "digit runs collapsed")
        eq(len(triplet_keys(r)), 2)


def test_entries_carry_ttls():
    rules = greylist_rule(delay=60, window=600, awl=3, extra="max_age = 1000;", cache=0)
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            deferred(c.ask(req(recipient="pending@example.net")))
            deferred(c.ask(req(recipient="passed@example.net")))
            r.age_greylist(61)
            check(c.ask(req(recipient="passed@example.net")).startswith("PREPEND"))
        bp, _, _, _ = greylist_key("c00002", "alice@sender.test", "pending@example.net")
        bq, _, counter, awl = greylist_key("c00002", "alice@sender.test", "passed@example.net")
        eq(len(triplet_keys(r)), 2, "two triplets")
        if bp != bq:
            # retry_window and 1/16 more (the next new entries need not extend it)
            check(0 < r.ttl(bp) <= 637 - 61,
                  "a bucket of waiting entries lives retry_window * 17/16: %r" % r.ttl(bp))
        check(990 <= r.ttl(bq) <= 1000, "a bucket with a passed entry lives max_age: %r" % r.ttl(bq))
        check(r.cmd("HGET", counter, awl, raw=True), "the awl counter")
        check(990 <= r.ttl(counter) <= 1000, "awl counter TTL ~ max_age")
        check(all(r.ttl(k) > 0 for k in r.keys("t:*")), "no key without a TTL")


def test_header_off_gives_dunno_on_pass():
    rules = greylist_rule(delay=60, window=600, extra="header = false;", cache=0)
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            deferred(c.ask(req()))
            r.age_greylist(61)
            eq(c.ask(req()), "DUNNO", "pass without header")
            eq(c.ask(req()), "DUNNO")


def test_authenticated_clients_skip_greylist():
    rules = """
rules = (
  { name = "client-access"; check = "access"; key = "client_address"; map = "client_access"; },
  { name = "authenticated"; match = { authenticated = true; }; action = "DUNNO"; },
  { name = "greylist"; match = { authenticated = false; }; check = "greylist";
    delay = 2; retry_window = 6; auto_whitelist = 5; }
);
"""
    files = {"client_access": "198.51.100.66  REJECT 5.7.1 Client blocked by local policy\n"}
    with Redis() as r, Policyd(redis=r, rules=rules, files=files) as p:
        with p.client() as c:
            eq(c.ask(req(sasl_method="PLAIN", sasl_username="alice")), "DUNNO", "authenticated")
            eq(len(triplet_keys(r)), 0, "no greylist entry for authenticated mail")
            deferred(c.ask(req()))
            eq(c.ask(req(client_address="198.51.100.66", sasl_username="alice")),
               "REJECT 5.7.1 Client blocked by local policy")


def test_non_rcpt_state_not_greylisted():
    rules = greylist_rule(delay=2, window=6)
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            eq(c.ask(req(protocol_state="DATA")), "DUNNO")
            eq(c.ask(req(protocol_state="END-OF-MESSAGE", queue_id="4ABC")), "DUNNO")
        eq(len(triplet_keys(r)), 0)


def test_greylist_memory_small_sample():
    """A small run of the memory measurement (tests/tools/greylist-memory.py
    does 100,000): per-entry memory stays well under 200 bytes."""
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools",
                        "greylist-memory.py")
    spec = importlib.util.spec_from_file_location("greylist_memory", path)
    gm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gm)
    per = gm.measure(3000, conns=4, quiet=True)
    check(0 < per < 200, "bytes per greylist entry: %.1f" % per)


def test_old_format_entries_are_read_and_moved():
    """A triplet key of the old format (one string key per triplet) is still
    honoured until it expires, and moved into its bucket when read."""
    from harness import hash64, GREYLIST_SEED
    with Redis() as r:
        # an installation of the old version: its keys are there first
        now = int(r.cmd("TIME")[0])
        old = lambda s, rc: b"t:g{c00002}" + hash64(
            s.encode() + b"\0" + rc.encode(), GREYLIST_SEED).to_bytes(8, "big")
        r.cmd("SET", old("alice@sender.test", "waited@example.net"), str((now - 10) * 2), "EX", "600")
        r.cmd("SET", old("alice@sender.test", "passed@example.net"), str((now - 99999) * 2 + 1),
              "EX", "600")
        r.cmd("SET", old("alice@sender.test", "early@example.net"), str((now - 1) * 2), "EX", "600")
        with Policyd(redis=r, rules=greylist_rule(delay=5, window=600)) as p, p.client() as c:
            check(c.ask(req(recipient="waited@example.net")).startswith("PREPEND X-Greylist"),
                  "an old waiting entry past the delay passes")
            eq(c.ask(req(recipient="passed@example.net")), "DUNNO", "an old passed entry is known")
            check(c.ask(req(recipient="early@example.net")).startswith("DEFER_IF_PERMIT"),
                  "an old entry within the delay is still early")
            eq(c.ask(req(recipient="passed@example.net")), "DUNNO", "known from its bucket now")
        eq([k for k in r.keys("t:*") if len(k) > len("t:g{xx}yy")], [],
           "the old keys were moved into buckets")
        eq(len(greylist_triplets(r)), 3, "three triplets in buckets")


def calls(r, command):
    """how often Redis ran command (INFO commandstats)"""
    m = re.search(r"cmdstat_%s:calls=(\d+)" % command, r.cmd("INFO", "commandstats"))
    return int(m.group(1)) if m else 0


@expects_on_error
def test_decisions_of_one_turn_share_one_script_call():
    """Six new triplets in one write: Redis runs one EVALSHA for all of
    them (INFO commandstats) and each is deferred; their six retries after
    the delay, in one write, pass once each. A bucket that holds a value
    of the wrong type answers on_error for its triplet alone (a log line
    says so); the other triplet of that batch is decided as usual."""
    from harness import encode
    rules = greylist_rule(delay=60, window=600, cache=0,
                          extra='on_error = "DEFER_IF_PERMIT 4.3.0 greylist unavailable";')
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            deferred(c.ask(req(recipient="first@example.net")))
            wait_for(lambda: calls(r, "scan") >= 1, 5, what="a SCAN step")
            time.sleep(0.1)
            r.cmd("CONFIG", "RESETSTAT")
            six = [req(recipient="b%d@example.net" % i) for i in range(6)]
            c.send_raw(b"".join(encode(q) for q in six))
            for i in range(6):
                deferred(c.reply())
            eq(calls(r, "evalsha"), 1, "one script call for the six decisions")
            r.age_greylist(61)
            c.send_raw(b"".join(encode(q) for q in six))
            for i in range(6):
                a = c.reply()
                check(PREPEND_RE.match(a), "retry %d passes: %r" % (i, a))
            eq(calls(r, "evalsha"), 2, "and one for the six retries")
            # a poisoned bucket, and a triplet of another bucket beside it
            bucket = greylist_key("c00002", "alice@sender.test", "x@example.net")[0]
            other = next("y%d@example.net" % i for i in range(100)
                         if greylist_key("c00002", "alice@sender.test",
                                         "y%d@example.net" % i)[0] != bucket)
            r.cmd("DEL", bucket)
            r.cmd("SET", bucket, "not a hash")
            start = len(p.log())
            c.send_raw(encode(req(recipient="x@example.net")) +
                       encode(req(recipient=other)))
            eq(c.reply(), "DEFER_IF_PERMIT 4.3.0 greylist unavailable", "the poisoned bucket")
            deferred(c.reply())
            eq(calls(r, "evalsha"), 3, "the two in one call")
            p.wait_log(r"greylist script failed on this key", start=start)


def test_greylist_and_ratelimit_of_one_turn_make_one_call_each():
    """Greylist and ratelimit decisions interleaved in one write (as a
    mixed load has them): one EVALSHA per script, not one per change."""
    from harness import encode
    rules = ('rules = (\n'
             '  { name = "rate"; match = { authenticated = true; }; check = "ratelimit";\n'
             '    key = "sasl_username"; windows = ( { limit = 100; seconds = 3600; } ); },\n'
             '  { name = "greylist"; match = { authenticated = false; }; check = "greylist";\n'
             '    delay = 60; retry_window = 600; local_cache = 0; }\n'
             ');\n')
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            deferred(c.ask(req(recipient="first@example.net")))
            eq(c.ask(req(sasl_username="u@example.net", sasl_method="PLAIN")), "DUNNO", "warm-up")
            wait_for(lambda: calls(r, "scan") >= 1, 5, what="a SCAN step")
            time.sleep(0.1)
            r.cmd("CONFIG", "RESETSTAT")
            qs = []
            for i in range(4):
                qs.append(req(recipient="g%d@example.net" % i))
                qs.append(req(sasl_username="u%d@example.net" % i, sasl_method="PLAIN"))
            c.send_raw(b"".join(encode(q) for q in qs))
            for i in range(4):
                deferred(c.reply())
                eq(c.reply(), "DUNNO", "authenticated %d" % i)
            eq(calls(r, "evalsha"), 2, "one script call per script")


def test_old_format_keys_are_looked_for_once():
    """Each instance looks through the database for old-format keys (SCAN,
    in the background); while it has not seen a whole pass without one,
    a new triplet also reads its old key (GET). A database without any:
    new triplets cost no GET. One with an old key of another triplet (it
    lives until it expires): every new triplet still looks."""
    from harness import hash64, GREYLIST_SEED
    rules = greylist_rule(delay=60, window=600)

    def five_new_triplets(r, c):
        """after the first request's look through the database: the
        commands of five new triplets"""
        deferred(c.ask(req(recipient="first@example.net")))
        wait_for(lambda: calls(r, "scan") >= 1, 5, what="a SCAN step")
        time.sleep(0.1)
        r.cmd("CONFIG", "RESETSTAT")
        for i in range(5):
            deferred(c.ask(req(recipient="new%d@example.net" % i)))
        eq(calls(r, "evalsha"), 5, "one script call each")
        eq(calls(r, "scan"), 0, "the look through the database is over")

    with Redis() as r, Policyd(redis=r, rules=rules) as p, p.client() as c:
        five_new_triplets(r, c)
        eq(calls(r, "get"), 0, "no old-format key read")
    with Redis() as r:
        key = b"t:g{c00002}" + hash64(b"x@y.test\0z@example.net", GREYLIST_SEED).to_bytes(8, "big")
        r.cmd("SET", key, "1", "EX", "600")
        with Policyd(redis=r, rules=rules) as p, p.client() as c:
            five_new_triplets(r, c)
            eq(calls(r, "get"), 5, "an old key may exist: each new triplet looks for its own")
            eq(r.cmd("EXISTS", key), 1, "the other triplet's old key is left alone")


def test_waiting_triplet_answered_from_local_cache():
    """Once Redis answered "defer, N s left", early retries of that triplet
    are answered from memory (no Redis command), the seconds counting down;
    for at most local_cache seconds, and never to a second before the delay
    ends: then Redis is asked again and the retry passes."""
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=30, window=600)) as p:
        with p.client() as c:
            eq(deferred(c.ask(req())), 30)
            n = calls(r, "evalsha")
            for _ in range(3):
                left = deferred(c.ask(req(policyd_explain="yes")))
                check(28 <= left <= 30, "seconds left: %d" % left)
            check(any("early retry" in l and "(local cache)" in l for l in c.last_lines),
                  c.last_lines)
            eq(calls(r, "evalsha"), n, "answered without Redis")
            eq(deferred(c.ask(req(recipient="other@example.net"))), 30, "another triplet")
            eq(calls(r, "evalsha"), n + 1, "which Redis answers")
    # a delay of 4 s: the answer is kept for 2 s at most, so the retry after
    # the delay reaches Redis (and passes) whatever local_cache says
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=4, window=600,
                                                            extra="local_cache = 60;")) as p:
        with p.client() as c:
            eq(deferred(c.ask(req())), 4)
            deferred(c.ask(req()))
            time.sleep(4.3)
            check(c.ask(req()).startswith("PREPEND X-Greylist"), "passes after the delay")


def test_waiting_cache_with_two_instances():
    """Instance A remembers a waiting triplet; instance B passes another
    triplet of the same network, which auto-whitelists it. A's answer may
    stay "defer" for up to local_cache seconds (never a pass it should not
    give), then A asks Redis and passes it too."""
    rules_a = greylist_rule(delay=20, window=600, awl=1, extra="local_cache = 3;")
    rules_b = greylist_rule(delay=20, window=600, awl=1, cache=0)
    with Redis() as r, Policyd(redis=r, rules=rules_a) as a, Policyd(redis=r, rules=rules_b) as b:
        with a.client() as ca, b.client() as cb:
            eq(deferred(ca.ask(req(recipient="t1@example.net"))), 20)
            eq(deferred(cb.ask(req(recipient="t2@example.net"))), 20)
            r.age_greylist(21)          # both triplets waited long enough, as Redis sees it
            check(cb.ask(req(recipient="t2@example.net")).startswith("PREPEND"), "B passes t2")
            eq(cb.ask(req(recipient="t3@example.net")), "DUNNO", "the /24 is auto-whitelisted")
            t0 = time.monotonic()
            answers = []

            def passes():
                answers.append(ca.ask(req(recipient="t1@example.net")))
                return answers[-1] == "DUNNO"
            wait_for(passes, 10, step=0.2, what="A passes t1")
            check(all(x.startswith("DEFER_IF_PERMIT") for x in answers[:-1]),
                  "before that A only defers: %r" % answers)
            check(time.monotonic() - t0 < 3 + 2.5, "within local_cache (3 s): %.1f s" % (
                time.monotonic() - t0))


def test_counter_read_once_per_local_cache():
    """With auto_whitelist, the client's counter is read from Redis once;
    while the instance knows the network is below the threshold, new
    triplets do not read it again (local_cache = 0: every time)."""
    # the warm-up request taught it: one HGET (the triplet) per new triplet
    for cache, hgets in ((None, 5), (0, 5 * 2)):
        with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=600, awl=5,
                                                                cache=cache)) as p:
            with p.client() as c:
                deferred(c.ask(req(recipient="warm@example.net")))
                time.sleep(0.1)
                r.cmd("CONFIG", "RESETSTAT")
                for i in range(5):
                    deferred(c.ask(req(recipient="new%d@example.net" % i)))
                eq(calls(r, "hget"), hgets, "HGETs with local_cache %s" % cache)


def known_from_redis(c, attrs):
    """Ask with policyd_explain: the answer must be DUNNO from Redis's
    "known triplet" (status 3 of greylist.lua), not from the local cache."""
    eq(c.ask(dict(attrs, policyd_explain="yes")), "DUNNO", "known triplet")
    trace = [l for l in c.last_lines if l.startswith("trace=")]
    check(any("known triplet, first seen" in l for l in trace) and
          not any("local cache" in l for l in trace), "answered by Redis: %r" % trace)


def test_passed_triplet_is_known_to_every_instance():
    """A triplet that passed through one instance is known to another,
    which has never seen it (its local cache is empty): the state is Redis's.
    (a: local_cache = 0, since it ages the triplet in Redis)"""
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=600, cache=0)) as a, \
            Policyd(redis=r, rules=greylist_rule(delay=60, window=600)) as b:
        with a.client() as ca, b.client() as cb:
            deferred(ca.ask(req()))
            r.age_greylist(61)
            check(ca.ask(req()).startswith("PREPEND X-Greylist"), "passes through a")
            known_from_redis(cb, req())
            eq(cb.ask(req(sender="Alice+news@Sender.test")), "DUNNO",
               "the same triplet (sender normalised), now from b's cache")


def test_passed_triplet_survives_a_restart():
    with Redis() as r:
        with Policyd(redis=r, rules=greylist_rule(delay=60, window=600, cache=0)) as p:
            with p.client() as c:
                deferred(c.ask(req()))
                r.age_greylist(61)
                check(c.ask(req()).startswith("PREPEND X-Greylist"), "passes")
        with Policyd(redis=r, rules=greylist_rule(delay=60, window=600)) as p:
            with p.client() as c:
                known_from_redis(c, req())
                deferred(c.ask(req(recipient="other@example.net")))


def test_passed_triplet_seen_again_lives_another_max_age():
    """max_age = 3600: a passed triplet seen again after 3000 s is renewed
    (forgotten only after max_age unseen), so it is still known 3000 s
    later; after 3601 s unseen it is a new triplet. local_cache = 0: every
    answer comes from Redis."""
    rules = greylist_rule(delay=60, window=600, extra="max_age = 3600; local_cache = 0;")
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            deferred(c.ask(req()))
            r.age_greylist(61)
            check(c.ask(req()).startswith("PREPEND X-Greylist"), "passes")
            r.age_greylist(3000)
            known_from_redis(c, req())
            r.age_greylist(3000)
            known_from_redis(c, req())
            r.age_greylist(3601)
            deferred(c.ask(req()))


def evalsha_calls(r):
    m = re.search(r"^cmdstat_evalsha:calls=(\d+)", r.cmd("INFO", "commandstats"), re.M)
    return int(m.group(1)) if m else 0


@expects_on_error
def test_local_cache_answers_passed_triplets_without_redis():
    """A passed triplet is answered from the local cache for local_cache
    seconds: no script runs, and with Redis stopped (SIGSTOP) it still
    passes at once while a new triplet gets on_error; local_cache = 0 asks
    Redis every time (and none of its answers is an on_error one)."""
    import signal as sig
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=600,
                                                            extra="local_cache = 30;")) as p:
        # first seen through another instance: p's memory of a waiting
        # triplet would not see the ageing in Redis
        with Policyd(redis=r, rules=greylist_rule(delay=60, window=600, cache=0)) as q, \
                q.client() as cq:
            deferred(cq.ask(req()))
        with p.client() as c:
            r.age_greylist(61)
            check(c.ask(req()).startswith("PREPEND"), "the retry passes (and is cached)")
            before = calls(r, "evalsha")
            eq(c.ask(req(policyd_explain="yes")), "DUNNO", "known")
            check(any("(local cache)" in l for l in c.last_lines), c.last_lines)
            eq(calls(r, "evalsha"), before, "answered without Redis")
            before = evalsha_calls(r)
            eq(c.ask(req(policyd_explain="yes")), "DUNNO", "known")
            check(any("(local cache)" in l for l in c.last_lines), c.last_lines)
            eq(evalsha_calls(r), before, "no script ran for the cached triplet")
            os.kill(r.proc.pid, sig.SIGSTOP)
            try:
                eq(c.ask(req()), "DUNNO", "answered from the cache with Redis stopped")
                eq(c.ask(req(recipient="new@example.net")), "DUNNO",
                   "a new triplet needs Redis: on_error (DUNNO)")
            finally:
                os.kill(r.proc.pid, sig.SIGCONT)
        p.wait_log(r"on_error=yes")
    with Redis() as r, Policyd(redis=r, rules=greylist_rule(delay=60, window=600,
                                                            extra="local_cache = 0;"),
                               expect_on_error=False) as p:
        with p.client() as c:
            deferred(c.ask(req()))
            r.age_greylist(61)
            check(c.ask(req()).startswith("PREPEND"), "passes")
            before = evalsha_calls(r)
            known_from_redis(c, req())
            known_from_redis(c, req())
            eq(evalsha_calls(r), before + 2, "a script per answer")
