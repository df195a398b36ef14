"""HTTP/1.1 reverse proxying: keep-alive and upstream reuse, pipelining, bodies (Content-Length and
chunked, streamed both ways with bounded memory), Expect: 100-continue, body-less responses,
hop-by-hop and forwarding headers, WebSocket tunnelling."""
import os
import socket
import threading
import time
import types
import zlib

import pytest

from harness import (Client, PATTERN, RssMonitor, backend_cfg, build_request, check_alive,
                     chunk_encode, free_port, get, http_listener, make_config, pattern_crc,
                     read_final_response, read_raw_until_close, read_response, server, wait_until,
                     ws_accept_key, ws_frame, ws_handshake, ws_read_frame)

MiB = 1 << 20


@pytest.fixture(scope="module")
def proxy(module_pool):
    a = module_pool.http("a")
    port = free_port()
    t = module_pool.tandem(make_config(
        [http_listener("web", port, "app", idle_timeout="60s", header_timeout="5s")],
        [backend_cfg("app", [server("a", a.port)], limits={"timeout": "10s"})], workers=2))
    return types.SimpleNamespace(t=t, port=port, a=a)


@pytest.fixture
def px(proxy):
    proxy.t.ensure_running()
    proxy.a.reset()
    yield proxy
    check_alive(proxy.t, http_port=proxy.port)


# ------------------------------------------------------------------------------------------
# Keep-alive and reuse

def test_client_keepalive(px):
    with Client(px.port) as c:
        for i in range(20):
            r = c.request("GET", f"/k{i}")
            assert (r.status, r.body) == (200, f"a GET /k{i}\n".encode())
            assert "close" not in r.tokens("connection")
    assert px.a.targets() == [f"/k{i}" for i in range(20)]


def test_upstream_reuse_sequential_fresh_clients(px):
    for i in range(30):
        assert get(px.port, f"/s{i}").status == 200
    # one idle upstream connection per worker suffices for sequential traffic
    assert px.a.accepted_since_reset() <= 4, px.a.accepted_since_reset()


def test_upstream_reuse_concurrent_clients(px):
    errors = []

    def client(n):
        try:
            with Client(px.port, timeout=10) as c:
                for i in range(20):
                    r = c.request("GET", f"/c{n}-{i}")
                    assert r.status == 200 and r.body == f"a GET /c{n}-{i}\n".encode()
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(px.a.requests) == 200
    assert px.a.accepted_since_reset() <= 20, px.a.accepted_since_reset()


def test_client_connection_close_honoured(px):
    with Client(px.port) as c:
        r = c.request("GET", "/bye", [("Connection", "close")])
        assert r.status == 200
        assert c.closed_by_peer(), "tandem kept the connection after Connection: close"


def test_http10_client(px):
    with Client(px.port) as c:
        c.send(b"GET /ten HTTP/1.0\r\nHost: x\r\n\r\n")
        raw = c.reader.read_to_eof()
    assert raw.startswith(b"HTTP/1.") and b" 200 " in raw.split(b"\r\n")[0]
    assert raw.endswith(b"a GET /ten\n")


def test_backend_connection_close_then_next_request(px):
    with Client(px.port) as c:
        r1 = c.request("GET", "/close")
        assert r1.status == 200 and r1.body == b"a closing\n"
        if not c.reader.eof:
            try:
                r2 = c.request("GET", "/after-close")
                assert r2.status == 200 and r2.body == b"a GET /after-close\n"
            except EOFError:
                pass  # tandem may also close the client side; a fresh connection must work
    assert get(px.port, "/fresh").status == 200


# ------------------------------------------------------------------------------------------
# Pipelining

def test_pipelined_requests_answered_in_order(px):
    reqs = []
    for i in range(10):
        if i % 3 == 1:
            reqs.append(("POST", f"/echo?i={i}", f"body-{i}".encode()))
        elif i % 3 == 2:
            reqs.append(("HEAD", f"/h{i}", None))
        else:
            reqs.append(("GET", f"/g{i}", None))
    with Client(px.port) as c:
        c.send(b"".join(build_request(m, t, body=b) for m, t, b in reqs))
        for m, t, b in reqs:
            r = c.read_response(m)
            assert r.status == 200
            if m == "POST":
                assert r.body == b
            elif m == "HEAD":
                assert r.body == b"" and r.get("content-length") == str(len(f"a HEAD {t}\n"))
            else:
                assert r.body == f"a GET {t}\n".encode()
    assert px.a.targets() == [t for _, t, _ in reqs]


