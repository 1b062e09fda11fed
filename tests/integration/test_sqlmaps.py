"""SQL maps (pgsql:FILE, mysql:FILE) against a private PostgreSQL and a
private MariaDB with a PostfixAdmin-like schema: lookups in the file-map
order, a changed row visible within the cache TTL without a reload,
quotes and % in values, a database stopped under load (on_error within
the deadline, one log line, /healthz) and back, configuration errors."""
import atexit
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (Policyd, Redis, check, eq, free_port, req, wait_for,  # noqa: E402
                     expects_on_error, greylist_triplets)
from runner import Skip  # noqa: E402
import sqlservers  # noqa: E402

ON_ERROR = "DEFER 4.3.0 lookup table unavailable"
NOT_OWNED = "REJECT 5.7.1"

SCHEMA = [
    # PostfixAdmin's alias table: address -> goto (the logins that own it)
    "CREATE TABLE alias (address varchar(255) PRIMARY KEY, goto text NOT NULL, "
    "domain varchar(255) NOT NULL, active smallint NOT NULL DEFAULT 1)",
    "CREATE TABLE relocated (email varchar(255) PRIMARY KEY, "
    "new_address varchar(255) NOT NULL, active smallint NOT NULL DEFAULT 1)",
]
ROWS = [
    "INSERT INTO alias (address, goto, domain) VALUES "
    "('sales@example.net', 'alice@example.net,carol@example.net', 'example.net'), "
    "('bob@example.net', 'bob@example.net', 'example.net'), "
    "('@example.org', 'postmaster@example.net', 'example.org'), "
    "('o''brien@example.net', 'obrien@example.net', 'example.net'), "
    "('pct%s@example.net', 'pct@example.net', 'example.net')",
    "INSERT INTO alias (address, goto, domain, active) VALUES "
    "('old@example.net', 'alice@example.net', 'example.net', 0)",
    "INSERT INTO relocated (email, new_address) VALUES "
    "('moved@example.net', 'new@example.org'), ('@old.example', '@new.example')",
]

SENDER_QUERY = "SELECT goto FROM alias WHERE address='%s' AND active = 1"
RELOC_QUERY = "SELECT new_address FROM relocated WHERE email='%s' AND active = '1'"


def table_file(kind, srv, query, extra="", timeout_ms=1000):
    if kind == "pgsql":
        hosts = "inet:127.0.0.1:%d" % srv.port
    else:
        hosts = "127.0.0.1:%d" % srv.port
    return ("# %s table, as Postfix reads it\nhosts = %s\nuser = postfix\npassword = secret\n"
            "dbname = mail\nquery = %s\npolicyd_cache_ttl = 2\npolicyd_negative_ttl = 1\n"
            "policyd_timeout_ms = %d\n%s" % (kind, hosts, query, timeout_ms, extra))


def rules(kind):
    return """rules = (
  { name = "sl"; check = "sender_login"; map = "%(k)s:sender.cf"; on_error = "%(e)s";
    match = { protocol_state = [ "MAIL", "RCPT", "END-OF-MESSAGE" ]; }; },
  { name = "rel"; check = "relocated"; map = "%(k)s:relocated.cf"; on_error = "%(e)s"; },
  { name = "rest"; action = "OK"; }
);
""" % {"k": kind, "e": ON_ERROR}


def files(kind, srv, sender_extra=""):
    return {"sender.cf": table_file(kind, srv, SENDER_QUERY, sender_extra),
            "relocated.cf": table_file(kind, srv, RELOC_QUERY)}


def auth(login, sender, rcpt="someone@example.com"):
    return req(sasl_username=login, sasl_method="PLAIN", sender=sender, recipient=rcpt)


def http_get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


_servers = {}


class _Shared:
    """One private server of each kind serves every test of this module
    (setting one up took most of a test's time): each test gets it running,
    with the database "mail" dropped and made anew, so no table, row or
    lock of an earlier test is left. A test may stop it, restart it or
    SIGSTOP it (and SIGCONT it before it ends): the next test starts it
    again when it is down. Stopped by teardown_module()."""

    def __init__(self, kind):
        self.kind = kind

    def __enter__(self):
        srv = _servers.get(self.kind)
        if srv is None:
            srv = sqlservers.PostgreSQL() if self.kind == "pgsql" else sqlservers.MariaDB()
            try:
                srv.init()
            except BaseException:
                srv.cleanup()
                raise
            _servers[self.kind] = srv
        elif self.kind == "pgsql":
            if not srv.running:
                srv.start()
        elif srv.proc is None or srv.proc.poll() is not None:
            srv.stop()
            srv.start()
        if self.kind == "pgsql":
            srv.sql("DROP DATABASE IF EXISTS mail WITH (FORCE)", db="postgres")
            srv.sql("CREATE DATABASE mail OWNER postfix", db="postgres")
        else:
            srv.sql("DROP DATABASE IF EXISTS mail; "
                    "CREATE DATABASE mail CHARACTER SET utf8mb4; "
                    "GRANT SELECT ON mail.* TO 'postfix'@'127.0.0.1';", db=None)
        return srv

    def __exit__(self, *exc):
        return False


def teardown_module():
    while _servers:
        _servers.popitem()[1].cleanup()


# another module that imports this one (test_review) has servers of its own
# here: stopped when the runner exits, if that module's teardown did not
atexit.register(teardown_module)


def server(kind):
    if os.geteuid() != 0:
        raise Skip("needs root (the servers run as the postgres / mysql users)")
    if kind == "pgsql":
        if not sqlservers.pg_available():
            raise Skip("PostgreSQL (postgresql package) not installed")
    elif not sqlservers.my_available():
        raise Skip("MariaDB (mariadb-server package) not installed")
    return _Shared(kind)


def load_rows(srv, rows, tables):
    """run the statements; the postfix user may read the tables"""
    for q in rows:
        srv.sql(q)
    if isinstance(srv, sqlservers.PostgreSQL):
        srv.sql("GRANT SELECT ON %s TO postfix" % ", ".join(tables))


def load_schema(srv):
    load_rows(srv, SCHEMA + ROWS, ["alias", "relocated"])


def metric(port, name, table):
    text = http_get(port, "/metrics")[1]
    m = re.search(r'^%s\{table="[^"]*%s"\} (\d+)$' % (name, re.escape(table)), text, re.M)
    return int(m.group(1)) if m else None


# ------------------------------------------------------------- lookups --

