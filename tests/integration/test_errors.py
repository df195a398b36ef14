"""Generated errors (408, 413, 431, 502, 504), broken backends, and graceful shutdown."""
import select
import signal
import socket
import threading
import time
import types

import pytest

from harness import (LOCAL, MALFORMED_RESPONSES, BlackholeListener, Client, backend_cfg,
                     build_request, check_alive, free_port, get, http_listener, make_config,
                     read_raw_until_close, read_response, server, wait_until)


@pytest.fixture(scope="module")
def errs(module_pool):
    a = module_pool.http("a")
    bh = BlackholeListener()
    ports = {n: free_port() for n in ("web", "dead", "hole", "idle")}
    limits = dict(max_header_bytes="16KiB", header_timeout="1s", idle_timeout="60s",
                  max_body_bytes="1KiB")
    blimits = {"connect_timeout": "500ms", "timeout": "800ms"}
    t = module_pool.tandem(make_config(
        [http_listener("web", ports["web"], "app", **limits),
         http_listener("dead", ports["dead"], "dead", **limits),
         http_listener("hole", ports["hole"], "hole", **limits),
         http_listener("idle", ports["idle"], "app", **dict(limits, idle_timeout="500ms"))],
        [backend_cfg("app", [server("a", a.port)], limits=blimits),
         backend_cfg("dead", [server("x", free_port())], limits=blimits),
         backend_cfg("hole", [server("h", bh.port)], limits=blimits)]))
    yield types.SimpleNamespace(t=t, a=a, **ports)
    bh.close()


@pytest.fixture
def e(errs):
    errs.t.ensure_running()
    errs.a.reset()
    yield errs
    check_alive(errs.t, http_port=errs.web)


def assert_generated(resp, status):
    assert resp.status == status, resp
    assert len(resp.body) < 2048, "generated error bodies should be short"
    assert resp.get("x-backend") is None, "error came from the backend, not tandem"


# ------------------------------------------------------------------------------------------
# 504 / 502

def test_504_when_backend_head_is_late(e):
    t0 = time.monotonic()
    r = get(e.web, "/slow?ms=3000")
    elapsed = time.monotonic() - t0
    assert_generated(r, 504)
    assert 0.7 <= elapsed <= 2.5, f"504 after {elapsed:.2f}s with timeout 800ms"
    # the proxy keeps working for fast requests, and the upstream connection that still owes
    # the late response is not reused (that would deliver "a slow" here)
    for i in range(3):
        assert get(e.web, f"/fast{i}").body == f"a GET /fast{i}\n".encode()


def test_slow_but_within_timeout_is_fine(e):
    r = get(e.web, "/slow?ms=300")
    assert r.status == 200 and r.body == b"a slow\n"


def test_502_when_backend_refuses(e):
    t0 = time.monotonic()
    r = get(e.dead, "/")
    assert_generated(r, 502)
    assert time.monotonic() - t0 < 2.0


def test_connect_timeout(e):
    t0 = time.monotonic()
    r = get(e.hole, "/")
    elapsed = time.monotonic() - t0
    assert r.status in (502, 504), r
    assert len(r.body) < 2048
    assert 0.4 <= elapsed <= 2.5, f"answered after {elapsed:.2f}s with connect_timeout 500ms"


@pytest.mark.parametrize("kind", sorted(MALFORMED_RESPONSES))
def test_502_for_invalid_backend_response(e, kind):
    with Client(e.web) as c:
        c.send(build_request("GET", f"/malformed?kind={kind}"))
        r = read_response(c.reader)
    assert_generated(r, 502)
    assert get(e.web, "/ok").body == b"a GET /ok\n"


def test_truncated_backend_body_closes_client(e):
    with Client(e.web, timeout=4) as c:
        c.send(build_request("GET", "/truncate"))
        raw = read_raw_until_close(c.sock, timeout=4)
    head, _, body = raw.partition(b"\r\n\r\n")
    if head.startswith(b"HTTP/1.1 502"):
        return  # also acceptable if tandem had not started the response yet
    assert head.startswith(b"HTTP/1.1 200"), raw[:200]
    assert len(body) < 100, "truncated body must not be padded or completed"


