#!/usr/bin/env python3
"""greylist-memory.py - Redis memory per greylist entry.

usage: POLICYD_BIN=build/policyd python3 tests/tools/greylist-memory.py [N] [CONNS]

Starts a private redis-server and policyd (harness), creates N new
greylist triplets (default 100,000) with pipelined requests over CONNS
connections (default 8; batches of 256 requests each), and prints
INFO memory used_memory before and after and the bytes per entry.
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


def _worker(p, lo, hi, errors):
    try:
        c = PolicyClient(("127.0.0.1", p.port), timeout=30)
        i = lo
        while i < hi:
            n = min(BATCH, hi - i)
            data = b"".join(encode(req(
                client_address="10.%d.%d.%d" % ((j >> 16) & 255, (j >> 8) & 255, j & 255),
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


def measure(n=100000, conns=8, quiet=False):
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
            t = threading.Thread(target=_worker, args=(p, lo, hi, errors), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(600)
            check(not t.is_alive(), "worker did not finish")
        check(not errors, "worker failed: %r" % errors[:1])
        secs = time.monotonic() - t0
        keys = r.cmd("DBSIZE")
        eq(keys, n, "greylist keys created")
        after = r.used_memory()
        per_entry = (after - before) / float(n)
        if not quiet:
            print("entries:          %d (%d connections, %.1f s, %.0f req/s)"
                  % (n, conns, secs, n / secs))
            print("used_memory:      %d -> %d bytes" % (before, after))
            print("bytes per entry:  %.1f" % per_entry)
            print("sample key:       %r" % r.cmd("RANDOMKEY"))
        return per_entry


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    conns = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    measure(n, conns)
