"""End-to-end SPF: a real Postfix asks policyd, which asks a real DNS server on
loopback. An SPF fail is refused at RCPT with 550 5.7.23 and the explanation;
an accepted message arrives with exactly one Received-SPF header."""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import postfix_harness  # noqa: E402
from postfix_harness import Postfix  # noqa: E402
from harness import Redis, Policyd, check  # noqa: E402
from dnsharness import DNS, have_dnslib  # noqa: E402

ZONE = {"records": [
    ["fail.e2e.test", "TXT", "v=spf1 ip4:192.0.2.0/24 -all"],
    ["pass.e2e.test", "TXT", "v=spf1 ip4:127.0.0.0/8 -all"],
]}

# swaks connects from 127.0.0.1: take loopback out of skip_networks
RULES = ('rules = ( { name = "spf"; check = "spf"; skip_networks = [ "192.0.2.0/24" ]; '
         'probe = false; } );')


def _run(body):
    why = postfix_harness.missing_prerequisites()
    if why:
        raise Skip(why)  # noqa: F821 - injected by the runner
    if not have_dnslib():
        raise Skip("python3-dnslib missing")  # noqa: F821
    with DNS(ZONE) as d, Redis() as r, \
            Policyd(redis=r, rules=RULES, extra='dns = { nameservers = [ "%s" ]; };'
                    % d.address) as p:
        pf = Postfix("inet:127.0.0.1:%d" % p.port)
        try:
            pf.start()
            body(pf, p)
        finally:
            pf.cleanup()


def test_spf_fail_refused_with_5_7_23():
    def body(pf, p):
        res = pf.swaks("alice@fail.e2e.test", "bob@example.net")
        print("#   RCPT -> %s" % res.rcpt_reply)
        check(res.rcpt_reply.startswith("550 5.7.23 <bob@example.net>: Recipient address "
                                        "rejected: fail.e2e.test does not allow 127.0.0.1 "
                                        "to send mail for it (SPF fail)"), res.transcript)
        check(not res.accepted, res.transcript)
    _run(body)


def test_spf_pass_delivered_with_one_received_spf_header():
    def body(pf, p):
        res = pf.swaks("alice@pass.e2e.test", "bob@example.net")
        print("#   RCPT -> %s" % res.rcpt_reply)
        check(res.accepted, res.transcript)
        msgs = pf.wait_sink_messages(1)
        headers = re.findall(r"^Received-SPF:.*(?:\n[ \t].*)*", msgs[-1], re.M)
        check(len(headers) == 1, "one Received-SPF header: %r\n%s" % (headers, msgs[-1][:2000]))
        h = re.sub(r"\s+", " ", headers[0])
        check(h.startswith("Received-SPF: pass (mx.test: domain of alice@pass.e2e.test "
                           "designates 127.0.0.1 as permitted sender) client-ip=127.0.0.1; "
                           "envelope-from=alice@pass.e2e.test;") and
              h.endswith("receiver=mx.test; identity=mailfrom"), h)
        print("#   header: %s" % h)
    _run(body)
