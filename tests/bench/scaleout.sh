#!/usr/bin/env bash
# scaleout.sh - `make bench`'s scale-out run: 1, 2 and 3 policyd instances
# against one 3-primary Redis Cluster, and (as a reference) 1 instance
# against a standalone redis-server; throughput of each, as a table.
#
# Starts three cluster-enabled redis-servers (temp dir, free loopback ports
# below 55535: the cluster bus is port + 10000, no persistence) joined with
# `redis-cli --cluster create`, then for N = 1, 2, 3 starts N policyd
# (build/policyd -f, generated configuration: redis.cluster with the three
# seeds, log.level = "warning", metrics off) and runs six policy-load
# processes spread over the instances, BENCH_CONNS connections in total, with
# the mixed workload (20 % authenticated: sender_login + ratelimit; the rest
# greylisted). The table gives the summed req/s, the worst p99 over the
# loads, errors, and the CPU used by policyd and by Redis (in cores).
#
# This machine has 2 cores: the load generators (about one core at full
# speed), N policyd and 3 redis-servers share them, so more instances do not
# add throughput here; the run shows that spreading the load costs little
# (the per-request Redis round trip goes to the slot's node directly) and
# where the CPU goes. On real hosts each instance has its own cores.
#
# Environment:
#   BENCH_DURATION  measured seconds per run (default 5)
#   BENCH_WARMUP    warm-up seconds per run (default 2)
#   BENCH_CONNS     connections in total per run (default 48; 6 policy-load
#                   processes with BENCH_CONNS/6 each, round-robin over the
#                   instances, so the client side is the same in every row)
#   POLICYD         the binary (default build/policyd)
#   BENCH_SHARED    ../shared/bench (lib.sh, policy-load.c)
#
# Everything listens on 127.0.0.1 only; every run is bounded in time; only
# processes started here are stopped, by PID.

set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BENCH_SHARED:-$(dirname "$TOP")/shared/bench}
if [ ! -f "$SHARED/lib.sh" ] || [ ! -f "$SHARED/policy-load.c" ]; then
    echo "scaleout.sh: $SHARED is missing (expected ../shared/bench next to the" \
         "repository, with lib.sh and policy-load.c); set BENCH_SHARED=DIR" >&2
    exit 2
fi
# shellcheck source=/dev/null
. "$SHARED/lib.sh"

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-2}
CONNS=${BENCH_CONNS:-48}
GENS=6          # policy-load processes (divisible by 1, 2 and 3)
POLICYD=${POLICYD:-$TOP/build/policyd}
OUTDIR=$TOP/build/bench
LOAD=$OUTDIR/policy-load
RUN_LIMIT=$(( WARMUP + DURATION + 60 ))
LOAD_OPTS="-m mixed --auth-fraction 0.2 --clients 200 --senders 50 --recipients 10 --users 500"

[ -x "$POLICYD" ] || die "$POLICYD is missing: run make first"
command -v redis-server > /dev/null && command -v redis-cli > /dev/null ||
    die "redis-server and redis-cli are needed (apt-get install redis-server redis-tools)"
mkdir -p "$OUTDIR"
if [ ! -x "$LOAD" ] || [ "$SHARED/policy-load.c" -nt "$LOAD" ]; then
    cc -O2 -o "$LOAD" "$SHARED/policy-load.c" || die "cannot build policy-load"
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
make_workdir
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# Redis: a 3-primary cluster and one standalone server

PORT_BASE=$(( 20000 + RANDOM % 10000 ))
NODE_PORTS=()
NODE_PIDS=()
start_redis() {         # start_redis PORT DIR [ARGS...] -> pid in REDIS_PID
    local port=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --save '' \
        --appendonly no --daemonize no --loglevel warning "$@" > "$dir/redis.log" 2>&1 &
    REDIS_PID=$!
    track_pid "$REDIS_PID"
    wait_listening "$port" 15 || die "redis-server on $port did not start: $(tail -n 3 "$dir/redis.log")"
}
# port_held PORT - does any TCP socket (listening, connected, closing) use it?
port_held() {
    [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]
}
p=$PORT_BASE
for i in 1 2 3; do
    p=$(free_port "$p")
    # the cluster bus listens on port + 10000: no socket may hold either
    # (an outgoing connection's local port once held a bus port)
    while port_open $((p + 10000)) || port_held "$p" || port_held $((p + 10000)); do
        p=$(free_port $((p + 1)))
    done
    start_redis "$p" "$WORK/node$i" --cluster-enabled yes \
        --cluster-config-file "$WORK/node$i/nodes.conf" --cluster-node-timeout 2000
    NODE_PORTS+=("$p")
    NODE_PIDS+=("$REDIS_PID")
    p=$((p + 1))
