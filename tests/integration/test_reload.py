"""Issue 7, item 1: hitless reload of the config file (SIGHUP).

A reload validates the new file, keeps the sockets of listeners whose address stays, opens new
ones, closes removed ones, lets in-flight requests finish on the old config, and keeps health
state, admin states and counters of unchanged servers. A bad file is rejected with FILE:LINE and
the running config stays."""
import os
import signal
import socket
import threading

from harness import (Client, backend_cfg, faulty, free_port, get, http_listener, load,
                     make_config, server, to_yaml, wait_until)


def write(t, cfg):
    t.config = cfg
    t.write_config()


def reload(t, cfg=None, expect_revision=None):
    """Writes cfg (if given), sends SIGHUP, waits for the revision to change; returns it."""
    before = t.admin_json("/api/v1/status")["config"]["revision"]
    if cfg is not None:
        write(t, cfg)
    os.kill(t.pid, signal.SIGHUP)
    want = expect_revision or before + 1
    wait_until(lambda: t.admin_json("/api/v1/status")["config"]["revision"] == want, timeout=5,
               what=f"config revision {want}")
    return want


def test_reload_changes_backends_and_keeps_the_listener_socket(pool):
    a, b = pool.http("a"), pool.http("b")
    port = free_port()
    cfg = make_config([http_listener("web", port, "app")], [backend_cfg("app", [server("a", a.port)])])
    t = pool.tandem(cfg)
    # A keep-alive connection opened before the reload...
    c = Client(port)
    assert c.request("GET", "/").get("x-backend") == "a"
    cfg2 = dict(cfg, backends=[backend_cfg("app", [server("b", b.port)])])
    assert reload(t, cfg2) == 2
    # ...is still served, and its next request follows the new config.
    assert c.request("GET", "/").get("x-backend") == "b"
    c.close()
    assert get(port, "/").get("x-backend") == "b"
    # The revision shows in the API once published; the line is logged once every worker runs it.
    wait_until(lambda: "config revision 2 applied" in t.stderr_text(), timeout=5,
               what="the 'applied' log line")
    m = t.admin_json("/api/v1/status")
    assert m["config"]["source"] == "file" and m["config"]["path"] == t.config_path


def test_bad_config_is_rejected_and_the_old_one_keeps_serving(pool):
    a = pool.http("a")
    port = free_port()
    cfg = make_config([http_listener("web", port, "app")], [backend_cfg("app", [server("a", a.port)])])
    t = pool.tandem(cfg)
    with open(t.config_path, "w") as f:
        f.write(to_yaml(cfg) + "\n" + "bogus_key: 1\n")
    bad_line = len((to_yaml(cfg) + "\n").splitlines()) + 1
    os.kill(t.pid, signal.SIGHUP)
    wait_until(lambda: "reload rejected" in t.stderr_text(), timeout=5, what="rejection logged")
    assert f"{t.config_path}:{bad_line}: unknown key 'bogus_key'" in t.stderr_text()
    assert t.admin_json("/api/v1/status")["config"]["revision"] == 1
    assert get(port, "/").status == 200
    wait_until(lambda: [x["rule"] for x in t.admin_json("/api/v1/alerts")["active"]] ==
               ["config_rejected"], timeout=3, what="config_rejected alert")
    # A good file again: applied, and the alert resolves.
    assert reload(t, cfg) == 2
    wait_until(lambda: t.admin_json("/api/v1/alerts")["active"] == [], timeout=3,
               what="alert resolved")
    # A listener on a port that is taken: rejected as a whole, nothing changes.
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        cfg3 = dict(cfg, listeners=cfg["listeners"] + [
            http_listener("extra", busy.getsockname()[1], "app")])
        write(t, cfg3)
        os.kill(t.pid, signal.SIGHUP)
        wait_until(lambda: t.stderr_text().count("reload rejected") == 2, timeout=5,
                   what="second rejection")
        assert "extra" in t.stderr_text().split("reload rejected")[-1]
        assert t.admin_json("/api/v1/status")["config"]["revision"] == 2
        assert get(port, "/").status == 200
    finally:
        busy.close()


