"""dnsserver.py - a small authoritative DNS server for the tests (python3-dnslib).

usage: /usr/bin/python3 tests/lib/dnsserver.py ZONE.json PORT

Serves UDP (answers over 512 bytes are truncated, TC set) and TCP on
127.0.0.1:PORT. ZONE.json is re-read whenever it changes:

    {"records": [["example.com", "TXT", "v=spf1 -all", 300], ...],
     "delay": {"slow.example": 2.0},     # seconds before answering
     "drop": ["dead.example"],           # never answered
     "servfail": ["broken.example"],
     "negative_ttl": 60}

Values: A/AAAA address, TXT a string (split into 255-byte strings) or a
list of strings, MX "PREF NAME", PTR/CNAME/NS a name. A name with no
record of any type is NXDOMAIN, otherwise an empty answer (with an SOA in
the authority section either way). Every question is appended to
ZONE.json.log as "NAME TYPE PROTO" (the tests count them).
Prints "ready PORT" on stdout once both sockets listen.
"""
import json
import os
import sys
import threading
import time

from dnslib import AAAA, A, CNAME, MX, NS, PTR, QTYPE, RCODE, RR, SOA, TXT, DNSLabel
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


class Zone(BaseResolver):
    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.lock = threading.Lock()
        self.data = {}
        self.load()

    def load(self):
        with self.lock:
            try:
                st = os.stat(self.path).st_mtime_ns
            except OSError:
                return
            if st == self.mtime:
                return
            with open(self.path) as f:
                self.data = json.load(f)
            self.mtime = st
            self.names = {}
            for rec in self.data.get("records", []):
                name, typ, value = rec[0].lower().rstrip("."), rec[1].upper(), rec[2]
                ttl = rec[3] if len(rec) > 3 else 300
                self.names.setdefault(name, []).append((typ, value, ttl))

    def rdata(self, typ, value):
        if typ == "A":
            return A(value)
        if typ == "AAAA":
            return AAAA(value)
        if typ == "TXT":
            parts = value if isinstance(value, list) else [value]
            chunks = []
            for p in parts:
                b = p.encode("latin-1")
                chunks.extend([b[i:i + 255] for i in range(0, len(b), 255)] or [b""])
            return TXT(chunks)
        if typ == "MX":
            pref, name = value.split(None, 1)
            return MX(name, int(pref))
        if typ == "PTR":
            return PTR(value)
        if typ == "CNAME":
            return CNAME(value)
        if typ == "NS":
            return NS(value)
        raise ValueError(typ)

    def resolve(self, request, handler):
        self.load()
        q = request.q
        qname = str(q.qname).lower().rstrip(".")
        qtype = QTYPE[q.qtype]
        proto = "tcp" if handler.protocol == "tcp" else "udp"
        with open(self.path + ".log", "a") as f:
            f.write("%s %s %s\n" % (qname, qtype, proto))
        data = self.data
        delay = data.get("delay", {}).get(qname)
        if delay:
            time.sleep(delay)
        if qname in data.get("drop", []):
            return None
        reply = request.reply()
        if qname in data.get("servfail", []):
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        recs = self.names.get(qname)
        # follow CNAMEs inside the zone like a recursive server would
        name, hops = qname, 0
        while recs is not None and hops < 8:
            cn = [r for r in recs if r[0] == "CNAME"]
            if not cn or qtype == "CNAME":
                break
            reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(cn[0][1]), ttl=cn[0][2]))
            name = cn[0][1].lower().rstrip(".")
            recs = self.names.get(name)
            hops += 1
        if recs is None:
            reply.header.rcode = RCODE.NXDOMAIN
        for typ, value, ttl in recs or []:
            if typ == qtype:
                reply.add_answer(RR(name, getattr(QTYPE, typ), rdata=self.rdata(typ, value), ttl=ttl))
        if not reply.rr:
            neg = data.get("negative_ttl", 60)
            reply.add_auth(RR(".", QTYPE.SOA, ttl=neg, rdata=SOA(
                "ns.test.", "hostmaster.test.", (1, 3600, 600, 86400, neg))))
        return reply


class UDPHandler(DNSHandler):
    udplen = 512


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    zone = Zone(path)
    logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data")
    udp = DNSServer(zone, port=port, address="127.0.0.1", logger=logger, handler=UDPHandler)
    tcp = DNSServer(zone, port=port, address="127.0.0.1", logger=logger, tcp=True)
    udp.start_thread()
    tcp.start_thread()
    print("ready %d" % port, flush=True)
    try:
        while udp.isAlive() and tcp.isAlive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
