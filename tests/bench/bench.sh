#!/usr/bin/env bash
# bench.sh - `make bench`: policyd against its peers and the one-Redis-round-
# trip reference server, in one run, on this machine.
#
# Starts a private redis-server (temp dir, free loopback port, no
# persistence) and policyd (build/policyd -f, generated configuration,
# log.level = "warning": no line per decision), and runs three workloads
# with ../shared/bench's policy-load at each concurrency level:
#   greylist  unauthenticated; 200 clients (200 /24s) x 50 senders x 10
#             recipients = 100,000 distinct triplets, half the requests a
#             retry of a recent triplet; delay 1 s so defers and passes mix;
#             auto-whitelist off (in policyd and postgrey) so every request
#             looks its triplet up
#   auth      every request SASL-authenticated: sender_login (built-in
#             rule: the login owns its address) and a ratelimit on
#             sasl_username (100 per 60 s, as the postfwd peer's rule)
#   mixed     20 % authenticated, the rest greylisted
# Then, in the same run and with the same load options: postgrey and
# postgrey on tmpfs (greylist), postfwd2 and postfwd1 (auth and mixed), and
# null-redis -m async -c evalsha (every workload): one EVALSHA per request,
# the ceiling for a daemon that needs Redis once per decision. policyd is
# also measured once with log.level = "info" (stderr to a file) to show the
# cost of per-decision logging, and "as shipped" at 32 connections:
# rules/policyd.conf itself (7 rules, access maps, relocated, sender_login
# and a ratelimit with overrides and max_networks, greylisting with delay
# 300 and auto-whitelist 5, log.level = "info") with keys of its own,
# once with stderr to a file (every workload) and once as a daemon logging
# to syslog over a datagram socket read by a sink (greylist).
# Last: RSS of policyd with BENCH_IDLE idle connections, Redis used_memory
# per greylist entry over BENCH_ENTRIES new triplets, and Redis bytes per
# triplet at BENCH_TRIPLETS (1,000,000) triplets for two spreads (the
# bench's 200 /24s, and a spam-like /24 per 1-5 triplets).
# Prints every run with the CPU (cores) of server, Redis and generator, a
# summary table with policyd's ratio to each peer and to null-redis, CPU
# microseconds per request (server and Redis, from /proc), and checks issue
# 6's and issue 11's targets (MET / NOT MET); writes build/bench/results.json
# (every run, the summary, the machine, CPU per request, bytes per triplet).
#
# Environment:
#   BENCH_DURATION  measured seconds per run (default 5)
#   BENCH_WARMUP    warm-up seconds per run (default 2)
#   BENCH_LEVELS    concurrency levels (default "1 8 32 128")
#   BENCH_PEERS     peers to run (default "postgrey postgrey-tmpfs postfwd2 postfwd1")
#   BENCH_PAIRS     time-adjacent runs of null-redis and policyd as shipped at
#                   32 connections per workload (default 5; the first is the
#                   level loop's): issue 11's ratios are their median
#   BENCH_IDLE      idle connections for the RSS check (default 10000)
#   BENCH_ENTRIES   greylist entries for the Redis memory check (default 100000)
#   BENCH_TRIPLETS  triplets for the bytes-per-triplet check (default 1000000)
#   BENCH_MAP_ENTRIES  entries of the map-loading check (default 1000000)
#   BENCH_PERF=1    after the measured runs, one more run of policyd
#                   (greylist, 32 connections) under perf record -g; the
#                   profile goes to build/bench/perf.data, its top is printed
#   POLICYD         the binary (default build/policyd)
#
# Everything listens on 127.0.0.1 only; every run is bounded in time; only
# processes started here are stopped, by PID. Needs root to install missing
# Debian packages (postgrey, postfwd, redis-server, ...) and for the peers
# to drop to their service users.

set -u
TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${BENCH_SHARED:-$(dirname "$TOP")/shared/bench}
if [ ! -f "$SHARED/lib.sh" ] || [ ! -f "$SHARED/policy-load.c" ]; then
    echo "bench.sh: $SHARED is missing (expected ../shared/bench next to the repository," \
         "with lib.sh, policy-load.c and null-redis.c); set BENCH_SHARED=DIR" >&2
    exit 2
