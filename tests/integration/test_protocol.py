"""The policy protocol: many and pipelined requests, odd framing, every
Postfix attribute, big values, IPv6 and unix listeners, half-close, explain."""
import os, socket, stat, sys, threading, time
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import (Redis, Policyd, PolicyClient, req, encode, check, eq, free_port,
                     POSTFIX_ORDER, wait_for, greylist_triplets)

N_MAP = 200
# an access map by recipient: r<i>@example.net -> a distinct REJECT text
RCPT_MAP = "".join("r%d@example.net  REJECT 5.7.1 answer %d\n" % (i, i) for i in range(N_MAP))
ACCESS_RULES = ('rules = ( { name = "rcpt-access"; check = "access"; key = "recipient"; '
                'map = "rcpt_access"; } );')
FILES = {"rcpt_access": RCPT_MAP}
# access first (answered at once), then greylist (answered by Redis later)
MIXED_RULES = ('rules = ( { name = "rcpt-access"; check = "access"; key = "recipient"; '
               'map = "rcpt_access"; },\n { name = "greylist"; check = "greylist"; '
               'delay = 60; retry_window = 120; } );')


def answer(i):
    return "REJECT 5.7.1 answer %d" % i


def test_many_requests_on_one_connection():
    with Policyd(rules=ACCESS_RULES, files=FILES) as p:
        with p.client() as c:
            for k in range(200):
                i = (k * 7) % N_MAP
                eq(c.ask(req(recipient="r%d@example.net" % i)), answer(i), "request %d" % k)
            eq(c.ask(req(recipient="nobody@example.net")), "DUNNO")


def test_pipelined_requests_answered_in_order():
    with Policyd(rules=ACCESS_RULES, files=FILES) as p:
        with p.client() as c:
            order = [(k * 37) % N_MAP for k in range(50)]
            c.send_raw(b"".join(encode(req(recipient="r%d@example.net" % i)) for i in order))
            for k, i in enumerate(order):
                eq(c.reply(), answer(i), "pipelined reply %d" % k)


def test_pipelined_mixed_sync_and_redis_answers_in_order():
    """Static answers are ready at once, greylist answers wait for Redis:
    replies must still leave in request order."""
    with Redis() as r, Policyd(redis=r, rules=MIXED_RULES, files=FILES) as p:
        with p.client() as c:
            ask = []
            for k in range(60):
                if k % 3 == 0:
                    ask.append(("x%d@example.net" % k, None))
                else:
                    ask.append(("r%d@example.net" % k, answer(k)))
            c.send_raw(b"".join(encode(req(recipient=rc)) for rc, _ in ask))
            for k, (rc, want) in enumerate(ask):
                a = c.reply()
                if want is None:
                    check(a.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"),
                          "reply %d for %s: %r" % (k, rc, a))
                else:
                    eq(a, want, "reply %d for %s" % (k, rc))


def test_pipeline_deeper_than_max_pipeline():
    with Redis() as r, Policyd(redis=r, rules=MIXED_RULES, files=FILES,
                               extra="limits = { max_pipeline = 4; };") as p:
        with p.client() as c:
            c.send_raw(b"".join(encode(req(recipient="r%d@example.net" % i)) for i in range(100)))
            for i in range(100):
                eq(c.reply(), answer(i), "reply %d" % i)


def _metric(port, name):
    import re
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as f:
        m = re.search(r"^%s (\d+)" % name, f.read().decode(), re.M)
    return int(m.group(1)) if m else None


