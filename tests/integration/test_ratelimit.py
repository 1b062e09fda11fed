"""ratelimit: exact limits across instances, windows, END-OF-MESSAGE accounting,
overrides, actions, the compromised-account signal, Redis down, refunds."""
import os
import re
import shutil
import subprocess
import tempfile
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (Redis, Policyd, req, check, eq, wait_for,  # noqa: E402
                     cleanup_all, expects_on_error, run_checked, encode)


def rule(windows, key='"sasl_username"', count="recipients", extra="", match="authenticated = true;",
         name="user-rate"):
    ws = ", ".join("{ limit = %d; seconds = %d; }" % w for w in windows)
    return ('rules = (\n  { name = "%s"; match = { %s }; check = "ratelimit"; key = [ %s ];\n'
            '    count = "%s"; windows = ( %s ); %s }\n);\n' % (name, match, key, count, ws, extra))


def auth(login="alice@example.net", **kw):
    return req(sasl_username=login, sasl_method="PLAIN", **kw)


def eom(login="alice@example.net", size=1000, rcpts=1, **kw):
    return auth(login, protocol_state="END-OF-MESSAGE", recipient="", size=str(size),
                recipient_count=str(rcpts), queue_id="4FD3A1234", **kw)


def test_exactness_4_instances_40_connections():
    """2,000 requests for one login over 40 connections to 4 instances: exactly 1,000 pass."""
    rules = rule([(1000, 86400)])
    with Redis() as r:
        ps = [Policyd(redis=r, rules=rules, timeout_ms=2000) for _ in range(4)]
        for p in ps:
            p.__enter__()
        try:
            counts = {}
            lock = threading.Lock()
            errors = []

            def worker(i):
                got = {}
                try:
                    with ps[i % 4].client(timeout=20) as c:
                        for j in range(50):
                            a = c.ask(auth(recipient="r%d.%d@example.org" % (i, j)))
                            w = a.split(" ")[0]
                            got[w] = got.get(w, 0) + 1
                except Exception as e:  # reported below
                    errors.append(repr(e))
                with lock:
                    for k, v in got.items():
                        counts[k] = counts.get(k, 0) + v

            t0 = time.monotonic()
            ts = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            dt = time.monotonic() - t0
            eq(errors, [], "client errors")
            print("# exactness: 2000 requests in %.2fs (%.0f req/s), %r" % (dt, 2000 / dt, counts))
            eq(counts.get("DUNNO", 0), 1000, "accepted")
            eq(counts.get("DEFER_IF_PERMIT", 0), 1000, "deferred")
        finally:
            cleanup_all(ps)


def test_default_defer_text_and_window_refill():
    """3 recipients per 5 minutes: one comes back every 100 s. Time passes
    by moving the stored arrival times back (Redis.age_ratelimit), so the
    margins are tens of seconds, not a sleep's luck."""
    with Redis() as r, Policyd(redis=r, rules=rule([(3, 300)])) as p:
        with p.client() as c:
            for i in range(3):
                eq(c.ask(auth()), "DUNNO", "request %d within the limit" % i)
            a = c.ask(auth())
            m = re.match(r"DEFER_IF_PERMIT 4\.7\.1 Rate limit exceeded for alice@example\.net: "
                         r"3 recipients per 5 minutes; try again in (\d+) seconds$", a)
            check(m, "over the limit: %r" % a)
            check(90 <= int(m.group(1)) <= 100, "the next unit in ~100 s: %r" % a)
            eq(c.ask(auth("bob@example.net")), "DUNNO", "another login has its own budget")
            eq(c.ask(auth("ALICE@Example.NET")).split(" ")[0], "DEFER_IF_PERMIT",
               "login case does not matter")
            r.age_ratelimit(60)
            check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "nothing back after 60 s")
            r.age_ratelimit(41)     # 101 s: one recipient frees every 100 s
            eq(c.ask(auth()), "DUNNO", "budget comes back as time passes")
            check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "and only that much")
            r.age_ratelimit(301)
            for i in range(3):
                eq(c.ask(auth()), "DUNNO", "full budget after the window %d" % i)
            check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "burst over the limit refused")
        keys = r.cmd("KEYS", "t:r{*}")
        eq(len(keys), 1, "bob's key has expired with its window: %r" % keys)
        for k in keys:
            eq(len(k), len("t:r{0123456789abcdef}"), "compact key")
            ttl = r.cmd("PTTL", k)
            check(0 < ttl <= 300000, "the key expires with the window (pttl %r)" % ttl)


