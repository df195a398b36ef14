"""Active-active (DESIGN section 6): two Tandem instances serve one VIP at the same time behind a
router that spreads connections over both with an ECMP route (Linux multipath, L4 hash); sticky
sessions live in the replicated state table (mode: table) or in a cookie both instances can read
(mode: cookie, same cluster secret). Killing one instance and removing its route loses no session.

Topology (network namespaces made by the test, DESIGN section 7; nothing in the root namespace):

    client 198.18.1.2 --p2p-- 198.18.1.1 router 198.18.0.1 --bridge-- lb1 .11, lb2 .12 (VIP .100
    on lo, peers replication to each other), be .21 .22 .23 (one namespace, three servers)

The router holds 198.18.0.100/32 nexthop via .11 nexthop via .12 with
fib_multipath_hash_policy=1, so each new client connection (a new source port) is hashed to
either instance. A backend answers "<its name> <the address it was connected from>", so every
response names both the server and the instance that proxied it."""
import json
import os
import signal
import textwrap
import time

import netns

VIP = "198.18.0.100"
LBS = {"lb1": "198.18.0.11", "lb2": "198.18.0.12"}
BACKENDS = {"be1": "198.18.0.21", "be2": "198.18.0.22", "be3": "198.18.0.23"}
TABLE_USERS = [f"user-{i}" for i in range(40)]   # sticky: {mode: table, key: header:X-User}
COOKIE_USERS = [f"cuser-{i}" for i in range(20)]  # sticky: {mode: cookie}, own cookie jar each

BACKEND = textwrap.dedent("""
    import http.server, sys, threading
    def serve(name, ip):
        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            def do_GET(self):
                body = f"{name} {self.client_address[0]}\\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Backend", name)
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *a):
                pass
        http.server.ThreadingHTTPServer((ip, 8000), H).serve_forever()
    pairs = [a.split("=") for a in sys.argv[1:]]
    for name, ip in pairs[1:]:
        threading.Thread(target=serve, args=(name, ip), daemon=True).start()
    serve(*pairs[0])
""")

# Requests to the VIP, one new TCP connection each (so ECMP hashes every one afresh), round after
# round over the users of the plan; one JSON line per request. Without a marker it does `rounds`
# rounds; with one it runs until the marker file exists and then does `rounds` more. Bounded by
# max_seconds. Cookie users keep a jar (a file, so it lasts from one run to the next).
CLIENT = textwrap.dedent("""
    import json, os, socket, sys, time
    out, plan = sys.argv[1], json.load(open(sys.argv[2]))
    jar = json.load(open(plan["jar"])) if os.path.exists(plan["jar"]) else {}
    marker, rounds = plan.get("marker"), plan["rounds"]
    end = time.monotonic() + plan["max_seconds"]

    def request(user, port, kind):
        head = f"GET /u/{user} HTTP/1.1\\r\\nHost: vip\\r\\nConnection: close\\r\\n"
        if kind == "table":
            head += f"X-User: {user}\\r\\n"
        elif user in jar:
            head += f"Cookie: {jar[user]}\\r\\n"
        data = b""
        with socket.create_connection((plan["vip"], port), timeout=0.5) as s:
            s.settimeout(1.0)
            s.sendall((head + "\\r\\n").encode())
            while len(data) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        lines = head.decode("latin-1").split("\\r\\n")
        if not lines[0].startswith("HTTP/1.1 200"):
            return None
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "set-cookie":
                jar[user] = v.strip().split(";")[0]
        name, via = body.decode().split()
        return name, via

    r = post = 0
    with open(out, "w", buffering=1) as f:
        while time.monotonic() < end:
            if marker is None:
                if r >= rounds:
                    break
            elif os.path.exists(marker):
                if post >= rounds:
                    break
                post += 1
            for user, port, kind in plan["users"]:
                after = marker is not None and os.path.exists(marker)
                t0 = time.monotonic()
                try:
                    res = request(user, port, kind)
                except (OSError, ValueError):
                    res = None
                f.write(json.dumps({"t": t0, "round": r, "user": user, "ok": res is not None,
                                    "backend": res and res[0], "via": res and res[1],
                                    "after": after}) + "\\n")
            r += 1
    json.dump(jar, open(plan["jar"], "w"))
""")


