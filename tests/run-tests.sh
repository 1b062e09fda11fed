#!/bin/sh
# run-tests.sh - what `make test` runs after installing packages:
#   1. build with -Werror; unit tests; integration tests (real redis-server);
#      end-to-end tests through a real Postfix
#   2. the same build under AddressSanitizer + UndefinedBehaviorSanitizer;
#      unit and integration tests again
# Ends with "N passed, N failed" over everything.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
log=$(mktemp /tmp/policyd-tests.XXXXXX)
trap 'rm -f "$log"' EXIT
passed=0
failed=0
skipped=0

# tally - add the "N passed, N failed[, N skipped]" line of a run
tally() {
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "# $1: no result line (crashed?): counted as 1 failure"
		failed=$((failed + 1))
		return
	fi
	p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
	f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
	s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + ${s:-0}))
}

# unit - run every unit test binary of a build directory (TAP)
unit() {
	for t in "$1"/*_test; do
		[ -x "$t" ] || continue
		echo "# unit: $t"
		"$t" > "$log" 2>&1
		rc=$?
		grep -v '^ok ' "$log"
		p=$(grep -c '^ok ' "$log")
		f=$(grep -c '^not ok ' "$log")
		if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
			echo "# $t exited with status $rc"
			f=1
		fi
		echo "# $t: $p passed, $f failed"
		passed=$((passed + p))
		failed=$((failed + f))
	done
}

# suite NAME FILES... - a Python suite through the runner
suite() {
	name=$1
	shift
	echo "# $name"
	python3 tests/lib/runner.py "$@" > "$log" 2>&1
	cat "$log"
	tally "$name"
}

build() {
	echo "# build: $*"
	if ! make -s "$@" all unit > "$log" 2>&1; then
		cat "$log"
		echo "# build failed: $*"
		failed=$((failed + 1))
		return 1
	fi
}

export TEST_TIMEOUT=${TEST_TIMEOUT:-120}

# pass 1: -Werror build
if build BUILD=build CFLAGS="-O2 -g -Werror"; then
	unit build
	POLICYD_BIN=$top/build/policyd suite "integration" tests/integration/test_*.py
	if [ -z "${SKIP_E2E:-}" ]; then
		POLICYD_BIN=$top/build/policyd suite "postfix end-to-end" tests/e2e/test_*.py
	fi
fi

# pass 2: AddressSanitizer + UndefinedBehaviorSanitizer
if [ -z "${SKIP_ASAN:-}" ]; then
	san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
	if build BUILD=build-asan CFLAGS="-O1 -g -Werror $san" LDFLAGS="$san"; then
		export ASAN_OPTIONS="detect_leaks=1:exitcode=23"
		export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=24"
		unit build-asan
		POLICYD_BIN=$top/build-asan/policyd suite "integration (asan+ubsan)" tests/integration/test_*.py
	fi
fi

# ---- fuzz smoke (tests/fuzz): each libFuzzer target ~10 s on its seed
# corpus, one test per target; skipped, not failed, without clang/libFuzzer
if [ -z "${SKIP_FUZZ:-}" ]; then
	echo "# fuzz smoke (libFuzzer, ${FUZZ_SMOKE_SECONDS:-10}s per target)"
	FUZZ_SECONDS=${FUZZ_SMOKE_SECONDS:-10} FUZZ_BUILD=build/fuzz-smoke \
	    sh tests/fuzz/fuzz.sh proto config maps sqlcf > "$log" 2>&1
	rc=$?
	cat "$log"
	if [ "$rc" = 77 ]; then
		echo "# fuzz smoke: SKIP (clang with libFuzzer not available)"
		skipped=$((skipped + 4))
	elif [ "$rc" = 2 ]; then
		echo "# fuzz smoke: the fuzz targets did not build: counted as 1 failure"
		failed=$((failed + 1))
	else
		for t in proto config maps sqlcf; do
			if grep -q "^# fuzz: fuzz_$t: ok" "$log"; then
				passed=$((passed + 1))
			else
				failed=$((failed + 1))
			fi
		done
	fi
fi
# ---- end fuzz smoke

echo
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ]
