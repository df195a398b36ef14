"""Self-tests of the harness: the backends, the raw client and the Tandem process wrapper, run
without the tandem binary (a stand-in script plays the process), so a harness bug is not reported
as a proxy bug."""
import os
import socket
import stat
import sys
import time

import pytest

from harness import (LOCAL, MALFORMED_RESPONSES, BlackholeListener, Client, Reader, Tandem,
                     TandemError, backend_cfg, build_request, chunk_encode, free_port,
                     http_listener, make_config, pattern_crc, read_response, server, tcp_listener,
                     to_yaml, wait_until, ws_frame, ws_handshake, ws_read_frame, ws_accept_key)


def test_free_port_distinct_and_bindable():
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    p = ports.pop()
    with socket.socket() as s:
        s.bind((LOCAL, p))


def test_yaml_rendering():
    cfg = make_config([http_listener("web", 8080, "app", max_header_bytes="16KiB",
                                     header_timeout="1s")],
                      [backend_cfg("app", [server("a", 9001), server("b", 9002, backup=True)],
                                   balance="maglev", hash_key="header:X-User",
                                   limits={"timeout": "2s"})])
    text = to_yaml(cfg)
    assert text.splitlines() == [
        "node:", "  id: t1", "workers: 2", "drain_timeout: 5s",
        "admin:", f"  listen: {cfg['admin']['listen']}", "listeners:",
        "  - name: web", "    listen: 127.0.0.1:8080", "    mode: http", "    backend: app",
        "    limits:", "      max_header_bytes: 16KiB", "      header_timeout: 1s",
        "backends:", "  - name: app", "    balance: maglev", "    hash_key: header:X-User",
        "    servers:", "      - name: a", "        address: 127.0.0.1:9001",
        "      - name: b", "        address: 127.0.0.1:9002", "        backup: true",
        "    limits:", "      timeout: 2s"]
    assert to_yaml({"k": "a b: c"}) == 'k: "a b: c"'


def test_backend_keepalive_and_recording(backend_pool):
    a = backend_pool.http("a")
    with Client(a.port) as c:
        r1 = c.request("GET", "/x?y=1", [("X-Test", "1")])
        r2 = c.request("GET", "/z")
    assert (r1.status, r1.get("x-backend"), r1.body) == (200, "a", b"a GET /x?y=1\n")
    assert r2.body == b"a GET /z\n"
    assert a.accepted == 1
    assert a.requests[0].raw_head == (b"GET /x?y=1 HTTP/1.1\r\nHost: tandem.test\r\n"
                                      b"X-Test: 1\r\n\r\n")
    assert a.all_raw() == a.requests[0].raw_head + a.requests[1].raw_head


def test_backend_pipelining_in_order(backend_pool):
    a = backend_pool.http("a")
    with Client(a.port) as c:
        c.send(b"".join(build_request("GET", f"/p{i}") for i in range(10)))
        bodies = [c.read_response().body for _ in range(10)]
    assert bodies == [f"a GET /p{i}\n".encode() for i in range(10)]


def test_backend_echo_variants(backend_pool):
    a = backend_pool.http("a")
    with Client(a.port) as c:
        assert c.request("POST", "/echo", body=b"hello").body == b"hello"
        c.send(build_request("POST", "/echo", [("Transfer-Encoding", "chunked")])
               + chunk_encode([b"abc", b"defgh"]))
        r = c.read_response()
        assert (r.body, r.get("content-length")) == (b"abcdefgh", "8")
        c.send(build_request("POST", "/echo?chunked=1", [("Transfer-Encoding", "chunked")])
               + chunk_encode([b"x" * 10, b"y" * 3000]))
        r = c.read_response()
        assert r.get("transfer-encoding") == "chunked" and r.body == b"x" * 10 + b"y" * 3000
        assert r.trailers == ["X-Echo-Trailer: done"]
    assert [q.complete for q in a.requests] == [True, True, True]


def test_backend_big_and_head(backend_pool):
    a = backend_pool.http("a")
    import zlib
    with Client(a.port) as c:
        for q in ("", "&chunked=1"):
            r = c.request("GET", f"/big?n=3000001{q}")
            assert r.body_len == 3000001 and zlib.crc32(r.body) == pattern_crc(3000001)
        r = c.request("HEAD", "/big?n=5000")
        assert r.get("content-length") == "5000" and r.body == b""
        assert c.request("GET", "/").status == 200


def test_backend_status_early_slow_noclen(backend_pool):
    a = backend_pool.http("a")
    with Client(a.port) as c:
        r = c.request("GET", "/status?code=304&cl=50")
        assert (r.status, r.get("content-length"), r.body) == (304, "50", b"")
        assert c.request("GET", "/status?code=204").status == 204
        assert c.request("GET", "/status?code=404").status == 404
        c.send(build_request("GET", "/early"))
        first = read_response(c.reader)
        assert first.status == 103
        assert c.read_response().status == 200
        t0 = time.monotonic()
        assert c.request("GET", "/slow?ms=300").status == 200
        assert time.monotonic() - t0 >= 0.29
        r = c.request("GET", "/noclen")
        assert r.body.startswith(b"a until close") and c.reader.eof


@pytest.mark.parametrize("kind", sorted(MALFORMED_RESPONSES))
def test_backend_malformed(backend_pool, kind):
    a = backend_pool.http("a")
    with Client(a.port) as c:
        c.send(build_request("GET", f"/malformed?kind={kind}"))
        assert c.reader.read_to_eof() == MALFORMED_RESPONSES[kind]


