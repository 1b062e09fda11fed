"""runner.py - run test_* functions of the given modules, print TAP.

usage: python3 tests/lib/runner.py [-k SUBSTRING] tests/integration/test_*.py

Each test runs with a time limit (TEST_TIMEOUT, default 120 s). A test
that raises TestFailure or any exception fails; a test may raise Skip.
The last line is "N passed, N failed[, N skipped]".
"""
import importlib.util
import os
import signal
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


class Skip(Exception):
    pass


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("test exceeded its time limit")


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
        for tname, fn in tests:
            full = "%s.%s" % (name, tname)
            if only and only not in full:
                continue
            n += 1
            t0 = time.monotonic()
            signal.alarm(limit)
            try:
                fn()
                signal.alarm(0)
                passed += 1
                print("ok %d - %s (%.1fs)" % (n, full, time.monotonic() - t0), flush=True)
            except Skip as e:
                signal.alarm(0)
                skipped += 1
                print("ok %d - %s # SKIP %s" % (n, full, e), flush=True)
            except BaseException as e:  # noqa: B902 - report everything
                signal.alarm(0)
                if isinstance(e, KeyboardInterrupt):
                    raise
                failed += 1
                print("not ok %d - %s (%.1fs)" % (n, full, time.monotonic() - t0), flush=True)
                for line in traceback.format_exc().rstrip().split("\n")[-12:]:
                    print("#   " + line)
    print("1..%d" % n)
    print("%d passed, %d failed%s" % (passed, failed, ", %d skipped" % skipped if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