def test_pipelined_slow_first_is_not_overtaken(px):
    with Client(px.port) as c:
        c.send(build_request("GET", "/slow?ms=300") + build_request("GET", "/fast"))
        assert c.read_response().body == b"a slow\n"
        assert c.read_response().body == b"a GET /fast\n"


# ------------------------------------------------------------------------------------------
# Bodies

def test_content_length_body_forwarded_exactly(px):
    body = os.urandom(5000)
    with Client(px.port) as c:
        r = c.request("POST", "/echo", body=body)
    assert r.body == body
    req = px.a.requests[0]
    assert req.get("content-length") == "5000"
    wait_until(lambda: req.complete, timeout=2, what="backend to read the whole body")


def test_chunked_request_body(px):
    pieces = [b"a" * 1, b"b" * 100, b"c" * 10000, b"d" * 7]
    with Client(px.port) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
               + chunk_encode(pieces))
        r = c.read_response()
    assert r.status == 200 and r.body == b"".join(pieces)
    assert px.a.requests[0].complete


def test_chunked_request_with_extensions_and_trailers(px):
    body = (b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    with Client(px.port) as c:
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")]) + body)
        r = c.read_response()
    assert r.status == 200 and r.body == b"hello world"


def test_chunked_response_body(px):
    with Client(px.port) as c:
        r = c.request("GET", "/big?n=300000&chunked=1&piece=7777")
        assert r.status == 200 and r.body_len == 300000
        assert zlib.crc32(r.body) == pattern_crc(300000)
        # keep-alive survives a chunked response
        assert c.request("GET", "/next").body == b"a GET /next\n"


def test_chunked_streams_both_ways(px):
    """Each request chunk comes back before the next one is sent: no buffering in either
    direction."""
    with Client(px.port) as c:
        c.send(build_request("POST", "/echo?chunked=1", [("Transfer-Encoding", "chunked")]))
        head = c.reader.read_until(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0] and b"chunked" in head.lower()
        for i in range(5):
            piece = f"piece-{i}-".encode() * (i + 1)
            c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            got = b""
            while len(got) < len(piece):
                size = int(c.reader.read_until(b"\r\n")[:-2].split(b";")[0], 16)
                got += c.reader.read_exact(size)
                assert c.reader.read_exact(2) == b"\r\n"
            assert got == piece
        c.send(b"0\r\n\r\n")
        assert c.reader.read_until(b"\r\n") == b"0\r\n"


def test_response_delimited_by_close(px):
    with Client(px.port) as c:
        c.send(build_request("GET", "/noclen"))
        r = read_response(c.reader)
        if r.get("transfer-encoding") is None and r.get("content-length") is None:
            pass  # tandem also delimits by close: read_response read to EOF
        assert r.status == 200 and r.body == b"a until close\n" * 100


def _upload(port, n, chunked, pause_ms):
    with Client(port, timeout=30) as c:
        hs = [("Transfer-Encoding", "chunked")] if chunked else [("Content-Length", str(n))]
        c.send(build_request("POST", f"/sink?pause_ms={pause_ms}", hs))
        sent = 0
        while sent < n:
            k = min(len(PATTERN), n - sent)
            c.send(b"%x\r\n" % k + PATTERN[:k] + b"\r\n" if chunked else PATTERN[:k])
            sent += k
        if chunked:
            c.send(b"0\r\n\r\n")
        return c.read_response()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_100mib_streamed_with_bounded_memory(px, chunked):
    n = 100 * MiB
    base = px.t.rss_kib()  # idle RSS: bigger under sanitizers
    with RssMonitor(px.t.pid) as mon:
        r = _upload(px.port, n, chunked, pause_ms=400)
    assert r.status == 200
    assert r.body == f"bytes={n} crc={pattern_crc(n)}".encode()
    assert mon.samples > 5
    # Growth, not the absolute size: buffering the 100 MiB would blow far past it.
    assert mon.peak_kib - base < 48 * 1024, f"tandem RSS grew from {base} to {mon.peak_kib} KiB"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_download_100mib_streamed_with_bounded_memory(px, chunked):
    n = 100 * MiB
    q = "&chunked=1" if chunked else ""
    state = {"n": 0, "crc": 0, "paused": False}

    def on_data(piece):
        state["n"] += len(piece)
        state["crc"] = zlib.crc32(piece, state["crc"])
        if not state["paused"] and state["n"] >= n // 2:
            state["paused"] = True
            time.sleep(0.4)  # a slow reader: tandem must stop reading the backend, not buffer

    base = px.t.rss_kib()  # idle RSS: bigger under sanitizers
    with RssMonitor(px.t.pid) as mon, Client(px.port, timeout=30) as c:
        c.send(build_request("GET", f"/big?n={n}{q}"))
        r = read_response(c.reader, keep_body=False, on_data=on_data)
    assert r.status == 200 and state["n"] == n and state["crc"] == pattern_crc(n)
    assert mon.samples > 5
    # Growth, not the absolute size: buffering the 100 MiB would blow far past it.
    assert mon.peak_kib - base < 48 * 1024, f"tandem RSS grew from {base} to {mon.peak_kib} KiB"


# ------------------------------------------------------------------------------------------
# Expect, HEAD, 1xx, 204, 304

def test_expect_100_continue(px):
    with Client(px.port) as c:
        c.send(build_request("POST", "/echo", [("Expect", "100-continue"),
                                               ("Content-Length", "11")]))
        interim = read_response(c.reader)
        assert interim.status == 100, "no 100 Continue before the body was sent"
        c.send(b"hello world")
        r = c.read_response()
    assert r.status == 200 and r.body == b"hello world"


@pytest.mark.parametrize("q", ["", "&chunked=1"], ids=["content-length", "chunked"])
def test_head_has_no_body(px, q):
    with Client(px.port) as c:
        c.send(build_request("HEAD", f"/big?n=5000{q}") + build_request("GET", "/after-head"))
        r = c.read_response("HEAD")
        assert r.status == 200
        assert r.get("content-length") == "5000" or r.get("transfer-encoding") == "chunked"
        nxt = c.read_response()
        assert nxt.body == b"a GET /after-head\n", "bytes after a HEAD response"


@pytest.mark.parametrize("target", ["/status?code=204", "/status?code=304",
                                    "/status?code=304&cl=50"])
def test_bodyless_statuses(px, target):
    with Client(px.port) as c:
        c.send(build_request("GET", target) + build_request("GET", "/next"))
        r = c.read_response()
        assert r.status == int(target.split("code=")[1][:3]) and r.body == b""
        nxt = c.read_response()
        assert nxt.status == 200 and nxt.body == b"a GET /next\n"


def test_informational_then_final(px):
    with Client(px.port) as c:
        c.send(build_request("GET", "/early") + build_request("GET", "/next"))
        final, interims = read_final_response(c.reader)
        assert all(i.status == 103 for i in interims)
        assert final.status == 200 and final.body == b"a early\n"
        assert c.read_response().body == b"a GET /next\n"


# ------------------------------------------------------------------------------------------
# Headers

def test_hop_by_hop_removed_and_forwarding_headers_added(px):
    hs = [("Connection", "keep-alive, X-Custom-Hop"), ("X-Custom-Hop", "secret"),
          ("Keep-Alive", "timeout=5"), ("TE", "trailers, deflate;q=0.5"),
          ("Trailer", "X-Trail"), ("Proxy-Connection", "keep-alive"), ("Upgrade", "h2c"),
          ("X-Forwarded-For", "203.0.113.9"), ("Via", "1.0 fred"), ("X-E2E", "yes")]
    r = get(px.port, "/hdr", headers=hs)
    assert r.status == 200
    req = px.a.requests[0]
    names = req.header_names()
    assert "x-custom-hop" not in names
    assert "x-custom-hop" not in req.tokens("connection")
    assert "timeout=5" not in req.get_all("keep-alive")
    assert not any("deflate" in v for v in req.get_all("te"))
    assert "trailer" not in names and "proxy-connection" not in names and "upgrade" not in names
    assert req.get("x-e2e") == "yes"
    assert ", ".join(req.get_all("x-forwarded-for")) == "203.0.113.9, 127.0.0.1"
    assert req.get_all("x-forwarded-proto") == ["http"]
    via = req.tokens("via")
    assert via[0] == "1.0 fred" and via[-1] == "1.1 tandem", via
    assert req.get("host") == "tandem.test"


def test_forwarding_headers_without_client_values(px):
    get(px.port, "/plain")
    req = px.a.requests[0]
    assert req.get_all("x-forwarded-for") == ["127.0.0.1"]
    assert req.get_all("x-forwarded-proto") == ["http"]
    assert req.tokens("via") == ["1.1 tandem"]


def test_response_hop_by_hop_removed_and_via_added(px):
    r = get(px.port, "/hop")
    assert r.status == 200 and r.body == b"a hop\n"
    names = r.header_names()
    assert "x-resp-hop" not in names and "proxy-connection" not in names
    assert "trailer" not in names and "upgrade" not in names
    assert "timeout=77" not in r.get_all("keep-alive")
    assert "x-resp-hop" not in r.tokens("connection")
    assert r.get("x-resp-e2e") == "kept"
    assert r.tokens("via")[-1:] == ["1.1 tandem"], r.headers


def test_large_header_below_limit_passes(px):
    big = "v" * (12 * 1024)
    r = get(px.port, "/bighdr", headers=[("X-Big", big)])
    assert r.status == 200
    assert px.a.requests[0].get("x-big") == big


def test_header_case_and_order_preserved(px):
    hs = [("X-First", "1"), ("x-MiXeD-cAsE", "Value With  Spaces"), ("X-Dup", "a"),
          ("X-Dup", "b")]
    get(px.port, "/case", headers=hs)
    req = px.a.requests[0]
    assert req.get_all("x-dup") == ["a", "b"]
    assert req.get("x-mixed-case") == "Value With  Spaces"
    names = [n for n, _ in req.headers]
    assert names.index("X-First") < names.index("x-MiXeD-cAsE") < names.index("X-Dup")


# ------------------------------------------------------------------------------------------
# WebSocket

def test_websocket_tunnel(px):
    c, resp, key = ws_handshake(px.port)
    with c:
        assert resp.status == 101, resp
        assert resp.get("sec-websocket-accept") == ws_accept_key(key)
        assert "websocket" in resp.tokens("upgrade") and "upgrade" in resp.tokens("connection")
        # the backend's greeting, written together with the 101, arrives
        assert ws_read_frame(c.reader)[:3] == (True, 1, b"hello from a")
        for i in range(5):
            msg = f"message {i}".encode()
            c.send(ws_frame(1, msg))
            assert ws_read_frame(c.reader)[:3] == (True, 1, msg)
        big = os.urandom(300000)
        c.send(ws_frame(2, big))
        assert ws_read_frame(c.reader)[2] == big
        c.send(ws_frame(9, b"are you there"))
        assert ws_read_frame(c.reader)[1:3] == (0xA, b"are you there")
        c.send(ws_frame(8, b"\x03\xe8"))
        assert ws_read_frame(c.reader)[1] == 8
        assert c.closed_by_peer(timeout=3)
    req = px.a.requests[0]
    assert "websocket" in req.tokens("upgrade")
    assert "upgrade" in req.tokens("connection")
    assert req.get("sec-websocket-key") == key



# ------------------------------------------------------------------------------------------
# Streaming and connection hygiene

def test_response_streamed_not_buffered(px):
    """Chunks the backend sends over time reach the client as they are sent."""
    with Client(px.port) as c:
        t0 = time.monotonic()
        c.send(build_request("GET", "/drip?n=4&ms=400"))
        head = c.reader.read_until(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0]
        c.reader.read_until(b"drip 0\n")
        t_first = time.monotonic() - t0
        assert t_first < 0.7, f"first chunk after {t_first:.2f}s: response buffered"
        rest = c.reader.read_until(b"0\r\n\r\n")
        assert b"drip 3\n" in rest and time.monotonic() - t0 >= 1.1


def test_content_length_upload_streams(px):
    """With Content-Length, the backend gets (and echoes) the first half before the rest is
    sent."""
    with Client(px.port) as c:
        c.send(build_request("POST", "/echo", [("Content-Length", "10")]) + b"01234")
        head = c.reader.read_until(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0]
        assert c.reader.read_exact(5) == b"01234"
        c.send(b"56789")
        assert c.reader.read_exact(5) == b"56789"


def test_many_pipelined_requests(px):
    n = 200
    with Client(px.port, timeout=10) as c:
        c.send(b"".join(build_request("GET", f"/m{i}", [("X-Pad", "p" * 300)])
                        for i in range(n)))
        bodies = [c.read_response().body for _ in range(n)]
    assert bodies == [f"a GET /m{i}\n".encode() for i in range(n)]


def test_connection_close_stops_pipeline(px):
    with Client(px.port) as c:
        c.send(build_request("GET", "/first", [("Connection", "close")])
               + build_request("GET", "/second"))
        assert c.read_response().body == b"a GET /first\n"
        assert c.closed_by_peer()
    assert px.a.targets() == ["/first"]


def test_http10_without_host(px):
    with Client(px.port) as c:
        c.send(b"GET /nohost HTTP/1.0\r\n\r\n")
        raw = c.reader.read_to_eof()
    assert b" 200 " in raw.split(b"\r\n")[0] and raw.endswith(b"a GET /nohost\n")


def test_aborted_client_does_not_desync_upstream(px):
    """A client that leaves while its response is pending must not get that response delivered
    to the next client through a reused upstream connection."""
    for i in range(3):
        s = socket.create_connection(("127.0.0.1", px.port), timeout=5)
        s.sendall(build_request("GET", f"/slow?ms=300&abandoned={i}"))
        px.a.wait_requests(2 * i + 1)
        s.close()
        r = get(px.port, f"/next{i}")
        assert r.body == f"a GET /next{i}\n".encode(), r
    for i in range(4):
        assert get(px.port, f"/later{i}").body == f"a GET /later{i}\n".encode()


def test_stale_pooled_connection_is_not_used(px):
    """The backend closes a keep-alive connection after answering; the next request still
    succeeds (tandem drops the closed pooled connection or retries on a new one)."""
    for i in range(4):
        with Client(px.port) as c:
            assert c.request("GET", "/stale?ms=30").status == 200
        stale = px.a.requests[-1].conn_id
        # probe: wait until the backend has closed that connection
        wait_until(lambda: stale in px.a.closed_ids, timeout=3, what="backend closing")
        r = get(px.port, f"/after-stale{i}")
        assert r.status == 200 and r.body == f"a GET /after-stale{i}\n".encode(), r


def test_unsolicited_backend_bytes_not_delivered(px):
    with Client(px.port) as c:
        c.send(build_request("GET", "/extra") + build_request("GET", "/next"))
        assert c.read_response().body == b"hello"
        try:
            r = c.read_response()
            assert r.body == b"a GET /next\n", "bytes from a previous response were delivered"
        except EOFError:
            pass  # closing the client connection is acceptable too
    assert get(px.port, "/fresh").body == b"a GET /fresh\n"


@pytest.mark.parametrize("q", ["", "?split_ms=100"], ids=["one-write", "head-first"])
def test_invalid_chunked_response(px, q):
    """A backend response whose chunked framing breaks: if nothing was sent to the client yet,
    a 502; if the head was already forwarded, the client connection is closed. Never silence,
    never the bad bytes, never a response for the next pipelined request."""
    with Client(px.port, timeout=4) as c:
        c.send(build_request("GET", f"/badchunk{q}") + build_request("GET", "/next"))
        raw = read_raw_until_close(c.sock, timeout=4)
    assert raw, "connection closed without any response"
    assert b"BADBYTES" not in raw and b"a GET /next" not in raw, raw
    assert raw.startswith(b"HTTP/1.1 200 ") or raw.startswith(b"HTTP/1.1 502 "), raw[:100]


def test_websocket_upgrade_declined_stays_http(px):
    with Client(px.port) as c:
        r = c.request("GET", "/ws?decline=1", [("Upgrade", "websocket"),
                                               ("Connection", "Upgrade"),
                                               ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                               ("Sec-WebSocket-Version", "13")])
        assert r.status == 200 and r.body == b"a GET /ws?decline=1\n"
        assert c.request("GET", "/after").body == b"a GET /after\n"


@pytest.mark.parametrize("kind", ["101", "204", "304", "head", "cl", "chunked"])
def test_bytes_after_complete_response_never_delivered(pool, kind):
    """The backend writes a response and, in the same write, another one: the extra bytes must
    not become the response to the next request (single worker, so the pool is shared)."""
    a = pool.http("a")
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")],
                            [backend_cfg("app", [server("a", a.port)])], workers=1))
    method = "HEAD" if kind == "head" else "GET"
    with Client(port) as c:
        c.send(build_request(method, f"/leak?kind={kind}&hold=0.5", [("Connection", "close")]))
        read_raw_until_close(c.sock, timeout=4)
    for i in range(3):
        r = get(port, f"/next{i}")
        assert r.body == f"a GET /next{i}\n".encode(), f"bytes of an earlier response: {r}"