fi
# shellcheck source=/dev/null
. "$SHARED/lib.sh"

DURATION=${BENCH_DURATION:-5}
WARMUP=${BENCH_WARMUP:-2}
LEVELS=${BENCH_LEVELS:-"1 8 32 128"}
PEERS=${BENCH_PEERS-"postgrey postgrey-tmpfs postfwd2 postfwd1"}
PAIRS=${BENCH_PAIRS:-5}
ROUND=1
IDLE_CONNS=${BENCH_IDLE:-10000}
ENTRIES=${BENCH_ENTRIES:-100000}
POLICYD=${POLICYD:-$TOP/build/policyd}
OUTDIR=$TOP/build/bench
LOAD=$OUTDIR/policy-load
NULL_REDIS=$OUTDIR/null-redis
HELPER=$TOP/tests/bench/bench-helper.py
RUNS=$OUTDIR/runs.jsonl
EXTRA=$OUTDIR/extra.json
RESULTS=$OUTDIR/results.json
SEED=1
RUN_LIMIT=$(awk -v a="$WARMUP" -v b="$DURATION" 'BEGIN { print int(a + b + 60) }')
START_TIME=$(now_s)

# Load options per workload (the same for every server).
POOLS="--clients 200 --senders 50 --recipients 10"
declare -A LOAD_OPTS=(
    [greylist]="-m greylist $POOLS --repeat 0.5"
    [auth]="-m auth $POOLS --users 500"
    [mixed]="-m mixed $POOLS --users 500 --repeat 0.5 --auth-fraction 0.2"
)
WORKLOADS=(greylist auth mixed)

# ---------------------------------------------------------------------------
# Packages, tools, limits