done
SEEDS=()
for p in "${NODE_PORTS[@]}"; do SEEDS+=("127.0.0.1:$p"); done
timeout 60 redis-cli --cluster create "${SEEDS[@]}" --cluster-replicas 0 --cluster-yes \
    > "$WORK/cluster-create.log" 2>&1 || die "cluster create failed: $(tail -n 5 "$WORK/cluster-create.log")"
for _ in $(seq 100); do
    ok=0
    for p in "${NODE_PORTS[@]}"; do
        timeout 5 redis-cli -p "$p" CLUSTER INFO | grep -q "cluster_state:ok" && ok=$((ok + 1))
    done
    [ "$ok" = 3 ] && break
    sleep 0.2
done
[ "$ok" = 3 ] || die "the cluster did not reach cluster_state:ok"
SOLO_PORT=$(free_port "$p")
start_redis "$SOLO_PORT" "$WORK/solo"
SOLO_PID=$REDIS_PID

# ---------------------------------------------------------------------------
# policyd

seed_list() { local s="" a; for a in "${SEEDS[@]}"; do s="$s${s:+, }\"$a\""; done; echo "$s"; }

write_conf() {          # write_conf FILE PORT REDIS_BLOCK
    cat > "$1" <<EOF
# generated by tests/bench/scaleout.sh
listen = [ "inet:127.0.0.1:$2" ];
run_as_root = true;
hostname = "bench.example";
limits = { max_pipeline = 256; };
log = { level = "warning"; };
$3
metrics = { address = ""; };
rules = (
  { name = "sender-login"; match = { authenticated = true; }; check = "sender_login"; builtin = true; },
  { name = "rate-user"; match = { authenticated = true; }; check = "ratelimit";
    key = "sasl_username"; windows = ( { limit = 100; seconds = 60; } ); },
  { name = "authenticated"; match = { authenticated = true; }; action = "DUNNO"; },
  { name = "greylist"; match = { authenticated = false; }; check = "greylist";
    delay = 1; auto_whitelist = 0; }
);
EOF
}

PD_PIDS=()
PD_PORTS=()
start_policyds() {      # start_policyds N REDIS_BLOCK
    local i port conf
    PD_PIDS=()
    PD_PORTS=()
    for i in $(seq "$1"); do
        port=$(free_port $((SOLO_PORT + 1 + RANDOM % 200)))
        conf=$WORK/policyd-$i.conf
        write_conf "$conf" "$port" "$2"
        "$POLICYD" -t -c "$conf" > "$WORK/policyd-$i.check" 2>&1 ||
            die "policyd rejects the generated configuration: $(cat "$WORK/policyd-$i.check")"
        "$POLICYD" -f -c "$conf" > "$WORK/policyd-$i.log" 2>&1 &
        PD_PIDS+=("$!")
        track_pid "$!"
        wait_listening "$port" 15 || die "policyd $i is not listening: $(tail -n 5 "$WORK/policyd-$i.log")"
        PD_PORTS+=("$port")
    done
    sleep 1     # connections and (cluster) the slot map
}
stop_policyds() {
    local pid
    for pid in "${PD_PIDS[@]}"; do
        stop_pid "$pid"
        untrack_pid "$pid"
    done
}

ticks_of() { local t=0 pid; for pid in "$@"; do t=$((t + $(tree_cpu_ticks "$pid"))); done; echo "$t"; }
flush_all() { local p; for p in "${NODE_PORTS[@]}" "$SOLO_PORT"; do timeout 10 redis-cli -p "$p" FLUSHALL > /dev/null; done; }

