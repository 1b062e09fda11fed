"""Operations: metrics, health, reload under load, SIGTERM, privileges, install."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (TOP, Policyd, Redis, check, eq, free_port, greylist_rules,  # noqa: E402
                     mktemp, req, run_checked, wait_for)

BENCH = os.path.join(os.path.dirname(TOP), "shared", "bench")


def http_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


PROM_LINE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                       r'[-+0-9.eE]+(Inf)?$')


def parse_prometheus(text):
    """Strict-enough parser: every sample line is valid, every family has TYPE."""
    samples, types = {}, {}
    for line in text.split("\n"):
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            check(typ in ("counter", "gauge", "histogram"), "bad type " + line)
            types[name] = typ
            continue
        if line.startswith("#"):
            continue
        check(PROM_LINE.match(line), "not Prometheus text: %r" % line)
        key, value = line.rsplit(" ", 1)
        family = re.sub(r"(_bucket|_sum|_count)$", "", key.split("{")[0])
        check(family in types or key.split("{")[0] in types, "sample without TYPE: " + line)
        samples[key] = float(value)
    return samples


def metrics_extra(port):
    return 'metrics = { address = "127.0.0.1:%d"; };' % port


def test_metrics_parse_and_match_requests():
    mport = free_port()
    rules = ('rules = ( { name = "blocked"; match = { sender = "bad@example.com"; }; '
             'action = "REJECT 5.7.1 no"; } );')
    with Redis() as r, Policyd(redis=r, rules=rules, extra=metrics_extra(mport)) as p:
        with p.client() as c:
            for i in range(7):
                eq(c.ask(req(recipient="u%d@example.net" % i)), "DUNNO", "no rule")
            for i in range(3):
                eq(c.ask(req(sender="bad@example.com")), "REJECT 5.7.1 no", "static rule")
            eq(c.ask(req(protocol_state="END-OF-MESSAGE")), "DUNNO", "EOM")
        status, text = http_get(mport, "/metrics")
        eq(status, 200, "/metrics status")
        s = parse_prometheus(text)
        eq(s["policyd_requests_total"], 11, "requests counted")
        eq(s["policyd_replies_total"], 11, "replies counted")
        eq(s['policyd_decisions_total{rule="blocked",action="REJECT"}'], 3, "decisions by rule")
        eq(s['policyd_decisions_total{rule="-",action="DUNNO"}'], 8, "undecided")
        eq(s['policyd_requests_by_state_total{state="RCPT"}'], 10, "by state RCPT")
        eq(s['policyd_requests_by_state_total{state="END-OF-MESSAGE"}'], 1, "by state EOM")
        eq(s['policyd_request_duration_seconds_bucket{le="+Inf"}'], 11, "histogram count")
        eq(s["policyd_request_duration_seconds_count"], 11, "histogram _count")
        eq(s["policyd_config_generation"], 1, "generation")
        eq(s["policyd_redis_up"], 1, "redis up")
        eq(http_get(mport, "/nothing")[0], 404, "unknown path")


def test_healthz_follows_redis():
    mport = free_port()
    with Redis() as r, Policyd(redis=r, rules=greylist_rules(), extra=metrics_extra(mport)) as p:
        wait_for(lambda: http_get(mport, "/healthz")[0] == 200, 5, what="healthz 200")
        r.stop()
        wait_for(lambda: http_get(mport, "/healthz")[0] == 503, 5, what="healthz 503")
        check("redis unreachable" in http_get(mport, "/healthz")[1], "503 body")
        r.start()
        wait_for(lambda: http_get(mport, "/healthz")[0] == 200, 5, what="healthz 200 again")
        p.wait_log(r"redis: connected", 5)


def build_policy_load():
    src = os.path.join(BENCH, "policy-load.c")
    if not os.path.exists(src):
        raise Skip("../shared/bench/policy-load.c not found")  # noqa: F821
    out = os.path.join(TOP, "build", "policy-load")
    if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        subprocess.run(["cc", "-O2", "-std=c11", "-o", out, src], check=True, timeout=120)
    return out


def static_rules(gen):
    return ('rules = ( { name = "gen"; match = { recipient = "probe@example.net"; }; '
            'action = "REJECT 5.7.1 generation %d"; }, '
            '{ name = "grey"; check = "greylist"; delay = 300; retry_window = 600; } );' % gen)


def test_reload_20_times_under_load():
    load = build_policy_load()
    mport = free_port()
    with Redis() as r, Policyd(redis=r, rules=static_rules(0), extra=metrics_extra(mport)) as p:
        with p.client() as c:
            eq(c.ask(req(recipient="probe@example.net")), "REJECT 5.7.1 generation 0", "before")
        # the load runs until stopped (SIGINT, after the last reload): the
        # reloads all happen under it however slow the machine is
        proc = subprocess.Popen([load, "-c", "8", "-d", "600", "-m", "greylist", "--json",
                                 "127.0.0.1:%d" % p.port], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            wait_for(lambda: (parse_prometheus(http_get(mport, "/metrics")[1])
                              .get("policyd_requests_total", 0) > 100), 30, what="load running")
            for gen in range(1, 21):
                before = parse_prometheus(http_get(mport, "/metrics")[1])["policyd_requests_total"]
                p.write_config(static_rules(gen), extra=metrics_extra(mport))
                p.signal(signal.SIGHUP)
                p.wait_log(r"reloaded: generation %d," % (gen + 1), 15)
                wait_for(lambda: parse_prometheus(http_get(mport, "/metrics")[1])
                         ["policyd_requests_total"] > before + 20, 15,
                         what="requests served around reload %d" % gen)
            check(proc.poll() is None, "the load still runs after the last reload")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        res = json.loads(out.decode().strip().split("\n")[-1])
        check(res["requests"] > 100, "load ran: %s" % res["requests"])
        eq(res["errors"]["total"], 0, "failed requests during reloads")
        eq(res["conns"]["server_closes"], 0, "connections dropped by policyd")
        with p.client() as c:
            eq(c.ask(req(recipient="probe@example.net")), "REJECT 5.7.1 generation 20",
               "new rules after the last reload")
        s = parse_prometheus(http_get(mport, "/metrics")[1])
        eq(s["policyd_reloads_total"], 20, "reloads counted")
        eq(s["policyd_config_generation"], 21, "generation")


def metric(port, name):
    """One value from policyd's /metrics, or None."""
    try:
        text = http_get(port, "/metrics")[1]
    except OSError:
        return None
    m = re.search(r"^%s (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def test_sigterm_answers_requests_in_flight():
    """Requests wait on a hung Redis; SIGTERM; Redis resumes; all answered."""
    d = mktemp("policyd-sock.")
    sock = os.path.join(d, "policyd.sock")
    pidfile = os.path.join(d, "policyd.pid")
    with Redis() as r:
        mport = free_port()
        p = Policyd(redis=r, rules=greylist_rules(), timeout_ms=30000,
                    listen=["unix:" + sock], extra='pidfile = "%s";\n%s' % (
                        pidfile, metrics_extra(mport)))
        p.start()
        try:
            wait_for(lambda: os.path.exists(sock), 5, what="socket")
            eq(open(pidfile).read().strip(), str(p.proc.pid), "pidfile content")
            import socket as so
            clients = []
            wait_for(lambda: metric(mport, "policyd_redis_up") == 1, 10, what="redis up")
            sent = metric(mport, "policyd_redis_commands_total")
            r.pause()
            for i in range(10):
                s = so.socket(so.AF_UNIX, so.SOCK_STREAM)
                s.settimeout(10)
                s.connect(sock)
                s.sendall(("request=smtpd_access_policy\nprotocol_state=RCPT\n"
                           "client_address=192.0.2.%d\nsender=a@b.test\nrecipient=c%d@d.test\n\n"
                           % (i, i)).encode())
                clients.append(s)
            # all ten are read and their scripts sent: waiting for Redis now
            # (a request's script call leaves in the loop turn that read it,
            # with the others of that turn: one to ten calls)
            wait_for(lambda: metric(mport, "policyd_requests_total") == 10
                     and metric(mport, "policyd_redis_commands_total") >= sent + 1, 20,
                     what="ten requests waiting on Redis")
            p.signal(signal.SIGTERM)
            p.wait_log("stopping", 5)
            time.sleep(0.3)
            r.resume()
            answered = 0
            for s in clients:
                data = b""
                while not data.endswith(b"\n\n"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"action=DEFER_IF_PERMIT 4.7.1 Greylisted"):
                    answered += 1
                s.close()
            eq(answered, 10, "requests in flight answered after SIGTERM")
            eq(p.proc.wait(10), 0, "exit status")
            check(not os.path.exists(pidfile), "pidfile removed")
            check(not os.path.exists(sock), "unix socket removed")
        finally:
            r.resume()
            p.cleanup()
            shutil.rmtree(d, ignore_errors=True)


def test_privilege_drop():
    if os.geteuid() != 0:
        raise Skip("needs root")  # noqa: F821
    with Redis() as r:
        p = Policyd(redis=r, rules=greylist_rules())
        text = open(p.conf).read().replace("run_as_root = true;", 'user = "nobody";')
        open(p.conf, "w").write(text)
        p.start()
        try:
            status = open("/proc/%d/status" % p.proc.pid).read()
            uid = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
            gid = re.search(r"^Gid:\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()
            eq(uid, ("65534",) * 3, "real, effective and saved uid")
            check(gid[0] != "0", "gid dropped: %s" % (gid,))
            with p.client() as c:
                check(c.ask(req()).startswith("DEFER_IF_PERMIT"), "still answers")
            check("running as user nobody" in p.log(), "logged")
        finally:
            p.cleanup()


def test_unknown_user_refuses_to_start():
    if os.geteuid() != 0:
        raise Skip("needs root")  # noqa: F821
    p = Policyd(rules=greylist_rules(), expect_start=False)
    text = open(p.conf).read().replace("run_as_root = true;", 'user = "no-such-user-xyz";')
    open(p.conf, "w").write(text)
    p.start()
    rc = p.proc.wait(10)
    check(rc != 0, "exit status non-zero")
    check('user "no-such-user-xyz" does not exist' in p.log(), p.log())
    p.cleanup(check_exit=False)


def test_make_install_tree():
    dest = mktemp("policyd-install.")
    try:
        etc = os.path.join(dest, "usr/local/etc/policyd")
        os.makedirs(etc)
        with open(os.path.join(etc, "policyd.conf"), "w") as f:
            f.write("# local edits\n")
        subprocess.run(["make", "-s", "install", "DESTDIR=" + dest, "PREFIX=/usr/local"],
                       cwd=TOP, check=True, timeout=300, stdout=subprocess.DEVNULL)
        for f in ["usr/local/sbin/policyd", "usr/local/share/man/man8/policyd.8",
                  "usr/local/share/man/man5/policyd.conf.5",
                  "usr/local/etc/policyd/whitelist_clients",
                  "usr/local/share/policyd/policyd.service",
                  "usr/local/share/policyd/grafana-policyd.json"]:
            check(os.path.exists(os.path.join(dest, f)), "installed: " + f)
        check(os.access(os.path.join(dest, "usr/local/sbin/policyd"), os.X_OK), "executable")
        eq(open(os.path.join(etc, "policyd.conf")).read(), "# local edits\n",
           "existing configuration kept")
        unit = open(os.path.join(dest, "usr/local/share/policyd/policyd.service")).read()
        check("ExecStart=/usr/local/sbin/policyd -f -c /usr/local/etc/policyd/policyd.conf"
              in unit, "unit paths")
        check("NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit, "hardened")
        json.load(open(os.path.join(dest, "usr/local/share/policyd/grafana-policyd.json")))
        if shutil.which("man"):
            mans = [os.path.join(r, f) for r, _, fs in os.walk(os.path.join(dest, "usr/local/share/man"))
                    for f in fs]
            check(len(mans) >= 2, "man pages installed")
            for m in mans:
                res = subprocess.run(["man", "-l", m], capture_output=True, timeout=30,
                                     env=dict(os.environ, MANPAGER="cat", PAGER="cat",
                                              MANWIDTH="80"))
                eq(res.returncode, 0, "man -l %s" % m)
                check(b"NAME" in res.stdout and len(res.stdout) > 500, "rendered " + m)
                check(b"warning" not in res.stderr.lower(), "groff warnings for %s: %s"
                      % (m, res.stderr[:300]))
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def test_installed_sample_configuration_is_valid():
    res = run_checked([os.environ.get("POLICYD_BIN") or os.path.join(TOP, "build", "policyd"),
                       "-t", "-c", os.path.join(TOP, "rules", "policyd.conf")],
                      capture_output=True, timeout=30)
    eq(res.returncode, 0, "policyd -t rules/policyd.conf: %s" % res.stderr.decode())