def test_backend_expect_continue(backend_pool):
    a = backend_pool.http("a")
    with Client(a.port) as c:
        c.send(build_request("POST", "/echo", [("Expect", "100-continue"),
                                               ("Content-Length", "5")]))
        assert read_response(c.reader).status == 100
        c.send(b"hello")
        assert c.read_response().body == b"hello"


def test_backend_websocket(backend_pool):
    a = backend_pool.http("a")
    c, resp, key = ws_handshake(a.port)
    with c:
        assert resp.status == 101 and resp.get("sec-websocket-accept") == ws_accept_key(key)
        assert ws_read_frame(c.reader)[:3] == (True, 1, b"hello from a")
        c.send(ws_frame(1, b"ping me"))
        assert ws_read_frame(c.reader)[:3] == (True, 1, b"ping me")
        big = os.urandom(100000)
        c.send(ws_frame(2, big))
        assert ws_read_frame(c.reader)[2] == big
        c.send(ws_frame(8, b"\x03\xe8"))
        assert ws_read_frame(c.reader)[1] == 8


def test_tcp_echo_half_close(backend_pool):
    e = backend_pool.tcp("e")
    with socket.create_connection((LOCAL, e.port), timeout=5) as s:
        s.sendall(b"hello")
        s.shutdown(socket.SHUT_WR)
        assert Reader(s).read_to_eof() == b"helloEOF 5\n"


def test_tcp_banner_mode(backend_pool):
    e = backend_pool.tcp("e", mode="banner")
    with socket.create_connection((LOCAL, e.port), timeout=5) as s:
        r = Reader(s)
        assert r.read_until(b"\n") == b"BANNER e\n"
        assert r.read_some() == b""  # backend shut its write side
        s.sendall(b"still talking")
        s.shutdown(socket.SHUT_WR)
    wait_until(lambda: e.received.get(1) is not None, what="banner backend EOF")
    assert e.received[1] == b"still talking"


def test_blackhole_connect_times_out():
    bh = BlackholeListener()
    try:
        t0 = time.monotonic()
        with pytest.raises((socket.timeout, TimeoutError)):
            socket.create_connection((LOCAL, bh.port), timeout=0.3)
        assert time.monotonic() - t0 < 1.0
    finally:
        bh.close()


FAKE_TANDEM = r'''#!/usr/bin/env python3
# Stand-in for `tandem run -c FILE`: binds every `listen:` address, exits 0 on SIGTERM.
import re, signal, socket, sys, time
cfg = open(sys.argv[3]).read()
if "exit-now" in cfg:
    print("fatal: asked to exit", file=sys.stderr); sys.exit(3)
socks = []
for host, port in re.findall(r"listen: ([\d.]+):(\d+)", cfg):
    time.sleep(0.05)
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port))); s.listen(16); socks.append(s)
print("listening", file=sys.stderr, flush=True)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
if "ignore-term" in cfg:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    time.sleep(1)
'''


@pytest.fixture
def fake_bin(tmp_path):
    p = tmp_path / "fake-tandem"
    p.write_text(FAKE_TANDEM.replace("/usr/bin/env python3", sys.executable))
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


def test_tandem_wrapper_readiness_and_stop(fake_bin, tmp_path):
    ports = [free_port(), free_port()]
    cfg = make_config([http_listener("a", ports[0], "x"), tcp_listener("b", ports[1], "x")], [])
    t = Tandem(fake_bin, tmp_path, cfg).start()
    try:
        for p in ports:  # every listener accepts once start() returned
            socket.create_connection((LOCAL, p), timeout=1).close()
        assert "listening" in t.stderr_text()
        assert t.rss_kib() > 0
    finally:
        assert t.stop() == 0


def test_tandem_wrapper_reports_early_exit(fake_bin, tmp_path):
    cfg = make_config([http_listener("a", free_port(), "x")], [], node="exit-now")
    with pytest.raises(TandemError, match="(?s)exited with status 3.*asked to exit"):
        Tandem(fake_bin, tmp_path, cfg).start()


def test_tandem_wrapper_kills_stubborn_process(fake_bin, tmp_path):
    cfg = make_config([http_listener("a", free_port(), "x")], [], node="ignore-term")
    t = Tandem(fake_bin, tmp_path, cfg).start()
    assert t.stop(timeout=0.5) == -9


def test_backend_misbehaving_endpoints(backend_pool):
    a = backend_pool.http("a")
    with Client(a.port) as c:
        c.send(build_request("GET", "/leak?kind=cl&hold=0"))
        assert c.reader.read_to_eof().endswith(b"hello" + b"HTTP/1.1 200 OK\r\n"
                                               b"Content-Length: 6\r\n\r\nLEAKED")
    with Client(a.port) as c:
        c.send(build_request("GET", "/badchunk"))
        assert c.reader.read_to_eof().endswith(b"5\r\nhello\r\nzz\r\nBADBYTES\r\n0\r\n\r\n")
    with Client(a.port) as c:
        c.send(build_request("GET", "/drip?n=3&ms=10"))
        assert c.read_response().body == b"drip 0\ndrip 1\ndrip 2\n"
    with Client(a.port) as c:
        c.send(build_request("POST", "/reject?linger=1", [("Content-Length", "1000000")])
               + b"x" * 1000)
        r = c.read_response()
        assert (r.status, r.body) == (403, b"a rejected\n")
    with Client(a.port) as c:
        c.send(build_request("GET", "/stall?ms=100"))
        assert c.reader.read_to_eof().endswith(b"0123456789")
    assert a.closed_ids
