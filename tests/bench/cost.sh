#!/usr/bin/env bash
# cost.sh - what one request costs, in figures a shared machine does not
# blur: Redis commands per request (INFO commandstats), CPU microseconds of
# the server and of Redis (from /proc), and with -p / -r the instructions
# per request of the server / of Redis under valgrind --tool=callgrind
# (collection switched on for the measured requests only).
#
# usage: bash tests/bench/cost.sh [-p] [-r] greylist|auth|mixed shipped|null [N]
#   shipped   policyd (POLICYD, default build/policyd) with rules/policyd.conf
#             as make bench runs it "as shipped" (log.level info to a file)
#   null      ../shared/bench's null-redis (one EVALSHA per request)
# N requests (default 100000) at 32 connections with make bench's load
# options, after N/4 of warm-up (another seed). Under callgrind the server
# or Redis is some 50 times slower: what is remembered for a few seconds
# (local_cache) is used less, so compare such figures with each other.
# Everything is private (temp dir, loopback, free ports) and bounded; only
# processes started here are stopped, by PID.
set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BENCH_SHARED:-$(dirname "$TOP")/shared/bench}
# shellcheck source=/dev/null
. "$SHARED/lib.sh"
PCG=""; RCG=""
while getopts pr o; do
    case $o in p) PCG=1 ;; r) RCG=1 ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
W=${1:-}; S=${2:-}; N=${3:-100000}
case "$W:$S" in greylist:shipped|greylist:null|auth:shipped|auth:null|mixed:shipped|mixed:null) ;;
*) die "usage: cost.sh [-p] [-r] greylist|auth|mixed shipped|null [N]" ;; esac
POLICYD=${POLICYD:-$TOP/build/policyd}
OUT=$TOP/build/bench
LOAD=$OUT/policy-load
NULL_REDIS=$OUT/null-redis
if [ ! -x "$LOAD" ] || [ ! -x "$NULL_REDIS" ]; then
    die "run make bench once first (it builds $LOAD and $NULL_REDIS)"
fi
make_workdir
trap cleanup EXIT
cg() {  # cg NAME: the valgrind prefix, or nothing
    echo valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/cost.$1.%p"
}

RP=$(free_port $((20000 + RANDOM % 8000)))
# shellcheck disable=SC2046
${RCG:+$(cg redis)} redis-server --bind 127.0.0.1 --port "$RP" --dir "$WORK" --save '' \
    --appendonly no --loglevel warning > "$WORK/redis.log" 2>&1 &
RPID=$!; track_pid "$RPID"
wait_listening "$RP" 60 || die "redis-server did not start"
PP=$(free_port $((RP + 1)))
if [ "$S" = shipped ]; then
    mkdir -p "$WORK/s"
    cp "$TOP"/rules/* "$WORK/s/"
    sed -e "s|^listen = .*|listen = [ \"inet:127.0.0.1:$PP\" ];|" \
        -e "s|127.0.0.1:6379|127.0.0.1:$RP|" -e 's|^user = .*|run_as_root = true;|' \
        -e 's|"127.0.0.1:9110"|""|' "$TOP/rules/policyd.conf" > "$WORK/s/policyd.conf"
    # shellcheck disable=SC2046
    ${PCG:+$(cg server)} "$POLICYD" -f -c "$WORK/s/policyd.conf" > "$WORK/s/log" 2>&1 &
else
    # shellcheck disable=SC2046
    ${PCG:+$(cg server)} "$NULL_REDIS" -q -m async -c evalsha -r "127.0.0.1:$RP" -L 3600 \
        "127.0.0.1:$PP" > "$WORK/null.log" 2>&1 &
fi
SPID=$!; track_pid "$SPID"
wait_listening "$PP" 60 || die "the server did not start: $(tail -n 3 "$WORK"/s/log "$WORK"/null.log 2>/dev/null)"
POOLS="--clients 200 --senders 50 --recipients 10"
case $W in
greylist) OPTS="-m greylist $POOLS --repeat 0.5" ;;
auth) OPTS="-m auth $POOLS --users 500" ;;
mixed) OPTS="-m mixed $POOLS --users 500 --repeat 0.5 --auth-fraction 0.2" ;;
esac
rcli() { timeout 30 redis-cli -p "$RP" "$@" | tr -d '\r'; }
# shellcheck disable=SC2086
timeout 900 "$LOAD" -c 32 -n $((N / 4)) -d 600 -s 7 $OPTS "127.0.0.1:$PP" > /dev/null
rcli CONFIG RESETSTAT > /dev/null
s0=$(tree_cpu_ticks "$SPID"); r0=$(tree_cpu_ticks "$RPID")
[ -n "$PCG" ] && callgrind_control -i on "$SPID" > /dev/null 2>&1
[ -n "$RCG" ] && callgrind_control -i on "$RPID" > /dev/null 2>&1
# shellcheck disable=SC2086
line=$(timeout 900 "$LOAD" -c 32 -n "$N" -d 600 -s 1 $OPTS --json "127.0.0.1:$PP")
s1=$(tree_cpu_ticks "$SPID"); r1=$(tree_cpu_ticks "$RPID")
instr() {       # instr PID NAME: instructions per request since "on"
    callgrind_control -i off "$1" > /dev/null 2>&1
    rm -f "$OUT/cost.$2.$1".*
    callgrind_control -d "$1" > /dev/null 2>&1
    # the dump of the measured requests: the only numbered file
    awk -v n="$N" '/^totals:/ { printf "%.0f", $2 / n; exit }' "$OUT/cost.$2.$1".1
}
echo "# $S, $W mix, $N requests at 32 connections (after $((N / 4)) of warm-up)"
echo "replies: $(json_actions "$line")"
stats=$(rcli INFO commandstats)
echo "redis commands per request: $(echo "$stats" | awk -F'[:=,]' -v n="$N" '
    /^cmdstat_/ && $1 !~ /info|config/ { c[substr($1, 9)] = $3; t += $3 }
    END { for (k in c) printf "%s %.3f, ", k, c[k] / n; printf "all %.3f", t / n }')"
echo "CPU us per request: server $(awk -v t=$((s1 - s0)) -v n="$N" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')," \
     "redis $(awk -v t=$((r1 - r0)) -v n="$N" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
[ -n "$PCG" ] && echo "server instructions per request: $(instr "$SPID" server)"
[ -n "$RCG" ] && echo "redis instructions per request: $(instr "$RPID" redis)"
exit 0
