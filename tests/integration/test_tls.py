"""TLS termination (DESIGN §4 listener `tls`): certificates made by the test itself (a CA and leaf
certificates with SANs, `openssl req`/`openssl x509`), driven with `openssl s_client` and `curl`.

Checked here: TLS 1.2/1.3 only, modern TLS 1.2 ciphers, ALPN http/1.1 (and the fatal alert for a
client that offers only h2), SNI picking among several certificates (wildcards, the first as the
default), one certificate served for any name, keep-alive through to a backend, plain HTTP on the
TLS port never forwarded, the handshake bounded by header_timeout, a reload that swaps the
certificate (old connections keep theirs), bad certificates as `FILE:LINE` errors (check and
reload), a TCP listener with TLS, and the handshake counters."""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from harness import (LOCAL, backend_cfg, free_port, http_listener, make_config, read_response,
                     Reader, run_cli, server, tcp_listener, to_yaml, wait_until)

OPENSSL = shutil.which("openssl")
CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(not OPENSSL or not CURL, reason="needs the openssl and curl tools")


def sh(*args, **kw):
    return subprocess.run(args, capture_output=True, timeout=30, check=True, **kw)


class Certs:
    """A CA and leaf certificates (EC P-256) in one folder: NAME.pem (leaf + CA) and NAME.key."""

    def __init__(self, folder):
        self.dir = str(folder)
        os.makedirs(self.dir, exist_ok=True)
        self.ca = self.path("ca.pem")
        ca_key = self.path("ca.key")
        sh(OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-nodes", "-keyout", ca_key, "-out", self.ca, "-days", "2", "-subj",
           "/CN=Tandem Test CA", "-addext", "basicConstraints=critical,CA:TRUE",
           "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._ca_key = ca_key

    def path(self, name):
        return os.path.join(self.dir, name)

    def leaf(self, name, cn, sans):
        """NAME.pem (leaf then CA: the chain) and NAME.key, for DNS names `sans`."""
        key, csr, crt = self.path(f"{name}.key"), self.path(f"{name}.csr"), self.path(f"{name}.crt")
        sh(OPENSSL, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
           "-keyout", key, "-out", csr, "-subj", f"/CN={cn}")
        ext = self.path(f"{name}.ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=" + ",".join(f"DNS:{s}" for s in sans) + "\n"
                    "extendedKeyUsage=serverAuth\n")
        sh(OPENSSL, "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self._ca_key,
           "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
        with open(self.path(f"{name}.pem"), "w") as out:
            out.write(open(crt).read() + open(self.ca).read())
        return self.path(f"{name}.pem"), key


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    c = Certs(tmp_path_factory.mktemp("tls-certs"))
    c.leaf("a", "a.example.test", ["a.example.test", "www.example.test"])
    c.leaf("wild", "wild", ["*.wild.test"])
    c.leaf("v1", "reload-v1", ["reload.test"])
    c.leaf("v2", "reload-v2", ["reload.test"])
    return c


def tls_listener(name, port, backend, certificates, mode="http", **limits):
    d = (http_listener(name, port, backend, **limits) if mode == "http"
         else tcp_listener(name, port, backend))
    if mode != "http" and limits:
        d["limits"] = limits
    if len(certificates) == 1 and not isinstance(certificates, dict):
        d["tls"] = {"cert": certificates[0][0], "key": certificates[0][1]}
    else:
        d["tls"] = {"certificates": [{"cert": c, "key": k} for c, k in certificates]}
    return d


def metric(t, name, listener):
    status, _, body = t.admin("GET", "/metrics")
    assert status == 200
    m = re.search(rf'^{name}\{{listener="{listener}"\}} (\S+)$', body.decode(), re.M)
    assert m, f"no {name} for listener {listener}"
    return float(m.group(1))


def s_client(port, *args, servername=None, ca=None):
    """`openssl s_client` with stdin closed; (exit status, stdout + stderr)."""
    argv = [OPENSSL, "s_client", "-connect", f"{LOCAL}:{port}"]
    argv += ["-servername", servername] if servername else ["-noservername"]
    if ca:
        argv += ["-CAfile", ca, "-verify_return_error"]
    r = subprocess.run(argv + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=15)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def served_cn(out):
    m = re.search(r"subject=.*?CN\s*=\s*([^,\n]+)", out)
    return m.group(1).strip() if m else None


def curl(port, host, *paths, ca, extra=()):
    """GETs every path over one curl invocation (it reuses the connection); returns
    (exit status, bodies text, verbose log)."""
    argv = [CURL, "-sS", "-v", "--cacert", ca, "--resolve", f"{host}:{port}:{LOCAL}", *extra]
    for p in paths:
        argv.append(f"https://{host}:{port}{p}")
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    return r.returncode, r.stdout.decode(), r.stderr.decode("utf-8", "replace")


def tls_connect(port, host, ca):
    ctx = ssl.create_default_context(cafile=ca)
    raw = socket.create_connection((LOCAL, port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname=host)


def https_get(sock, path, host):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return read_response(Reader(sock))


# --------------------------------------------------------------------------------------------


def test_get_through_tls_with_keep_alive_and_one_certificate_for_any_name(pool, certs):
    a = pool.http("a")
    port = free_port()
    cert, key = certs.path("a.pem"), certs.path("a.key")
    t = pool.tandem(make_config([tls_listener("web", port, "app", [(cert, key)])],
                                [backend_cfg("app", [server("a", a.port)])]))
    a.reset()
    rc, body, log = curl(port, "a.example.test", "/one", "/two", ca=certs.ca)
    assert rc == 0, log
    assert body == "a GET /one\na GET /two\n"
    assert re.search(r"Re-using existing connection", log), log  # keep-alive over TLS
    assert a.targets() == ["/one", "/two"]
    assert [r.get("x-forwarded-proto") for r in a.requests] == ["https", "https"]
    assert "ALPN: server accepted http/1.1" in log or "ALPN, server accepted to use http/1.1" in log
    assert metric(t, "tandem_listener_tls_handshakes_total", "web") == 1
    # The readiness probe (connect, close, no byte) is no failed handshake.
    assert metric(t, "tandem_listener_tls_handshake_failures_total", "web") == 0

    # One certificate: served for another name and without SNI.
    for sni in ("other.test", None):
        rc, out = s_client(port, servername=sni)
        assert rc == 0, out
        assert served_cn(out) == "a.example.test", out


def test_protocols_ciphers_and_alpn(pool, certs):
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config(
        [tls_listener("web", port, "app", [(certs.path("a.pem"), certs.path("a.key"))])],
        [backend_cfg("app", [server("a", a.port)])]))
    rc, out = s_client(port, "-alpn", "h2,http/1.1", servername="a.example.test", ca=certs.ca)
    assert rc == 0, out
    assert "Protocol  : TLSv1.3" in out or "TLSv1.3" in out
    assert "ALPN protocol: http/1.1" in out
    assert "Verify return code: 0 (ok)" in out

    rc, out = s_client(port, "-tls1_2", servername="a.example.test", ca=certs.ca)
    assert rc == 0, out
    assert re.search(r"Protocol\s*: TLSv1\.2", out), out
    cipher = re.search(r"Cipher\s*: (\S+)", out).group(1)
    assert cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    # Server preference: AES-128-GCM although the client lists AES-256 first.
    rc, out = s_client(port, "-tls1_2", "-cipher",
                       "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256")
    assert rc == 0 and re.search(r"Cipher\s*: ECDHE-ECDSA-AES128-GCM-SHA256", out), out

    failures = metric(t, "tandem_listener_tls_handshake_failures_total", "web")
    refused = [
        # TLS 1.1 and 1.0 (the client must be told it may offer them at all)
        ("-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"),
        ("-tls1", "-cipher", "DEFAULT:@SECLEVEL=0"),
        # TLS 1.2 without forward secrecy or without AEAD
        ("-tls1_2", "-cipher", "AES128-GCM-SHA256"),
        ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"),
        # only a protocol we do not speak: fatal no_application_protocol alert (RFC 7301)
        ("-alpn", "h2"),
    ]
    for args in refused:
        rc, out = s_client(port, *args, servername="a.example.test")
        assert rc != 0, (args, out)
        assert "Cipher is (NONE)" in out or "alert" in out or "error" in out, (args, out)
    assert "no application protocol" in out, out
    wait_until(lambda: metric(t, "tandem_listener_tls_handshake_failures_total", "web") ==
               failures + len(refused), what="every refused handshake counted")


def test_sni_picks_the_certificate_and_the_first_is_the_default(pool, certs):
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config(
        [tls_listener("web", port, "app", [(certs.path("a.pem"), certs.path("a.key")),
                                            (certs.path("wild.pem"), certs.path("wild.key"))])],
        [backend_cfg("app", [server("a", a.port)])]))
    expected = {"a.example.test": "a.example.test", "www.example.test": "a.example.test",
                "x.wild.test": "wild", "Y.Wild.Test": "wild",
                "wild.test": "a.example.test",        # the wildcard needs one more label
                "a.b.wild.test": "a.example.test",    # ... and only one
                "unknown.test": "a.example.test", None: "a.example.test"}
    for sni, cn in expected.items():
        rc, out = s_client(port, servername=sni)
        assert rc == 0, out
        assert served_cn(out) == cn, (sni, out)
    # curl verifies the wildcard certificate's chain and name end to end.
    rc, body, log = curl(port, "api.wild.test", "/w", ca=certs.ca)
    assert rc == 0, log
    assert body == "a GET /w\n"
    assert metric(t, "tandem_listener_tls_handshakes_total", "web") == len(expected) + 1


def test_plain_http_on_the_tls_port_is_never_forwarded(pool, certs):
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config(
        [tls_listener("web", port, "app", [(certs.path("a.pem"), certs.path("a.key"))])],
        [backend_cfg("app", [server("a", a.port)])]))
    a.reset()
    with socket.create_connection((LOCAL, port), timeout=5) as s:
        s.sendall(b"GET /plain HTTP/1.1\r\nHost: a.example.test\r\n\r\n")
        got = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/1.1" not in got  # no response of ours, no response of the backend
    wait_until(lambda: metric(t, "tandem_listener_tls_handshake_failures_total", "web") == 1,
               what="failure counted")
    # A TLS request afterwards proves the backend was reachable all along.
    rc, body, log = curl(port, "a.example.test", "/tls", ca=certs.ca)
    assert rc == 0, log
    assert a.targets() == ["/tls"]
    assert a.accepted_since_reset() == 1
    assert b"/plain" not in a.all_raw()