def test_refused_requests_do_not_consume_budget():
    """3 per hour (a unit every 20 minutes); 50 refusals; 20 minutes later
    exactly one unit is back: the refusals charged nothing."""
    with Redis() as r, Policyd(redis=r, rules=rule([(3, 3600)])) as p:
        with p.client() as c:
            for i in range(3):
                eq(c.ask(auth()), "DUNNO", "within the limit")
            for i in range(50):
                check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "refused while full %d" % i)
            r.age_ratelimit(1140)
            check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "still full after 19 minutes")
            r.age_ratelimit(61)
            eq(c.ask(auth()), "DUNNO", "one unit back after 20 minutes despite 50 refusals")
            check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "only one")


def test_arrival_times_stay_text_that_every_version_reads():
    """Two windows charged in one HSET: 4 per hour (900 s a unit, a whole
    number of ms: written as an integer) and 3 per 10 s (3333.33... ms a
    unit: written with all 17 digits). Exact either way, and the values
    stay decimal text, as older versions of the script read and write
    them (age_ratelimit rewrites them as Python floats, "….0")."""
    with Redis() as r, Policyd(redis=r, rules=rule([(4, 3600), (3, 10)])) as p:
        with p.client() as c:
            eq(c.ask(auth()), "DUNNO", "first")
            keys = r.keys("t:r{*")
            eq(len(keys), 1, "one key: %r" % keys)
            flat = r.cmd("HGETALL", keys[0])
            h = dict(zip(flat[0::2], flat[1::2]))
            check(re.fullmatch(r"\d{13}", h.get("3600", "")), "whole ms as an integer: %r" % h)
            check(re.fullmatch(r"\d{13}\.\d+", h.get("10", "")), "a fraction kept: %r" % h)
            check(abs(float(h["10"]) - float(h["3600"]) - (10000 / 3 - 900000)) < 0.001,
                  "both from one clock reading, 17 digits kept: %r" % h)
            eq(c.ask(auth()), "DUNNO", "second")
            eq(c.ask(auth()), "DUNNO", "third")
            a = c.ask(auth())
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for alice@example.net: "
                               "3 recipients per 10 seconds"), "the 10 s window is full: %r" % a)
            r.age_ratelimit(3.2)
            check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "no unit back after 3.2 s")
            r.age_ratelimit(0.2)
            eq(c.ask(auth()), "DUNNO", "one unit back after 3.4 s (one every 3.33 s)")
            r.age_ratelimit(20)
            a = c.ask(auth())
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for alice@example.net: "
                               "4 recipients per hour"), "then the hour window is full: %r" % a)