install_missing() {
    local want=() p
    command -v postgrey >/dev/null || want+=(postgrey)
    command -v postfwd2 >/dev/null || want+=(postfwd)
    command -v redis-server >/dev/null || want+=(redis-server)
    command -v redis-cli >/dev/null || want+=(redis-tools)
    command -v python3 >/dev/null || want+=(python3)
    for p in libevent-dev libhiredis-dev; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || want+=("$p")
    done
    [ ${#want[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        note "installing ${want[*]}"
        # Debian's postinst may not start services here (policy-rc.d); we
        # never use the system instances anyway.
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q "${want[@]}" >&2 ||
            { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive timeout 600 \
                apt-get install -y -q "${want[@]}" >&2; } ||
            note "apt-get install ${want[*]} failed; continuing with what is there"
    else
        note "missing: ${want[*]} (not root: not installing; those parts are skipped)"
    fi
}

build_bench_tools() {
    mkdir -p "$OUTDIR"
    local cc=${CC:-cc} flags="-O2 -g -std=c11 -Wall -Wextra"
    if [ ! -x "$LOAD" ] || [ "$SHARED/policy-load.c" -nt "$LOAD" ]; then
        # shellcheck disable=SC2086
        $cc $flags -o "$LOAD" "$SHARED/policy-load.c" || die "cannot build policy-load"
    fi
    if [ ! -x "$NULL_REDIS" ] || [ "$SHARED/null-redis.c" -nt "$NULL_REDIS" ]; then
        # shellcheck disable=SC2086
        $cc $flags -o "$NULL_REDIS" "$SHARED/null-redis.c" -levent -lhiredis ||
            die "cannot build null-redis (libevent-dev, libhiredis-dev)"
    fi
}

install_missing
command -v redis-server >/dev/null || die "redis-server is not installed"
command -v redis-cli >/dev/null || die "redis-cli (redis-tools) is not installed"
[ -x "$POLICYD" ] || die "$POLICYD is missing: run make first (make bench does)"
build_bench_tools
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null ||
    note "cannot raise RLIMIT_NOFILE (now $(ulimit -n))"
make_workdir
trap cleanup EXIT
trap 'exit 130' INT TERM
: > "$RUNS"

# ---------------------------------------------------------------------------
# redis-server

PORT_BASE=$(( 20000 + RANDOM % 10000 ))   # below the ephemeral range
REDIS_PORT=$(free_port "$PORT_BASE")
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK" --save '' \
    --appendonly no --daemonize no --loglevel warning > "$WORK/redis.log" 2>&1 &
REDIS_PID=$!
track_pid "$REDIS_PID"
wait_listening "$REDIS_PORT" 15 || die "redis-server did not start: $(tail -n 3 "$WORK/redis.log")"
rcli() { timeout 30 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
used_memory() { rcli INFO memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)$/\1/p'; }

# ---------------------------------------------------------------------------
# policyd configuration

# Which of the checks the auth workload wants does this binary have?
check_available() {     # check_available NAME "RULE OPTIONS"
    local f=$WORK/probe-$1.conf
    cat > "$f" <<EOF
listen = [ "inet:127.0.0.1:1" ];
run_as_root = true;
metrics = { address = ""; };
rules = ( { name = "probe"; match = { authenticated = true; }; check = "$1"; $2 } );
EOF
    "$POLICYD" -t -c "$f" > "$WORK/probe-$1.out" 2>&1
}
SENDER_RULE='{ name = "sender-login"; match = { authenticated = true; }; check = "sender_login"; builtin = true; },'
RATE_OPTS='key = "sasl_username"; windows = ( { limit = 100; seconds = 60; } );'
RATE_RULE="{ name = \"rate-user\"; match = { authenticated = true; }; check = \"ratelimit\"; $RATE_OPTS },"
AUTH_CHECKS=()
if check_available sender_login "builtin = true;"; then AUTH_CHECKS+=(sender_login)
else note "sender_login is not available in $POLICYD: $(head -c 200 "$WORK/probe-sender_login.out")"; SENDER_RULE=""; fi
if check_available ratelimit "$RATE_OPTS"; then AUTH_CHECKS+=(ratelimit)
else note "ratelimit is not available in $POLICYD: $(head -c 200 "$WORK/probe-ratelimit.out")"; RATE_RULE=""; fi

# write_policyd_conf FILE PORT LOGLEVEL
write_policyd_conf() {
    cat > "$1" <<EOF
# generated by tests/bench/bench.sh
listen = [ "inet:127.0.0.1:$2" ];
run_as_root = true;
hostname = "bench.example";
limits = { max_connections = $((IDLE_CONNS + 1000)); max_pipeline = 256; };
# "warning": no line per decision (syslog/stderr off the hot path)
log = { level = "$3"; };
redis = { address = "127.0.0.1:$REDIS_PORT"; prefix = "pd:"; timeout_ms = 250; };
metrics = { address = ""; };
rules = (
  { name = "trusted"; match = { client_address = [ "203.0.113.0/24" ]; }; action = "OK"; },
  { name = "block-domain"; match = { sender = [ "@d13.example.com" ]; };
    action = "REJECT 5.7.1 sender domain blocked"; },
  $SENDER_RULE
  $RATE_RULE
  { name = "authenticated"; match = { authenticated = true; }; action = "DUNNO"; },
  { name = "greylist"; match = { authenticated = false; }; check = "greylist";
    delay = 1; auto_whitelist = 0; }
);
EOF
}

POLICYD_PID=""
POLICYD_PORT=""
start_policyd() {       # start_policyd LOGLEVEL NAME
    local conf=$WORK/policyd-$2.conf
    POLICYD_PORT=$(free_port $((REDIS_PORT + 1)))
    write_policyd_conf "$conf" "$POLICYD_PORT" "$1"
    "$POLICYD" -t -c "$conf" > "$WORK/policyd-$2.check" 2>&1 ||
        die "policyd rejects the generated configuration: $(cat "$WORK/policyd-$2.check")"
    "$POLICYD" -f -c "$conf" > "$WORK/policyd-$2.log" 2>&1 &
    POLICYD_PID=$!
    track_pid "$POLICYD_PID"
    wait_listening "$POLICYD_PORT" 15 ||
        die "policyd is not listening on 127.0.0.1:$POLICYD_PORT: $(tail -n 5 "$WORK/policyd-$2.log")"
}
stop_policyd() {
    stop_pid "$POLICYD_PID"
    untrack_pid "$POLICYD_PID"
    POLICYD_PID=""
}

# ---------------------------------------------------------------------------
# Peers, modelled on ../shared/bench/peers.sh (same configurations)

PG_DELAY=1
start_postgrey() {      # start_postgrey DIR PORT
    local dir=$1 port=$2 db=$1/db f
    mkdir -p "$db"
    for f in whitelist_clients whitelist_recipients; do : > "$dir/$f"; done
    service_user postgrey
    chown -R "$SVC_USER:$SVC_GROUP" "$db"
    postgrey --inet="127.0.0.1:$port" --dbdir="$db" --delay="$PG_DELAY" \
        --auto-whitelist-clients=0 --user="$SVC_USER" --group="$SVC_GROUP" \
        --whitelist-clients="$dir/whitelist_clients" \
        --whitelist-recipients="$dir/whitelist_recipients" \
        > "$dir/postgrey.log" 2>&1 &
    PEER_PID=$!
}
start_postgrey-tmpfs() {
    local shm
    shm=$(mktemp -d /dev/shm/policy-bench.XXXXXX) || return 1
    chmod 755 "$shm"
    TRACKED_DIRS+=("$shm")
    start_postgrey "$shm" "$2"
}
write_postfwd_rules() {
    cat > "$1" <<'EOF'
# the peers.sh rule set: a whitelist, a rate limit per SASL user, two access rules
id=TRUSTED ; client_address=203.0.113.0/24 ; action=OK
id=RATE_SASL ; sasl_username=. ; action=rate(sasl_username/100/60/DEFER_IF_PERMIT 4.7.1 rate limit exceeded for $$sasl_username)
id=BLOCK_DOMAIN ; sender_domain==d13.example.com ; action=REJECT 5.7.1 sender domain blocked
id=BAD_HELO ; client_name==unknown ; helo_name=^\[ ; action=REJECT 5.7.1 bare IP address in HELO
id=DEFAULT ; action=DUNNO
EOF
}
start_postfwd() {       # start_postfwd postfwd1|postfwd2 DIR PORT
    local variant=$1 dir=$2 port=$3 pid
    write_postfwd_rules "$dir/postfwd.cf"
    service_user postfw
    chown "$SVC_USER:$SVC_GROUP" "$dir"
    local common=(--file="$dir/postfwd.cf" --interface=127.0.0.1 --port="$port"
                  --user="$SVC_USER" --group="$SVC_GROUP" --pidfile="$dir/postfwd.pid"
                  --cache=600 --cache-rdomain-only --cache-no-size --summary=600)
    if [ "$variant" = postfwd2 ]; then
        timeout 30 postfwd2 "${common[@]}" --cache_socket="unix::$dir/cache.sock" > "$dir/postfwd.out" 2>&1
    else
        timeout 30 postfwd1 --daemon "${common[@]}" > "$dir/postfwd.out" 2>&1
    fi
    pid=$(wait_pidfile "$dir/postfwd.pid") || { note "$variant wrote no pidfile"; return 1; }
    pid_matches "$pid" "$dir" || { note "pid $pid is not our $variant"; return 1; }
    PEER_PID=$pid
}
start_postfwd2() { start_postfwd postfwd2 "$@"; }
start_postfwd1() { start_postfwd postfwd1 "$@"; }
start_null-redis() {
    "$NULL_REDIS" -q -m async -c evalsha -r "127.0.0.1:$REDIS_PORT" -L 3600 \
        "127.0.0.1:$2" > "$1/null-redis.log" 2>&1 &
    PEER_PID=$!
}
peer_installed() {
    case $1 in
    postgrey*) command -v postgrey >/dev/null ;;
    postfwd2) command -v postfwd2 >/dev/null ;;
    postfwd1) command -v postfwd1 >/dev/null ;;
    *) return 0 ;;
    esac
}
stop_peer() {           # the peer and every process it forked
    local pid=$1 kids=() k g
    for k in $(children_of "$pid"); do
        kids+=("$k")
        for g in $(children_of "$k"); do kids+=("$g"); done
    done
    stop_pid "$pid"
    for k in "${kids[@]}"; do stop_pid "$k"; done
    untrack_pid "$pid"
}

