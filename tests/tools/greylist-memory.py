#!/usr/bin/env python3
"""greylist-memory.py - Redis memory per greylist entry.

usage: POLICYD_BIN=build/policyd python3 tests/tools/greylist-memory.py [N] [CONNS] [DIST]

Starts a private redis-server and policyd (harness), creates N new
greylist triplets (default 100,000) with pipelined requests over CONNS
connections (default 8; batches of 256 requests each), and prints
INFO memory used_memory before and after and the bytes per entry.
DIST is how the triplets spread over client networks:
  seq    (default) 10.x.y.z in order: a new /24 every 256 triplets
  bench  200 client /24s, as make bench's greylist mix
  spam   a new /24 every 1-5 triplets (200,000 /24s per 600,000), the
         spread of a botnet
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Redis, Policyd, PolicyClient, encode, req, check, eq  # noqa: E402

RULES = ('rules = ( { name = "greylist"; check = "greylist"; delay = 300; '
         'retry_window = 172800; auto_whitelist = 5; } );')
BATCH = 256


def client_of(j, dist):
    if dist == "bench":
        k = j % 200
        return "198.18.%d.%d" % (k, (j // 200) % 250 + 1)
    if dist == "spam":
        # networks of 1, 2, 3, 4 and 5 triplets in turn: 3 on average
        k = (j // 15) * 5 + (0, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4)[j % 15]
        return "10.%d.%d.%d" % ((k >> 16) & 255, (k >> 8) & 255, k & 255)
    return "10.%d.%d.%d" % ((j >> 16) & 255, (j >> 8) & 255, j & 255)


def _worker(p, lo, hi, errors, dist="seq"):
    try:
        c = PolicyClient(("127.0.0.1", p.port), timeout=30)
        i = lo
        while i < hi:
            n = min(BATCH, hi - i)
            data = b"".join(encode(req(
                client_address=client_of(j, dist),
                sender="sender%d@example.com" % j,   # digit runs collapse: one sender
                recipient="user%d@example.net" % j)) for j in range(i, i + n))
            c.send_raw(data)
            for _ in range(n):
                a = c.reply()
                if not a.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"):
                    raise AssertionError("unexpected answer %r" % a)
            i += n
        c.close()
    except Exception as e:  # noqa: BLE001 - reported by the caller
        errors.append(e)


def measure(n=100000, conns=8, quiet=False, dist="seq"):
    """Create n triplets; return bytes of Redis used_memory per entry."""
    with Redis() as r, Policyd(redis=r, rules=RULES,
                               extra="limits = { max_pipeline = 256; };") as p:
        with p.client() as c:       # load the script, connect
            for _ in range(50):
                a = c.ask(req(client_address="192.0.2.1", recipient="warmup@example.net"))
                if a.startswith("DEFER_IF_PERMIT"):
                    break
                time.sleep(0.1)
        r.cmd("FLUSHALL")           # the script cache survives FLUSHALL
        before = r.used_memory()
        t0 = time.monotonic()
        errors, threads, per = [], [], (n + conns - 1) // conns
        for k in range(conns):
            lo, hi = k * per, min(n, (k + 1) * per)
            t = threading.Thread(target=_worker, args=(p, lo, hi, errors, dist), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(600)
            check(not t.is_alive(), "worker did not finish")
        check(not errors, "worker failed: %r" % errors[:1])
        secs = time.monotonic() - t0
        keys = r.keys("t:g{*")
        entries = sum(r.cmd("HLEN", k.decode()) for k in keys)
        eq(entries, n, "greylist triplets created")
        after = r.used_memory()
        per_entry = (after - before) / float(n)
        if not quiet:
            print("entries:          %d (%d connections, %.1f s, %.0f req/s)"
                  % (n, conns, secs, n / secs))
            print("used_memory:      %d -> %d bytes" % (before, after))
            print("bytes per entry:  %.1f" % per_entry)
            print("buckets:          %d (%.1f triplets each), encoding %s"
                  % (len(keys), n / max(1, len(keys)),
                     r.cmd("OBJECT", "ENCODING", keys[0].decode())))
        return per_entry


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    dist = sys.argv[3] if len(sys.argv) > 3 else "seq"
    print("distribution:     %s" % dist)
    measure(n, conns, dist=dist)
