"""Server selection (round robin order, weights, backups, consistent hashing across instances)
and the command line (check, version)."""
import collections
import socket
import threading

import pytest

from harness import (Client, backend_cfg, free_port, get, http_listener, make_config, run_cli,
                     server, to_yaml, wait_until)


def _rr_setup(pool, names=("a", "b", "c"), weights=None, workers=1):
    backends = [pool.http(n) for n in names]
    servers = [server(b.name, b.port, **({"weight": weights[i]} if weights else {}))
               for i, b in enumerate(backends)]
    port = free_port()
    t = pool.tandem(make_config([http_listener("web", port, "app")],
                                [backend_cfg("app", servers)], workers=workers))
    for b in backends:
        b.reset()
    return t, port, backends


def _assert_cyclic(seq, names):
    """seq must be names repeated in order, starting anywhere in the cycle."""
    start = names.index(seq[0])
    expected = [names[(start + i) % len(names)] for i in range(len(seq))]
    assert seq == expected, f"round robin order broken: {seq}"


def test_round_robin_order_fresh_connections(pool):
    t, port, _ = _rr_setup(pool)
    seq = []
    for _ in range(9):
        r = get(port, "/")
        assert r.status == 200
        seq.append(r.get("x-backend"))
    _assert_cyclic(seq, ["a", "b", "c"])


def test_round_robin_order_keepalive_connection(pool):
    t, port, backends = _rr_setup(pool)
    with Client(port) as c:
        seq = [c.request("GET", f"/{i}").get("x-backend") for i in range(12)]
    _assert_cyclic(seq, ["a", "b", "c"])
    # each backend saw exactly the requests it answered
    for b in backends:
        assert len(b.requests) == 4


def test_round_robin_body_names_backend(pool):
    t, port, _ = _rr_setup(pool, names=("a", "b"))
    bodies = sorted(get(port, "/who").body for _ in range(2))
    assert bodies == [b"a GET /who\n", b"b GET /who\n"]


def test_weighted_round_robin_shares(pool):
    t, port, _ = _rr_setup(pool, names=("a", "b"), weights=[3, 1])
    with Client(port) as c:
        counts = collections.Counter(c.request("GET", "/").get("x-backend") for _ in range(40))
    assert counts == {"a": 30, "b": 10}


def test_backup_gets_nothing_while_primaries_serve(pool):
    a, b, bk = pool.http("a"), pool.http("b"), pool.http("backup")
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")], [backend_cfg("app", [
        server("a", a.port), server("b", b.port), server("backup", bk.port, backup=True)])]))
    bk.reset()
    seen = collections.Counter(get(port, "/").get("x-backend") for _ in range(20))
    assert seen["backup"] == 0 and seen["a"] > 0 and seen["b"] > 0, seen
    assert bk.requests == [] and bk.accepted_since_reset() == 0


def test_backup_serves_when_no_primary_can(pool):
    dead = free_port()  # nothing listens there: connections are refused
    bk = pool.http("backup")
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")], [backend_cfg("app", [
        server("a", dead), server("backup", bk.port, backup=True)],
        limits={"connect_timeout": "500ms", "timeout": "2s"})]))
    results = [get(port, f"/{i}") for i in range(10)]
    statuses = [r.status for r in results]
    # passive detection may cost the first requests; after that the backup must carry traffic
    assert all(r.status == 200 and r.get("x-backend") == "backup" for r in results[5:]), statuses
    assert all(s in (200, 502, 503) for s in statuses), statuses


def test_all_servers_down_is_502(pool):
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")], [backend_cfg("app", [
        server("a", free_port()), server("b", free_port(), backup=True)])]))
    for _ in range(3):
        r = get(port, "/")
        assert r.status in (502, 503), r
        assert len(r.body) < 1024


@pytest.mark.parametrize("algo", ["maglev", "ring_hash"])
def test_consistent_hash_same_choice_across_instances(pool, algo):
    """Active-active without shared state (DESIGN section 6): separate processes built from the
    same config send each of 200 keys to the same server. The first two have the same config
    (2 workers each: every worker builds its own table); the first is asked on fresh connections
    (spread over its workers), the second on one keep-alive connection. A third lists the servers
    in reverse order and runs 1 worker, which must not matter either."""
    backends = [pool.http(n) for n in ("a", "b", "c", "d")]
    servers = [server(b.name, b.port) for b in backends]
    layouts = [(servers, 2), (servers, 2), (servers[::-1], 1)]
    ports = [free_port() for _ in layouts]
    for i, (port, (listed, workers)) in enumerate(zip(ports, layouts)):
        pool.tandem(make_config([http_listener("web", port, "app")],
                                [backend_cfg("app", listed, balance=algo,
                                             hash_key="header:X-User")],
                                workers=workers, node=f"t{i + 1}"),
                    name=f"tandem-{algo}-{i + 1}")
    keys = [f"user-{k}" for k in range(200)]
    fresh = {}
    for k in keys:
        r = get(ports[0], "/", headers=[("X-User", k)])
        assert r.status == 200
        fresh[k] = r.get("x-backend")
    choices = [fresh] + [_hash_map(port, keys) for port in ports[1:]]
    for i, mapping in enumerate(choices[1:], 2):
        differ = [k for k in keys if mapping[k] != fresh[k]]
        assert not differ, (f"instance {i} disagrees with instance 1 on {len(differ)} of "
                            f"{len(keys)} keys, e.g. {differ[:5]}")
    used = collections.Counter(fresh.values())
    assert len(used) == 4 and min(used.values()) >= 20, f"hashing spreads badly: {used}"