def test_handshake_is_bounded_by_header_timeout(pool, certs):
    a = pool.http("a")
    port = free_port()
    t = pool.tandem(make_config(
        [tls_listener("web", port, "app", [(certs.path("a.pem"), certs.path("a.key"))],
                      header_timeout="300ms")],
        [backend_cfg("app", [server("a", a.port)])]))
    with socket.create_connection((LOCAL, port), timeout=5) as s:
        start = time.monotonic()
        s.sendall(b"\x16\x03\x01\x02\x00")  # a record header promising a ClientHello, then nothing
        s.settimeout(5)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - start
    assert 0.25 <= elapsed < 2.5, elapsed
    wait_until(lambda: metric(t, "tandem_listener_tls_handshake_failures_total", "web") == 1,
               what="timeout counted")
    assert metric(t, "tandem_listener_tls_handshakes_total", "web") == 0


def reload(t, cfg):
    before = t.admin_json("/api/v1/status")["config"]["revision"]
    t.config = cfg
    t.write_config()
    os.kill(t.pid, signal.SIGHUP)
    wait_until(lambda: t.admin_json("/api/v1/status")["config"]["revision"] == before + 1,
               timeout=5, what="reload applied")


def test_reload_swaps_the_certificate_and_rejects_a_bad_one(pool, certs):
    a = pool.http("a")
    port = free_port()

    base = make_config([], [backend_cfg("app", [server("a", a.port)])])

    def cfg(name, key_name=None):  # the same admin port every time
        return dict(base, listeners=[tls_listener("web", port, "app", [
            (certs.path(f"{name}.pem"), certs.path(f"{key_name or name}.key"))])])

    t = pool.tandem(cfg("v1"))
    old = tls_connect(port, "reload.test", certs.ca)
    assert old.getpeercert()["subject"] == ((("commonName", "reload-v1"),),)
    assert https_get(old, "/before", "reload.test").status == 200

    reload(t, cfg("v2"))
    new = tls_connect(port, "reload.test", certs.ca)
    assert new.getpeercert()["subject"] == ((("commonName", "reload-v2"),),)
    assert https_get(new, "/new", "reload.test").status == 200
    # The connection made before the reload goes on, on the certificate it started with.
    assert https_get(old, "/after", "reload.test").status == 200
    assert old.getpeercert()["subject"] == ((("commonName", "reload-v1"),),)
    old.close()
    new.close()

    # A key that does not match: rejected with FILE:LINE, the running certificate stays.
    bad = cfg("v1", key_name="v2")
    t.config = bad
    t.write_config()
    os.kill(t.pid, signal.SIGHUP)
    wait_until(lambda: "reload rejected" in t.stderr_text(), timeout=5, what="rejection logged")
    key_line = next(i for i, line in enumerate(to_yaml(bad).splitlines(), 1) if "key:" in line)
    assert re.search(rf"{re.escape(t.config_path)}:{key_line}: 'key': .*v2\.key: the key does not "
                     r"match the certificate", t.stderr_text()), t.stderr_tail()
    assert t.admin_json("/api/v1/status")["config"]["revision"] == 2
    rc, out = s_client(port, servername="reload.test", ca=certs.ca)
    assert rc == 0 and served_cn(out) == "reload-v2", out


