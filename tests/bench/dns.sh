#!/usr/bin/env bash
# dns.sh - `make bench`'s DNS row: spf + dnsbl + greylist (group_by spf) at
# BENCH_CONNS connections against a local DNS server, with the DNS cache
# (warm: after the warm-up every name is cached) and without it (cache_size
# = 0: every question goes to the DNS server).
#
# Starts a private redis-server, the tests' DNS server (tests/lib/dnsserver.py,
# python3-dnslib, a zone generated here: SPF records for the load's 50 sender
# domains d0..d49.example.com - pass, include chains, mx - and two DNSBL zones
# listing some of the 198.18.0.0/15 clients) and policyd with metrics on, then
# runs ../shared/bench's policy-load (greylist mix, 200 clients x 50 senders x
# 10 recipients). The table gives req/s, p99, errors, the DNS questions per
# request and the cache hit rate (from policyd's /metrics), and the CPU used
# by policyd and by the DNS server.
#
# The DNS server is Python (one thread per query): without the cache it, not
# policyd, is the limit, which is the point of the cache.
#
# Environment: BENCH_DURATION (5), BENCH_WARMUP (2), BENCH_CONNS (32),
# POLICYD (build/policyd), BENCH_SHARED (../shared/bench).
# Everything listens on 127.0.0.1 only; every run is bounded in time; only
# processes started here are stopped, by PID.

set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BENCH_SHARED:-$(dirname "$TOP")/shared/bench}
if [ ! -f "$SHARED/lib.sh" ] || [ ! -f "$SHARED/policy-load.c" ]; then
    echo "dns.sh: $SHARED is missing (expected ../shared/bench next to the" \
         "repository, with lib.sh and policy-load.c); set BENCH_SHARED=DIR" >&2
    exit 2
fi
# shellcheck source=/dev/null
. "$SHARED/lib.sh"

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-32}
POLICYD=${POLICYD:-$TOP/build/policyd}
OUTDIR=$TOP/build/bench
LOAD=$OUTDIR/policy-load
RESULTS=$OUTDIR/dns.json
RUN_LIMIT=$(( WARMUP + DURATION + 60 ))
LOAD_OPTS="-m greylist --clients 200 --senders 50 --recipients 10 --repeat 0.5"
SYSPY=/usr/bin/python3

[ -x "$POLICYD" ] || die "$POLICYD is missing: run make first"
command -v redis-server > /dev/null || die "redis-server is needed"
$SYSPY -c 'import dnslib' 2>/dev/null || die "python3-dnslib is needed (apt-get install python3-dnslib)"
mkdir -p "$OUTDIR"
if [ ! -x "$LOAD" ] || [ "$SHARED/policy-load.c" -nt "$LOAD" ]; then
    cc -O2 -o "$LOAD" "$SHARED/policy-load.c" || die "cannot build policy-load"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
make_workdir
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT_BASE=$(( 20000 + RANDOM % 10000 ))
REDIS_PORT=$(free_port "$PORT_BASE")
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK" --save '' \
    --appendonly no --daemonize no --loglevel warning > "$WORK/redis.log" 2>&1 &
REDIS_PID=$!
track_pid "$REDIS_PID"
wait_listening "$REDIS_PORT" 15 || die "redis-server did not start"

# The zone: the load's sender domains and client addresses (policy-load's
# workload: senders s<j>@d<j % 251>.example.com, clients in 198.18.0.0/15).
$SYSPY - "$WORK/zone.json" <<'EOF'
import json, sys
recs = [["_spf.example.com", "TXT", "v=spf1 ip4:198.18.0.0/16 include:_spf2.example.com ?all"],
        ["_spf2.example.com", "TXT", "v=spf1 ip4:198.19.0.0/17 ~all"]]
for k in range(251):
    d = "d%d.example.com" % k
    if k % 3 == 0:
        recs.append([d, "TXT", "v=spf1 ip4:198.18.0.0/15 -all"])
    elif k % 3 == 1:
        recs.append([d, "TXT", "v=spf1 include:_spf.example.com ~all"])
    else:
        recs.append([d, "TXT", "v=spf1 mx a:relay.%s ~all" % d])
        recs.append([d, "MX", "10 mx.%s" % d])
        recs.append(["mx." + d, "A", "198.18.%d.1" % k])
        recs.append(["relay." + d, "A", "198.19.%d.1" % k])
# policy-load's client numbering spreads neighbours over /24s
for idx in range(0, 200, 7):
    v = (idx * 40503) & 0x1ffff
    a, b, c = 18 + (v >> 16), (v >> 8) & 255, v & 255
    recs.append(["%d.%d.%d.198.bl.bench.test" % (c, b, a), "A", "127.0.0.2"])
    if idx % 2:
        recs.append(["%d.%d.%d.198.wl.bench.test" % (c, b, a), "A", "127.0.10.2"])
json.dump({"records": recs, "negative_ttl": 600}, open(sys.argv[1], "w"))
EOF
DNS_PORT=$(free_port $((REDIS_PORT + 1)))
$SYSPY "$TOP/tests/lib/dnsserver.py" "$WORK/zone.json" "$DNS_PORT" > "$WORK/dns.out" 2> "$WORK/dns.err" &
DNS_PID=$!
track_pid "$DNS_PID"
for _ in $(seq 100); do grep -q ready "$WORK/dns.out" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/dns.out" || die "the DNS server did not start: $(tail -n 3 "$WORK/dns.err")"

