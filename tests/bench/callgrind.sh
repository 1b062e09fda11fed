#!/usr/bin/env bash
# callgrind.sh - instructions per decision of policyd binaries, counted by
# valgrind --tool=callgrind: a figure that does not depend on the load of
# a shared machine, for comparing two builds (the hot path before and
# after a change).
#
#   bash tests/bench/callgrind.sh OLD_BINARY NEW_BINARY ...
#   CG_N="2000 6000" CG_WORKLOADS="greylist auth" bash tests/bench/callgrind.sh build/policyd
#
# For each binary and workload: a private redis-server, policyd -f under
# callgrind with the bench.sh rules (greylist with local_cache = 0, so that
# every request runs the script; sender_login and a ratelimit that never
# trips for authenticated clients), and ../shared/bench's policy-load with
# one connection and seed 1 for N1, then N2 requests. The printed figure is
# (Ir(N2) - Ir(N1)) / (N2 - N1): start-up and shutdown cancel out. Runs of
# one binary agree within about 0.5 %; compare binaries in adjacent runs.
# Only processes started here are stopped, by PID; loopback only.

set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BENCH_SHARED:-$(dirname "$TOP")/shared/bench}
[ -f "$SHARED/lib.sh" ] || { echo "callgrind.sh: $SHARED/lib.sh is missing" >&2; exit 2; }
# shellcheck source=/dev/null
. "$SHARED/lib.sh"
trap cleanup EXIT

[ $# -gt 0 ] || die "usage: callgrind.sh POLICYD_BINARY ..."
command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
command -v redis-server >/dev/null || die "redis-server is not installed"
read -r N1 N2 <<< "${CG_N:-2000 6000}"
WORKLOADS=${CG_WORKLOADS:-"greylist auth"}
OUTDIR=$TOP/build/bench
LOAD=$OUTDIR/policy-load
mkdir -p "$OUTDIR"
if [ ! -x "$LOAD" ] || [ "$SHARED/policy-load.c" -nt "$LOAD" ]; then
    ${CC:-cc} -O2 -g -std=c11 -o "$LOAD" "$SHARED/policy-load.c" || die "cannot build policy-load"
fi
make_workdir
POOLS="--clients 200 --senders 50 --recipients 10"

# ir BINARY WORKLOAD N - the Ir total of one run
ir() {
    local bin=$1 mix=$2 n=$3 rport pport rpid ppid opts
    rport=$(free_port $(( 20000 + RANDOM % 10000 )))
    redis-server --bind 127.0.0.1 --port "$rport" --dir "$WORK" --save '' \
        --appendonly no --loglevel warning > "$WORK/redis.log" 2>&1 &
    rpid=$!
    track_pid "$rpid"
    wait_listening "$rport" 15 || die "redis-server did not start"
    pport=$(free_port $(( rport + 1 )))
    cat > "$WORK/p.conf" <<EOF
listen = [ "inet:127.0.0.1:$pport" ];
run_as_root = true;
hostname = "bench.example";
log = { level = "warning"; };
redis = { address = "127.0.0.1:$rport"; prefix = "pd:"; timeout_ms = 5000; connect_timeout_ms = 5000; };
metrics = { address = ""; };
rules = (
  { name = "trusted"; match = { client_address = [ "203.0.113.0/24" ]; }; action = "OK"; },
  { name = "block-domain"; match = { sender = [ "@d13.example.com" ]; };
    action = "REJECT 5.7.1 sender domain blocked"; },
  { name = "sender-login"; match = { authenticated = true; }; check = "sender_login"; builtin = true; },
  { name = "rate-user"; match = { authenticated = true; }; check = "ratelimit";
    key = "sasl_username"; windows = ( { limit = 1000000; seconds = 60; } ); },
  { name = "authenticated"; match = { authenticated = true; }; action = "DUNNO"; },
  { name = "greylist"; match = { authenticated = false; }; check = "greylist";
    delay = 1; auto_whitelist = 0; local_cache = 0; }
);
EOF
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" \
        "$bin" -f -c "$WORK/p.conf" > "$WORK/policyd.log" 2>&1 &
    ppid=$!
    track_pid "$ppid"
    wait_listening "$pport" 60 || die "policyd under valgrind did not listen: $(tail -n 3 "$WORK/policyd.log")"
    case $mix in
    greylist) opts="-m greylist $POOLS --repeat 0.5" ;;
    auth) opts="-m auth $POOLS --users 500" ;;
    *) die "unknown workload $mix" ;;
    esac
    # shellcheck disable=SC2086
    "$LOAD" -c 1 -s 1 -n "$n" -w 0 -t 20000 $opts "127.0.0.1:$pport" > "$WORK/load.out" 2>&1 ||
        die "policy-load failed: $(tail -n 3 "$WORK/load.out")"
    kill -TERM "$ppid"
    wait "$ppid"
    untrack_pid "$ppid"
    kill -TERM "$rpid"
    wait "$rpid" 2>/dev/null
    untrack_pid "$rpid"
    sed -n 's/^summary: *\([0-9]*\).*/\1/p;s/^totals: *\([0-9]*\).*/\1/p' "$WORK/cg.out" | head -n 1
}

printf '%-10s %-40s %12s %12s %14s\n' workload binary "Ir(N=$N1)" "Ir(N=$N2)" "Ir/request"
for w in $WORKLOADS; do
    for b in "$@"; do
        a=$(ir "$b" "$w" "$N1")
        z=$(ir "$b" "$w" "$N2")
        printf '%-10s %-40s %12s %12s %14.1f\n' "$w" "$b" "$a" "$z" \
            "$(awk -v a="$a" -v z="$z" -v n="$((N2 - N1))" 'BEGIN { print (z - a) / n }')"
    done
done
