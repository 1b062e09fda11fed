"""dnsharness.py - a real DNS server (tests/lib/dnsserver.py, python3-dnslib)
and the python3-spf oracle for the DNS tests.

    with DNS({"records": [["example.com", "TXT", "v=spf1 -all"]]}) as d:
        ... dns = { nameservers = [ "%s" ]; } % d.address ...
        d.update(new_zone)      # the server re-reads the file
        d.queries()             # [(name, type, proto), ...]

Both run under /usr/bin/python3 (Debian's python3-dnslib and python3-spf
are not visible to the python3 on PATH).
"""
import json
import os
import shutil
import subprocess
import time

from harness import TOP, TestFailure, free_port, mktemp

SYS_PY = "/usr/bin/python3"
SERVER = os.path.join(TOP, "tests", "lib", "dnsserver.py")


def have_dnslib():
    return subprocess.call([SYS_PY, "-c", "import dnslib"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


def have_pyspf():
    return subprocess.call([SYS_PY, "-c", "import spf, DNS"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


class DNS:
    def __init__(self, zone=None):
        self.dir = mktemp("policyd-dns.")
        self.path = os.path.join(self.dir, "zone.json")
        self.port = None
        self.proc = None
        self.zone = zone or {"records": []}
        self.write(self.zone)

    @property
    def address(self):
        return "127.0.0.1:%d" % self.port

    def write(self, zone):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(zone, f)
        os.replace(tmp, self.path)
        # a new mtime even within the same clock tick
        st = os.stat(self.path)
        os.utime(self.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))

    def update(self, zone):
        self.zone = zone
        self.write(zone)

    def start(self):
        for attempt in range(5):
            self.port = free_port()
            self.errf = open(os.path.join(self.dir, "server.err"), "wb")
            self.proc = subprocess.Popen([SYS_PY, SERVER, self.path, str(self.port)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=self.errf)
            line = self.proc.stdout.readline().decode()
            if line.startswith("ready"):
                return self
            self.proc.wait(5)
        raise TestFailure("DNS server did not start: %s" % open(
            os.path.join(self.dir, "server.err")).read())

    def queries(self):
        try:
            with open(self.path + ".log") as f:
                return [tuple(l.split()) for l in f if l.strip()]
        except OSError:
            return []

    def clear_log(self):
        try:
            os.unlink(self.path + ".log")
        except OSError:
            pass

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


PYSPF_SCRIPT = r"""
import json, sys
import DNS, spf
DNS.defaults['server'] = ['127.0.0.1']
DNS.defaults['port'] = int(sys.argv[1])
out = []
for ip, sender, helo in json.load(sys.stdin):
    try:
        r, expl = spf.check2(i=ip, s=sender, h=helo, querytime=10)
    except Exception as e:
        r = 'error: %s' % e
    out.append(r)
print(json.dumps(out))
"""


def pyspf(port, cases):
    """python3-spf's results for [(ip, sender, helo), ...]."""
    p = subprocess.run([SYS_PY, "-c", PYSPF_SCRIPT, str(port)], input=json.dumps(cases).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if p.returncode != 0:
        raise TestFailure("pyspf failed: %s" % p.stderr.decode())
    return json.loads(p.stdout)