def lookups(kind):
    with server(kind) as srv:
        load_schema(srv)
        mport = free_port()
        with Redis() as r, Policyd(redis=r, rules=rules(kind), files=files(kind, srv),
                                   extra='metrics = { address = "127.0.0.1:%d"; };' % mport) as p:
            c = p.client()
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK", "listed login")
            eq(c.ask(auth("Carol@Example.NET", "Sales@example.net")), "OK", "second login, case")
            check(c.ask(auth("mallory@example.net", "sales@example.net")).startswith(NOT_OWNED),
                  "unlisted login refused")
            eq(c.ask(auth("alice@example.net", "sales+news@example.net")), "OK",
               "+extension: the address without it")
            eq(c.ask(auth("postmaster@example.net", "anyone@example.org")), "OK", "@domain row")
            check(c.ask(auth("alice@example.net", "old@example.net")).startswith(NOT_OWNED),
                  "an inactive row is not in the table")
            eq(c.ask(auth("bob@example.net", "bob@example.net")), "OK", "builtin still applies")
            eq(c.ask(auth("obrien@example.net", "o'brien@example.net")), "OK",
               "a quote in the key is data")
            eq(c.ask(auth("pct@example.net", "pct%s@example.net")), "OK", "% in the key is data")
            # relocated
            eq(c.ask(auth("alice@example.net", "alice@example.net", "moved@example.net")),
               "551 5.1.6 User has moved; please try <new@example.org>", "relocated row")
            eq(c.ask(auth("alice@example.net", "alice@example.net", "Joe@old.example")),
               "551 5.1.6 User has moved; please try <Joe@new.example>", "relocated @domain")
            eq(c.ask(auth("alice@example.net", "alice@example.net", "stay@example.net")), "OK",
               "not relocated")
            # the cache answers the second time
            hits = metric(mport, "policyd_table_cache_hits_total", "sender.cf")
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK", "again")
            check(metric(mport, "policyd_table_cache_hits_total", "sender.cf") > hits,
                  "the repeated lookup came from the cache")
            check(metric(mport, "policyd_table_queries_total", "sender.cf") > 0, "queries counted")
            eq(metric(mport, "policyd_table_up", "sender.cf"), 1, "table up")
            eq(http_get(mport, "/healthz")[0], 200, "/healthz with the table up")

            # a row changed in SQL takes effect without a reload, within the TTL
            srv.sql("UPDATE alias SET goto = 'dave@example.net' WHERE address = 'sales@example.net'")
            srv.sql("INSERT INTO alias (address, goto, domain) VALUES "
                    "('new@example.net', 'alice@example.net', 'example.net')")
            t0 = time.monotonic()
            wait_for(lambda: c.ask(auth("alice@example.net", "sales@example.net")).startswith(
                NOT_OWNED), 10, 0.2, "the changed row to take effect")
            wait_for(lambda: c.ask(auth("alice@example.net", "new@example.net")) == "OK", 10, 0.2,
                     "the new row (negative cache) to take effect")
            took = time.monotonic() - t0
            check(took < 2 + 1 + 3, "visible within the TTL (+ margin): %.1fs" % took)
            eq(c.ask(auth("dave@example.net", "sales@example.net")), "OK", "the new owner")
            check("reloaded" not in p.log(), "no reload was needed")
            # the database goes away while nothing is asked: /healthz says so
            srv.stop()
            wait_for(lambda: http_get(mport, "/healthz")[0] == 503, 10, 0.1,
                     "/healthz 503 without traffic")


def test_pgsql_lookups():
    lookups("pgsql")


def test_mysql_lookups():
    lookups("mysql")


# ------------------------------------------------- quotes and injection --

ATTACKS = [
    "x' OR '1'='1",
    "x' OR 1=1 --@example.net",
    "x'; DROP TABLE alias; --@example.net",
    "a\\' OR 1=1 #@example.net",
    "%s' OR address LIKE '%@example.net",
    "''@example.net",
    "\\@example.net",
    "' UNION SELECT 'mallory@example.net",
]


def injection(kind):
    with server(kind) as srv:
        load_schema(srv)
        with Redis() as r, Policyd(redis=r, rules=rules(kind), files=files(kind, srv)) as p:
            c = p.client()
            for a in ATTACKS:
                got = c.ask(auth("mallory@example.net", a))
                check(got.startswith(NOT_OWNED),
                      "%r: must find nothing (got %r)" % (a, got))
                got = c.ask(auth("alice@example.net", a + "@example.net"))
                check(got.startswith(NOT_OWNED), "%r@example.net: got %r" % (a, got))
            # the UNION attack would make mallory an owner if it were spliced
            check(c.ask(auth("mallory@example.net",
                             "' UNION SELECT 'mallory@example.net")).startswith(NOT_OWNED),
                  "UNION not executed")
            eq(srv.sql("SELECT count(*) FROM alias").strip(), "6", "the table is intact")
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK", "still works")
            check("query failed" not in p.log(),
                  "no attack made a query fail")


def test_pgsql_quotes_and_percent_cannot_change_the_query():
    injection("pgsql")


def test_mysql_quotes_and_percent_cannot_change_the_query():
    injection("mysql")


# ------------------------------------------------------------ outage --

