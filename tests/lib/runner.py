"""runner.py - run test_* functions of the given modules, print TAP.

usage: python3 tests/lib/runner.py [-k SUBSTRING] tests/integration/test_*.py

Each test runs with a time limit (TEST_TIMEOUT, default 120 s; a test
marked @time_limit(S) gets S if that is longer). A test
that raises TestFailure or any exception fails; a test may raise Skip
(printed "ok N - name # SKIP why" as TAP wants, but counted as skipped,
not passed). A test in which a policyd answered on_error fails unless it
is marked @expects_on_error (harness.py). A module's teardown_module(),
when it has one, runs after its tests; an exception there is one more
failed test ("not ok N - module.teardown_module"). The last line is "N passed, N failed[, N skipped]".
"""
import importlib.util
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


class Skip(Exception):
    pass


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("test exceeded its time limit")


def run_one(fn, full, n, limit):
    """Run one test; print its TAP line; "ok", "fail" or "skip"."""
    t0 = time.monotonic()
    harness.begin_test(fn)
    limit = max(limit, getattr(fn, "time_limit", 0))
    signal.alarm(limit)
    try:
        fn()
        signal.alarm(0)
        problems = harness.end_test()
        if problems:
            raise harness.TestFailure("\n".join(problems))
        print("ok %d - %s (%.1fs)" % (n, full, time.monotonic() - t0), flush=True)
        return "ok"
    except Skip as e:
        signal.alarm(0)
        harness.end_test()
        print("ok %d - %s # SKIP %s" % (n, full, e), flush=True)
        return "skip"
    except BaseException as e:  # noqa: B902 - report everything
        signal.alarm(0)
        if isinstance(e, KeyboardInterrupt):
            raise
        harness.end_test()
        print("not ok %d - %s (%.1fs)" % (n, full, time.monotonic() - t0), flush=True)
        for line in traceback.format_exc().rstrip().split("\n")[-12:]:
            print("#   " + line)
        return "fail"


def main(argv):
    only = None
    if len(argv) > 2 and argv[1] == "-k":
        only = argv[2]
        argv = argv[2:]
    files = argv[1:]
    limit = int(os.environ.get("TEST_TIMEOUT", "120"))
    n = passed = failed = skipped = 0
    signal.signal(signal.SIGALRM, _alarm)
    for path in files:
        name = os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        mod.Skip = Skip
        spec.loader.exec_module(mod)
        tests = [(k, v) for k, v in vars(mod).items() if k.startswith("test_") and callable(v)]
        tests.sort(key=lambda kv: kv[1].__code__.co_firstlineno)
        ran = False
        for tname, fn in tests:
            full = "%s.%s" % (name, tname)
            if only and only not in full:
                continue
            ran = True
            n += 1
            r = run_one(fn, full, n, limit)
            passed += r == "ok"
            failed += r == "fail"
            skipped += r == "skip"
        down = getattr(mod, "teardown_module", None)
        if ran and callable(down):
            try:
                signal.alarm(limit)
                down()
                signal.alarm(0)
            except BaseException:  # noqa: B902 - one more failed test
                signal.alarm(0)
                n += 1
                failed += 1
                print("not ok %d - %s.teardown_module" % (n, name), flush=True)
                for line in traceback.format_exc().rstrip().split("\n")[-12:]:
                    print("#   " + line)
    print("1..%d" % n)
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