def test_listeners_added_and_removed(pool):
    a = pool.http("a")
    p1, p2 = free_port(), free_port()
    cfg = make_config([http_listener("one", p1, "app")], [backend_cfg("app", [server("a", a.port)])])
    t = pool.tandem(cfg)
    cfg2 = dict(cfg, listeners=[http_listener("two", p2, "app")])
    reload(t, cfg2)
    assert get(p2, "/").status == 200

    def refused():
        try:
            socket.create_connection(("127.0.0.1", p1), timeout=1).close()
            return False
        except OSError:
            return True
    assert refused(), "the removed listener still accepts"
    names = [l["name"] for l in t.admin_json("/api/v1/status")["listeners"]]
    assert names == ["two"]


def test_in_flight_request_finishes_on_the_old_config(pool):
    a, b = pool.http("a"), pool.http("b")
    port = free_port()
    cfg = make_config([http_listener("web", port, "app")], [backend_cfg("app", [server("a", a.port)])])
    t = pool.tandem(cfg)
    result = {}

    def slow():
        result["r"] = get(port, "/slow?ms=800")
    th = threading.Thread(target=slow)
    th.start()
    a.wait_requests(1)
    reload(t, dict(cfg, backends=[backend_cfg("app", [server("b", b.port)])]))
    th.join(5)
    assert result["r"].status == 200 and result["r"].get("x-backend") == "a"
    assert get(port, "/").get("x-backend") == "b"


def test_health_admin_state_and_counters_survive_a_reload(pool, tmp_path):
    a, b = faulty(pool, "a"), faulty(pool, "b")
    tok = tmp_path / "t.token"
    tok.write_text("reload-test-token-0123456789\n")
    port = free_port()
    health = {"active": {"type": "http", "path": "/healthz", "interval": "200ms",
                         "timeout": "100ms", "rise": 2, "fall": 1}}
    cfg = make_config([http_listener("web", port, "app")],
                      [backend_cfg("app", [server("a", a.port), server("b", b.port)],
                                   health=health)],
                      admin={"token_file": str(tok)})
    t = pool.tandem(cfg)
    wait_until(lambda: t.admin_json("/api/v1/backends")["backends"][0]["servers_healthy"] == 2,
               timeout=5, what="both up")
    b.health_status = 500
    wait_until(lambda: t.admin_json("/api/v1/backends")["backends"][0]["servers_healthy"] == 1,
               timeout=5, what="b down")
    assert t.admin("POST", "/api/v1/backends/app/servers/a/drain",
                   token="reload-test-token-0123456789")[0] == 200
    for _ in range(5):
        get(port, "/")
    before = {s["name"]: s for s in t.admin_json("/api/v1/backends")["backends"][0]["servers"]}
    # Reload with an unrelated change (a new retry setting): nothing flaps.
    cfg2 = dict(cfg, backends=[backend_cfg("app", [server("a", a.port), server("b", b.port)],
                                           health=health, retries={"attempts": 2})])
    reload(t, cfg2)
    after = {s["name"]: s for s in t.admin_json("/api/v1/backends")["backends"][0]["servers"]}
    assert after["b"]["state"] == "down", after["b"]
    assert after["a"]["admin"] == "draining", after["a"]
    assert after["a"]["requests_total"] == before["a"]["requests_total"]
    assert after["b"]["requests_total"] == before["b"]["requests_total"]
    assert after["a"]["checks"]["passed"] >= 1
    # No health transition was logged by the reload itself (b stays down, a stays up).
    after_log = t.stderr_text().split("config revision 2 applied")[1]
    assert "event=server_up" not in after_log and "event=server_down" not in after_log, after_log


def test_twenty_reloads_under_load_fail_no_request(pool):
    a, b = pool.http("a"), pool.http("b")
    port = free_port()
    cfgs = [make_config([http_listener("web", port, "app")],
                        [backend_cfg("app", [server("a", a.port), server("b", b.port)],
                                     balance=bal)])
            for bal in ("round_robin", "least_conn")]
    cfgs[1]["admin"] = cfgs[0]["admin"]  # the admin address itself only changes on a restart
    t = pool.tandem(cfgs[0])
    lg = load(pool, port, threads=8, max_seconds=60)
    wait_until(lambda: len(lg.sent()) >= 50, timeout=5, what="load running")
    for i in range(20):
        reload(t, cfgs[(i + 1) % 2])
    n = len(lg.sent())
    wait_until(lambda: len(lg.sent()) >= n + 100, timeout=5, what="load after the reloads")
    assert lg.stop(5)
    failures = lg.failures()
    assert len(lg.sent()) > 200 and not failures, (len(lg.sent()), failures[:5])
    assert set(lg.by_backend()) == {"a", "b"}
    assert t.admin_json("/api/v1/status")["config"]["revision"] == 21
