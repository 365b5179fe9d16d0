"""The measurements behind scripts/bench-cluster (standard library only).

Nodes are real `gatehouse serve` processes on loopback, each with its own data dir; clients are keep-alive
http.client connections. Figures are medians and percentiles of sequential requests, plus requests per second with
8 threads; the one-node server started in the same run is the baseline for the write figures.
"""

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
KILLS = int(sys.argv[2]) if len(sys.argv) > 2 else 10
TOKEN = "bench-token-" + os.urandom(12).hex()
JOIN = "bench-join-" + os.urandom(16).hex()
KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    def __init__(self, cluster=True):
        self.dir = tempfile.mkdtemp(prefix="gh-bench-cluster-")
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update({
            "GATEHOUSE_DATA_DIR": self.dir, "PORT": str(self.port), "GATEHOUSE_LISTEN": f"127.0.0.1:{self.port}",
            "GATEHOUSE_BOOTSTRAP_TOKEN": TOKEN, "GATEHOUSE_MASTER_KEY": KEY, "LOG_LEVEL": "warn",
            "GATEHOUSE_PUBLIC_URL": "http://gatehouse.bench",
        })
        if cluster:
            self.env.update({"GATEHOUSE_CLUSTER_ADDR": f"127.0.0.1:{free_port()}", "GATEHOUSE_CLUSTER_JOIN_TOKEN": JOIN})
        self.proc = None
        self.start()
        self.id = int(open(os.path.join(self.dir, "node_id")).read())

    def start(self):
        self.proc = subprocess.Popen([BIN, "serve"], env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "server.log"), "a"))
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if request(self.port, "GET", "/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"node on {self.port} did not become ready")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def cli(self, *args):
        out = subprocess.run([BIN, "cluster", *args], env=self.env, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"cluster {args}: {out.stderr}")
        return out.stdout

    def status(self):
        return json.loads(self.cli("status", "--json"))


_local = threading.local()


def request(port, method, path, body=None, auth=False, timeout=10):
    conns = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    conn = conns.get(port)
    if conn is None:
        conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"content-type": "application/json"}
    if auth:
        headers["authorization"] = f"Bearer {TOKEN}"
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, data
    except (OSError, http.client.HTTPException):
        conn.close()
        conns.pop(port, None)
        raise


def timed(port, method, path, body=None, auth=False):
    started = time.perf_counter()
    status, data = request(port, method, path, body, auth)
    return (time.perf_counter() - started) * 1000, status, data


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def writes(port, slug, n=300):
    times = []
    for i in range(n):
        ms, status, data = timed(port, "PATCH", f"/admin/api/v1/tenants/{slug}", {"name": f"n{i}"}, auth=True)
        assert status == 200, (status, data)
        times.append(ms)
    return times


def throughput(port, path, seconds=5, threads=8):
    count = [0] * threads
    stop = time.time() + seconds

    def run(k):
        while time.time() < stop:
            status, _ = request(port, "GET", path)
            assert status == 200, status
            count[k] += 1

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(count) / seconds


def applied(node):
    status, data = request(node.port, "GET", "/metrics")
    for line in data.decode().splitlines():
        if line.startswith("gatehouse_raft_last_applied "):
            return float(line.split()[1])
    return -1.0


def settled(nodes):
    """Waits until every node has applied the same Raft index (a restarted node caught up)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if len({applied(n) for n in nodes}) == 1:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the nodes did not converge")


def leader_of(nodes):
    for node in nodes:
        if node.proc and node.proc.poll() is None:
            try:
                leader = node.status().get("leader_id")
                if leader:
                    return leader
            except SystemExit:
                pass
    return None


def main():
    alone = Node(cluster=False)
    assert request(alone.port, "POST", "/admin/api/v1/tenants", {"slug": "solo", "name": "solo"}, auth=True)[0] == 201
    one = writes(alone.port, "solo")
    alone.kill()

    nodes = [Node(), Node(), Node()]
    for node in nodes[1:]:
        node.cli("join", "--leader", f"http://127.0.0.1:{nodes[0].port}")
    leader_id = leader_of(nodes)
    leader = next(n for n in nodes if n.id == leader_id)
    follower = next(n for n in nodes if n.id != leader_id)
    status, data = request(leader.port, "POST", "/admin/api/v1/tenants", {"slug": "bench", "name": "b"}, auth=True)
    assert status == 201, data
    on_leader = writes(leader.port, "bench")
    on_follower = writes(follower.port, "bench")

    print("control write (PATCH tenant), 300 sequential each, ms:")
    for name, times in [("one-node (baseline)", one), ("3 nodes, on the leader", on_leader),
                        ("3 nodes, via a follower", on_follower)]:
        print(f"  {name:<28} p50 {statistics.median(times):6.2f}  p99 {pct(times, 99):6.2f}"
              f"  ({statistics.median(times) / statistics.median(one):.2f}x one-node p50)")

    # The tenant "bench" lives on the leader (it created it, all nodes empty): the follower forwards.
    path = "/t/bench/api/v1/tenant"
    direct = [timed(leader.port, "GET", path)[0] for _ in range(2000)]
    proxied = [timed(follower.port, "GET", path)[0] for _ in range(2000)]
    direct_rps = throughput(leader.port, path)
    proxied_rps = throughput(follower.port, path)
    print("tenant request GET /t/{slug}/api/v1/tenant, 2000 sequential; req/s with 8 threads for 5 s:")
    print(f"  on its home        p50 {statistics.median(direct):6.3f} ms  p99 {pct(direct, 99):6.3f} ms  {direct_rps:8.0f} req/s")
    print(f"  through another    p50 {statistics.median(proxied):6.3f} ms  p99 {pct(proxied, 99):6.3f} ms  "
          f"{proxied_rps:8.0f} req/s  ({proxied_rps / direct_rps:.2f}x)")

    failovers = []
    for k in range(KILLS):
        settled(nodes)
        leader_id = None
        while leader_id is None:
            leader_id = leader_of(nodes)
            time.sleep(0.05)
        victim = next(n for n in nodes if n.id == leader_id)
        survivor = next(n for n in nodes if n.id != leader_id)
        killed = time.perf_counter()
        victim.kill()
        while True:
            try:
                status, _ = request(survivor.port, "PATCH", "/admin/api/v1/tenants/bench", {"name": f"k{k}"},
                                    auth=True, timeout=5)
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.02)
        failovers.append(time.perf_counter() - killed)
        victim.start()
    print(f"failover over {KILLS} leader kills (all nodes caught up; kill -9 to the first acknowledged write"
          " through a survivor), s:")
    print(f"  median {statistics.median(failovers):.2f}  max {max(failovers):.2f}  all "
          + " ".join(f"{f:.2f}" for f in failovers))
    for node in nodes:
        node.kill()


if __name__ == "__main__":
    main()
