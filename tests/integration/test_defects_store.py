"""Issue 10, the state layer's items, against real redis-servers.

4. No command runs before the connection's setup (AUTH, SELECT, ROLE)
   has succeeded: a bad database number or a failing AUTH gives on_error
   answers and writes nothing to database 0, with standalone, Sentinel and
   Cluster; the failure is logged once per outage; the right settings work
   (a command that arrives during the setup waits for it).
15. redis.prefix is bounded (64 bytes, printable, no spaces) with a
   file:line error at policyd -t; policyctl with a long prefix does not
   crash, and a 64-byte prefix with glob characters works end to end.
16. Cluster: "MOVED slot :port" (Redis 7, endpoint unknown) and NIL hosts
   in CLUSTER SLOTS are reached on the host of the answering connection.

The race of item 4 is made deterministic with SIGSTOP: a stopped
redis-server still completes TCP connects (the kernel backlog), so
policyd's new connection sits with AUTH/SELECT unanswered while a request
arrives; the server is resumed and answers the setup first, then whatever
was pipelined behind it. The scripts are loaded beforehand by a run with
the right settings (as an earlier run would have left them), so a command
that slips through runs instead of failing with NOSCRIPT.
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import TOP, Policyd, Redis, check, eq, mktemp, req, wait_for, expects_on_error  # noqa: E402
from topology import ClusterSetup, SentinelSetup, redis_cmd  # noqa: E402

ON_ERROR = "DEFER_IF_PERMIT 4.3.0 state unavailable"
GREYLISTED = re.compile(r"^DEFER_IF_PERMIT 4\.7\.1 Greylisted")


def gl_rules():
    return ('rules = ( { name = "greylist"; check = "greylist"; delay = 5; '
            'retry_window = 60; auto_whitelist = 0; on_error = "%s"; } );' % ON_ERROR)


def rl_rules(limit=1000):
    return ('rules = ( { name = "user-rate"; check = "ratelimit"; key = [ "sasl_username" ]; '
            'count = "recipients"; windows = ( { limit = %d; seconds = 3600; } ); '
            'on_error = "%s"; } );' % (limit, ON_ERROR))


def block(address, extra="", timeout_ms=3000, connect_ms=5000, prefix="t:"):
    return ('redis = { address = "%s"; timeout_ms = %d; connect_timeout_ms = %d; '
            'prefix = "%s"; %s };' % (address, timeout_ms, connect_ms, prefix, extra))


def auth(login, **kw):
    return req(sasl_username=login, sasl_method="PLAIN", **kw)


def warm_scripts(redis_block, flushes, n=1):
    """An earlier run with the right settings: the binary under test loads
    its own scripts (n requests from n client networks, to reach every node
    of a cluster), then the data is flushed; the script cache survives
    FLUSHALL."""
    with Policyd(rules=gl_rules(), redis_block=redis_block) as p:
        with p.client() as c:
            for i in range(n):
                wait_for(lambda: GREYLISTED.match(c.ask(req(client_address="198.51.%d.7" % i))),
                         10, step=0.1, what="the warm-up request %d" % i)
    for flush in flushes:
        flush()


def all_keys(r, db):
    return r.keys("*", db=db)


def ask_during_setup(r, p, attrs, hold=0.6):
    """Send attrs while r is stopped (policyd's connection waits for its
    AUTH/SELECT answers), resume r after hold seconds, return the answer."""
    with p.client(timeout=15) as c:
        time.sleep(0.4)             # policyd has connected and sent its setup
        c.send(attrs)
        time.sleep(hold)
        r.resume()
        return c.reply()


def decision_lines(log):
    return [l for l in log.split("\n") if " action=" in l]


# ------------------------------------------------------------- item 4 ----

def setup_failure_case(extra, server_password=None, want_log=None, attrs=None):
    """A standalone Redis; policyd with the failing setting extra; a request
    sent while the setup is unanswered, then more after it failed."""
    with Redis(password=server_password) as r:
        warm_scripts(block(r.address, 'password = "%s";' % server_password
                           if server_password else ""), [lambda: r.cmd("FLUSHALL")])
        r.pause()
        try:
            with Policyd(redis=r, rules=gl_rules(), redis_block=block(r.address, extra)) as p:
                a = ask_during_setup(r, p, attrs or req(recipient="first@example.net"))
                eq(a, ON_ERROR, "a request that arrived during the failing setup")
                p.wait_log(want_log, 10)
                with p.client(timeout=15) as c:
                    for i in range(3):
                        eq(c.ask(req(recipient="later%d@example.net" % i)), ON_ERROR,
                           "after the setup failed (%d)" % i)
                time.sleep(3)           # several reconnects with backoff
                log = p.log()
                eq(len(re.findall(want_log, log)), 1,
                   "the setup failure is logged once per outage, not per reconnect")
                check("redis: connected" not in log, "never reported as connected")
                dl = decision_lines(log)
                check(len(dl) >= 4 and all("on_error=yes" in l for l in dl),
                      "every decision answered on_error: %r" % dl[:5])
        finally:
            r.resume()
        eq(all_keys(r, 0), [], "nothing written to database 0")
        return r


@expects_on_error
def test_bad_database_on_error_nothing_in_db0():
    setup_failure_case(
        "database = 99;",
        want_log=r"redis: SELECT 99 failed on 127\.0\.0\.1:\d+: ERR DB index is out of range; "
                 r"dropping the connection and retrying with backoff")


@expects_on_error
def test_password_refused_by_passwordless_server():
    """AUTH fails (the server has no password): the script must not run
    unauthenticated in database 0."""
    setup_failure_case('password = "not-configured-there";',
                       want_log=r"redis: AUTH failed on 127\.0\.0\.1:\d+: ERR AUTH")


@expects_on_error
def test_wrong_password_and_wrong_acl_user():
    setup_failure_case('password = "wrong";', server_password="right-pw",
                       want_log=r"redis: AUTH failed on 127\.0\.0\.1:\d+: WRONGPASS")
    setup_failure_case('username = "bob"; password = "right-pw";', server_password="right-pw",
                       want_log=r"redis: AUTH as \"bob\" failed on 127\.0\.0\.1:\d+: WRONGPASS")


def test_right_settings_wait_for_the_setup():
    """A request that arrives before AUTH and SELECT are answered waits for
    them and then runs in the configured database."""
    with Redis(password="pw-ok") as r:
        warm_scripts(block(r.address, 'password = "pw-ok";'), [lambda: r.cmd("FLUSHALL")])
        r.pause()
        try:
            with Policyd(redis=r, rules=gl_rules(), redis_block=block(
                    r.address, 'password = "pw-ok"; database = 5;')) as p:
                a = ask_during_setup(r, p, req(recipient="waits@example.net"))
                check(GREYLISTED.match(a), "greylisted after waiting for the setup: %r" % a)
                p.wait_log(r"redis: connected to 127\.0\.0\.1:\d+ \(db 5\)", 5)
                check("on_error=yes" not in p.log(), "no on_error answer")
        finally:
            r.resume()
        eq(len(r.keys("t:g*", db=5)), 1, "the triplet is in database 5")
        eq(all_keys(r, 0), [], "nothing in database 0")


def test_setup_recovers_and_says_so():
    """The password is added on the server while policyd retries: the next
    attempt succeeds, the log says after how many failures, and it works."""
    with Redis() as r, Policyd(redis=r, rules=gl_rules(), redis_block=block(
            r.address, 'password = "later-pw";', timeout_ms=500, connect_ms=1000)) as p:
        p.wait_log(r"redis: AUTH failed on", 5)
        time.sleep(1.5)
        r.cmd("CONFIG", "SET", "requirepass", "later-pw")
        r.password = "later-pw"
        p.wait_log(r"redis: 127\.0\.0\.1:\d+: connection setup succeeded after \d+ failed attempts?", 10)
        p.wait_log(r"redis: connected to 127\.0\.0\.1:\d+ \(db 0\)", 5)
        with p.client() as c:
            check(GREYLISTED.match(c.ask(req(recipient="after@example.net"))), "works now")
        eq(len(re.findall(r"AUTH failed on", p.log())), 1, "logged once for the outage")


@expects_on_error
def test_sentinel_bad_database_on_error():
    """Sentinel: the primary's setup (AUTH, SELECT, ROLE) gates commands."""
    with SentinelSetup() as st:
        sb = ('redis = { sentinels = [ %s ]; master_name = "%s"; timeout_ms = 1000; '
              'connect_timeout_ms = 1000; prefix = "t:"; database = %%d; };'
              % (", ".join('"%s"' % a for a in st.sentinel_addresses), st.name))
        warm_scripts(sb % 0, [lambda: redis_cmd(st.primary.port, "FLUSHALL")])
        with Policyd(rules=gl_rules(), redis_block=sb % 99) as p:
            p.wait_log(r"redis: SELECT 99 failed on 127\.0\.0\.1:%d: ERR DB index is out of range"
                       % st.primary.port, 10)
            with p.client() as c:
                for i in range(3):
                    eq(c.ask(req(recipient="s%d@example.net" % i)), ON_ERROR, "on_error %d" % i)
            time.sleep(2)
            eq(len(re.findall(r"SELECT 99 failed", p.log())), 1, "logged once")
        eq(st.primary.keys("*", db=0), [], "nothing in database 0 of the primary")
        with Policyd(rules=gl_rules(), redis_block=sb % 4) as p:
            p.wait_log(r"redis: connected to primary 127\.0\.0\.1:%d .*\(db 4\)" % st.primary.port, 10)
            with p.client() as c:
                check(GREYLISTED.match(c.ask(req(recipient="ok@example.net"))), "works in db 4")
        eq(len(st.primary.keys("t:g*", db=4)), 1, "the triplet in database 4")
        eq(st.primary.keys("*", db=0), [], "still nothing in database 0")


