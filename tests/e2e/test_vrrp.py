"""Issue 5: two Tandem instances share a virtual IP with VRRPv3, in network namespaces made by the
test (DESIGN section 7): a switch namespace with a bridge; hosts client .2, lb1 .11, lb2 .12,
backend .21; VIP .100. A client inside its namespace sends a request every 10 ms to the VIP.
Every case ends with exactly one master, holding the VIP, and the VIP answering."""
import json
import os
import signal
import textwrap
import time

import pytest

import netns

from lb_config import VIP, lb_config  # noqa: E402 (shared with bench/failover.py)
HERE = os.path.dirname(__file__)

BACKEND = textwrap.dedent("""
    import http.server, sys
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"backend ok\\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    http.server.ThreadingHTTPServer(("198.18.0.21", port), H).serve_forever()
""")

# One request every 10 ms to the VIP, each on a new connection, for at most `seconds`; one JSON
# line per request (start time, ok). Bounded in count and time.
CLIENT = textwrap.dedent("""
    import json, socket, sys, time
    out, seconds = sys.argv[1], float(sys.argv[2])
    end = time.monotonic() + seconds
    with open(out, "w", buffering=1) as f:
        for i in range(int(seconds * 100) + 1):
            if time.monotonic() > end:
                break
            t0 = time.monotonic()
            ok = False
            try:
                # Short timeouts (the bridge's RTT is well under 1 ms): an attempt that hangs on a
                # dead path must not hide when the VIP answers again.
                with socket.create_connection(("198.18.0.100", 8080), timeout=0.05) as s:
                    s.settimeout(0.3)
                    s.sendall(b"GET / HTTP/1.1\\r\\nHost: vip\\r\\nConnection: close\\r\\n\\r\\n")
                    ok = s.recv(64).startswith(b"HTTP/1.1 200")
            except OSError:
                pass
            f.write(json.dumps({"t": t0, "ok": ok}) + "\\n")
            time.sleep(max(0.0, 0.01 - (time.monotonic() - t0)))
""")


class Lab:
    def __init__(self, topo, tandem_bin, tmp_path):
        self.topo, self.bin, self.tmp = topo, tandem_bin, tmp_path
        topo.add_host("client", "198.18.0.2")
        topo.add_host("lb1", "198.18.0.11")
        topo.add_host("lb2", "198.18.0.12")
        topo.add_host("be", "198.18.0.21")
        (tmp_path / "backend.py").write_text(BACKEND)
        (tmp_path / "client.py").write_text(CLIENT)
        topo.spawn("be", "/usr/bin/python3", str(tmp_path / "backend.py"))
        netns.wait_until(lambda: self.http("lb1", "http://198.18.0.21:8000/") == 200, 5,
                         "backend up")
        self.lbs = {}

    def http(self, host, url):
        return self.topo.http_status(host, url)

    def admin(self, host, path):
        return self.topo.admin_json(host, path)

    def start(self, name, priority, nofile=None, **kw):
        conf = self.tmp / f"{name}.yaml"
        conf.write_text(lb_config(name, priority, **kw))
        limit = ["/usr/bin/prlimit", f"--nofile={nofile}:{nofile}", "--"] if nofile else []
        p = self.topo.spawn(name, *limit, self.bin, "run", "-c", str(conf),
                            log=str(self.tmp / f"{name}.log"))
        self.lbs[name] = p
        netns.wait_until(lambda: self.admin(name, "/api/v1/status") is not None or p.poll() is not None
                         or None, 5, f"{name} admin")
        assert p.poll() is None, open(self.tmp / f"{name}.log").read()
        return p

    def metrics(self, name):
        code = ("import urllib.request\n"
                "print(urllib.request.urlopen('http://127.0.0.1:9900/metrics', timeout=1).read()"
                ".decode())")
        return self.topo.exec(name, "/usr/bin/python3", "-c", code).stdout.decode().splitlines()

    def state(self, name):
        p = self.lbs.get(name)
        if p is None or p.poll() is not None:
            return None
        c = self.admin(name, "/api/v1/cluster")
        return c and c["vrrp"]["state"]

    def holds_vip(self, name):
        return f"{VIP}/24" in self.topo.addresses(name)

    def one_master(self, timeout=5):
        def check():
            states = {n: self.state(n) for n in self.lbs if self.lbs[n].poll() is None}
            masters = [n for n, s in states.items() if s == "master"]
            return masters[0] if len(masters) == 1 and all(
                s in ("master", "backup") for s in states.values()) else None
        return netns.wait_until(check, timeout, "exactly one master")

    def client(self, seconds):
        out = self.tmp / f"client-{time.monotonic_ns()}.jsonl"
        p = self.topo.spawn("client", "/usr/bin/python3", str(self.tmp / "client.py"), str(out),
                            str(seconds))
        return p, out

    @staticmethod
    def answered(out, n=20):
        """Waits until the client has had n answers: its steady state before a fault."""
        def count():
            try:
                return sum(json.loads(line)["ok"] for line in open(out))
            except (OSError, ValueError):
                return 0
        netns.wait_until(lambda: count() >= n, 5, f"{n} answered requests")

    def kill_master_and_take_over(self, master, backup, label):
        """kill -9 of `master`'s process while the client runs: `backup` becomes the one master
        within the master-down interval (client-visible gap under 1.5 s), holds the VIP, and the
        VIP answers."""
        client, out = self.client(3.0)
        self.answered(out)
        os.kill(self.lbs[master].pid, signal.SIGKILL)
        self.lbs[master].wait(5)
        assert self.one_master() == backup
        client.wait(10)
        gap, n = self.gap(out)
        print(f"\n{label}: client-visible gap {gap * 1000:.0f} ms ({n} requests)")
        assert gap < 1.5, gap
        assert self.holds_vip(backup)
        assert self.http("client", f"http://{VIP}:8080/") == 200

    @staticmethod
    def gap(out):
        """Client-visible gap: first failed request to the next successful one (seconds)."""
        rows = [json.loads(line) for line in open(out)]
        first_fail = next((r["t"] for r in rows if not r["ok"]), None)
        if first_fail is None:
            return 0.0, len(rows)
        back = next((r["t"] for r in rows if r["ok"] and r["t"] > first_fail), None)
        assert back is not None, "the VIP never answered again"
        return back - first_fail, len(rows)


