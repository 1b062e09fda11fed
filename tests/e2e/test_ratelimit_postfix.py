"""End-to-end: rate limits through a real Postfix (RCPT and END-OF-MESSAGE).

alice@example.net may send 2 recipients an hour (counted at RCPT): the third
gets Postfix's 450 4.7.1. bob@example.net may send 1 message an hour
(counted at END-OF-MESSAGE) with exceeded_action HOLD: his second message is
accepted into Postfix's hold queue. Needs root, postfix and swaks.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import postfix_harness  # noqa: E402
from postfix_harness import Postfix  # noqa: E402
from harness import Redis, Policyd, check  # noqa: E402

RULES = """
rules = (
  { name = "rcpt-rate"; match = { authenticated = true; sasl_username = [ "alice@example.net" ]; };
    check = "ratelimit"; key = "sasl_username"; count = "recipients";
    windows = ( { limit = 2; seconds = 3600; } ); },
  { name = "eom-rate"; match = { protocol_state = "END-OF-MESSAGE";
      sasl_username = [ "bob@example.net" ]; };
    check = "ratelimit"; key = "sasl_username"; count = "messages";
    windows = ( { limit = 1; seconds = 3600; } ); exceeded_action = "HOLD"; }
);
"""


def _run(body):
    why = postfix_harness.missing_prerequisites()
    if why:
        raise Skip(why)  # noqa: F821 - injected by the runner
    with Redis() as r, Policyd(redis=r, rules=RULES) as p:
        pf = Postfix("inet:127.0.0.1:%d" % p.port, end_of_data_policy=True,
                     users={"alice": "secret", "bob": "secret"})
        try:
            pf.start()
            body(pf, p)
        finally:
            pf.cleanup()


def test_authenticated_user_over_the_limit_gets_4_7_1():
    def body(pf, p):
        for i in range(2):
            res = pf.swaks("alice@example.net", "r%d@example.org" % i,
                           auth_user="alice@example.net")
            check(res.rcpt_reply.startswith("250") and res.accepted,
                  "message %d within the limit: %s" % (i, res.transcript))
        res = pf.swaks("alice@example.net", "r3@example.org", auth_user="alice@example.net")
        check(res.rcpt_reply.startswith("450 4.7.1 <r3@example.org>: Recipient address "
                                        "rejected: Rate limit exceeded for alice@example.net: "
                                        "2 recipients per hour; try again in"),
              res.transcript)
        check(not res.accepted, res.transcript)
        pf.wait_for_log(r"reject: RCPT from .*450 4\.7\.1 .*Rate limit exceeded")
    _run(body)


def test_hold_puts_the_message_in_the_hold_queue():
    def body(pf, p):
        res = pf.swaks("bob@example.net", "x@example.org", auth_user="bob@example.net")
        check(res.accepted and res.queue_id, "first message: %s" % res.transcript)
        res = pf.swaks("bob@example.net", "y@example.org", auth_user="bob@example.net")
        check(res.accepted and res.queue_id, "held message accepted: %s" % res.transcript)
        q = pf.queue_json()
        held = [e for e in q if e.get("queue_id") == res.queue_id]
        check(len(held) == 1 and held[0].get("queue_name") == "hold"
              and held[0]["recipients"][0]["address"] == "y@example.org",
              "in the hold queue: %r" % q)
        check(pf.queue_ids("hold") == [res.queue_id], "only that one is held: %r" % q)
        p.wait_log(r"rule=eom-rate action=HOLD Rate limit exceeded for bob@example.net: "
                   r"1 messages per hour")
    _run(body)