metric() {      # metric PORT NAME -> value
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | sed -n "s/^$2 \([0-9.]*\)$/\1/p"
}

ROWS=()
JSON=()
run_case() {    # run_case LABEL CACHE_SIZE
    local label=$1 cache=$2 port mport conf pid line rps p99 errs q0 h0 q1 h1 n0 n1 pd0 pd1 dn0 dn1 t0 wall
    port=$(free_port $((DNS_PORT + 1)))
    mport=$(free_port $((port + 1)))
    conf=$WORK/policyd-$cache.conf
    cat > "$conf" <<EOF
listen = [ "inet:127.0.0.1:$port" ];
run_as_root = true;
hostname = "bench.example";
log = { level = "warning"; };
redis = { address = "127.0.0.1:$REDIS_PORT"; prefix = "b$cache:"; };
metrics = { address = "127.0.0.1:$mport"; };
dns = { nameservers = [ "127.0.0.1:$DNS_PORT" ]; timeout_ms = 2000; attempts = 2;
        budget_ms = 8000; cache_size = $cache; };
rules = (
  { name = "spf"; check = "spf"; skip_networks = [ "127.0.0.0/8" ]; },
  { name = "dnsbl"; check = "dnsbl"; threshold = 3;
    sites = [ "bl.bench.test=127.0.0.2*2", "wl.bench.test=127.0.[0..255].[1..3]*-1" ]; },
  { name = "greylist"; check = "greylist"; delay = 1; auto_whitelist = 0;
    group_by = [ "spf" ]; }
);
EOF
    "$POLICYD" -f -c "$conf" > "$WORK/policyd-$cache.log" 2>&1 &
    pid=$!
    track_pid "$pid"
    wait_listening "$port" 15 || die "policyd did not start: $(tail -n 5 "$WORK/policyd-$cache.log")"
    # warm-up (fills the cache when there is one), then the measured run
    # shellcheck disable=SC2086
    timeout "$RUN_LIMIT" "$LOAD" -c "$CONNS" -d "$WARMUP" $LOAD_OPTS -j "127.0.0.1:$port" > /dev/null 2>&1
    q0=$(metric "$mport" policyd_dns_queries_total)
    h0=$(metric "$mport" policyd_dns_cache_hits_total)
    n0=$(metric "$mport" policyd_replies_total)
    pd0=$(tree_cpu_ticks "$pid")
    dn0=$(tree_cpu_ticks "$DNS_PID")
    t0=$(now_s)
    # shellcheck disable=SC2086
    line=$(timeout "$RUN_LIMIT" "$LOAD" -c "$CONNS" -d "$DURATION" -s 2 $LOAD_OPTS -j \
        -l "dns-$label" "127.0.0.1:$port" 2> "$WORK/load-$cache.err")
    wall=$(elapsed_since "$t0")
    pd1=$(tree_cpu_ticks "$pid")
    dn1=$(tree_cpu_ticks "$DNS_PID")
    q1=$(metric "$mport" policyd_dns_queries_total)
    h1=$(metric "$mport" policyd_dns_cache_hits_total)
    n1=$(metric "$mport" policyd_replies_total)
    stop_pid "$pid"
    untrack_pid "$pid"
    rps=$(json_num "$line" rps)
    p99=$(json_num "$line" p99)
    errs=$(json_num "$line" total)
    local qpr hit
    qpr=$(awk -v q=$((q1 - q0)) -v n=$((n1 - n0)) 'BEGIN { printf "%.2f", (n > 0 ? q / n : 0) }')
    hit=$(awk -v h=$((h1 - h0)) -v q=$((q1 - q0)) 'BEGIN { printf "%.1f", (q > 0 ? 100 * h / q : 0) }')
    ROWS+=("$(printf '%-34s %6s %9.0f %9s %7s %9s %8s%% %13s %10s' "$label" "$CONNS" "${rps:-0}" \
        "$(awk -v u="${p99:-0}" 'BEGIN { printf "%.2f", u / 1000 }')" "${errs:-?}" "$qpr" "$hit" \
        "$(cores $((pd1 - pd0)) "$wall")" "$(cores $((dn1 - dn0)) "$wall")")")
    JSON+=("{\"case\":\"$label\",\"conns\":$CONNS,\"cache_size\":$cache,\"rps\":${rps:-0},\"p99_us\":${p99:-0},\"errors\":${errs:-0},\"dns_questions_per_request\":$qpr,\"cache_hit_percent\":$hit,\"actions\":\"$(json_actions "$line")\"}")
    echo "# dns-$label actions: $(json_actions "$line")" >&2
}

echo "# $(machine_line 2>/dev/null || uname -sr)"
echo "# policy-load $LOAD_OPTS, ${DURATION}s after ${WARMUP}s warm-up"
run_case "spf+dnsbl+greylist, warm cache" 10000
run_case "spf+dnsbl+greylist, no cache" 0
printf '%-34s %6s %9s %9s %7s %9s %9s %13s %10s\n' "DNS row" "conns" "req/s" "p99 ms" \
    "errors" "DNS q/req" "cache hit" "policyd cores" "DNS cores"
for r in "${ROWS[@]}"; do echo "$r"; done
{ echo "["; (IFS=,; echo "${JSON[*]}"); echo "]"; } > "$RESULTS"
echo "# written: $RESULTS"