def test_stalled_response_body_is_cut_after_timeout(e):
    """limits.timeout also bounds idleness during a response: the client connection is closed."""
    t0 = time.monotonic()
    with Client(e.web, timeout=5) as c:
        c.send(build_request("GET", "/stall?ms=4000"))
        raw = read_raw_until_close(c.sock, timeout=5)
    elapsed = time.monotonic() - t0
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"0123456789"), raw[:200]
    assert 0.7 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s with timeout 800ms"


def test_idle_keepalive_connection_closed_after_idle_timeout(e):
    with Client(e.idle) as c:
        assert c.request("GET", "/").status == 200
        t0 = time.monotonic()
        assert c.closed_by_peer(timeout=4), "idle connection not closed"
        elapsed = time.monotonic() - t0
    assert 0.3 <= elapsed <= 2.0, f"closed after {elapsed:.2f}s with idle_timeout 500ms"


# ------------------------------------------------------------------------------------------
# 408 / 431 / 413

def test_408_trickled_head_does_not_extend_timeout(e):
    s = socket.create_connection((LOCAL, e.web), timeout=5)
    t0 = time.monotonic()
    got = b""
    with s:
        s.sendall(b"GET /trickle HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        closed = False
        for _ in range(40):  # 4 s of one byte per 100 ms; the timeout is 1 s
            r, _, _ = select.select([s], [], [], 0.1)
            if r:
                break
            try:
                s.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        else:
            s.sendall(b"\r\n\r\n")
        elapsed = time.monotonic() - t0
        got = read_raw_until_close(s, timeout=3)
    assert elapsed < 2.5, f"still open after {elapsed:.2f}s of trickling (header_timeout 1s)"
    assert elapsed >= 0.8, f"closed after {elapsed:.2f}s, before header_timeout"
    # a 408, or closing without a response (DESIGN §4 allows both)
    assert got == b"" or got.startswith(b"HTTP/1.1 408 "), (closed, got[:200])
    assert e.a.requests == [] and e.a.raw_total == 0


def test_408_silent_connection(e):
    s = socket.create_connection((LOCAL, e.web), timeout=5)
    t0 = time.monotonic()
    with s:
        got = read_raw_until_close(s, timeout=4)
    elapsed = time.monotonic() - t0
    assert 0.8 <= elapsed <= 2.5, elapsed
    assert got == b"" or got.startswith(b"HTTP/1.1 408 "), got[:200]


def test_431_head_too_large(e):
    with Client(e.web) as c:
        c.send(build_request("GET", "/huge", [("X-Big", "v" * (20 * 1024))]))
        r = read_response(c.reader)
        assert_generated(r, 431)
        assert c.closed_by_peer()
    assert e.a.requests == [] and e.a.raw_total == 0


def test_413_content_length_over_limit(e):
    with Client(e.web) as c:
        c.send(build_request("POST", "/echo", body=b"x" * 2000))
        r = read_response(c.reader)
        assert_generated(r, 413)
        assert c.closed_by_peer()
    assert [q for q in e.a.requests if q.complete] == []


def test_413_with_expect_continue_sends_no_100(e):
    with Client(e.web) as c:
        c.send(build_request("POST", "/echo", [("Expect", "100-continue"),
                                               ("Content-Length", "5000")]))
        r = read_response(c.reader)
        assert_generated(r, 413)
    assert e.a.requests == []


def test_body_at_limit_passes(e):
    body = b"y" * 1024
    r = get(e.web, "/echo", method="POST", body=body)
    assert r.status == 200 and r.body == body


def test_413_chunked_body_over_limit(e):
    with Client(e.web) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")]))
        for _ in range(4):
            try:
                c.send(b"200\r\n" + b"z" * 512 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        try:
            c.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_raw_until_close(c.sock, timeout=4)
    # a 413 if tandem had not forwarded the head yet; otherwise the exchange is cut
    if raw:
        assert raw.startswith(b"HTTP/1.1 413 "), raw[:200]
    assert [q for q in e.a.requests if q.complete] == [], "over-limit body reached the backend"


# ------------------------------------------------------------------------------------------
# Timer-driven closes on a fresh instance, followed by more traffic (and, at teardown, SIGTERM
# which must exit 0): regressions for crashes that only show on the next event

@pytest.mark.parametrize("workers", [1, 2])
def test_traffic_after_header_timeout(pool, workers):
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app", header_timeout="1s")],
                                [backend_cfg("app", [server("a", a.port)])], workers=workers))
    s = socket.create_connection((LOCAL, port), timeout=5)
    with s:
        s.sendall(b"GET / HTTP/1.1\r\n")
        assert read_raw_until_close(s, timeout=4).startswith(b"HTTP/1.1 408 ")
    for i in range(4):
        assert get(port, f"/after{i}").body == f"a GET /after{i}\n".encode()
    assert t.alive()


