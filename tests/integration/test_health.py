"""Health checking (issue 3): the config contract, passive ejection, all servers down, panic, and
the initial verdict of active checks. In-process backends (harness.FaultyBackend) whose /healthz
status and fault can be switched while they run; load from harness.LoadGen."""
import time

from harness import (backend_cfg, faulty, free_port, get, http_listener,
                     load, make_config, run_cli, server, wait_until)


def active(**over):
    d = {"type": "http", "path": "/healthz", "expect": "200-399", "interval": "200ms",
         "timeout": "100ms", "rise": 2, "fall": 2, "initial": "up"}
    d.update(over)
    return d


def dead_port():
    """A port nothing listens on (connection refused)."""
    return free_port()


def log_lines(t, word):
    return [line for line in t.stderr_text().splitlines() if word in line]


# ------------------------------------------------------------------------------------------
# The contract's keys are accepted

FULL = """\
node: {id: t1}
workers: 1
listeners:
  - {name: web, listen: 127.0.0.1:PORT, mode: http, backend: app}
backends:
  - name: app
    balance: round_robin
    servers: [{name: a, address: 127.0.0.1:9001}, {name: b, address: 127.0.0.1:9002},
              {name: c, address: 127.0.0.1:9003}]
    health:
      active: {type: http, path: /healthz, expect: 200-399, interval: 200ms, timeout: 100ms,
               rise: 2, fall: 2, initial: up, method: GET, host: h, body_contains: ok,
               fast_interval: 50ms, jitter_percent: 10}
      passive: {consecutive_failures: 3, base_ejection: 2s, max_ejection: 10s,
                max_ejection_percent: 50, gateway_errors_only: false}
    retries: {attempts: 2, retry_on: [connect_failure, reset, 502, 503, 504], budget_percent: 20,
              min_retry_concurrency: 3, per_try_timeout: 500ms}
    slow_start: 2s
    panic_threshold: 50%
    limits: {max_connections_per_server: 100, max_pending: 50, connect_timeout: 300ms,
             timeout: 5s}
  - name: tcpcheck
    servers: [{name: x, address: 127.0.0.1:9004}]
    health:
      active: {type: tcp, interval: 1s, timeout: 500ms, rise: 1, fall: 1, initial: down}
"""


def test_config_contract_is_accepted(tandem_bin, tmp_path):
    path = tmp_path / "full.yaml"
    path.write_text(FULL.replace("PORT", str(free_port())))
    r = run_cli(tandem_bin, "check", "-c", str(path))
    assert r.returncode == 0, (r.stdout + r.stderr).decode()


# ------------------------------------------------------------------------------------------
# 2. Passive detection: a server answering 500 to everything is ejected, returns, is ejected
#    again for twice as long

def test_passive_ejection_of_500_server(pool):
    bs = {"a": faulty(pool, "a"), "b": faulty(pool, "b", fault=500), "c": faulty(pool, "c")}
    port = free_port()
    t = pool.tandem(make_config(
        [http_listener("web", port, "app")],
        [backend_cfg("app", [server(n, b.port) for n, b in bs.items()],
                     health={"passive": {"consecutive_failures": 3, "base_ejection": "2s",
                                         "max_ejection": "10s", "max_ejection_percent": 50,
                                         "gateway_errors_only": False}})]))
    b = bs["b"]
    lg = load(pool, port, threads=3, timeout=3.0, max_seconds=14)

    def runs():
        """b's requests split where b got nothing for over 0.8s: [[times...], ...]"""
        ts = [r.t for r in b.data_requests()]
        out = [[ts[0]]] if ts else []
        for x, y in zip(ts, ts[1:]):
            if y - x > 0.8:
                out.append([])
            out[-1].append(y)
        return out
    # wait for: a run, a 2s ejection, a run, a 4s ejection, and b back again
    wait_until(lambda: len(runs()) >= 3, timeout=12, step=0.05,
               what="two ejections of the 500 server and its return")
    lg.stop()
    rs = runs()
    gap1, gap2 = rs[1][0] - rs[0][-1], rs[2][0] - rs[1][-1]
    print(f"\n[passive] b's runs of requests: {[len(r) for r in rs]}; ejected for "
          f"{gap1:.2f}s then {gap2:.2f}s (base 2s); {lg.summary()}; log: "
          f"{log_lines(t, 'ejected')[:2]} {log_lines(t, 'returned')[:1]}")
    # 3 in a row, give or take what two workers and three clients have in flight
    assert 3 <= len(rs[0]) <= 10, f"first ejection after {len(rs[0])} 500s in a row"
    assert 3 <= len(rs[1]) <= 10, f"second ejection after {len(rs[1])} 500s in a row"
    assert 1.8 <= gap1 <= 2.0 + 1.2, f"first ejection lasted {gap1:.2f}s (base_ejection 2s)"
    assert 3.8 <= gap2 <= 4.0 + 1.5, f"second ejection lasted {gap2:.2f}s (2 x base_ejection)"
    # while b is out, the others serve everything
    out1 = lg.sent(rs[0][-1] + 0.1, rs[1][0] - 0.1)
    assert out1 and all(r.status == 200 and r.backend in ("a", "c") for r in out1)
    # every 500 the clients saw came from b, and there were no other errors
    assert all(r.status == 500 and r.backend == "b" for r in lg.failures())
    assert log_lines(t, "ejected"), "no 'ejected' line on stderr"


