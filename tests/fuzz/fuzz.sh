#!/bin/sh
# fuzz.sh - build the libFuzzer targets with clang into build/fuzz/ and run
# each for FUZZ_SECONDS (default 60) on a copy of its seed corpus.
#
#   sh tests/fuzz/fuzz.sh                 # all targets (make fuzz)
#   FUZZ_SECONDS=1800 sh tests/fuzz/fuzz.sh proto
#   FUZZ_BUILD_ONLY=1 sh tests/fuzz/fuzz.sh
#
# Targets: proto (request parser, reply/trace formatting), config (the
# configuration loader), maps (map/cidr/client/recipient list loaders and
# lookups, the SQL candidate keys, addr_* helpers), slot (Redis Cluster MOVED/ASK and address
# parsing), spf (SPF records and macros, DNS replies, DNSBL sites), sqlcf
# (the pgsql/mysql table file parser, the query's parameters and the
# MariaDB rendering). Seeds: tests/fuzz/corpus/<target>/; the working
# corpus grows in build/fuzz/corpus/<target>/ and crashes land in
# build/fuzz/crash/<target>/. Exit status: 0 when no target crashed,
# 1 on a crash, 2 when the fuzzers cannot be built, 77 when clang or
# libFuzzer is not available (after trying to install them with apt-get).
# FUZZ_JOBS=N runs the targets N at a time (default 1).
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
seconds=${FUZZ_SECONDS:-60}
out=${FUZZ_BUILD:-build/fuzz}
targets=${*:-proto config maps slot spf sqlcf}
CC=${FUZZ_CC:-clang}

# can_fuzz - does $CC link a trivial libFuzzer target?
can_fuzz() {
	command -v "$CC" >/dev/null 2>&1 || return 1
	d=$(mktemp -d /tmp/policyd-fuzzcheck.XXXXXX)
	printf '%s\n' '#include <stdint.h>' '#include <stddef.h>' \
	    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
	    > "$d/t.c"
	"$CC" -fsanitize=fuzzer,address,undefined -o "$d/t" "$d/t.c" >/dev/null 2>&1
	rc=$?
	rm -rf "$d"
	return $rc
}

if ! can_fuzz; then
	if [ -z "${FUZZ_NO_INSTALL:-}" ] && command -v apt-get >/dev/null 2>&1; then
		echo "# fuzz: clang/libFuzzer missing, installing clang libclang-rt-dev"
		sudo=""
		[ "$(id -u)" = 0 ] || sudo="sudo -n"
		$sudo apt-get install -y -q clang libclang-rt-dev >/dev/null 2>&1 ||
		    $sudo apt-get install -y -q clang libclang-rt-14-dev >/dev/null 2>&1
	fi
	if ! can_fuzz; then
		echo "# fuzz: SKIP: $CC cannot build -fsanitize=fuzzer (install clang and libclang-rt-dev)"
		exit 77
	fi
fi

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cflags="-O1 -g -std=c11 -D_GNU_SOURCE -DPOLICYD_VERSION=\"fuzz\" -Ipolicyd $san"
obj=$out/obj
mkdir -p "$obj" "$out/corpus" "$out/crash"

# build - compile the objects a target needs (instrumented for coverage)
# and link it; sources are rebuilt only when newer than their object
compile() {	# compile SRC OBJ
	if [ ! -f "$2" ] || [ "$1" -nt "$2" ] || [ -n "$(find policyd -name '*.h' -newer "$2" 2>/dev/null | head -n 1)" ]; then
		$CC $cflags -fsanitize=fuzzer-no-link -c -o "$2" "$1" || return 1
	fi
}

