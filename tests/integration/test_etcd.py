"""Issue 7, items 2 and 3: configuration from etcd (a real etcd started by each test), applied live
on every instance; `tandem config push`; leader election through etcd leases.

Two instances on one host share the data-plane port (SO_REUSEPORT works across processes), each
with its own admin port and node id from its local bootstrap file."""
import os
import signal
import statistics
import subprocess
import time

import pytest

from harness import (ETCD, EtcdServer, Stoppable, backend_cfg, free_port, get, http_listener,
                     load, make_config, server, to_yaml, wait_until)

if not os.path.exists(ETCD):
    pytest.fail(f"{ETCD} is missing: scripts/install-deps.sh installs Debian's etcd-server",
                pytrace=False)

KEY = "/tandem/config"


@pytest.fixture
def etcd(pool, tmp_path):
    e = EtcdServer(tmp_path).start()
    pool.items.append(Stoppable(lambda: e.stop(kill=True)))
    return e


def shared_doc(port, servers, **backend_extra):
    """The document pushed to etcd: what every instance serves."""
    return to_yaml(make_config([http_listener("web", port, "app")],
                               [backend_cfg("app", servers, **backend_extra)])) + "\n"


def boot(etcd, port, node, fallback_server, **extra):
    cfg = make_config([http_listener("web", port, "app")],
                      [backend_cfg("app", [fallback_server])], node=node)
    cfg["config_source"] = {"type": "etcd", "etcd": {"endpoints": [etcd.url], "key": KEY}}
    cfg.update(extra)
    return cfg


def applied(t):
    return t.admin_json("/api/v1/status")["config"]


def wait_applied(ts, revision, timeout=5):
    for t in ts:
        wait_until(lambda: applied(t)["source_revision"] == revision, timeout=timeout,
                   what=f"{t.name} at etcd revision {revision}")