def test_messages_and_bytes_at_end_of_message():
    rules = ('rules = (\n'
             '  { name = "msgs"; match = { protocol_state = "END-OF-MESSAGE"; }; check = "ratelimit";\n'
             '    key = "sasl_username"; count = "messages"; windows = ( { limit = 2; seconds = 3600; } ); },\n'
             '  { name = "bytes"; match = { protocol_state = "END-OF-MESSAGE"; }; check = "ratelimit";\n'
             '    key = "sender"; count = "bytes"; windows = ( { limit = 1000; seconds = 3600; } );\n'
             '    exceeded_action = "REJECT"; }\n'
             ');\n')
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            eq(c.ask(eom("m@example.net", 10, rcpts=5)), "DUNNO", "message 1")
            eq(c.ask(eom("m@example.net", 10, rcpts=5)), "DUNNO", "message 2")
            eq(c.ask(eom("m@example.net", 10)),
               "DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for m@example.net: 2 messages per hour; "
               "try again in 1800 seconds", "message 3")
            eq(c.ask(auth("m@example.net")), "DUNNO", "RCPT is not counted by EOM rules")
            s = dict(sender="big@sender.test")
            eq(c.ask(eom("b1@example.net", 600, **s)), "DUNNO", "600 bytes")
            a = c.ask(eom("b2@example.net", 600, **s))
            check(a.startswith("REJECT 5.7.1 Rate limit exceeded for big@sender.test: 1000 bytes per hour"), a)
            eq(c.ask(eom("b3@example.net", 400, **s)), "DUNNO", "400 more bytes fit exactly")
            eq(c.ask(eom("b4@example.net", 0, **s)), "DUNNO", "an empty message costs nothing")
            a = c.ask(eom("b5@example.net", 5000, sender="other@sender.test"))
            # it can never fit: a permanent refusal (oversize_action), not a deferral
            check(a.startswith("552 5.3.4 Rate limit for other@sender.test is 1000 bytes per hour: "
                               "this message alone exceeds it"), a)