def lb_config(name):
    servers = ", ".join(f'{{name: {n}, address: "{ip}:8000"}}' for n, ip in BACKENDS.items())
    peers = ", ".join(f'{{id: {n}, address: "{ip}:7946"}}' for n, ip in LBS.items())
    return textwrap.dedent(f"""
        node: {{id: {name}}}
        workers: 2
        drain_timeout: 1s
        admin: {{listen: 127.0.0.1:9900}}
        listeners:
          - {{name: web, listen: "0.0.0.0:8080", backend: app}}
          - {{name: webc, listen: "0.0.0.0:8081", backend: appc}}
        backends:
          - name: app
            sticky: {{mode: table, key: "header:X-User", ttl: 5m}}
            servers: [{servers}]
          - name: appc
            sticky: {{mode: cookie, cookie: TANDEM}}
            servers: [{servers}]
        cluster:
          mode: active_active
          listen: "{LBS[name]}:7946"
          peers: [{peers}]
          secret_file: cluster.secret
    """)


class ActiveActiveLab:
    def __init__(self, topo, tandem_bin, tmp_path):
        self.topo, self.bin, self.tmp = topo, tandem_bin, tmp_path
        for name, ip in LBS.items():
            topo.add_host(name, ip)
        topo.add_host("be", BACKENDS["be1"])
        for ip in list(BACKENDS.values())[1:]:
            topo.ns("be", "addr", "add", f"{ip}/24", "dev", "eth-be")
        topo.add_host("router", "198.18.0.1")
        topo.add_link("router", "198.18.1.1", "client", "198.18.1.2")
        topo.ns("client", "route", "add", "default", "via", "198.18.1.1")
        topo.sysctl("router", "net.ipv4.ip_forward", 1)
        topo.sysctl("router", "net.ipv4.fib_multipath_hash_policy", 1)  # L4: ports count
        self.route("lb1", "lb2")
        for name in LBS:
            topo.ns(name, "addr", "add", f"{VIP}/32", "dev", "lo")
            topo.ns(name, "route", "add", "198.18.1.0/24", "via", "198.18.0.1")
        (tmp_path / "backend.py").write_text(BACKEND)
        (tmp_path / "client.py").write_text(CLIENT)
        (tmp_path / "cluster.secret").write_text("e2e-active-active-shared-secret\n")
        topo.spawn("be", "/usr/bin/python3", str(tmp_path / "backend.py"),
                   *(f"{n}={ip}" for n, ip in BACKENDS.items()))
        for ip in BACKENDS.values():
            netns.wait_until(lambda: self.get("lb1", f"http://{ip}:8000/") == 200, 5,
                             f"backend {ip} up")
        self.lbs, self.logs = {}, {}
        self.runs = 0

    def route(self, *lbs):
        """The router's route to the VIP: one nexthop per named instance (multipath when two)."""
        hops = [w for n in lbs for w in ("nexthop", "via", LBS[n], "dev", "eth-router")]
        if len(lbs) == 1:
            hops = ["via", LBS[lbs[0]], "dev", "eth-router"]
        self.topo.ns("router", "route", "replace", f"{VIP}/32", *hops)

    def get(self, host, url):
        return self.topo.http_status(host, url)

    def admin(self, name, path):
        return self.topo.admin_json(name, path)

    def log(self, name):
        return open(self.logs[name]).read()[-3000:]

    def start(self, name):
        conf = self.tmp / f"{name}.yaml"
        conf.write_text(lb_config(name))
        self.logs[name] = self.tmp / f"{name}-{time.monotonic_ns()}.log"  # one per start
        p = self.topo.spawn(name, self.bin, "run", "-c", str(conf), log=str(self.logs[name]))
        self.lbs[name] = p
        netns.wait_until(lambda: self.admin(name, "/api/v1/status") is not None
                         or p.poll() is not None, 5, f"{name} admin")
        assert p.poll() is None, self.log(name)

    def peer_connected(self, name):
        c = self.admin(name, "/api/v1/cluster")
        return c is not None and [p["state"] for p in c["peers"]] == ["connected"]

    def alerts(self, name):
        return [a["rule"] for a in self.admin(name, "/api/v1/alerts")["active"]]

    def entries(self, name):
        return self.admin(name, "/api/v1/cluster")["state"]["entries"]

    def requests_served(self, name):
        return sum(l["requests_total"] for l in self.admin(name, "/api/v1/status")["listeners"])

    def client(self, rounds, marker=None, max_seconds=15):
        """Starts the client; returns (process, output file)."""
        self.runs += 1
        users = ([[u, 8080, "table"] for u in TABLE_USERS] +
                 [[u, 8081, "cookie"] for u in COOKIE_USERS])
        plan = self.tmp / f"plan-{self.runs}.json"
        plan.write_text(json.dumps({"vip": VIP, "users": users, "rounds": rounds,
                                    "marker": marker and str(marker),
                                    "max_seconds": max_seconds, "jar": str(self.tmp / "jar")}))
        out = self.tmp / f"client-{self.runs}.jsonl"
        p = self.topo.spawn("client", "/usr/bin/python3", str(self.tmp / "client.py"), str(out),
                            str(plan), log=str(self.tmp / f"client-{self.runs}.log"))
        return p, out

    def run_client(self, rounds):
        p, out = self.client(rounds)
        assert p.wait(30) == 0, open(self.tmp / f"client-{self.runs}.log").read()
        return rows(out)


