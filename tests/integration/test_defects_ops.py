"""Issue 10, operations items: partial reloads (5), the pidfile (12), the
systemd unit against the README's unix-socket setup (17), sanitizer builds
and the install layout (18)."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (TOP, Policyd, Redis, SyslogSink, TestFailure, check, eq,  # noqa: E402
                     free_port, mktemp, pid_alive, req, run_checked, start_daemon, wait_for)

UNIT = os.path.join(TOP, "contrib", "policyd.service")
RELEASE_BIN = os.path.join(TOP, "build", "policyd")


def gen_rules(gen):
    return ('rules = ( { name = "gen"; match = { recipient = "probe@example.net"; }; '
            'action = "REJECT 5.7.1 generation %d"; } );' % gen)


def probe(c):
    return c.ask(req(recipient="probe@example.net"))


def http_get(port, path="/metrics"):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e)


def metric(port, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), http_get(port)[1], re.M)
    check(m, "metric %s on port %d" % (name, port))
    return float(m.group(1))


def refused(port):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    finally:
        s.close()


def is_sanitizer_binary(path):
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__ubsan_handle" in data


# ---------------------------------------------------------- item 5: reload

RESTART_WARNING = ("reload: %s changed: %s effect only after a restart; "
                   "the rest of the configuration was reloaded")


def reload_keeps(setting, extra_before, extra_after, listen_after=None, check_more=None):
    """Start, change one start-up setting and the rules, SIGHUP: the rules
    change, the setting is named in the warning, the old listener serves."""
    with Redis() as r, Policyd(redis=r, rules=gen_rules(1), extra=extra_before) as p:
        with p.client() as c:
            eq(probe(c), "REJECT 5.7.1 generation 1", "before")
            if listen_after is not None:
                p.listen = listen_after
            out = p.reload(gen_rules(2), extra=extra_after)
            check(RESTART_WARNING % (setting, "this takes") in out,
                  "warning naming %s:\n%s" % (setting, out))
            check(re.search(r"reloaded: generation 2, 1 rules; not applied: %s "
                            r"\(restart needed\)" % re.escape(setting), out),
                  "reloaded line says what was not applied:\n" + out)
            eq(probe(c), "REJECT 5.7.1 generation 2", "the rest was reloaded (old connection)")
        with p.client() as c:
            eq(probe(c), "REJECT 5.7.1 generation 2", "the old listener still serves")
        # nothing changed since: the next reload still says the setting waits
        out = p.reload(gen_rules(3), extra=extra_after)
        check(RESTART_WARNING % (setting, "this takes") in out, "still pending:\n" + out)
        if check_more:
            check_more(p)


def test_reload_listen_change_warns_and_keeps_the_old_listener():
    new_port = free_port()

    def more(p):
        check(refused(new_port), "the new listen address is not bound")
    reload_keeps("listen", "", "", listen_after=["inet:127.0.0.1:%d" % new_port],
                 check_more=more)


def test_reload_unix_listener_mode_change_warns():
    d = mktemp("policyd-ops.")
    sock = os.path.join(d, "p.sock")
    try:
        with Redis() as r:
            p = Policyd(redis=r, rules=gen_rules(1),
                        listen=['{ address = "unix:%s"; mode = "0660"; }' % sock,
                                "inet:127.0.0.1:%d" % free_port()])
            p.port = int(p.listen[1].rsplit(":", 1)[1])
            p.start()
            try:
                eq(os.stat(sock).st_mode & 0o777, 0o660, "socket mode")
                p.listen = ['{ address = "unix:%s"; mode = "0600"; }' % sock, p.listen[1]]
                out = p.reload(gen_rules(2))
                check(RESTART_WARNING % ("listen", "this takes") in out, out)
                eq(os.stat(sock).st_mode & 0o777, 0o660, "socket untouched")
                with p.connect(sock) as c:
                    eq(probe(c), "REJECT 5.7.1 generation 2", "unix listener serves")
            finally:
                p.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_reload_user_change_warns():
    reload_keeps("user", 'user = "policyd";', 'user = "nobody";')


def test_reload_group_change_warns():
    reload_keeps("group", "", 'group = "nogroup";')


def test_reload_run_as_root_change_warns():
    with Redis() as r, Policyd(redis=r, rules=gen_rules(1)) as p:
        text = p.write_config(gen_rules(2)).replace("run_as_root = true;", "run_as_root = false;")
        start = len(p.log())
        with open(p.conf, "w") as f:
            f.write(text)
        p.signal(signal.SIGHUP)
        p.wait_log(r"reloaded: generation|reload failed", 5, start)
        out = p.log()[start:]
        check(RESTART_WARNING % ("run_as_root", "this takes") in out, out)
        with p.client() as c:
            eq(probe(c), "REJECT 5.7.1 generation 2", "rules reloaded")


def test_reload_pidfile_change_warns_and_keeps_the_running_pidfile():
    d = mktemp("policyd-ops.")
    old, new = os.path.join(d, "old.pid"), os.path.join(d, "new.pid")
    try:
        def more(p):
            eq(open(old).read(), "%d\n" % p.proc.pid, "running pidfile")
            check(not os.path.exists(new), "new pidfile not written")
            eq(p.stop(), 0, "exit status")
            check(not os.path.exists(old), "the running pidfile is removed at exit")
        reload_keeps("pidfile", 'pidfile = "%s";' % old, 'pidfile = "%s";' % new,
                     check_more=more)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_reload_several_startup_settings_are_named_together():
    new_port = free_port()
    with Redis() as r, Policyd(redis=r, rules=gen_rules(1)) as p:
        p.listen = ["inet:127.0.0.1:%d" % new_port]
        out = p.reload(gen_rules(2), extra='user = "nobody"; group = "nogroup";')
        check(RESTART_WARNING % ("listen, user, group", "these take") in out, out)
        check("not applied: listen, user, group (restart needed)" in out, out)
        with p.client() as c:
            eq(probe(c), "REJECT 5.7.1 generation 2", "old listener, new rules")


def test_reload_applies_metrics_address():
    m1, m2 = free_port(), free_port()
    with Redis() as r, Policyd(redis=r, rules=gen_rules(1),
                               extra='metrics = { address = "127.0.0.1:%d"; };' % m1) as p:
        eq(metric(m1, "policyd_config_generation"), 1, "metrics on the first address")
        out = p.reload(gen_rules(2), extra='metrics = { address = "127.0.0.1:%d"; };' % m2)
        check("reload:" not in out and "not applied" not in out, "no warning:\n" + out)
        check(re.search(r"reloaded: generation 2, 1 rules\n", out), out)
        check("metrics on http://127.0.0.1:%d/metrics" % m2 in out, out)
        eq(metric(m2, "policyd_config_generation"), 2, "metrics moved to the new address")
        check(refused(m1), "the old metrics address is closed")
        # an address that cannot be bound: metrics stay where they are, and the log says so
        busy = socket.socket()
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        m3 = busy.getsockname()[1]
        try:
            out = p.reload(gen_rules(3), extra='metrics = { address = "127.0.0.1:%d"; };' % m3)
        finally:
            busy.close()
        check('reload: metrics.address "127.0.0.1:%d" cannot be used: metrics stay on '
              '"127.0.0.1:%d"' % (m3, m2) in out, out)
        check("not applied: metrics.address (cannot listen)" in out, out)
        eq(metric(m2, "policyd_config_generation"), 3, "still on the second address")
        with p.client() as c:
            eq(probe(c), "REJECT 5.7.1 generation 3", "rules reloaded")
        # and off
        out = p.reload(gen_rules(4), extra='metrics = { address = ""; };')
        check("metrics: off" in out and "not applied" not in out, out)
        check(refused(m2), "metrics closed")
        # from off to an address that cannot be bound: stays off, says so
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        try:
            m4 = busy.getsockname()[1]
            out = p.reload(gen_rules(5), extra='metrics = { address = "127.0.0.1:%d"; };' % m4)
        finally:
            busy.close()
        check('metrics.address "127.0.0.1:%d" cannot be used: metrics stay off' % m4 in out, out)
        # and on again
        out = p.reload(gen_rules(6), extra='metrics = { address = "127.0.0.1:%d"; };' % m1)
        check("not applied" not in out, out)
        eq(metric(m1, "policyd_config_generation"), 6, "metrics on again")


def test_reload_applies_log_facility():
    with Redis() as r, Policyd(redis=r, rules=gen_rules(1)) as p:
        text = p.write_config(gen_rules(2)).replace('log = { level = "info"; };',
                                                    'log = { level = "info"; facility = "local3"; };')
        check("local3" in text, "config rewritten")
        start = len(p.log())
        with open(p.conf, "w") as f:
            f.write(text)
        p.signal(signal.SIGHUP)
        p.wait_log(r"reloaded: generation|reload failed", 5, start)
        out = p.log()[start:]
        check(re.search(r"reloaded: generation 2, 1 rules\n", out) and "reload:" not in out,
              "log.facility is applied, no warning:\n" + out)


def pri(facility, severity):
    return "<%d>" % (facility * 8 + severity)


LOG_MAIL, LOG_LOCAL3, LOG_WARNING, LOG_INFO = 2, 19, 4, 6


def test_daemon_mode_relative_config_path_reloads():
    """No -f: daemon() changes to "/"; the relative -c path and a map path
    relative to the configuration still work at SIGHUP. Logging goes to
    syslog, and a changed log.facility is applied by the reload."""
    mport = free_port()
    with Redis() as r:
        p = Policyd(redis=r, rules="", files={"blocked": "bad@example.com REJECT listed\n"})
        p.logf = None
        pidfile = os.path.join(p.dir, "policyd.pid")
        syslog = SyslogSink(os.path.join(p.dir, "log"))

        def rules(gen):
            return ('rules = ( { name = "gen"; match = { recipient = "probe@example.net"; }; '
                    'action = "REJECT 5.7.1 generation %d"; }, '
                    '{ name = "map"; check = "access"; key = "sender"; map = "blocked"; } );'
                    % gen)
        extra = 'pidfile = "%s";\nmetrics = { address = "127.0.0.1:%d"; };' % (pidfile, mport)
        p.write_config(rules(1), extra)
        pid = None
        try:
            # a relative -c: made absolute before daemon() changes to "/"
            pid = start_daemon(p, syslog.path, [p.bin, "-c", "policyd.conf"], pidfile)
            wait_for(lambda: http_get(mport, "/healthz")[0] == 200, 10, what="daemon up")
            with p.client() as c:
                eq(probe(c), "REJECT 5.7.1 generation 1", "first generation")
                eq(c.ask(req(sender="bad@example.com")), "REJECT listed", "relative map")
            syslog.wait(re.escape(pri(LOG_MAIL, LOG_INFO)) + r".*policyd\[%d\]: policyd .* "
                        r"started: 2 rules" % pid)
            with open(os.path.join(p.dir, "blocked"), "w") as f:
                f.write("bad@example.com REJECT listed again\n")
            text = p.write_config(rules(2), extra).replace(
                'log = { level = "info"; };', 'log = { level = "info"; facility = "local3"; };')
            with open(p.conf, "w") as f:
                f.write(text)
            os.kill(pid, signal.SIGHUP)
            wait_for(lambda: metric(mport, "policyd_config_generation") == 2, 10,
                     what="generation 2 after SIGHUP")
            eq(metric(mport, "policyd_reload_failures_total"), 0, "no failed reload")
            with p.client() as c:
                eq(probe(c), "REJECT 5.7.1 generation 2", "new rules after SIGHUP")
                eq(c.ask(req(sender="bad@example.com")), "REJECT listed again", "map reloaded")
            syslog.wait(re.escape(pri(LOG_MAIL, LOG_INFO)) + r".*SIGHUP: reloading %s"
                        % re.escape(p.conf))
            # the new facility is in effect for the line that reports the reload
            syslog.wait(re.escape(pri(LOG_LOCAL3, LOG_INFO)) +
                        r".*reloaded: generation 2, 2 rules$")
            # and a start-up setting changed now is named, on the new facility
            p.listen = ["inet:127.0.0.1:%d" % free_port()]
            with open(p.conf, "w") as f:
                f.write(p.write_config(rules(3), extra).replace(
                    'log = { level = "info"; };',
                    'log = { level = "info"; facility = "local3"; };'))
            os.kill(pid, signal.SIGHUP)
            syslog.wait(re.escape(pri(LOG_LOCAL3, LOG_WARNING)) + ".*" +
                        re.escape(RESTART_WARNING % ("listen", "this takes")))
            syslog.wait(r"reloaded: generation 3, 2 rules; not applied: listen")
            with p.client() as c:
                eq(probe(c), "REJECT 5.7.1 generation 3", "still on the old listener")
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: not pid_alive(pid), 15, what="daemon exit")
            pid = None
            check(not os.path.exists(pidfile), "pidfile removed at exit")
            reports = [f for f in os.listdir(p.dir) if f.startswith(("asan", "ubsan"))]
            check(not reports, "sanitizer reports: %s" % [
                open(os.path.join(p.dir, f)).read()[:2000] for f in reports])
        finally:
            if pid is not None and pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            syslog.close()
            p.cleanup(check_exit=False)


# -------------------------------------------------------- item 12: pidfile

def refuses_pidfile(make_path, expect):
    d = mktemp("policyd-ops.")
    try:
        target = os.path.join(d, "precious")
        with open(target, "w") as f:
            f.write("precious content\n")
        os.chmod(target, 0o600)
        before = os.stat(target)
        pidfile = os.path.join(d, "policyd.pid")
        make_path(pidfile, target)
        p = Policyd(rules=gen_rules(1), extra='pidfile = "%s";' % pidfile, expect_start=False)
        p.start()
        try:
            rc = p.proc.wait(15)
        except subprocess.TimeoutExpired:
            raise TestFailure("policyd did not refuse the pidfile: %s" % p.log())
        log = p.log()
        p.cleanup(check_exit=False)
        check(rc != 0, "exit status %d" % rc)
        check(expect in log and "cannot write the pidfile" in log, log)
        eq(open(target).read(), "precious content\n", "link target untouched")
        after = os.stat(target)
        eq((after.st_mode, after.st_uid, after.st_size, after.st_mtime_ns),
           (before.st_mode, before.st_uid, before.st_size, before.st_mtime_ns), "target metadata")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_pidfile_symlink_is_refused():
    refuses_pidfile(lambda path, target: os.symlink(target, path),
                    "is a symbolic link: refusing to follow it")


def test_pidfile_dangling_symlink_is_refused():
    d = mktemp("policyd-ops.")
    try:
        victim = os.path.join(d, "would-be-created")
        refuses_pidfile(lambda path, target: os.symlink(victim, path),
                        "is a symbolic link")
        check(not os.path.exists(victim), "nothing created through the link")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_pidfile_hard_link_is_refused():
    refuses_pidfile(lambda path, target: os.link(target, path), "has other hard links")


def test_pidfile_fifo_is_refused_without_hanging():
    refuses_pidfile(lambda path, target: os.mkfifo(path), "not a regular file")


def test_pidfile_of_another_user_is_refused():
    if os.geteuid() != 0:
        raise Skip("needs root")  # noqa: F821

    def plant(path, target):
        with open(path, "w") as f:
            f.write("12345\n")
        os.chown(path, 65534, 65534)
    refuses_pidfile(plant, "owned by another user")


def test_pidfile_stale_own_file_is_rewritten():
    d = mktemp("policyd-ops.")
    pidfile = os.path.join(d, "policyd.pid")
    try:
        with open(pidfile, "w") as f:
            f.write("999999999 a much longer stale content\n")
        with Redis() as r, Policyd(redis=r, rules=gen_rules(1),
                                   extra='pidfile = "%s";' % pidfile) as p:
            eq(open(pidfile).read(), "%d\n" % p.proc.pid, "truncated and rewritten")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_relative_pidfile_is_a_configuration_error():
    p = Policyd(rules=gen_rules(1), extra='pidfile = "run/policyd.pid";', expect_start=False)
    p.logf = None
    try:
        res = run_checked([p.bin, "-t", "-c", p.conf], capture_output=True, timeout=30)
        check(res.returncode != 0, "policyd -t accepts a relative pidfile")
        check(re.search(r"%s:\d+: pidfile: expected an absolute path" % re.escape(p.conf),
                        res.stderr.decode()), res.stderr.decode())
    finally:
        p.cleanup(check_exit=False)


# --------------------------------------------------- item 17: systemd unit

def unit_settings(text):
    """[Service] settings in order: a list of (key, value)."""
    out, section = [], None
    for line in text.split("\n"):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
            continue
        if section == "[Service]":
            k, v = line.split("=", 1)
            out.append((k.strip(), v.strip()))
    return out


_groups = {}


def expand(name):
    """A syscall or @group, expanded through systemd-analyze."""
    if not name.startswith("@"):
        return {name}
    if name not in _groups:
        res = subprocess.run(["systemd-analyze", "syscall-filter", name],
                             capture_output=True, text=True, timeout=30)
        eq(res.returncode, 0, "systemd-analyze syscall-filter %s: %s" % (name, res.stderr))
        names = set()
        for line in res.stdout.split("\n"):
            if not line.startswith((" ", "\t")):
                continue
            tok = line.strip()
            if tok and not tok.startswith("#"):
                names |= expand(tok)
        check(names, "group %s is empty" % name)
        _groups[name] = names
    return _groups[name]


def effective_filter(settings):
    """systemd's rule: the first SystemCallFilter= decides allow- or deny-list;
    each later line adds to or removes from it in order."""
    allow_mode, names = None, set()
    for k, v in settings:
        if k != "SystemCallFilter":
            continue
        if v == "":
            allow_mode, names = None, set()
            continue
        deny = v.startswith("~")
        items = set()
        for tok in v.lstrip("~").split():
            items |= expand(tok)
        if allow_mode is None:
            allow_mode = not deny
        if allow_mode == (not deny):
            names |= items
        else:
            names -= items
    return allow_mode, names


def allowed(allow_mode, names, syscall):
    if allow_mode is None:
        return True
    return (syscall in names) if allow_mode else (syscall not in names)


def need_systemd_analyze():
    if shutil.which("systemd-analyze") is None:
        subprocess.run(["sh", os.path.join(TOP, "tests", "install-deps.sh"), "systemd"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    if shutil.which("systemd-analyze") is None:
        raise Skip("systemd-analyze not available (Debian package systemd)")  # noqa: F821


def verify_unit(unit_text, man_dir, workdir):
    path = os.path.join(workdir, "policyd.service")
    with open(path, "w") as f:
        f.write(unit_text)
    res = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True,
                         timeout=60, env=dict(os.environ, MANPATH=man_dir, SYSTEMD_PAGER="cat"))
    out = (res.stdout + res.stderr).strip()
    eq(res.returncode, 0, "systemd-analyze verify: %s" % out)
    lines = [l for l in out.split("\n") if l and "Not showing unlisted" not in l]
    check(not lines, "systemd-analyze verify complains:\n" + "\n".join(lines))


def test_systemd_unit_verifies():
    need_systemd_analyze()
    check(os.path.exists(RELEASE_BIN), "build/policyd exists")
    d = mktemp("policyd-unit.")
    try:
        for sec in ("5", "8"):
            os.makedirs(os.path.join(d, "man", "man" + sec))
            for m in os.listdir(os.path.join(TOP, "man")):
                if m.endswith("." + sec):
                    shutil.copy(os.path.join(TOP, "man", m), os.path.join(d, "man", "man" + sec))
        text = open(UNIT).read().replace("/usr/local/sbin/policyd", RELEASE_BIN) \
            .replace("/usr/local/etc/policyd", os.path.join(TOP, "rules"))
        verify_unit(text, os.path.join(d, "man"), d)
        # the check can fail: a typo in a key is reported
        bad = text.replace("ProtectSystem=", "ProtectSystm=")
        path = os.path.join(d, "bad.service")
        with open(path, "w") as f:
            f.write(bad)
        res = subprocess.run(["systemd-analyze", "verify", path], capture_output=True,
                             text=True, timeout=60,
                             env=dict(os.environ, MANPATH=os.path.join(d, "man")))
        check("Unknown key" in res.stdout + res.stderr, "verify notices a bad key")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def readme_socket_example():
    text = open(os.path.join(TOP, "README.md")).read()
    m = re.search(r'listen = \( \{ address = "unix:(/var/spool/postfix/private/[^"]+)";\s*'
                  r'mode = "(\d+)"; owner = "(\w+)"; group = "(\w+)"; \} \);', text)
    check(m, "README's unix socket example found")
    return m.groups()


def test_systemd_unit_allows_the_readme_socket_setup():
    """The README's socket (queue directory, owner/group) under the unit:
    started as root with the capabilities to bind and chown it, that
    directory writable despite ProtectSystem=strict, chown/chmod and the
    privilege drop not filtered."""
    need_systemd_analyze()
    path, mode, owner, group = readme_socket_example()
    settings = unit_settings(open(UNIT).read())
    keys = dict(settings)
    check("User" not in keys, "User= set: a unix socket in %s (owned by postfix, 0700) "
          "could not be bound, nor chowned" % os.path.dirname(path))
    caps = set(keys.get("CapabilityBoundingSet", "").split())
    for cap in ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_SETUID", "CAP_SETGID"):
        check(cap in caps, "CapabilityBoundingSet lacks %s" % cap)
    eq(keys.get("ProtectSystem"), "strict", "ProtectSystem")
    rw = [p.lstrip("-") for k, v in settings if k == "ReadWritePaths" for p in v.split()]
    check(os.path.dirname(path) in rw, "ReadWritePaths lacks %s: %s" % (os.path.dirname(path), rw))
    allow_mode, names = effective_filter(settings)
    check(allow_mode is True, "the unit has an allow-list filter")
    for sc in ("chown", "fchown", "fchownat", "lchown", "chmod", "fchmod", "fchmodat",
               "setgroups", "setresgid", "setresuid", "bind", "listen", "unlink", "ftruncate"):
        check(allowed(allow_mode, names, sc), "%s is filtered by the unit" % sc)
    # the filter still filters: these stay out
    for sc in ("reboot", "mount", "init_module", "settimeofday", "chroot", "ptrace"):
        check(not allowed(allow_mode, names, sc), "%s is allowed by the unit" % sc)


def test_systemd_filter_covers_every_syscall_of_a_root_start():
    """strace a start as root with the README's socket setup (owner, group,
    mode, privilege drop, pidfile, metrics), a request, a reload and a stop:
    every system call made is allowed by the unit's filter."""
    need_systemd_analyze()
    if os.geteuid() != 0:
        raise Skip("needs root")  # noqa: F821
    if shutil.which("strace") is None:
        subprocess.run(["sh", os.path.join(TOP, "tests", "install-deps.sh"), "strace"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    if shutil.which("strace") is None:
        raise Skip("strace not available")  # noqa: F821
    # the release build: what the unit runs (a sanitizer runtime has syscalls of its own)
    check(os.path.exists(RELEASE_BIN), "build/policyd exists")
    _, mode, _, _ = readme_socket_example()
    d = mktemp("policyd-strace.")
    priv = os.path.join(d, "private")
    os.makedirs(priv)
    os.chmod(priv, 0o700)
    sock = os.path.join(priv, "policyd")
    pidfile = os.path.join(d, "policyd.pid")
    trace = os.path.join(d, "trace")
    mport = free_port()
    try:
        with Redis() as r:
            p = Policyd(redis=r, rules=gen_rules(1), binary=RELEASE_BIN,
                        listen=['{ address = "unix:%s"; mode = "%s"; owner = "nobody"; '
                                'group = "nogroup"; }' % (sock, mode)],
                        extra='pidfile = "%s"; metrics = { address = "127.0.0.1:%d"; };'
                        % (pidfile, mport))
            text = open(p.conf).read().replace("run_as_root = true;", 'user = "nobody";')
            with open(p.conf, "w") as f:
                f.write(text)
            logf = open(p.logpath, "ab")
            proc = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, RELEASE_BIN, "-f",
                                     "-c", p.conf], stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=subprocess.STDOUT)
            try:
                wait_for(lambda: proc.poll() is not None or "started:" in p.log(), 20,
                         what="policyd under strace")
                check(proc.poll() is None, "policyd exited: " + p.log())
                st = os.stat(sock)
                eq(st.st_mode & 0o777, int(mode, 8), "socket mode")
                eq((st.st_uid, st.st_gid), (65534, 65534), "socket owner/group")
                pid = int(open(pidfile).read())
                with p.connect(sock) as c:
                    eq(probe(c), "REJECT 5.7.1 generation 1", "answers on the socket")
                eq(http_get(mport, "/healthz")[0], 200, "metrics")
                p.write_config(gen_rules(2))
                text = open(p.conf).read().replace("run_as_root = true;", 'user = "nobody";')
                with open(p.conf, "w") as f:
                    f.write(text)
                os.kill(pid, signal.SIGHUP)
                p.wait_log(r"reloaded: generation 2", 10)
                with p.connect(sock) as c:
                    eq(probe(c), "REJECT 5.7.1 generation 2", "reloaded as nobody")
                os.kill(pid, signal.SIGTERM)
                eq(proc.wait(30), 0, "exit status: " + p.log())
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
                logf.close()
            check("running as user nobody" in p.log(), p.log())
            shutil.rmtree(p.dir, ignore_errors=True)
        used = set()
        for line in open(trace):
            m = re.match(r"^\d+\s+([a-z_0-9]+)\(", line)
            if m:
                used.add(m.group(1))
        check({"chown", "fchown", "fchownat"} & used, "the socket was chowned: %s" % sorted(used))
        check({"setresuid"} & used, "privileges dropped")
        check(len(used) > 30, "trace recorded: %s" % sorted(used))
        used.discard("execve")          # systemd's own, before the filter applies
        allow_mode, names = effective_filter(unit_settings(open(UNIT).read()))
        missing = sorted(sc for sc in used if not allowed(allow_mode, names, sc))
        eq(missing, [], "system calls filtered by the unit")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_with_unit_caps(caps, sock_dir, extra_listen=""):
    """policyd as root with only caps (setpriv: bounding set, no new
    privileges, as the unit does) and the README's socket setup in a
    directory owned by another user, 0700 (like Postfix's private/)."""
    sock = os.path.join(sock_dir, "policyd")
    r = Redis().start()
    p = Policyd(redis=r, rules=gen_rules(1), binary=RELEASE_BIN,
                listen=['{ address = "unix:%s"; mode = "0660"; owner = "nobody"; '
                        'group = "nogroup"; }' % sock], expect_start=False)
    text = open(p.conf).read().replace("run_as_root = true;", 'user = "nobody";')
    with open(p.conf, "w") as f:
        f.write(text)
    bset = "-all," + ",".join("+" + c.lower()[4:] for c in caps)
    p.logf = open(p.logpath, "ab")
    p.proc = subprocess.Popen(["setpriv", "--no-new-privs", "--bounding-set=" + bset,
                               "--inh-caps=-all", RELEASE_BIN, "-f", "-c", p.conf],
                              stdin=subprocess.DEVNULL, stdout=p.logf, stderr=subprocess.STDOUT)
    return r, p, sock