def test_wrong_protocol_state_is_a_load_error():
    bad = rule([(5, 60)], count="messages")
    p = Policyd(rules=bad, expect_start=False)
    try:
        cp = run_checked([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=20)
        out = cp.stdout.decode()
        check(cp.returncode != 0, "policyd -t fails: %s" % out)
        check("policyd.conf:" in out and 'count = "messages" works only at END-OF-MESSAGE' in out, out)
        bad = rule([(5, 60)], count="recipients",
                   match='protocol_state = [ "RCPT", "END-OF-MESSAGE" ];')
        p.write_config(bad)
        cp = run_checked([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=20)
        out = cp.stdout.decode()
        check(cp.returncode != 0 and 'count = "recipients" works only at RCPT' in out, out)
        p.write_config(rule([(5, 60)], extra='overrides = "ov";'))
        with open(os.path.join(p.dir, "ov"), "w") as f:
            f.write("# comment\nok@example.net 5/1h\nbad@example.net 5/x\n")
        cp = run_checked([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=20)
        out = cp.stdout.decode()
        check(cp.returncode != 0 and "/ov:3: bad window length" in out, out)
    finally:
        shutil.rmtree(p.dir, ignore_errors=True)


OVERRIDES = """# key                value
bulk@example.net       2/3600
@example.org           1/1h
vip@example.org        unlimited
big@example.net        6
"""


def test_overrides_and_inheritance():
    rules = rule([(4, 3600), (100, 86400)], extra='overrides = "ratelimit.overrides";')
    with Redis() as r, Policyd(redis=r, rules=rules, files={"ratelimit.overrides": OVERRIDES}) as p:
        with p.client() as c:
            def passes(login, n):
                got = 0
                for _ in range(n + 3):
                    if c.ask(auth(login)) == "DUNNO":
                        got += 1
                return got
            eq(passes("bulk@example.net", 2), 2, "login override 2/h")
            eq(passes("Bulk@Example.net", 0), 0, "same login, other case")
            eq(passes("carol@example.org", 1), 1, "domain override inherited")
            eq(passes("vip@example.org", 10), 13, "login override beats its domain: unlimited")
            eq(passes("big@example.net", 6), 6, "a plain number replaces every limit")
            eq(passes("dave@example.net", 4), 4, "no override: the rule's windows")
            a = c.ask(auth("bulk@example.net"))
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for bulk@example.net: "
                               "2 recipients per hour; try again in"), a)


def test_each_action():
    for extra, want in (('', "DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for "),
                        ('exceeded_action = "REJECT";', "REJECT 5.7.1 Rate limit exceeded for "),
                        ('exceeded_action = "HOLD";', "HOLD Rate limit exceeded for "),
                        ('exceeded_action = "450";', "450 4.7.1 Rate limit exceeded for "),
                        ('exceeded_action = "DEFER 4.7.2"; reply = "Slow down, %k (%l per %w, %r s)";',
                         "DEFER 4.7.2 Slow down, alice@example.net (1 per minute, ")):
        with Redis() as r, Policyd(redis=r, rules=rule([(1, 60)], extra=extra)) as p:
            with p.client() as c:
                eq(c.ask(auth()), "DUNNO", "first")
                a = c.ask(auth())
                check(a.startswith(want), "%s: %r" % (extra, a))
            p.wait_log(r"ratelimit: rule user-rate: alice@example.net reached 1 recipients per minute")


def test_compromised_account_signal():
    rules = rule([(1000, 3600)], extra='max_networks = 20; networks_window = 3600;')
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            for i in range(20):
                eq(c.ask(auth(client_address="198.51.%d.7" % i)), "DUNNO", "network %d" % (i + 1))
            eq(c.ask(auth(client_address="198.51.3.99")), "DUNNO", "a known network again")
            a = c.ask(auth(client_address="203.0.113.5"))
            eq(a, "HOLD Compromised account suspected: alice@example.net seen from 21 client "
               "networks in hour", "the 21st network")
            a = c.ask(auth(client_address="198.51.1.1"))
            check(a.startswith("HOLD Compromised"), "held for the rest of the window: %r" % a)
            for i in range(5):
                c.ask(auth(client_address="192.0.2.%d" % i, recipient="x%d@example.org" % i))
            eq(c.ask(auth("bob@example.net")), "DUNNO", "other logins unaffected")
        p.wait_log(r"ALERT: login alice@example.net seen from 21 client networks in 3600 s")
        time.sleep(0.2)
        eq(len([l for l in p.log().splitlines() if "ALERT:" in l]), 1, "alert logged once")
        eq(max(r.cmd("SCARD", k) for k in r.cmd("KEYS", "t:n{*}")), 21, "the set is bounded")


def test_networks_action_configurable():
    rules = rule([(1000, 3600)], extra='max_networks = 2; networks_window = 60; '
                 'networks_action = "REJECT 5.7.1 account %k locked (%c networks)";')
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            eq(c.ask(auth(client_address="192.0.2.1")), "DUNNO", "net 1")
            eq(c.ask(auth(client_address="192.0.2.200")), "DUNNO", "same /24")
            eq(c.ask(auth(client_address="2001:db8:1:2::1")), "DUNNO", "net 2 (IPv6 /64)")
            eq(c.ask(auth(client_address="2001:db8:1:2::ffff")), "DUNNO", "same /64")
            eq(c.ask(auth(client_address="2001:db8:1:3::1")),
               "REJECT 5.7.1 account alice@example.net locked (3 networks)", "net 3")


@expects_on_error
def test_redis_down_gives_on_error():
    with Policyd(rules=rule([(1, 60)])) as p:
        with p.client() as c:
            eq(c.ask(auth()), "DUNNO", "fail open by default")
            eq(c.ask(auth()), "DUNNO", "still open")
    with Policyd(rules=rule([(1, 60)], extra='on_error = "DEFER_IF_PERMIT 4.3.0 try later";')) as p:
        with p.client() as c:
            eq(c.ask(auth()), "DEFER_IF_PERMIT 4.3.0 try later", "fail closed by choice")
    with Redis() as r, Policyd(redis=r, rules=rule([(1, 60)]), timeout_ms=200) as p:
        with p.client() as c:
            eq(c.ask(auth()), "DUNNO", "first")
            r.pause()
            try:
                eq(c.ask(auth()), "DUNNO", "redis hung: on_error within the timeout")
            finally:
                r.resume()


def test_unauthenticated_class_and_combined_key():
    rules = ('rules = (\n'
             '  { name = "auth"; match = { authenticated = true; }; check = "ratelimit";\n'
             '    key = "sasl_username"; windows = ( { limit = 5; seconds = 3600; } ); },\n'
             '  { name = "anon"; match = { authenticated = false; }; check = "ratelimit";\n'
             '    key = [ "client_network", "sender_domain" ];\n'
             '    windows = ( { limit = 2; seconds = 3600; } ); }\n'
             ');\n')
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            eq(c.ask(req(client_address="192.0.2.1")), "DUNNO", "anon 1")
            eq(c.ask(req(client_address="192.0.2.77", sender="x+tag@Sender.TEST")), "DUNNO", "anon 2")
            a = c.ask(req(client_address="192.0.2.9"))
            eq(a, "DEFER_IF_PERMIT 4.7.1 Rate limit exceeded for 192.0.2.0/24|sender.test: "
               "2 recipients per hour; try again in 1800 seconds", "same /24 and domain")
            eq(c.ask(req(client_address="192.0.3.9")), "DUNNO", "another network")
            eq(c.ask(req(client_address="192.0.2.9", sender="a@other.test")), "DUNNO", "another domain")
            for i in range(5):
                eq(c.ask(auth()), "DUNNO", "authenticated class %d" % i)


def test_later_refusal_is_not_charged():
    rules = ('rules = (\n'
             '  { name = "user-rate"; match = { authenticated = true; }; check = "ratelimit";\n'
             '    key = "sasl_username"; windows = ( { limit = 3; seconds = 3600; } ); },\n'
             '  { name = "blocked"; match = { recipient = [ "blocked@example.org" ]; };\n'
             '    action = "REJECT 5.1.1 no such user"; },\n'
             '  { name = "held"; match = { recipient = [ "held@example.org" ]; };\n'
             '    action = "HOLD inspect"; }\n'
             ');\n')
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            for i in range(6):
                eq(c.ask(auth(recipient="blocked@example.org")), "REJECT 5.1.1 no such user",
                   "rejected by a later rule %d" % i)
            eq(c.ask(auth(recipient="held@example.org")), "HOLD inspect", "HOLD is not a refusal")
            eq(c.ask(auth()), "DUNNO", "budget 2 of 3")
            eq(c.ask(auth()), "DUNNO", "budget 3 of 3")
            check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "the held one was charged")
        with p.client() as c:
            a = c.ask(dict(auth("erin@example.net", recipient="blocked@example.org"),
                           policyd_explain="yes"))
            eq(a, "REJECT 5.1.1 no such user", "explained")
            check(any("undo: rule user-rate" in l for l in c.last_lines), repr(c.last_lines))
            for i in range(3):
                eq(c.ask(auth("erin@example.net")), "DUNNO", "erin %d" % i)