def cluster(n=3, extra=()):
    cl = ClusterSetup(n)
    for r in cl.nodes:
        # long enough that stopping one node a few seconds fails nothing
        i = r.extra.index("--cluster-node-timeout")
        r.extra[i + 1] = "30000"
        r.extra += list(extra)
    return cl


def cluster_block(seeds, extra="", timeout_ms=3000):
    return ('redis = { cluster = [ %s ]; timeout_ms = %d; connect_timeout_ms = 5000; '
            'prefix = "t:"; %s };' % (", ".join('"%s"' % a for a in seeds), timeout_ms, extra))


@expects_on_error
def test_cluster_node_failing_auth_gets_no_commands():
    """Cluster: A and C take the password, B has none (its AUTH fails).
    While B's new connection waits for its AUTH answer, commands for B's
    slots must wait and fail, never run on B unauthenticated."""
    with cluster() as cl:
        a, b, c = cl.nodes
        warm_scripts(cluster_block([x.address for x in cl.nodes]),
                     [lambda port=r.port: redis_cmd(port, "FLUSHALL") for r in cl.nodes], n=30)
        for r in cl.nodes:
            eq(redis_cmd(r.port, "DBSIZE"), 0, "flushed")
        for r in (a, c):
            redis_cmd(r.port, "CONFIG", "SET", "requirepass", "cl-pw")
        with Policyd(rules=gl_rules(), redis_block=cluster_block(
                [x.address for x in cl.nodes], 'password = "cl-pw";')) as p:
            p.wait_log(r"redis: AUTH failed.* 127\.0\.0\.1:%d" % b.port, 10)
            b.pause()
            try:
                time.sleep(2.5)     # a reconnect to B is now waiting for AUTH
                answers = []
                with p.client(timeout=20) as cc:
                    for i in range(30):     # 30 client networks, 30 slots
                        cc.send(req(client_address="192.0.%d.10" % i))
                    time.sleep(0.5)
                    b.resume()
                    for i in range(30):
                        answers.append(cc.reply())
            finally:
                b.resume()
            dbsize = redis_cmd(b.port, "DBSIZE")
            n_err = sum(1 for x in answers if x == ON_ERROR)
            n_ok = sum(1 for x in answers if GREYLISTED.match(x))
            eq(dbsize, 0, "nothing written on B (%d greylisted, %d on_error)" % (n_ok, n_err))
            eq(n_ok + n_err, 30, "only greylisted or on_error: %r" % answers[:5])
            check(n_err > 0, "the networks of B's slots got on_error")
            check(n_ok > 0, "the networks of A's and C's slots were greylisted")
            eq(len(re.findall(r"AUTH failed on 127\.0\.0\.1:%d" % b.port, p.log())), 1,
               "B's AUTH failure logged once")
        eq(redis_cmd(b.port, "DBSIZE"), 0, "nothing written on the node whose AUTH failed")
        eq(redis_cmd(b.port, "KEYS", "*"), [], "no key on B")


