"""Issue 4: admin API, Prometheus metrics, alerts with webhooks, access log, `tandem ctl`.

Metrics are parsed by the real Prometheus parser (Debian's python3-prometheus-client) and
checked against the traffic each test sent itself."""
import http.server
import json
import os
import subprocess
import threading
import time

import pytest

from harness import (Client, Stoppable, backend_cfg, faulty, free_port, get, http_listener,
                     make_config, run_cli, server, wait_until)

prometheus_parser = pytest.importorskip(
    "prometheus_client.parser",
    reason="Debian package python3-prometheus-client is needed (scripts/install-deps.sh)")

TOKEN = "s3cret-token-for-tests-0123456789"


def scrape(t):
    """{(name, frozenset(labels)): value} of every sample, via the Prometheus text parser."""
    status, headers, body = t.admin("GET", "/metrics")
    assert status == 200, body[:300]
    assert headers["content-type"].startswith("text/plain; version=0.0.4"), headers
    out = {}
    for fam in prometheus_parser.text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(m, name, **labels):
    key = (name, frozenset(labels.items()))
    assert key in m, f"no sample {name}{labels}; have: " + ", ".join(
        sorted({k[0] for k in m if k[0].startswith(name.split('_total')[0][:20])}))
    return m[key]


def token_file(tmp_path):
    p = tmp_path / "admin.token"
    p.write_text(TOKEN + "\n")
    return str(p)


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 collecting the JSON bodies POSTed to it."""

    def __init__(self, fail_first=0):
        self.bodies = []
        self.attempts = 0
        self.fail_first = fail_first
        self.cond = threading.Condition()
        receiver = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(n)
                with receiver.cond:
                    receiver.attempts += 1
                    fail = receiver.attempts <= receiver.fail_first
                    if not fail:
                        receiver.bodies.append(json.loads(data))
                    receiver.cond.notify_all()
                self.send_response(503 if fail else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hits = [b for b in self.bodies if pred(b)]
                if hits:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"webhook: no {what} within {timeout}s; got {self.bodies}")
                self.cond.wait(left)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def receiver(pool, **kw):
    r = WebhookReceiver(**kw)
    pool.items.append(Stoppable(r.stop))
    return r


# ------------------------------------------------------------------------------------------
# Metrics against traffic

def test_metrics_count_the_traffic_sent(pool):
    a, b = pool.http("a"), pool.http("b")
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [backend_cfg("app", [server("a", a.port), server("b", b.port)])]))
    before = scrape(t)
    assert value(before, "tandem_listener_requests_total", listener="web") == 0
    sent_bytes = 0
    with Client(port) as c:
        for i in range(30):
            req = f"GET /ok/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            sent_bytes += len(req)
            c.send(req)
            assert c.read_response().status == 200
        for i in range(5):
            req = f"GET /status?code=503 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            sent_bytes += len(req)
            c.send(req)
            assert c.read_response().status == 503
        for i in range(4):
            req = f"GET /status?code=404 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            sent_bytes += len(req)
            c.send(req)
            assert c.read_response().status == 404
    # A malformed request: answered 400 by the listener, never routed to the backend.
    with Client(port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        assert c.read_response().status == 400
    m = scrape(t)
    assert value(m, "tandem_listener_requests_total", listener="web") == 40
    assert value(m, "tandem_listener_responses_total", listener="web", **{"class": "2xx"}) == 30
    assert value(m, "tandem_listener_responses_total", listener="web", **{"class": "5xx"}) == 5
    assert value(m, "tandem_listener_responses_total", listener="web", **{"class": "4xx"}) == 5
    # (+2: the harness's readiness probe connected once before `before`)
    assert value(m, "tandem_listener_connections_total", listener="web") == \
        value(before, "tandem_listener_connections_total", listener="web") + 2
    assert value(m, "tandem_listener_request_bytes_total", listener="web") >= sent_bytes
    assert value(m, "tandem_backend_requests_total", backend="app") == 39
    assert value(m, "tandem_backend_responses_total", backend="app", **{"class": "4xx"}) == 4
    assert value(m, "tandem_backend_request_duration_seconds_count", backend="app") == 39
    assert value(m, "tandem_backend_request_duration_seconds_bucket", backend="app",
                 le="+Inf") == 39
    per_server = [value(m, "tandem_server_requests_total", backend="app", server=s)
                  for s in ("a", "b")]
    assert sum(per_server) == 39 and min(per_server) >= 19, per_server  # round robin
    assert len(a.requests) + len(b.requests) == 39
    assert value(m, "tandem_server_responses_total", backend="app", server="a",
                 **{"class": "2xx"}) == len([r for r in a.requests if r.path.startswith("/ok")])
    # Bytes the servers received are the bytes Tandem counted as sent to them.
    wire = a.raw_total + b.raw_total
    counted = sum(value(m, "tandem_server_request_bytes_total", backend="app", server=s)
                  for s in ("a", "b"))
    assert counted == wire, (counted, wire)
    assert value(m, "tandem_backend_connect_duration_seconds_count", backend="app") >= 1
    assert value(m, "tandem_server_up", backend="app", server="a") == 1
    assert value(m, "tandem_server_health_state", backend="app", server="a", state="up") == 1
    assert value(m, "tandem_server_admin_state", backend="app", server="a", state="enabled") == 1
    assert value(m, "tandem_server_weight", backend="app", server="a") == 1
    assert value(m, "tandem_backend_healthy_servers", backend="app") == 2
    # The process.
    assert value(m, "tandem_process_resident_memory_bytes") > 1 << 20
    assert abs(value(m, "tandem_process_start_time_seconds") - time.time()) < 60
    assert value(m, "tandem_process_open_fds") >= 4
    assert value(m, "tandem_process_threads") >= 4  # main, 2 workers, health, admin
    with open(f"/proc/{t.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    assert abs(value(m, "tandem_process_cpu_seconds_total") - cpu) <= 0.05
    assert value(m, "tandem_config_revision") == 1
    # The clients have closed; Tandem sees the FINs a moment later.
    wait_until(lambda: value(scrape(t), "tandem_listener_active_connections", listener="web") == 0,
               timeout=3, what="no open client connection")


def test_metrics_count_health_checks_failures_and_retries(pool):
    good = faulty(pool, "good")
    bad = faulty(pool, "bad", health_status=500)
    dead_port = free_port()  # nothing listens: every connect fails
    port = free_port()
    t = pool.tandem(make_config(
        [http_listener("web", port, "app")],
        [backend_cfg("app", [server("good", good.port), server("bad", bad.port),
                             server("dead", dead_port)],
                     health={"active": {"type": "http", "path": "/healthz", "interval": "100ms",
                                        "timeout": "100ms", "rise": 1, "fall": 1}},
                     retries={"attempts": 1})]))
    def checked():
        m = scrape(t)
        return (value(m, "tandem_backend_healthy_servers", backend="app") == 1 and
                all(value(m, "tandem_server_health_checks_total", backend="app", server=s,
                          result=r) >= 1
                    for s, r in (("good", "passed"), ("bad", "failed"), ("dead", "failed"))))
    wait_until(checked, timeout=5, what="a check of every server, good up")
    m = scrape(t)
    assert value(m, "tandem_server_health_checks_total", backend="app", server="good",
                 result="passed") >= 1
    assert value(m, "tandem_server_health_checks_total", backend="app", server="bad",
                 result="failed") >= 1
    assert value(m, "tandem_server_health_state", backend="app", server="dead", state="down") == 1
    assert value(m, "tandem_server_up", backend="app", server="bad") == 0
    for _ in range(5):
        assert get(port, "/x").status == 200
    m = scrape(t)
    assert value(m, "tandem_server_requests_total", backend="app", server="good") == 5
    assert value(m, "tandem_server_requests_total", backend="app", server="bad") == 0


# ------------------------------------------------------------------------------------------
# The admin API

def test_admin_api_reads(pool, tmp_path):
    a, b = pool.http("a"), pool.http("b")
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [backend_cfg("app", [server("a", a.port),
                                                     server("b", b.port, weight=3)])],
                                node="lb-test"))
    for _ in range(8):
        assert get(port, "/").status == 200
    assert t.admin("GET", "/healthz")[0] == 200
    assert t.admin("GET", "/readyz")[0] == 200
    st = t.admin_json("/api/v1/status")
    assert st["node"] == "lb-test" and st["pid"] == t.pid and st["workers"] == 2
    assert st["config"]["revision"] == 1 and st["config"]["path"].endswith(".yaml")
    assert st["listeners"][0]["name"] == "web" and st["listeners"][0]["requests_total"] == 8
    assert st["process"]["resident_bytes"] > 0 and st["process"]["threads"] >= 4
    bk = t.admin_json("/api/v1/backends")["backends"][0]
    assert bk["name"] == "app" and bk["servers_healthy"] == 2 and bk["requests_total"] == 8
    names = {s["name"]: s for s in bk["servers"]}
    assert names["b"]["weight"] == 3 and names["b"]["configured_weight"] == 3
    assert names["a"]["state"] == "up" and names["a"]["admin"] == "enabled"
    assert names["a"]["requests_total"] + names["b"]["requests_total"] == 8
    assert names["a"]["address"] == f"127.0.0.1:{a.port}"
    assert t.admin_json("/api/v1/alerts") == {"active": [], "recent": []}
    assert t.admin_json("/api/v1/cluster")["mode"] == "standalone"
    status, _, body = t.admin("GET", "/api/v1/nope")
    assert status == 404 and b"no such endpoint" in body
    status, headers, _ = t.admin("DELETE", "/api/v1/status")
    assert status == 405 and "GET" in headers["allow"]
    # The time series gains a point every 2 s.
    wait_until(lambda: len(t.admin_json("/api/v1/timeseries")["t"]) >= 1, timeout=6,
               what="a time-series point")
    ts = t.admin_json("/api/v1/timeseries")
    assert ts["interval_seconds"] == 2
    for k in ("requests_per_second", "error_rate", "p50_ms", "p99_ms", "active_connections",
              "cpu_percent", "resident_bytes"):
        assert len(ts[k]) == len(ts["t"]), k
    # The dashboard is served from the binary.
    status, headers, body = t.admin("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<html" in body.lower()


def test_mutations_need_the_token_and_change_nothing_without_it(pool, tmp_path):
    a, b = pool.http("a"), pool.http("b")
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [backend_cfg("app", [server("a", a.port), server("b", b.port)])],
                                admin={"token_file": token_file(tmp_path)}))
    drain = "/api/v1/backends/app/servers/a/drain"
    for tok in (None, "wrong-token", TOKEN[:-1], TOKEN + "x", ""):
        status, headers, body = t.admin("POST", drain, token=tok)
        assert status == 401, (tok, status, body)
        assert headers.get("www-authenticate") == "Bearer"
    status, _, _ = t.admin("PUT", "/api/v1/backends/app/servers/a/weight", {"weight": 9},
                           token="nope")
    assert status == 401
    # Nothing changed: a still enabled with weight 1, and still takes its share.
    sa = t.admin_json("/api/v1/backends")["backends"][0]["servers"][0]
    assert sa["admin"] == "enabled" and sa["weight"] == 1
    a.reset(), b.reset()
    for _ in range(10):
        assert get(port, "/").status == 200
    assert len(a.requests) >= 3 and len(a.requests) + len(b.requests) == 10
    # With the token: drain takes a out of rotation.
    status, _, body = t.admin("POST", drain, token=TOKEN)
    assert status == 200 and json.loads(body)["admin"] == "draining", body
    wait_until(lambda: t.admin_json("/api/v1/backends")["backends"][0]["servers"][0]["admin"]
               == "draining", timeout=2, what="drain applied")
    a.reset(), b.reset()

    def only_b():
        for _ in range(6):
            get(port, "/")
        return len(a.requests) == 0
    wait_until(only_b, timeout=3, what="a drained")
    a.reset(), b.reset()
    for _ in range(6):
        assert get(port, "/").status == 200
    assert len(a.requests) == 0 and len(b.requests) == 6
    # Enable again, then a weight: 3:1.
    assert t.admin("POST", "/api/v1/backends/app/servers/a/enable", token=TOKEN)[0] == 200
    status, _, body = t.admin("PUT", "/api/v1/backends/app/servers/a/weight", {"weight": 3},
                              token=TOKEN)
    assert status == 200, body
    wait_until(lambda: value(scrape(t), "tandem_server_weight", backend="app", server="a") == 3,
               timeout=2, what="weight applied")
    sa = t.admin_json("/api/v1/backends")["backends"][0]["servers"][0]
    assert sa["admin"] == "enabled" and sa["weight"] == 3 and sa["configured_weight"] == 1
    a.reset(), b.reset()
    with Client(port) as c:
        for _ in range(40):
            assert c.request("GET", "/").status == 200
    assert abs(len(a.requests) - 30) <= 2 and abs(len(b.requests) - 10) <= 2, \
        (len(a.requests), len(b.requests))
    # Bad input: clear errors, nothing changes.
    for body in ({"weight": 0}, {"weight": 257}, {"weight": "3"}, "x", {}):
        status, _, resp = t.admin("PUT", "/api/v1/backends/app/servers/a/weight", body,
                                  token=TOKEN)
        assert status == 400, (body, status, resp)
    assert t.admin("POST", "/api/v1/backends/app/servers/zz/drain", token=TOKEN)[0] == 404
    assert t.admin("POST", "/api/v1/backends/zz/servers/a/drain", token=TOKEN)[0] == 404
    assert t.admin("GET", drain, token=TOKEN)[0] == 405
    assert t.admin_json("/api/v1/backends")["backends"][0]["servers"][0]["weight"] == 3
    # Every change left an event.
    kinds = [e["kind"] for e in events_via_ctl(t, 3)]
    assert kinds == ["draining", "enabled", "weight"], kinds


def events_via_ctl(t, n):
    r = subprocess.run([t.binary, "ctl", "--admin", f"http://127.0.0.1:{t.admin_port}", "events",
                        "--max-events", str(n)], capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.decode().splitlines()]


def test_mutations_are_refused_without_a_configured_token(pool):
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [backend_cfg("app", [server("a", a.port)])]))
    status, _, body = t.admin("POST", "/api/v1/backends/app/servers/a/drain", token="anything")
    assert status == 403 and b"token_file" in body
    assert t.admin_json("/api/v1/backends")["backends"][0]["servers"][0]["admin"] == "enabled"


def test_non_loopback_admin_needs_a_token(tandem_bin, tmp_path):
    port, admin_port = free_port(), free_port()
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"""node: {{id: t1}}
admin: {{listen: "0.0.0.0:{admin_port}"}}
listeners: [{{name: web, listen: 127.0.0.1:{port}, mode: http, backend: app}}]
backends: [{{name: app, servers: [{{name: a, address: 127.0.0.1:9}}]}}]
""")
    for cmd in ("check", "run"):
        r = run_cli(tandem_bin, cmd, "-c", str(cfg))
        out = (r.stdout + r.stderr).decode()
        assert r.returncode == 1 and f"{cfg}:2:" in out and "token_file" in out, out
    # A short or unreadable token file is refused as well.
    short = tmp_path / "short.token"
    short.write_text("abc\n")
    cfg.write_text(cfg.read_text().replace('listen: "0.0.0.0', f'token_file: {short}, listen: "0.0.0.0'))
    r = run_cli(tandem_bin, "check", "-c", str(cfg))
    assert r.returncode == 1 and b"16..1024" in r.stdout + r.stderr, r.stderr


def test_admin_port_in_use_refuses_to_start(pool, tandem_bin, tmp_path):
    a = pool.http("a")
    cfg = make_config([http_listener("web", free_port(), "app")],
                      [backend_cfg("app", [server("a", a.port)])])
    first = pool.tandem(cfg, name="first")
    cfg2 = dict(cfg, listeners=[http_listener("web", free_port(), "app")])
    path = tmp_path / "second.yaml"
    from harness import to_yaml
    path.write_text(to_yaml(cfg2) + "\n")
    r = run_cli(tandem_bin, "run", "-c", str(path), timeout=10)
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1 and "admin listener" in out and "in use" in out, out
    assert first.admin("GET", "/healthz")[0] == 200


def test_ctl_drives_the_api(pool, tmp_path):
    a = pool.http("a")
    port = free_port()
    tf = token_file(tmp_path)
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [backend_cfg("app", [server("a", a.port), server("b", a.port)])],
                                admin={"token_file": tf}))
    url = f"http://127.0.0.1:{t.admin_port}"

    def ctl(*args, env=None):
        return subprocess.run([t.binary, "ctl", "--admin", url, *args], capture_output=True,
                              timeout=10, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, **(env or {})))
    r = ctl("status")
    assert r.returncode == 0 and json.loads(r.stdout)["node"] == "t1"
    r = ctl("backends")
    assert r.returncode == 0 and len(json.loads(r.stdout)["backends"][0]["servers"]) == 2
    r = ctl("metrics")
    assert r.returncode == 0 and b"tandem_listener_requests_total" in r.stdout
    r = ctl("drain", "app", "b")
    assert r.returncode == 1 and b"401" not in r.stdout and b"token" in r.stderr
    r = ctl("--token-file", tf, "drain", "app", "b")
    assert r.returncode == 0, r.stderr
    r = ctl("weight", "app", "a", "5", env={"TANDEM_TOKEN": TOKEN})
    assert r.returncode == 0, r.stderr
    r = ctl("--token", TOKEN, "disable", "app", "nosuch")
    assert r.returncode == 1
    r = ctl("get", "/api/v1/alerts")
    assert r.returncode == 0 and json.loads(r.stdout)["active"] == []
    srv = {s["name"]: s for s in json.loads(ctl("backends").stdout)["backends"][0]["servers"]}
    assert srv["b"]["admin"] == "draining" and srv["a"]["weight"] == 5
    r = subprocess.run([t.binary, "ctl", "--admin", f"http://127.0.0.1:{free_port()}", "status"],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and b"cannot connect" in r.stderr
    r = ctl("bogus")
    assert r.returncode == 2 and b"usage" in r.stderr


# ------------------------------------------------------------------------------------------
# Alerts

def test_server_down_alert_reaches_the_webhook_and_resolves(pool):
    hook = receiver(pool, fail_first=1)  # the first delivery fails: retried with backoff
    a = faulty(pool, "a")
    b = faulty(pool, "b")
    port = free_port()
    t = pool.tandem(make_config(
        [http_listener("web", port, "app")],
        [backend_cfg("app", [server("a", a.port), server("b", b.port)],
                     health={"active": {"type": "http", "path": "/healthz", "interval": "100ms",
                                        "timeout": "100ms", "rise": 1, "fall": 1}})],
        admin={}) | {"alerts": {"webhooks": [{"url": f"http://127.0.0.1:{hook.port}/hook"}]}})
    wait_until(lambda: t.admin_json("/api/v1/backends")["backends"][0]["servers_healthy"] == 2,
               timeout=5, what="both up")
    b.health_status = 503
    fired = hook.wait_for(lambda x: x["rule"] == "server_down" and x["state"] == "firing",
                          timeout=8, what="server_down firing")
    assert fired[0]["subject"] == "app/b" and fired[0]["node"] == "t1", fired
    assert fired[0]["severity"] == "critical" and fired[0]["resolved_at"] is None
    active = t.admin_json("/api/v1/alerts")["active"]
    assert [x["subject"] for x in active] == ["app/b"], active
    b.health_status = 200
    resolved = hook.wait_for(lambda x: x["rule"] == "server_down" and x["state"] == "resolved",
                             timeout=8, what="server_down resolved")
    assert resolved[0]["id"] == fired[0]["id"] and resolved[0]["resolved_at"]
    wait_until(lambda: t.admin_json("/api/v1/alerts")["active"] == [], timeout=3,
               what="no active alert")
    # Once each: the steady states in between sent nothing more.
    time.sleep(1.5)  # a window in which a flapping rule would have fired again (not a sync)
    assert len([x for x in hook.bodies if x["rule"] == "server_down"]) == 2, hook.bodies
    assert hook.attempts == 3  # one refused, then the two notifications
    m = scrape(t)
    assert value(m, "tandem_webhook_notifications_total", result="delivered") == 2
    assert value(m, "tandem_alerts_fired_total") == 1
    log = t.stderr_text()
    assert "alert=server_down firing app/b" in log and "alert=server_down resolved app/b" in log


def test_error_rate_alert(pool):
    hook = receiver(pool)
    a = faulty(pool, "a")
    port = free_port()
    cfg = make_config([http_listener("web", port, "app")], [backend_cfg("app", [server("a", a.port)])])
    cfg["alerts"] = {"webhooks": [{"url": f"http://127.0.0.1:{hook.port}/"}],
                     "rules": {"error_rate": {"above": "20%", "for": "3s", "min_requests": 10}}}
    t = pool.tandem(cfg)
    with Client(port) as c:
        for _ in range(12):
            assert c.request("GET", "/status?code=500").status == 500
        for _ in range(12):
            assert c.request("GET", "/").status == 200
    fired = hook.wait_for(lambda x: x["rule"] == "error_rate", timeout=5, what="error_rate")
    assert fired[0]["subject"] == "app" and fired[0]["state"] == "firing"
    assert 0.45 <= fired[0]["value"] <= 0.55, fired[0]
    # Errors age out of the 3 s window: with clean traffic the alert resolves.
    deadline = time.monotonic() + 10
    with Client(port) as c:
        while time.monotonic() < deadline and not any(
                x["rule"] == "error_rate" and x["state"] == "resolved" for x in hook.bodies):
            for _ in range(10):
                assert c.request("GET", "/").status == 200
            time.sleep(0.2)  # paces the clean traffic; the check above is the synchronisation
    hook.wait_for(lambda x: x["rule"] == "error_rate" and x["state"] == "resolved", timeout=1,
                  what="error_rate resolved")


# ------------------------------------------------------------------------------------------
# Access log

def test_access_log_lines(pool, tmp_path):
    a = pool.http("a")
    port = free_port()
    cfg = make_config([http_listener("web", port, "app")], [backend_cfg("app", [server("a", a.port)])])
    cfg["access_log"] = {"path": "access.log"}  # relative: next to the config file
    t = pool.tandem(cfg)
    assert get(port, "/hello?x=1").status == 200
    body = b"x" * 1000
    assert get(port, "/sink", method="POST", body=body).status == 200
    with Client(port) as c:
        c.send(b"GET /\x01bad HTTP/1.1\r\nHost: x\r\n\r\n")
        assert c.read_response().status == 400
    path = os.path.join(t.workdir, "access.log")

    def lines():
        try:
            with open(path) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []
    wait_until(lambda: len(lines()) == 3, timeout=3, what="3 access log lines")
    by_path = {l["path"]: l for l in lines()}
    ok = by_path["/hello?x=1"]
    assert ok["method"] == "GET" and ok["status"] == 200 and ok["listener"] == "web"
    assert ok["backend"] == "app" and ok["server"] == "a" and ok["client"] == "127.0.0.1"
    assert ok["bytes_out"] > 0 and ok["bytes_in"] > 0 and ok["retries"] == 0
    assert ok["total_ms"] >= ok["first_byte_ms"] >= 0 and ok["queue_ms"] >= 0
    assert ok["time"].endswith("Z") and ok["time"][:4].isdigit()
    post = by_path["/sink"]
    assert post["method"] == "POST" and post["bytes_in"] >= 1000
    bad = [l for l in lines() if l["status"] == 400]
    assert len(bad) == 1 and bad[0]["server"] is None
    m = scrape(t)
    assert value(m, "tandem_access_log_lines_total", result="written") == 3
    assert value(m, "tandem_access_log_lines_total", result="dropped") == 0
    # Rotation: rename, SIGUSR1, and the next lines go to a new file at the configured path.
    os.rename(path, path + ".1")
    import signal as _signal
    os.kill(t.pid, _signal.SIGUSR1)
    wait_until(lambda: "access log reopened" in t.stderr_text(), timeout=3, what="reopen logged")

    def rotated():
        assert get(port, "/after-rotation").status == 200
        return any(l["path"] == "/after-rotation" for l in lines())
    wait_until(rotated, timeout=3, what="a line in the new file")
    with open(path + ".1") as f:  # the reopen happens at the writer's next round: a request
        old = [json.loads(line) for line in f]  # sent before it may still land in the old file
    assert {"/hello?x=1", "/sink"} <= {l["path"] for l in old} and len(old) >= 3


def test_access_log_on_a_full_disk_drops_lines_and_keeps_serving(pool):
    a = pool.http("a")
    port = free_port()
    cfg = make_config([http_listener("web", port, "app")], [backend_cfg("app", [server("a", a.port)])])
    cfg["access_log"] = {"path": "/dev/full"}
    t = pool.tandem(cfg)
    with Client(port) as c:
        for _ in range(50):
            assert c.request("GET", "/").status == 200
    wait_until(lambda: value(scrape(t), "tandem_access_log_lines_total", result="dropped") == 50,
               timeout=3, what="50 dropped lines")
    assert value(scrape(t), "tandem_access_log_lines_total", result="written") == 0


def test_p99_latency_alert_and_backend_down(pool):
    hook = receiver(pool)
    a = faulty(pool, "a")
    port = free_port()
    cfg = make_config([http_listener("web", port, "app")], [backend_cfg(
        "app", [server("a", a.port)],
        health={"active": {"type": "http", "path": "/healthz", "interval": "100ms",
                           "timeout": "100ms", "rise": 1, "fall": 1}})])
    cfg["alerts"] = {"webhooks": [{"url": f"http://127.0.0.1:{hook.port}/"}],
                     "rules": {"p99_latency": {"above": "50ms", "for": "2s", "min_requests": 5}}}
    t = pool.tandem(cfg)
    wait_until(lambda: t.admin_json("/api/v1/backends")["backends"][0]["servers_healthy"] == 1,
               timeout=5, what="a up")
    with Client(port) as c:
        for _ in range(8):
            assert c.request("GET", "/slow?ms=120").status == 200
    fired = hook.wait_for(lambda x: x["rule"] == "p99_latency", timeout=5, what="p99 alert")
    assert fired[0]["subject"] == "app" and 100 <= fired[0]["value"] <= 250, fired[0]
    # The only server fails its checks: server_down and backend_down both fire.
    a.health_status = 500
    hook.wait_for(lambda x: x["rule"] == "backend_down" and x["state"] == "firing", timeout=5,
                  what="backend_down")
    hook.wait_for(lambda x: x["rule"] == "server_down" and x["subject"] == "app/a", timeout=5,
                  what="server_down")
    assert {x["rule"] for x in t.admin_json("/api/v1/alerts")["active"]} >= {
        "backend_down", "server_down"}
