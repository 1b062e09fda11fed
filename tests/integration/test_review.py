"""Review of issue 11 and the SQL/ctl merges: defects found by an
adversarial read, each shown by a test that failed before its fix.

Greylist tests that age entries in Redis (r.age_greylist) keep the
default local_cache: the point is that what policyd remembers must never
outlive what Redis would still answer. With max_age = 2 no pass may be
remembered at all (it could be dead in Redis two seconds later), so
aging Redis past max_age must be seen at once."""
import os, re, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Redis, Policyd, req, check, eq, wait_for, expects_on_error  # noqa: E402

DEFER_RE = re.compile(r"^DEFER_IF_PERMIT 4\.7\.1 Greylisted, please try again in (\d+) seconds$")


def gl_rule(delay=2, window=10, max_age=2, awl=0, extra=""):
    return ('rules = ( { name = "greylist"; check = "greylist"; delay = %d; '
            'retry_window = %d; max_age = %d; auto_whitelist = %d; header = false; %s } );'
            % (delay, window, max_age, awl, extra))


def deferred(a, what=""):
    check(DEFER_RE.match(a), "%s: expected a greylist defer, got %r" % (what, a))


def test_review_greylist_cached_pass_not_beyond_max_age():
    """A passed triplet remembered locally (local_cache, default 10 s) must
    not pass once Redis holds it dead (older than max_age): status 2 (first
    pass) and status 3 (known triplet) alike."""
    with Redis() as r, Policyd(redis=r, rules=gl_rule()) as p1, \
            Policyd(redis=r, rules=gl_rule()) as p2:
        with p1.client() as c1, p2.client() as c2:
            deferred(c1.ask(req()), "new triplet")
            r.age_greylist(3)
            eq(c1.ask(req()), "DUNNO", "first pass after the delay")
            eq(c2.ask(req()), "DUNNO", "known triplet (status 3) on a second instance")
            r.age_greylist(3)      # the entry is older than max_age now
            deferred(c2.ask(req()), "instance that saw the known triplet")
            # now a new waiting triplet in Redis: an early retry
            deferred(c1.ask(req()), "instance that saw the first pass")


def test_review_greylist_cached_awl_not_beyond_max_age():
    """An auto-whitelisted client network remembered locally must not pass
    once its counter is dead in Redis (last pass older than max_age): the
    client learned from a first pass (status 2) and from Redis's
    auto-whitelist answer (status 4)."""
    rules = gl_rule(awl=1)
    with Redis() as r, Policyd(redis=r, rules=rules) as p1, \
            Policyd(redis=r, rules=rules) as p2:
        with p1.client() as c1, p2.client() as c2:
            deferred(c1.ask(req(recipient="a@example.net")), "new triplet")
            r.age_greylist(3)
            eq(c1.ask(req(recipient="a@example.net")), "DUNNO", "first pass")
            eq(c2.ask(req(client_address="192.0.2.20", recipient="b@example.net")),
               "DUNNO", "auto-whitelisted network (answer from Redis)")
            r.age_greylist(3)      # the counter's last pass is older than max_age
            deferred(c1.ask(req(client_address="192.0.2.30", recipient="c@example.net")),
                     "instance that saw the pass")
            deferred(c2.ask(req(client_address="192.0.2.40", recipient="d@example.net")),
                     "instance that saw the auto-whitelist answer")


# -------------------------- sender_login protect_domains from SQL: many labels --

def protect_many_labels(kind):
    """A sender domain of more labels than an SQL map is asked keys
    (MAPKEYS_MAX) under a protected ".parent" must be refused as the file
    form refuses it, not answered on_error (an attacker's choice of
    sender would turn the refusal into on_error's DUNNO)."""
    import test_sqlmaps as sm
    deep = "a." * 45 + "hosted.example"
    with sm.server(kind) as srv:
        sm.load_rows(srv, ["CREATE TABLE domain (domain varchar(255) PRIMARY KEY, "
                           "active smallint NOT NULL DEFAULT 1)",
                           "INSERT INTO domain (domain) VALUES ('.hosted.example')"],
                     ["domain"])
        rules = """rules = (
  { name = "file"; check = "sender_login"; match = { policy_context = "file"; };
    protect_domains = [ ".hosted.example" ]; },
  { name = "sql"; check = "sender_login"; match = { policy_context = "sql"; };
    protect_domains = [ "%s:domains.cf" ]; },
  { name = "rest"; action = "OK"; }
);
""" % kind
        fs = {"domains.cf": sm.table_file(kind, srv, "SELECT domain FROM domain "
                                          "WHERE domain='%s' AND active = '1'")}
        with Redis() as r, Policyd(redis=r, rules=rules, files=fs) as p:
            with p.client() as c:
                want = ("REJECT 5.7.1 Sender address rejected: authentication required "
                        "for <x@%s>" % deep)
                eq(c.ask(req(sender="x@" + deep, policy_context="file")), want,
                   "the file form")
                eq(c.ask(req(sender="x@mx.hosted.example", policy_context="sql")),
                   want.replace(deep, "mx.hosted.example"), "SQL: a few labels")
                eq(c.ask(req(sender="x@" + deep, policy_context="sql")), want,
                   "SQL: more labels than keys")


