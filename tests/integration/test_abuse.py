"""Abuse resistance against the real binary: slowloris, slow POST, slow read, connection floods,
descriptor exhaustion (EMFILE), huge and many headers, deep pipelining. Each test also shows a
normal client being served while (or right after) the abuse happens."""
import os
import re
import selectors
import socket
import stat
import subprocess
import threading
import time

import pytest

from harness import (Client, Tandem, backend_cfg, build_request, free_port, get, http_listener,
                     make_config, read_raw_until_close, read_response, server, wait_until)

LOCAL = "127.0.0.1"


def metric(t, name, **labels):
    """One sample of tandem's /metrics (0 if absent)."""
    status, _, body = t.admin("GET", "/metrics")
    assert status == 200
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in body.decode().splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and all(p in (m.group(2) or "") for p in want.split(",")):
            return float(m.group(3))
    return 0.0


def timeouts(t, reason):
    return metric(t, "tandem_listener_client_timeouts_total", listener="web", reason=reason)


def cpu_seconds(pid):
    """utime + stime of a process (all threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class NormalClient:
    """A well-behaved client in a thread: one GET on a fresh connection every `every` seconds;
    records (latency, status or error) until stopped. Bounded by `limit` requests."""

    def __init__(self, port, every=0.05, limit=2000):
        self.port, self.every, self.limit = port, every, limit
        self.results = []
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for i in range(self.limit):
            if self.stop_flag.is_set():
                return
            t0 = time.monotonic()
            try:
                r = get(self.port, f"/normal/{i}", timeout=3)
                self.results.append((time.monotonic() - t0, r.status))
            except OSError as e:
                self.results.append((time.monotonic() - t0, repr(e)))
            self.stop_flag.wait(self.every)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(10)

    def failures(self):
        return [r for r in self.results if r[1] != 200]


# ------------------------------------------------------------------------------------------
# Slowloris: many connections trickling header bytes, each closed at header_timeout


def test_slowloris_cut_at_header_timeout_nothing_forwarded(pool):
    a = pool.http("a")
    port = free_port()
    n, header_timeout = 300, 2.0
    t = pool.tandem(make_config([http_listener("web", port, "app", header_timeout="2s")],
                                [backend_cfg("app", [server("a", a.port)])]))
    sel = selectors.DefaultSelector()
    conns = {}  # sock -> {"t0", "closed_at", "got"}
    try:
        with NormalClient(port) as normal:
            for i in range(n):
                s = socket.socket()
                s.setblocking(False)
                t0 = time.monotonic()
                s.connect_ex((LOCAL, port))
                conns[s] = {"t0": t0, "closed_at": None, "got": b"", "sent": 0}
                sel.register(s, selectors.EVENT_READ)
            opening = b"GET /slowloris HTTP/1.1\r\nHost: tandem.test\r\nX-a: "
            deadline = time.monotonic() + header_timeout + 4
            next_drip = 0.0
            while time.monotonic() < deadline and any(c["closed_at"] is None
                                                      for c in conns.values()):
                now = time.monotonic()
                if now >= next_drip:  # one more header byte on every open connection
                    next_drip = now + 0.3
                    for s, c in conns.items():
                        if c["closed_at"] is None:
                            data = opening if c["sent"] == 0 else b"b"
                            try:
                                c["sent"] += s.send(data)
                            except (BlockingIOError, ConnectionError):
                                pass
                for key, _ in sel.select(timeout=0.05):
                    s, c = key.fileobj, conns[key.fileobj]
                    try:
                        data = s.recv(4096)
                    except ConnectionResetError:
                        data = b""
                    except BlockingIOError:
                        continue
                    if data:
                        c["got"] += data
                        continue
                    c["closed_at"] = time.monotonic()
                    sel.unregister(s)
            normal_results = list(normal.results)
    finally:
        for s in conns:
            s.close()
        sel.close()
    open_left = [c for c in conns.values() if c["closed_at"] is None]
    assert not open_left, f"{len(open_left)} slow connections still open after the header timeout"
    held = [c["closed_at"] - c["t0"] for c in conns.values()]
    # The timer starts at accept (after our connect began) and trickled bytes never extend it.
    assert min(held) >= header_timeout - 0.1, f"closed too early: {min(held):.3f}s"
    assert max(held) <= header_timeout + 1.5, f"closed too late: {max(held):.3f}s"
    for c in conns.values():
        assert c["got"] == b"" or c["got"].startswith(b"HTTP/1.1 408 "), c["got"][:100]
    assert timeouts(t, "header") == n
    # Nothing of the slow heads reached the backend; the normal client was served throughout.
    assert all(q.target.startswith("/normal/") for q in a.requests)
    assert b"slowloris" not in a.all_raw()
    assert len(normal_results) >= 20 and not [r for r in normal_results if r[1] != 200]
    assert max(r[0] for r in normal_results) < 1.0


# ------------------------------------------------------------------------------------------
# Minimum data rate: slow POST (R-U-Dead-Yet) and slow read

RATE = {"bytes": "1KiB", "per": "1s"}


def rate_tandem(pool, a, **limits):
    port = free_port()
    t = pool.tandem(make_config(
        [http_listener("web", port, "app", min_rate=RATE, **limits)],
        [backend_cfg("app", [server("a", a.port)], limits={"timeout": "30s"})]))
    return t, port


def test_slow_post_cut_off_and_backend_connection_released(pool):
    a = pool.http("a")
    t, port = rate_tandem(pool, a)
    s = socket.create_connection((LOCAL, port), timeout=5)
    try:
        s.sendall(build_request("POST", "/sink", [("Content-Length", "100000")]))
        a.wait_requests(1)  # the head was forwarded (bodies stream), a backend connection held
        assert len(a._conns) == 1
        t0 = time.monotonic()
        s.setblocking(False)
        got = b""
        # 10 bytes every 0.2 s = 50 B/s, far under 1 KiB/s; bounded to 8 s.
        while time.monotonic() - t0 < 8:
            try:
                s.send(b"x" * 10)
            except (BlockingIOError, ConnectionError):
                pass
            try:
                data = s.recv(4096)
                if not data:
                    break
                got += data
            except BlockingIOError:
                pass
            except ConnectionError:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
    finally:
        s.close()
    # Cut one to two periods into the stall (the first tick only takes a baseline).
    assert 0.9 <= elapsed <= 3.5, f"cut after {elapsed:.2f}s"
    assert got == b"" or got.startswith(b"HTTP/1.1 408 "), got[:100]
    assert timeouts(t, "body") == 1
    wait_until(lambda: not a._conns, timeout=3, what="the backend connection to be released")
    assert not a.requests[0].complete
    # A normal upload of the same size, paced well above the minimum rate, is not cut.
    with Client(port) as c:
        c.send(build_request("POST", "/sink", [("Content-Length", "100000")]))
        for _ in range(25):  # 4 KiB every 0.1 s for 2.5 s: 40 KiB/s, several periods long
            c.send(b"y" * 4000)
            time.sleep(0.1)
        r = c.read_response()
    assert r.status == 200 and r.body.startswith(b"bytes=100000 ")
    assert timeouts(t, "body") == 1


def test_slow_read_cut_off_and_backend_connection_released(pool):
    a = pool.http("a")
    t, port = rate_tandem(pool, a)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the proxy fills it at once
    s.settimeout(5)
    try:
        s.connect((LOCAL, port))
        s.sendall(build_request("GET", "/big?n=67108864"))  # 64 MiB, never read
        assert s.recv(16).startswith(b"HTTP/1.1 200")
        a.wait_requests(1)
        t0 = time.monotonic()
        wait_until(lambda: timeouts(t, "read") == 1, timeout=6, step=0.05,
                   what="the slow reader to be cut off")
        elapsed = time.monotonic() - t0
        wait_until(lambda: not a._conns, timeout=3, what="the backend connection to be released")
    finally:
        s.close()
    assert 0.9 <= elapsed <= 4.0, f"cut after {elapsed:.2f}s"
    assert timeouts(t, "body") == 0
    # A client that reads the same response at its own (normal) pace gets all of it.
    with Client(port, timeout=30) as c:
        c.send(build_request("GET", "/big?n=8388608"))
        r = read_response(c.reader, keep_body=False)
    assert r.status == 200 and r.body_len == 8388608
    assert timeouts(t, "read") == 1


def test_min_rate_off_and_validation(pool, tandem_bin, tmp_path):
    """bytes: 0 turns the check off: a reader stalled for several periods is not cut."""
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config(
        [http_listener("web", port, "app", min_rate={"bytes": 0, "per": "500ms"})],
        [backend_cfg("app", [server("a", a.port)], limits={"timeout": "30s"})]))
    with Client(port) as c:
        c.send(build_request("GET", "/big?n=16777216"))
        time.sleep(2.0)  # four periods without reading: time passing is what is tested
        r = read_response(c.reader, keep_body=False)
    assert r.status == 200 and r.body_len == 16777216
    assert timeouts(t, "read") == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners:\n  - name: web\n    listen: 127.0.0.1:1\n    backend: app\n"
                   "    limits:\n      min_rate: {bytes: 1KiB, per: 10}\n"
                   "backends:\n  - name: app\n    servers: [{address: 127.0.0.1:2}]\n")
    r = subprocess.run([tandem_bin, "check", "-c", str(bad)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1 and f"{bad}:6:" in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------
# Connection floods


def test_connection_flood_over_max_connections(pool):
    a = pool.http("a")
    port = free_port()
    limit, extra = 50, 30
    t = pool.tandem(make_config(
        [http_listener("web", port, "app", max_connections=limit, header_timeout="30s")],
        [backend_cfg("app", [server("a", a.port)])]))
    socks = []
    try:
        for _ in range(limit + extra):
            socks.append(socket.create_connection((LOCAL, port), timeout=5))
        # Accepted in order: the first `limit` stay open, the rest are closed at once.
        closed = set()

        def count_closed():
            for i, s in enumerate(socks):
                if i in closed:
                    continue
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        closed.add(i)
                except BlockingIOError:
                    pass
                except ConnectionError:
                    closed.add(i)
            return len(closed) >= extra

        wait_until(count_closed, timeout=5, what=f"{extra} connections over the limit closed")
        time.sleep(0.3)  # nothing more gets closed: time passing is what is tested
        count_closed()
        assert len(closed) == extra
        assert metric(t, "tandem_listener_connections_rejected_total", listener="web") == extra
        assert metric(t, "tandem_listener_active_connections", listener="web") == limit
        # While full, a new client is turned away too, and the process stays up.
        with pytest.raises((ConnectionError, EOFError, OSError)):
            get(port, "/while-full", timeout=2)
        assert t.alive()
    finally:
        for s in socks:
            s.close()
    # Once the flood goes, normal service resumes.
    wait_until(lambda: metric(t, "tandem_listener_active_connections", listener="web") == 0,
               timeout=5, what="the flood's connections to close")
    r = get(port, "/after-flood")
    assert r.status == 200 and r.body == b"a GET /after-flood\n"
    assert "/while-full" not in a.targets()


def test_emfile_backs_off_without_busy_loop_and_recovers(pool, tmp_path):
    a = pool.http("a")
    port = free_port()
    # The same binary under a 200-descriptor limit (exec keeps the PID).
    wrapper = tmp_path / "tandem-200fds"
    wrapper.write_text(f"#!/bin/sh\nulimit -n 200 || exit 3\nexec {pool.binary} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    cfg = make_config([http_listener("web", port, "app", header_timeout="60s")],
                      [backend_cfg("app", [server("a", a.port)])], workers=1)
    t = Tandem(str(wrapper), tmp_path, cfg, "emfile")
    pool.items.append(t)
    t.start()
    with open(f"/proc/{t.pid}/limits") as f:
        assert re.search(r"Max open files\s+200\s+200", f.read())
    early = Client(port)  # accepted before the exhaustion, no request yet (no pooled upstream)
    socks = []
    try:
        for _ in range(260):  # more than the process can hold: the rest wait in the backlog
            socks.append(socket.create_connection((LOCAL, port), timeout=5))
        wait_until(lambda: "Too many open files" in t.stderr_text(), timeout=5,
                   what="accept to hit EMFILE")
        # ~2 s of exhaustion with new connection attempts arriving: each would raise an edge.
        c0, w0 = cpu_seconds(t.pid), time.monotonic()
        for _ in range(20):
            socks.append(socket.create_connection((LOCAL, port), timeout=5))
            time.sleep(0.1)
        cpu = cpu_seconds(t.pid) - c0
        wall = time.monotonic() - w0
        assert cpu < 0.1 * wall, f"{cpu:.3f}s CPU in {wall:.2f}s while out of descriptors"
        assert t.alive()
        # One warning per episode, not one per retry or per new connection (20 arrived). Other
        # threads' short-lived descriptors (the admin's /proc reads) can let one accept through,
        # which ends an episode: so at most one more warning than resumptions.
        text = t.stderr_text()
        warnings, resumed = text.count("Too many open files"), text.count("accepting again")
        assert warnings <= min(3, resumed + 1), t.stderr_tail()
        # A request on a connection accepted earlier: no descriptor for the upstream connection
        # is a local shortage (503), not a failure of the server (checked below: no connect
        # failure counted, so the server is not held out). 200 only if such a descriptor was
        # briefly free at that instant.
        early.send(build_request("GET", "/during-emfile"))
        assert early.read_response().status in (503, 200)
    finally:
        early.close()
        for s in socks:
            s.close()
    # Descriptors come back as the connections close; then it serves again.
    wait_until(lambda: "accepting again" in t.stderr_text(), timeout=5, what="accept to resume")

    def served():
        try:
            return get(port, "/after-emfile", timeout=2).status == 200
        except OSError:
            return False

    wait_until(served, timeout=10, step=0.1, what="service after EMFILE")
    assert metric(t, "tandem_backend_connect_failures_total", backend="app") == 0


# ------------------------------------------------------------------------------------------
# Heads: huge, many headers; deep pipelining


@pytest.fixture
def plain(pool):
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app", max_header_bytes="16KiB")],
                                [backend_cfg("app", [server("a", a.port)])]))
    return t, port, a


def _exchange(port, raw):
    with socket.create_connection((LOCAL, port), timeout=5) as s:
        try:
            s.sendall(raw)
        except ConnectionError:
            pass
        return read_raw_until_close(s, timeout=4)


def test_huge_head_431_nothing_forwarded(plain):
    t, port, a = plain
    # One huge header, and a head of many medium headers that adds up past the limit.
    for raw in (build_request("GET", "/huge", [("X-Big", "v" * (64 * 1024))]),
                build_request("GET", "/huge", [(f"X-H{i}", "v" * 200) for i in range(100)])):
        got = _exchange(port, raw)
        assert got.startswith(b"HTTP/1.1 431 "), got[:100]
    # Just under the limit passes (positive control).
    r = get(port, "/fits", headers=[("X-Big", "v" * (15 * 1024))])
    assert r.status == 200
    assert a.targets() == ["/fits"]
    assert b"/huge" not in a.all_raw()


def test_many_headers(plain):
    t, port, a = plain
    got = _exchange(port, build_request("GET", "/many", [(f"X-H{i}", "v") for i in range(1000)]))
    assert got.startswith(b"HTTP/1.1 431 "), got[:100]
    assert a.targets() == []
    # A request with many (but not too many) headers gets through with every one of them.
    r = get(port, "/some", headers=[(f"X-H{i}", str(i)) for i in range(100)])
    assert r.status == 200
    q = a.requests[-1]
    assert q.target == "/some" and [q.get(f"x-h{i}") for i in range(100)] == [
        str(i) for i in range(100)]


def test_deep_pipelining_answered_in_order(plain):
    t, port, a = plain
    n = 1000
    batch = b"".join(build_request("GET", f"/p/{i}") for i in range(n))
    with Client(port, timeout=20) as c:
        c.send(batch)  # one write
        for i in range(n):
            r = c.read_response()
            assert r.status == 200 and r.body == f"a GET /p/{i}\n".encode(), (i, r)
        # The connection is still usable afterwards.
        assert c.request("GET", "/after").body == b"a GET /after\n"
    assert a.targets() == [f"/p/{i}" for i in range(n)] + ["/after"]