# ------------------------------------------------------------ item 15 ----

def policyd_bin():
    return os.environ.get("POLICYD_BIN") or os.path.join(TOP, "build", "policyd")


def policyctl_bin():
    b = os.environ.get("POLICYCTL_BIN")
    if b:
        return b
    d = os.environ.get("POLICYD_BIN")
    if d and os.path.exists(os.path.join(os.path.dirname(d), "policyctl")):
        return os.path.join(os.path.dirname(d), "policyctl")
    return os.path.join(TOP, "build", "policyctl")


def run(args, timeout=20):
    p = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    check("Sanitizer" not in err and "runtime error" not in err, "sanitizer: %s" % err)
    return p.returncode, out, err


def conf_with_prefix(d, prefix, name="p.conf", address="127.0.0.1:6379"):
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write('run_as_root = true;\n'
                'redis = {\n  address = "%s";\n  prefix = "%s";\n};\n%s\n'
                % (address, prefix, rl_rules(5)))
    return path


def test_prefix_bound_at_policyd_t():
    d = mktemp("policyd-prefix.")
    for prefix, want in (("x" * 65, r"p\.conf:4: redis\.prefix: 65 bytes; at most 64"),
                         ("y" * 400, r"p\.conf:4: redis\.prefix: 400 bytes; at most 64"),
                         ("has space:", r"p\.conf:4: redis\.prefix: \"has space:\": expected "
                                        r"printable ASCII without spaces"),
                         ("tab\\there", r'p\.conf:4: redis\.prefix: "tab\\there": expected '
                                        r'printable')):
        rc, out, err = run([policyd_bin(), "-t", "-c", conf_with_prefix(d, prefix)])
        check(rc != 0, "refused: %r" % prefix[:20])
        check(re.search(want, out + err), "file:line message for %r: %s" % (prefix[:20], out + err))
    rc, out, err = run([policyd_bin(), "-t", "-c", conf_with_prefix(d, "caf\u00e9:")])
    check(rc != 0 and re.search(r"p\.conf:4: redis\.prefix: .*printable ASCII", out + err),
          "a non-ASCII byte refused: %s" % (out + err))
    for prefix in ("z" * 64, "", "pd:", "my*app[1]?:"):
        rc, out, err = run([policyd_bin(), "-t", "-c", conf_with_prefix(d, prefix)])
        eq(rc, 0, "accepted %r: %s" % (prefix[:20], out + err))