def test_upstream_connection_not_reused_after_101(pool):
    """After a 101 the upstream connection speaks another protocol: it must never go back to
    the pool, even if the backend's next bytes arrive a little later."""
    a = pool.http("a")
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")],
                            [backend_cfg("app", [server("a", a.port)])], workers=1))
    leaked = []
    for i in range(3):
        with Client(port) as c:
            c.send(build_request("GET", "/leak?kind=101&gap_ms=20", [("Connection", "close")]))
            read_raw_until_close(c.sock, timeout=4)
        r = get(port, f"/next{i}")
        if r.body != f"a GET /next{i}\n".encode():
            leaked.append(r.body)
    assert not leaked, f"another client's connection got bytes sent after a 101: {leaked}"


def test_unsolicited_101_is_502(px):
    """A 101 to a request that asked for no upgrade is an invalid response."""
    with Client(px.port) as c:
        c.send(build_request("GET", "/leak?kind=101&hold=0"))
        r = read_response(c.reader)
    assert r.status == 502, r


def test_duplicate_identical_content_length(px):
    """RFC 9110 §8.6: reject, or forward one Content-Length — never the duplicate list."""
    with Client(px.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"
               b"abc")
        r = c.read_response()
    if r.status == 400:
        return
    assert r.status == 200 and r.body == b"abc"
    assert len(px.a.requests[0].get_all("content-length")) == 1, px.a.requests[0].raw_head