def test_traffic_after_connect_timeouts(pool):
    a = pool.http("a")
    bh = BlackholeListener()
    try:
        web, hole = free_port(), free_port()
        t = pool.tandem(make_config(
            [http_listener("web", web, "app"), http_listener("hole", hole, "hole")],
            [backend_cfg("app", [server("a", a.port)]),
             backend_cfg("hole", [server("h", bh.port)], limits={"connect_timeout": "300ms"})]))
        for i in range(3):  # 503 once the unreachable server is taken out
            assert get(hole, "/").status in (502, 503, 504)
        for i in range(4):
            assert get(web, f"/after{i}").body == f"a GET /after{i}\n".encode()
        assert t.alive()
    finally:
        bh.close()


# ------------------------------------------------------------------------------------------
# Graceful shutdown

def _shutdown_setup(pool, drain="5s"):
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [backend_cfg("app", [server("a", a.port)],
                                             limits={"timeout": "20s"})],
                                drain_timeout=drain))
    a.reset()
    return t, port, a


def _background_get(port, target, timeout=15):
    out = {}

    def run():
        try:
            out["resp"] = get(port, target, timeout=timeout)
        except Exception as ex:  # reported by the test
            out["error"] = repr(ex)

    th = threading.Thread(target=run)
    th.start()
    return th, out


def _refused(port):
    try:
        socket.create_connection((LOCAL, port), timeout=0.5).close()
        return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def test_sigterm_finishes_inflight_request_and_exits_0(pool):
    t, port, a = _shutdown_setup(pool)
    th, out = _background_get(port, "/slow?ms=1500")
    a.wait_requests(1)
    t0 = time.monotonic()
    t.signal(signal.SIGTERM)
    # stops accepting while the request is still in flight
    wait_until(lambda: _refused(port), timeout=1.0, what="listener closed after SIGTERM")
    th.join(10)
    assert "error" not in out, out
    assert out["resp"].status == 200 and out["resp"].body == b"a slow\n"
    rc = t.wait(6)
    assert rc == 0, f"exit status {rc}"
    assert time.monotonic() - t0 < 4.0


def test_sigterm_drain_timeout_bounds_shutdown(pool):
    t, port, a = _shutdown_setup(pool, drain="1s")
    th, out = _background_get(port, "/slow?ms=8000")
    a.wait_requests(1)
    t0 = time.monotonic()
    t.signal(signal.SIGTERM)
    rc = t.wait(5)
    elapsed = time.monotonic() - t0
    assert rc == 0, f"exit status {rc} ({elapsed:.1f}s after SIGTERM)"
    assert 0.8 <= elapsed <= 3.0, f"exited {elapsed:.2f}s after SIGTERM with drain_timeout 1s"
    th.join(10)
    assert "resp" not in out or out["resp"].status != 200


def test_sigterm_with_idle_keepalive_connection_exits_promptly(pool):
    t, port, a = _shutdown_setup(pool)
    with Client(port) as c:
        assert c.request("GET", "/").status == 200
        t0 = time.monotonic()
        t.signal(signal.SIGTERM)
        rc = t.wait(5)
        assert rc == 0
        assert time.monotonic() - t0 < 2.0, "an idle keep-alive connection held up shutdown"
        assert c.closed_by_peer(1)


def test_sigint_exits_0(pool):
    t, port, a = _shutdown_setup(pool)
    assert get(port, "/").status == 200
    t.signal(signal.SIGINT)
    assert t.wait(5) == 0