def test_notify_command_once_per_window():
    d = tempfile.mkdtemp(prefix="policyd-notify.")
    os.chmod(d, 0o777)
    out = os.path.join(d, "notified")
    rules = rule([(1, 600)], extra='notify_command = [ "/bin/sh", "-c", "echo \\"$*\\" >> %s", "notify" ];'
                 % out)
    try:
        with Redis() as r, Policyd(redis=r, rules=rules) as p:
            with p.client() as c:
                eq(c.ask(auth()), "DUNNO", "first")
                for _ in range(5):
                    check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "over")
                wait_for(lambda: os.path.exists(out), 5, what="notify output")
                for _ in range(5):      # more trips in the same window: no more notices
                    check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "over")
                time.sleep(0.5)         # a second notice would be written by now
                with open(out) as f:
                    eq(f.read(), "user-rate alice@example.net 1 600\n", "notified once")
                r.age_ratelimit(601)
                eq(c.ask(auth()), "DUNNO", "window passed")
                check(c.ask(auth()).startswith("DEFER_IF_PERMIT"), "over again")
                wait_for(lambda: open(out).read().count("\n") == 2, 5, what="second notification")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _calls(r, command):
    m = re.search(r"cmdstat_%s:calls=(\d+)" % command, r.cmd("INFO", "commandstats"))
    return int(m.group(1)) if m else 0