def test_connection_option_cannot_remove_host(px):
    """`Connection: Host` must not make tandem send an HTTP/1.1 request without Host
    (RFC 9112 §3.2); rejecting it with 400 is fine too."""
    with Client(px.port) as c:
        c.send(b"GET /nh HTTP/1.1\r\nHost: x\r\nConnection: Host\r\n\r\n")
        r = c.read_response()
    if r.status == 400:
        return
    assert r.status == 200
    assert px.a.requests[0].get_all("host") == ["x"], px.a.requests[0].raw_head


def test_max_connections(pool):
    a = pool.http("a")
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app", max_connections=2)],
                            [backend_cfg("app", [server("a", a.port)])], workers=1))
    c1 = Client(port)
    assert c1.request("GET", "/1").status == 200
    c2 = Client(port)
    try:
        assert c2.request("GET", "/2").status == 200
        s3 = socket.create_connection(("127.0.0.1", port), timeout=3)
        with s3:
            try:
                s3.sendall(build_request("GET", "/third"))
            except OSError:
                pass
            got = read_raw_until_close(s3, timeout=3)
        assert got == b"" or got.startswith(b"HTTP/1.1 503 "), got[:100]
        assert "/third" not in a.targets()
        c1.close()

        def fourth():
            try:
                return get(port, "/fourth").status == 200
            except (OSError, EOFError):
                return False  # tandem may not have seen c1's close yet

        wait_until(fourth, timeout=3, step=0.05, what="a slot after closing a connection")
        assert c2.request("GET", "/2b").status == 200
    finally:
        c1.close()
        c2.close()