ROWS=()
run_config() {          # run_config LABEL N REDIS_BLOCK REDIS_PIDS...
    local label=$1 n=$2 block=$3
    shift 3
    local rpids=("$@") i per rps=0 p99=0 errs=0 e line pd0 rd0 pd1 rd1 t0 wall
    flush_all
    start_policyds "$n" "$block"
    per=$(( CONNS / GENS ))
    pd0=$(ticks_of "${PD_PIDS[@]}")
    rd0=$(ticks_of "${rpids[@]}")
    t0=$(now_s)
    local loads=()
    # the same GENS generators in every configuration, spread round-robin
    # over the instances: only the server side changes between rows
    for i in $(seq 0 $((GENS - 1))); do
        # shellcheck disable=SC2086  # the options are split on purpose
        timeout "$RUN_LIMIT" "$LOAD" -c "$per" -w "$WARMUP" -d "$DURATION" -s $((i + 1)) $LOAD_OPTS \
            --json "127.0.0.1:${PD_PORTS[$((i % n))]}" > "$WORK/load-$n-$i.json" 2> "$WORK/load-$n-$i.err" &
        loads+=("$!")
    done
    wait "${loads[@]}"
    wall=$(elapsed_since "$t0")
    pd1=$(ticks_of "${PD_PIDS[@]}")
    rd1=$(ticks_of "${rpids[@]}")
    for i in $(seq 0 $((GENS - 1))); do
        line=$(tail -n 1 "$WORK/load-$n-$i.json")
        [ -n "$line" ] || { note "$label: load $i gave no result: $(tail -n 3 "$WORK/load-$n-$i.err")"; continue; }
        rps=$(awk -v a="$rps" -v b="$(json_num "$line" rps)" 'BEGIN { printf "%.0f", a + b }')
        p99=$(awk -v a="$p99" -v b="$(json_num "$line" p99)" 'BEGIN { printf "%.0f", (b > a) ? b : a }')
        e=$(printf '%s\n' "$line" | grep -o '"errors":{[^}]*}' | grep -o ':[0-9]*' | tr -d ':' | awk '{ s += $1 } END { print s + 0 }')
        errs=$((errs + e))
    done
    stop_policyds
    ROWS+=("$(printf '%-28s %9s %6s %9s %9s %7s %13s %11s' "$label" "$n" "$((CONNS / n))" "$rps" \
        "$(awk -v u="$p99" 'BEGIN { printf "%.2f", u / 1000 }')" "$errs" \
        "$(cores $((pd1 - pd0)) "$wall")" "$(cores $((rd1 - rd0)) "$wall")")")
    echo "${ROWS[-1]}" >&2
}

echo "# scale-out: mixed workload (20 % auth), $CONNS connections in total, -w $WARMUP -d $DURATION," \
     "$(nproc) cores" >&2
CLUSTER_BLOCK="redis = { cluster = [ $(seed_list) ]; prefix = \"pd:\"; timeout_ms = 250; };"
SOLO_BLOCK="redis = { address = \"127.0.0.1:$SOLO_PORT\"; prefix = \"pd:\"; timeout_ms = 250; };"
run_config "standalone redis (ref.)" 1 "$SOLO_BLOCK" "$SOLO_PID"
for n in 1 2 3; do
    run_config "cluster, $n instance$([ "$n" = 1 ] || echo s)" "$n" "$CLUSTER_BLOCK" "${NODE_PIDS[@]}"
done

echo
echo "policyd scale-out ($(nproc) cores; $GENS x policy-load -m mixed, $CONNS connections in total over the instances)"
printf '%-28s %9s %6s %9s %9s %7s %13s %11s\n' "configuration" "instances" "c/inst" "req/s" \
    "p99 ms" "errors" "policyd cores" "redis cores"
for r in "${ROWS[@]}"; do echo "$r"; done
cat <<EOF

Note: on $(nproc) cores the six load generators, the policyd instances and
the redis-servers share the CPU (the columns above plus the generators add
up to the machine), so adding instances cannot add much throughput here.
With one instance the cluster costs throughput against a standalone Redis
(likely: its requests are spread over three connections, so fewer replies
arrive per read, and three redis event loops compete for two cores); more
instances make up for it. Instances scale with hosts (each MX/submission
host runs its own), and a cluster adds Redis capacity by adding primaries.
EOF