def outage(kind):
    with server(kind) as srv:
        load_schema(srv)
        mport = free_port()
        with Redis() as r, Policyd(redis=r, rules=rules(kind), files=files(kind, srv),
                                   extra='metrics = { address = "127.0.0.1:%d"; };' % mport) as p:
            c = p.client()
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK", "up")
            answers, lat, errors = [], [], []
            stop = threading.Event()

            def load(n):
                # bounded: at most 400 requests or until stopped
                try:
                    cl = p.client(timeout=10)
                    for i in range(400):
                        if stop.is_set():
                            break
                        t0 = time.monotonic()
                        a = cl.ask(auth("alice@example.net", "u%d-%d@example.net" % (n, i)))
                        lat.append(time.monotonic() - t0)
                        answers.append((time.monotonic(), a))
                        time.sleep(0.02)
                except Exception as e:  # noqa: BLE001
                    errors.append(repr(e))

            threads = [threading.Thread(target=load, args=(n,)) for n in range(3)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            start = len(p.log())
            t_stop = time.monotonic()
            srv.stop()
            wait_for(lambda: any(t > t_stop and a == ON_ERROR for t, a in answers), 10, 0.05,
                     "on_error answers while the database is down")
            st, body = http_get(mport, "/healthz")
            eq(st, 503, "/healthz with the table down")
            check("table down" in body and "sender.cf" in body, "/healthz names it: %r" % body)
            eq(metric(mport, "policyd_table_up", "sender.cf"), 0, "policyd_table_up 0")
            time.sleep(1.5)
            srv.start()
            t_up = time.monotonic()
            wait_for(lambda: any(t > t_up and a.startswith(NOT_OWNED) for t, a in answers), 20,
                     0.1, "normal answers after the restart")
            stop.set()
            for t in threads:
                t.join(30)
            check(not errors, "clients failed: %s" % errors)
            check(all(a in (ON_ERROR,) or a.startswith(NOT_OWNED) for _, a in answers),
                  "only on_error or the normal answer: %s" % set(a for _, a in answers))
            check(max(lat) < 1.0 + 2.0, "every answer within the deadline (+ margin): max %.2fs"
                  % max(lat))
            p.wait_log(r"sender\.cf: database reachable again", 5, start)
            log = p.log()[start:]
            eq(len(re.findall(r"sender\.cf: database unreachable", log)), 1,
               "the outage is logged once:\n" + log)
            check(re.search(r"sender\.cf: database reachable again", log), "recovery logged")
            # every table (relocated.cf too, idle here) probes back within its back-off
            wait_for(lambda: http_get(mport, "/healthz")[0] == 200, 15, 0.2,
                     "/healthz 200 after recovery")
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK",
               "the first connection works again")


@expects_on_error
def test_pgsql_down_under_load_answers_on_error_and_recovers():
    outage("pgsql")


@expects_on_error
def test_mysql_down_under_load_answers_on_error_and_recovers():
    outage("mysql")


# -------------------------------------------------------------- access --

ACCESS_ROWS = [
    "CREATE TABLE access (k varchar(255) PRIMARY KEY, action varchar(255) NOT NULL)",
    "INSERT INTO access (k, action) VALUES "
    "('@spam.example', 'REJECT 5.7.1 spam domain'), ('friend@spam.example', 'OK'), "
    "('.evil.example', 'REJECT 5.7.1 evil'), ('typo@example.net', 'REJCT'), "
    "('user@', 'REJECT 5.7.1 any user@'), ('192.0.2', 'REJECT 5.7.1 bad network'), "
    "('198.51.100.7', 'REJECT 5.7.1 bad host')",
]


def access_rules(kind):
    return """rules = (
  { name = "client"; check = "access"; key = "client_address"; map = "%(k)s:access.cf";
    on_error = "%(e)s"; },
  { name = "sender"; check = "access"; key = "sender"; map = "%(k)s:access.cf";
    on_error = "%(e)s"; },
  { name = "rest"; action = "DUNNO"; }
);
""" % {"k": kind, "e": ON_ERROR}


def access(kind):
    with server(kind) as srv:
        load_rows(srv, ACCESS_ROWS, ["access"])
        fs = {"access.cf": table_file(kind, srv, "SELECT action FROM access WHERE k='%s'")}
        with Redis() as r, Policyd(redis=r, rules=access_rules(kind), files=fs) as p:
            c = p.client()

            def ask(sender, client="203.0.113.5"):
                return c.ask(req(sender=sender, client_address=client))

            eq(ask("x@spam.example"), "REJECT 5.7.1 spam domain", "@domain row")
            eq(ask("friend@spam.example"), "OK", "the address row is more specific")
            eq(ask("Friend+Tag@Spam.Example"), "OK", "+extension and case, as a file map")
            eq(ask("a@mx.evil.example"), "REJECT 5.7.1 evil", ".parent row")
            eq(ask("user@anywhere.example"), "REJECT 5.7.1 any user@", "user@ row")
            eq(ask("typo@example.net"), ON_ERROR, "a value that is not an action: on_error")
            p.wait_log(r"typo@example\.net.*not an access\(5\) action", 5)
            eq(ask("ok@example.net"), "DUNNO", "no row")
            eq(ask("ok@example.net", "192.0.2.77"), "REJECT 5.7.1 bad network",
               "client_address: the network row (192.0.2)")
            eq(ask("ok@example.net", "198.51.100.7"), "REJECT 5.7.1 bad host",
               "client_address: the host row")
            eq(ask("' OR ''='@spam.example"), "REJECT 5.7.1 spam domain",
               "a quote in the local part is data (the @domain row)")


@expects_on_error
def test_pgsql_access():
    access("pgsql")


@expects_on_error
def test_mysql_access():
    access("mysql")


# ------------------------------------------- per-user ratelimit overrides --

RL_ROWS = [
    "CREATE TABLE quota (username varchar(255) PRIMARY KEY, windows varchar(255) NOT NULL)",
    "INSERT INTO quota (username, windows) VALUES ('bulk@example.net', '2/3600'), "
    "('@example.org', '1/3600'), ('vip@example.org', 'unlimited'), "
    "('big@example.net', '6'), ('bad@example.net', 'lots')",
]


def rl_rules(kind):
    return """rules = (
  { name = "user-rate"; match = { authenticated = true; }; check = "ratelimit";
    key = "sasl_username"; windows = ( { limit = 4; seconds = 3600; }, { limit = 100; seconds = 86400; } );
    overrides = "%s:quota.cf"; on_error = "%s"; },
  { name = "rest"; action = "DUNNO"; }
);
""" % (kind, ON_ERROR)


def ratelimit_overrides(kind):
    with server(kind) as srv:
        load_rows(srv, RL_ROWS, ["quota"])
        fs = {"quota.cf": table_file(kind, srv,
                                     "SELECT windows FROM quota WHERE username='%s'")}
        with Redis() as r, Policyd(redis=r, rules=rl_rules(kind), files=fs) as p:
            c = p.client()

            def passes(login, n):
                return sum(c.ask(req(sasl_username=login, sasl_method="PLAIN",
                                     sender=login, recipient="x@example.com")) == "DUNNO"
                           for _ in range(n + 3))

            eq(passes("bulk@example.net", 2), 2, "the user's row: 2/h")
            eq(passes("Bulk@Example.net", 0), 0, "same login, other case")
            eq(passes("carol@example.org", 1), 1, "the @domain row is inherited")
            eq(passes("vip@example.org", 10), 13, "the user's row beats its domain: unlimited")
            eq(passes("big@example.net", 6), 6, "a plain number replaces every limit")
            eq(passes("dave@example.net", 4), 4, "no row: the rule's windows")
            eq(c.ask(req(sasl_username="bad@example.net", sasl_method="PLAIN",
                         sender="bad@example.net", recipient="x@example.com")), ON_ERROR,
               "a value that is not windows: on_error")
            p.wait_log(r"override bad@example\.net = \"lots\"", 5)
            srv.stop()
            eq(c.ask(req(sasl_username="eve@example.net", sasl_method="PLAIN",
                         sender="eve@example.net", recipient="x@example.com")), ON_ERROR,
               "database down: on_error")