def test_systemd_capabilities_suffice_for_the_readme_socket():
    """With exactly the unit's CapabilityBoundingSet and NoNewPrivileges, a
    root start binds the socket in a foreign 0700 directory, chowns it and
    drops to the user with no capability left; without CAP_DAC_OVERRIDE
    the same start fails (so the check can fail)."""
    if os.geteuid() != 0:
        raise Skip("needs root")  # noqa: F821
    if shutil.which("setpriv") is None:
        raise Skip("setpriv (util-linux) not available")  # noqa: F821
    check(os.path.exists(RELEASE_BIN), "build/policyd exists")
    keys = dict(unit_settings(open(UNIT).read()))
    eq(keys.get("NoNewPrivileges"), "yes", "NoNewPrivileges")
    caps = keys.get("CapabilityBoundingSet", "").split()
    d = mktemp("policyd-caps.")
    priv = os.path.join(d, "private")
    os.makedirs(priv)
    os.chown(priv, 65534, 65534)
    os.chmod(priv, 0o700)
    try:
        r, p, sock = run_with_unit_caps(caps, priv)
        try:
            wait_for(lambda: p.proc.poll() is not None or "started:" in p.log(), 15,
                     what="policyd start")
            check(p.proc.poll() is None, "policyd exited: " + p.log())
            st = os.stat(sock)
            eq((st.st_uid, st.st_gid, st.st_mode & 0o777), (65534, 65534, 0o660),
               "socket owner, group, mode: " + p.log())
            status = open("/proc/%d/status" % p.proc.pid).read()
            eq(re.search(r"^CapEff:\s+(\S+)", status, re.M).group(1), "0" * 16,
               "no capability after the drop")
            eq(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1), "65534", "uid")
            with p.connect(sock) as c:
                eq(probe(c), "REJECT 5.7.1 generation 1", "answers on the socket")
            check(not re.search(r"warning: .*(chown|chmod|pidfile|privileges)", p.log()),
                  "start without warnings: " + p.log())
        finally:
            p.cleanup(check_exit=False)
            r.cleanup()
        fewer = [c for c in caps if c != "CAP_DAC_OVERRIDE"]
        r, p, sock = run_with_unit_caps(fewer, priv)
        try:
            rc = p.proc.wait(15)
            check(rc != 0 and "bind: Permission denied" in p.log(),
                  "without CAP_DAC_OVERRIDE the socket cannot be bound: %s" % p.log())
        finally:
            p.cleanup(check_exit=False)
            r.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------- item 18: builds and install layout

