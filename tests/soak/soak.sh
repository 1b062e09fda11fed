#!/bin/sh
# soak.sh - a long mixed load with Redis restarts (make soak; not in make test)
#
# Starts a private redis-server and policyd (greylist rule for unauthenticated
# clients, DUNNO for authenticated ones) on loopback, drives them with
# ../shared/bench's policy-load (mixed workload, SOAK_CONNS connections) for
# SOAK_SECONDS (default 600), restarts redis-server every SOAK_REDIS_EVERY
# seconds (default 60; SOAK_SECONDS/3 for runs shorter than 5 minutes), and
# samples policyd's RSS every 10 s.
#
# Passes when policyd is alive at the end, exits 0 on SIGTERM without a
# sanitizer or valgrind report, and every request got a well-formed reply;
# for runs of 5 minutes or more also when RSS stays flat: the last sample
# within SOAK_RSS_TOLERANCE percent (default 10) of the sample at 2 minutes.
#
#   make soak                                   # 10 minutes, build/policyd
#   SOAK_SECONDS=60 SOAK_BIN=build-asan/policyd sh tests/soak/soak.sh
#   SOAK_SECONDS=60 SOAK_VALGRIND=1 sh tests/soak/soak.sh   # valgrind on build/policyd
#
# Every process is started here and stopped by PID; all files live in one
# temp dir (kept with SOAK_KEEP=1).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"

seconds=${SOAK_SECONDS:-600}
bin=${SOAK_BIN:-$top/build/policyd}
conns=${SOAK_CONNS:-8}
tolerance=${SOAK_RSS_TOLERANCE:-10}
if [ "$seconds" -ge 300 ]; then
	every=${SOAK_REDIS_EVERY:-60}
	ref_at=120
else
	every=${SOAK_REDIS_EVERY:-$((seconds / 3))}
	ref_at=$((seconds / 3))
fi
[ "$every" -ge 5 ] || every=5
shared=${BENCH_SHARED:-$(dirname "$top")/shared/bench}

die() { echo "soak: $*" >&2; exit 2; }
[ -x "$bin" ] || die "$bin not built (make, or make BUILD=build-asan ...)"
[ -f "$shared/policy-load.c" ] || die "$shared/policy-load.c missing (set BENCH_SHARED)"
command -v redis-server >/dev/null || die "redis-server not installed"

work=$(mktemp -d /tmp/policyd-soak.XXXXXX)
chmod 755 "$work"
redis_pid=""
policyd_pid=""
load_pid=""
cleanup() {
	for p in $load_pid $policyd_pid $redis_pid; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $load_pid $policyd_pid $redis_pid; do
		i=0
		while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
		kill -KILL "$p" 2>/dev/null
	done
	[ -n "${SOAK_KEEP:-}" ] && echo "soak: files kept in $work" || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# policy-load, built once into build/soak/
load=$top/build/soak/policy-load
if [ ! -x "$load" ] || [ "$shared/policy-load.c" -nt "$load" ]; then
	mkdir -p "$top/build/soak"
	${CC:-cc} -O2 -g -std=c11 -o "$load" "$shared/policy-load.c" || die "cannot build policy-load"
fi

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
rport=$(free_port)
pport=$(free_port)

start_redis() {
	redis-server --port "$rport" --bind 127.0.0.1 --dir "$work" --save "" \
	    --appendonly no --daemonize no --logfile "$work/redis.log" </dev/null &
	redis_pid=$!
	i=0
	until redis-cli -p "$rport" ping >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 100 ] || die "redis-server did not start"
		sleep 0.1
	done
}

stop_redis() {
	kill -TERM "$redis_pid" 2>/dev/null
	i=0
	while kill -0 "$redis_pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
	kill -KILL "$redis_pid" 2>/dev/null
	wait "$redis_pid" 2>/dev/null
}

cat > "$work/policyd.conf" <<CONF
listen = [ "inet:127.0.0.1:$pport" ];
run_as_root = true;
hostname = "mx.soak";
log = { level = "warning"; };
metrics = { address = ""; };
limits = { max_connections = 1000; };
redis = { address = "127.0.0.1:$rport"; timeout_ms = 250; connect_timeout_ms = 500;
          prefix = "soak:"; };
rules = (
  { name = "authenticated"; match = { authenticated = true; }; action = "DUNNO"; },
  { name = "greylist"; match = { authenticated = false; }; check = "greylist";
    delay = 5; retry_window = 3600; auto_whitelist = 3; on_error = "DUNNO"; }
);
CONF

start_redis

wrap=""
timeout_ms=2000
if [ -n "${SOAK_VALGRIND:-}" ]; then
	command -v valgrind >/dev/null || die "valgrind not installed"
	wrap="valgrind --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible --log-file=$work/valgrind.log"
	timeout_ms=10000
