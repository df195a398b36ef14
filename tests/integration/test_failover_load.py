"""Backend failure handling under load (issue 3): kill -9 and restart of a backend (zero failed
GETs, slow start), SIGSTOP (per-try timeout + retry), what is and is not retried, the retry budget,
SIGTERM of tandem during load, and the connection limits.

Backends that must be killed or stopped run in their own process (harness.ProcessBackend); the
rest are in-process (harness.FaultyBackend). Load: harness.LoadGen (a few keep-alive client threads
sending sequential GETs with a per-request timeout, every request recorded). Times are
CLOCK_MONOTONIC, comparable across processes."""
import signal
import socket
import struct
import threading
import time

import pytest

from harness import (LOCAL, BlackholeListener, Client, ProcessBackend,
                     Stoppable, backend_cfg, build_request, faulty, free_port, get, http_listener,
                     load, make_config, read_final_response, run_together, server, wait_until)

INTERVAL = 0.2  # active check interval used below
FALL = 2
RISE = 2
SLOW_START = 2.0


def app_backend(servers, name="app", health=True, passive=True, retries=None, **extra):
    """The backend of the issue-3 contract (checks every 200ms, rise/fall 2, passive 3 in a row,
    2 retries with a 500ms per-try timeout, slow start 2s, panic below 50%), with overrides."""
    cfg = {}
    h = {}
    if health:
        h["active"] = {"type": "http", "path": "/healthz", "expect": "200-399",
                       "interval": "200ms", "timeout": "100ms", "rise": RISE, "fall": FALL,
                       "initial": "up"}
    if passive:
        h["passive"] = {"consecutive_failures": 3, "base_ejection": "2s", "max_ejection": "10s",
                        "max_ejection_percent": 50, "gateway_errors_only": False}
    if h:
        cfg["health"] = h
    cfg["retries"] = retries if retries is not None else {
        "attempts": 2, "retry_on": ["connect_failure", "reset", 502, 503, 504],
        "budget_percent": 20, "min_retry_concurrency": 3, "per_try_timeout": "500ms"}
    cfg["slow_start"] = "2s"
    cfg["panic_threshold"] = "50%"
    cfg["limits"] = {"max_connections_per_server": 100, "max_pending": 50,
                     "connect_timeout": "300ms", "timeout": "5s"}
    cfg.update(extra)
    return backend_cfg(name, servers, **cfg)


def proc_backend(pool, name, port=0):
    """A ProcessBackend that the pool stops (SIGCONT + SIGKILL) at teardown, whatever happens."""
    b = ProcessBackend(name, port)
    pool.items.append(b)
    return b.start()


class Grave:
    """Stands in for a SIGKILLed server on its port so that the test can SEE whether tandem still
    sends it requests: every connection is accepted, its request head recorded, then reset (RST),
    which to tandem is a dead server (reset before any response byte)."""

    def __init__(self, port):
        self.port = port
        self.hits = []  # (monotonic, request line)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        wait_until(self._bind, timeout=3, step=0.005, what=f"rebinding port {port}")
        self.lsock.listen(128)
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _bind(self):
        try:
            self.lsock.bind((LOCAL, self.port))
            return True
        except OSError:
            return False

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(s,), daemon=True).start()

    def _conn(self, s):
        s.settimeout(1)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        except OSError:
            pass
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        self.hits.append((time.monotonic(), line))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    def data_hits(self):
        return [h for h in list(self.hits) if "/healthz" not in h[1]]

    def close(self):
        self.lsock.close()


def log_delay(t, needle, since_wall):
    """'123ms': when the first stderr line containing `needle` was logged, after since_wall."""
    import datetime
    for line in t.stderr_text().splitlines():
        if needle in line:
            stamp = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            when = stamp.replace(tzinfo=datetime.timezone.utc).timestamp()
            if when >= since_wall - 0.01:
                return f"{(when - since_wall) * 1000:.0f}ms"
    return "never"


def fail_report(lg, limit=10):
    f = lg.failures()
    return f"{len(f)} failed requests, first ones: {f[:limit]}; {lg.summary()}"


# ------------------------------------------------------------------------------------------
# 1. kill -9 one of three backends under steady load, then restart it