# ---------------------------------------------------------------------------
# One policy-load run; appends {"server","workload","conns",...,"load":{...}}

PERF_PID=""
run_load() {    # run_load SERVER WORKLOAD CONNS PORT SERVER_PID
    local server=$1 w=$2 c=$3 port=$4 pid=$5 line t0 s0 r0 wall srv rds
    t0=$(now_s); s0=$(tree_cpu_ticks "$pid"); r0=$(tree_cpu_ticks "$REDIS_PID")
    if [ "$server" = policyd-perf ]; then
        ( sleep "$WARMUP"; exec timeout $((${DURATION%.*} + 30)) perf record -q -g -p "$pid" \
              -o "$OUTDIR/perf.data" -- sleep "$DURATION" ) > "$WORK/perf.log" 2>&1 &
        PERF_PID=$!
        track_pid "$PERF_PID"
    fi
    # shellcheck disable=SC2086  # the options are split on purpose
    line=$(timeout "$RUN_LIMIT" "$LOAD" -c "$c" -w "$WARMUP" -d "$DURATION" -s "$SEED" \
           ${LOAD_OPTS[$w]} --json -l "$server $w c=$c" "127.0.0.1:$port")
    wall=$(elapsed_since "$t0")
    srv=$(cores $(( $(tree_cpu_ticks "$pid") - s0 )) "$wall")
    rds=$(cores $(( $(tree_cpu_ticks "$REDIS_PID") - r0 )) "$wall")
    if [ -n "$PERF_PID" ]; then
        wait "$PERF_PID" 2>/dev/null; untrack_pid "$PERF_PID"; PERF_PID=""
    fi
    if [ -z "$line" ]; then
        note "$server $w c=$c: no result"
        return 1
    fi
    printf '{"server":"%s","workload":"%s","conns":%d,"round":%d,"server_cores":%s,"redis_cores":%s,"load":%s}\n' \
        "$server" "$w" "$c" "$ROUND" "$srv" "$rds" "$line" >> "$RUNS"
    printf '  %-15s %-9s c=%-4s %9.0f req/s  p50 %6s us  p99 %7s us  max %8s us  errors %s  cores srv %s redis %s gen %s\n' \
        "$server" "$w" "$c" "$(json_num "$line" rps)" "$(json_num "$line" p50)" \
        "$(json_num "$line" p99)" "$(json_num "$line" max)" "$(json_num "$line" total)" \
        "$srv" "$rds" "$(json_num "$line" cores)"
}