def test_sanitizer_build_does_not_replace_policyd_binary():
    """Build a sanitizer variant in its own BUILD directory: policyd/policyd
    and policyd/policyctl stay what they were (the release build)."""
    copies = [os.path.join(TOP, "policyd", b) for b in ("policyd", "policyctl")]
    before = {}
    for c in copies:
        if os.path.exists(c):
            before[c] = open(c, "rb").read()
            check(not is_sanitizer_binary(c), "%s is a sanitizer binary already" % c)
    d = mktemp("policyd-asan-build.")
    try:
        san = "-fsanitize=address,undefined"
        res = subprocess.run(["make", "-s", "BUILD=" + d, "CFLAGS=-O0 " + san, "LDFLAGS=" + san,
                              "all"], cwd=TOP, capture_output=True, text=True, timeout=600)
        eq(res.returncode, 0, "sanitizer build: %s" % res.stderr[-2000:])
        check(is_sanitizer_binary(os.path.join(d, "policyd")), "the variant has ASan")
        for c in copies:
            if c in before:
                check(open(c, "rb").read() == before[c], "%s changed by the sanitizer build" % c)
                check(not is_sanitizer_binary(c), "%s is a sanitizer binary" % c)
            else:
                check(not os.path.exists(c), "%s created by the sanitizer build" % c)
        # make test's own second pass (build-asan), when it has run
        asan = os.path.join(TOP, "build-asan", "policyd")
        pd = os.path.join(TOP, "policyd", "policyd")
        if os.path.exists(asan) and os.path.exists(pd):
            check(open(asan, "rb").read() != open(pd, "rb").read(), "policyd/policyd is build-asan's")
        # make install with a sanitizer BUILD refuses instead of installing it
        res = subprocess.run(["make", "-s", "install", "BUILD=" + d, "DESTDIR=" + d + "/dest"],
                             cwd=TOP, capture_output=True, text=True, timeout=120)
        check(res.returncode != 0 and not os.path.exists(d + "/dest"), "install from a variant")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_stale_sanitizer_copy_is_replaced():
    """policyd/policyd left by an older Makefile (a newer sanitizer copy) is
    replaced by the release build at the next make."""
    pd = os.path.join(TOP, "policyd", "policyd")
    if not os.path.exists(RELEASE_BIN):
        raise Skip("no release build")  # noqa: F821
    saved = open(pd, "rb").read() if os.path.exists(pd) else None
    try:
        with open(pd, "wb") as f:
            f.write(b"#!/bin/sh\n# __asan_init stand-in\n")
        os.utime(pd, None)
        res = subprocess.run(["make", "-s", "policyd/policyd"], cwd=TOP, capture_output=True,
                             text=True, timeout=300)
        eq(res.returncode, 0, res.stderr)
        check(open(pd, "rb").read() == open(RELEASE_BIN, "rb").read(), "copy refreshed")
    finally:
        if saved is not None and open(pd, "rb").read() != saved:
            with open(pd, "wb") as f:
                f.write(saved)