@expects_on_error
def test_pgsql_ratelimit_overrides():
    ratelimit_overrides("pgsql")


@expects_on_error
def test_mysql_ratelimit_overrides():
    ratelimit_overrides("mysql")


# ------------------------------------------------ a hung database server --

def freeze(pid):
    """SIGSTOP a server and wait until it is stopped: kill() returns before
    every thread has stopped, and a thread still running could answer one
    more query (its main thread shows T in /proc; a moment more for the
    others)."""
    os.kill(pid, signal.SIGSTOP)

    def stopped():
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    wait_for(stopped, 5, 0.01, "the server to stop")
    time.sleep(0.2)


@expects_on_error
def test_mysql_hung_server_answers_on_error_at_the_deadline_and_recovers():
    """mariadbd stopped with SIGSTOP: connections stay open, queries never
    answer: each lookup ends at policyd_timeout_ms with on_error; SIGCONT
    and it answers again; SIGTERM while lookups wait exits cleanly."""
    with server("mysql") as srv:
        load_schema(srv)
        with Redis() as r, Policyd(redis=r, rules=rules("mysql"), files=files("mysql", srv)) as p:
            c = p.client(timeout=10)
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK", "up")
            freeze(srv.proc.pid)
            try:
                took = []
                for i in range(4):
                    t0 = time.monotonic()
                    got = c.ask(auth("alice@example.net", "hung%d@example.net" % i))
                    took.append(time.monotonic() - t0)
                    eq(got, ON_ERROR, "hung server: on_error")
                    check(took[-1] < 1.0 + 2.0, "within the 1 s deadline (+ margin): %.2fs"
                          % took[-1])
                # the query in flight waits for its deadline; once the reconnect
                # has failed too the table is down and lookups answer at once
                check(took[0] > 0.8, "the first lookup ended at its deadline: %.2fs" % took[0])
                check(took[-1] < 0.5, "down: the last answered at once: %.2fs" % took[-1])
                # SIGTERM with lookups waiting on the hung server
                c2 = p.client(timeout=10)
                c2.send(auth("alice@example.net", "pending@example.net"))
                time.sleep(0.2)
            finally:
                os.kill(srv.proc.pid, signal.SIGCONT)
            wait_for(lambda: c.ask(auth("alice@example.net", "sales@example.net")) == "OK", 20,
                     0.2, "answers after SIGCONT")
            p.wait_log(r"sender\.cf: database reachable again", 5)
            log = p.log()
            eq(len(re.findall(r"sender\.cf: database unreachable", log)), 1, "logged once")
            check(re.search(r"sender\.cf: database reachable again", log), "recovery logged")