def test_policyctl_long_prefix_does_not_crash():
    """The 400-byte prefix that crashed policyctl ratelimit show: now a
    clean configuration error (exit 1 or 2, no signal)."""
    d = mktemp("policyctl-prefix.")
    with Redis() as r:
        path = conf_with_prefix(d, "p" * 400, address=r.address)
        for args in (["ratelimit", "show", "user-rate", "alice@example.net"],
                     ["ratelimit", "reset", "user-rate", "alice@example.net"]):
            rc, out, err = run([policyctl_bin(), "-c", path] + args)
            check(rc > 0, "exits with a status, not a signal: %d" % rc)
            check("redis.prefix: 400 bytes; at most 64" in err, err)


def test_policyctl_64_byte_prefix_with_glob_characters():
    """The longest allowed prefix, with glob characters, end to end:
    policyd writes under it, policyctl shows, lists and deletes."""
    prefix = "a*b?[c]\\\\d^:" + "q" * 53
    plain = prefix.replace("\\\\", "\\")
    eq(len(plain), 64, "a 64-byte prefix")
    rules = ('rules = ( { name = "user-rate"; match = { authenticated = true; }; '
             'check = "ratelimit"; key = [ "sasl_username" ]; count = "recipients"; '
             'windows = ( { limit = 5; seconds = 3600; } ); },'
             ' { name = "greylist"; match = { authenticated = false; }; check = "greylist"; '
             'delay = 5; retry_window = 60; auto_whitelist = 0; } );')
    with Redis() as r, Policyd(redis=r, rules=rules,
                               redis_block=block(r.address, prefix=prefix)) as p:
        with p.client() as c:
            eq(c.ask(auth("alice@example.net")), "DUNNO", "counted")
            check(GREYLISTED.match(c.ask(req(client_address="192.0.2.9"))), "greylisted")
        keys = r.keys("*")
        check(len(keys) >= 2 and all(k.startswith(plain.encode()) for k in keys), keys)
        nkeys = len(keys)
        rc, out, err = run([policyctl_bin(), "-c", p.conf, "ratelimit", "show", "user-rate",
                            "alice@example.net"])
        eq((rc, err), (0, ""), "show")
        check("used 1, 4 left" in out, out)
        rc, out, err = run([policyctl_bin(), "-c", p.conf, "greylist", "list"])
        eq((rc, err), (0, ""), "list")
        check("1 triplet" in out, out)
        rc, out, err = run([policyctl_bin(), "-c", p.conf, "greylist", "delete", "192.0.2.9"])
        eq((rc, err), (0, ""), "delete")
        check("deleted 1 triplet" in out, out)
        eq(len(r.keys("*")), nkeys - 1, "the triplet is gone, the rest is left")
        eq(r.keys("*g{*"), [], "no greylist key left")


