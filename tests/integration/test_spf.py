"""spf check against a real DNS server on loopback (tests/lib/dnsserver.py):
RFC 7208 Appendix A, results compared with python3-spf on many records,
replies, the spf condition, TCP for truncated answers, limits, the DNS
budget, the cache and a slow name that must not delay other requests."""
import os, re, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Redis, Policyd, req, check, eq, expects_on_error, wait_for
from dnsharness import DNS, have_dnslib, have_pyspf, pyspf

RESULT_RE = re.compile(r"^PREPEND Received-SPF: (\w+) \(")


def need_dns():
    if not have_dnslib():
        raise Skip("python3-dnslib missing (make deps-test installs it)")


def spf_rules(opts='fail_action = "header";', extra_rules=""):
    return ('rules = ( { name = "spf"; check = "spf"; %s }%s );' % (opts, extra_rules))


def dns_block(d, timeout_ms=1000, budget_ms=5000, extra=""):
    return ('dns = { nameservers = [ "%s" ]; timeout_ms = %d; attempts = 1; budget_ms = %d; %s };'
            % (d.address, timeout_ms, budget_ms, extra))


def result_of(answer):
    m = RESULT_RE.match(answer)
    check(m, "expected a Received-SPF header, got %r" % answer)
    return m.group(1)


# RFC 7208 Appendix A: the zone and the example records of A.1
RFC_ZONE = [
    ["example.com", "MX", "10 mail-a.example.com"],
    ["example.com", "MX", "20 mail-b.example.com"],
    ["example.com", "A", "192.0.2.10"],
    ["example.com", "A", "192.0.2.11"],
    ["amy.example.com", "A", "192.0.2.65"],
    ["bob.example.com", "A", "192.0.2.66"],
    ["mail-a.example.com", "A", "192.0.2.129"],
    ["mail-b.example.com", "A", "192.0.2.130"],
    ["www.example.com", "CNAME", "example.com"],
    ["example.org", "MX", "10 mail-c.example.org"],
    ["mail-c.example.org", "A", "192.0.2.140"],
    ["10.2.0.192.in-addr.arpa", "PTR", "example.com"],
    ["11.2.0.192.in-addr.arpa", "PTR", "example.com"],
    ["65.2.0.192.in-addr.arpa", "PTR", "amy.example.com"],
    ["66.2.0.192.in-addr.arpa", "PTR", "bob.example.com"],
    ["129.2.0.192.in-addr.arpa", "PTR", "mail-a.example.com"],
    ["130.2.0.192.in-addr.arpa", "PTR", "mail-b.example.com"],
    ["140.2.0.192.in-addr.arpa", "PTR", "mail-c.example.org"],
    ["10.0.0.10.in-addr.arpa", "PTR", "bob.example.com"],
]
RFC_IPS = ["192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.66", "192.0.2.128",
           "192.0.2.129", "192.0.2.130", "192.0.2.131", "192.0.2.140", "192.0.2.143",
           "192.0.2.144", "10.0.0.10", "198.51.100.1"]
# record -> the addresses that pass (RFC 7208 A.1); every other one fails
RFC_A1 = [
    ("v=spf1 +all", set(RFC_IPS)),
    ("v=spf1 a -all", {"192.0.2.10", "192.0.2.11"}),
    ("v=spf1 a:example.org -all", set()),
    ("v=spf1 mx -all", {"192.0.2.129", "192.0.2.130"}),
    ("v=spf1 mx:example.org -all", {"192.0.2.140"}),
    ("v=spf1 mx mx:example.org -all", {"192.0.2.129", "192.0.2.130", "192.0.2.140"}),
    ("v=spf1 mx/30 mx:example.org/30 -all", {"192.0.2.128", "192.0.2.129", "192.0.2.130",
                                             "192.0.2.131", "192.0.2.140", "192.0.2.143"}),
    ("v=spf1 ptr -all", {"192.0.2.10", "192.0.2.11", "192.0.2.65", "192.0.2.66",
                         "192.0.2.129", "192.0.2.130"}),
    ("v=spf1 ip4:192.0.2.128/28 -all", {"192.0.2.128", "192.0.2.129", "192.0.2.130",
                                        "192.0.2.131", "192.0.2.140", "192.0.2.143"}),
]