# start_server NAME WORKLOAD: a fresh instance on a free port; sets
# SPORT[NAME] and SPID[NAME]. Returns 1 (with a note) when it cannot run.
declare -A SPORT SPID
start_server() {
    local name=$1 w=$2 dir port
    peer_installed "$name" || { note "$name is not installed; skipped"; return 1; }
    local try
    for try in 1 2 3; do        # a port can be taken between the check and the bind
        dir="$WORK/$name.$w.r$ROUND.$try"
        mkdir -p "$dir" && chmod 755 "$dir"
        port=$(free_port $((REDIS_PORT + 1 + RANDOM % 100)))
        PEER_PID=""
        if ! "start_$name" "$dir" "$port" || [ -z "$PEER_PID" ]; then
            note "$name did not start; see $dir"; return 1
        fi
        track_pid "$PEER_PID"
        wait_listening "$port" 20 && break
        note "$name is not listening on 127.0.0.1:$port after 20 s (alive: $(alive "$PEER_PID" && echo yes || echo no)):"
        tail -n 5 "$dir"/*.log "$dir"/*.out 2>/dev/null >&2
        stop_peer "$PEER_PID"
        [ "$try" = 3 ] && return 1
    done
    SPORT[$name]=$port
    SPID[$name]=$PEER_PID
}
policyd_server() {      # policyd_server LOGLEVEL DIR PORT
    write_policyd_conf "$2/policyd.conf" "$3" "$1"
    "$POLICYD" -t -c "$2/policyd.conf" > "$2/check.out" 2>&1 ||
        die "policyd rejects the generated configuration: $(cat "$2/check.out")"
    "$POLICYD" -f -c "$2/policyd.conf" > "$2/policyd.log" 2>&1 &
    PEER_PID=$!
}
start_policyd-warning() { policyd_server warning "$@"; }
start_policyd-info() { policyd_server info "$@"; }

# "as shipped": rules/policyd.conf itself (its rules, maps, log.level info),
# only the listener, Redis, metrics and user changed; its map files beside it.
# Its keys have a prefix of their own (PREFIX, one per server): a fresh
# installation, which sees none of the triplets the delay-1 configuration
# of the other policyd servers let pass (with delay 300 every greylist
# request is a new triplet or an early retry).
shipped_conf() {        # shipped_conf DIR PORT PREFIX
    cp "$TOP"/rules/* "$1/"
    sed -e "s|^listen = .*|listen = [ \"inet:127.0.0.1:$2\" ];|" \
        -e "s|127.0.0.1:6379|127.0.0.1:$REDIS_PORT|" \
        -e "s|^\( *prefix = \)\"pd:\"|\1\"$3\"|" \
        -e 's|^user = .*|run_as_root = true;|' \
        -e 's|^\( *max_connections = \)[0-9]*|\1'$((IDLE_CONNS + 1000))'|' \
        -e 's|"127.0.0.1:9110"|""|' \
        "$TOP/rules/policyd.conf" > "$1/policyd.conf"
    grep -q "prefix = \"$3\"" "$1/policyd.conf" ||
        die "rules/policyd.conf: no 'prefix = \"pd:\"' line to give the as-shipped server its own keys"
    "$POLICYD" -t -c "$1/policyd.conf" > "$1/check.out" 2>&1 ||
        die "policyd rejects the shipped configuration: $(cat "$1/check.out")"
}
# stderr to a file, as under systemd with StandardError=file: or a pipe
start_policyd-shipped() {
    shipped_conf "$1" "$2" "pdshipped$ROUND:"
    "$POLICYD" -f -c "$1/policyd.conf" > "$1/policyd.log" 2>&1 &
    PEER_PID=$!
}
# syslog: daemon mode, its datagrams to a reader standing in for rsyslog
start_policyd-syslog() {
    shipped_conf "$1" "$2" "pdsyslog:"
    printf 'pidfile = "%s/policyd.pid";\n' "$1" >> "$1/policyd.conf"
    python3 "$HELPER" sink "$1/log.sock" "$1/sink.count" > "$1/sink.out" 2>&1 &
    track_pid $!
    for _ in $(seq 50); do [ -S "$1/log.sock" ] && break; sleep 0.1; done
    POLICYD_LOG_SOCKET="$1/log.sock" "$POLICYD" -c "$1/policyd.conf" > "$1/policyd.out" 2>&1 ||
        { note "policyd (daemon) did not start: $(cat "$1/policyd.out")"; return 1; }
    PEER_PID=$(wait_pidfile "$1/policyd.pid") || { note "policyd wrote no pidfile"; return 1; }
}

peers_for() {
    local p
    for p in $PEERS; do
        case "$1:$p" in
        greylist:postgrey*|auth:postfwd*|mixed:postfwd*) echo "$p" ;;
        esac
    done
}

# ---------------------------------------------------------------------------

machine_line
MACHINE=$(machine_line | sed 's/^# //')
echo "# bench.sh: ${WARMUP}s warm-up + ${DURATION}s per run, levels: $LEVELS; policyd: $POLICYD"
echo "# $(redis-server --version | cut -d' ' -f1-3); auth checks available: ${AUTH_CHECKS[*]:-none}"
for w in "${WORKLOADS[@]}"; do echo "# $w: policy-load ${LOAD_OPTS[$w]}"; done

# Per workload every server runs side by side, started afresh, and each
# level is run against each server in turn: time-adjacent runs, so a noisy
# neighbour on the machine hits them alike. (policyd-info: 32 only.)
for w in "${WORKLOADS[@]}"; do
    echo "== $w"
    rcli FLUSHALL > /dev/null
    NAMES=()
    for name in policyd-warning null-redis $(peers_for "$w"); do
        start_server "$name" "$w" && NAMES+=("$name")
    done
    [ "$w" = greylist ] && start_server policyd-info "$w" && NAMES+=(policyd-info)
    start_server policyd-shipped "$w" && NAMES+=(policyd-shipped)
    [ "$w" = greylist ] && start_server policyd-syslog "$w" && NAMES+=(policyd-syslog)
    for c in $LEVELS; do
        for name in "${NAMES[@]}"; do
            case $name in policyd-info|policyd-shipped|policyd-syslog)
                [ "$c" != 32 ] && continue ;;
            esac
            label=$name; [ "$name" = policyd-warning ] && label=policyd
            run_load "$label" "$w" "$c" "${SPORT[$name]}" "${SPID[$name]}"
        done
    done
    # As shipped against the reference: more time-adjacent pairs at 32
    # connections, which of the two goes first alternating; each shipped
    # run on a fresh server with keys of its own (prefix pdshippedN:), cold
    # as in the first pair. A 5 s run on a shared VM varies by +-20 %: the
    # targets of issue 11 take the median of the pairs' ratios.
    if [ -n "${SPID[policyd-shipped]:-}" ] && [ -n "${SPID[null-redis]:-}" ] &&
       [[ " $LEVELS " == *" 32 "* ]]; then
        for ROUND in $(seq 2 "$PAIRS"); do
            stop_peer "${SPID[policyd-shipped]}"
            start_server policyd-shipped "$w" || break
            if [ $((ROUND % 2)) = 0 ]; then pair="policyd-shipped null-redis"
            else pair="null-redis policyd-shipped"; fi
            for name in $pair; do
                run_load "$name" "$w" 32 "${SPORT[$name]}" "${SPID[$name]}"
            done
        done
        ROUND=1
    fi
    echo "   redis keys after $w: $(rcli DBSIZE)"
    if [ -n "${SPID[policyd-info]:-}" ]; then
        echo "   (log.level = info wrote $(cat "$WORK"/policyd-info."$w".*/policyd.log | wc -l) lines)"
    fi
    for name in "${NAMES[@]}"; do stop_peer "${SPID[$name]}"; done
    SPID=(); SPORT=()