def test_max_pipeline_caps_requests_waiting_on_redis():
    """With Redis hung, a connection that pipelines 40 greylist requests has
    exactly max_pipeline (4) of them read and sent to Redis; the rest wait
    in the socket; once Redis answers, all 40 are answered in order."""
    mport = free_port()
    extra = ('limits = { max_pipeline = 4; };\nmetrics = { address = "127.0.0.1:%d"; };'
             % mport)
    rules = ('rules = ( { name = "greylist"; check = "greylist"; delay = 60; '
             'retry_window = 600; } );')
    with Redis() as r, Policyd(redis=r, rules=rules, extra=extra, timeout_ms=60000) as p:
        with p.client(timeout=60) as c:
            check(c.ask(req(recipient="warm@example.net")).startswith("DEFER_IF_PERMIT"), "warm")
            base = _metric(mport, "policyd_requests_total")
            sent = _metric(mport, "policyd_redis_commands_total")
            r.pause()
            try:
                c.send_raw(b"".join(encode(req(recipient="p%d@example.net" % i))
                                    for i in range(40)))
                # the decisions of a loop turn share one script call: four
                # requests read in one or more turns make one to four calls
                wait_for(lambda: _metric(mport, "policyd_requests_total") - base >= 4 and
                         _metric(mport, "policyd_redis_commands_total") >= sent + 1, 20,
                         what="four requests read and sent to the hung Redis")
                time.sleep(1.0)      # room to read more, were the cap not kept
                eq(_metric(mport, "policyd_requests_total") - base, 4,
                   "requests read while four wait on Redis")
                n = _metric(mport, "policyd_redis_commands_total") - sent
                check(1 <= n <= 4, "the four went out in one to four script calls: %d" % n)
            finally:
                r.resume()
            for i in range(40):
                a = c.reply()
                check(a.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), "reply %d: %r" % (i, a))
        eq(len(greylist_triplets(r)), 41, "every request reached Redis once")


def test_concurrent_clients():
    with Redis() as r, Policyd(redis=r, rules=MIXED_RULES, files=FILES) as p:
        errors = []

        def worker(t):
            try:
                with p.client() as c:
                    for k in range(40):
                        if k % 2:
                            eq(c.ask(req(recipient="r%d@example.net" % k)), answer(k))
                        else:
                            a = c.ask(req(recipient="t%d-%d@example.net" % (t, k)))
                            check(a.startswith("DEFER_IF_PERMIT"), a)
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        ts = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        check(not any(t.is_alive() for t in ts), "workers finished")
        check(not errors, "worker errors: %r" % errors[:2])


def test_unknown_attributes_ignored():
    with Policyd(rules=ACCESS_RULES, files=FILES) as p:
        with p.client() as c:
            a = req(recipient="r5@example.net")
            a["future_attribute"] = "something"
            a["x_unknown"] = ""
            a["zz_" + "n" * 100] = "v" * 200
            eq(c.ask(a), answer(5))
            eq(c.ask(req(recipient="r6@example.net")), answer(6), "connection still fine")


def test_request_split_into_single_bytes():
    with Policyd(rules=ACCESS_RULES, files=FILES) as p:
        with p.client() as c:
            data = encode({"request": "smtpd_access_policy", "protocol_state": "RCPT",
                           "client_address": "192.0.2.1", "sender": "a@b.test",
                           "recipient": "r9@example.net"})
            for i in range(len(data)):
                c.send_raw(data[i:i + 1])
                time.sleep(0.002)
            eq(c.reply(), answer(9))
            # and the next request arrives in a few odd chunks, with CRLF
            data = encode(req(recipient="r10@example.net")).replace(b"\n", b"\r\n")
            for i in range(0, len(data), 7):
                c.send_raw(data[i:i + 7])
                time.sleep(0.002)
            eq(c.reply(), answer(10))


def test_every_postfix_attribute():
    with Policyd(rules=ACCESS_RULES, files=FILES) as p:
        with p.client() as c:
            a = req(recipient="r11@example.net", queue_id="4ABCD12", size="12345",
                    sasl_method="PLAIN", sasl_username="alice", sasl_sender="",
                    ccert_subject="CN=x", ccert_issuer="CN=ca", ccert_fingerprint="AB:CD",
                    ccert_pubkey_fingerprint="EF:01", encryption_protocol="TLSv1.3",
                    encryption_cipher="TLS_AES_256_GCM_SHA384", encryption_keysize="256",
                    etrn_domain="", stress="", policy_context="submission")
            a["compatibility_level"] = "3.6"
            a["mail_version"] = "3.7.11"
            a["tls_sni"] = "mx.example.net"
            a["server_address"] = "2001:db8::25"
            check(set(POSTFIX_ORDER) <= set(a), "all attributes present")
            eq(c.ask(a), answer(11))