def test_push_reaches_both_instances_bad_documents_are_rejected(pool, etcd, tmp_path, tandem_bin):
    a, b = pool.http("a"), pool.http("b")
    port = free_port()
    doc = tmp_path / "shared.yaml"
    doc.write_text(shared_doc(port, [server("a", a.port)]))
    r = subprocess.run([tandem_bin, "config", "push", str(doc), "--etcd", etcd.url],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and b"at revision" in r.stdout, r.stderr
    rev = int(r.stdout.split()[-1])
    fallback = server("fallback", free_port())  # nothing listens there: only the etcd doc works
    t1 = pool.tandem(boot(etcd, port, "n1", fallback), name="n1")
    t2 = pool.tandem(boot(etcd, port, "n2", fallback), name="n2")
    wait_applied([t1, t2], rev)
    for t in (t1, t2):
        st = t.admin_json("/api/v1/status")
        assert st["config"]["source"] == "etcd" and st["config"]["path"] == KEY
        assert st["node"] == t.name  # node-local sections stay local
    assert get(port, "/").get("x-backend") == "a"
    m = t1.admin("GET", "/metrics")[2].decode()
    assert f"tandem_config_source_revision {rev}" in m and "tandem_config_revision 2" in m
    # A change reaches both.
    rev = etcd.put(KEY, shared_doc(port, [server("b", b.port)]))
    wait_applied([t1, t2], rev)
    for _ in range(4):
        assert get(port, "/").get("x-backend") == "b"
    # Propagation from the put to applied on both instances, 50 pushes.
    took = []
    for i in range(50):
        text = shared_doc(port, [server("b", b.port, weight=1 + i % 5)])
        t0 = time.monotonic()
        rev = etcd.put(KEY, text)
        wait_applied([t1, t2], rev)
        took.append(time.monotonic() - t0)
    took.sort()
    p50, p99 = statistics.median(took), took[int(len(took) * 0.99) - 1]
    print(f"\npropagation put -> applied on both: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    with open(os.path.join(tmp_path, "..", "etcd-propagation.txt"), "w") as f:
        f.write(f"p50_ms {p50 * 1000:.1f}\np99_ms {p99 * 1000:.1f}\n")
    assert p99 < 2.0, took
    # A bad document (written around `config push`, which would refuse it): rejected by both,
    # the old config keeps serving, and an alert says so.
    good_rev = rev
    etcd.put(KEY, "listeners: [\n")
    for t in (t1, t2):
        wait_until(lambda: [x["rule"] for x in t.admin_json("/api/v1/alerts")["active"]] ==
                   ["config_rejected"], timeout=5, what=f"{t.name} rejects")
        assert applied(t)["source_revision"] == good_rev
        assert "reload rejected: etcd:/tandem/config@" in t.stderr_text()
    assert get(port, "/").get("x-backend") == "b"
    # `config push` validates first and writes nothing when the file is bad.
    bad = tmp_path / "bad.yaml"
    bad.write_text("listeners: []\nbogus: 1\n")
    r = subprocess.run([tandem_bin, "config", "push", str(bad), "--etcd", etcd.url],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and f"{bad}:".encode() in r.stderr, r.stderr
    assert etcd.get(KEY) == "listeners: [\n"
    # A good document again: applied, the alert resolves.
    rev = etcd.put(KEY, shared_doc(port, [server("a", a.port)]))
    wait_applied([t1, t2], rev)
    for t in (t1, t2):
        wait_until(lambda: t.admin_json("/api/v1/alerts")["active"] == [], timeout=3,
                   what="alert resolved")


def test_etcd_outage_return_and_compaction(pool, etcd):
    a, b, c = pool.http("a"), pool.http("b"), pool.http("c")
    port = free_port()
    rev = etcd.put(KEY, shared_doc(port, [server("a", a.port)]))
    t = pool.tandem(boot(etcd, port, "n1", server("fallback", free_port())))
    wait_applied([t], rev)
    # etcd dies: serving goes on, an alert says the source is unreachable.
    etcd.stop(kill=True)
    wait_until(lambda: [x["rule"] for x in t.admin_json("/api/v1/alerts")["active"]] ==
               ["config_source_unreachable"], timeout=10, what="unreachable alert")
    for _ in range(5):
        assert get(port, "/").get("x-backend") == "a"
    # etcd returns: the watch resumes, a new change applies, the alert resolves.
    etcd.start()
    rev = etcd.put(KEY, shared_doc(port, [server("b", b.port)]))
    wait_applied([t], rev, timeout=10)
    wait_until(lambda: t.admin_json("/api/v1/alerts")["active"] == [], timeout=5,
               what="alert resolved")
    assert get(port, "/").get("x-backend") == "b"
    # Compaction: while Tandem is frozen, etcd restarts (its watch is gone), two changes are made
    # and the history compacted past them; on resuming, the watch's start revision is gone and
    # Tandem re-reads the key.
    os.kill(t.pid, signal.SIGSTOP)
    try:
        etcd.stop()
        etcd.start()
        etcd.put(KEY, shared_doc(port, [server("a", a.port)]))
        rev = etcd.put(KEY, shared_doc(port, [server("c", c.port)]))
        etcd.compact(rev)
    finally:
        os.kill(t.pid, signal.SIGCONT)
    wait_applied([t], rev, timeout=10)
    assert get(port, "/").get("x-backend") == "c"


def test_twenty_etcd_pushes_under_load_fail_no_request(pool, etcd):
    a, b = pool.http("a"), pool.http("b")
    port = free_port()
    docs = [shared_doc(port, [server("a", a.port), server("b", b.port)], balance=bal)
            for bal in ("round_robin", "least_conn")]
    rev = etcd.put(KEY, docs[0])
    t = pool.tandem(boot(etcd, port, "n1", server("a", a.port)))
    wait_applied([t], rev)
    lg = load(pool, port, threads=8, max_seconds=60)
    wait_until(lambda: len(lg.sent()) >= 50, timeout=5, what="load running")
    for i in range(20):
        rev = etcd.put(KEY, docs[(i + 1) % 2])
        wait_applied([t], rev)
    n = len(lg.sent())
    wait_until(lambda: len(lg.sent()) >= n + 100, timeout=5, what="load after the pushes")
    assert lg.stop(5)
    assert not lg.failures(), lg.failures()[:5]
    assert len(lg.sent()) > 200


def test_election_one_leader_takeover_and_one_webhook_notification(pool, etcd, tmp_path):
    import test_monitoring  # the webhook receiver
    hook = test_monitoring.receiver(pool)
    a = pool.http("a")
    dead = free_port()  # a server nobody listens on: both instances alert on it
    port = free_port()

    def cfg(node):
        c = make_config([http_listener("web", port, "app")],
                        [backend_cfg("app", [server("a", a.port), server("dead", dead)],
                                     health={"active": {"type": "tcp", "interval": "200ms",
                                                        "timeout": "100ms", "fall": 1,
                                                        "rise": 1}})], node=node)
        c["cluster"] = {"election": "etcd",
                        "etcd": {"endpoints": [etcd.url], "key": "/tandem/leader", "ttl": "1s"}}
        c["alerts"] = {"webhooks": [{"url": f"http://127.0.0.1:{hook.port}/"}]}
        return c
    t1 = pool.tandem(cfg("n1"), name="n1")
    t2 = pool.tandem(cfg("n2"), name="n2")

    def roles():
        return {t.name: t.admin_json("/api/v1/cluster")["role"] for t in (t1, t2) if t.alive()}
    wait_until(lambda: sorted(roles().values()) == ["follower", "leader"], timeout=5,
               what="one leader, one follower")
    leader = t1 if roles()["n1"] == "leader" else t2
    other = t2 if leader is t1 else t1
    wait_until(lambda: other.admin_json("/api/v1/cluster")["election"]["leader"] == leader.name,
               timeout=3, what="the follower knows the leader")
    # Both see the dead server; only the leader notifies.
    hook.wait_for(lambda x: x["rule"] == "server_down", timeout=8, what="server_down")
    for t in (t1, t2):
        wait_until(lambda: any(x["rule"] == "server_down"
                               for x in t.admin_json("/api/v1/alerts")["active"]),
                   timeout=5, what=f"{t.name} alert")
    assert len([x for x in hook.bodies if x["rule"] == "server_down"]) == 1, hook.bodies
    assert hook.bodies[0]["node"] == leader.name
    # kill -9 the leader: the other takes over within the lease TTL (1 s) plus a check round;
    # never two leaders at one observation.
    os.kill(leader.pid, signal.SIGKILL)
    leader.expected_exit = True
    t0 = time.monotonic()
    seen = []
    while time.monotonic() - t0 < 5:
        r = other.admin_json("/api/v1/cluster")["role"]
        seen.append(r)
        if r == "leader":
            break
        time.sleep(0.02)  # polling pace, bounded by the loop's deadline
    took = time.monotonic() - t0
    assert seen[-1] == "leader", seen
    assert took < 2.5, f"takeover took {took:.2f}s"
    print(f"\nelection takeover after kill -9 of the leader: {took * 1000:.0f} ms (ttl 1 s)")
    assert "this node leads" in other.stderr_text()
