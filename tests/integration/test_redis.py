"""Redis trouble and configuration: down at start, killed under load, hung
(SIGSTOP), AUTH, unix socket, key prefix, SCRIPT FLUSH, database."""
import os, re, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (Redis, Policyd, req, check, eq, wait_for, free_port, greylist_triplets,
                     expects_on_error)

DEFER_RE = re.compile(r"^DEFER_IF_PERMIT 4\.7\.1 Greylisted, please try again in \d+ seconds$")
VALID_RE = re.compile(r"^(DUNNO|OK|DEFER_IF_PERMIT .+|REJECT .+|PREPEND .+)$")


def rules(on_error=None, delay=1, window=10, cache=None):
    """cache = 0 for tests that age entries in Redis (local_cache would
    answer from what it saw before)"""
    oe = 'on_error = "%s";' % on_error if on_error else ""
    if cache is not None:
        oe += " local_cache = %d;" % cache
    return ('rules = ( { name = "greylist"; check = "greylist"; delay = %d; '
            'retry_window = %d; auto_whitelist = 0; %s } );' % (delay, window, oe))


def block(address, timeout_ms=200, extra=""):
    return ('redis = { address = "%s"; timeout_ms = %d; connect_timeout_ms = 500; '
            'prefix = "t:"; %s };' % (address, timeout_ms, extra))


def timed_ask(c, attrs):
    t0 = time.monotonic()
    a = c.ask(attrs)
    return a, time.monotonic() - t0


def greylists_eventually(p, timeout=10, **kw):
    """Ask with fresh triplets until one is greylisted (Redis is back)."""
    n = [0]

    def probe():
        n[0] += 1
        with p.client() as c:
            return DEFER_RE.match(c.ask(req(recipient="probe%d@example.net" % n[0], **kw)))
    wait_for(probe, timeout, step=0.1, what="greylisting to work again")


@expects_on_error
def test_redis_down_at_start_dunno_then_recovers():
    r = Redis()
    try:
        with Policyd(redis=r, rules=rules(), timeout_ms=200) as p:
            with p.client() as c:
                for i in range(3):
                    a, dt = timed_ask(c, req(recipient="x%d@example.net" % i))
                    eq(a, "DUNNO", "fail open")
                    check(dt < 3, "on_error answer took %.1fs" % dt)
            p.wait_log(r"redis: cannot connect to 127\.0\.0\.1:%d" % r.port)
            r.start()
            greylists_eventually(p)
            p.wait_log(r"redis: connected to")
    finally:
        r.cleanup()


@expects_on_error
def test_redis_down_on_error_configured():
    r = Redis()
    try:
        with Policyd(redis=r, rules=rules(on_error="DEFER_IF_PERMIT 4.3.0 try later"), timeout_ms=200) as p:
            with p.client() as c:
                a, dt = timed_ask(c, req())
                eq(a, "DEFER_IF_PERMIT 4.3.0 try later", "fail closed")
                check(dt < 3, "on_error answer took %.1fs" % dt)
    finally:
        r.cleanup()


@expects_on_error
def test_redis_killed_under_load_then_restarted():
    with Redis() as r, Policyd(redis=r, rules=rules(), timeout_ms=200) as p:
        stop = threading.Event()
        errors, answers = [], []

        def worker(t):
            try:
                with p.client(timeout=10) as c:
                    k = 0
                    while not stop.is_set() and k < 3000:
                        a = c.ask(req(recipient="load%d-%d@example.net" % (t, k)))
                        if not VALID_RE.match(a):
                            errors.append(a)
                        answers.append(a)
                        k += 1
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        ts = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(4)]
        for t in ts:
            t.start()
        time.sleep(0.3)
        r.kill()
        time.sleep(0.5)
        r.start()                 # same port
        time.sleep(0.5)
        stop.set()
        for t in ts:
            t.join(20)
        check(not any(t.is_alive() for t in ts), "workers finished")
        check(not errors, "bad or missing replies: %r" % errors[:3])
        check("DUNNO" in answers, "some on_error answers while down")
        p.wait_log(r"redis: connection to .* lost")
        greylists_eventually(p)


@expects_on_error
def test_redis_hung_sigstop_then_resumes():
    with Redis() as r, Policyd(redis=r, rules=rules(on_error="DEFER_IF_PERMIT 4.3.0 try later"),
                               timeout_ms=300) as p:
        with p.client() as c:
            check(DEFER_RE.match(c.ask(req(recipient="before@example.net"))), "works")
            r.pause()
            try:
                for i in range(3):
                    a, dt = timed_ask(c, req(recipient="hung%d@example.net" % i))
                    eq(a, "DEFER_IF_PERMIT 4.3.0 try later", "on_error while hung")
                    check(dt < 0.3 + 2.0, "answered within timeout_ms + margin: %.2fs" % dt)
            finally:
                r.resume()
        greylists_eventually(p)