def test_check_reports_bad_certificates_with_file_and_line(tandem_bin, certs, tmp_path):
    conf_dir = tmp_path / "conf"
    (conf_dir / "tls").mkdir(parents=True)
    for f in ("a.pem", "a.key", "wild.key"):
        shutil.copy(certs.path(f), conf_dir / "tls" / f)
    (conf_dir / "tls" / "garbage.pem").write_text("not a certificate\n")

    def check(tls, mode="http"):
        text = (f"listeners:\n"                                                  # 1
                f"  - name: web\n"                                               # 2
                f"    listen: 127.0.0.1:{free_port()}\n"                         # 3
                f"    mode: {mode}\n"                                            # 4
                f"    backend: app\n"                                            # 5
                f"    tls:\n" + "".join(f"      {line}\n" for line in tls) +     # 6, 7...
                f"backends:\n  - {{name: app, servers: [{{address: 127.0.0.1:9}}]}}\n"
                f"admin: {{enabled: false}}\n")
        path = conf_dir / "tandem.yaml"
        path.write_text(text)
        # From another folder: relative paths resolve against the config file's folder.
        r = subprocess.run([tandem_bin, "check", "-c", str(path)], cwd="/", capture_output=True,
                           timeout=10)
        return r.returncode, (r.stdout + r.stderr).decode(), str(path)

    rc, out, _ = check(["cert: tls/a.pem", "key: tls/a.key"])
    assert rc == 0, out
    rc, out, _ = check(["certificates:", "  - {cert: tls/a.pem, key: tls/a.key}"], mode="tcp")
    assert rc == 0, out

    cases = [
        (["cert: tls/missing.pem", "key: tls/a.key"], 7, r"'cert': cannot open .*/conf/tls/missing\.pem"),
        (["cert: tls/garbage.pem", "key: tls/a.key"], 7, r"'cert': .*garbage\.pem: no PEM certificate"),
        (["cert: tls/a.pem", "key: tls/wild.key"], 8, r"'key': .*wild\.key: the key does not match"),
        (["cert: tls/a.pem", "key: tls/a.pem"], 8, r"'key': .*a\.pem: no PEM private key"),
        (["cert: tls/a.pem"], 6, r"'tls' is missing 'key'"),
        (["certificates:", "  - {cert: tls/a.pem, key: tls/a.key}",
          "  - {cert: tls/a.pem, key: tls/nope.key}"], 9, r"'key': cannot open .*nope\.key"),
        (["certificates: []"], 7, r"'certificates' must not be empty"),
        (["cert: tls/a.pem", "key: tls/a.key", "certificates: []"], 7,
         r"'tls' has 'certificates' and also 'cert'/'key'"),
    ]
    for tls, line, reason in cases:
        rc, out, path = check(tls)
        assert rc == 1, (tls, out)
        assert re.search(rf"^{re.escape(path)}:{line}: {reason}", out, re.M), (tls, out)
    # Unreadable (not only missing) files: as root, a folder in place of the file.
    rc, out, path = check(["cert: tls", "key: tls/a.key"])
    assert rc == 1 and re.search(rf"^{re.escape(path)}:7: 'cert': .*not a regular file", out,
                                 re.M), out