@pytest.fixture
def lab(topo, tandem_bin, tmp_path):
    return Lab(topo, tandem_bin, tmp_path)


def test_failover_on_kill_and_graceful_stop(lab):
    lab.start("lb1", 150)
    lab.start("lb2", 100)
    assert lab.one_master() == "lb1"
    assert lab.holds_vip("lb1") and not lab.holds_vip("lb2")
    assert lab.http("client", f"http://{VIP}:8080/") == 200
    # kill -9 of the master's process: lb2 takes over after the master-down interval.
    lab.kill_master_and_take_over("lb1", "lb2", "kill -9")
    # The takeover raised the failover alert on lb2 (the cold-start election did not).
    netns.wait_until(lambda: [a["rule"] for a in lab.admin("lb2", "/api/v1/alerts")["active"]]
                     == ["failover"], 3, "failover alert on lb2")
    # lb1 comes back (preempt on): its stale VIP is removed at start, then it takes over again.
    lab.start("lb1", 150)
    netns.wait_until(lambda: lab.state("lb1") == "master", 5, "lb1 master again")
    assert lab.one_master() == "lb1"
    netns.wait_until(lambda: not lab.holds_vip("lb2"), 3, "lb2 released the VIP")
    # lb2 is a backup again: its failover alert resolved; lb1 preempted, which is no failover.
    netns.wait_until(lambda: lab.admin("lb2", "/api/v1/alerts")["active"] == [], 3,
                     "failover alert resolved")
    assert lab.admin("lb1", "/api/v1/alerts")["active"] == []
    # Graceful stop of the master: priority 0, the backup takes over in Skew_Time.
    client, out = lab.client(2.0)
    lab.answered(out)
    lab.topo.stop(lab.lbs["lb1"], signal.SIGTERM)
    assert lab.one_master() == "lb2"
    client.wait(10)
    gap, n = lab.gap(out)
    print(f"graceful stop: client-visible gap {gap * 1000:.0f} ms ({n} requests)")
    assert gap < 0.5, gap
    assert not lab.holds_vip("lb1") and lab.holds_vip("lb2")
    assert lab.http("client", f"http://{VIP}:8080/") == 200


