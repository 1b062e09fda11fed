"""topology.py - Redis Sentinel and Redis Cluster setups for tests.

Everything on 127.0.0.1, free ports, one temp dir, processes tracked by
PID and stopped at cleanup().

    with SentinelSetup() as s:      # a primary, a replica, three sentinels
        s.sentinel_addresses        # ["127.0.0.1:P", ...]
        s.primary.port; s.failover(); s.wait_primary_changed(old)

    with ClusterSetup(3) as c:      # three primaries, slots spread
        c.seeds                     # ["127.0.0.1:P", ...]
        c.reshard(src, dst, slots)  # redis-cli --cluster reshard
"""
import os
import shutil
import signal
import subprocess
import time

from harness import Redis, TestFailure, free_port, mktemp, resp_encode, resp_read, wait_for
import socket


def redis_cmd(port, *args, timeout=5):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(resp_encode(list(args)))
        return resp_read(s.makefile("rb"))
    finally:
        s.close()


class Sentinel:
    def __init__(self, dir, primary_port, name, quorum=2):
        self.port = free_port()
        self.dir = dir
        self.conf = os.path.join(dir, "sentinel-%d.conf" % self.port)
        with open(self.conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n"
                    "sentinel monitor %s 127.0.0.1 %d %d\n"
                    "sentinel down-after-milliseconds %s 1000\n"
                    "sentinel failover-timeout %s 5000\n"
                    "sentinel parallel-syncs %s 1\n"
                    % (self.port, dir, name, primary_port, quorum, name, name, name))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", self.conf, "--sentinel", "--logfile",
             os.path.join(self.dir, "sentinel-%d.log" % self.port)],
            stdin=subprocess.DEVNULL)
        wait_for(lambda: self._ping(), 10, what="sentinel %d" % self.port)

    def _ping(self):
        try:
            return redis_cmd(self.port, "PING") == "PONG"
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class SentinelSetup:
    """A primary, one replica, three sentinels watching MASTER_NAME."""

    def __init__(self, name="policyd"):
        self.name = name
        self.dir = mktemp("policyd-sentinel.")
        self.primary = Redis()
        self.replica = Redis(extra=["--replicaof", "127.0.0.1", str(self.primary.port)])
        self.sentinels = []

    @property
    def sentinel_addresses(self):
        return ["127.0.0.1:%d" % s.port for s in self.sentinels]

    def start(self):
        self.primary.start()
        self.replica.start()
        wait_for(lambda: "master_link_status:up" in redis_cmd(self.replica.port, "INFO", "replication"),
                 15, what="replica in sync")
        for _ in range(3):
            s = Sentinel(self.dir, self.primary.port, self.name)
            s.start()
            self.sentinels.append(s)
        # every sentinel knows the replica and the other sentinels
        wait_for(lambda: all(int(self._master_info(s).get("num-other-sentinels", 0)) >= 2 and
                             int(self._master_info(s).get("num-slaves", 0)) >= 1
                             for s in self.sentinels), 20, step=0.2, what="sentinels to discover each other")
        return self

    def _master_info(self, s):
        try:
            r = redis_cmd(s.port, "SENTINEL", "MASTER", self.name)
        except Exception:
            return {}
        return dict(zip(r[::2], r[1::2]))

    def primary_port(self):
        r = redis_cmd(self.sentinels[0].port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        return int(r[1])

    def failover(self):
        return redis_cmd(self.sentinels[0].port, "SENTINEL", "FAILOVER", self.name)

    def wait_primary_changed(self, old_port, timeout=30):
        def changed():
            try:
                p = self.primary_port()
            except Exception:
                return False
            if p == old_port:
                return False
            role = redis_cmd(p, "ROLE")
            return role[0] == "master" and p
        return wait_for(changed, timeout, step=0.2, what="sentinel failover")

    def node(self, port):
        return self.primary if self.primary.port == port else self.replica

    def cleanup(self):
        for s in self.sentinels:
            s.stop()
        for r in (self.primary, self.replica):
            try:
                r.resume()
            except Exception:
                pass
            r.cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()


class ClusterSetup:
    """N cluster-enabled redis-servers joined with redis-cli --cluster create."""

    def __init__(self, n=3):
        self.nodes = []
        used = set()
        for _ in range(n):
            # the cluster bus listens on port + 10000: stay below 55536
            port = free_port()
            while port > 55535 or port in used:
                port = free_port()
            used.add(port)
            r = Redis(port=port)
            r.extra = ["--cluster-enabled", "yes", "--cluster-config-file",
                       os.path.join(r.dir, "nodes.conf"), "--cluster-node-timeout", "2000"]
            self.nodes.append(r)

    @property
    def seeds(self):
        return ["127.0.0.1:%d" % r.port for r in self.nodes]

    def start(self):
        for r in self.nodes:
            r.start()
        res = subprocess.run(["redis-cli", "--cluster", "create"] + self.seeds +
                             ["--cluster-replicas", "0", "--cluster-yes"],
                             capture_output=True, timeout=60)
        if res.returncode != 0:
            raise TestFailure("cluster create failed: %s" % res.stdout.decode()[-2000:])
        wait_for(lambda: all("cluster_state:ok" in redis_cmd(r.port, "CLUSTER", "INFO")
                             for r in self.nodes), 20, step=0.2, what="cluster_state:ok")
        return self

    def node_id(self, r):
        return redis_cmd(r.port, "CLUSTER", "MYID")

    def reshard(self, src, dst, slots, timeout=120):
        res = subprocess.run(["redis-cli", "--cluster", "reshard", "127.0.0.1:%d" % src.port,
                              "--cluster-from", self.node_id(src), "--cluster-to", self.node_id(dst),
                              "--cluster-slots", str(slots), "--cluster-yes"],
                             capture_output=True, timeout=timeout)
        if res.returncode != 0:
            raise TestFailure("reshard failed: %s" % res.stdout.decode()[-2000:])
        return res.stdout.decode()

    def keys_total(self, pattern="*"):
        n = 0
        for r in self.nodes:
            n += len(redis_cmd(r.port, "KEYS", pattern))
        return n

    def cleanup(self):
        for r in self.nodes:
            r.cleanup()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        self.cleanup()