def test_install_prefix_usr_puts_configuration_in_etc():
    need_systemd_analyze()
    dest = mktemp("policyd-install.")
    try:
        res = subprocess.run(["make", "-s", "install", "PREFIX=/usr", "DESTDIR=" + dest],
                             cwd=TOP, capture_output=True, text=True, timeout=300)
        eq(res.returncode, 0, res.stderr)
        check(os.path.exists(os.path.join(dest, "etc/policyd/policyd.conf")), "tmp/etc/policyd")
        check(not os.path.exists(os.path.join(dest, "usr/etc")), "nothing in /usr/etc")
        sbin = os.path.join(dest, "usr/sbin/policyd")
        check(not is_sanitizer_binary(sbin), "installed policyd is not a sanitizer build")
        check(open(sbin, "rb").read() == open(RELEASE_BIN, "rb").read(), "installed build/policyd")
        unit = open(os.path.join(dest, "usr/share/policyd/policyd.service")).read()
        check("ExecStart=/usr/sbin/policyd -f -c /etc/policyd/policyd.conf" in unit, unit)
        check("/usr/local" not in unit, "no /usr/local left in the unit")
        verify_unit(unit.replace("/usr/sbin/policyd", sbin)
                    .replace("/etc/policyd/", os.path.join(dest, "etc/policyd/")),
                    os.path.join(dest, "usr/share/man"), dest)
        # any other prefix keeps its own etc
        dest2 = os.path.join(dest, "opt")
        res = subprocess.run(["make", "-s", "install", "PREFIX=/opt/policyd", "DESTDIR=" + dest2],
                             cwd=TOP, capture_output=True, text=True, timeout=300)
        eq(res.returncode, 0, res.stderr)
        check(os.path.exists(os.path.join(dest2, "opt/policyd/etc/policyd/policyd.conf")),
              "PREFIX/etc otherwise")
    finally:
        shutil.rmtree(dest, ignore_errors=True)
