"""policyctl on Redis Sentinel and on a 3-primary Redis Cluster.

policyctl uses the daemon's own state layer, so ratelimit show/reset and
greylist list/delete find the primary through the sentinels (also after a
failover) and, in a Cluster, the key's node (SCAN on every primary). The
values asserted are the daemon's: counters charged through a running
policyd, triplets it recorded. Redis hung, sentinels dead and a cluster
node down give one clear error and exit status 1 within the timeouts,
never a hang. Real redis-server and sentinels on loopback
(tests/lib/topology.py); every wait is bounded.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Policyd, Redis, check, eq, free_port, mktemp, req  # noqa: E402
from topology import SentinelSetup, redis_cmd  # noqa: E402
from test_policyctl import ctl  # noqa: E402
from test_scaleout import cluster_block, new_cluster, sentinel_block  # noqa: E402

RULES = """
rules = (
  { name = "user-rate"; match = { authenticated = true; }; check = "ratelimit";
    key = "sasl_username"; windows = ( { limit = 3; seconds = 3600; },
                                       { limit = 100; seconds = 86400; } ); },
  { name = "greylist"; match = { authenticated = false; }; check = "greylist";
    delay = 1; retry_window = 60; auto_whitelist = 0; local_cache = 0; }
);
"""

DEFER_RL = "DEFER_IF_PERMIT 4.7.1 Rate limit"
DEFER_GL = "DEFER_IF_PERMIT 4.7.1 Greylisted"


def login(user, **kw):
    return req(sasl_username=user, sasl_method="PLAIN", sender=user, **kw)


def triplet(client, rcpt="b@example.net"):
    return req(client_address=client, sender="a@sender.test", recipient=rcpt)


def window_used(out):
    """the "used N" of each window line of ratelimit show"""
    return [int(l.split("used ")[1].split(",")[0]) for l in out.splitlines()
            if " per " in l and "used " in l]


def listed(out):
    """(network, state) of each triplet line of greylist list"""
    rows = []
    for l in out.splitlines():
        f = l.split()
        if len(f) >= 6 and "/" in f[0] and f[4] in ("waiting", "passed"):
            rows.append((f[0], f[4]))
    return rows


def timed_ctl(*args):
    t0 = time.monotonic()
    rc, out, err = ctl(*args)
    return rc, out, err, time.monotonic() - t0


def check_ratelimit_cycle(p, users):
    """charge users through policyd, show each, reset the first: the next
    request passes again, the others keep their counts"""
    c = p.client()
    for i, u in enumerate(users):
        for _ in range(i % 3 + 1):
            eq(c.ask(login(u)), "DUNNO", "%s within the limit" % u)
    first = users[0]
    for _ in range(2):
        eq(c.ask(login(first)), "DUNNO", "%s: up to 3" % first)
    check(c.ask(login(first)).startswith(DEFER_RL), "%s: the 4th is over 3 per hour" % first)
    for i, u in enumerate(users):
        rc, out, err = ctl("-c", p.conf, "ratelimit", "show", "user-rate", u)
        eq((rc, err), (0, ""), "show %s" % u)
        want = 3 if i == 0 else i % 3 + 1
        eq(window_used(out), [want, want], "%s: the use policyd charged: %r" % (u, out))
    rc, out, err = ctl("-c", p.conf, "ratelimit", "reset", "user-rate", first)
    eq((rc, err), (0, ""), "reset")
    check("reset: removed 1 key" in out, out)
    eq(c.ask(login(first)), "DUNNO", "%s passes again after the reset" % first)
    rc, out, _ = ctl("-c", p.conf, "ratelimit", "show", "user-rate", first)
    eq(window_used(out), [1, 1], "only the request after the reset: %r" % out)
    for i, u in enumerate(users[1:], start=1):
        rc, out, _ = ctl("-c", p.conf, "ratelimit", "show", "user-rate", u)
        eq(window_used(out), [i % 3 + 1] * 2, "%s untouched: %r" % (u, out))


def check_greylist_cycle(p, clients):
    """greylist a triplet per client through policyd, pass the first one's,
    list them all, delete the first network: its next mail is new again"""
    c = p.client()
    for a in clients:
        check(c.ask(triplet(a)).startswith(DEFER_GL), "first attempt of %s" % a)
    time.sleep(1.2)
    check(c.ask(triplet(clients[0])).startswith("PREPEND X-Greylist"), "the retry passes")
    eq(c.ask(triplet(clients[0])), "DUNNO", "a known triplet")
    nets = sorted(a.rsplit(".", 1)[0] + ".0/24" for a in clients)
    rc, out, err = ctl("-c", p.conf, "greylist", "list")
    eq((rc, err), (0, ""), "list")
    rows = listed(out)
    eq(sorted(n for n, _ in rows), nets, "every triplet policyd recorded: %r" % out)
    first = clients[0].rsplit(".", 1)[0] + ".0/24"
    eq([s for n, s in rows if n == first], ["passed"], out)
    check("%d triplets, 0 auto-whitelist counters" % len(clients) in out, out)
    rc, out, err = ctl("-c", p.conf, "greylist", "list", clients[1])
    eq([n for n, _ in listed(out)], [clients[1].rsplit(".", 1)[0] + ".0/24"], "one network")
    rc, out, err = ctl("-c", p.conf, "greylist", "delete", clients[0])
    eq((rc, err), (0, ""), "delete")
    check("%s: deleted 1 triplet;" % first in out, out)
    rc, out, _ = ctl("-c", p.conf, "greylist", "list")
    rows = listed(out)
    eq(len(rows), len(clients) - 1, "the others are left: %r" % out)
    check(first not in [n for n, _ in rows], out)
    check(c.ask(triplet(clients[0])).startswith(DEFER_GL),
          "after delete the passed triplet is greylisted again")


def write_conf(redis_block):
    d = mktemp("policyctl-scaleout.")
    path = os.path.join(d, "policyd.conf")
    with open(path, "w") as f:
        f.write('run_as_root = true;\nmetrics = { address = ""; };\n%s\n%s' % (redis_block, RULES))
    return path


# ---------------------------------------------------------------- Sentinel

def test_sentinel_ratelimit_greylist_and_dead_sentinels():
    with SentinelSetup() as st:
        block = sentinel_block(st.sentinel_addresses, st.name)
        with Policyd(rules=RULES, redis_block=block) as p:
            p.wait_log(r"redis: connected to primary 127\.0\.0\.1:%d" % st.primary.port, 15)
            check_ratelimit_cycle(p, ["alice@example.net", "bob@example.net", "carol@example.net"])
            check_greylist_cycle(p, ["192.0.2.7", "198.51.100.8", "203.0.113.9"])
            eq(redis_cmd(st.replica.port, "ROLE")[0], "slave", "the replica is not asked")

            # one sentinel of three dead: the others answer
            st.sentinels[0].stop()
            rc, out, err = ctl("-c", p.conf, "ratelimit", "show", "user-rate", "bob@example.net")
            eq((rc, err), (0, ""), "a dead sentinel is skipped")
            eq(window_used(out), [2, 2], out)

            # every sentinel dead: a clear error, exit 1, within -t
            for s in st.sentinels:
                s.stop()
            for args in (["ratelimit", "show", "user-rate", "bob@example.net"],
                         ["greylist", "list"]):
                rc, out, err, took = timed_ctl("-t", "3000", "-c", p.conf, *args)
                eq((rc, out), (1, ""), "%r with every sentinel dead: %r" % (args, err))
                check("cannot connect to redis at sentinel:%s@" % st.name in err and
                      'no sentinel named the primary of "%s"' % st.name in err and
                      "Connection refused" in err, err)
                check(took < 8, "bounded: %.1f s" % took)


def test_sentinel_failover_then_hung_primary():
    with SentinelSetup() as st:
        conf = write_conf(sentinel_block(st.sentinel_addresses, st.name))
        with Policyd(rules=RULES, redis_block=sentinel_block(st.sentinel_addresses,
                                                              st.name)) as p:
            p.wait_log(r"redis: connected to primary 127\.0\.0\.1:%d" % st.primary.port, 15)
            c = p.client()
            for _ in range(2):
                eq(c.ask(login("dave@example.net")), "DUNNO", "charged")
            # wait until the replica has the counter, then fail over
            rc, out, _ = ctl("-c", conf, "ratelimit", "show", "user-rate", "dave@example.net")
            key = [l for l in out.splitlines() if l.startswith("rule ")][0].split("(redis ")[1][:-1]
            deadline = time.monotonic() + 10
            while redis_cmd(st.replica.port, "EXISTS", key) != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            old = st.primary_port()
            st.failover()
            new = st.wait_primary_changed(old)
        rc, out, err = ctl("-c", conf, "ratelimit", "show", "user-rate", "dave@example.net")
        eq((rc, err), (0, ""), "show after the failover (primary now %d)" % new)
        eq(window_used(out), [2, 2], "the counter, read on the new primary: %r" % out)
        rc, out, err = ctl("-c", conf, "ratelimit", "reset", "user-rate", "dave@example.net")
        check(rc == 0 and "reset: removed 1 key" in out, out + err)
        eq(redis_cmd(new, "EXISTS", key), 0, "deleted on the new primary")

        # the primary hangs: its connection setup (ROLE) times out. The
        # sentinels are told to wait a minute before they fail it over,
        # so that they still name it while policyctl runs
        for s in st.sentinels:
            eq(redis_cmd(s.port, "SENTINEL", "SET", st.name, "down-after-milliseconds",
                         "60000"), "OK", "sentinel set")
        node = st.node(new)
        node.pause()
        try:
            rc, out, err, took = timed_ctl("-t", "3000", "-c", conf, "ratelimit", "show",
                                           "user-rate", "dave@example.net")
        finally:
            node.resume()
        eq((rc, out), (1, ""), "a hung primary: %r" % err)
        check("cannot connect to redis at sentinel:" in err and
              "primary 127.0.0.1:%d" % new in err and "timed out" in err, err)
        check(took < 8, "bounded: %.1f s" % took)


# ----------------------------------------------------------------- Cluster

def test_cluster_ratelimit_greylist_and_node_down():
    with new_cluster(3) as cl:
        block = cluster_block(cl.seeds)
        with Policyd(rules=RULES, redis_block=block) as p:
            p.wait_log(r"redis: cluster: all 16384 slots served by 3 nodes", 15)
            users = ["user%d@example.net" % i for i in range(12)]
            check_ratelimit_cycle(p, users)
            holders = [r for r in cl.nodes if redis_cmd(r.port, "KEYS", "t:r{*")]
            check(len(holders) >= 2, "the counters are on several primaries: %d" % len(holders))

            clients = ["10.%d.%d.1" % (i // 200, i % 200) for i in range(24)]
            check_greylist_cycle(p, clients)
            holders = [r for r in cl.nodes if redis_cmd(r.port, "KEYS", "t:g{*")]
            check(len(holders) >= 2, "the buckets are on several primaries: %d" % len(holders))

            # a primary down (no replica): a clear error, exit 1, within -t
            down = cl.nodes[1]
            down.stop()
            for args in (["greylist", "list"],
                         ["ratelimit", "show", "user-rate", users[1]]):
                rc, out, err, took = timed_ctl("-t", "3000", "-c", p.conf, *args)
                eq((rc, out), (1, ""), "%r with a node down: %r" % (args, err))
                check("cannot connect to redis at cluster:" in err and
                      "cluster node 127.0.0.1:%d" % down.port in err, err)
                check(took < 8, "bounded: %.1f s" % took)


def test_cluster_seed_down_and_not_a_cluster():
    with new_cluster(3) as cl:
        # a seed that does not answer: the others give the slot map
        conf = write_conf(cluster_block(["127.0.0.1:%d" % free_port()] + cl.seeds))
        rc, out, err = ctl("-c", conf, "greylist", "list")
        eq((rc, err), (0, ""), "list with a dead seed")
        check(out.startswith("0 triplets"), out)
        rc, out, err = ctl("-c", conf, "ratelimit", "show", "user-rate", "x@example.net")
        eq((rc, err), (0, ""), "show with a dead seed")
        eq(window_used(out), [0, 0], out)
    with Redis() as r:
        # a standalone Redis given as a cluster seed
        conf = write_conf(cluster_block([r.address]))
        rc, out, err, took = timed_ctl("-t", "3000", "-c", conf, "greylist", "list")
        eq((rc, out), (1, ""), "not a cluster: %r" % err)
        check("CLUSTER SLOTS from %s" % r.address in err and "cluster support disabled" in err,
              err)
        check(took < 8, "bounded: %.1f s" % took)


# -------------------------------------------------------------- standalone

def test_standalone_hung_redis():
    with Redis() as r:
        conf = write_conf('redis = { address = "%s"; prefix = "t:"; '
                          'connect_timeout_ms = 500; };' % r.address)
        rc, out, err = ctl("-c", conf, "ratelimit", "show", "user-rate", "erin@example.net")
        eq((rc, err), (0, ""), "show")
        r.pause()
        try:
            for args in (["ratelimit", "show", "user-rate", "erin@example.net"],
                         ["greylist", "list"]):
                rc, out, err, took = timed_ctl("-t", "1500", "-c", conf, *args)
                eq((rc, out), (1, ""), "%r on a hung Redis: %r" % (args, err))
                check("redis at %s" % r.address in err and
                      "no answer within 1500 ms" in err, err)
                check(took < 6, "bounded by -t: %.1f s" % took)
        finally:
            r.resume()