def test_partition_and_heal_converge_to_one_master(lab):
    lab.start("lb1", 150)
    lab.start("lb2", 100)
    assert lab.one_master() == "lb1"
    # Partition lb1 away: lb2 hears nothing and takes over; lb1 stays master on its side.
    lab.topo.partition("lb1", True)
    netns.wait_until(lambda: lab.state("lb2") == "master", 5, "lb2 master during the partition")
    assert lab.state("lb1") == "master"  # two masters, each alone
    assert lab.http("client", f"http://{VIP}:8080/") == 200
    # Heal: the two masters hear each other; the lower one steps down at once, the higher one
    # answers at once and re-announces the VIP with gratuitous ARPs.
    lab.topo.partition("lb1", False)
    netns.wait_until(lambda: lab.state("lb2") == "backup", 3, "lb2 steps down")
    assert lab.one_master() == "lb1"
    netns.wait_until(lambda: not lab.holds_vip("lb2"), 3, "lb2 released the VIP")
    netns.wait_until(lambda: lab.http("client", f"http://{VIP}:8080/") == 200, 3,
                     "the VIP answers after the heal")


def test_link_down_is_a_fault_and_the_backup_takes_over(lab):
    lab.start("lb1", 150)
    lab.start("lb2", 100)
    assert lab.one_master() == "lb1"
    lab.topo.link("lb1", False)
    netns.wait_until(lambda: lab.state("lb1") == "fault", 3, "lb1 in FAULT")
    assert not lab.holds_vip("lb1")
    netns.wait_until(lambda: lab.state("lb2") == "master", 3, "lb2 master")
    alerts = lab.admin("lb1", "/api/v1/alerts")["active"]
    assert [a["rule"] for a in alerts] == ["vrrp_fault"], alerts
    assert lab.http("client", f"http://{VIP}:8080/") == 200
    # The cable back: lb1 leaves FAULT and, with preempt, takes over again.
    lab.topo.link("lb1", True)
    netns.wait_until(lambda: lab.state("lb1") == "master", 5, "lb1 master again")
    assert lab.one_master() == "lb1"
    netns.wait_until(lambda: lab.admin("lb1", "/api/v1/alerts")["active"] == [], 3,
                     "fault alert resolved")


def test_malformed_adverts_change_nothing(lab):
    lab.start("lb1", 150)
    lab.start("lb2", 100)
    assert lab.one_master() == "lb1"
    # From the client's namespace: a VRRP packet with a higher priority but a bad checksum, one
    # with TTL 64, one with version 2. None may demote lb1.
    code = """
import socket, struct
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def vrrp(version, prio, good):
    body = struct.pack("!BBBBHH4s", (version << 4) | 1, 51, prio, 1, 10, 0,
                       socket.inet_aton("198.18.0.100"))
    pseudo = socket.inet_aton("198.18.0.2") + socket.inet_aton("224.0.0.18") + struct.pack("!BBH", 0, 112, len(body))
    c = csum(pseudo + body) ^ (0 if good else 0x5555)
    return body[:6] + struct.pack("!H", c) + body[8:]
for ttl, version, good in ((255, 3, False), (64, 3, True), (255, 2, True)):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth-client")
    for _ in range(20):
        s.sendto(vrrp(version, 254, good), ("224.0.0.18", 0))
    s.close()
"""
    lab.topo.exec("client", "/usr/bin/python3", "-c", code)
    netns.wait_until(lambda: sum(int(line.split()[-1]) for line in lab.metrics("lb2")
                                 if line.startswith("tandem_vrrp_adverts_rejected_total")) >= 40,
                     3, "rejections counted on lb2")
    assert lab.state("lb1") == "master" and lab.state("lb2") == "backup"
    assert lab.one_master() == "lb1"
    assert lab.http("client", f"http://{VIP}:8080/") == 200