def test_redis_auth_password():
    with Redis(password="s3cret-pw") as r:
        with Policyd(redis=r, rules=rules(),
                     redis_block=block(r.address, extra='password = "s3cret-pw";')) as p:
            with p.client() as c:
                wait_for(lambda: DEFER_RE.match(c.ask(req(recipient="a%f@x.test" % time.time()))),
                         5, step=0.1, what="greylisting with AUTH")
            check(len(r.keys("t:g*")) >= 1, "keys written")


@expects_on_error
def test_redis_wrong_password():
    with Redis(password="s3cret-pw") as r:
        with Policyd(redis=r, rules=rules(),
                     redis_block=block(r.address, extra='password = "wrong";')) as p:
            p.wait_log(r"redis: AUTH failed", 5)
            with p.client() as c:
                for i in range(3):
                    a, dt = timed_ask(c, req(recipient="w%d@example.net" % i))
                    eq(a, "DUNNO", "on_error with a wrong password")
                    check(dt < 3, "prompt: %.1fs" % dt)
            time.sleep(1.5)
            log = p.log()
        eq(r.keys("t:*"), [], "nothing written")
        check(log.count("AUTH failed") <= 3,
              "a wrong password must not flood the log: %d lines" % log.count("AUTH failed"))
        check("redis: connected" not in log, "not reported as connected")
        check(re.search(r"rule=- action=DUNNO .*on_error", log), "on_error answer logged")


def test_redis_unix_socket():
    with Redis() as r, Policyd(redis=r, rules=rules(),
                               redis_block=block("unix:" + r.sock)) as p:
        with p.client() as c:
            wait_for(lambda: DEFER_RE.match(c.ask(req(recipient="u%f@x.test" % time.time()))),
                     5, step=0.1, what="greylisting over the unix socket")
        p.wait_log(r"redis: connected to unix:")


def test_key_prefix_honoured():
    with Redis() as r, Policyd(redis=r, rules=rules(), redis_block=block(
            r.address).replace('prefix = "t:"', 'prefix = "myapp:gl:"')) as p:
        with p.client() as c:
            check(DEFER_RE.match(c.ask(req())), "greylisted")
        keys = r.keys("*")
        check(keys and all(k.startswith(b"myapp:gl:g{") for k in keys), keys)


def test_script_flush_reloaded():
    with Redis() as r, Policyd(redis=r, rules=rules(delay=60, window=600, cache=0)) as p:
        with p.client() as c:
            check(DEFER_RE.match(c.ask(req(recipient="a@example.net"))), "first")
            eq(r.cmd("SCRIPT", "FLUSH"), "OK")
            check(DEFER_RE.match(c.ask(req(recipient="b@example.net"))),
                  "greylisted after SCRIPT FLUSH (NOSCRIPT -> EVAL)")
            r.age_greylist(61)
            eq(r.cmd("SCRIPT", "FLUSH"), "OK")
            check(c.ask(req(recipient="a@example.net")).startswith("PREPEND X-Greylist"),
                  "state kept across the reload")
            eq(c.ask(req(recipient="a@example.net")), "DUNNO")
        eq(len(r.keys("t:g*")), 2)


def test_script_flush_with_pipelined_requests():
    with Redis() as r, Policyd(redis=r, rules=rules(delay=5)) as p:
        with p.client() as c:
            check(DEFER_RE.match(c.ask(req(recipient="warm@example.net"))), "warm")
            r.cmd("SCRIPT", "FLUSH")
            from harness import encode
            c.send_raw(b"".join(encode(req(recipient="pf%d@example.net" % i)) for i in range(20)))
            for i in range(20):
                a = c.reply()
                check(DEFER_RE.match(a), "pipelined %d after flush: %r" % (i, a))
        eq(len(greylist_triplets(r)), 21)


def test_database_selection():
    with Redis() as r, Policyd(redis=r, rules=rules(),
                               redis_block=block(r.address, extra="database = 3;")) as p:
        with p.client() as c:
            check(DEFER_RE.match(c.ask(req())), "greylisted")
        eq(r.keys("t:*", db=0), [], "nothing in db 0")
        eq(len(r.keys("t:g{*", db=3)), 1, "the triplet's bucket is in db 3")
        p.wait_log(r"\(db 3\)")


@expects_on_error
def test_redis_restart_keeps_auth_and_db():
    """After a reconnect, AUTH and SELECT are sent again."""
    with Redis(password="pw2") as r, Policyd(redis=r, rules=rules(), redis_block=block(
            r.address, extra='password = "pw2"; database = 2;')) as p:
        greylists_eventually(p, 5)
        r.restart()
        greylists_eventually(p, 10)
        check(len(r.keys("t:g*", db=2)) >= 1, "keys in db 2 after the restart")
        eq(r.keys("t:*", db=0), [], "nothing in db 0")
