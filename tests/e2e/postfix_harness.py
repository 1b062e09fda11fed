"""Throwaway real Postfix instance on loopback, in front of a policy server.

Python 3 standard library only.  Must run as root (the Postfix master starts
as root and drops to user ``postfix``); needs the Debian packages postfix,
sasl2-bin, libsasl2-modules, libsasl2-modules-db and swaks, plus ``ss``
(iproute2) and ``ps`` (procps).

Typical use::

    from postfix_harness import Postfix, missing_prerequisites

    why = missing_prerequisites()
    if why:
        print("SKIP", why); sys.exit(0)
    with Postfix("inet:127.0.0.1:10040") as pf:          # start()s, cleanup()s
        r = pf.swaks("carol@example.com", "dave@example.net")
        assert r.rcpt_reply.startswith("450 4.7.1"), r.transcript
        r = pf.swaks("alice@example.net", "carol@example.org",
                     auth_user="alice@example.net")
        assert r.accepted

Layout of the instance directory (``pf.dir``)::

    etc/main.cf etc/master.cf etc/sasl/smtpd.conf etc/sasl/sasldb2
    queue/  data/  log/maillog  sink/ (smtp-sink dumps, sink.out counters)

Everything is bounded in time and every process is stopped by PID: the
Postfix master by its session id (``ps --sid``), the smtp-sink by its Popen.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["Postfix", "PostfixError", "SwaksResult", "free_port",
           "free_ports", "missing_prerequisites", "REALM"]

REALM = "example.net"
HOSTNAME = "mx.e2e.test"
HELO = "client.e2e.test"

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
POSTCONF = "/usr/sbin/postconf"
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
SASLPASSWD2 = "/usr/sbin/saslpasswd2"


class PostfixError(RuntimeError):
    """Raised when the instance cannot be configured, started or queried."""


def _which(name, default):
    if os.path.exists(default):
        return default
    return shutil.which(name)


def missing_prerequisites():
    """Return None when an instance can run here, else a reason to skip."""
    if os.geteuid() != 0:
        return "not running as root"
    for name, default in (("postfix", POSTFIX), ("postqueue", POSTQUEUE),
                          ("postconf", POSTCONF), ("smtp-sink", SMTP_SINK),
                          ("saslpasswd2", SASLPASSWD2), ("swaks", "/usr/bin/swaks"),
                          ("ss", "/usr/bin/ss"), ("ps", "/usr/bin/ps")):
        if not _which(name, default):
            return "%s not installed" % name
    try:
        import pwd
        import grp
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except (KeyError, ImportError):
        return "user postfix / group postdrop missing"
    if not os.path.isdir("/usr/lib/postfix/sbin"):
        return "postfix daemon directory /usr/lib/postfix/sbin missing"
    return None


def free_ports(n, host="127.0.0.1"):
    """Return n distinct currently free TCP ports on host.

    All sockets are held open until every port is chosen so that the ports
    are distinct; there is still the usual race with other programs.
    """
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def free_port(host="127.0.0.1"):
    return free_ports(1, host)[0]


def _run(argv, timeout=60, input=None, check=False, env=None):
    """subprocess.run with a time limit, text output, stdout+stderr captured."""
    try:
        cp = subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=timeout,
                            universal_newlines=True, errors="replace", env=env)
    except subprocess.TimeoutExpired as e:
        raise PostfixError("timed out after %ss: %s" % (timeout, " ".join(argv))) from e
    if check and cp.returncode != 0:
        raise PostfixError("%s exited %d:\n%s%s" % (" ".join(argv), cp.returncode,
                                                    cp.stdout, cp.stderr))
    return cp


def _listening(port):
    """True when something listens on TCP port (asked of ss, not connected to)."""
    try:
        cp = _run(["ss", "-Hltn", "sport = :%d" % port], timeout=10)
    except PostfixError:
        return False
    return cp.returncode == 0 and cp.stdout.strip() != ""


def _session_pids(sid):
    """Live (non-zombie) PIDs of session sid.

    Zombies are skipped: the daemonized master is reparented to PID 1, and
    until PID 1 reaps it (about 1 s here; never, with a container PID 1 that
    does not reap) the master and its children linger as zombies, which hold
    no ports or files and cannot be killed anyway.
    """
    try:
        cp = _run(["ps", "--no-headers", "-o", "pid=,stat=", "--sid", str(sid)],
                  timeout=10)
    except PostfixError:
        return []
    pids = []
    for line in cp.stdout.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0].isdigit() and not f[1].startswith("Z"):
            pids.append(int(f[0]))
    return pids


def _make_traversable(path):
    """chmod 0755 on path, and add o+x (search) on parents lacking it."""
    os.chmod(path, 0o755)
    p = os.path.dirname(os.path.abspath(path))
    while p and p != "/":
        mode = os.stat(p).st_mode & 0o7777
        if not mode & 0o001:
            os.chmod(p, mode | 0o011)
        p = os.path.dirname(p)


class SwaksResult:
    """What swaks saw.

    returncode   swaks exit status (0 ok, 24 no recipient accepted, ...)
    transcript   stdout + stderr text
    rcpt_replies list of reply texts, one per RCPT TO (multi-line replies
                 joined with "\\n"), in order
    rcpt_reply   rcpt_replies joined with "\\n" ("" if no RCPT was sent)
    mail_reply   reply to MAIL FROM
    auth_reply   reply to AUTH (last reply of the exchange), "" without AUTH
    data_reply   reply after the end-of-data dot ("" if never got there)
    accepted     True if data_reply is a 250
    queue_id     queue id from "250 2.0.0 Ok: queued as XXXX", or None
    """

    def __init__(self, argv, returncode, transcript):
        self.argv = argv
        self.returncode = returncode
        self.transcript = transcript
        self.rcpt_replies = []
        self.mail_reply = ""
        self.auth_reply = ""
        self.data_reply = ""
        self._parse()
        self.rcpt_reply = "\n".join(self.rcpt_replies)
        self.accepted = self.data_reply.startswith("250")
        m = re.search(r"queued as ([0-9A-Za-z]+)", self.data_reply)
        self.queue_id = m.group(1) if m else None

    # swaks prefixes: " -> " client line, "<-  " server ok, "<** " server
    # error, "~> "/"<~ " over TLS, "*** " / "=== " swaks notes.
    _SEND = re.compile(r"^ ?[-~]> (.*)$")
    _RECV = re.compile(r"^<(?:-|~|\*\*|~\*)\s*(.*)$")

    def _parse(self):
        pending = None      # command whose reply is being read
        in_data = False     # between 354 and the final dot
        current = []
        verbs = {"EHLO", "HELO", "LHLO", "MAIL", "RCPT", "DATA", "RSET", "QUIT",
                 "AUTH", "STARTTLS", "NOOP", "VRFY", "XCLIENT", "XFORWARD", "BDAT"}
        for line in self.transcript.splitlines():
            ms = self._SEND.match(line)
            if ms:
                cmd = ms.group(1)
                if in_data:
                    if cmd.strip() == ".":
                        pending, in_data = "DOT", False
                    continue
                word = re.split(r"[ :]", cmd, 1)[0].upper()
                if word in verbs or pending != "AUTH":
                    pending = word      # else: AUTH LOGIN / PLAIN continuation
                current = []
                continue
            mr = self._RECV.match(line)
            if not mr:
                continue
            reply = mr.group(1)
            current.append(reply)
            if len(reply) > 3 and reply[3] == "-":
                continue                # multi-line reply goes on
            text = "\n".join(current)
            current = []
            if pending == "RCPT":
                self.rcpt_replies.append(text)
            elif pending == "MAIL":
                self.mail_reply = text
            elif pending == "AUTH":
                self.auth_reply = text
            elif pending == "DOT":
                self.data_reply = text
            elif pending == "DATA":
                if text.startswith("354"):
                    in_data = True
                else:
                    self.data_reply = text      # e.g. 554 no valid recipients
            if pending != "AUTH":
                pending = None

    def __repr__(self):
        return "SwaksResult(rc=%d, rcpt=%r, data=%r)" % (
            self.returncode, self.rcpt_reply, self.data_reply)


class Postfix:
    """A throwaway Postfix instance.

    policy_endpoint     "inet:127.0.0.1:PORT", "inet:[::1]:PORT" or "unix:/abs/path"
                        (a unix socket must be connectable by user postfix)
    base_dir            instance directory; default a fresh mkdtemp under /tmp.
                        cleanup() removes it in both cases.
    smtp_port           plain smtpd (no AUTH) on 127.0.0.1; default a free port
    submission_port     smtpd with SASL AUTH on 127.0.0.1; default a free port
    sink_port           smtp-sink relay target; default a free port
    end_of_data_policy  also ask the policy in smtpd_end_of_data_restrictions
    users               {localpart: password} created in realm example.net;
                        clients log in as "localpart@example.net"
    extra_main_cf       dict merged over the generated main.cf parameters
                        (a value None removes a parameter), or a str appended
    extra_master_cf     str appended to master.cf
    """

    def __init__(self, policy_endpoint, base_dir=None, smtp_port=None,
                 submission_port=None, end_of_data_policy=False,
                 users=None, extra_main_cf=None, sink_port=None,
                 extra_master_cf=None, start_timeout=60):
        if users is None:
            users = {"alice": "secret", "bob": "secret"}
        self.policy_endpoint = policy_endpoint
        self.end_of_data_policy = end_of_data_policy
        self.users = dict(users)
        self.extra_main_cf = extra_main_cf
        self.extra_master_cf = extra_master_cf
        self.start_timeout = start_timeout
        need = [p is None for p in (smtp_port, submission_port, sink_port)]
        picked = iter(free_ports(sum(need)))
        self.smtp_port = smtp_port if smtp_port is not None else next(picked)
        self.submission_port = (submission_port if submission_port is not None
                                else next(picked))
        self.sink_port = sink_port if sink_port is not None else next(picked)

        if base_dir is None:
            base_dir = tempfile.mkdtemp(prefix="postfix-e2e-", dir="/tmp")
        else:
            os.makedirs(base_dir, exist_ok=True)
        self.dir = os.path.abspath(base_dir)
        self.etc = os.path.join(self.dir, "etc")
        self.queue_dir = os.path.join(self.dir, "queue")
        self.data_dir = os.path.join(self.dir, "data")
        self.log_dir = os.path.join(self.dir, "log")
        self.log_file = os.path.join(self.log_dir, "maillog")
        self.sasl_dir = os.path.join(self.etc, "sasl")
        self.sasldb = os.path.join(self.sasl_dir, "sasldb2")
        self.sink_dir = os.path.join(self.dir, "sink")
        self.sink_out = os.path.join(self.dir, "sink.out")
        self._sink = None
        self._sink_out_fh = None
        self._master_sid = None
        self._started = False
        self._configured = False

    # ------------------------------------------------------------ config

    def main_cf_params(self):
        """The generated main.cf as an ordered dict (before extra_main_cf)."""
        ep = self.policy_endpoint
        ipv6 = ep.startswith("inet:[") and ":" in ep[6:ep.find("]")] if "]" in ep else False
        policy = "check_policy_service %s" % ep
        sink = "smtp:[127.0.0.1]:%d" % self.sink_port
        p = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": self.log_file,
            "maillog_file_prefixes": self.log_dir,
            "syslog_name": "postfix-e2e",
            "myhostname": HOSTNAME,
            "mydomain": "e2e.test",
            "myorigin": "$myhostname",
            "smtpd_banner": "$myhostname ESMTP postfix-e2e",
            "biff": "no",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "all" if ipv6 else "ipv4",
            "mynetworks": "",
            "mydestination": "",
            "local_recipient_maps": "",
            "local_transport": "error:5.1.1 local delivery disabled in this test instance",
            "alias_maps": "",
            "alias_database": "",
            "relay_domains": "example.net, example.org",
            "relay_recipient_maps": "",
            "relayhost": "",
            "relay_transport": sink,
            "default_transport": sink,
            "smtp_dns_support_level": "disabled",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "smtpd_relay_restrictions": "permit_sasl_authenticated, reject_unauth_destination",
            "smtpd_recipient_restrictions": policy,
            "smtpd_end_of_data_restrictions": policy if self.end_of_data_policy else "",
            "smtpd_sasl_auth_enable": "no",
            "smtpd_sasl_type": "cyrus",
            "smtpd_sasl_path": "smtpd",
            "cyrus_sasl_config_path": self.sasl_dir,
            "smtpd_sasl_security_options": "noanonymous",
            "smtpd_sasl_local_domain": "",
            "smtpd_sasl_authenticated_header": "no",
            # Test speed: deliver retries and queue scans quickly.
            "queue_run_delay": "10s",
            "minimal_backoff_time": "10s",
            "maximal_backoff_time": "60s",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_connection_rate_limit": "0",
            "anvil_rate_time_unit": "60s",
            "import_environment": "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C",
        }
        return p

    def _master_cf(self):
        def svc(name, typ, private, unpriv, wakeup, maxproc, cmd, opts=()):
            line = "%-10s %-10s %-5s %-5s %-5s %-7s %-5s %s\n" % (
                name, typ, private, unpriv, "n", wakeup, maxproc, cmd)
            for o in opts:
                line += "  -o %s\n" % o
            return line

        rows = [
            svc("127.0.0.1:%d" % self.smtp_port, "inet", "n", "-", "-", "-", "smtpd"),
            svc("127.0.0.1:%d" % self.submission_port, "inet", "n", "-", "-", "-", "smtpd",
                ["syslog_name=postfix-e2e/submission",
                 "smtpd_sasl_auth_enable=yes",
                 "smtpd_relay_restrictions=permit_sasl_authenticated,reject"]),
            svc("pickup", "unix", "n", "-", "60", "1", "pickup"),
            svc("cleanup", "unix", "n", "-", "-", "0", "cleanup"),
            svc("qmgr", "unix", "n", "-", "300", "1", "qmgr"),
            svc("rewrite", "unix", "-", "-", "-", "-", "trivial-rewrite"),
            svc("bounce", "unix", "-", "-", "-", "0", "bounce"),
            svc("defer", "unix", "-", "-", "-", "0", "bounce"),
            svc("trace", "unix", "-", "-", "-", "0", "bounce"),
            svc("verify", "unix", "-", "-", "-", "1", "verify"),
            svc("flush", "unix", "n", "-", "1000?", "0", "flush"),
            svc("proxymap", "unix", "-", "-", "-", "-", "proxymap"),
            svc("proxywrite", "unix", "-", "-", "-", "1", "proxymap"),
            svc("smtp", "unix", "-", "-", "-", "-", "smtp"),
            svc("relay", "unix", "-", "-", "-", "-", "smtp",
                ["syslog_name=postfix-e2e/$service_name"]),
            svc("showq", "unix", "n", "-", "-", "-", "showq"),
            svc("error", "unix", "-", "-", "-", "-", "error"),
            svc("retry", "unix", "-", "-", "-", "-", "error"),
            svc("discard", "unix", "-", "-", "-", "-", "discard"),
            svc("anvil", "unix", "-", "-", "-", "1", "anvil"),
            svc("scache", "unix", "-", "-", "-", "1", "scache"),
            svc("postlog", "unix-dgram", "n", "-", "-", "1", "postlogd"),
        ]
        text = "# generated by postfix_harness.py; chroot is n in every row\n" + "".join(rows)
        if self.extra_master_cf:
            text += self.extra_master_cf.rstrip("\n") + "\n"
        return text

    def configure(self):
        """Write the instance (idempotent). start() calls it."""
        if self._configured:
            return
        _make_traversable(self.dir)
        for d in (self.etc, self.queue_dir, self.log_dir, self.sasl_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755)
        # queue subdirectories and data_directory are left to
        # "post-install create-missing" (run by postfix check / start).

        params = self.main_cf_params()
        extra_text = ""
        if isinstance(self.extra_main_cf, dict):
            for k, v in self.extra_main_cf.items():
                if v is None:
                    params.pop(k, None)
                else:
                    params[k] = v
        elif self.extra_main_cf:
            extra_text = str(self.extra_main_cf).rstrip("\n") + "\n"
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("# generated by postfix_harness.py\n")
            for k, v in params.items():
                f.write("%s = %s\n" % (k, v))
            f.write(extra_text)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(self._master_cf())
        for name in ("main.cf", "master.cf"):
            os.chmod(os.path.join(self.etc, name), 0o644)

        with open(os.path.join(self.sasl_dir, "smtpd.conf"), "w") as f:
            f.write("pwcheck_method: auxprop\n"
                    "auxprop_plugin: sasldb\n"
                    "sasldb_path: %s\n"
                    "mech_list: PLAIN LOGIN\n" % self.sasldb)
        os.chmod(os.path.join(self.sasl_dir, "smtpd.conf"), 0o644)
        for user, password in self.users.items():
            _run([SASLPASSWD2, "-p", "-c", "-f", self.sasldb, "-u", REALM, user],
                 input=password, timeout=30, check=True)
        if self.users:
            import grp
            os.chown(self.sasldb, 0, grp.getgrnam("postfix").gr_gid)
            os.chmod(self.sasldb, 0o640)

        import pwd
        pw = pwd.getpwnam("postfix")
        os.makedirs(self.sink_dir, exist_ok=True)
        os.chown(self.sink_dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.sink_dir, 0o755)
        self._configured = True

    # ------------------------------------------------------------ helpers

    def postconf(self, *args, timeout=30):
        """Run postconf -c ETC ARGS; return stdout. Raises on failure."""
        return _run([POSTCONF, "-c", self.etc] + list(args), timeout=timeout,
                    check=True).stdout

    def postfix_cmd(self, *args, timeout=60):
        """Run postfix -c ETC ARGS; return CompletedProcess."""
        return _run([POSTFIX, "-c", self.etc] + list(args), timeout=timeout)

    def maillog(self):
        """The whole maillog as text ("" if not created yet)."""
        try:
            with open(self.log_file, "r", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def maillog_tail(self, lines=40):
        return "\n".join(self.maillog().splitlines()[-lines:])

    def wait_for_log(self, pattern, timeout=15, start=0):
        """Wait until regex pattern appears in maillog[start:]; return the match.

        Use start=len(pf.maillog()) taken before an action to only look at
        what the action logged.  Raises PostfixError on timeout.
        """
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.maillog()[start:])
            if m:
                return m
            if time.monotonic() > deadline:
                raise PostfixError("maillog: %r not seen within %ss; tail:\n%s"
                                   % (pattern, timeout, self.maillog_tail()))
            time.sleep(0.1)

    def queue_json(self, timeout=30):
        """Parsed postqueue -j: list of dicts (queue_name, queue_id, sender,
        recipients=[{address, delay_reason?}], arrival_time, message_size...)."""
        cp = _run([POSTQUEUE, "-c", self.etc, "-j"], timeout=timeout)
        if cp.returncode != 0:
            raise PostfixError("postqueue -j exited %d: %s%s" % (
                cp.returncode, cp.stdout, cp.stderr))
        return [json.loads(l) for l in cp.stdout.splitlines() if l.strip()]

    def queue_ids(self, queue_name=None):
        """Queue ids, optionally only those in queue_name ("hold", "deferred"...)."""
        return [e["queue_id"] for e in self.queue_json()
                if queue_name is None or e.get("queue_name") == queue_name]

    def flush(self):
        """postqueue -f: attempt delivery of everything queued now."""
        _run([POSTQUEUE, "-c", self.etc, "-f"], timeout=30)

    def postsuper(self, *args, timeout=30):
        return _run(["/usr/sbin/postsuper", "-c", self.etc] + list(args),
                    timeout=timeout)

    def wait_queue_empty(self, timeout=30, queue_name=None):
        deadline = time.monotonic() + timeout
        while True:
            q = [e for e in self.queue_json()
                 if queue_name is None or e.get("queue_name") == queue_name]
            if not q:
                return
            if time.monotonic() > deadline:
                raise PostfixError("queue not empty after %ss: %r" % (timeout, q))
            time.sleep(0.2)

    def sink_counts(self):
        """Last smtp-sink -c counters as a dict, e.g. {'sess':2,'quit':2,'mesg':1}."""
        try:
            with open(self.sink_out, "r", errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        recs = [r for r in re.split(r"[\r\n]+", text) if "mesg=" in r]
        if not recs:
            return {}
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recs[-1])}

    def sink_messages(self):
        """Texts of the transactions smtp-sink dumped (oldest first)."""
        out = []
        for root, _dirs, files in os.walk(self.sink_dir):
            for name in files:
                path = os.path.join(root, name)
                out.append((os.stat(path).st_mtime, path))
        res = []
        for _t, path in sorted(out):
            with open(path, "r", errors="replace") as f:
                res.append(f.read())
        return res

    def wait_sink_messages(self, n, timeout=30):
        """Wait until the sink has completed at least n transactions (its -c
        counter mesg >= n and n dump files exist); return the dumped texts."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.sink_messages()
            mesg = self.sink_counts().get("mesg", 0)
            if len(msgs) >= n and mesg >= n:
                return msgs
            if time.monotonic() > deadline:
                raise PostfixError("sink has %d dumps, mesg=%d, wanted %d after %ss;"
                                   " maillog tail:\n%s" % (len(msgs), mesg, n, timeout,
                                                           self.maillog_tail()))
            time.sleep(0.2)

    # ------------------------------------------------------------ start/stop

    def _start_sink(self):
        self._sink_out_fh = open(self.sink_out, "wb")
        argv = [SMTP_SINK, "-u", "postfix", "-c",
                "-d", os.path.join(self.sink_dir, "%Y%m%d%H%M%S."),
                "127.0.0.1:%d" % self.sink_port, "64"]
        self._sink = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                      stdout=self._sink_out_fh,
                                      stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def _master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _wait_listen(self, ports, timeout):
        deadline = time.monotonic() + timeout
        while True:
            missing = [p for p in ports if not _listening(p)]
            if not missing:
                return
            if self._sink is not None and self._sink.poll() is not None:
                raise PostfixError("smtp-sink exited %s: %s" % (
                    self._sink.returncode, self._read_sink_out()))
            if time.monotonic() > deadline:
                raise PostfixError("ports %s not listening after %ss; maillog tail:\n%s"
                                   % (missing, timeout, self.maillog_tail()))
            time.sleep(0.1)

    def _read_sink_out(self):
        try:
            with open(self.sink_out, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start(self):
        """Configure, start smtp-sink and Postfix, wait for the ports."""
        if self._started:
            return self
        self.configure()
        try:
            self._start_sink()
            cp = self.postfix_cmd("check", timeout=self.start_timeout)
            if cp.returncode != 0 or "fatal" in cp.stdout + cp.stderr:
                raise PostfixError(
                    "postfix check failed (rc=%d) in %s:\n%s%s\nmaillog tail:\n%s%s" % (
                        cp.returncode, self.dir, cp.stdout, cp.stderr,
                        self.maillog_tail(),
                        "" if os.path.exists(self.log_file) else
                        "\n(no maillog: is maillog_file under maillog_file_prefixes?)"))
            self._started = True   # from here on stop() must run
            cp = self.postfix_cmd("start", timeout=self.start_timeout)
            pid = self._master_pid()
            if pid is not None:
                self._master_sid = pid   # master calls setsid(): sid == pid
            if cp.returncode != 0:
                raise PostfixError("postfix start failed (rc=%d):\n%s%s\nmaillog tail:\n%s"
                                   % (cp.returncode, cp.stdout, cp.stderr,
                                      self.maillog_tail()))
            if pid is None:
                raise PostfixError("no master.pid after postfix start; maillog tail:\n%s"
                                   % self.maillog_tail())
            self._wait_listen([self.smtp_port, self.submission_port, self.sink_port],
                              timeout=self.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout=20, fast=False):
        """Stop Postfix and the sink, by PID, within about 2*timeout seconds.

        Default: "postfix stop" (it polls the master with sleep 1, so 1-3 s).
        fast=True sends SIGTERM to the master PID instead (what postfix stop
        does first) and only waits for the session to empty (~0.1 s).
        In both cases every PID left in the master's session after timeout
        is SIGKILLed.
        """
        sid = self._master_sid
        if self._started and sid is None:
            sid = self._master_pid()
        if self._started or sid:
            if fast and sid:
                try:
                    os.kill(sid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            else:
                try:
                    self.postfix_cmd("stop", timeout=timeout)
                except PostfixError:
                    pass
            if sid:
                deadline = time.monotonic() + timeout
                while _session_pids(sid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                for pid in _session_pids(sid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + 5
                while _session_pids(sid) and time.monotonic() < deadline:
                    time.sleep(0.05)
        self._started = False
        self._master_sid = None
        if self._sink is not None:
            if self._sink.poll() is None:
                self._sink.terminate()
                try:
                    self._sink.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._sink.kill()
                    try:
                        self._sink.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        pass
            self._sink = None
        if self._sink_out_fh is not None:
            self._sink_out_fh.close()
            self._sink_out_fh = None

    def cleanup(self, fast=False):
        """stop() and remove the instance directory."""
        try:
            self.stop(fast=fast)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if os.environ.get("POSTFIX_HARNESS_KEEP"):
            self.stop()
            print("# POSTFIX_HARNESS_KEEP: instance kept in %s" % self.dir)
        else:
            self.cleanup()
        return False

    # ------------------------------------------------------------ clients

    def swaks(self, sender, recipient, auth_user=None, password="secret",
              port=None, extra=(), timeout=60, helo=HELO, auth_mech="PLAIN"):
        """Run swaks; return SwaksResult.

        recipient may be a str or a list (sent as several RCPT TO).  With
        auth_user (the full login, e.g. "alice@example.net") the submission
        port and AUTH auth_mech are used; otherwise the plain smtp port.
        """
        if isinstance(recipient, (list, tuple)):
            recipient = ",".join(recipient)
        if port is None:
            port = self.submission_port if auth_user else self.smtp_port
        argv = ["swaks", "--server", "127.0.0.1", "--port", str(port),
                "--from", sender, "--to", recipient, "--helo", helo,
                "--timeout", str(max(5, int(timeout) - 10)), "--hide-informational"]
        if auth_user:
            argv += ["--auth", auth_mech, "--auth-user", auth_user,
                     "--auth-password", password]
        argv += list(extra)
        try:
            cp = subprocess.run(argv, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                timeout=timeout, universal_newlines=True,
                                errors="replace")
            rc, out = cp.returncode, cp.stdout
        except subprocess.TimeoutExpired as e:
            out = e.output or ""
            if isinstance(out, bytes):
                out = out.decode(errors="replace")
            rc, out = -1, out + "\n*** harness: swaks timed out after %ss\n" % timeout
        return SwaksResult(argv, rc, out)

    def smtp_source(self, *args, port=None, timeout=120):
        """Run smtp-source ARGS ... 127.0.0.1:PORT (plain smtp port by default).

        Example: pf.smtp_source("-s", "5", "-m", "50", "-f", "a@example.com",
                                "-t", "b@example.net")
        Returns CompletedProcess (stdout+stderr text in .stdout).
        """
        if port is None:
            port = self.smtp_port
        argv = [SMTP_SOURCE] + list(args) + ["127.0.0.1:%d" % port]
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=timeout, universal_newlines=True,
                                  errors="replace")
        except subprocess.TimeoutExpired as e:
            raise PostfixError("smtp-source timed out after %ss" % timeout) from e