def rows(out):
    try:
        return [json.loads(line) for line in open(out) if line.endswith("\n")]
    except FileNotFoundError:
        return []


def servers_by_user(rs):
    seen = {}
    for r in rs:
        if r["ok"]:
            seen.setdefault(r["user"], set()).add(r["backend"])
    return seen


def test_sessions_survive_losing_an_instance_behind_ecmp(topo, tandem_bin, tmp_path):
    t_start = time.monotonic()
    lab = ActiveActiveLab(topo, tandem_bin, tmp_path)
    lab.start("lb1")
    lab.start("lb2")
    for name in LBS:
        netns.wait_until(lambda: lab.peer_connected(name), 5, f"{name}'s peer link up")
        c = lab.admin(name, "/api/v1/cluster")
        assert (c["mode"], c["role"]) == ("active_active", "active"), c
    users = len(TABLE_USERS) + len(COOKIE_USERS)

    # Every user's first request (its session starts on whichever instance ECMP picked); then
    # the sticky entries written by either instance reach the other one.
    seed = lab.run_client(1)
    assert len(seed) == users and all(r["ok"] for r in seed), [r for r in seed if not r["ok"]]
    netns.wait_until(lambda: min(lab.entries(n) for n in LBS) >= len(TABLE_USERS)
                     and lab.entries("lb1") == lab.entries("lb2"), 5,
                     "both state tables hold every table user's sticky entry")

    # (a) + (b): many requests per user, each on a new connection.
    steady = seed + lab.run_client(8)
    assert all(r["ok"] for r in steady), [r for r in steady if not r["ok"]]
    vias = {r["via"] for r in steady}
    assert vias == set(LBS.values()), f"ECMP did not spread over both instances: {vias}"
    per_lb = {n: sum(r["via"] == ip for r in steady) for n, ip in LBS.items()}
    for name in LBS:
        # Each instance's own count (its admin API, inside its namespace) includes what the
        # client saw through it (the readiness probes add to it).
        served = lab.requests_served(name)
        assert served >= per_lb[name], (name, served, per_lb)
        assert per_lb[name] >= 0.15 * len(steady), per_lb
    mapping = servers_by_user(steady)
    assert all(len(s) == 1 for s in mapping.values()), \
        {u: s for u, s in mapping.items() if len(s) > 1}
    mapping = {u: next(iter(s)) for u, s in mapping.items()}
    both = {u for u in mapping if len({r["via"] for r in steady if r["user"] == u}) == 2}
    assert len(both) >= 0.75 * users, f"only {len(both)} users went through both instances"
    assert len(set(mapping.values())) == 3, f"sessions use too few servers: {mapping}"
    print(f"\nsteady: {len(steady)} requests, lb1 {per_lb['lb1']} / lb2 {per_lb['lb2']}; "
          f"{len(both)}/{users} users served by both instances, each always on one server")

    # (c) kill -9 lb1 while the client runs, then take its nexthop out of the router's route.
    marker = tmp_path / "switched"
    client, out = lab.client(3, marker=marker, max_seconds=20)
    netns.wait_until(lambda: len(rows(out)) >= users or client.poll() is not None, 10,
                     "one round of the client before the fault")
    assert client.poll() is None
    t_kill = time.monotonic()
    os.kill(lab.lbs["lb1"].pid, signal.SIGKILL)
    lab.lbs["lb1"].wait(5)
    lab.route("lb2")
    t_switch = time.monotonic()
    marker.write_text("")
    assert client.wait(30) == 0
    fail = rows(out)
    failed = [r for r in fail if not r["ok"]]
    after = [r for r in fail if r["after"]]
    lost = {u for u, s in servers_by_user(fail).items() if s != {mapping[u]}}
    print(f"failover: {len(fail)} requests, {len(failed)} failed during the switch "
          f"(kill -9 to route replaced: {(t_switch - t_kill) * 1000:.1f} ms), "
          f"sessions lost = {len(lost)} of {users}; {len(after)} requests after the switch")
    assert not lost, {u: (mapping[u], servers_by_user(fail)[u]) for u in lost}
    # Only requests that met lb1 dead or its route still in place may fail.
    assert all(t_kill - 1.5 <= r["t"] <= t_switch for r in failed), failed
    assert len(failed) <= 20, failed
    # After the switch: every user, every request answered by lb2, on the same server as before.
    assert len(after) >= 3 * users
    assert all(r["ok"] and r["via"] == LBS["lb2"] for r in after), \
        [r for r in after if not r["ok"] or r["via"] != LBS["lb2"]]
    assert {r["user"] for r in after} == set(mapping)
    assert lab.lbs["lb2"].poll() is None, lab.log("lb2")
    netns.wait_until(lambda: lab.alerts("lb2") == ["peer_down"], 3, "peer_down alert on lb2")

    # (d) lb1 comes back with an empty table: the full sync from lb2 gives it every entry, also
    # those lb1 itself wrote before it died; then its route returns and both serve again.
    lab.start("lb1")
    for name in LBS:
        netns.wait_until(lambda: lab.peer_connected(name), 5, f"{name}'s peer link up again")
    netns.wait_until(lambda: lab.entries("lb1") >= len(TABLE_USERS)
                     and lab.entries("lb1") == lab.entries("lb2"), 5,
                     "lb1's table refilled by the full sync")
    lab.route("lb1", "lb2")
    back = lab.run_client(3)
    assert all(r["ok"] for r in back), [r for r in back if not r["ok"]]
    assert {r["via"] for r in back} == set(LBS.values())
    lost_back = {u for u, s in servers_by_user(back).items() if s != {mapping[u]}}
    print(f"lb1 back: {len(back)} requests, {sum(r['via'] == LBS['lb1'] for r in back)} via "
          f"lb1, sessions lost = {len(lost_back)}")
    assert not lost_back, lost_back
    netns.wait_until(lambda: lab.alerts("lb2") == [], 3, "peer_down resolved on lb2")
    print(f"total {time.monotonic() - t_start:.1f} s")
