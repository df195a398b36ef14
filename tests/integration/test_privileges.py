"""Least privilege: started as root with `user: nobody`, Tandem binds, then runs as nobody with no
capabilities (standalone) or only CAP_NET_ADMIN + CAP_NET_RAW (active_passive), in every thread;
traffic flows and reloads work; what needs root afterwards fails cleanly. See docs/privileges.md."""
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile

import pytest

from harness import (Tandem, backend_cfg, free_port, get, http_listener, make_config, server,
                     to_yaml, wait_until)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the privilege drop is "
                                "only done by a process started as root")

CAP_NET_ADMIN, CAP_NET_RAW = 12, 13
HA_CAPS = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW)
IP = shutil.which("ip") or "/usr/sbin/ip"


def nobody():
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def threads(pid):
    """{tid: {field: value}} of /proc/PID/task/*/status."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = {}
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    fields[k] = v.strip()
        except OSError:
            continue
        out[tid] = fields
    return out


def assert_dropped(pid, caps):
    uid, gid = nobody()
    # The listeners accept (the harness's readiness) as soon as they are bound, before the drop
    # and before any thread starts: wait for the threads, which only start after the drop.
    wait_until(lambda: len(threads(pid)) >= 4, timeout=10,
               what="the worker, health and admin threads")
    ts = threads(pid)
    assert len(ts) >= 4, f"expected the worker, health, admin threads too: {len(ts)}"
    for tid, f in ts.items():
        who = f"thread {tid} ({f['Name']})"
        assert f["Uid"].split() == [str(uid)] * 4, f"{who}: Uid {f['Uid']}"
        assert f["Gid"].split() == [str(gid)] * 4, f"{who}: Gid {f['Gid']}"
        assert f["Groups"] == "", f"{who}: supplementary groups {f['Groups']}"
        for k in ("CapEff", "CapPrm", "CapBnd"):
            assert int(f[k], 16) == caps, f"{who}: {k} {f[k]}, expected {caps:016x}"
        assert int(f["CapInh"], 16) == 0 and int(f["CapAmb"], 16) == 0, who
        assert f["NoNewPrivs"] == "1", who


@pytest.fixture
def world_readable_dir():
    """A folder nobody can read (pytest's tmp_path is root-only): the config must stay readable
    by the user for reloads."""
    d = tempfile.mkdtemp(prefix="tandem-priv-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_standalone_runs_as_nobody_without_capabilities(pool, world_readable_dir):
    a = pool.http("a")
    port = free_port()
    cfg = make_config([http_listener("web", port, "app")],
                      [backend_cfg("app", [server("a", a.port)])])
    cfg["user"] = "nobody"
    t = Tandem(pool.binary, world_readable_dir, cfg, "priv")
    pool.items.append(t)
    t.start()
    os.chmod(t.config_path, 0o644)
    assert_dropped(t.pid, 0)
    assert "privileges dropped: uid 65534 (nobody)" in t.stderr_text()
    r = get(port, "/as-nobody")
    assert r.status == 200 and r.body == b"a GET /as-nobody\n"
    # The admin API still reads the process's own /proc entries as nobody.
    _, _, body = t.admin("GET", "/metrics")
    fds = [l for l in body.decode().splitlines() if l.startswith("tandem_process_open_fds ")]
    assert fds and float(fds[0].split()[1]) > 5, fds

    # SIGHUP reload as nobody: a new listener on an unprivileged port is bound.
    port2 = free_port()
    cfg["listeners"].append(http_listener("web2", port2, "app"))
    t.write_config()
    os.chmod(t.config_path, 0o644)
    t.signal(signal.SIGHUP)
    t.expected_exit = False
    wait_until(lambda: "config revision 2 applied" in t.stderr_text(), timeout=5,
               what="the reload")
    assert get(port2, "/reloaded").status == 200
    assert_dropped(t.pid, 0)

    # A port below 1024 needs CAP_NET_BIND_SERVICE, which is not kept: the reload is rejected
    # and the running config stays.
    low = next((p for p in range(1000, 900, -1) if _free(p)), None)
    if low is not None:
        cfg["listeners"].append(http_listener("low", low, "app"))
        t.write_config()
        os.chmod(t.config_path, 0o644)
        t.signal(signal.SIGHUP)
        t.expected_exit = False
        wait_until(lambda: "reload rejected" in t.stderr_text(), timeout=5, what="the rejection")
        assert "Permission denied" in t.stderr_text()
        cfg["listeners"].pop()
    # A config file the user cannot read: rejected too, still serving.
    os.chmod(t.config_path, 0o600)
    t.signal(signal.SIGHUP)
    t.expected_exit = False
    wait_until(lambda: t.stderr_text().count("reload rejected") >= (2 if low else 1), timeout=5,
               what="the rejection of an unreadable config")
    assert get(port, "/still").status == 200 and get(port2, "/still").status == 200
    assert t.alive()


def test_peer_listener_below_1024_is_bound_before_the_drop(pool, world_readable_dir):
    """cluster.listen on a privileged port: bound with the listeners, before the drop."""
    low = next((p for p in range(999, 900, -1) if _free(p)), None)
    if low is None:
        pytest.skip("no free port in 901..999")
    a = pool.http("a")
    port = free_port()
    secret = os.path.join(world_readable_dir, "cluster.secret")
    with open(secret, "w") as f:
        f.write("0123456789abcdef0123456789abcdef\n")
    os.chmod(secret, 0o644)
    cfg = make_config([http_listener("web", port, "app")],
                      [backend_cfg("app", [server("a", a.port)])])
    cfg["node"] = {"id": "lb1"}
    cfg["user"] = "nobody"
    # lb1 < lb2: lb2 would dial lb1, so lb1 only listens (and never needs lb2 to exist).
    cfg["cluster"] = {"mode": "active_active", "listen": f"127.0.0.1:{low}",
                      "peers": [{"id": "lb1", "address": f"127.0.0.1:{low}"},
                                {"id": "lb2", "address": f"127.0.0.1:{free_port()}"}],
                      "secret_file": secret}
    t = Tandem(pool.binary, world_readable_dir, cfg, "privpeer")
    pool.items.append(t)
    t.start()
    assert_dropped(t.pid, 0)
    assert get(port, "/peer").status == 200
    # The peer port accepts (a connection that says nothing is dropped after the handshake timeout).
    with socket.create_connection(("127.0.0.1", low), timeout=2):
        pass
    wait_until(lambda: f"listening on port {low}" in t.stderr_text(), timeout=5,
               what="the replicator's start")


def _free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_user_ignored_when_not_root_and_unknown_user_rejected(pool, tandem_bin, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("user: no-such-user-xyz\ngroup: no-such-group-xyz\n"
                   "listeners: [{name: web, listen: 127.0.0.1:1, backend: app}]\n"
                   "backends: [{name: app, servers: [{address: 127.0.0.1:2}]}]\n")
    r = subprocess.run([tandem_bin, "check", "-c", str(bad)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 1
    assert f"{bad}:1: 'user': unknown user 'no-such-user-xyz'" in r.stderr
    assert f"{bad}:2: 'group': unknown group 'no-such-group-xyz'" in r.stderr
    # Started as nobody already (not root): `user:` is ignored with a log line, and it runs.
    a = pool.http("a")
    port = free_port()
    cfg = make_config([http_listener("web", port, "app")],
                      [backend_cfg("app", [server("a", a.port)])])
    cfg["user"] = "nobody"
    d = tempfile.mkdtemp(prefix="tandem-priv-")
    try:
        os.chmod(d, 0o777)
        path = os.path.join(d, "c.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        os.chmod(path, 0o644)
        uid, gid = nobody()

        def demote():
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

        log = open(os.path.join(d, "log"), "wb")
        p = subprocess.Popen([tandem_bin, "run", "-c", path], stdout=log, stderr=log,
                             preexec_fn=demote)
        try:
            def up():
                try:
                    return get(port, "/x", timeout=1).status == 200
                except OSError:
                    return p.poll() is not None
            wait_until(up, timeout=10, what="tandem as nobody")
            assert p.poll() is None
            with open(os.path.join(d, "log")) as f:
                assert "user: nobody ignored: not started as root" in f.read()
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(10)
            log.close()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_active_passive_keeps_only_net_admin_and_net_raw(pool, world_readable_dir):
    """VRRP in a network namespace of our own (a veth pair, 198.18.0.0/24): as nobody
    with CAP_NET_ADMIN + CAP_NET_RAW, the node still becomes master and adds the VIP."""
    ns = "t" + secrets.token_hex(3) + "-priv"
    subprocess.run([IP, "netns", "add", ns], check=True, timeout=10)
    p = None
    try:
        # A veth pair with both ends in the namespace: adverts never leave it.
        for cmd in (["link", "set", "lo", "up"],
                    ["link", "add", "d0", "type", "veth", "peer", "name", "d1"],
                    ["addr", "add", "198.18.0.11/24", "dev", "d0"], ["link", "set", "d1", "up"],
                    ["link", "set", "d0", "up"]):
            subprocess.run([IP, "-n", ns] + cmd, check=True, timeout=10)
        port = free_port()
        cfg = make_config([http_listener("web", port, "app")],
                          [backend_cfg("app", [server("a", 1)])], workers=1)
        cfg["user"] = "nobody"
        cfg["cluster"] = {"mode": "active_passive",
                          "vrrp": {"interface": "d0", "vrid": 51, "priority": 150,
                                   "advert_interval": "100ms",
                                   "virtual_ips": ["198.18.0.100/24"]}}
        path = os.path.join(world_readable_dir, "ha.yaml")
        with open(path, "w") as f:
            f.write(to_yaml(cfg) + "\n")
        log = open(os.path.join(world_readable_dir, "ha.log"), "wb")
        # `ip netns exec` execs tandem: the PID is tandem's.
        p = subprocess.Popen([IP, "netns", "exec", ns, pool.binary, "run", "-c", path],
                             stdout=log, stderr=log)

        def vip():
            out = subprocess.run([IP, "-n", ns, "-4", "-o", "addr", "show", "dev", "d0"],
                                 capture_output=True, text=True, timeout=10).stdout
            return "198.18.0.100/24" in out or p.poll() is not None

        wait_until(vip, timeout=5, what="the VIP on the master")
        assert p.poll() is None, open(log.name).read()
        # Every thread, the HA thread included, runs as nobody with exactly the two capabilities.
        assert_dropped(p.pid, HA_CAPS)
        names = {f["Name"] for f in threads(p.pid).values()}
        assert "tandem-ha" in names
        # A graceful stop removes the VIP (netlink, as nobody with CAP_NET_ADMIN).
        p.send_signal(signal.SIGTERM)
        assert p.wait(10) == 0
        out = subprocess.run([IP, "-n", ns, "-4", "-o", "addr", "show", "dev", "d0"],
                             capture_output=True, text=True, timeout=10).stdout
        assert "198.18.0.100" not in out
        log.close()
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait(5)
        subprocess.run([IP, "netns", "del", ns], timeout=10)