@expects_on_error
class TableLock:
    """A root session holding LOCK TABLES ... WRITE on the map tables: every
    other session's SELECT on them waits for the lock, so a lookup sent to
    a running server never answers, as long as the lock is held. (SIGSTOP
    of mariadbd is not as exact: a thread already running may answer a
    query that arrives a moment after kill() returned.)"""

    def __init__(self, srv, tables=("alias", "relocated")):
        self.srv = srv
        self.proc = subprocess.Popen(
            ["mariadb", "-S", srv.sock, "-uroot", "-N", "-B", "--unbuffered", "mail"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.proc.stdin.write(("LOCK TABLES %s; SELECT 'locked';\n" % ", ".join(
            "%s WRITE" % t for t in tables)).encode())
        self.proc.stdin.flush()
        got = b""
        deadline = time.monotonic() + 20
        while b"locked" not in got:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.release()
                raise sqlservers.TestFailure("LOCK TABLES did not answer: %r" % got)
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                got += os.read(self.proc.stdout.fileno(), 4096)

    def waiting(self):
        """queries of other sessions waiting for the lock"""
        return int(self.srv.sql(
            "SELECT COUNT(*) FROM information_schema.processlist "
            "WHERE state LIKE 'Waiting for table metadata lock%'", db=None).strip())

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()		# the session ends, the lock goes
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc.stdout.close()


@expects_on_error
def test_mysql_sigterm_with_lookups_waiting_on_a_hung_query():
    """The shutdown grace (5 s) ends before a 20 s lookup deadline: the
    lookups still waiting (on a table another session has locked) are
    failed and policyd exits 0 (no leak, no use after free under the
    sanitizers)."""
    with server("mysql") as srv:
        load_schema(srv)
        fs = {"sender.cf": table_file("mysql", srv, SENDER_QUERY, timeout_ms=20000),
              "relocated.cf": table_file("mysql", srv, RELOC_QUERY)}
        with Redis() as r:
            p = Policyd(redis=r, rules=rules("mysql"), files=fs)
            p.logf = None
            p.start()
            try:
                c = p.client(timeout=30)
                eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK", "up")
                lock = TableLock(srv)
                try:
                    clients = [p.client(timeout=30) for _ in range(3)]
                    for i, cl in enumerate(clients):
                        cl.send(auth("alice@example.net", "wait%d@example.net" % i))
                    wait_for(lambda: lock.waiting() >= 1, 10, 0.1,
                             "a lookup waiting for the locked table")
                    t0 = time.monotonic()
                    rc = p.stop(timeout=15)
                    took = time.monotonic() - t0
                finally:
                    lock.release()
                eq(rc, 0, "exit status")
                check(took < 5 + 5, "exited after the grace period: %.1fs" % took)
                log = p.log()
                check("still busy" in log, "the grace period ran out:\n" + log[-2000:])
                eq(len(re.findall(r"sender=<wait\d@example\.net>.* on_error=yes", log)), 3,
                   "the three waiting lookups answered on_error:\n" + log[-2000:])
            finally:
                p.cleanup()


def test_pgsql_reload_shares_the_table_and_a_changed_file_replaces_it():
    with server("pgsql") as srv:
        load_schema(srv)
        mport = free_port()
        extra = 'metrics = { address = "127.0.0.1:%d"; };' % mport
        fs = files("pgsql", srv)
        with Redis() as r, Policyd(redis=r, rules=rules("pgsql"), files=fs, extra=extra) as p:
            c = p.client()
            for _ in range(3):
                eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK", "before")
            before = metric(mport, "policyd_table_lookups_total", "sender.cf")
            check(before >= 3, "counted: %s" % before)
            out = p.reload(rules("pgsql"), extra=extra)
            check("reloaded" in out, out)
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK", "after the reload")
            check(metric(mport, "policyd_table_lookups_total", "sender.cf") > before,
                  "the same table (its counters go on)")
            # a changed file is a new table; the old one goes with its config
            with open(os.path.join(p.dir, "sender.cf"), "w") as f:
                f.write(table_file("pgsql", srv, "SELECT goto FROM alias WHERE address='%s' "
                                   "AND active = 1 AND goto <> 'alice@example.net,carol@example.net'"))
            out = p.reload(rules("pgsql"), extra=extra)
            check("reloaded" in out, out)
            check(c.ask(auth("alice@example.net", "sales@example.net")).startswith(NOT_OWNED),
                  "the new query applies at once (new table, empty cache)")
            text = http_get(mport, "/metrics")[1]
            eq(len(re.findall(r'^policyd_table_up\{table="pgsql:[^"]*sender\.cf"\}', text, re.M)),
               1, "one sender.cf table left:\n" + text)


# ------------------------------------------- greylist whitelists from SQL --

WL_ROWS = [
    "CREATE TABLE greylist_clients (client varchar(255) PRIMARY KEY)",
    "CREATE TABLE greylist_recipients (address varchar(255) PRIMARY KEY, "
    "active smallint NOT NULL DEFAULT 1)",
    "INSERT INTO greylist_clients (client) VALUES ('192.0.2'), ('198.51.100.7'), "
    "('trusted.example'), ('2001:db8:5')",
    "INSERT INTO greylist_recipients (address) VALUES ('postmaster@'), "
    "('abuse@example.net'), ('wl.example'), ('@exact.example')",
    "INSERT INTO greylist_recipients (address, active) VALUES ('off@example.net', 0)",
]
GREY = "DEFER_IF_PERMIT 4.7.1 Greylisted"


def wl_rules(kind):
    return """rules = (
  { name = "greylist"; check = "greylist"; delay = 60; retry_window = 600;
    whitelist_clients = [ "wl_clients", "%(k)s:wlc.cf" ];
    whitelist_recipients = [ "%(k)s:wlr.cf", "wl_rcpts" ];
    on_error = "%(e)s"; }
);
""" % {"k": kind, "e": ON_ERROR}


def wl_files(kind, srv):
    return {"wl_clients": "files.example\n",
            "wl_rcpts": "filed@example.net\n",
            "wlc.cf": table_file(kind, srv, "SELECT 1 FROM greylist_clients WHERE client='%s'"),
            "wlr.cf": table_file(kind, srv, "SELECT 'yes' FROM greylist_recipients "
                                            "WHERE address='%s' AND active = 1")}


def greylist_whitelists(kind):
    with server(kind) as srv:
        load_rows(srv, WL_ROWS, ["greylist_clients", "greylist_recipients"])
        with Redis() as r, Policyd(redis=r, rules=wl_rules(kind), files=wl_files(kind, srv)) as p:
            c = p.client()

            def ask(client="203.0.113.5", name="mx.sender.test", rcpt="bob@example.net"):
                return c.ask(req(client_address=client, client_name=name, recipient=rcpt))

            # whitelisted: passes, and no greylist entry is made
            for kw, what in (({"client": "192.0.2.77"}, "the network row 192.0.2"),
                             ({"client": "198.51.100.7"}, "the host row"),
                             ({"name": "mx.Trusted.Example"}, "a parent of the client name"),
                             ({"name": "trusted.example"}, "the client name itself"),
                             ({"client": "2001:db8:5::25"}, "an IPv6 prefix row"),
                             ({"name": "mx.files.example"}, "the file beside the table"),
                             ({"rcpt": "Postmaster@anything.test"}, "the localpart@ row"),
                             ({"rcpt": "abuse+tag@example.net"}, "the address row, +ext"),
                             ({"rcpt": "x@wl.example"}, "the domain row"),
                             ({"rcpt": "x@deep.sub.wl.example"}, "a subdomain of a domain row"),
                             ({"rcpt": "x@exact.example"}, "the @domain row"),
                             ({"rcpt": "filed@example.net"}, "the file after the table")):
                eq(ask(**kw), "DUNNO", what)
            eq(len(greylist_triplets(r)), 0, "whitelisted mail leaves nothing in Redis")
            # not whitelisted: greylisted as before
            for kw, what in (({"client": "192.0.3.1"}, "another network"),
                             ({"client": "198.51.100.8"}, "the next host"),
                             ({"name": "nottrusted.example"}, "a name that only ends alike"),
                             ({"name": "unknown", "client": "203.0.113.6"}, "no name"),
                             ({"rcpt": "x@sub.exact.example"}, "@domain is that domain only"),
                             ({"rcpt": "off@example.net"}, "an inactive row"),
                             ({"rcpt": "abuse@example.org"}, "the address row's other domain")):
                check(ask(**kw).startswith(GREY), what)
            # (the two 203.0.113.x clients to bob@ share one triplet)
            eq(len(greylist_triplets(r)), 6, "one triplet each")
            c.ask(req(client_address="192.0.2.9", policyd_explain="yes"))
            check(any("whitelist_clients" in l and "wlc.cf" in l and '"192.0.2"' in l
                      for l in c.last_lines), "explain names the table and the row: %s"
                  % c.last_lines)

            # a row added in SQL takes effect within the negative TTL, no reload
            check(ask(client="203.0.113.77").startswith(GREY), "before the row")
            srv.sql("INSERT INTO greylist_clients (client) VALUES ('203.0.113.77')")
            srv.sql("INSERT INTO greylist_recipients (address) VALUES ('new@example.net')")
            t0 = time.monotonic()
            wait_for(lambda: ask(client="203.0.113.77") == "DUNNO", 10, 0.2,
                     "the new client row to whitelist")
            wait_for(lambda: ask(rcpt="new@example.net") == "DUNNO", 10, 0.2,
                     "the new recipient row to whitelist")
            check(time.monotonic() - t0 < 1 + 3, "within the negative TTL (+ margin)")
            check("reloaded" not in p.log(), "no reload was needed")

            # a client table whose server is gone: a recipient row still whitelists
            fs = wl_files(kind, srv)
            fs["wlc.cf"] = fs["wlc.cf"].replace(":%d\n" % srv.port, ":%d\n" % free_port())
            with Policyd(redis=r, rules=wl_rules(kind), files=fs) as p2:
                c2 = p2.client()
                eq(c2.ask(req(client_address="203.0.113.50", recipient="abuse@example.net")),
                   "DUNNO", "another table's row whitelists despite the failed one")
                eq(c2.ask(req(client_address="203.0.113.51", recipient="y@example.net")),
                   ON_ERROR, "no row anywhere and a table failed: on_error")
            eq(len(greylist_triplets(r)), 6, "nothing greylisted by the second instance")

            # the database stops: the rule's on_error, one log line per table
            start = len(p.log())
            srv.stop()
            for i in range(5):
                eq(ask(client="203.0.113.%d" % (100 + i)), ON_ERROR, "database down: on_error")
            eq(ask(name="mx.files.example"), "DUNNO", "a file entry still whitelists")
            eq(ask(rcpt="filed@example.net", client="203.0.113.99"), "DUNNO",
               "the files are asked before any table")
            p.wait_log(r"wlc\.cf: database unreachable", 5, start)
            time.sleep(0.5)
            log = p.log()[start:]
            eq(len(re.findall(r"wlc\.cf: database unreachable", log)), 1,
               "the outage is logged once for the table:\n" + log)
            eq(len(greylist_triplets(r)), 6, "nothing greylisted while down")


@expects_on_error
def test_pgsql_greylist_whitelists():
    greylist_whitelists("pgsql")


@expects_on_error
def test_mysql_greylist_whitelists():
    greylist_whitelists("mysql")


def test_whitelist_and_protect_domains_table_errors_at_policyd_t():
    rules = wl_rules("pgsql")
    good = "dbname = mail\nquery = SELECT 1 FROM t WHERE k='%s'\n"
    for bad, setting in (("wlc.cf", "whitelist_clients"), ("wlr.cf", "whitelist_recipients")):
        fs = {"wl_clients": "", "wl_rcpts": "", "wlc.cf": good, "wlr.cf": good}
        fs[bad] = "dbname = mail\nquery = SELECT 1 FROM t WHERE k='%s'\nbogus = x\n"
        p = Policyd(rules=rules, files=fs)
        p.logf = None
        try:
            rc, out = p.check_config()
            check(rc == 1, "policyd -t refuses a bad %s table: %d %s" % (bad, rc, out))
            check(re.search(r"policyd\.conf:\d+: %s: .*%s:3: unknown setting \"bogus\""
                            % (setting, re.escape(bad)), out), out)
        finally:
            p.cleanup(check_exit=False)
    p = Policyd(rules=rules, files={"wl_clients": "", "wl_rcpts": "", "wlr.cf": good})
    p.logf = None
    try:
        rc, out = p.check_config()
        check(rc == 1 and re.search(r"policyd\.conf:\d+: whitelist_clients: .*wlc\.cf", out), out)
    finally:
        p.cleanup(check_exit=False)
    # the same for sender_login's protect_domains
    p = Policyd(rules='rules = ( { name = "sl"; check = "sender_login";\n'
                      '  protect_domains = [ "example.net", "mysql:d.cf" ]; } );',
                files={"d.cf": "dbname = mail\nhosts = db..example\nquery = SELECT 1\n"})
    p.logf = None
    try:
        rc, out = p.check_config()
        check(rc == 1 and re.search(r"policyd\.conf:\d+: protect_domains: .*d\.cf:2: hosts: "
                                    r"\"db\.\.example\" is neither", out), out)
    finally:
        p.cleanup(check_exit=False)


# ------------------------------------- sender_login protect_domains from SQL --

def protect_domains(kind):
    """PostfixAdmin's virtual-domain query as protect_domains: a sender in a
    hosted domain must authenticate; names in the list are asked first."""
    with server(kind) as srv:
        load_rows(srv, ["CREATE TABLE domain (domain varchar(255) PRIMARY KEY, "
                        "active smallint NOT NULL DEFAULT 1)",
                        "INSERT INTO domain (domain) VALUES ('example.net'), ('.hosted.example')",
                        "INSERT INTO domain (domain, active) VALUES ('example.org', 0)"],
                  ["domain"])
        rules = """rules = (
  { name = "sl"; check = "sender_login"; on_error = "%(e)s";
    protect_domains = [ "static.example", "%(k)s:domains.cf" ]; },
  { name = "rest"; action = "OK"; }
);
""" % {"k": kind, "e": ON_ERROR}
        fs = {"domains.cf": table_file(kind, srv, "SELECT domain FROM domain "
                                       "WHERE domain='%s' AND active = '1'")}
        with Redis() as r, Policyd(redis=r, rules=rules, files=fs) as p:
            c = p.client()
            refused = "REJECT 5.7.1 Sender address rejected: authentication required for <%s>"
            for sender, want in (("x@example.net", refused % "x@example.net"),
                                 ("X@Example.NET", refused % "X@Example.NET"),
                                 ("x@static.example", refused % "x@static.example"),
                                 ("x@mx.hosted.example", refused % "x@mx.hosted.example"),
                                 ("x@sub.example.net", "OK"),
                                 ("x@example.org", "OK"),
                                 ("x@other.example", "OK")):
                eq(c.ask(req(sender=sender)), want, sender)
            eq(c.ask(auth("x@example.net", "x@example.net")), "OK", "authenticated: owned")
            srv.stop()
            eq(c.ask(req(sender="y@fresh.test")), ON_ERROR, "database down: on_error")
            eq(c.ask(req(sender="y@static.example")), refused % "y@static.example",
               "a name in the list still protects")


@expects_on_error
def test_pgsql_protect_domains():
    protect_domains("pgsql")


@expects_on_error
def test_mysql_protect_domains():
    protect_domains("mysql")


# ------------------------------------ Postfix's expansions, on the server --

EXP_ROWS = [
    "CREATE TABLE alias_domain (alias_domain varchar(255) PRIMARY KEY, "
    "target_domain varchar(255) NOT NULL)",
    "INSERT INTO alias_domain VALUES ('alias.example', 'example.net')",
    "CREATE TABLE regdom (name varchar(255) PRIMARY KEY, action varchar(255) NOT NULL)",
    "INSERT INTO regdom VALUES ('example.com', 'REJECT 5.7.1 registered domain')",
]


def exp_rules(kind):
    return """rules = (
  { name = "aliasdomain"; check = "sender_login"; map = "%(k)s:aliasdomain.cf";
    on_error = "%(e)s"; builtin = false; match = { authenticated = true; }; },
  { name = "regdom"; check = "access"; key = "recipient"; map = "%(k)s:regdom.cf";
    on_error = "%(e)s"; match = { recipient = [ "x@mail.example.com", "x@localhost" ]; }; },
  { name = "fmt"; check = "access"; key = "recipient"; map = "%(k)s:fmt.cf";
    on_error = "%(e)s"; match = { recipient = [ "moved@example.net" ]; }; },
  { name = "limit"; check = "access"; key = "sender"; map = "%(k)s:limit.cf";
    on_error = "%(e)s"; match = { recipient = [ "limit@example.com" ]; }; },
  { name = "rest"; action = "DUNNO"; }
);
""" % {"k": kind, "e": ON_ERROR}


def expansions(kind):
    """PostfixAdmin's alias-domain query (%u, %d, a join, domain =), the
    domain's labels (%2.%1), result_format with the value and the key,
    expansion_limit: each against the real server."""
    with server(kind) as srv:
        load_schema(srv)
        load_rows(srv, EXP_ROWS, ["alias_domain", "regdom"])
        fs = {
            "aliasdomain.cf": table_file(
                kind, srv, "SELECT goto FROM alias, alias_domain WHERE "
                "alias_domain.alias_domain = '%d' AND "
                "alias.address = CONCAT('%u', '@', alias_domain.target_domain) AND "
                "alias.active = 1", "domain = alias.example\n"),
            "regdom.cf": table_file(kind, srv, "SELECT action FROM regdom WHERE name='%2.%1'"),
            "fmt.cf": table_file(kind, srv, RELOC_QUERY,
                                 "result_format = REJECT 5.7.1 try %s (%U)\n"),
            "limit.cf": table_file(kind, srv, "SELECT 'OK' FROM alias WHERE domain='%d'",
                                   "expansion_limit = 1\n"),
        }
        with Redis() as r, Policyd(redis=r, rules=exp_rules(kind), files=fs) as p:
            c = p.client()
            eq(c.ask(auth("alice@example.net", "sales@alias.example")), "DUNNO",
               "%u and %d through the alias domain")
            check(c.ask(auth("mallory@example.net", "sales@alias.example")).startswith(
                NOT_OWNED), "not an owner through the alias domain")
            check(c.ask(auth("alice@example.net", "sales@example.net")).startswith(NOT_OWNED),
                  "domain = alias.example: other domains are not looked up")
            eq(c.ask(req(recipient="x@mail.example.com")), "REJECT 5.7.1 registered domain",
               "%2.%1: the registered domain")
            eq(c.ask(req(recipient="x@localhost")), "DUNNO",
               "a one-label domain has no %2: not looked up")
            eq(c.ask(req(recipient="moved@example.net")),
               "REJECT 5.7.1 try new@example.org (moved)", "result_format: %s and %U")
            eq(c.ask(req(sender="x@example.org", recipient="limit@example.com")), "OK",
               "one row: within expansion_limit")
            eq(c.ask(req(sender="x@example.net", recipient="limit@example.com")), ON_ERROR,
               "five rows: past expansion_limit, on_error")
            p.wait_log(r"limit\.cf: query failed: result larger than expansion_limit", 5)


@expects_on_error
def test_pgsql_expansions_on_the_server():
    expansions("pgsql")


@expects_on_error
def test_mysql_expansions_on_the_server():
    expansions("mysql")


# ------------------------------------------------ hosts given by name --

def dns_rules(kind):
    return """rules = (
  { name = "sl"; check = "sender_login"; map = "%(k)s:sender.cf"; on_error = "%(e)s";
    match = { authenticated = true; }; },
  { name = "slow"; check = "relocated"; map = "%(k)s:slow.cf"; on_error = "%(e)s";
    match = { recipient = [ "moved@example.net" ]; }; },
  { name = "nx"; check = "access"; key = "recipient"; map = "%(k)s:nx.cf"; on_error = "%(e)s";
    match = { recipient = [ "nx@example.net" ]; }; },
  { name = "late"; check = "relocated"; map = "%(k)s:late.cf"; on_error = "%(e)s";
    match = { recipient = [ "late@example.net" ]; }; },
  { name = "rest"; action = "OK"; }
);
""" % {"k": kind, "e": ON_ERROR}


def host_names(kind):
    from dnsharness import DNS, have_dnslib
    if not have_dnslib():
        raise Skip("python3-dnslib missing (make deps-test installs it)")
    zone = {"records": [["db.sql.test", "A", "127.0.0.2"], ["db.sql.test", "A", "127.0.0.1"],
                        ["slow.sql.test", "A", "127.0.0.1"], ["late.sql.test", "A", "127.0.0.1"]],
            "delay": {"slow.sql.test": 3.0, "late.sql.test": 3.0}}
    with server(kind) as srv, DNS(zone) as d:
        load_schema(srv)

        def by_name(text, name):
            return re.sub(r"^hosts = .*$", "hosts = %s%s:%d" % (
                "inet:" if kind == "pgsql" else "", name, srv.port), text, flags=re.M)

        fs = {"sender.cf": by_name(table_file(kind, srv, SENDER_QUERY), "db.sql.test"),
              "slow.cf": by_name(table_file(kind, srv, RELOC_QUERY, timeout_ms=8000),
                                 "slow.sql.test"),
              "late.cf": by_name(table_file(kind, srv, RELOC_QUERY), "late.sql.test"),
              "nx.cf": by_name(table_file(kind, srv, "SELECT 'OK' WHERE '%s' = ''"),
                               "nx.sql.test")}
        dns = ('dns = { nameservers = [ "%s" ]; timeout_ms = 6000; attempts = 1; };'
               % d.address)
        with Redis() as r, Policyd(redis=r, rules=dns_rules(kind), files=fs, extra=dns) as p:
            c = p.client()
            # two A records: 127.0.0.2 refuses, 127.0.0.1 is the server
            eq(c.ask(auth("alice@example.net", "sales@example.net")), "OK",
               "connected to the name's second address")
            check(any(q[0] == "db.sql.test" and q[1] == "A" for q in d.queries()),
                  "the name was asked of policyd's DNS server: %s" % d.queries())
            check("database unreachable" not in p.log(), "the refused address is no outage")

            # a name that takes 3 s to resolve stalls nothing else
            slow = {}

            def ask_slow():
                with p.client(timeout=20) as cs:
                    slow["answer"] = cs.ask(req(recipient="moved@example.net"))

            th = threading.Thread(target=ask_slow)
            th.start()
            wait_for(lambda: any(q[0] == "slow.sql.test" for q in d.queries()), 5, 0.02,
                     "the slow name to be asked")
            for i in range(10):
                eq(c.ask(req(recipient="r%d@example.net" % i)), "OK", "other requests")
            check("answer" not in slow, "answered while the slow name was still out "
                  "(the event loop did not wait for it)")
            th.join(20)
            eq(slow.get("answer"), "551 5.1.6 User has moved; please try <new@example.org>",
               "the slow name's lookup answers once resolved")

            # a name that does not exist: on_error, the reason logged once
            for _ in range(3):
                eq(c.ask(req(recipient="nx@example.net")), ON_ERROR, "NXDOMAIN: on_error")
            p.wait_log(r"nx\.cf: database unreachable: cannot resolve nx\.sql\.test: NXDOMAIN",
                       5)
            eq(len(re.findall(r"nx\.cf: database unreachable", p.log())), 1, "logged once")

            # resolving for longer than the table's deadline (1 s): on_error
            eq(c.ask(req(recipient="late@example.net")), ON_ERROR, "past the deadline")
            p.wait_log(r"late\.cf: database unreachable: cannot resolve late\.sql\.test: "
                       r"timed out", 5)


@expects_on_error
def test_pgsql_host_names_resolved_without_blocking():
    host_names("pgsql")


@expects_on_error
def test_mysql_host_names_resolved_without_blocking():
    host_names("mysql")


# ---------------------------------------------------- policyctl map query --

def ctl(*args):
    d = os.environ.get("POLICYD_BIN")
    b = os.path.join(os.path.dirname(d), "policyctl") if d else None
    if not b or not os.path.exists(b):
        b = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build",
                         "policyctl")
    cp = subprocess.run([b] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                        timeout=60)
    out, err = cp.stdout.decode(), cp.stderr.decode()
    check("Sanitizer" not in err and "runtime error" not in err, "sanitizer: %s" % err)
    return cp.returncode, out, err


def map_query(kind):
    with server(kind) as srv:
        load_schema(srv)
        p = Policyd(rules=rules(kind), files=files(kind, srv))
        p.logf = None
        try:
            rc, out, err = ctl("-c", p.conf, "map", "query", kind + ":sender.cf",
                               "Sales@example.net", "sales@example.net", "nobody@example.net",
                               "x' OR '1'='1")
            eq(rc, 0, "exit status (%s)" % err)
            lines = out.splitlines()
            check(lines[0].startswith("map %s:" % kind) and lines[0].endswith("sender.cf"),
                  "names the table: %r" % lines[0])
            check(re.match(r'sales@example\.net: found "alice@example\.net,carol@example\.net" '
                           r'\(database, \d+ ms\)$', lines[1]), "first: from the database: %r"
                  % lines[1])
            eq(lines[2], 'sales@example.net: found "alice@example.net,carol@example.net" (cache)',
               "second: from the cache")
            check(re.match(r"nobody@example\.net: not found \(database", lines[3]), lines[3])
            check(lines[4].startswith("x' or '1'='1: not found"), lines[4])
            with open(os.path.join(p.dir, "plain.map"), "w") as f:
                f.write("a@example.net  b@example.net\n")
            rc, out, err = ctl("-c", p.conf, "map", "query", "plain.map", "a@example.net")
            eq((rc, out.splitlines()[1]), (0, 'a@example.net: found "b@example.net" (file)'),
               "a file map")
            srv.stop()
            rc, out, err = ctl("-c", p.conf, "map", "query", kind + ":sender.cf",
                               "sales@example.net")
            eq(rc, 1, "database down: exit 1")
            check("error: the lookup failed" in out and "database unreachable" in err,
                  out + err)
            rc, out, err = ctl("-c", p.conf, "map", "query")
            eq(rc, 2, "usage")
        finally:
            p.cleanup(check_exit=False)


def test_pgsql_policyctl_map_query():
    map_query("pgsql")


def test_mysql_policyctl_map_query():
    map_query("mysql")


# --------------------------------------------- configuration mistakes --

def test_table_file_errors_at_policyd_t():
    import subprocess
    bad = {
        "hosts = inet:127.0.0.1:5432\ndbname = mail\nquery = SELECT 1\nbogus = 1\n":
            r"sender\.cf:4: unknown setting \"bogus\"",
        "dbname = mail\nquery = SELECT goto FROM alias WHERE address = '%x'\n":
            r"sender\.cf:2: query: unknown expansion",
        "dbname = mail\nquery = SELECT goto FROM alias WHERE address = '%s' -- x\n":
            r"sender\.cf:2: query: '-' outside a quoted string",
        "query = SELECT 1\n": r"sender\.cf: missing dbname",
    }
    for text, want in bad.items():
        p = Policyd(rules=rules("pgsql"), files={"sender.cf": text, "relocated.cf": text})
        p.logf = None
        try:
            cp = subprocess.run([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=30)
            out = cp.stdout.decode()
            check(cp.returncode != 0, "policyd -t refuses %r" % text)
            check(re.search(r"policyd\.conf:\d+: map: .*" + want, out) or
                  re.search(want, out), "%r: want /%s/ in %s" % (text, want, out))
        finally:
            p.cleanup(check_exit=False)
    p = Policyd(rules=rules("pgsql").replace('map = "pgsql:sender.cf"',
                                             'map = [ "pgsql:sender.cf", "x.map" ]'),
                files={"sender.cf": "dbname=d\nquery=SELECT 1\n", "x.map": "",
                       "relocated.cf": "dbname=d\nquery=SELECT 1\n"})
    p.logf = None
    try:
        cp = subprocess.run([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=30)
        check(cp.returncode != 0 and b"must be the only map" in cp.stdout, cp.stdout.decode())
    finally:
        p.cleanup(check_exit=False)