def test_review_pgsql_protect_domains_many_labels():
    protect_many_labels("pgsql")


def test_review_mysql_protect_domains_many_labels():
    protect_many_labels("mysql")


def access_many_labels(kind):
    """The same for an access deny list in SQL keyed by helo_name or
    sender (the client chooses both): a name deeper than 40 labels under a
    listed .parent is refused as the file form refuses it."""
    import test_sqlmaps as sm
    deep = "a." * 45 + "bad.example"
    with sm.server(kind) as srv:
        sm.load_rows(srv, ["CREATE TABLE helo (name varchar(255) PRIMARY KEY, "
                           "action varchar(255) NOT NULL)",
                           "INSERT INTO helo (name, action) VALUES "
                           "('.bad.example', 'REJECT bad HELO')"], ["helo"])
        rules = """rules = (
  { name = "helo"; check = "access"; key = "helo_name"; map = "%(k)s:helo.cf"; },
  { name = "sender"; check = "access"; key = "sender"; map = "%(k)s:helo.cf"; },
  { name = "rest"; action = "OK"; }
);
""" % {"k": kind}
        fs = {"helo.cf": sm.table_file(kind, srv, "SELECT action FROM helo WHERE name='%s'")}
        with Redis() as r, Policyd(redis=r, rules=rules, files=fs) as p:
            with p.client() as c:
                eq(c.ask(req(helo_name="mx.bad.example")), "REJECT bad HELO", "a few labels")
                eq(c.ask(req(helo_name=deep)), "REJECT bad HELO", "more labels than keys")
                eq(c.ask(req(sender="x@" + deep)), "REJECT bad HELO",
                   "a sender domain of more labels than keys")
                eq(c.ask(req(sender="x@a.good.example")), "OK", "not listed")


def test_review_pgsql_access_many_labels():
    access_many_labels("pgsql")


def test_review_mysql_access_many_labels():
    access_many_labels("mysql")


# ------------------------- ratelimit: what an instance knows, after Redis went back --

def rl_rule(windows, extra=""):
    ws = ", ".join("{ limit = %d; seconds = %d; }" % w for w in windows)
    return ('rules = (\n  { name = "user-rate"; match = { authenticated = true; }; '
            'check = "ratelimit"; key = [ "sasl_username" ];\n    windows = ( %s ); %s }\n);\n'
            % (ws, extra))


def auth(**kw):
    return req(sasl_username="alice@example.net", sasl_method="PLAIN", **kw)


def restore(r):
    """Redis back from its last snapshot (dump.rdb), as after a restart or
    a failover to a replica that had not seen the last writes; returns
    once policyd is connected again (its commands wait for the setup)"""
    r.stop()
    r.start()

    def others():
        text = r.cmd("CLIENT", "LIST")
        text = text.decode() if isinstance(text, bytes) else text
        return [l for l in text.splitlines() if "cmd=client|list" not in l]
    wait_for(others, 10, what="policyd connected to the new redis-server")


def test_review_ratelimit_known_network_forgotten_when_redis_goes_back():
    """A network this instance knew in a login's set is looked up again
    once the connection to Redis was made anew: the Redis that answers
    now may hold an older set without it (a restart from a snapshot, a
    failover to a replica behind), and the login exceeds max_networks."""
    rules = rl_rule([(1000, 3600)], 'max_networks = 1; networks_window = 3600;')
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            eq(c.ask(auth(client_address="203.0.113.9")), "DUNNO", "network 2")
            eq(r.cmd("SAVE"), "OK")                # the snapshot: { network 2 }
            nkey = r.keys("t:n{*")[0]
            eq(r.cmd("DEL", nkey), 1, "reset")
            eq(c.ask(auth(client_address="198.51.100.7")), "DUNNO",
               "network 1, alone in the set now (this instance knows it)")
        restore(r)
        eq(r.cmd("SMEMBERS", nkey), ["cb0071"], "the set went back to network 2")
        with p.client() as c:
            a = c.ask(auth(client_address="198.51.100.7"))
            check(a.startswith("HOLD Compromised"),
                  "network 1 besides network 2 in the set: held, got %r" % a)