@expects_on_error
def test_decisions_of_one_turn_share_one_script_call():
    """Eight requests in one write, for four logins with a limit of 1 per
    hour: Redis runs one EVALSHA for all of them (INFO commandstats), each
    decision as exact as alone (the first of each login passes, its
    second is deferred: the script sees the earlier charge of the same
    batch). A login whose key holds a value of the wrong type answers
    on_error with a log line saying so, and the others of its batch are
    decided as usual."""
    logins = ["l%d@example.net" % i for i in range(4)]
    with Redis() as r, Policyd(redis=r, rules=rule([(1, 3600)], extra=
                               'on_error = "DEFER_IF_PERMIT 4.3.0 limits unavailable";')) as p:
        with p.client() as c:
            # the first request loads the scripts and the key-hash secret
            eq(c.ask(auth("warm@example.net")), "DUNNO", "warm-up")
            before = _calls(r, "evalsha")
            c.send_raw(b"".join(encode(auth(l, recipient="r%d@example.org" % k))
                                for k in range(2) for l in logins))
            got = [c.reply() for _ in range(8)]
            eq(got[:4], ["DUNNO"] * 4, "the first request of each login passes")
            for a in got[4:]:
                check(a.startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded"),
                      "the second of each login is over its limit: %r" % got)
            eq(_calls(r, "evalsha") - before, 1, "one script call for the eight decisions")
            # poison one login's key: the wrong type for the script
            r.age_ratelimit(3601)
            eq(c.ask(auth(logins[0])), "DUNNO", "l0 again after an hour")
            keys_before = set(r.keys("t:r{*"))
            eq(c.ask(auth("poisoned@example.net")), "DUNNO", "a new login")
            (pk,) = set(r.keys("t:r{*")) - keys_before
            r.cmd("DEL", pk)
            r.cmd("SET", pk, "not a hash")
            start = len(p.log())
            before = _calls(r, "evalsha")
            c.send_raw(encode(auth("poisoned@example.net")) + encode(auth(logins[1])) +
                       encode(auth(logins[0])))
            got = [c.reply() for _ in range(3)]
            eq(got[0], "DEFER_IF_PERMIT 4.3.0 limits unavailable", "the poisoned key: on_error")
            eq(got[1], "DUNNO", "l1 in the same batch is decided")
            check(got[2].startswith("DEFER_IF_PERMIT 4.7.1 Rate limit exceeded"),
                  "l0 too (charged an instant ago): %r" % got)
            eq(_calls(r, "evalsha") - before, 1, "the three in one call")
            p.wait_log(r"ratelimit script failed on this key", start=start)


def test_key_outlives_its_counters_without_an_expire_per_charge():
    """A charge sets the key's TTL to the longest window (PEXPIRE); while this
    instance knows the key lives longer than every counter it writes, it does
    not set it again. The key always outlives its counters (each window's
    TAT); a key deleted meanwhile (policyctl ratelimit reset does DEL) gets
    its TTL again with the next charge."""
    rules = rule([(1000, 60), (5000, 3600)])
    with Redis() as r, Policyd(redis=r, rules=rules) as p, p.client() as c:
        eq(c.ask(auth()), "DUNNO", "first charge")
        keys = r.keys("t:r{*")
        eq(len(keys), 1, "one key")
        key = keys[0]
        r.cmd("CONFIG", "RESETSTAT")
        for i in range(20):
            eq(c.ask(auth(recipient="u%d@example.org" % i)), "DUNNO", "charge %d" % i)
        eq(_calls(r, "evalsha"), 20, "a script call each")
        check(_calls(r, "pexpire") <= 1, "PEXPIRE at most once: %d" % _calls(r, "pexpire"))
        pttl = r.cmd("PTTL", key)
        check(3590000 < pttl <= 3600000, "TTL of the longest window: %d" % pttl)
        now = int(r.cmd("TIME")[0]) * 1000
        for f in ("60", "3600"):
            tat = float(r.cmd("HGET", key, f))
            check(tat - now < pttl, "window %s: TAT %d ms ahead, the key lives %d ms" % (
                f, tat - now, pttl))
        eq(r.cmd("DEL", key), 1, "reset")
        eq(c.ask(auth()), "DUNNO", "charged anew")
        pttl = r.cmd("PTTL", key)
        check(3590000 < pttl <= 3600000, "the TTL is set again after a reset: %d" % pttl)
        # a key whose TTL was taken away (PERSIST) is not left without one for long
        r.cmd("PERSIST", key)
        time.sleep(10.5)          # longer than this instance trusts what it saw
        eq(c.ask(auth()), "DUNNO", "charged")
        check(r.cmd("PTTL", key) > 0, "TTL set again: %d" % r.cmd("PTTL", key))