def test_unsupported_request_type_gets_dunno():
    with Policyd(rules=ACCESS_RULES, files=FILES) as p:
        with p.client() as c:
            eq(c.ask(req(request="junk_policy", recipient="r1@example.net")), "DUNNO")
            eq(c.ask(req(recipient="r1@example.net")), answer(1), "connection still usable")
        p.wait_log(r'unsupported request type "junk_policy"')


def test_values_of_8192_bytes_accepted():
    big = "x" * 8192
    with Redis() as r, Policyd(redis=r, rules=MIXED_RULES, files=FILES) as p:
        with p.client() as c:
            a = req(recipient="r12@example.net", helo_name=big, ccert_subject=big,
                    client_name=big, sender=("s" * 8180) + "@sender.test")
            a["n" * 8192] = big                   # an 8 KiB unknown name, too
            eq(c.ask(a), answer(12))
            a = req(recipient=("u" * 8180) + "@example.net", sender=big)
            check(c.ask(a).startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), "greylisted")
        keys = r.keys("t:g*")
        eq(len(keys), 1)
        check(len(keys[0]) < 40, "key size is bounded: %r" % keys[0])


def test_ipv6_listener():
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        s.close()
    except OSError:
        raise Skip("no IPv6 loopback")  # noqa: F821 - set by the runner
    port6 = free_port()
    p = Policyd(rules=ACCESS_RULES, files=FILES)
    p.listen = ["inet:127.0.0.1:%d" % p.port, "inet:[::1]:%d" % port6]
    p.write_config(ACCESS_RULES)
    with p:
        with p.connect(("::1", port6)) as c:
            eq(c.ask(req(recipient="r3@example.net")), answer(3))
        with p.client() as c:
            eq(c.ask(req(recipient="r4@example.net")), answer(4))
        check("listening on inet:[::1]:%d" % port6 in p.log(), "listener logged")


def test_unix_listener_with_mode():
    p = Policyd(rules=ACCESS_RULES, files=FILES)
    path = os.path.join(p.dir, "policyd.sock")
    path2 = os.path.join(p.dir, "plain.sock")
    p.listen = ["inet:127.0.0.1:%d" % p.port,
                '{ address = "unix:%s"; mode = "0600"; }' % path, "unix:%s" % path2]
    p.write_config(ACCESS_RULES)
    with p:
        eq(stat.S_IMODE(os.stat(path).st_mode), 0o600, "mode honoured")
        check(stat.S_ISSOCK(os.stat(path2).st_mode), "plain unix listener")
        with p.connect(path) as c:
            eq(c.ask(req(recipient="r7@example.net")), answer(7))
            c.send_raw(b"".join(encode(req(recipient="r%d@example.net" % i)) for i in range(5)))
            for i in range(5):
                eq(c.reply(), answer(i))
        with p.connect(path2) as c:
            eq(c.ask(req(recipient="r8@example.net")), answer(8))
        p.stop()
        check(not os.path.exists(path), "unix socket removed at exit")


def test_half_close_still_answered():
    with Redis() as r, Policyd(redis=r, rules=MIXED_RULES, files=FILES) as p:
        with p.client() as c:
            c.send_raw(encode(req(recipient="r1@example.net")) +
                       encode(req(recipient="new@example.net")))
            c.s.shutdown(socket.SHUT_WR)
            eq(c.reply(), answer(1))
            check(c.reply().startswith("DEFER_IF_PERMIT"), "greylist answer after half-close")
            check(c.closed(5), "closed after the answers")


def test_explain_returns_trace_then_action():
    with Redis() as r, Policyd(redis=r, rules=MIXED_RULES, files=FILES) as p:
        with p.client() as c:
            a = c.ask(req(recipient="someone@example.net", policyd_explain="yes"))
            check(a.startswith("DEFER_IF_PERMIT 4.7.1 Greylisted"), a)
            lines = c.last_lines
            check(len(lines) >= 3, lines)
            check(all(l.startswith("trace=") for l in lines[:-1]), lines)
            eq(lines[-1][:7], "action=", "action is last")
            text = "\n".join(lines)
            check("rcpt-access" in text and "greylist" in text, text)
            # without the attribute: no trace
            eq(c.ask(req(recipient="r2@example.net")), answer(2))
            eq(len(c.last_lines), 1, "plain reply has one line")