def three_under_load(pool, weight=None):
    """Three process backends a, b, c behind the contract's backend, 4 clients of load."""
    bs = {n: proc_backend(pool, n) for n in "abc"}
    port = free_port()
    extra = {"weight": weight} if weight else {}
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [app_backend([server(n, b.port, **extra)
                                              for n, b in bs.items()])]))
    lg = load(pool, port, threads=4, timeout=3.0, max_seconds=30)
    wait_until(lambda: len(lg.by_backend(lg.t_start)) >= 3 and len(lg.sent()) > 200,
               timeout=5, what="all three backends serving")
    return t, bs, lg


def test_kill9_zero_failed_gets_then_restart(pool):
    t, bs, lg = three_under_load(pool)
    b = bs["b"]

    # kill -9 b; a stand-in takes its port to record what tandem still sends there
    t_kill, w_kill = time.monotonic(), time.time()
    b.kill()
    grave = Grave(b.port)
    t_grave = time.monotonic()
    # probe: the dead server gets no request for a whole second (at least 4 intervals after kill)
    wait_until(lambda: time.monotonic() - max([t_kill] + [h[0] for h in grave.data_hits()]) > 1.0
               and time.monotonic() - t_kill > INTERVAL * (FALL + 2), timeout=8,
               what="tandem to stop sending to the killed server")
    hits = grave.data_hits()
    t_last = max([h[0] for h in hits], default=t_kill)
    stop_time = t_last - t_kill
    print(f"\n[kill -9] grave bound {1000 * (t_grave - t_kill):.0f}ms after the kill; "
          f"{len(hits)} requests reached the dead port; time to stop sending to the dead "
          f"server: {stop_time * 1000:.0f}ms (interval {INTERVAL * 1000:.0f}ms x fall {FALL})")
    print(f"[kill -9] stderr: passive ejection {log_delay(t, 'server app/b ejected', w_kill)}, "
          f"active checks marked it down {log_delay(t, 'server app/b down', w_kill)} after "
          f"the kill")
    assert stop_time <= INTERVAL * FALL + 2 * INTERVAL + 0.5, (
        f"tandem still sent requests to the killed server {stop_time:.2f}s after the kill "
        f"(bound: interval x fall + 2 intervals + 0.5s slack): {hits[-5:]}")
    assert not lg.failures(), "GETs failed around the kill: " + fail_report(lg)
    assert [h for h in grave.hits if "/healthz" in h[1]], "no active check reached the dead port"

    # restart b on the same port: it gets traffic again after `rise` passed checks
    grave.close()
    b.restart()
    t_restart = b.started_at[-1]
    wait_until(lambda: lg.times_of("b", t_restart), timeout=2 + 2 + RISE * INTERVAL + 2,
               what="traffic to the restarted server")
    t_b1 = min(lg.times_of("b", t_restart))
    # b's own log (read from its stdout, in the order it wrote it) of its first data request,
    # and the checks it answered before that one
    first = wait_until(lambda: b.requests(since=t_restart), timeout=3,
                       what="b's log of its first request")[0][0]
    checks = [r for r in b.requests(since=t_restart, health=True) if r[0] < first]
    print(f"[restart] first request to b {1000 * (t_b1 - t_restart):.0f}ms after it was back "
          f"up, after {len(checks)} passed checks")
    assert len(checks) >= RISE, (f"the restarted server got traffic after {len(checks)} "
                                 f"passed checks (rise {RISE})")
    # with active checks an ejected server comes back only after a check: base_ejection (2s)
    # at worst, then rise checks, plus slack
    assert t_b1 - t_restart <= 2.0 + RISE * INTERVAL + 1.5
    lg.stop()
    print(f"[load] {lg.summary()}")
    assert not lg.failures(), "GETs failed: " + fail_report(lg)
    assert t.alive()


