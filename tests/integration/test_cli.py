"""Command line (-t, -V, -h, bad options) and SIGHUP reload basics."""
import os, re, signal, subprocess, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Redis, Policyd, req, check, eq, mktemp, TOP, run_checked, wait_tcp_read
import shutil

BIN = os.path.abspath(os.environ.get("POLICYD_BIN") or os.path.join(TOP, "build", "policyd"))
HEAD = 'listen = [ "inet:127.0.0.1:10040" ];\nrun_as_root = true;\n'


def run(*args, files=None, timeout=20):
    """Run policyd with args in a temp dir holding files; (rc, out, err)."""
    d = mktemp("policyd-cli.")
    try:
        for name, text in (files or {}).items():
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        p = run_checked([BIN] + list(args), cwd=d, capture_output=True, text=True,
                        timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bad_config(text, pattern, files=None):
    files = dict(files or {})
    files["policyd.conf"] = text
    rc, out, err = run("-t", "-c", "policyd.conf", files=files)
    check(rc != 0, "exit status non-zero for a bad configuration: %s%s" % (out, err))
    check(re.search(r"policyd\.conf:\d+: " + pattern, err),
          "want 'policyd.conf:LINE: %s' on stderr, got %r" % (pattern, err))
    return err


def test_check_good_config():
    rc, out, err = run("-t", "-c", "policyd.conf", files={
        "policyd.conf": HEAD + 'rules = ( { name = "x"; action = "REJECT 5.7.1 no"; } );\n'})
    eq(rc, 0, "exit status (stderr %r)" % err)
    check("OK" in out, out)


def test_check_sample_config():
    """The shipped sample configuration passes -t."""
    src = os.path.join(TOP, "rules")
    files = {}
    for n in os.listdir(src):
        with open(os.path.join(src, n)) as f:
            files[n] = f.read()
    rc, out, err = run("-t", "-c", "policyd.conf", files=files)
    eq(rc, 0, "rules/policyd.conf: %s" % err)
    check("OK" in out, out)


def test_check_syntax_error():
    # HEAD is two lines: the error is on line 3, and it says what it is
    err = bad_config(HEAD + 'rules = ( { name = "x" action = ; } );\n', r"syntax error")
    check(re.search(r"policyd\.conf:3: syntax error", err), err)


def test_check_unknown_setting():
    bad_config(HEAD + "limitz = { };\n", r'unknown setting "limitz"')


def test_check_unknown_rule_option():
    bad_config(HEAD + 'rules = ( { name = "g"; check = "greylist";\n delai = 10; } );\n',
               r'.*unknown setting "delai"')


def test_check_bad_action():
    bad_config(HEAD + 'rules = ( { name = "x";\n action = "FOO bar"; } );\n',
               r'.*unknown action')


def test_check_out_of_range():
    err = bad_config(HEAD + "limits = { max_connections = 0; };\n",
                     r"limits\.max_connections: 0 is out of range")
    check("policyd.conf:3:" in err, err)


def test_check_greylist_window_shorter_than_delay():
    bad_config(HEAD + 'rules = ( { name = "g"; check = "greylist";\n delay = 10; '
               'retry_window = 5; } );\n', r"greylist: retry_window \(5\) must be longer")


def test_check_greylist_missing_whitelist_file():
    bad_config(HEAD + 'rules = ( { name = "g"; check = "greylist";\n'
               ' whitelist_clients = "nofile"; } );\n',
               r"whitelist_clients: .*nofile: No such file")


def test_check_greylist_bad_regex_in_whitelist():
    err = bad_config(HEAD + 'rules = ( { name = "g"; check = "greylist";\n'
                     ' whitelist_clients = "wl"; } );\n', r"whitelist_clients: .*wl:2: bad regular",
                     files={"wl": "ok.example\n/[unclosed/\n"})
    check("policyd.conf:4:" in err, err)


def test_check_greylist_header_not_bool():
    bad_config(HEAD + 'rules = ( { name = "g"; check = "greylist";\n header = 3; } );\n',
               r"header: expected true or false")


def test_check_missing_config_file():
    rc, out, err = run("-t", "-c", "does-not-exist.conf")
    check(rc != 0, "missing file")
    check("does-not-exist.conf" in err, err)


def test_version():
    rc, out, err = run("-V")
    eq(rc, 0)
    check(re.match(r"policyd \d+\.\d+", out), out)


def test_help():
    rc, out, err = run("-h")
    eq(rc, 0)
    check("usage: policyd" in out and "-t" in out and "-c FILE" in out, out)


def test_unknown_option_exits_2():
    rc, out, err = run("-Z")
    eq(rc, 2)
    check("usage:" in err, err)
    rc, out, err = run("-t", "-c", "x.conf", "extra-argument")
    eq(rc, 2, "stray argument")


STATIC = 'rules = ( { name = "static"; action = "%s"; } );'


def test_sighup_changes_static_answer():
    with Policyd(rules=STATIC % "REJECT 5.7.1 first text") as p:
        with p.client() as c:
            eq(c.ask(req()), "REJECT 5.7.1 first text")
            log = p.reload(STATIC % "REJECT 5.7.1 second text")
            check("reloaded" in log, log)
            eq(c.ask(req()), "REJECT 5.7.1 second text", "same connection, new rules")
        with p.client() as c:
            eq(c.ask(req()), "REJECT 5.7.1 second text", "new connection, new rules")


def test_sighup_broken_config_keeps_old_rules():
    with Policyd(rules=STATIC % "REJECT 5.7.1 first text") as p:
        with p.client() as c:
            eq(c.ask(req()), "REJECT 5.7.1 first text")
            log = p.reload('rules = ( { name = "static";\n action = "BOGUS text"; } );')
            check("reload failed" in log, log)
            check(re.search(r"policyd\.conf:\d+: .*unknown action", log), log)
            eq(c.ask(req()), "REJECT 5.7.1 first text", "old rules keep answering")
            log = p.reload("rules = ( { name = ")      # syntax error
            check("reload failed" in log, log)
            check(re.search(r"policyd\.conf:\d+: ", log), log)
            eq(c.ask(req()), "REJECT 5.7.1 first text", "still the old rules")
            log = p.reload(STATIC % "REJECT 5.7.1 third text")
            eq(c.ask(req()), "REJECT 5.7.1 third text", "a good config is taken again")


def test_sighup_reloads_whitelist_file():
    rules = ('rules = ( { name = "g"; check = "greylist"; delay = 5; retry_window = 10; '
             'whitelist_clients = "wl"; } );')
    with Redis() as r, Policyd(redis=r, rules=rules, files={"wl": "other.test\n"}) as p:
        with p.client() as c:
            check(c.ask(req(client_name="mx.friend.test")).startswith("DEFER_IF_PERMIT"))
            with open(os.path.join(p.dir, "wl"), "w") as f:
                f.write("friend.test\n")
            p.reload(rules)
            eq(c.ask(req(client_name="mx.friend.test")), "DUNNO", "new whitelist in force")


def test_sighup_during_pending_redis_requests():
    """Requests in flight finish on the snapshot they started with: Redis
    hangs while 10 requests wait on it, the configuration changes (delay 60
    -> 120, rule g1 -> g2), SIGHUP; once Redis answers, the 10 are answered
    by g1 with its 60 s, and a new request by g2 with 120 s."""
    def rules(name, delay):
        return ('rules = ( { name = "%s"; check = "greylist"; delay = %d; retry_window = 600; } );'
                % (name, delay))
    with Redis() as r, Policyd(redis=r, rules=rules("g1", 60), timeout_ms=60000) as p:
        from harness import encode
        with p.client(timeout=60) as c:
            check(c.ask(req(recipient="warm@example.net")).endswith("in 60 seconds"), "warm")
            r.pause()
            try:
                c.send_raw(b"".join(encode(req(recipient="h%d@example.net" % i))
                                    for i in range(10)))
                wait_tcp_read(p.port, c.s)     # read, so evaluating and waiting
                out = p.reload(rules("g2", 120), timeout=15)
                check("reloaded: generation 2" in out, out)
            finally:
                r.resume()
            for i in range(10):
                eq(c.reply(), "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 60 seconds",
                   "in-flight reply %d: the old snapshot" % i)
            eq(c.ask(req(recipient="new@example.net")),
               "DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in 120 seconds",
               "a request after the reload: the new snapshot")
        p.wait_log(r"rule=g2 .*recipient=<new@example\.net>")
        log = p.log()
        eq(len(re.findall(r"rule=g1 [^\n]*recipient=<h\d@example\.net>", log)), 10,
           "the ten logged under g1")