fi
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:exitcode=23}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=24}"
$wrap "$bin" -f -c "$work/policyd.conf" </dev/null >"$work/policyd.log" 2>&1 &
policyd_pid=$!
i=0
# (log level warning: one info line per decision would fill the disk)
until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $pport), 1)" 2>/dev/null; do
	i=$((i + 1))
	kill -0 "$policyd_pid" 2>/dev/null || { cat "$work/policyd.log"; die "policyd exited at start"; }
	[ $i -lt 300 ] || die "policyd did not start"
	sleep 0.1
done

echo "soak: ${seconds}s of mixed load, $conns connections, redis restart every ${every}s, binary $bin${wrap:+ under valgrind}"
"$load" -c "$conns" -m mixed -d "$seconds" -t "$timeout_ms" --json -l soak \
    "127.0.0.1:$pport" >"$work/load.json" 2>"$work/load.err" &
load_pid=$!

rss() { sed -nE 's/^VmRSS:[[:space:]]+([0-9]+) kB/\1/p' "/proc/$policyd_pid/status" 2>/dev/null; }
start=$(date +%s)
samples=""
ref=""
restarts=0
next_restart=$every
crashed=""
t=0
while kill -0 "$load_pid" 2>/dev/null; do
	sleep 10
	t=$(( $(date +%s) - start ))
	if ! kill -0 "$policyd_pid" 2>/dev/null; then
		crashed="policyd exited during the load at ${t}s"
		break
	fi
	r=$(rss)
	samples="$samples $r"
	echo "soak: t=${t}s rss=${r} kB redis_restarts=$restarts"
	[ -z "$ref" ] && [ "$t" -ge "$ref_at" ] && ref=$r
	if [ "$t" -ge "$next_restart" ] && [ "$t" -lt "$seconds" ]; then
		stop_redis
		sleep 1
		start_redis
		restarts=$((restarts + 1))
		next_restart=$((next_restart + every))
	fi
done
wait "$load_pid"
load_rc=$?
load_pid=""
last=$(rss)

fail=0
if [ -n "$crashed" ]; then
	echo "soak: FAIL: $crashed"
	tail -n 30 "$work/policyd.log"
	fail=1
	policyd_pid=""
else
	kill -TERM "$policyd_pid"
	i=0
	while kill -0 "$policyd_pid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
	wait "$policyd_pid"
	rc=$?
	policyd_pid=""
	echo "soak: policyd exit status $rc after SIGTERM"
	[ "$rc" = 0 ] || fail=1
fi
if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$work/policyd.log"; then
	echo "soak: FAIL: sanitizer report:"
	grep -A20 -E "ERROR: (Address|Leak)Sanitizer|runtime error:" "$work/policyd.log" | head -n 40
	fail=1
fi
if [ -n "$wrap" ]; then
	grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost|in use at exit" "$work/valgrind.log" | sed 's/^/soak: valgrind: /'
fi

summary=$(python3 - "$work/load.json" <<'PY'
import json, sys
try:
    d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
except Exception as e:
    print("no load result (%s)" % e); sys.exit(0)
lat = d.get("latency_us", {})
print("%s requests, %.0f req/s, p50 %s us, p99 %s us, max %s us, errors %s, actions %s"
      % (d.get("replies", d.get("requests", "?")), d.get("rps", 0), lat.get("p50"),
         lat.get("p99"), lat.get("max"), json.dumps(d.get("errors")),
         json.dumps(d.get("actions"))))
PY
)
echo "soak: load: $summary"
echo "soak: policy-load exit status $load_rc"
[ "$load_rc" = 0 ] || { fail=1; head -c 2000 "$work/load.err"; }
echo "soak: redis restarts: $restarts"
echo "soak: rss samples (kB):$samples"
if [ -n "$ref" ] && [ -n "$last" ]; then
	growth=$(( (last - ref) * 100 / ref ))
	echo "soak: rss at ${ref_at}s ${ref} kB, at the end ${last} kB: ${growth}% change (tolerance ${tolerance}%)"
	if [ "$growth" -gt "$tolerance" ]; then
		if [ "$seconds" -ge 300 ]; then
			echo "soak: FAIL: RSS grew"
			fail=1
		else
			echo "soak: note: RSS grew (not checked on runs under 5 minutes)"
		fi
	fi
fi
grep -cE "warning|error" "$work/policyd.log" | sed 's/^/soak: policyd warning\/error lines: /'
if [ "$fail" = 0 ]; then
	echo "soak: PASS"
else
	echo "soak: FAIL"
fi
exit $fail
