"""Smoke: policyd starts, greylists a new triplet, passes it after the delay."""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import Redis, Policyd, req, greylist_rules, check, eq


def test_new_triplet_deferred_then_passes():
    with Redis() as r, Policyd(redis=r, rules=greylist_rules(delay=60, window=600, cache=0)) as p:
        with p.client() as c:
            a = c.ask(req())
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted, please try again in"), a)
            r.age_greylist(61)      # as if a minute had passed
            a = c.ask(req())
            check(a.startswith("PREPEND X-Greylist: delayed"), a)
            eq(c.ask(req()), "DUNNO", "known triplet")
