"""dnsbl check against a real DNS server on loopback: weights in postscreen's
syntax, threshold and action, the dnsbl_score condition, IPv6 reversal,
parallel queries, lists that do not answer."""
import os, re, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Redis, Policyd, req, check, eq, expects_on_error
from dnsharness import DNS, have_dnslib

V6_REV = ".".join(reversed("20010db8000000000000000000000001"))

ZONE = {"records": [
    ["10.2.0.192.zen.test", "A", "127.0.0.2"],
    ["10.2.0.192.wl.test", "A", "127.0.10.2"],
    ["11.2.0.192.zen.test", "A", "127.0.0.12"],      # outside [2..11]
    ["11.2.0.192.zen.test", "A", "127.255.255.254"],
    ["20.2.0.192.bl2.test", "A", "127.0.0.2"],
    ["30.2.0.192.zen.test", "A", "127.0.0.4"],
    ["30.2.0.192.zen.test", "A", "127.0.0.10"],      # two matches: weight once
    [V6_REV + ".zen.test", "A", "127.0.0.3"],
]}

SITES = '[ "zen.test=127.0.0.[2..11]*3", "bl2.test*2", "wl.test=127.0.[0..255].[1..3]*-2" ]'


def rules(extra_rule="", opts=""):
    return ('rules = ( { name = "dnsbl"; check = "dnsbl"; sites = %s; threshold = 3; %s }%s );'
            % (SITES, opts, extra_rule))


def dns_block(d, extra=""):
    return 'dns = { nameservers = [ "%s" ]; timeout_ms = 1500; attempts = 1; %s };' % (d.address, extra)


def need_dns():
    if not have_dnslib():
        raise Skip("python3-dnslib missing")


def test_scores_threshold_action_and_condition():
    need_dns()
    cond = (', { name = "suspicious"; match = { dnsbl_score = ">= 1"; }; '
            'action = "DEFER_IF_PERMIT 4.7.1 suspicious client"; }')
    with DNS(ZONE) as d, Redis() as r, \
            Policyd(redis=r, rules=rules(cond), extra=dns_block(d)) as p, p.client() as c:
        eq(c.ask(req(client_address="192.0.2.30")),
           "REJECT 5.7.1 Service unavailable; client [192.0.2.30] blocked using zen.test")
        eq(c.ask(req(client_address="192.0.2.20")), "DEFER_IF_PERMIT 4.7.1 suspicious client",
           "bl2 alone scores 2: below 3, but the condition sees it")
        eq(c.ask(req(client_address="192.0.2.10")), "DEFER_IF_PERMIT 4.7.1 suspicious client",
           "zen 3 + dnswl -2 = 1")
        eq(c.ask(req(client_address="192.0.2.11")), "DUNNO", "answers outside the pattern: 0")
        eq(c.ask(req(client_address="192.0.2.99")), "DUNNO", "listed nowhere")
        eq(c.ask(req(client_address="2001:db8::1")),
           "REJECT 5.7.1 Service unavailable; client [2001:db8::1] blocked using zen.test",
           "IPv6 nibble reversal")
        eq(c.ask(req(client_address="192.0.2.30", sasl_username="u", sasl_method="PLAIN")),
           "DUNNO", "authenticated clients are not looked up")
        p.wait_log(r"detail=\"dnsbl score 3 \(threshold 3\): zen\.test\"")


def test_queries_are_parallel_and_cached():
    """Three lists that each answer after 2 s: asked at once, the request
    takes about 2 s (one after the other would be 6 s; the DNS timeout of
    8 s leaves the server room on a loaded machine)."""
    need_dns()
    zone = dict(ZONE)
    zone["delay"] = {"40.2.0.192.zen.test": 2.0, "40.2.0.192.bl2.test": 2.0,
                     "40.2.0.192.wl.test": 2.0}
    with DNS(zone) as d, Redis() as r, \
            Policyd(redis=r, rules=rules(), extra=dns_block(d).replace(
                "timeout_ms = 1500;", "timeout_ms = 8000; budget_ms = 10000;")) as p, \
            p.client(timeout=20) as c:
        t = time.monotonic()
        eq(c.ask(req(client_address="192.0.2.40")), "DUNNO")
        took = time.monotonic() - t
        check(1.9 <= took < 5.0, "three 2 s lists at once took %.2f s" % took)
        d.clear_log()
        t = time.monotonic()
        eq(c.ask(req(client_address="192.0.2.40")), "DUNNO")
        check(time.monotonic() - t < 1.5, "second time from the cache (asking takes 2 s)")
        eq(d.queries(), [], "no question asked again")


@expects_on_error
def test_list_without_answer_is_on_error():
    need_dns()
    zone = dict(ZONE)
    zone["drop"] = ["50.2.0.192.bl2.test", "60.2.0.192.bl2.test"]
    zone["records"] = ZONE["records"] + [["60.2.0.192.zen.test", "A", "127.0.0.2"]]
    with DNS(zone) as d, Redis() as r, \
            Policyd(redis=r, rules=rules(opts='on_error = "DEFER_IF_PERMIT 4.4.3 DNSBL '
                                         'unavailable";'),
                    extra=dns_block(d)) as p, p.client(timeout=10) as c:
        eq(c.ask(req(client_address="192.0.2.50")), "DEFER_IF_PERMIT 4.4.3 DNSBL unavailable")
        # a listing that already reaches the threshold decides anyway
        eq(c.ask(req(client_address="192.0.2.60")),
           "REJECT 5.7.1 Service unavailable; client [192.0.2.60] blocked using zen.test")


def test_dnsbl_config_errors():
    import subprocess, shutil
    cases = [
        ('sites = [ "zen.test=127.0.0.[2..300]" ];', r"sites: entry 1: pattern: octet 4"),
        ('sites = [ "zen.test*x" ];', r"sites: entry 1: weight"),
        ('threshold = "3"; sites = [ "a.test" ];', r"threshold: expected an integer"),
        ('', r"dnsbl: sites is required"),
        ('sites = [ "a.test" ]; bogus = 1;', r"unknown setting \"bogus\""),
    ]
    for opts, want in cases:
        p = Policyd(rules='rules = ( { name = "d"; check = "dnsbl"; %s } );' % opts,
                    expect_start=False)
        try:
            out = subprocess.run([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT).stdout.decode()
            check(re.search(r"policyd\.conf:\d+: .*" + want, out), "%s: %s" % (opts, out))
        finally:
            shutil.rmtree(p.dir, ignore_errors=True)
    p = Policyd(rules='rules = ( { name = "x"; match = { dnsbl_score = "3"; }; action = "OK"; } );',
                expect_start=False)
    try:
        out = subprocess.run([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT).stdout.decode()
        check(re.search(r"policyd\.conf:\d+: dnsbl_score: expected an operator", out), out)
    finally:
        shutil.rmtree(p.dir, ignore_errors=True)