def test_consistent_hash_key_is_the_header(pool):
    """Different X-User values spread; the same value sticks regardless of other headers."""
    backends = [pool.http(n) for n in ("a", "b", "c")]
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")], [backend_cfg(
        "app", [server(b.name, b.port) for b in backends], balance="maglev",
        hash_key="header:X-User")]))
    first = get(port, "/", headers=[("X-User", "alice"), ("X-Noise", "1")]).get("x-backend")
    for i in range(10):
        r = get(port, f"/p{i}", headers=[("X-User", "alice"), ("X-Noise", str(i))])
        assert r.get("x-backend") == first


def _hash_map(port, keys, header="X-User"):
    with Client(port) as c:
        return {k: c.request("GET", "/", [(header, k)]).get("x-backend") for k in keys}


@pytest.mark.parametrize("algo", ["maglev", "ring_hash"])
def test_consistent_hash_minimal_disruption(pool, algo):
    """Removing server d moves (almost) only the keys that were on d."""
    backends = [pool.http(n) for n in ("a", "b", "c", "d")]
    ports = [free_port(), free_port()]
    for port, servers in zip(ports, (backends, backends[:3])):
        pool.tandem(make_config([http_listener("web", port, "app")], [backend_cfg(
            "app", [server(b.name, b.port) for b in servers], balance=algo,
            hash_key="header:X-User")]))
    keys = [f"user-{i}" for i in range(200)]
    before, after = _hash_map(ports[0], keys), _hash_map(ports[1], keys)
    kept = [k for k in keys if before[k] != "d"]
    moved = [k for k in kept if after[k] != before[k]]
    assert len(moved) <= 0.1 * len(kept), f"{len(moved)} of {len(kept)} keys moved"
    assert "d" not in after.values()


@pytest.mark.parametrize("algo", ["maglev", "ring_hash"])
def test_consistent_hash_respects_weights(pool, algo):
    backends = [pool.http(n) for n in ("a", "b", "c")]
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")], [backend_cfg(
        "app", [server("a", backends[0].port, weight=2), server("b", backends[1].port),
                server("c", backends[2].port)], balance=algo, hash_key="header:X-User")]))
    share = collections.Counter(_hash_map(port, [f"k{i}" for i in range(400)]).values())
    assert 150 <= share["a"] <= 250, share  # expected 200 (weight 2 of 4)


@pytest.mark.parametrize("key,make", [
    ("uri", lambda k: ("GET", f"/item/{k}?v=1", [])),
    ("cookie:sid", lambda k: ("GET", "/", [("Cookie", f"theme=dark; sid={k}; x=1")])),
], ids=["uri", "cookie"])
def test_hash_key_kinds(pool, key, make):
    backends = [pool.http(n) for n in ("a", "b", "c")]
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")], [backend_cfg(
        "app", [server(b.name, b.port) for b in backends], balance="maglev", hash_key=key)]))
    with Client(port) as c:
        first = {k: c.request(*make(k)).get("x-backend") for k in range(60)}
        again = {k: c.request(*make(k)).get("x-backend") for k in range(60)}
    assert first == again, "the same key went to different servers"
    assert len(set(first.values())) == 3, collections.Counter(first.values())


def test_least_conn_prefers_idle_server(pool):
    backends = [pool.http(n) for n in ("a", "b")]
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")], [backend_cfg(
        "app", [server(b.name, b.port) for b in backends], balance="least_conn")], workers=1))
    for b in backends:
        b.reset()
    th = threading.Thread(target=lambda: get(port, "/slow?ms=1500", timeout=10))
    th.start()
    try:
        busy = wait_until(lambda: next((b.name for b in backends if b.requests), None),
                          what="slow request at a backend")
        seq = [get(port, f"/q{i}").get("x-backend") for i in range(4)]
    finally:
        th.join(10)
    assert busy not in seq, f"least_conn sent requests to the busy server {busy}: {seq}"