# ------------------------------------------------------------------------------------------
# 4. All servers down: an immediate 503 with a clear body

def test_all_servers_down_fast_503(pool):
    port = free_port()
    pool.tandem(make_config(
        [http_listener("web", port, "app")],
        [backend_cfg("app", [server("x", dead_port()), server("y", dead_port())],
                     health={"active": {"type": "tcp", "interval": "200ms", "timeout": "100ms",
                                        "rise": 2, "fall": 2, "initial": "up"}},
                     limits={"connect_timeout": "300ms", "timeout": "5s"})]))
    # initial: up, so first the connects are tried; then the checks take both out
    wait_until(lambda: get(port, "/").status == 503, timeout=3, step=0.05,
               what="503 once every server is down")
    times = []
    for i in range(10):
        t0 = time.monotonic()
        r = get(port, f"/q{i}")
        times.append(time.monotonic() - t0)
        assert r.status == 503, r
        assert r.get("x-backend") is None
        body = r.body.decode("utf-8", "replace").lower()
        assert 0 < len(r.body) < 2048 and any(
            w in body for w in ("unavailable", "no server", "healthy", "down")), (
            f"503 body does not say why: {r.body!r}")
    print(f"\n[all down] 503 in {max(times) * 1000:.1f}ms max, body {r.body!r}")
    assert max(times) < 0.1, f"503 took {max(times) * 1000:.0f}ms"


# ------------------------------------------------------------------------------------------
# 7. Panic: 2 of 3 servers down, threshold 50% -> traffic spreads over all three
#    (b and c fail their checks but still answer, so where the traffic goes is visible)

def test_panic_spreads_over_all_servers_and_off_uses_survivor(pool):
    bs = {"a": faulty(pool, "a"), "b": faulty(pool, "b", health_status=503),
          "c": faulty(pool, "c", health_status=503)}
    servers = [server(n, b.port) for n, b in bs.items()]
    ports = {"panic": free_port(), "solo": free_port()}
    t = pool.tandem(make_config(
        [http_listener("pw", ports["panic"], "app"), http_listener("sw", ports["solo"], "solo")],
        [backend_cfg("app", servers, panic_threshold="50%", health={"active": active()}),
         backend_cfg("solo", servers, health={"active": active()})]))
    pl = load(pool, ports["panic"], threads=2, timeout=3.0, max_seconds=10)
    sl = load(pool, ports["solo"], threads=2, timeout=3.0, max_seconds=10)

    def solo_settled():
        rs = sl.sent()
        return len(rs) >= 30 and all(r.backend == "a" for r in rs[-30:])
    wait_until(solo_settled, timeout=4, what="the survivor alone serving the no-panic listener")
    t_ok = time.monotonic()
    wait_until(lambda: len(pl.sent(t_ok)) >= 150 and len(sl.sent(t_ok)) >= 50, timeout=5,
               what="traffic after the checks settled")
    pl.stop()
    sl.stop()
    shares = {n: pl.share(n, t_ok) for n in "abc"}
    print(f"\n[panic] panic listener: {pl.summary(t_ok)}; no-panic listener: "
          f"{sl.summary(t_ok)}; log: {log_lines(t, 'panic')[:1]}")
    assert not pl.failures() and not sl.failures()
    assert all(0.2 <= s <= 0.5 for s in shares.values()), (
        f"in panic the traffic should spread over all three servers: {shares}")
    assert all(r.backend == "a" for r in sl.sent(t_ok)), sl.by_backend(t_ok)
    assert log_lines(t, "panic"), "no 'panic' line on stderr"
    assert not [ln for ln in log_lines(t, "panic") if "solo" in ln]


