"""Documented operational features that had no test of their own (issue 16,
item 6): a unix listener's owner, group and mode; the privilege drop to
user and group with the user's supplementary groups; the pidfile and unix
socket at exit after the drop; every log.level; daemon mode with syslog
and log.facility; redis.connect_timeout_ms; the 5 s limit of SIGTERM.

The privilege tests need root. The supplementary groups come from a private
/etc/group bind-mounted in a mount namespace of policyd's own (unshare -m),
so no user or group of the machine is created or changed."""
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (Policyd, Redis, SyslogSink, TestFailure, check, eq, expects_on_error,  # noqa: E402
                     free_port, greylist_rules, metrics, mktemp, req, start_daemon,
                     stop_daemon, wait_for)

STATIC = 'rules = ( { name = "all"; action = "DUNNO"; } );'


def need_root():
    if os.geteuid() != 0:
        raise Skip("needs root")  # noqa: F821


def as_user(p, user):
    """Drop run_as_root from the harness's configuration: policyd, started
    as root, drops to user."""
    text = open(p.conf).read().replace("run_as_root = true;", user)
    with open(p.conf, "w") as f:
        f.write(text)


def can_connect(path, uid, gid, groups=()):
    """Does a process with these ids get through the socket's permissions?"""
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)\n")
    cp = subprocess.run(["/usr/bin/python3", "-c", code, path], user=uid, group=gid,
                        extra_groups=list(groups), timeout=30, capture_output=True)
    check(cp.returncode in (0, 3), "connect as %d:%d: %s" % (uid, gid, cp.stderr))
    return cp.returncode == 0


def proc_ids(pid):
    status = open("/proc/%d/status" % pid).read()
    uid = tuple(int(x) for x in re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split())
    gid = tuple(int(x) for x in re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split())
    groups = {int(x) for x in re.search(r"^Groups:\s*(.*)$", status, re.M).group(1).split()}
    return uid, gid, groups


# ------------------------------------------------- unix socket owner/group --

def test_unix_socket_owner_group_and_mode():
    """owner "daemon", group "mail", mode "0660": the socket has exactly that
    uid, gid and mode, so its owner and a member of the group get in, and
    anybody else is refused by the kernel."""
    need_root()
    daemon_uid = pwd.getpwnam("daemon").pw_uid
    mail_gid = grp.getgrnam("mail").gr_gid
    nobody = pwd.getpwnam("nobody").pw_uid
    nogroup = grp.getgrnam("nogroup").gr_gid
    check(len({daemon_uid, nobody}) == 2 and len({mail_gid, nogroup, 0}) == 3,
          "distinct ids for the test")
    d = mktemp("policyd-sock.")
    sock = os.path.join(d, "policyd.sock")
    try:
        with Redis() as r, Policyd(redis=r, rules=STATIC, listen=[
                '{ address = "unix:%s"; mode = "0660"; owner = "daemon"; group = "mail"; }'
                % sock]) as p:
            st = os.lstat(sock)
            check(stat.S_ISSOCK(st.st_mode), "a socket")
            eq((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (daemon_uid, mail_gid, 0o660),
               "owner, group and mode of %s" % sock)
            check(can_connect(sock, daemon_uid, daemon_uid), "the owner connects")
            check(can_connect(sock, nobody, mail_gid), "a member of the group connects")
            check(can_connect(sock, nobody, nogroup, [mail_gid]),
                  "a supplementary member of the group connects")
            check(not can_connect(sock, nobody, nogroup), "anybody else is refused")
            with p.connect(sock) as c:
                eq(c.ask(req()), "DUNNO", "answered on the socket")
        # mode alone: no chown, the default owner is whoever bound it
        with Redis() as r, Policyd(redis=r, rules=STATIC, listen=[
                '{ address = "unix:%s"; mode = "0600"; }' % sock]) as p:
            st = os.lstat(sock)
            eq((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)), (0, 0, 0o600),
               "mode 0600 without owner/group")
            check(not can_connect(sock, nobody, mail_gid), "0600: nobody else gets in")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------- privilege drop ----