def test_tcp_listener_terminates_tls_in_front_of_a_tcp_backend(pool, certs):
    echo = pool.tcp("echo")
    port = free_port()
    t = pool.tandem(make_config(
        [tls_listener("db", port, "pg", [(certs.path("a.pem"), certs.path("a.key"))], mode="tcp")],
        [backend_cfg("pg", [server("e", echo.port)])]))
    s = tls_connect(port, "a.example.test", certs.ca)
    assert s.selected_alpn_protocol() is None  # no ALPN on TCP listeners
    payload = os.urandom(100_000)
    s.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = s.recv(65536)
        assert chunk, "echo ended early"
        got += chunk
    assert got == payload
    s.close()
    # Plain bytes on it never reach the backend.
    accepted = echo.accepted
    with socket.create_connection((LOCAL, port), timeout=5) as p:
        p.sendall(b"PLAIN BYTES\r\n\r\n")
        try:
            while p.recv(100):  # ends with EOF or a reset; nothing of the backend's comes back
                pass
        except ConnectionResetError:
            pass
    wait_until(lambda: metric(t, "tandem_listener_tls_handshake_failures_total", "db") == 1,
               what="failure counted")
    assert echo.accepted == accepted
    assert metric(t, "tandem_listener_tls_handshakes_total", "db") == 1