core_objs() {
	sh policyd/gen-scripts.sh $(ls policyd/scripts/*.lua | sort) > "$obj/scripts.c.new" || return 1
	if ! cmp -s "$obj/scripts.c.new" "$obj/scripts.c"; then
		mv "$obj/scripts.c.new" "$obj/scripts.c"
	else
		rm -f "$obj/scripts.c.new"
	fi
	compile "$obj/scripts.c" "$obj/scripts.o" || return 1
	compile tests/unit/store_stub.c "$obj/store_stub.o" || return 1
	list="$obj/scripts.o $obj/store_stub.o"
	for s in policyd/*.c; do
		b=$(basename "$s" .c)
		# sockets, Redis and HTTP I/O: not part of the loader
		case $b in main|conn|listener|store|store_*|metrics) continue ;; esac
		compile "$s" "$obj/$b.o" || return 1
		list="$list $obj/$b.o"
	done
	echo "$list"
}

build() {	# build TARGET
	t=$1
	case $t in
	proto)	compile policyd/proto.c "$obj/proto.o" || return 1
		objs="$obj/proto.o"; libs="" ;;
	maps)	compile policyd/maps.c "$obj/maps.o" &&
		    compile policyd/addr.c "$obj/addr.o" &&
		    compile policyd/mapkeys.c "$obj/mapkeys.o" || return 1
		objs="$obj/maps.o $obj/addr.o $obj/mapkeys.o"; libs="" ;;
	slot)	compile policyd/slot.c "$obj/slot.o" || return 1
		objs="$obj/slot.o"; libs="" ;;
	spf)	for m in spf dnsbl resolver addr log; do
			compile policyd/$m.c "$obj/$m.o" || return 1
		done
		objs="$obj/spf.o $obj/dnsbl.o $obj/resolver.o $obj/addr.o $obj/log.o"
		libs="-levent" ;;
	sqlcf)	compile policyd/sqlcf.c "$obj/sqlcf.o" || return 1
		objs="$obj/sqlcf.o"; libs="" ;;
	config)	objs=$(core_objs) || return 1
		libs="-levent -lhiredis -lconfig -lpsl -lpq -lmariadb"
		cflags_extra="-DFUZZ_RULES_DIR=\"$top/rules\"" ;;
	*)	echo "# fuzz: unknown target $t"; return 1 ;;
	esac
	$CC $cflags ${cflags_extra:-} -fsanitize=fuzzer -o "$out/fuzz_$t" \
	    "tests/fuzz/fuzz_$t.c" $objs $libs
}

for t in $targets; do
	echo "# fuzz: building fuzz_$t"
	if ! build "$t"; then
		echo "# fuzz: build of fuzz_$t failed"
		exit 2
	fi
done
[ -n "${FUZZ_BUILD_ONLY:-}" ] && exit 0

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$top/tests/fuzz/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# run - one target for $seconds; prints the summary, returns non-zero on a crash
run() {
	t=$1
	mkdir -p "$out/corpus/$t" "$out/crash/$t"
	log=$out/fuzz_$t.log
	echo "# fuzz: fuzz_$t for ${seconds}s (log $log)"
	start=$(date +%s)
	${FUZZ_NICE:-} "$out/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
	    -rss_limit_mb=2048 -max_len=${FUZZ_MAX_LEN:-8192} -print_final_stats=1 \
	    -artifact_prefix="$out/crash/$t/" \
	    "$out/corpus/$t" "tests/fuzz/corpus/$t" > "$log" 2>&1
	rc=$?
	end=$(date +%s)
	runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
	peak=$(sed -nE 's/^stat::peak_rss_mb: *([0-9]+).*/\1/p' "$log" | tail -n 1)
	cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -nE 's/.*cov: ([0-9]+).*ft: ([0-9]+).*corp: ([0-9]+).*/cov \1 ft \2 corpus \3/p')
	if [ "$rc" = 0 ]; then
		echo "# fuzz: fuzz_$t: ok: $((end - start))s, ${runs:-?} executions, ${cov:-?}, peak RSS ${peak:-?} MB"
		return 0
	fi
	echo "# fuzz: fuzz_$t: FAILED (status $rc) after $((end - start))s, ${runs:-?} executions"
	grep -E 'ERROR|SUMMARY|runtime error|Test unit written|#[0-9]+ in ' "$log" | head -n 30
	return 1
}

status=0
jobs=${FUZZ_JOBS:-1}
if [ "$jobs" -gt 1 ]; then
	pids=""
	for t in $targets; do
		run "$t" > "$out/run_$t.out" 2>&1 &
		pids="$pids $!"
	done
	for p in $pids; do
		wait "$p" || status=1
	done
	for t in $targets; do cat "$out/run_$t.out"; done
else
	for t in $targets; do
		run "$t" || status=1
	done
fi
exit $status
