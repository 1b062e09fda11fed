#!/usr/bin/env python3
"""sqlmaps.py - `make bench` row: the auth mix with sender_login from
PostgreSQL, no cache (every lookup a query) and warm cache, next to the
same map as a file.

A private PostgreSQL (tests/lib/sqlservers.py) holds a PostfixAdmin-like
alias table with policy-load's 500 users (user<N>@example.org owned by the
login of the same name); sender_login runs with builtin = false, so every
request asks the map: the sender, without its +extension, then @domain
(a foreign sender misses all three). policyd runs with log.level =
"warning". policy-load (../shared/bench) is seeded, -w BENCH_WARMUP -d
BENCH_DURATION at each of BENCH_SQL_LEVELS connections. Prints one line per
run and writes build/bench/sqlmaps.json.

Environment: BENCH_DURATION (5), BENCH_WARMUP (2), BENCH_SQL_LEVELS ("8 32"),
BENCH_SHARED (../shared/bench), POLICYD (build/policyd).
"""
import json
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
import socket  # noqa: E402
from harness import Policyd, Redis, wait_for  # noqa: E402
import sqlservers  # noqa: E402

DURATION = os.environ.get("BENCH_DURATION", "5")
WARMUP = os.environ.get("BENCH_WARMUP", "2")
LEVELS = [int(x) for x in os.environ.get("BENCH_SQL_LEVELS", "8 32").split()]
SHARED = os.environ.get("BENCH_SHARED", os.path.join(os.path.dirname(TOP), "shared", "bench"))
OUT = os.path.join(TOP, "build", "bench")
LOAD = os.path.join(OUT, "policy-load")
USERS = 500

RULES = """rules = (
  { name = "sender-login"; match = { authenticated = true; }; check = "sender_login";
    builtin = false; map = "%s"; on_error = "DEFER 4.3.0 sender check unavailable"; },
  { name = "rest"; action = "DUNNO"; }
);
"""


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def build_load():
    src = os.path.join(SHARED, "policy-load.c")
    if not os.path.exists(src):
        sys.exit("sqlmaps.py: %s missing (set BENCH_SHARED)" % src)
    os.makedirs(OUT, exist_ok=True)
    if not os.path.exists(LOAD) or os.path.getmtime(src) > os.path.getmtime(LOAD):
        subprocess.run(["cc", "-O2", "-g", "-std=c11", "-Wall", "-Wextra", "-o", LOAD, src],
                       check=True)


def run(label, port, conns):
    cp = subprocess.run([LOAD, "-c", str(conns), "-w", WARMUP, "-d", DURATION, "-s", "1",
                         "-m", "auth", "--users", str(USERS), "--json", "-l", label,
                         "127.0.0.1:%d" % port], capture_output=True, timeout=int(DURATION) * 4 + 60)
    line = cp.stdout.decode().strip().splitlines()
    if not line:
        print("  %s: no result: %s" % (label, cp.stderr.decode()[-300:]))
        return None
    r = json.loads(line[-1])
    return r


def num(r, *names):
    for n in names:
        if n in r:
            return r[n]
        for v in r.values():
            if isinstance(v, dict) and n in v:
                return v[n]
    return None


def main():
    if os.geteuid() != 0:
        print("# sqlmaps: SKIP: needs root (PostgreSQL runs as the postgres user)")
        return 0
    if not sqlservers.pg_available():
        print("# sqlmaps: SKIP: PostgreSQL not installed (postgresql package)")
        return 0
    build_load()
    results = []
    with sqlservers.PostgreSQL() as pg:
        pg.sql("CREATE TABLE alias (address varchar(255) PRIMARY KEY, goto text NOT NULL, "
               "active smallint NOT NULL DEFAULT 1)")
        pg.sql("INSERT INTO alias (address, goto) SELECT 'user' || i || '@example.org', "
               "'user' || i || '@example.org' FROM generate_series(0, %d) AS i" % (USERS - 1))
        pg.sql("GRANT SELECT ON alias TO postfix")
        mapfile = "".join("user%d@example.org user%d@example.org\n" % (i, i) for i in range(USERS))
        query = "SELECT goto FROM alias WHERE address='%s' AND active = 1"
        base = ("hosts = inet:127.0.0.1:%d\nuser = postfix\npassword = secret\ndbname = mail\n"
                "query = %s\npolicyd_pool = 4\n" % (pg.port, query))
        variants = [
            ("file map", "sender.map", {}),
            ("pgsql, no cache", "pgsql:cold.cf", {"cold.cf": base + "policyd_cache_size = 0\n"}),
            ("pgsql, warm cache", "pgsql:warm.cf",
             {"warm.cf": base + "policyd_cache_ttl = 600\npolicyd_negative_ttl = 600\n"}),
        ]
        print("# sqlmaps: auth mix (%d users, 5 %% foreign senders), sender_login builtin = false; "
              "-w %s -d %s" % (USERS, WARMUP, DURATION))
        with Redis() as r:
            for name, spec, extra in variants:
                files = {"sender.map": mapfile}
                files.update(extra)
                p = Policyd(redis=r, rules=RULES % spec, files=files)
                with open(p.conf) as f:
                    text = f.read()
                with open(p.conf, "w") as f:
                    f.write(text.replace('level = "info"', 'level = "warning"'))
                p.logf = None
                p.expect_start = False      # "started:" is an info line
                p.start()
                wait_for(lambda: listening(p.port), 15, 0.05, "policyd to listen")
                try:
                    for c in LEVELS:
                        res = run("%s c=%d" % (name, c), p.port, c)
                        if res is None:
                            continue
                        res["variant"] = name
                        res["conns"] = c
                        results.append(res)
                        acts = res.get("actions", {})
                        print("  %-18s c=%-3d %9.0f req/s  p50 %6s us  p99 %7s us  errors %s  "
                              "REJECT %.1f %%" % (name, c, num(res, "rps") or 0, num(res, "p50"),
                                                  num(res, "p99"), res["errors"]["total"],
                                                  100.0 * acts.get("REJECT", 0) /
                                                  max(1, sum(acts.values()))))
                    if "pgsql" in spec:
                        with open(p.logpath) as f:
                            log = f.read()
                        if "unreachable" in log or "query failed" in log:
                            print("  %s: database errors in the log" % name)
                finally:
                    p.cleanup()
    with open(os.path.join(OUT, "sqlmaps.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