@pytest.mark.parametrize("weight", [None, 10], ids=["weight1", "weight10"])
def test_slow_start_after_restart(pool, weight):
    """A server back from the dead ramps from 10% to 100% of its weight over slow_start (2s).
    Default weight 1 and weight 10 (the ramp must not depend on integer weight resolution)."""
    t, bs, lg = three_under_load(pool, weight)
    b = bs["b"]
    t_kill = time.monotonic()
    b.kill()
    # b is out once nobody got an answer from it for half a second
    wait_until(lambda: time.monotonic() - max([t_kill] + lg.times_of("b", t_kill - 1)) > 0.5,
               timeout=5, what="b out of the rotation")
    w_restart = time.time()
    b.restart()
    t_restart = b.started_at[-1]
    wait_until(lambda: lg.times_of("b", t_restart), timeout=2 + 2 + RISE * INTERVAL + 2,
               what="traffic to the restarted server")
    t_b1 = min(lg.times_of("b", t_restart))
    print(f"\n[slow start] b restarted; 'server app/b up' logged "
          f"{log_delay(t, 'server app/b up', w_restart)} and its first request "
          f"{1000 * (t_b1 - t_restart):.0f}ms after the restart")

    # slow start: its share ramps from 10% to its full third over 2s
    wait_until(lambda: time.monotonic() > t_b1 + SLOW_START + 1.5, timeout=SLOW_START + 3,
               step=0.05, what="end of the ramp")
    lg.stop()
    early = lg.share("b", t_b1, t_b1 + SLOW_START / 4)
    late = lg.share("b", t_b1 + SLOW_START + 0.3, t_b1 + SLOW_START + 1.5)
    bins = []
    step = 0.2
    x = t_b1
    while x + step <= t_b1 + SLOW_START + 1.5:
        bins.append((x - t_b1, lg.share("b", x, x + step), len(lg.sent(x, x + step))))
        x += step
    full = next((off for i, (off, s, n) in enumerate(bins)
                 if s >= 0.9 / 3 and all(s2 >= 0.2 for _, s2, _ in bins[i:])), None)
    print(f"[slow start] b's share: first quarter of the ramp {early:.3f}, after the ramp "
          f"{late:.3f}; per 200ms: {[round(s, 2) for _, s, _ in bins]}; time to full weight: "
          f"{'%.0fms' % (full * 1000) if full is not None else 'never'} (slow_start 2s, "
          f"weight {weight or 1})")
    print(f"[load] {lg.summary()}")
    assert not lg.failures(), "GETs failed: " + fail_report(lg)
    assert 0.25 <= late <= 0.42, f"after the ramp b should have a third of the traffic: {late}"
    assert early <= 0.6 * late, (f"no slow start: b's share in the first 25% of the ramp "
                                 f"({early:.3f}) vs after it ({late:.3f})")
    assert full is not None and 0.6 <= full <= SLOW_START + 1.0, f"time to full weight {full}"
    assert t.alive()


# ------------------------------------------------------------------------------------------
# 3. SIGSTOP: a server that accepts but never answers

def test_sigstopped_backend_per_try_timeout_and_retry(pool):
    bs = {n: proc_backend(pool, n) for n in "abc"}
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")],
                            [app_backend([server(n, b.port) for n, b in bs.items()])]))
    lg = load(pool, port, threads=3, timeout=4.0, max_seconds=20)
    wait_until(lambda: len(lg.by_backend()) >= 3 and len(lg.sent()) > 100, timeout=5,
               what="all three serving")
    t_stop = time.monotonic()
    bs["b"].signal(signal.SIGSTOP)
    try:
        wait_until(lambda: time.monotonic() > t_stop + 2.5, timeout=4, step=0.05,
                   what="load while b is stopped")
        lg.stop()
    finally:
        bs["b"].signal(signal.SIGCONT)
    after = lg.sent(t_stop)
    slow = [r for r in after if r.latency > 0.3]
    print(f"\n[SIGSTOP] {lg.summary(t_stop)}; {len(slow)} requests waited out a per-try "
          f"timeout; max latency {max(r.latency for r in after) * 1000:.0f}ms")
    assert not lg.failures(), "requests failed while b was stopped: " + fail_report(lg)
    assert all(r.backend in ("a", "c") for r in lg.sent(t_stop + 0.05))
    assert max(r.latency for r in after) < 0.5 * 3 + 0.5, "per_try_timeout 500ms not applied"
    # once the checks (timeout 100ms, fall 2) have taken b out, nobody waits for it any more
    settled = lg.sent(t_stop + 1.5)
    assert settled and max(r.latency for r in settled) < 0.4, (
        "requests still waited for the stopped server 1.5s after SIGSTOP: "
        f"{[r for r in settled if r.latency >= 0.4][:5]}")


# ------------------------------------------------------------------------------------------
# 5. What is retried: POST is not retried after it was sent; GET is