done

# --- a profile, outside the measured runs -----------------------------------
if [ "${BENCH_PERF:-0}" = 1 ] && command -v perf >/dev/null; then
    echo "== perf record of policyd (greylist, 32 connections; not in the summary)"
    rcli FLUSHALL > /dev/null
    start_policyd warning perf
    run_load policyd-perf greylist 32 "$POLICYD_PORT" "$POLICYD_PID"
    stop_policyd
fi

# --- RSS with many idle connections -----------------------------------------
echo "== RSS with $IDLE_CONNS idle connections"
rcli FLUSHALL > /dev/null
start_policyd warning idle
rss_kb() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$1/status"; }
# warm it up a little first, so the figure includes the request path
timeout 30 "$LOAD" -c 8 -w 0 -d 1 -s "$SEED" ${LOAD_OPTS[mixed]} --json "127.0.0.1:$POLICYD_PORT" > /dev/null
RSS_BEFORE=$(rss_kb "$POLICYD_PID")
python3 "$HELPER" idle "$POLICYD_PORT" "$IDLE_CONNS" 120 > "$WORK/idle.out" 2>&1 &
IDLE_PID=$!
track_pid "$IDLE_PID"
for _ in $(seq 600); do
    grep -q '^ready\|^error' "$WORK/idle.out" && break
    alive "$IDLE_PID" || break
    sleep 0.1