def test_review_ratelimit_known_expiry_forgotten_when_redis_goes_back():
    """The same for a key's expiry: after Redis went back to a snapshot
    whose key expires sooner than the one this instance saw set, a charge
    sets the expiry again (else the key, and the rate, could vanish while
    its TATs lie ahead)."""
    import time
    rules = rl_rule([(1000, 3600)])
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            eq(c.ask(auth()), "DUNNO", "first charge")
            eq(r.cmd("SAVE"), "OK")                # the key, expiring in an hour
            rkey = r.keys("t:r{*")[0]
            time.sleep(2.5)
            eq(r.cmd("DEL", rkey), 1, "reset")
            eq(c.ask(auth()), "DUNNO", "a charge that sets the expiry 2.5 s later")
        restore(r)
        before = r.cmd("PTTL", rkey)
        check(0 < before <= 3600 * 1000 - 2000, "the snapshot's expiry: %r" % before)
        with p.client() as c:
            eq(c.ask(auth()), "DUNNO", "a charge on the key of the snapshot")
        after = r.cmd("PTTL", rkey)
        check(after > before, "the expiry was set again (PTTL %r, was %r)" % (after, before))


# --------------------- reloads that replace the state layer, under pipelined load --

@expects_on_error
def test_review_reload_switching_redis_under_pipelined_load():
    """Each reload names the other of two Redis servers, so the state layer
    is replaced with commands queued for the end of the loop turn, waiting
    for a reply, or waiting for the setup; pipelined greylist and ratelimit
    requests keep coming. Every request gets an answer, no connection is
    dropped, and (under ASan) nothing is used after it is freed."""
    import json
    import signal
    import subprocess
    import test_ops
    load = test_ops.build_policy_load()
    rules = ('rules = ( { name = "rate"; match = { authenticated = true; }; '
             'check = "ratelimit"; key = [ "sasl_username" ]; '
             'windows = ( { limit = 100000; seconds = 3600; } ); max_networks = 50; }, '
             '{ name = "grey"; match = { authenticated = false; }; check = "greylist"; '
             'delay = 300; retry_window = 600; auto_whitelist = 3; } );')

    def processed(r):
        return int(re.search(r"total_commands_processed:(\d+)",
                             r.cmd("INFO", "stats")).group(1))

    def block(r):
        return ('redis = { address = "%s"; timeout_ms = 2000; connect_timeout_ms = 500; '
                'prefix = "t:"; };' % r.address)
    with Redis() as ra, Redis() as rb, Policyd(redis=ra, rules=rules) as p:
        proc = subprocess.Popen([load, "-c", "6", "-p", "4", "-d", "600", "-m", "mixed",
                                 "--auth-fraction", "0.5", "--roam", "0.3", "--json",
                                 "127.0.0.1:%d" % p.port],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: ra.cmd("DBSIZE") > 10, 30, what="load running")
            for gen in range(1, 11):
                r, old = (rb, ra) if gen % 2 else (ra, rb)
                if gen % 4 == 1:
                    old.pause()        # commands wait for replies at the reload
                p.write_config(rules, redis_block=block(r))
                p.signal(signal.SIGHUP)
                p.wait_log(r"reloaded: generation %d," % (gen + 1), 15)
                old.resume()
                n = processed(r)
                wait_for(lambda: processed(r) > n + 50, 15,
                         what="commands on the new Redis after reload %d" % gen)
            alive = proc.poll() is None
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        res = json.loads(proc.communicate(timeout=60)[0].decode().strip().split("\n")[-1])
        check(alive and res["requests"] > 100, "the load ran throughout: %s" % res)
        eq((res["errors"]["total"], res["conns"]["server_closes"]), (0, 0),
           "(failed requests, connections dropped by policyd)")
        with p.client() as c:
            check(DEFER_RE.match(c.ask(req(recipient="after@example.net"))),
                  "greylisting after the last reload")


# --------------------------------------- policyctl on the daemon's state layer --

def test_review_policyctl_ratelimit_show_eight_windows():
    """policyctl ratelimit show of a rule with RL_MAX_WIN (8) windows: the
    script answers 2 + 2 * 8 integers, more than a store reply's v[]
    holds (STORE_MAX_INTS); every window is shown."""
    import test_policyctl as tp
    windows = [(10 * (i + 1), 60 * (i + 1)) for i in range(8)]
    rules = rl_rule(windows)
    with Redis() as r, Policyd(redis=r, rules=rules) as p:
        with p.client() as c:
            for _ in range(3):
                eq(c.ask(auth()), "DUNNO", "charged")
        rc, out, err = tp.ctl("-c", p.conf, "ratelimit", "show", "user-rate",
                              "alice@example.net")
        eq(rc, 0, "policyctl ratelimit show: %s%s" % (out, err))
        for limit, secs in windows:
            check(re.search(r"^  %d recipients per .* \(%d s\): used 3, %d left" %
                            (limit, secs, limit - 3), out, re.M),
                  "window %d/%d shown: %s" % (limit, secs, out))


def teardown_module():
    """the SQL servers test_sqlmaps (imported above) started for this module"""
    sm = sys.modules.get("test_sqlmaps")
    if sm is not None:
        sm.teardown_module()