def test_post_not_retried_after_reset_get_is(pool):
    bad = faulty(pool, "bad", fault="reset")   # reads the request, closes without a response
    good = faulty(pool, "good")
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")],
                            [app_backend([server("bad", bad.port), server("good", good.port)],
                                         health=False, passive=False, slow_start="0s")]))
    posts = {}
    for i in range(8):
        r = get(port, f"/post?i={i}", method="POST", body=b"x" * 100, timeout=5)
        posts[i] = r
    gets = {i: get(port, f"/get?i={i}", timeout=5) for i in range(8)}

    def ids(backend, method, prefix):
        return [r.q("i") for r in backend.data_requests()
                if r.method == method and r.path == prefix]
    bad_posts, good_posts = ids(bad, "POST", "/post"), ids(good, "POST", "/post")
    print(f"\n[retry] POST statuses {[r.status for r in posts.values()]}; bad saw POST "
          f"{bad_posts}, good saw {good_posts}; bad saw GET {ids(bad, 'GET', '/get')}")
    for i, r in posts.items():
        seen = bad_posts.count(str(i)) + good_posts.count(str(i))
        assert seen == 1, f"POST {i} reached the backends {seen} times (status {r.status})"
        if str(i) in bad_posts:
            assert r.status == 502 and r.get("x-backend") is None, (i, r)
        else:
            assert r.status == 200 and r.get("x-backend") == "good", (i, r)
    assert bad_posts, "no POST went to the resetting server (round robin over two?)"
    for i, r in gets.items():
        assert r.status == 200 and r.get("x-backend") == "good", (i, r)
        assert ids(good, "GET", "/get").count(str(i)) == 1
    assert ids(bad, "GET", "/get"), "no GET went to the resetting server first"


# ------------------------------------------------------------------------------------------
# 6. Retry budget 0: a failing server's errors are not retried

def test_retry_budget_zero_means_no_retries(pool, tandem_bin):
    bad = faulty(pool, "bad", fault=503)
    good = faulty(pool, "good")
    servers = [server("bad", bad.port), server("good", good.port)]
    ports = {"nob": free_port(), "withb": free_port()}
    retries = {"attempts": 2, "retry_on": [503], "budget_percent": 0,
               "min_retry_concurrency": 0}
    config = make_config(
        [http_listener("nob", ports["nob"], "nob"), http_listener("withb", ports["withb"], "wb")],
        [app_backend(servers, name="nob", health=False, passive=False, slow_start="0s",
                     retries=retries),
         app_backend(servers, name="wb", health=False, passive=False, slow_start="0s",
                     retries=dict(retries, budget_percent=20, min_retry_concurrency=3))])
    pool.tandem(config)
    res = {k: [get(p, f"/{k}?i={i}") for i in range(10)] for k, p in ports.items()}

    def seen(b, k, i):
        return [r for r in b.data_requests() if r.path == f"/{k}" and r.q("i") == str(i)]
    print(f"\n[budget] without budget: {[r.status for r in res['nob']]}; with budget: "
          f"{[r.status for r in res['withb']]}")
    n503 = 0
    for i, r in enumerate(res["nob"]):
        if r.status == 503:
            n503 += 1
            assert r.get("x-backend") == "bad"
            assert len(seen(bad, "nob", i)) == 1 and not seen(good, "nob", i), (
                f"request {i} was retried despite a zero retry budget")
        else:
            assert r.status == 200 and r.get("x-backend") == "good"
    assert n503 >= 1, "no request went to the failing server"
    for i, r in enumerate(res["withb"]):
        assert r.status == 200, f"with a budget the 503 should have been retried: {r}"
    assert any(seen(bad, "withb", i) for i in range(10)), "the control case never hit 'bad'"


# ------------------------------------------------------------------------------------------
# 8. SIGTERM to tandem during load

def test_sigterm_during_load_cuts_no_request(pool):
    bs = {n: faulty(pool, n) for n in "abc"}
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [app_backend([server(n, b.port) for n, b in bs.items()])],
                                drain_timeout="5s"))
    fast = load(pool, port, threads=4, target="/slow?ms=20", timeout=5.0, max_seconds=15)
    slow = load(pool, port, threads=2, target="/slow?ms=400", timeout=5.0, max_seconds=15)
    wait_until(lambda: len(slow.sent()) >= 2 and len(fast.sent()) >= 40, timeout=5,
               what="load under way")
    # the load generators open no new connection from now on (refused is expected after this)
    fast.drain()
    slow.drain()
    t_sig = time.monotonic()
    t.signal(signal.SIGTERM)
    rc = t.wait(8)
    t_exit = time.monotonic()
    assert fast.join(6) and slow.join(6), "clients still waiting after tandem exited"
    in_flight = [r for lg in (fast, slow) for r in lg.sent() if r.t0 < t_sig < r.t1]
    endings = [e for lg in (fast, slow) for e in lg.endings.values()]
    print(f"\n[SIGTERM] exit {rc} after {1000 * (t_exit - t_sig):.0f}ms; {len(in_flight)} "
          f"requests in flight at the signal; clients' last connections ended: {endings}; "
          f"fast: {fast.summary(t_sig)}; slow: {slow.summary(t_sig)}")
    assert rc == 0, f"exit status {rc}"
    cut = fast.failures() + slow.failures()
    assert not cut, ("requests cut by the shutdown: "
                     + ", ".join(f"{r} sent at SIGTERM{1000 * (r.t0 - t_sig):+.1f}ms"
                                 for r in cut[:10]))
    assert in_flight, "nothing was in flight at SIGTERM (test did not exercise draining)"
    assert not [e for e in endings if e not in ("connection-close", "idle-close")], endings
    # a client whose request was in flight at SIGTERM is told to close on that response
    for lg in (fast, slow):
        for tid in range(lg.threads):
            mine = [r for r in lg.sent() if r.tid == tid]
            if mine and mine[-1].t1 > t_sig:
                assert mine[-1].conn_close, (f"client {tid}: last response after SIGTERM had no "
                                             f"Connection: close ({mine[-1]})")