done
sleep 1
IDLE_LINE=$(grep -m1 '^ready\|^error' "$WORK/idle.out")
IDLE_OPEN=$(echo "$IDLE_LINE" | awk '$1 == "ready" { print $2 }')
PROBE_MS=$(echo "$IDLE_LINE" | awk '$1 == "ready" { print $4 }')
RSS_IDLE=$(rss_kb "$POLICYD_PID")
FDS=$(ls "/proc/$POLICYD_PID/fd" 2>/dev/null | wc -l)
echo "   $IDLE_LINE; policyd VmRSS ${RSS_BEFORE} kB before, ${RSS_IDLE} kB with them; $FDS fds"
stop_pid "$IDLE_PID"; untrack_pid "$IDLE_PID"
stop_policyd

# --- Redis memory per greylist entry -----------------------------------------
echo "== Redis memory per greylist entry ($ENTRIES new triplets)"
rcli FLUSHALL > /dev/null
start_policyd warning memory
python3 "$HELPER" fill "$POLICYD_PORT" 1 1 > /dev/null     # connect, load the script
rcli FLUSHALL > /dev/null                                 # scripts survive FLUSHALL
sleep 0.2
MEM_BEFORE=$(used_memory)
FILL_LINE=$(timeout 300 python3 "$HELPER" fill "$POLICYD_PORT" "$ENTRIES" 8)
sleep 0.5
MEM_AFTER=$(used_memory)
KEYS_AFTER=$(rcli DBSIZE)
echo "   $FILL_LINE"
echo "   used_memory $MEM_BEFORE -> $MEM_AFTER, $KEYS_AFTER keys: $(awk -v a="$MEM_BEFORE" -v b="$MEM_AFTER" -v n="$ENTRIES" 'BEGIN { printf "%.1f", (b - a) / n }') bytes per entry"
SAMPLE_KEY=$(rcli --scan --count 10 2>/dev/null | head -n1)
[ -n "$SAMPLE_KEY" ] && echo "   sample key: $SAMPLE_KEY = $(rcli GET "$SAMPLE_KEY") (memory usage $(rcli MEMORY USAGE "$SAMPLE_KEY") bytes)"
stop_policyd