def test_rfc7208_appendix_a1():
    need_dns()
    with DNS({"records": RFC_ZONE}) as d, Redis() as r, \
            Policyd(redis=r, rules=spf_rules('fail_action = "header"; probe = false;'),
                    extra=dns_block(d, extra="cache_size = 0;")) as p, p.client() as c:
        for rec, passing in RFC_A1:
            # example.com carries the record under test (no cache: each one is read)
            d.update({"records": RFC_ZONE + [["example.com", "TXT", rec]]})
            for ip in RFC_IPS:
                got = result_of(c.ask(req(client_address=ip, sender="user@example.com",
                                          client_name="unknown")))
                want = "pass" if ip in passing else "fail"
                eq(got, want, "%s for %s" % (rec, ip))


# record sets compared with python3-spf: (records, cases [(ip, sender, helo)])
def oracle_zone():
    recs = [
        ["pass.test", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"],
        ["case.test", "TXT", "V=SPF1 IP4:192.0.2.0/24 -ALL"],
        ["soft.test", "TXT", "v=spf1 ~all"],
        ["neutral.test", "TXT", "v=spf1 ?all"],
        ["empty.test", "TXT", "v=spf1"],
        ["plus.test", "TXT", "v=spf1 +all"],
        ["other.test", "TXT", "google-site-verification=abc"],
        ["two.test", "TXT", "v=spf1 -all"],
        ["two.test", "TXT", "v=spf1 +all"],
        ["a.test", "TXT", "v=spf1 a -all"],
        ["a.test", "A", "192.0.2.1"],
        ["a.test", "AAAA", "2001:db8::1"],
        ["acidr.test", "TXT", "v=spf1 a:a.test/24 a:a.test//48 -all"],
        ["mx.test", "TXT", "v=spf1 mx -all"],
        ["mx.test", "MX", "10 mx1.mx.test"],
        ["mx.test", "MX", "20 mx2.mx.test"],
        ["mx1.mx.test", "A", "198.51.100.1"],
        ["mx2.mx.test", "A", "198.51.100.2"],
        ["mxcidr.test", "TXT", "v=spf1 mx:mx.test/30 ~all"],
        ["many-mx.test", "TXT", "v=spf1 mx -all"],
        ["ptr.test", "TXT", "v=spf1 ptr -all"],
        ["55.2.0.192.in-addr.arpa", "PTR", "host.ptr.test"],
        ["host.ptr.test", "A", "192.0.2.55"],
        ["56.2.0.192.in-addr.arpa", "PTR", "liar.ptr.test"],
        ["liar.ptr.test", "A", "192.0.2.99"],
        ["ip6.test", "TXT", "v=spf1 ip6:2001:db8::/32 -all"],
        ["inc.test", "TXT", "v=spf1 include:inner.test -all"],
        ["inner.test", "TXT", "v=spf1 ip4:203.0.113.0/24 ~all"],
        ["incnone.test", "TXT", "v=spf1 include:nothing.test -all"],
        ["incperm.test", "TXT", "v=spf1 include:bad.test -all"],
        ["bad.test", "TXT", "v=spf1 ip4:1.2.3.4/33"],
        ["red.test", "TXT", "v=spf1 redirect=inner.test"],
        ["rednone.test", "TXT", "v=spf1 redirect=nothing.test"],
        ["redall.test", "TXT", "v=spf1 ?all redirect=inner.test"],
        ["exists.test", "TXT", "v=spf1 exists:%{i}.ex.exists.test -all"],
        ["192.0.2.77.ex.exists.test", "A", "127.0.0.2"],
        ["macro.test", "TXT", "v=spf1 exists:%{l1r-}.%{d2}.m.macro.test exists:%{ir}.%{v}._spf.%{d} -all"],
        ["john.macro.test.m.macro.test", "A", "127.0.0.2"],
        ["9.2.0.192.in-addr._spf.macro.test", "A", "127.0.0.2"],
        ["limit.test", "TXT", "v=spf1 " + " ".join(["a:a.test"] * 11) + " -all"],
        ["tenok.test", "TXT", "v=spf1 " + " ".join(["a:a.test"] * 10) + " -all"],
        ["void.test", "TXT", "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test -all"],
        ["void2.test", "TXT", "v=spf1 a:n1.void.test a:n2.void.test -all"],
        ["syntax.test", "TXT", "v=spf1 foo -all"],
        ["modif.test", "TXT", "v=spf1 foo=bar -all"],
        ["alias.test", "TXT", "v=spf1 a:www.alias.test -all"],
        ["www.alias.test", "CNAME", "a.test"],
        ["long.test", "TXT", "v=spf1 " + " ".join("ip4:10.%d.0.0/16" % i for i in range(40)) + " -all"],
        ["exp.test", "TXT", "v=spf1 -all exp=why.exp.test"],
        ["why.exp.test", "TXT", "%{i} is not one of %{d}'s designated mail servers"],
        ["helo.test", "TXT", "v=spf1 ip4:192.0.2.0/25 -all"],
        ["deep.test", "TXT", "v=spf1 include:d1.test -all"],
    ]
    for i in range(1, 12):
        recs.append(["d%d.test" % i, "TXT", "v=spf1 include:d%d.test ~all" % (i + 1)])
    recs.append(["d12.test", "TXT", "v=spf1 +all"])
    for i in range(11):
        recs.append(["many-mx.test", "MX", "%d m%d.many-mx.test" % (i, i)])
        recs.append(["m%d.many-mx.test" % i, "A", "198.51.100.%d" % (100 + i)])
    return {"records": recs}


ORACLE_CASES = [
    ("192.0.2.1", "u@pass.test"), ("198.51.100.9", "u@pass.test"),
    ("192.0.2.1", "u@case.test"), ("192.0.2.1", "u@soft.test"),
    ("192.0.2.1", "u@neutral.test"), ("192.0.2.1", "u@empty.test"),
    ("203.0.113.9", "u@plus.test"), ("192.0.2.1", "u@other.test"),
    ("192.0.2.1", "u@two.test"), ("192.0.2.1", "u@nxdomain.test"),
    ("192.0.2.1", "u@a.test"), ("192.0.2.2", "u@a.test"),
    ("2001:db8::1", "u@a.test"), ("2001:db8::2", "u@a.test"),
    ("192.0.2.200", "u@acidr.test"), ("192.0.3.1", "u@acidr.test"),
    ("2001:db8:0:ffff::1", "u@acidr.test"), ("2001:db9::1", "u@acidr.test"),
    ("198.51.100.2", "u@mx.test"), ("198.51.100.3", "u@mx.test"),
    ("198.51.100.3", "u@mxcidr.test"), ("198.51.100.5", "u@mxcidr.test"),
    ("198.51.100.105", "u@many-mx.test"),
    ("192.0.2.55", "u@ptr.test"), ("192.0.2.56", "u@ptr.test"), ("192.0.2.57", "u@ptr.test"),
    ("2001:db8:1::1", "u@ip6.test"), ("2001:dba::1", "u@ip6.test"),
    ("192.0.2.1", "u@ip6.test"),
    ("203.0.113.5", "u@inc.test"), ("192.0.2.5", "u@inc.test"),
    ("192.0.2.5", "u@incnone.test"), ("192.0.2.5", "u@incperm.test"),
    ("203.0.113.5", "u@red.test"), ("192.0.2.5", "u@red.test"),
    ("192.0.2.5", "u@rednone.test"), ("203.0.113.5", "u@redall.test"),
    ("192.0.2.77", "u@exists.test"), ("192.0.2.78", "u@exists.test"),
    ("192.0.2.8", "john-smith@macro.test"), ("192.0.2.9", "x@macro.test"),
    ("192.0.2.10", "smith-john@macro.test"),
    ("192.0.2.9", "u@limit.test"), ("192.0.2.9", "u@tenok.test"),
    ("192.0.2.9", "u@void.test"), ("192.0.2.9", "u@void2.test"),
    ("192.0.2.9", "u@syntax.test"), ("192.0.2.9", "u@modif.test"),
    ("192.0.2.1", "u@alias.test"), ("192.0.2.2", "u@alias.test"),
    ("10.39.1.1", "u@long.test"), ("10.40.1.1", "u@long.test"),
    ("192.0.2.1", "u@exp.test"), ("192.0.2.9", "u@deep.test"),
    ("192.0.2.9", "u@bad..name"), ("192.0.2.9", "u@nodots"),
]


def test_results_match_python3_spf():
    need_dns()
    if not have_pyspf():
        raise Skip("python3-spf missing")
    cases = [(ip, s, "mail.example.net") for ip, s in ORACLE_CASES]
    # the null sender: HELO identity
    cases += [("192.0.2.3", "", "helo.test"), ("192.0.2.200", "", "helo.test")]
    with DNS(oracle_zone()) as d:
        want = pyspf(d.port, cases)
        with Redis() as r, Policyd(redis=r, rules=spf_rules(), extra=dns_block(d)) as p, \
                p.client() as c:
            diffs = []
            for (ip, sender, helo), w in zip(cases, want):
                got = result_of(c.ask(req(client_address=ip, sender=sender, helo_name=helo,
                                          client_name="unknown")))
                if got != w:
                    diffs.append("%s from %s: policyd %s, python3-spf %s" % (sender, ip, got, w))
            check(not diffs, "%d of %d differ:\n  %s" % (len(diffs), len(cases), "\n  ".join(diffs)))
            # the truncated record came over TCP
            check(("long.test", "TXT", "tcp") in d.queries(), "long.test asked over TCP")


def test_fail_reply_with_exp_and_header_text():
    need_dns()
    with DNS(oracle_zone()) as d, Redis() as r, \
            Policyd(redis=r, rules=spf_rules(""), extra=dns_block(d)) as p, p.client() as c:
        eq(c.ask(req(client_address="192.0.2.1", sender="u@exp.test")),
           "550 5.7.23 192.0.2.1 is not one of exp.test's designated mail servers")
        eq(c.ask(req(client_address="198.51.100.9", sender="u@pass.test")),
           "550 5.7.23 pass.test does not allow 198.51.100.9 to send mail for it (SPF fail)")
        eq(c.ask(req(client_address="192.0.2.1", sender="alice@pass.test", helo_name="mx.pass.test")),
           "PREPEND Received-SPF: pass (mx.test: domain of alice@pass.test designates 192.0.2.1 "
           "as permitted sender) client-ip=192.0.2.1; envelope-from=alice@pass.test; "
           "helo=mx.pass.test; receiver=mx.test; identity=mailfrom")
        eq(c.ask(req(client_address="192.0.2.3", sender="", helo_name="helo.test")),
           "PREPEND Received-SPF: pass (mx.test: HELO helo.test designates 192.0.2.3 as "
           "permitted sender) client-ip=192.0.2.3; envelope-from=\"\"; helo=helo.test; "
           "receiver=mx.test; identity=helo")
        a = c.ask(req(client_address="192.0.2.9", sender="u@soft.test"))
        check(a.startswith("PREPEND Received-SPF: softfail (mx.test: transitioning domain of "
                           "u@soft.test does not designate 192.0.2.9"), a)
        # hostile sender text stays inside its quoted string
        a = c.ask(req(client_address="192.0.2.1", sender='x"; identity=helo (@pass.test'))
        check('envelope-from="x?; identity=helo (@pass.test"; ' in a and a.endswith("identity=mailfrom"), a)


def test_per_result_actions_skip_and_condition():
    need_dns()
    rules = ('rules = ( { name = "spf"; check = "spf"; softfail_action = "DEFER_IF_PERMIT 4.7.24 '
             'SPF %r for %s"; none_action = "DUNNO"; header = false; },'
             ' { name = "after-pass"; match = { spf = [ "pass" ]; }; action = "OK"; },'
             ' { name = "after-none"; match = { spf = "none"; }; action = "REJECT no spf"; } );')
    with DNS(oracle_zone()) as d, Redis() as r, \
            Policyd(redis=r, rules=rules, extra=dns_block(d)) as p, p.client() as c:
        eq(c.ask(req(client_address="192.0.2.9", sender="u@soft.test")),
           "DEFER_IF_PERMIT 4.7.24 SPF softfail for u@soft.test")
        eq(c.ask(req(client_address="192.0.2.1", sender="u@pass.test")), "OK",
           "the spf condition sees pass (header = false: no PREPEND)")
        eq(c.ask(req(client_address="192.0.2.1", sender="u@nxdomain.test")), "REJECT no spf")
        # authenticated clients and loopback are not checked, so no spf result
        eq(c.ask(req(client_address="198.51.100.9", sender="u@pass.test",
                     sasl_username="alice", sasl_method="PLAIN")), "DUNNO")
        eq(c.ask(req(client_address="127.0.0.1", sender="u@pass.test")), "DUNNO")
        p.wait_log(r"authenticated client: SPF not checked")


def test_spf_condition_errors_at_load():
    p = Policyd(rules='rules = ( { name = "x"; match = { spf = [ "pas" ]; }; action = "OK"; } );',
                expect_start=False)
    try:
        import subprocess
        out = subprocess.run([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT).stdout.decode()
        check(re.search(r"policyd\.conf:\d+: spf: unknown result \"pas\"", out), out)
        p.write_config('rules = ( { name = "s"; check = "spf"; fail_action = "FROB"; } );\n'
                       'dns = { nameservers = [ "127.0.0.1:99999" ]; timeout_ms = "x"; };')
        out = subprocess.run([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT).stdout.decode()
        check(re.search(r"policyd\.conf:\d+: dns\.nameservers: entry 1", out), out)
        check(re.search(r"policyd\.conf:\d+: dns\.timeout_ms: expected an integer", out), out)
        check(re.search(r"policyd\.conf:\d+: fail_action: invalid action", out), out)
    finally:
        import shutil
        shutil.rmtree(p.dir, ignore_errors=True)


@expects_on_error
def test_slow_name_does_not_delay_others_and_budget():
    """A name that answers after 3 s: 20 requests for another name are all
    answered while it is still out (no absolute speed asked of a loaded
    machine), and its answer still counts. A name slower than the request's
    DNS budget (3 s, with a timeout of 8 s per attempt) is given up at the
    budget: on_error, logged."""
    need_dns()
    zone = oracle_zone()
    zone["records"].append(["slow.test", "TXT", "v=spf1 +all"])
    zone["records"].append(["veryslow.test", "TXT", "v=spf1 +all"])
    zone["delay"] = {"slow.test": 3.0, "veryslow.test": 12.0}
    with DNS(zone) as d, Redis() as r:
        with Policyd(redis=r, rules=spf_rules('fail_action = "header"; probe = false;'),
                     extra=dns_block(d, timeout_ms=10000, budget_ms=10000)) as p:
            results = {}

            def slow():
                with p.client(timeout=20) as c:
                    t = time.monotonic()
                    results["slow"] = (c.ask(req(client_address="192.0.2.1",
                                                 sender="u@slow.test")),
                                       time.monotonic() - t)

            th = threading.Thread(target=slow)
            th.start()
            wait_for(lambda: ("slow.test", "TXT") in [q[:2] for q in d.queries()], 10,
                     what="the slow question out")
            with p.client() as c:
                for i in range(20):
                    eq(result_of(c.ask(req(client_address="192.0.2.1", sender="u@pass.test",
                                           recipient="r%d@example.net" % i))), "pass")
                check("slow" not in results,
                      "20 other requests were answered while the slow lookup was out")
            th.join(20)
            a, took = results["slow"]
            eq(result_of(a), "pass", "the slow answer still counts")
            check(took >= 2.9, "slow request took %.2f s" % took)
        # past the request's DNS budget: on_error (DUNNO by default)
        with Policyd(redis=r, rules=spf_rules('fail_action = "header"; probe = false;'),
                     extra=dns_block(d, timeout_ms=8000, budget_ms=3000)) as p:
            with p.client(timeout=20) as c:
                t = time.monotonic()
                eq(c.ask(req(client_address="192.0.2.1", sender="u@veryslow.test")), "DUNNO")
                took = time.monotonic() - t
            check(2.9 <= took < 7.5, "budget of 3 s (timeout 8 s): answered after %.2f s" % took)
            p.wait_log(r"sender=<u@veryslow\.test>.*detail=\"(spf: )?spf temperror \(mailfrom "
                       r"veryslow\.test\): DNS TXT veryslow\.test: DNS budget exhausted\"")


def test_cache_and_metrics():
    need_dns()
    import urllib.request
    from harness import free_port
    mport = free_port()
    with DNS(oracle_zone()) as d, Redis() as r, \
            Policyd(redis=r, rules=spf_rules(), extra=dns_block(d) +
                    '\nmetrics = { address = "127.0.0.1:%d"; };' % mport) as p, p.client() as c:
        d.clear_log()
        for i in range(5):
            eq(result_of(c.ask(req(client_address="203.0.113.5", sender="u@inc.test"))), "pass")
        asked = [q for q in d.queries() if q[0] in ("inc.test", "inner.test")]
        eq(len(asked), 2, "each TXT asked once, then cached: %r" % asked)
        # negative answers are cached too
        for i in range(3):
            eq(result_of(c.ask(req(client_address="192.0.2.1", sender="u@nxdomain.test"))), "none")
        eq(len([q for q in d.queries() if q[0] == "nxdomain.test"]), 1, "NXDOMAIN cached")
        text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5).read().decode()
        hits = int(re.search(r"^policyd_dns_cache_hits_total (\d+)$", text, re.M).group(1))
        queries = int(re.search(r"^policyd_dns_queries_total (\d+)$", text, re.M).group(1))
        check(hits >= 10 and queries > hits, "queries %d, hits %d" % (queries, hits))
        check(re.search(r"^policyd_dns_timeouts_total 0$", text, re.M), text)


def test_timeout_servfail_temperror_and_second_server():
    need_dns()
    zone = oracle_zone()
    zone["drop"] = ["dropped.test"]
    zone["servfail"] = ["broken.test"]
    with DNS(zone) as d, Redis() as r:
        # a dead first server (nothing listens there) and the real one
        from harness import free_port
        dead = "127.0.0.1:%d" % free_port()
        extra = ('dns = { nameservers = [ "%s", "%s" ]; timeout_ms = 300; attempts = 2; };'
                 % (dead, d.address))
        with Policyd(redis=r, rules=spf_rules(), extra=extra) as p, p.client() as c:
            eq(result_of(c.ask(req(client_address="192.0.2.1", sender="u@pass.test"))), "pass",
               "the second server answers")
            eq(result_of(c.ask(req(client_address="192.0.2.1", sender="u@dropped.test"))),
               "temperror")
            eq(result_of(c.ask(req(client_address="192.0.2.1", sender="u@broken.test"))),
               "temperror")


def test_reload_switches_nameservers_and_forgets_the_cache():
    need_dns()
    z1 = {"records": [["r.test", "TXT", "v=spf1 -all"]]}
    z2 = {"records": [["r.test", "TXT", "v=spf1 +all"]]}
    with DNS(z1) as d1, DNS(z2) as d2, Redis() as r, \
            Policyd(redis=r, rules=spf_rules(), extra=dns_block(d1)) as p, p.client() as c:
        eq(result_of(c.ask(req(client_address="192.0.2.1", sender="u@r.test"))), "fail")
        eq(result_of(c.ask(req(client_address="192.0.2.1", sender="u@r.test"))), "fail",
           "cached")
        p.reload(spf_rules(), extra=dns_block(d2))
        eq(result_of(c.ask(req(client_address="192.0.2.1", sender="u@r.test"))), "pass",
           "the new server answers after SIGHUP")
        p.reload(spf_rules(), extra=dns_block(d2, extra="bogus = 1;"))
        check(re.search(r"unknown setting \"dns\.bogus\"", p.log()), p.log()[-500:])
        eq(result_of(c.ask(req(client_address="192.0.2.1", sender="u@r.test"))), "pass",
           "a bad reload keeps the running configuration")