def test_listener_on_the_vip_and_preempt_off(lab):
    vip_listen = f"{VIP}:8080"  # bound before this node holds the VIP (IP_FREEBIND)
    lab.start("lb2", 100, listen=vip_listen)
    assert lab.one_master() == "lb2"
    # A higher priority without preemption does not take over from a live master.
    lab.start("lb1", 150, preempt=False, listen=vip_listen)
    netns.wait_until(lambda: lab.state("lb1") == "backup", 3, "lb1 backup")
    assert lab.one_master() == "lb2"
    assert lab.http("client", f"http://{VIP}:8080/") == 200
    # The master dies: lb1 takes over and serves on its VIP listener.
    os.kill(lab.lbs["lb2"].pid, signal.SIGKILL)
    lab.lbs["lb2"].wait(5)
    netns.wait_until(lambda: lab.state("lb1") == "master", 3, "lb1 master")
    assert lab.one_master() == "lb1"
    netns.wait_until(lambda: lab.http("client", f"http://{VIP}:8080/") == 200, 3,
                     "the VIP answers through lb1's VIP listener")


def test_tracking_hands_over_when_the_backend_fails(lab):
    # lb1's backend (port 8001) is its own; lb2 uses the shared one (8000).
    be2 = lab.topo.spawn("be", "/usr/bin/python3", str(lab.tmp / "backend.py"), "8001")
    netns.wait_until(lambda: lab.http("lb1", "http://198.18.0.21:8001/") == 200, 5, "backend 2")
    lab.start("lb1", 150, backend_port=8001, track=True)
    lab.start("lb2", 100, track=True)
    assert lab.one_master() == "lb1"
    # lb1's only backend fails its checks: 150 - 60 = 90 < 100, and lb2 preempts.
    lab.topo.stop(be2, signal.SIGKILL)
    netns.wait_until(lambda: lab.state("lb2") == "master", 5, "lb2 master after tracking")
    assert lab.one_master() == "lb2"
    assert lab.http("client", f"http://{VIP}:8080/") == 200
    # The backend returns: lb1 is a better master again and takes over.
    lab.topo.spawn("be", "/usr/bin/python3", str(lab.tmp / "backend.py"), "8001")
    netns.wait_until(lambda: lab.state("lb1") == "master", 5, "lb1 master again")
    assert lab.one_master() == "lb1"


def test_tracking_hands_over_when_a_listener_stops_accepting(lab):
    # lb1 runs out of file descriptors (a connection flood under a low limit): its listener can
    # no longer take connections, the probe notices (it cannot even open a socket), 150 - 60 = 90
    # < 100, and lb2 preempts. When the flood ends, lb1 takes the VIP back.
    lb1 = lab.start("lb1", 150, track_listeners=True, nofile=64)
    lab.start("lb2", 100, track_listeners=True)
    assert lab.one_master() == "lb1"
    # `ip netns exec` and prlimit exec the next program: the pid is tandem's.
    used = len(os.listdir(f"/proc/{lb1.pid}/fd"))
    assert used < 50, f"lb1 already uses {used} descriptors"
    # Connections to lb1's own address, held open (not the VIP: they must land on lb1).
    flood = ("import socket, sys, time\n"
             "conns = []\n"
             "for i in range(120):\n"
             "    try:\n"
             "        conns.append(socket.create_connection(('198.18.0.11', 8080), timeout=1))\n"
             "    except OSError:\n"
             "        pass\n"
             "print(len(conns), flush=True)\n"
             "sys.stdin.read()\n")
    holder = lab.topo.spawn_piped("client", "/usr/bin/python3", "-c", flood)
    try:
        netns.wait_until(lambda: lab.state("lb2") == "master", 8, "lb2 master after lb1's "
                         "listener stopped accepting")
        netns.wait_until(lambda: not lab.holds_vip("lb1"), 3, "lb1 gave up the VIP")
        assert lab.holds_vip("lb2")
        assert lab.http("client", f"http://{VIP}:8080/") == 200
        log = open(lab.tmp / "lb1.log").read()
        assert "tracking: listener web: socket: Too many open files" in log, log[-2000:]
    finally:
        holder.stdin.close()  # the flood's connections close: lb1 has descriptors again
        holder.wait(10)
    netns.wait_until(lambda: lab.state("lb1") == "master", 8, "lb1 master again")
    assert lab.one_master() == "lb1"
    assert lab.http("client", f"http://{VIP}:8080/") == 200