# --- Redis bytes per greylist triplet at 1,000,000 triplets, two spreads ------
MEM_TRIPLETS=${BENCH_TRIPLETS:-1000000}
declare -A TRIPLET_BYTES
for dist in bench spam; do
    echo "== Redis bytes per greylist triplet: $MEM_TRIPLETS triplets, distribution $dist"
    out=$(POLICYD_BIN=$POLICYD timeout 900 python3 "$TOP/tests/tools/greylist-memory.py" \
          "$MEM_TRIPLETS" 8 "$dist" 2>&1)
    echo "$out" | sed 's/^/   /'
    TRIPLET_BYTES[$dist]=$(echo "$out" | sed -n 's/^bytes per entry: *\([0-9.]*\)$/\1/p')
done

# --- map loading: 1,000,000 entries (sender_login and relocated maps) ----------
echo
echo "== loading 1,000,000-entry maps (policyd -t: the same loader as start-up and SIGHUP)"
sh "$TOP/tests/bench/mapload.sh" "$POLICYD" "${BENCH_MAP_ENTRIES:-1000000}" || true

# --- summary -------------------------------------------------------------------
cat > "$EXTRA" <<EOF
{"machine": "$MACHINE",
 "nproc": $(nproc),
 "redis": "$(redis-server --version | cut -d' ' -f3 | tr -d 'v=')",
 "policyd": "$POLICYD",
 "policyd_version": "$("$POLICYD" -V 2>&1 | head -n1 | tr -d '"\\')",
 "auth_checks": "${AUTH_CHECKS[*]:-}",
 "warmup_s": $WARMUP, "duration_s": $DURATION, "levels": "$LEVELS",
 "load_options": {"greylist": "${LOAD_OPTS[greylist]}", "auth": "${LOAD_OPTS[auth]}", "mixed": "${LOAD_OPTS[mixed]}"},
 "idle": {"wanted": $IDLE_CONNS, "open": ${IDLE_OPEN:-0}, "fds": ${FDS:-0},
          "rss_before_kb": ${RSS_BEFORE:-0}, "rss_kb": ${RSS_IDLE:-0}, "probe_ms": "${PROBE_MS:-}"},
 "redis_memory": {"entries": $ENTRIES, "used_before": ${MEM_BEFORE:-0}, "used_after": ${MEM_AFTER:-0},
                  "keys": ${KEYS_AFTER:-0}, "fill": "${FILL_LINE:-}"},
 "triplet_bytes": {"triplets": $MEM_TRIPLETS, "bench": ${TRIPLET_BYTES[bench]:-null}, "spam": ${TRIPLET_BYTES[spam]:-null}},
 "elapsed_s": $(elapsed_since "$START_TIME")}
EOF
python3 "$HELPER" summary "$RUNS" "$EXTRA" "$RESULTS"

if [ "${BENCH_PERF:-0}" = 1 ] && [ -s "$OUTDIR/perf.data" ]; then
    echo
    echo "== perf profile of policyd, greylist, 32 connections (self time by object, then by symbol)"
    timeout 120 perf report -i "$OUTDIR/perf.data" --no-children --stdio -g none \
        --sort dso 2>/dev/null | grep '%' | head -n 10
    timeout 120 perf report -i "$OUTDIR/perf.data" --no-children --stdio -g none \
        --sort dso,symbol --percent-limit 0.8 2>/dev/null | grep '%' | head -n 40
    echo "(perf report -i $OUTDIR/perf.data for the call graphs)"
fi
echo "# total $(elapsed_since "$START_TIME") s"