def with_group_file(p, lines):
    """Run policyd in its own mount namespace with /etc/group = the
    machine's plus lines (so a user has supplementary groups without
    touching the machine's files)."""
    gfile = os.path.join(p.dir, "group")
    with open("/etc/group") as f:
        text = f.read()
    with open(gfile, "w") as f:
        f.write(text.rstrip("\n") + "\n" + "".join(l + "\n" for l in lines))
    os.chmod(gfile, 0o644)
    wrapper = os.path.join(p.dir, "in-namespace")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec unshare -m sh -c 'mount --bind \"$0\" /etc/group && "
                "exec \"$@\"' %s %s \"$@\"\n" % (gfile, p.bin))
    os.chmod(wrapper, 0o755)
    p.bin = wrapper


def test_privilege_drop_to_group_with_supplementary_groups():
    """user = "nobody", group = "mail": real, effective, saved and fs uid
    are nobody's, every gid is mail's, and the supplementary groups are
    mail plus the groups /etc/group lists nobody in (initgroups) - not
    root's, not nobody's primary group. Without group: nobody's own."""
    need_root()
    if shutil.which("unshare") is None:
        raise Skip("unshare (util-linux) not available")  # noqa: F821
    nobody = pwd.getpwnam("nobody")
    mail_gid = grp.getgrnam("mail").gr_gid
    extra = ["pdtest-a:x:64901:daemon,nobody", "pdtest-b:x:64902:nobody",
             "pdtest-c:x:64903:daemon"]
    for setting, gid, groups in (
            ('user = "nobody"; group = "mail";', mail_gid, {mail_gid, 64901, 64902}),
            ('user = "nobody";', nobody.pw_gid, {nobody.pw_gid, 64901, 64902})):
        with Redis() as r:
            p = Policyd(redis=r, rules=greylist_rules())
            with_group_file(p, extra)
            as_user(p, setting)
            with p:
                uid4, gid4, got = proc_ids(p.proc.pid)
                eq(uid4, (nobody.pw_uid,) * 4, "%s: real, effective, saved, fs uid" % setting)
                eq(gid4, (gid,) * 4, "%s: real, effective, saved, fs gid" % setting)
                eq(got, groups, "%s: supplementary groups" % setting)
                p.wait_log(r"running as user nobody \(uid %d, gid %d\)" % (nobody.pw_uid, gid))
                with p.client() as c:
                    check(c.ask(req()).startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"),
                          "answers as nobody")
                out = p.reload(STATIC)
                check("reloaded: generation 2" in out, "reloads as nobody: " + out)


# ------------------------------------------- pidfile and socket at exit ----

def start_dropped(r, d, user="nobody"):
    sock = os.path.join(d, "policyd.sock")
    pidfile = os.path.join(d, "policyd.pid")
    p = Policyd(redis=r, rules=STATIC, extra='pidfile = "%s";' % pidfile,
                listen=['{ address = "unix:%s"; mode = "0660"; owner = "%s"; }' % (sock, user)])
    as_user(p, 'user = "%s";' % user)
    p.start()
    p.wait_log(r"running as user %s" % user)
    eq(open(pidfile).read(), "%d\n" % p.proc.pid, "pidfile written as root")
    return p, sock, pidfile