# ------------------------------------------------------------------------------------------
# 10. The initial verdict

def test_initial_down_no_traffic_until_check_passes(pool):
    a = faulty(pool, "a")
    b = faulty(pool, "b", health_status=503)  # serves requests fine, fails its checks
    port = free_port()
    pool.tandem(make_config(
        [http_listener("web", port, "app")],
        [backend_cfg("app", [server("a", a.port), server("b", b.port)],
                     health={"active": active(initial="down")})]))
    # a starts down too: wait for its checks to bring it up
    wait_until(lambda: get(port, "/").status == 200, timeout=3, step=0.05, what="a up")
    lg = load(pool, port, threads=2, timeout=3.0, max_seconds=10)
    wait_until(lambda: len(b.health_hits) >= 6, timeout=4, what="checks of b")
    assert not b.data_requests(), (f"b (initial: down, failing checks) got traffic: "
                                   f"{[r.target for r in b.data_requests()][:5]}")
    n_before = len(lg.sent())
    assert n_before > 50
    # its checks start passing: it gets traffic, but only after a passed check
    t_flip = time.monotonic()
    b.health_status = 200
    wait_until(lambda: b.data_requests(), timeout=3, what="traffic to b after its checks pass")
    lg.stop()
    t_b1 = b.data_requests()[0].t
    passed = [h for h in b.health_hits if h[1] == 200 and h[0] < t_b1]
    print(f"\n[initial down] {n_before} requests, none to b while its checks failed; b got "
          f"traffic {1000 * (t_b1 - t_flip):.0f}ms after its checks started passing, after "
          f"{len(passed)} passed checks")
    assert len(passed) >= 1, "traffic to b before any passed check"
    assert t_b1 - t_flip <= 2 * 0.2 + 1.0
    assert not [r for r in lg.failures() if r.status != 503]


def test_initial_up_failing_checks_stop_traffic_after_fall(pool):
    a = faulty(pool, "a")
    b = faulty(pool, "b", health_status=500)
    port = free_port()
    t0 = time.monotonic()
    pool.tandem(make_config(
        [http_listener("web", port, "app")],
        [backend_cfg("app", [server("a", a.port), server("b", b.port)],
                     health={"active": active(interval="400ms", fast_interval="400ms",
                                              timeout="200ms", jitter_percent=0, fall=2)})]))
    lg = load(pool, port, threads=3, timeout=3.0, max_seconds=10)
    wait_until(lambda: len([h for h in b.health_hits if h[1] == 500]) >= 2, timeout=3,
               what="fall (2) failed checks of b")
    t_down = b.health_hits[1][0]  # the fall-th failed check
    wait_until(lambda: time.monotonic() > t_down + 1.2, timeout=3, step=0.05,
               what="traffic after b went down")
    lg.stop()
    bt = [r.t for r in b.data_requests()]
    print(f"\n[initial up] b served {len(bt)} requests before its 2nd failed check "
          f"({1000 * (t_down - t0):.0f}ms after start); last one "
          f"{1000 * ((bt[-1] if bt else t0) - t_down):+.0f}ms from it; {lg.summary()}")
    assert bt, "initial: up, yet b got no traffic before its checks failed"
    assert bt[-1] <= t_down + 0.3, (f"b still got traffic {bt[-1] - t_down:.2f}s after its "
                                     f"fall-th failed check")
    assert bt[-1] - t0 <= 0.4 * 3 + 0.8
    assert all(r.backend == "a" for r in lg.sent(t_down + 0.2))
    assert not lg.failures()
