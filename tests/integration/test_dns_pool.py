"""Greylisting provider pools: the client part of the triplet grouped by the
SPF-authenticated sender domain or the verified client_name's organizational
domain, against a real DNS server on loopback. The Gmail-like case: the same
sender retrying from 3 different /24s, all in the sender's SPF record."""
import os, re, socket, sys, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Redis, Policyd, req, check, eq, encode
from dnsharness import DNS, have_dnslib

POOL = ["198.18.1.10", "198.18.2.20", "198.18.3.30"]
ZONE = {"records": [
    ["pool.test", "TXT", "v=spf1 ip4:198.18.1.0/24 ip4:198.18.2.0/24 ip4:198.18.3.0/24 ~all"],
    ["open.test", "TXT", "v=spf1 +all"],
    ["wide.test", "TXT", "v=spf1 ip4:0.0.0.0/1 ip4:128.0.0.0/1 -all"],
]}


def rules(group):
    g = "group_by = [ %s ];" % ", ".join('"%s"' % x for x in group) if group else ""
    return ('rules = ( { name = "spf"; check = "spf"; },'
            ' { name = "greylist"; check = "greylist"; delay = 1; retry_window = 60;'
            ' auto_whitelist = 0; %s } );' % g)


def attempts(p, sender, names=None, log=None):
    """Three delivery attempts of one message, each from the next pool /24."""
    out = []
    with p.client() as c:
        for i, ip in enumerate(POOL):
            if i:
                time.sleep(1.3)         # past the 1 s delay
            a = c.ask(req(client_address=ip, sender=sender, recipient="bob@example.net",
                          client_name=names[i] if names else "unknown"))
            out.append(a)
            if log is not None:
                log.append("attempt %d from %s: %s" % (i + 1, ip, a[:90]))
    return out


def explain(p, attrs):
    """The policyd_explain trace of one request (the raw reply)."""
    attrs = dict(attrs, policyd_explain="yes")
    with socket.create_connection(("127.0.0.1", p.port), timeout=10) as s:
        s.sendall(encode(attrs))
        data = b""
        while not data.endswith(b"\n\n"):
            d = s.recv(65536)
            if not d:
                break
            data += d
    return data.decode("utf-8", "replace")


def deferred(a):
    return a.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted")


def test_pool_passes_with_spf_grouping_deferred_without():
    if not have_dnslib():
        raise Skip("python3-dnslib missing")
    transcript = []
    with DNS(ZONE) as d, Redis() as r:
        extra = 'dns = { nameservers = [ "%s" ]; };' % d.address
        with Policyd(redis=r, rules=rules(["spf"]), extra=extra) as p:
            transcript.append("with group_by = [ \"spf\" ]:")
            got = attempts(p, "alice@pool.test", log=transcript)
            check(deferred(got[0]), "first attempt deferred: %r" % got[0])
            check(not deferred(got[1]) and got[1].startswith("PREPEND Received-SPF: pass"),
                  "second attempt, another /24, passes: %r" % got[1])
            check(not deferred(got[2]), "third passes: %r" % got[2])
            trace = explain(p, req(client_address="198.18.2.99", sender="alice@pool.test",
                                   recipient="bob@example.net"))
            check("greylist: client part: sender domain pool.test (SPF pass)" in trace and
                  "check greylist: known triplet" in trace, trace)
        r.cmd("FLUSHALL")
        with Policyd(redis=r, rules=rules([]), extra=extra) as p:
            transcript.append("without grouping:")
            got = attempts(p, "alice@pool.test", log=transcript)
            check(all(deferred(a) for a in got), "every attempt deferred: %r" % got)
    for line in transcript:
        print("# " + line)


def test_promiscuous_records_earn_no_grouping():
    if not have_dnslib():
        raise Skip("python3-dnslib missing")
    with DNS(ZONE) as d, Redis() as r:
        extra = 'dns = { nameservers = [ "%s" ]; };' % d.address
        with Policyd(redis=r, rules=rules(["spf"]), extra=extra) as p:
            for sender in ("spam@open.test", "spam@wide.test"):
                got = attempts(p, sender)
                check(all(deferred(a) for a in got), "%s: every attempt deferred: %r"
                      % (sender, got))
            trace = explain(p, req(client_address="198.18.1.10", sender="spam@open.test"))
            check("spf: probe pass: no grouping" in trace, trace)


def test_client_name_grouping_by_organizational_domain():
    if not have_dnslib():
        raise Skip("python3-dnslib missing")
    names = ["mail-a1.outbound.example.com", "mail-b7.relay.example.com",
             "o3.eu.mailer.example.com"]
    with DNS(ZONE) as d, Redis() as r:
        extra = 'dns = { nameservers = [ "%s" ]; };' % d.address
        with Policyd(redis=r, rules=rules(["client_name"]), extra=extra) as p:
            got = attempts(p, "bob@nospf.test", names=names)
            check(deferred(got[0]) and not deferred(got[1]) and not deferred(got[2]),
                  "grouped by example.com: %r" % got)
            # unverified names (Postfix: "unknown") keep the network
            got = attempts(p, "carol@nospf.test", names=["unknown"] * 3)
            check(all(deferred(a) for a in got), "unknown client_name: %r" % got)
        # a public suffix alone is no organization
        with Policyd(redis=r, rules=rules(["client_name"]), extra=extra) as p:
            got = attempts(p, "dave@nospf.test", names=["co.uk", "co.uk", "co.uk"])
            check(all(deferred(a) for a in got), "public suffix: %r" % got)


def test_group_by_errors():
    import subprocess, shutil
    p = Policyd(rules=rules(["spf", "ip"]), expect_start=False)
    try:
        out = subprocess.run([p.bin, "-t", "-c", p.conf], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT).stdout.decode()
        check(re.search(r"policyd\.conf:\d+: group_by: expected \"spf\" and/or \"client_name\"",
                        out), out)
    finally:
        shutil.rmtree(p.dir, ignore_errors=True)
