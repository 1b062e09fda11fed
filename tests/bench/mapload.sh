#!/bin/sh
# mapload.sh - how long policyd takes to load (and check) a 1,000,000-entry
# map: a sender_login map and a relocated map, through `policyd -t`, which
# runs the same loader as start-up and SIGHUP. Prints seconds and peak RSS.
# usage: mapload.sh [POLICYD] [ENTRIES]     (make bench runs it)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
policyd=${1:-$top/build/policyd}
n=${2:-1000000}
dir=$(mktemp -d /tmp/policyd-mapload.XXXXXX)
trap 'rm -rf "$dir"' EXIT
awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++)
	printf "user%d@d%d.example.net\tuser%d@d%d.example.net, admin@d%d.example.net\n", i, i % 1000, i, i % 1000, i % 1000 }' > "$dir/sender_login.map"
awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++)
	printf "old%d@example.net\tnew%d@example.org\n", i, i }' > "$dir/relocated.map"
python3 - "$policyd" "$dir" "$n" <<'PY'
import os, resource, subprocess, sys, time
policyd, d, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name, rules in (("sender_login", '{ name = "s"; match = { authenticated = true; }; check = "sender_login"; map = "sender_login.map"; }'),
                    ("relocated", '{ name = "r"; check = "relocated"; map = "relocated.map"; }')):
    conf = os.path.join(d, name + ".conf")
    with open(conf, "w") as f:
        f.write("rules = ( %s );\n" % rules)
    size = os.path.getsize(os.path.join(d, name + ".map"))
    t0 = time.monotonic()
    r = subprocess.run([policyd, "-t", "-c", conf], capture_output=True, timeout=600)
    dt = time.monotonic() - t0
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ok = "ok" if r.returncode == 0 else "FAILED: " + r.stderr.decode()[-300:]
    print("map load: %-12s %9d entries %6.1f MB file: %5.2f s, peak RSS %5.0f MB (%s)"
          % (name, n, size / 1e6, dt, rss, ok))
PY