# ------------------------------------------------------------ item 16 ----

def test_cluster_moved_with_unknown_endpoint():
    """Redis 7 with cluster-preferred-endpoint-type unknown-endpoint answers
    "MOVED slot :port" and NIL hosts in CLUSTER SLOTS: policyd reaches the
    node on the host of the connection that answered."""
    with cluster() as cl:
        with Policyd(rules=rl_rules(), redis_block=cluster_block(
                [x.address for x in cl.nodes])) as p:
            p.wait_log(r"redis: cluster: all 16384 slots served by 3 nodes", 15)
            for r in cl.nodes:
                redis_cmd(r.port, "CONFIG", "SET", "cluster-preferred-endpoint-type",
                          "unknown-endpoint")
            with p.client() as c:
                eq(c.ask(auth("mover@example.net")), "DUNNO", "a key for the slot")
            src = key = None
            for r in cl.nodes:
                ks = redis_cmd(r.port, "KEYS", "t:r{*")
                if ks:
                    src, key = r, ks[0]
            check(key is not None, "the ratelimit key")
            slot = redis_cmd(src.port, "CLUSTER", "KEYSLOT", key)
            dst = [r for r in cl.nodes if r is not src][0]
            redis_cmd(src.port, "DEL", key)
            for r in cl.nodes:
                redis_cmd(r.port, "CLUSTER", "SETSLOT", slot, "NODE", cl.node_id(dst))
            try:
                redis_cmd(src.port, "GET", key)
                moved = ""
            except Exception as e:  # the redirection as Redis writes it
                moved = str(e)
            check(re.match(r"MOVED %d :%d$" % (slot, dst.port), moved),
                  "the server answers MOVED with an empty host: %r" % moved)
            with p.client() as c:
                for k in range(3):
                    eq(c.ask(auth("mover@example.net")), "DUNNO", "after MOVED :port (%d)" % k)
            eq(redis_cmd(dst.port, "EXISTS", key), 1, "the key is on the new owner")
            eq(redis_cmd(src.port, "CLUSTER", "COUNTKEYSINSLOT", slot), 0, "not on the old one")
            # the map refresh after MOVED sees NIL hosts: still served
            time.sleep(0.5)
            with p.client() as c:
                eq(c.ask(auth("other@example.net")), "DUNNO", "after the map refresh")
            log = p.log()
            check(not re.search(r"new node :\d", log), "no node with an empty host")
            check("on_error=yes" not in log, "no on_error answer")
            check("some slots are not served" not in log, "the map stayed complete")
