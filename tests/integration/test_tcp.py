"""TCP mode: bidirectional streaming, half-close both ways, large transfers, failing backends."""
import os
import socket
import threading
import time
import types
import zlib

import pytest

from harness import (BlackholeListener, LOCAL, PATTERN, Reader, backend_cfg, check_alive, free_port,
                     make_config, pattern_crc, read_raw_until_close, server, tcp_listener,
                     wait_until)

MiB = 1 << 20


@pytest.fixture(scope="module")
def tcp(module_pool):
    echo = module_pool.tcp("e")
    banner = module_pool.tcp("bn", mode="banner")
    bh = BlackholeListener()
    ports = {n: free_port() for n in ("echo", "banner", "dead", "hole")}
    lim = {"connect_timeout": "500ms", "timeout": "10s"}
    t = module_pool.tandem(make_config(
        [tcp_listener("echo", ports["echo"], "echo"),
         tcp_listener("banner", ports["banner"], "banner"),
         tcp_listener("dead", ports["dead"], "dead"),
         tcp_listener("hole", ports["hole"], "hole")],
        [backend_cfg("echo", [server("e", echo.port)], limits=lim),
         backend_cfg("banner", [server("bn", banner.port)], limits=lim),
         backend_cfg("dead", [server("x", free_port())], limits=lim),
         backend_cfg("hole", [server("h", bh.port)], limits=lim)]))
    yield types.SimpleNamespace(t=t, echo_backend=echo, banner_backend=banner, **ports)
    bh.close()


@pytest.fixture
def tp(tcp):
    tcp.t.ensure_running()
    yield tcp
    check_alive(tcp.t, tcp_port=tcp.echo)


def _connect(port, timeout=5):
    s = socket.create_connection((LOCAL, port), timeout=timeout)
    s.settimeout(timeout)
    return s


def test_echo_streams_before_close(tp):
    with _connect(tp.echo) as s:
        r = Reader(s)
        for i in range(5):
            msg = f"line {i}\n".encode()
            s.sendall(msg)
            assert r.read_exact(len(msg)) == msg  # answered while the connection stays open


def test_half_close_client_shuts_write(tp):
    """Client EOF reaches the backend; the backend's reply after that still reaches the client."""
    with _connect(tp.echo) as s:
        s.sendall(b"hello world")
        s.shutdown(socket.SHUT_WR)
        assert read_raw_until_close(s) == b"hello worldEOF 11\n"


def test_half_close_backend_shuts_write(tp):
    """Backend speaks first and shuts its write side; the client still sends, backend gets it."""
    before = set(tp.banner_backend.received)
    with _connect(tp.banner) as s:
        r = Reader(s)
        assert r.read_until(b"\n") == b"BANNER bn\n"
        assert r.read_some() == b"", "backend's FIN was not passed on"
        s.sendall(b"client data after backend EOF")
        s.shutdown(socket.SHUT_WR)
        wait_until(lambda: set(tp.banner_backend.received) - before, timeout=5,
                   what="banner backend to see the client's EOF")
        got = [tp.banner_backend.received[k] for k in set(tp.banner_backend.received) - before]
        assert b"client data after backend EOF" in got
        assert read_raw_until_close(s) == b""


def test_large_transfer_both_ways(tp):
    n = 10 * MiB
    result = {}

    def sender(s):
        try:
            sent = 0
            while sent < n:
                k = min(len(PATTERN), n - sent)
                s.sendall(PATTERN[:k])
                sent += k
            s.shutdown(socket.SHUT_WR)
        except OSError as ex:
            result["send_error"] = repr(ex)

    with _connect(tp.echo, timeout=20) as s:
        th = threading.Thread(target=sender, args=(s,))
        th.start()
        crc, got, tail = 0, 0, b""
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            take = min(len(d), n - got)
            crc = zlib.crc32(d[:take], crc)
            got += take
            tail += d[take:]
        th.join(20)
    assert "send_error" not in result, result
    assert got == n and crc == pattern_crc(n)
    assert tail == b"EOF %d\n" % n


def test_concurrent_connections(tp):
    errors = []

    def one(i):
        try:
            data = os.urandom(50000 + i)
            with _connect(tp.echo) as s:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                assert read_raw_until_close(s) == data + b"EOF %d\n" % len(data)
        except Exception as ex:
            errors.append(f"{i}: {ex!r}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors


def test_refused_backend_closes_client(tp):
    t0 = time.monotonic()
    with _connect(tp.dead) as s:
        try:
            s.sendall(b"anyone there?")
        except OSError:
            pass
        got = read_raw_until_close(s, timeout=3)
    assert got == b""
    assert time.monotonic() - t0 < 2.0


def test_connect_timeout_closes_client(tp):
    t0 = time.monotonic()
    with _connect(tp.hole) as s:
        try:
            s.sendall(b"hello?")
        except OSError:
            pass
        got = read_raw_until_close(s, timeout=4)
    elapsed = time.monotonic() - t0
    assert got == b""
    assert 0.4 <= elapsed <= 2.5, f"closed after {elapsed:.2f}s with connect_timeout 500ms"


def test_traffic_after_connect_timeouts(pool):
    """Fresh instance: repeated TCP connect timeouts, then echo still works (and SIGTERM at
    teardown exits 0)."""
    e = pool.tcp("e")
    bh = BlackholeListener()
    try:
        echo, hole = free_port(), free_port()
        t = pool.tandem(make_config(
            [tcp_listener("echo", echo, "echo"), tcp_listener("hole", hole, "hole")],
            [backend_cfg("echo", [server("e", e.port)]),
             backend_cfg("hole", [server("h", bh.port)], limits={"connect_timeout": "300ms"})]))
        for i in range(3):
            with _connect(hole) as s:
                assert read_raw_until_close(s, timeout=3) == b""
        for i in range(4):
            with _connect(echo) as s:
                s.sendall(b"x%d" % i)
                s.shutdown(socket.SHUT_WR)
                assert read_raw_until_close(s) == b"x%dEOF 2\n" % i
        assert t.alive()
    finally:
        bh.close()


def test_backpressure_bounded_memory(tp):
    """100 MiB through the echo with a client that stops reading for a while: tandem must
    stop reading instead of buffering (RSS grows by less than 48 MiB)."""
    from harness import RssMonitor
    n = 100 * MiB
    result = {}

    def sender(s):
        try:
            for piece in range(n // len(PATTERN)):
                s.sendall(PATTERN)
            s.shutdown(socket.SHUT_WR)
        except OSError as ex:
            result["send_error"] = repr(ex)

    base = tp.t.rss_kib()  # idle RSS: bigger under sanitizers
    with RssMonitor(tp.t.pid) as mon, _connect(tp.echo, timeout=30) as s:
        th = threading.Thread(target=sender, args=(s,))
        th.start()
        time.sleep(0.5)  # the scenario: a client that does not read for half a second
        got, crc = 0, 0
        while got < n:
            d = s.recv(min(1 << 20, n - got))
            if not d:
                break
            crc = zlib.crc32(d, crc)
            got += len(d)
        tail = read_raw_until_close(s, timeout=10)
        th.join(20)
    assert "send_error" not in result, result
    assert got == n and crc == pattern_crc(n) and tail == b"EOF %d\n" % n
    # Growth, not the absolute size: buffering the 100 MiB would blow far past it.
    assert mon.peak_kib - base < 48 * 1024, f"tandem RSS grew from {base} to {mon.peak_kib} KiB"