# ------------------------------------------------------------------------------------------
# 9. Connection limits: 503 at once when exceeded

def test_max_connections_per_server_and_max_pending_503(pool):
    a = faulty(pool, "a")
    port = free_port()
    pool.tandem(make_config(
        [http_listener("web", port, "app")],
        [app_backend([server("a", a.port)], health=False, passive=False, slow_start="0s",
                     retries={"attempts": 0},
                     limits={"max_connections_per_server": 1, "max_pending": 1,
                             "connect_timeout": "300ms", "timeout": "5s"})],
        workers=1))
    out = [None] * 5

    def one(i, ready):
        c = Client(port, timeout=6)
        ready.wait()  # every client is connected; all send at once
        t0 = time.monotonic()
        try:
            c.send(build_request("GET", f"/slow?ms=1000&i={i}"))
            r = read_final_response(c.reader)[0]
            out[i] = (r.status, time.monotonic() - t0, r.get("x-backend"), r.body)
        except Exception as ex:  # recorded, asserted below
            out[i] = ("error", time.monotonic() - t0, None, repr(ex))
        finally:
            c.close()
    run_together(5, one)
    print(f"\n[limits] {[(s, round(d, 2), b) for s, d, b, _ in out]}")
    statuses = [o[0] for o in out]
    assert set(statuses) <= {200, 503}, out
    fast503 = [o for o in out if o[0] == 503 and o[1] < 0.5]
    ok = [o for o in out if o[0] == 200]
    assert len(fast503) >= 3, f"1 connection + 1 pending allowed, 5 sent: {out}"
    assert all(o[2] is None for o in out if o[0] == 503), "503 came from the backend"
    assert 1 <= len(ok) <= 2
    assert len(a.data_requests()) == len(ok), "the backend saw a request that got a 503"
    if len(ok) == 2:  # the pending one waited for the single connection
        assert max(o[1] for o in ok) >= 1.8, f"two requests at once on a 1-connection limit: {out}"


def test_max_pending_connects_503(pool):
    """max_pending bounds the requests waiting for an upstream connection: against a server whose
    connects hang, one request waits (then 504/502 at connect_timeout), the rest get 503 at once."""
    hole = BlackholeListener()
    pool.items.append(Stoppable(hole.close))
    port = free_port()
    pool.tandem(make_config(
        [http_listener("web", port, "app")],
        [app_backend([server("h", hole.port)], health=False, passive=False, slow_start="0s",
                     retries={"attempts": 0},
                     limits={"max_connections_per_server": 100, "max_pending": 1,
                             "connect_timeout": "1s", "timeout": "5s"})],
        workers=1))
    out = [None] * 4

    def one(i, ready):
        with Client(port, timeout=6) as c:
            ready.wait()
            t0 = time.monotonic()
            c.send(build_request("GET", f"/p{i}"))
            r = read_final_response(c.reader)[0]
            out[i] = (r.status, time.monotonic() - t0)
    run_together(4, one)
    print(f"\n[max_pending] {[(s, round(d, 2)) for s, d in out]}")
    fast503 = [o for o in out if o[0] == 503 and o[1] < 0.5]
    waited = [o for o in out if o not in fast503]
    assert len(fast503) == 3, out
    assert len(waited) == 1 and waited[0][0] in (502, 503, 504) and waited[0][1] >= 0.8, out