def test_known_network_not_looked_up_again_and_held_at_once():
    """A client network this instance has seen in a login's networks set is
    not looked up in it again (no SISMEMBER) while the set lives; the set is
    still counted on every request, so once another instance sees the login
    exceed max_networks, a known network is held at once too. A set deleted
    meanwhile (policyctl ratelimit reset) is filled again."""
    rules = rule([(1000, 3600)], extra='max_networks = 2; networks_window = 3600;')
    with Redis() as r, Policyd(redis=r, rules=rules) as a, Policyd(redis=r, rules=rules) as b:
        with a.client() as ca, b.client() as cb:
            eq(ca.ask(auth(client_address="198.51.100.7")), "DUNNO", "network 1 on A")
            r.cmd("CONFIG", "RESETSTAT")
            for i in range(5):
                eq(ca.ask(auth(client_address="198.51.100.%d" % (10 + i))), "DUNNO",
                   "network 1 again")
            eq(_calls(r, "sismember"), 0, "a known network is not looked up")
            eq(_calls(r, "scard"), 5, "but the set is counted each time")
            eq(cb.ask(auth(client_address="203.0.113.9")), "DUNNO", "network 2 on B")
            check(cb.ask(auth(client_address="192.0.2.9")).startswith("HOLD Compromised"),
                  "network 3 on B: held")
            check(ca.ask(auth(client_address="198.51.100.7")).startswith("HOLD Compromised"),
                  "network 1 on A is held at once")
            nkey = r.keys("t:n{*")[0]
            eq(r.cmd("DEL", nkey), 1, "reset")
            eq(ca.ask(auth(client_address="198.51.100.7")), "DUNNO", "allowed again")
            eq(r.cmd("SCARD", nkey), 1, "and counted again")
            check(r.cmd("TTL", nkey) > 3590, "with the window's TTL")


def test_lower_max_networks_after_a_reload_holds_a_known_network():
    """An instance that knows a login's networks is reloaded with a lower
    max_networks: its next request from a known network is held at once;
    the other instance, still on the old limit (which the login is
    within), goes on allowing it."""
    old = rule([(1000, 3600)], extra='max_networks = 3; networks_window = 3600;')
    new = rule([(1000, 3600)], extra='max_networks = 1; networks_window = 3600;')
    with Redis() as r, Policyd(redis=r, rules=old) as a, Policyd(redis=r, rules=old) as b:
        with a.client() as ca, b.client() as cb:
            eq(ca.ask(auth(client_address="198.51.100.7")), "DUNNO", "network 1 on A")
            eq(cb.ask(auth(client_address="203.0.113.9")), "DUNNO", "network 2 on B")
            eq(ca.ask(auth(client_address="198.51.100.7")), "DUNNO", "network 1 known on A")
            check("reloaded" in a.reload(new), "reloaded")
            check(ca.ask(auth(client_address="198.51.100.7")).startswith("HOLD Compromised"),
                  "network 1 on A: held under the new limit")
            eq(cb.ask(auth(client_address="203.0.113.9")), "DUNNO",
               "B, on the old limit of 3, allows 2 networks")