def test_early_backend_response_to_upload_is_forwarded(px):
    """The backend answers 403 before reading a large upload (and drains it, as nginx does):
    the client gets that 403, not a 502."""
    with Client(px.port, timeout=10) as c:
        c.send(build_request("POST", "/reject?linger=1", [("Content-Length", str(10 * MiB))]))
        errors = []

        def sender():
            try:
                for _ in range(10):
                    c.sock.sendall(PATTERN)
            except OSError as ex:  # tandem may stop reading the rest of the body
                errors.append(ex)

        th = threading.Thread(target=sender)
        th.start()
        r = c.read_response()
        th.join(15)
    assert r.status == 403 and r.body == b"a rejected\n", r


def test_mixed_concurrent_traffic(px):
    """20 clients x 25 keep-alive requests with random bodies (CL or chunked, odd chunk sizes,
    sometimes pipelined in pairs): every echo must come back intact and in order."""
    import random
    errors = []

    def client(n):
        rnd = random.Random(n)
        try:
            with Client(px.port, timeout=10) as c:
                for i in range(25):
                    bodies = [rnd.randbytes(rnd.choice([0, 1, 100, 5000, 70000]))
                              for _ in range(rnd.choice([1, 2]))]
                    wire = b""
                    for body in bodies:
                        if rnd.random() < 0.5:
                            wire += build_request("POST", f"/echo?c={n}&i={i}", body=body)
                        else:
                            cuts = sorted(rnd.sample(range(len(body) + 1), min(3, len(body) + 1)))
                            pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)])]
                            wire += build_request("POST", f"/echo?c={n}&i={i}&te=1",
                                                  [("Transfer-Encoding", "chunked")])
                            wire += chunk_encode(pieces)
                    c.send(wire)
                    for body in bodies:
                        r = c.read_response()
                        assert r.status == 200 and r.body == body, (n, i, r.status, len(r.body))
        except Exception as ex:  # reported below
            errors.append(f"client {n}: {ex!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
