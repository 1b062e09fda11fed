#!/bin/sh
# run-tests.sh - what `make test` runs after installing packages:
#   1. build with -Werror; unit tests; integration tests (real redis-server);
#      end-to-end tests through a real Postfix
#   2. the same build under AddressSanitizer + UndefinedBehaviorSanitizer;
#      unit and integration tests again
# Ends with "N passed, N failed[, N skipped]" over everything; the lines
# before it count behavioural tests (Python suites, fuzz smoke) and unit
# assertions apart, runs and distinct names.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
log=$(mktemp /tmp/policyd-tests.XXXXXX)
names=$(mktemp /tmp/policyd-tests-names.XXXXXX)
trap 'rm -f "$log" "$names"' EXIT
passed=0
failed=0
skipped=0
# behavioural tests (b_*) and unit assertions (u_*) apart
b_passed=0
b_failed=0
b_skipped=0
u_passed=0
u_failed=0
u_binaries=0

# tally - add the "N passed, N failed[, N skipped]" line of a run
tally() {
	line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
	if [ -z "$line" ]; then
		echo "# $1: no result line (crashed?): counted as 1 failure"
		failed=$((failed + 1))
		b_failed=$((b_failed + 1))
		return
	fi
	p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
	f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
	s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
	# the runner's TAP lines must agree with its result line
	tp=$(grep -E '^ok [0-9]+ - ' "$log" | grep -vc ' # SKIP')
	ts=$(grep -E '^ok [0-9]+ - .* # SKIP' "$log" | wc -l)
	tf=$(grep -cE '^not ok [0-9]+ - ' "$log")
	if [ "$tp" != "$p" ] || [ "$tf" != "$f" ] || [ "$ts" != "${s:-0}" ]; then
		echo "# $1: TAP lines ($tp ok, $tf not ok, $ts skipped) disagree with" \
		    "\"$line\": counted as 1 failure"
		f=$((f + 1))
	fi
	if [ $((p + f + ${s:-0})) = 0 ]; then
		echo "# $1: no test ran: counted as 1 failure"
		f=1
	fi
	grep -E '^(not )?ok [0-9]+ - ' "$log" | sed -E 's/^(not )?ok [0-9]+ - ([^ ]+).*/\2/' \
	    >> "$names"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + ${s:-0}))
	b_passed=$((b_passed + p))
	b_failed=$((b_failed + f))
	b_skipped=$((b_skipped + ${s:-0}))
}

# unit - run every unit test binary of a build directory (TAP). An
# assertion the plan "1..N" announces but no "ok"/"not ok" line reports,
# a missing plan, a non-zero exit and no binary at all are failures.
unit() {
	found=0
	for t in "$1"/*_test; do
		[ -x "$t" ] || continue
		found=$((found + 1))
		echo "# unit: $t"
		"$t" > "$log" 2>&1
		rc=$?
		grep -v '^ok ' "$log"
		p=$(grep -c '^ok ' "$log")
		f=$(grep -c '^not ok ' "$log")
		plan=$(grep -E '^1\.\.[0-9]+$' "$log" | tail -n 1 | sed 's/^1\.\.//')
		if [ -z "$plan" ]; then
			echo "# $t: no TAP plan (1..N): exited early? counted as 1 failure"
			f=$((f + 1))
		elif [ $((p + f)) -lt "$plan" ]; then
			echo "# $t: the plan says $plan assertions, $((p + f)) ran:" \
			    "$((plan - p - f)) missing counted as failures"
			f=$((f + plan - p - f))
		elif [ $((p + f)) -gt "$plan" ]; then
			echo "# $t: $((p + f)) assertions ran, the plan says $plan:" \
			    "counted as 1 failure"
			f=$((f + 1))
		fi
		if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
			echo "# $t exited with status $rc"
			f=1
		fi
		echo "# $t: $p passed, $f failed"
		passed=$((passed + p))
		failed=$((failed + f))
		u_passed=$((u_passed + p))
		u_failed=$((u_failed + f))
	done
	if [ "$found" = 0 ]; then
		echo "# unit: no test binary in $1: counted as 1 failure"
		failed=$((failed + 1))
		u_failed=$((u_failed + 1))
	fi
	u_binaries=$((u_binaries + found))
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
		# test_deb builds and installs its own package from the source
		# (normal flags): nothing of it runs the sanitizer build
		POLICYD_BIN=$top/build-asan/policyd suite "integration (asan+ubsan)" \
		    $(ls tests/integration/test_*.py | grep -v '/test_deb\.py$')
		if [ -z "${SKIP_E2E:-}" ]; then
			POLICYD_BIN=$top/build-asan/policyd suite "postfix end-to-end (asan+ubsan)" \
			    tests/e2e/test_*.py
		fi
	fi
fi

# ---- fuzz smoke (tests/fuzz): each libFuzzer target ~10 s on its seed
# corpus, one test per target; skipped, not failed, without clang/libFuzzer
if [ -z "${SKIP_FUZZ:-}" ]; then
	echo "# fuzz smoke (libFuzzer, ${FUZZ_SMOKE_SECONDS:-10}s per target)"
	FUZZ_SECONDS=${FUZZ_SMOKE_SECONDS:-10} FUZZ_BUILD=build/fuzz-smoke \
	    sh tests/fuzz/fuzz.sh proto config maps spf sqlcf > "$log" 2>&1
	rc=$?
	cat "$log"
	if [ "$rc" = 77 ]; then
		echo "# fuzz smoke: SKIP (clang with libFuzzer not available)"
		skipped=$((skipped + 5))
		b_skipped=$((b_skipped + 5))
	elif [ "$rc" = 2 ]; then
		echo "# fuzz smoke: the fuzz targets did not build: counted as 1 failure"
		failed=$((failed + 1))
		b_failed=$((b_failed + 1))
	else
		for t in proto config maps spf sqlcf; do
			echo "fuzz.fuzz_$t" >> "$names"
			if grep -q "^# fuzz: fuzz_$t: ok" "$log"; then
				passed=$((passed + 1))
				b_passed=$((b_passed + 1))
			else
				failed=$((failed + 1))
				b_failed=$((b_failed + 1))
			fi
		done
	fi
fi
# ---- end fuzz smoke

echo
distinct=$(sort -u "$names" | wc -l)
echo "# behavioural tests: $distinct distinct, $((b_passed + b_failed + b_skipped)) runs" \
    "(plain and asan+ubsan): $b_passed passed, $b_failed failed, $b_skipped skipped"
echo "# unit assertions: $((u_passed + u_failed)) over $u_binaries binary runs" \
    "(plain and asan+ubsan): $u_passed passed, $u_failed failed"
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" = 0 ]