def test_pidfile_and_socket_removed_after_the_drop():
    """In a directory the user may write (like systemd's RuntimeDirectory
    of a User= service), policyd running as nobody removes its pidfile and
    its unix socket at SIGTERM, without a warning."""
    need_root()
    d = mktemp("policyd-run.")
    os.chown(d, pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    try:
        with Redis() as r:
            p, sock, pidfile = start_dropped(r, d)
            try:
                with p.connect(sock) as c:
                    eq(c.ask(req()), "DUNNO", "answers")
                p.signal(signal.SIGTERM)
                eq(p.proc.wait(15), 0, "exit status")
                eq(sorted(os.listdir(d)), [], "pidfile and socket removed")
                check("warning" not in p.log(), "no warning:\n" + p.log())
            finally:
                p.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_pidfile_emptied_and_socket_left_where_the_user_cannot_remove_them():
    """In a root-owned directory (Postfix's private/, /run) nobody cannot
    remove files: the pidfile is emptied through the descriptor kept from
    the start (so it names no process that could later get the same pid),
    the socket stays, each said once at info level - and the next start
    replaces both."""
    need_root()
    d = mktemp("policyd-run.")
    try:
        with Redis() as r:
            p, sock, pidfile = start_dropped(r, d)
            try:
                p.signal(signal.SIGTERM)
                eq(p.proc.wait(15), 0, "exit status")
                log = p.log()
                eq(open(pidfile).read(), "", "the pidfile is emptied")
                check(re.search(r"pidfile %s emptied: user nobody cannot remove it from its "
                                r"directory" % re.escape(pidfile), log), log)
                check(stat.S_ISSOCK(os.lstat(sock).st_mode), "the socket is left")
                check(re.search(r"unix:%s: left in place: user nobody cannot remove it" %
                                re.escape(sock), log), log)
                check("warning" not in log, "no warning:\n" + log)
            finally:
                p.cleanup()
            p2, sock, pidfile = start_dropped(r, d)
            try:
                with p2.connect(sock) as c:
                    eq(c.ask(req()), "DUNNO", "the next start replaced the stale socket")
            finally:
                p2.cleanup()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ------------------------------------------------------------ log levels ----

LEVEL_PROBES = {
    # severity: (a line only it produces, the level it first appears at)
    "error": r"error: metrics: cannot listen on 127\.0\.0\.1:\d+; running without metrics",
    "warning": r"warning: redis: cannot connect to 127\.0\.0\.1:\d+: Connection refused",
    "info": r"Q-LEVEL: rule=- action=DUNNO ",
    "debug": r"debug: 127\.0\.0\.1:\d+: policyd_explain ignored: this listener has explain = false",
}
LEVELS = ["error", "warning", "info", "debug"]


def level_scenario(level, syslog=None, facility=None):
    """policyd at log.level = level with one event of each severity: the
    metrics port taken (error), Redis refusing (warning), a decision (info),
    policyd_explain on a listener without explain (debug). Returns the
    log text (stderr, or the syslog datagrams) after a clean exit."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = free_port()
    logset = 'log = { level = "%s";%s };' % (level, ' facility = "%s";' % facility
                                               if facility else "")
    p = Policyd(rules=STATIC, expect_start=False,
                listen=['{ address = "inet:127.0.0.1:%d"; explain = false; }' % port],
                extra='metrics = { address = "127.0.0.1:%d"; };' % taken.getsockname()[1])
    pidfile = os.path.join(p.dir, "policyd.pid")
    text = open(p.conf).read().replace('log = { level = "info"; };', logset)
    with open(p.conf, "w") as f:
        f.write(text + '\npidfile = "%s";\n' % pidfile)
    pid = None
    try:
        if syslog:
            sink = SyslogSink(os.path.join(p.dir, "log"))
            pid = start_daemon(p, sink.path)
        else:
            p.start()
            pid = p.proc.pid
        p.port = port

        def up():
            check(syslog or p.proc.poll() is None, "policyd exited:\n" + p.log())
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                return True
            except OSError:
                return False
        wait_for(up, 20, what="policyd to listen")
        with p.client() as c:
            eq(c.ask(req(queue_id="Q-LEVEL", policyd_explain="yes")), "DUNNO", "answered")
            check(not any(l.startswith("trace=") for l in c.last_lines), "no trace here")
        # Redis refused the first connect long before this round trip; the
        # exit flushes every line, so what is absent was never logged
        taken.close()
        if syslog:
            stop_daemon(p, pid)
            pid = None
            return sink.read()
        p.signal(signal.SIGTERM)
        eq(p.proc.wait(15), 0, "exit status")
        return p.log()
    finally:
        taken.close()
        if syslog:
            try:
                stop_daemon(p, pid)
            finally:
                sink.close()
                p.cleanup(check_exit=False)
        else:
            p.cleanup()


def test_every_log_level_shows_its_severity_and_those_above():
    for level in LEVELS:
        log = level_scenario(level)
        for sev in LEVELS:
            shown = LEVELS.index(sev) <= LEVELS.index(level)
            found = re.search(LEVEL_PROBES[sev], log)
            check(bool(found) == shown, "log.level %s: %s line %s:\n%s" % (
                level, sev, "missing" if shown else "shown", log))
        check(("started:" in log) == (level in ("info", "debug")),
              "log.level %s: the start line:\n%s" % (level, log))


LOG_LOCAL5 = 21
SEVERITY = {"error": 3, "warning": 4, "info": 6, "debug": 7}


def test_daemon_logs_to_syslog_with_its_facility_and_severities():
    """policyd without -f, log.facility = "local5", level debug: every line
    is a datagram <PRI> = local5 * 8 + the line's severity."""
    lines = level_scenario("debug", syslog=True, facility="local5")
    check(lines, "datagrams received")
    for sev in LEVELS:
        want = "<%d>" % (LOG_LOCAL5 * 8 + SEVERITY[sev])
        hits = [l for l in lines if re.search(LEVEL_PROBES[sev].replace(sev + ": ", "", 1)
                                              if sev != "info" else LEVEL_PROBES[sev], l)]
        check(hits, "a %s datagram among:\n%s" % (sev, "\n".join(lines)))
        for l in hits:
            check(l.startswith(want), "%s line with %s: %r" % (sev, want, l))
    for l in lines:
        m = re.match(r"<(\d+)>", l)
        check(m and int(m.group(1)) // 8 == LOG_LOCAL5, "facility local5: %r" % l)
    started = [l for l in lines if "started:" in l]
    check(started and started[0].startswith("<%d>" % (LOG_LOCAL5 * 8 + 6)), "start line")


# ------------------------------------------------- redis.connect_timeout_ms --

def fill_backlog(port, limit=64):
    """Connect to a stopped server until its accept queue is full and a
    new connect hangs in the handshake (the SYN is dropped); returns the
    sockets that got in."""
    socks = []
    for _ in range(limit):
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
        except socket.timeout:
            s.close()
            return socks
        socks.append(s)
    raise TestFailure("the accept queue of port %d never filled" % port)


def redis_block(r, connect_ms, password=None):
    return ('redis = { address = "%s"; timeout_ms = 400; connect_timeout_ms = %d; '
            'prefix = "t:"; %s};' % (r.address, connect_ms,
                                     'password = "%s"; ' % password if password else ""))


def back_to_normal(p, r):
    """Redis runs again: policyd connects and greylists normally."""
    p.wait_log(r"redis: connected to %s" % re.escape(r.address), 15)
    with p.client() as c:
        check(c.ask(req(recipient="after@example.net"))
              .startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), "normal answer")


@expects_on_error
def test_connect_timeout_abandons_a_handshake_that_never_completes():
    """A redis-server that is stopped with a full accept queue never
    answers the TCP handshake: with connect_timeout_ms = 300 policyd gives
    the connect up ("connect timed out") and retries; with 60000 it is
    still waiting in the same time. Requests meanwhile get on_error within
    timeout_ms, and once Redis runs again policyd connects and answers."""
    with Redis(extra=["--tcp-backlog", "1"]) as r:
        r.pause()
        fillers = []
        try:
            fillers = fill_backlog(r.port)
            with Policyd(redis=r, rules=greylist_rules(),
                         redis_block=redis_block(r, 60000)) as slow, \
                    Policyd(redis=r, rules=greylist_rules(),
                            redis_block=redis_block(r, 300)) as fast:
                fast.wait_log(r"redis: cannot connect to %s: connect timed out \(retrying\)"
                              % re.escape(r.address), 10)
                with fast.client() as c:
                    t0 = time.monotonic()
                    eq(c.ask(req()), "DUNNO", "on_error while Redis cannot be reached")
                    check(time.monotonic() - t0 < 10, "answered without waiting for Redis")
                time.sleep(1.0)
                check("connect timed out" not in slow.log(),
                      "connect_timeout_ms = 60000: still waiting:\n" + slow.log())
                r.resume()
                for s in fillers:
                    s.close()
                fillers = []
                back_to_normal(fast, r)
        finally:
            r.resume()
            for s in fillers:
                s.close()


@expects_on_error
def test_connect_timeout_covers_auth():
    """A stopped redis-server with a password: the kernel completes the
    handshake but AUTH is never answered. The connect deadline runs until
    the setup is done: "connect timed out", retried, and no command is sent
    before AUTH succeeds; after SIGCONT the connection is set up."""
    with Redis(password="s3cret") as r:
        r.pause()
        try:
            with Policyd(redis=r, rules=greylist_rules(),
                         redis_block=redis_block(r, 300, "s3cret")) as p:
                p.wait_log(r"redis: cannot connect to %s: connect timed out \(retrying\)"
                           % re.escape(r.address), 10)
                with p.client() as c:
                    eq(c.ask(req()), "DUNNO", "on_error before AUTH is answered")
                r.resume()
                back_to_normal(p, r)
        finally:
            r.resume()


# ------------------------------------------------------ the SIGTERM limit --

@expects_on_error
def test_sigterm_gives_up_after_5_seconds_on_a_hung_redis():
    """Requests wait on a hung Redis (timeout_ms 60000); SIGTERM: policyd
    stops accepting, waits the documented 5 s for them, then exits 0 with
    a warning naming how many were still busy, removes its pidfile, and the
    stuck requests get their rule's on_error answer (Redis is abandoned)
    rather than a hang."""
    d = mktemp("policyd-stop.")
    pidfile = os.path.join(d, "policyd.pid")
    mport = free_port()
    with Redis() as r:
        p = Policyd(redis=r, rules=greylist_rules(), timeout_ms=60000,
                    extra='pidfile = "%s"; metrics = { address = "127.0.0.1:%d"; };'
                    % (pidfile, mport))
        p.start()
        clients = []
        try:
            wait_for(lambda: metrics(mport).get("policyd_redis_up") == 1, 10, what="redis up")
            r.pause()
            for i in range(4):
                c = p.client(timeout=60)
                c.send(req(recipient="stuck%d@example.net" % i))
                clients.append(c)
            wait_for(lambda: metrics(mport).get("policyd_requests_total") == 4, 20,
                     what="four requests waiting on Redis")
            t0 = time.monotonic()
            p.signal(signal.SIGTERM)
            rc = p.proc.wait(60)
            dt = time.monotonic() - t0
            eq(rc, 0, "exit status")
            check(dt >= 4.9, "waited the grace period: exited after %.2fs" % dt)
            check(dt < 20, "exited after %.2fs" % dt)
            check(re.search(r"shutdown: 4 connections still busy after 5 s: exiting", p.log()),
                  p.log()[-2000:])
            check(not os.path.exists(pidfile), "pidfile removed")
            for c in clients:
                c.s.settimeout(10)
                try:
                    got = c.reply()
                except (ConnectionError, OSError):
                    got = None
                eq(got, "DUNNO", "a stuck client gets its rule's on_error answer")
        finally:
            r.resume()
            for c in clients:
                c.close()
            p.cleanup()
            shutil.rmtree(d, ignore_errors=True)