@pytest.mark.parametrize("algo", ["round_robin", "least_conn", "p2c", "random", "source_hash",
                                  "ring_hash", "maglev"])
def test_every_algorithm_serves(pool, algo):
    backends = [pool.http(n) for n in ("a", "b", "c")]
    port = free_port()
    extra = {"hash_key": "header:X-User"} if algo in ("ring_hash", "maglev") else {}
    pool.tandem(make_config([http_listener("web", port, "app")], [backend_cfg(
        "app", [server(b.name, b.port) for b in backends], balance=algo, **extra)]))
    with Client(port) as c:
        seen = [c.request("GET", "/", [("X-User", f"u{i}")]) for i in range(30)]
    assert all(r.status == 200 for r in seen)
    names = collections.Counter(r.get("x-backend") for r in seen)
    assert set(names) <= {"a", "b", "c"}
    if algo == "source_hash":  # every request comes from 127.0.0.1
        assert len(names) == 1, names
    else:
        assert len(names) >= 2, names


def test_workers_auto(pool):
    a = pool.http("a")
    port = free_port()
    pool.tandem(make_config([http_listener("web", port, "app")],
                            [backend_cfg("app", [server("a", a.port)])], workers="auto"))
    assert get(port, "/").body == b"a GET /\n"


def test_run_fails_when_a_listener_cannot_bind(tandem_bin, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        taken = busy.getsockname()[1]
        free = free_port()
        cfg = make_config([http_listener("one", free, "app"), http_listener("two", taken, "app")],
                          [backend_cfg("app", [server("a", free_port())])])
        p = tmp_path / "conflict.yaml"
        p.write_text(to_yaml(cfg) + "\n")
        r = run_cli(tandem_bin, "run", "-c", str(p), timeout=10)
        assert r.returncode != 0
        assert str(taken).encode() in r.stdout + r.stderr
    finally:
        busy.close()


# ------------------------------------------------------------------------------------------
# Command line

GOOD = """\
node: {id: t1}
workers: 1
listeners:
  - {name: web, listen: 127.0.0.1:18080, mode: http, backend: app}
backends:
  - name: app
    balance: round_robin
    servers: [{name: a, address: 127.0.0.1:19001}]
"""

BAD = """\
node: {id: t1}
workers: 1
listeners:
  - {name: web, listen: 127.0.0.1:18080, mode: http, backend: nosuchbackend}
backends:
  - name: app
    balance: bogus_algorithm
    servers: [{name: a, address: 127.0.0.1:19001}]
"""


def test_check_accepts_good_config(tandem_bin, tmp_path):
    p = tmp_path / "good.yaml"
    p.write_text(GOOD)
    r = run_cli(tandem_bin, "check", "-c", str(p))
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_check_reports_file_and_line(tandem_bin, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    r = run_cli(tandem_bin, "check", "-c", str(p))
    out = (r.stdout + r.stderr).decode()
    assert r.returncode == 1, out
    # the undefined backend is referenced on line 4; the unknown algorithm is on line 7
    # (or reported at its backend entry, line 6)
    assert f"{p}:4:" in out, out
    assert f"{p}:7:" in out or f"{p}:6:" in out, out
    assert "nosuchbackend" in out and "bogus_algorithm" in out, out


def test_check_rejects_hash_key_without_hash_algorithm(tandem_bin, tmp_path):
    p = tmp_path / "bad2.yaml"
    p.write_text(GOOD.replace("    balance: round_robin\n",
                              "    balance: round_robin\n    hash_key: header:X-User\n"))
    r = run_cli(tandem_bin, "check", "-c", str(p))
    out = (r.stdout + r.stderr).decode()
    # hash_key is on line 8 (its backend entry starts on line 6, balance is on line 7)
    assert r.returncode == 1 and any(f"{p}:{n}:" in out for n in (6, 7, 8)), out


def test_check_missing_file(tandem_bin, tmp_path):
    r = run_cli(tandem_bin, "check", "-c", str(tmp_path / "absent.yaml"))
    assert r.returncode == 1
    assert b"absent.yaml" in r.stdout + r.stderr


def test_run_refuses_bad_config(tandem_bin, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BAD)
    r = run_cli(tandem_bin, "run", "-c", str(p), timeout=10)
    assert r.returncode != 0
    assert f"{p}:4:".encode() in r.stdout + r.stderr


def test_version(tandem_bin):
    r = run_cli(tandem_bin, "version")
    out = (r.stdout + r.stderr).decode().strip()
    assert r.returncode == 0
    assert out and any(ch.isdigit() for ch in out), repr(out)


def test_unknown_command_fails(tandem_bin):
    r = run_cli(tandem_bin, "frobnicate")
    assert r.returncode != 0
