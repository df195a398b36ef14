#!/usr/bin/python3
"""Side-by-side benchmark: Tandem vs HAProxy vs NGINX vs wrk straight to the backend.

Everything runs on 127.0.0.1 with free ports. The backend is a separate nginx instance (1 worker), the
load generator is wrk (1 thread). In the default mode, the proxy under test is pinned to CPU 0 and the
backend plus wrk to CPU 1; `--workers auto` runs every proxy with one thread/worker per core, unpinned.
Rounds are interleaved: round k runs every target once per scenario, in an order rotated by k, and the
tables show the median of the rounds. See bench/README.md.

Standard library only; run with Debian's /usr/bin/python3.
"""

import argparse
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONF_DIR = HERE / "conf"
LUA_SCRIPT = CONF_DIR / "wrk-report.lua"

HAPROXY = "/usr/sbin/haproxy"
NGINX = "/usr/sbin/nginx"
WRK = "/usr/bin/wrk"
TASKSET = shutil.which("taskset") or "/usr/bin/taskset"

ALL_TARGETS = ["tandem", "haproxy", "nginx", "direct"]
PROXIES = ["tandem", "haproxy", "nginx"]

SMALL_BODY = "hello from the tandem bench backend\\n"  # nginx string escape: 36 bytes on the wire
LARGE_SIZE = 16 * 1024

# Throughput scenarios (wrk). "memory" is handled separately.
SCENARIOS = {
    "keepalive-64": dict(title="keep-alive, small response, 64 connections", path="/", conns=64,
                         close=False),
    "keepalive-256": dict(title="keep-alive, small response, 256 connections", path="/", conns=256,
                          close=False),
    "body-16k": dict(title="keep-alive, 16 KiB response, 64 connections", path="/16k.bin", conns=64,
                     close=False),
    "new-conn": dict(title="new connection per request (Connection: close), 64 connections",
                     path="/", conns=64, close=True),
    # keepalive-64 again while /metrics is scraped 10 times a second (Prometheus scrapes every
    # 15 s by default): Tandem's figure here against keepalive-64 is the scrape's cost. The other
    # targets run it unscraped, as a control for run-to-run noise.
    "keepalive-64-scraped": dict(title="keep-alive, small response, 64 connections, "
                                       "/metrics scraped every 100 ms (Tandem only)",
                                 path="/", conns=64, close=False, scrape_ms=100),
    # TLS termination, the same certificate (EC P-256) and cipher policy for every proxy
    # (TLS_TLS13_SUITES / TLS_TLS12_CIPHERS). wrk closes with SSL_shutdown + SSL_clear and keeps
    # the session, so "handshake" runs are TLS 1.3 resumptions (PSK with ECDHE: the key exchange
    # is still done, the certificate signature is not). "direct" has no TLS and is skipped.
    "tls-handshake": dict(title="TLS: new connection (handshake) per request, Connection: close, "
                                "64 connections", path="/", conns=64, close=True, tls=True),
    "tls-keepalive-64": dict(title="TLS: keep-alive, small response, 64 connections", path="/",
                             conns=64, close=False, tls=True),
    # keepalive-64 through a per-client-IP rate limit set far above the offered load, so every
    # request is counted and none refused: the cost of the limiter. Tandem `rate_limit` (memory
    # store), HAProxy a stick table tracking http_req_rate, NGINX limit_req. Against keepalive-64
    # it is each proxy's own overhead. "direct" has no limiter and is skipped.
    "ratelimit-64": dict(title="keep-alive, small response, 64 connections, per-client rate "
                               "limit never reached", path="/", conns=64, close=False,
                         ratelimit=True),
}
# Listener variants: a scenario with one of these flags runs against that extra listener of each
# proxy (see the configs in bench/conf); targets without it ("direct") get no row.
VARIANTS = ("tls", "ratelimit")
RATE_LIMIT_PER_S = 100_000_000  # far above anything one core can offer
TLS_TLS13_SUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
TLS_TLS12_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
ALL_SCENARIOS = list(SCENARIOS) + ["memory"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 15.0  # seconds for a server to answer its first request
STOP_TIMEOUT = 10.0   # seconds between SIGTERM and SIGKILL


class BenchError(Exception):
    pass


def scenario_variant(scenario):
    """The extra listener a scenario runs against ("tls", "ratelimit"), or None."""
    return next((v for v in VARIANTS if scenario.get(v)), None)


def log(msg=""):
    print(msg, flush=True)


def warn(msg):
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Processes, /proc

def free_port():
    """A port the kernel considers free right now (bind port 0). Tiny race until the server binds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_stat(pid):
    """(ppid, utime+stime ticks, starttime) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state) of proc(5): ppid=4, utime=14, stime=15, starttime=22.
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19])


def children_of(pid):
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = read_stat(int(entry))
            if st and st[0] == pid:
                kids.append(int(entry))
    return kids


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def render(template, out, values):
    text = (CONF_DIR / template).read_text()
    for key, val in values.items():
        text = text.replace(f"@@{key}@@", str(val))
    left = [l for l in text.splitlines() if "@@" in l and not l.lstrip().startswith("#")]
    if left:
        raise BenchError(f"{template}: unfilled placeholder in {left[0].strip()!r}")
    Path(out).write_text(text)
    return out


class Server:
    """A process we started, known by PID. `tree=True` also accounts its children (nginx workers)."""

    def __init__(self, name, argv, tmp, tree=False, pin=None):
        self.name = name
        self.tree = tree
        self.log_path = Path(tmp) / f"{name}.log"
        self.port = None
        cmd = ([TASKSET, "-c", pin] if pin is not None else []) + list(argv)
        self.cmd = cmd
        self._log = open(self.log_path, "wb")
        # taskset execs the program, so the PID is the server's own.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, close_fds=True)
        self.pid = self.proc.pid
        self._known = {}  # pid -> starttime, for stopping leftover children safely

    def pids(self):
        if self.proc.poll() is not None:
            return []
        pids = [self.pid] + (children_of(self.pid) if self.tree else [])
        for p in pids:
            st = read_stat(p)
            if st:
                self._known.setdefault(p, st[2])
        return pids

    def cpu_ticks(self):
        total = 0
        for p in self.pids():
            st = read_stat(p)
            if st:
                total += st[1]
        return total

    def rss_kib(self):
        return sum(rss_kib(p) for p in self.pids())

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=15):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + l for l in lines[-n:])

    def stop(self):
        self.pids()  # remember the children before the parent goes
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                warn(f"{self.name} (pid {self.pid}) ignored SIGTERM for {STOP_TIMEOUT:.0f}s; SIGKILL")
                self.proc.kill()
                self.proc.wait(timeout=5)
        # Children that outlived their parent (e.g. nginx workers after a killed master): by PID,
        # only if the PID still belongs to the same process (same start time).
        for p, start in self._known.items():
            if p == self.pid:
                continue
            st = read_stat(p)
            if st and st[2] == start:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        self._log.close()


def http_get(port, path="/", timeout=2.0, close=True, tls=False):
    """One HTTP/1.1 request; returns (status, body). Raises OSError/ValueError on failure."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        s = raw
        if tls:  # the bench's own self-signed certificate: not verified
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(raw, server_hostname="bench.test")
        hdr = "Connection: close\r\n" if close else ""
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n{hdr}\r\n".encode())
        return read_response(s)


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ValueError("connection closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        raise ValueError("response without Content-Length")
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise ValueError(f"connection closed in the body ({len(body)} of {length} bytes)")
        body += chunk
    return status, body


def wait_ready(server, port, timeout=START_TIMEOUT, tls=False):
    """Until a GET through `port` answers 200 (so the backend path works too)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if server is not None and not server.alive():
            raise BenchError(f"{server.name} exited with status {server.proc.returncode}:\n"
                             f"{server.log_tail()}")
        try:
            status, _ = http_get(port, tls=tls)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, ValueError) as e:
            last = str(e)
        time.sleep(0.05)
    name = server.name if server else f"port {port}"
    tail = server.log_tail() if server else ""
    raise BenchError(f"{name} not ready after {timeout:.0f}s ({last})\n{tail}")


# --------------------------------------------------------------------------------------------------
# Starting the backend and the targets

class Bench:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = Path(tmp)
        self.servers = []

    def start(self, server):
        self.servers.append(server)
        return server

    def stop(self, server):
        if server in self.servers:
            self.servers.remove(server)
        server.stop()

    def stop_all(self):
        while self.servers:
            self.stop(self.servers[-1])

    def start_backend(self, pin):
        www = self.tmp / "www"
        www.mkdir(exist_ok=True)
        # Printable, deterministic 16 KiB body.
        line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n"
        (www / "16k.bin").write_bytes((line * (LARGE_SIZE // len(line) + 1))[:LARGE_SIZE])
        port = free_port()
        conf = render("backend-nginx.conf", self.tmp / "backend-nginx.conf",
                      dict(TMP=self.tmp, PORT=port, SMALL_BODY=SMALL_BODY))
        srv = self.start(Server("backend", [NGINX, "-p", str(self.tmp), "-e",
                                            str(self.tmp / "backend-startup.log"), "-c", str(conf),
                                            "-g", "daemon off;"], self.tmp, tree=True, pin=pin))
        srv.port = port
        wait_ready(srv, port)
        status, body = http_get(port, "/16k.bin")
        if status != 200 or len(body) != LARGE_SIZE:
            raise BenchError(f"backend /16k.bin: HTTP {status}, {len(body)} bytes")
        return srv

    def tls_files(self):
        """One self-signed EC P-256 certificate for every proxy: (cert, key, cert+key for HAProxy)."""
        crt, key, pem = self.tmp / "tls.crt", self.tmp / "tls.key", self.tmp / "tls.pem"
        if not pem.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out",
                            str(crt), "-days", "2", "-subj", "/CN=bench.test", "-addext",
                            "subjectAltName=DNS:bench.test"], check=True, capture_output=True,
                           timeout=30)
            pem.write_text(crt.read_text() + key.read_text())
        return crt, key, pem

    def tandem_accepts(self, conf, values, complaint):
        """False if `tandem check` rejects the config with `complaint` in its message."""
        render("tandem.yaml", conf, values)
        try:
            out = subprocess.run([self.args.tandem, "check", "-c", str(conf)],
                                 capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return True
        return not (out.returncode != 0 and complaint in out.stdout + out.stderr)

    def tandem_config(self, port, backend_port, workers_auto, tls_port, rl_port):
        conf = self.tmp / "tandem.yaml"
        self.admin_port = free_port()
        crt, key, _ = self.tls_files()
        values = dict(PORT=port, BACKEND_PORT=backend_port, WORKERS="auto" if workers_auto else 1,
                      ADMIN=f"admin: {{listen: 127.0.0.1:{self.admin_port}}}",
                      TLS_LISTENER=(f"  - {{name: bench_tls, listen: 127.0.0.1:{tls_port}, mode: http, "
                                    f"backend: app, limits: {{idle_timeout: 300s, max_connections: "
                                    f"15000}}, tls: {{cert: {crt}, key: {key}}}}}"),
                      RL_LISTENER=(f"  - {{name: bench_rl, listen: 127.0.0.1:{rl_port}, mode: http, "
                                   f"backend: app_rl, limits: {{idle_timeout: 300s, "
                                   f"max_connections: 15000}}}}"),
                      RL_BACKEND=(f"  - name: app_rl\n"
                                  f"    balance: round_robin\n"
                                  f"    servers: [{{name: b1, address: 127.0.0.1:{backend_port}}}]\n"
                                  f"    limits: {{max_idle_per_server: 1024}}\n"
                                  f"    rate_limit: {{key: source_ip, rate: {RATE_LIMIT_PER_S}/s}}"))
        # Older builds (baseline runs) may reject a feature: each is probed once with `tandem
        # check`, and left out of the config if the build does not know it.
        if self.args.tandem_tls is None:
            self.args.tandem_tls = self.tandem_accepts(conf, values, "'tls' is not supported")
        if not self.args.tandem_tls:
            values["TLS_LISTENER"] = "  # tls: not supported by this build"
        if self.args.tandem_admin is None:
            self.args.tandem_admin = self.tandem_accepts(conf, values, "admin")
        if not self.args.tandem_admin:
            values["ADMIN"] = "# admin: not supported by this build"
        if self.args.tandem_ratelimit is None:
            self.args.tandem_ratelimit = self.tandem_accepts(conf, values, "rate_limit")
        if not self.args.tandem_ratelimit:
            values["RL_LISTENER"] = "  # rate_limit: not supported by this build"
            values["RL_BACKEND"] = ""
        return render("tandem.yaml", conf, values)

    def start_target(self, target, backend_port, workers_auto, pin):
        """Starts a proxy under test; returns its Server (None for "direct") and its port."""
        if target == "direct":
            return None, backend_port
        port = free_port()
        tls_port = free_port()
        rl_port = free_port()
        _, _, pem = self.tls_files()
        ncpu = os.cpu_count() or 2
        if target == "tandem":
            conf = self.tandem_config(port, backend_port, workers_auto, tls_port, rl_port)
            argv = [self.args.tandem, "run", "-c", str(conf)]
            srv = Server("tandem", argv, self.tmp, pin=pin)
            srv.admin_port = self.admin_port if self.args.tandem_admin else None
        elif target == "haproxy":
            conf = render("haproxy.cfg", self.tmp / "haproxy.cfg",
                          dict(TMP=self.tmp, PORT=port, BACKEND_PORT=backend_port,
                               THREADS=ncpu if workers_auto else 1,
                               MAXCONN=self.args.idle_conns + 500, TLS_PORT=tls_port, TLS_PEM=pem,
                               RL_PORT=rl_port, RL_RATE=RATE_LIMIT_PER_S,
                               TLS13_SUITES=TLS_TLS13_SUITES, TLS12_CIPHERS=TLS_TLS12_CIPHERS))
            srv = Server("haproxy", [HAPROXY, "-f", str(conf), "-db"], self.tmp, pin=pin)
        elif target == "nginx":
            crt, key, _ = self.tls_files()
            conf = render("proxy-nginx.conf", self.tmp / "proxy-nginx.conf",
                          dict(TMP=self.tmp, PORT=port, BACKEND_PORT=backend_port,
                               WORKERS=ncpu if workers_auto else 1,
                               REUSEPORT=" reuseport" if workers_auto else "",
                               TLS_PORT=tls_port, TLS_CERT=crt, TLS_KEY=key,
                               RL_PORT=rl_port, RL_RATE=RATE_LIMIT_PER_S,
                               TLS13_SUITES=TLS_TLS13_SUITES, TLS12_CIPHERS=TLS_TLS12_CIPHERS))
            srv = Server("nginx", [NGINX, "-p", str(self.tmp), "-e",
                                   str(self.tmp / "proxy-nginx-startup.log"), "-c", str(conf),
                                   "-g", "daemon off;"], self.tmp, tree=True, pin=pin)
        else:
            raise BenchError(f"unknown target {target}")
        srv.port = port
        srv.variant_ports = {}
        self.start(srv)
        try:
            wait_ready(srv, port)
            if target != "tandem" or self.args.tandem_tls:
                wait_ready(srv, tls_port, tls=True)
                srv.variant_ports["tls"] = tls_port
            if target != "tandem" or self.args.tandem_ratelimit:
                wait_ready(srv, rl_port)
                srv.variant_ports["ratelimit"] = rl_port
        except BenchError:
            self.stop(srv)
            raise
        if target == "nginx" and workers_auto:
            # Workers appear shortly after the master answers; wait for all of them.
            deadline = time.monotonic() + 5
            while len(srv.pids()) < ncpu + 1 and time.monotonic() < deadline:
                time.sleep(0.05)
        return srv, port


# --------------------------------------------------------------------------------------------------
# wrk

def run_wrk(port, scn, duration, pin, conns=None):
    cmd = ([TASKSET, "-c", pin] if pin is not None else []) + [
        WRK, "-t1", f"-c{conns or scn['conns']}", f"-d{duration}s", "--timeout", "5s",
        "-s", str(LUA_SCRIPT)]
    if scn["close"]:
        cmd += ["-H", "Connection: close"]
    cmd.append(f"{'https' if scn.get('tls') else 'http'}://127.0.0.1:{port}{scn['path']}")
    try:
        out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             timeout=duration + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk did not finish within {duration + 30:.0f}s")
    for line in out.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON "):])
    raise BenchError(f"wrk exit {out.returncode}, no report:\n{out.stdout[-800:]}{out.stderr[-800:]}")


class Scraper:
    """GETs Tandem's /metrics every `period_ms` in a thread while a run lasts (bounded by the
    run: stop() ends it); counts scrapes and failures."""

    def __init__(self, port, period_ms, pin=None):
        self.port, self.period, self.pin = port, period_ms / 1000.0, pin
        self.ok = self.failed = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        if self.pin is not None:
            # This thread only (pid 0 = the calling thread on Linux): on the load generator's CPU,
            # as a Prometheus server on another host would be, not on the proxy's.
            os.sched_setaffinity(0, {int(c) for c in str(self.pin).split(",")})
        while not self._stop.wait(self.period):
            try:
                status, body = http_get(self.port, "/metrics")
                if status == 200:
                    self.ok += 1
                    self.bytes = len(body)
                else:
                    self.failed += 1
            except (OSError, ValueError):
                self.failed += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def measure(target, srv, backend, port, scn, duration, pin_load):
    t0 = time.monotonic()
    cpu0 = srv.cpu_ticks() if srv else None
    bcpu0 = backend.cpu_ticks()
    scraper = None
    if scn.get("scrape_ms") and target == "tandem" and getattr(srv, "admin_port", None):
        with Scraper(srv.admin_port, scn["scrape_ms"], pin_load) as scraper:
            rep = run_wrk(port, scn, duration, pin_load)
        if scraper.ok == 0 or scraper.failed:
            warn(f"scrapes: {scraper.ok} ok, {scraper.failed} failed")
    else:
        rep = run_wrk(port, scn, duration, pin_load)
    cpu1 = srv.cpu_ticks() if srv else None
    bcpu1 = backend.cpu_ticks()
    wall = time.monotonic() - t0
    if srv is not None and not srv.alive():
        raise BenchError(f"{target} died during the run:\n{srv.log_tail()}")
    reqs = rep["requests"]
    secs = rep["duration_us"] / 1e6
    errors = sum(rep["errors"].values())
    if reqs == 0:
        raise BenchError(f"no request completed (wrk errors: {rep['errors']})")
    r = {
        "requests": reqs,
        "rps": reqs / secs if secs > 0 else 0.0,
        "p50_ms": rep["latency_us"]["p50"] / 1000.0,
        "p90_ms": rep["latency_us"]["p90"] / 1000.0,
        "p99_ms": rep["latency_us"]["p99"] / 1000.0,
        "p999_ms": rep["latency_us"]["p999"] / 1000.0,
        "errors": errors,
        "error_detail": rep["errors"],
        "bytes_per_req": rep["bytes"] / reqs if reqs else 0.0,
        "cpu_us_per_req": None,
        "proxy_cpu_pct": None,
        "backend_cpu_us_per_req": ((bcpu1 - bcpu0) * 1e6 / CLK_TCK / reqs) if reqs else None,
    }
    if srv is not None and reqs:
        r["cpu_us_per_req"] = (cpu1 - cpu0) * 1e6 / CLK_TCK / reqs
        r["proxy_cpu_pct"] = 100.0 * (cpu1 - cpu0) / CLK_TCK / wall
    return r


def median_of(runs):
    out = {"rounds": len(runs)}
    for key in ("rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "cpu_us_per_req", "proxy_cpu_pct",
                "backend_cpu_us_per_req", "bytes_per_req"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(vals) if vals else None
    out["errors"] = sum(r["errors"] for r in runs)
    out["requests"] = sum(r["requests"] for r in runs)
    return out


def valid(m):
    """A median we can compare: requests completed and at most 0.1 % of them failed."""
    return bool(m) and m["requests"] > 0 and m["errors"] <= 0.001 * m["requests"]


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# --------------------------------------------------------------------------------------------------
# Memory: idle keep-alive client connections

def open_idle_connections(port, count, deadline):
    """`count` connections, each sends one request, reads the response and stays open."""
    socks, failures, first_error = [], 0, None
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(count):
        if time.monotonic() > deadline:
            first_error = first_error or "deadline reached"
            break
        s = None
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(req)
            status, _ = read_response(s)
            if status != 200:
                raise ValueError(f"HTTP {status}")
            socks.append(s)
        except (OSError, ValueError) as e:
            failures += 1
            first_error = first_error or str(e)
            if s:
                s.close()
            if failures >= 100:
                break
    return socks, failures, first_error


def count_open(socks):
    """How many of our idle connections the server has not closed."""
    poller = select.poll()
    by_fd = {}
    for s in socks:
        poller.register(s.fileno(), select.POLLIN | select.POLLRDHUP if hasattr(select, "POLLRDHUP")
                        else select.POLLIN)
        by_fd[s.fileno()] = s
    closed = 0
    for fd, ev in poller.poll(0):
        closed += 1 if ev & (select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)) \
            or _peek_eof(by_fd[fd]) else 0
    return len(socks) - closed


def _peek_eof(s):
    try:
        return s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def memory_scenario(bench, targets, backend, workers_auto, pin_proxy, conns):
    results = {}
    for target in [t for t in targets if t != "direct"]:
        log(f"  memory: {target}: starting alone, opening {conns} idle keep-alive connections ...")
        srv = None
        socks = []
        try:
            srv, port = bench.start_target(target, backend.port, workers_auto, pin_proxy)
            time.sleep(0.5)
            rss0 = srv.rss_kib()
            t0 = time.monotonic()
            socks, failures, err = open_idle_connections(port, conns, time.monotonic() + 180)
            open_secs = time.monotonic() - t0
            time.sleep(1.0)
            rss1 = srv.rss_kib()
            still_open = count_open(socks)
            if failures:
                warn(f"memory/{target}: {failures} connections failed (first: {err})")
            results[target] = {
                "connections": len(socks),
                "still_open": still_open,
                "failures": failures,
                "open_seconds": open_secs,
                "rss_before_kib": rss0,
                "rss_after_kib": rss1,
                "rss_growth_kib": rss1 - rss0,
                "bytes_per_conn": (rss1 - rss0) * 1024 / len(socks) if socks else None,
                "processes": len(srv.pids()),
            }
        except BenchError as e:
            warn(f"memory/{target}: {e}")
            results[target] = {"error": str(e)}
        finally:
            for s in socks:
                s.close()
            if srv is not None:
                bench.stop(srv)
    return results


# --------------------------------------------------------------------------------------------------
# Output

def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def fmt_ratio(v):
    return "-" if v is None else f"{v:.2f}x"


def print_table(name, scn, meds):
    log(f"\n### {name}: {scn['title']}")
    log(f"{'target':<9} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU µs/req':>11} "
        f"{'proxy CPU%':>10} {'errors':>7}")
    for t, m in meds.items():
        if m is None:
            log(f"{t:<9} {'failed':>10}")
            continue
        log(f"{t:<9} {fmt(m['rps'], ',.0f'):>10} {fmt(m['p50_ms'], '.3f'):>8} "
            f"{fmt(m['p99_ms'], '.3f'):>8} {fmt(m['cpu_us_per_req'], '.2f'):>11} "
            f"{fmt(m['proxy_cpu_pct'], '.0f'):>10} {m['errors']:>7}"
            + ("  <- errors: not comparable" if not valid(m) else ""))


def scenario_ratios(meds):
    out = {}
    t = meds.get("tandem")
    for ref in ("haproxy", "nginx", "direct"):
        r = meds.get(ref)
        if valid(t) and valid(r):
            out[f"tandem/{ref}"] = {
                "rps": ratio(t["rps"], r["rps"]),
                "p99": ratio(t["p99_ms"], r["p99_ms"]),
                "cpu": ratio(t["cpu_us_per_req"], r["cpu_us_per_req"]),
            }
    return out


def print_ratios(ratios):
    parts = []
    if "tandem/haproxy" in ratios:
        r = ratios["tandem/haproxy"]
        parts.append(f"Tandem/HAProxy: req/s {fmt_ratio(r['rps'])}, p99 {fmt_ratio(r['p99'])}, "
                     f"CPU/req {fmt_ratio(r['cpu'])}")
    if "tandem/direct" in ratios:
        r = ratios["tandem/direct"]
        parts.append(f"Tandem/direct: req/s {fmt_ratio(r['rps'])}, p99 {fmt_ratio(r['p99'])}")
    for p in parts:
        log("  " + p)


def geomean(vals):
    vals = [v for v in vals if v is not None and v > 0]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def print_memory(mem):
    n = max((m.get("connections", 0) for m in mem.values()), default=0)
    log(f"\n### memory: {n:,} idle keep-alive client connections (each sent one request, then idle)")
    log(f"{'target':<9} {'conns':>7} {'open':>7} {'RSS before':>11} {'RSS after':>11} "
        f"{'growth':>10} {'bytes/conn':>10}")
    for t, m in mem.items():
        if "error" in m:
            log(f"{t:<9} failed: {m['error'].splitlines()[0]}")
            continue
        log(f"{t:<9} {m['connections']:>7} {m['still_open']:>7} "
            f"{m['rss_before_kib'] / 1024:>8.1f} MiB {m['rss_after_kib'] / 1024:>8.1f} MiB "
            f"{m['rss_growth_kib'] / 1024:>7.1f} MiB {fmt(m['bytes_per_conn'], ',.0f'):>10}")
    if "tandem" in mem and "haproxy" in mem and "error" not in mem["tandem"] \
            and "error" not in mem["haproxy"]:
        log(f"  Tandem/HAProxy: RSS growth "
            f"{fmt_ratio(ratio(mem['tandem']['rss_growth_kib'], mem['haproxy']['rss_growth_kib']))}, "
            f"total RSS "
            f"{fmt_ratio(ratio(mem['tandem']['rss_after_kib'], mem['haproxy']['rss_after_kib']))}")
    log("  (RSS = VmRSS summed over the target's processes; nginx preallocates its connection table "
        "at start, so its growth understates the per-connection cost — compare totals too)")


def version_of(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0].strip() if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------------------------------
# One mode (pinned or auto)

def run_mode(args, mode, targets, scenarios):
    workers_auto = mode == "auto"
    pin_proxy = None if workers_auto else "0"
    pin_load = None if workers_auto else "1"
    ncpu = os.cpu_count() or 2
    log("")
    log("=" * 100)
    if workers_auto:
        log(f"MODE auto: tandem `workers: auto`, haproxy `nbthread {ncpu}`, nginx "
            f"`worker_processes {ncpu}` (+reuseport); nothing pinned — proxy, backend (nginx, 1 "
            f"worker) and wrk (1 thread) share all {ncpu} CPUs.")
    else:
        log("MODE pinned: each proxy with 1 worker/thread (tandem `workers: 1`, haproxy `nbthread 1`, "
            "nginx `worker_processes 1`).")
        log("CPU pinning: proxy under test on CPU 0 (taskset -c 0); backend nginx (1 worker) and wrk "
            "(1 thread) on CPU 1 (taskset -c 1).")
    log(f"{args.rounds} interleaved round(s) x {args.duration:g} s per run, rotating target order; "
        "tables show the median of the rounds. CPU µs/req = utime+stime of the proxy's processes "
        "(all threads/workers) / requests.")
    log("=" * 100)

    mode_result = {"mode": mode, "pinning": None if workers_auto else
                   {"proxy": "cpu 0", "backend": "cpu 1", "wrk": "cpu 1"},
                   "scenarios": {}, "memory": None, "failed_targets": {}}
    bench = Bench(args, args.tmp)
    try:
        backend = bench.start_backend(pin_load)
        thr = [s for s in scenarios if s != "memory"]
        if thr:
            started = {}
            for t in targets:
                try:
                    started[t] = bench.start_target(t, backend.port, workers_auto, pin_proxy)
                except BenchError as e:
                    warn(f"{t}: {e}")
                    mode_result["failed_targets"][t] = str(e)
            live = [t for t in targets if t in started]
            # What each target forwards to the backend (equal header work is part of fairness).
            fwd = {}
            for t in live:
                try:
                    st, body = http_get(started[t][1], "/headers")
                    fwd[t] = body.decode("latin-1").strip() if st == 200 else f"HTTP {st}"
                except (OSError, ValueError) as e:
                    fwd[t] = f"error: {e}"
            mode_result["forwarded_headers"] = fwd
            log("Forwarded to the backend: " + "; ".join(f"{t}: {v}" for t, v in fwd.items()))
            # Every target must return complete responses, or its numbers mean nothing.
            sanity = {}
            for t in live:
                for path, size in (("/", None), ("/16k.bin", LARGE_SIZE)):
                    try:
                        st, body = http_get(started[t][1], path, timeout=5)
                        ok = st == 200 and (size is None or len(body) == size)
                        problem = None if ok else f"HTTP {st}, {len(body)} bytes"
                    except (OSError, ValueError) as e:
                        problem = str(e)
                    if problem:
                        sanity[f"{t} GET {path}"] = problem
                        warn(f"{t}: GET {path}: {problem}")
            mode_result["sanity_problems"] = sanity
            # Warm-up: every target once, short, small responses (not recorded).
            if args.warmup > 0:
                for t in live:
                    try:
                        run_wrk(started[t][1], SCENARIOS["keepalive-64"], args.warmup, pin_load)
                    except BenchError as e:
                        warn(f"warm-up {t}: {e}")
            runs = {s: {t: [] for t in live} for s in thr}
            for k in range(args.rounds):
                for s in thr:
                    order = live[k % len(live):] + live[:k % len(live)] if live else []
                    for t in order:
                        srv, port = started[t]
                        if srv is not None and not srv.alive():
                            continue
                        variant = scenario_variant(SCENARIOS[s])
                        if variant:
                            port = getattr(srv, "variant_ports", {}).get(variant)
                            if port is None:  # direct (plain backend), or a build without it
                                continue
                        try:
                            r = measure(t, srv, backend, port, SCENARIOS[s], args.duration, pin_load)
                            runs[s][t].append(r)
                            if args.verbose:
                                log(f"  round {k + 1} {s:<14} {t:<8} {r['rps']:>10,.0f} req/s "
                                    f"p99 {r['p99_ms']:.3f} ms cpu {fmt(r['cpu_us_per_req'], '.2f')}"
                                    f" µs/req errors {r['errors']}")
                        except BenchError as e:
                            warn(f"round {k + 1} {s} {t}: {e}")
                            mode_result["failed_targets"].setdefault(t, str(e))
                log(f"  round {k + 1}/{args.rounds} done")
            for t in list(started):
                srv = started[t][0]
                if srv is not None:
                    bench.stop(srv)
            for s in thr:
                # Variant scenarios skip targets without it ("direct"): no row, not "failed".
                meds = {t: (median_of(runs[s][t]) if runs[s][t] else None) for t in live
                        if runs[s][t] or not scenario_variant(SCENARIOS[s])}
                rat = scenario_ratios(meds)
                mode_result["scenarios"][s] = {
                    "title": SCENARIOS[s]["title"], "connections": SCENARIOS[s]["conns"],
                    "path": SCENARIOS[s]["path"], "connection_close": SCENARIOS[s]["close"],
                    "median": meds, "runs": runs[s], "ratios": rat}
                print_table(s, SCENARIOS[s], meds)
                print_ratios(rat)
                base = mode_result["scenarios"].get("keepalive-64", {}).get("median", {})
                if SCENARIOS[s].get("scrape_ms") and valid(meds.get("tandem")) and \
                        valid(base.get("tandem")):
                    cost = {"rps": ratio(meds["tandem"]["rps"], base["tandem"]["rps"]),
                            "p99": ratio(meds["tandem"]["p99_ms"], base["tandem"]["p99_ms"]),
                            "cpu": ratio(meds["tandem"]["cpu_us_per_req"],
                                         base["tandem"]["cpu_us_per_req"])}
                    mode_result["scrape_cost"] = cost
                    log(f"  Tandem scraped/unscraped (vs keepalive-64): req/s "
                        f"{fmt_ratio(cost['rps'])}, p99 {fmt_ratio(cost['p99'])}, CPU/req "
                        f"{fmt_ratio(cost['cpu'])}")
                bad = [t for t, m in meds.items() if not valid(m)]
                if bad:
                    mode_result["failed_targets"].update(
                        {t: f"{s}: errors or no result" for t in bad
                         if t not in mode_result["failed_targets"]})
                    if "tandem" in bad:
                        log("  (no Tandem ratios: Tandem failed or had errors in this scenario)")
        if "memory" in scenarios:
            log("")
            mem = memory_scenario(bench, targets, backend, workers_auto, pin_proxy, args.idle_conns)
            mode_result["memory"] = mem
            print_memory(mem)
    finally:
        bench.stop_all()

    # Summary: geometric means over the throughput scenarios.
    summary = {}
    sc = mode_result["scenarios"]
    for pair in ("tandem/haproxy", "tandem/nginx", "tandem/direct"):
        vals = [sc[s]["ratios"].get(pair) for s in sc]
        vals = [v for v in vals if v]
        if vals:
            summary[pair] = {k: geomean([v[k] for v in vals]) for k in ("rps", "p99", "cpu")}
            summary[pair]["scenarios"] = len(vals)
    mode_result["summary"] = summary
    line = []
    if "tandem/haproxy" in summary:
        s = summary["tandem/haproxy"]
        line.append(f"Tandem vs HAProxy: req/s {fmt_ratio(s['rps'])}, p99 {fmt_ratio(s['p99'])}, "
                    f"CPU/req {fmt_ratio(s['cpu'])}")
    if "tandem/nginx" in summary:
        s = summary["tandem/nginx"]
        line.append(f"vs NGINX: req/s {fmt_ratio(s['rps'])}, CPU/req {fmt_ratio(s['cpu'])}")
    if "tandem/direct" in summary:
        line.append(f"vs direct: req/s {fmt_ratio(summary['tandem/direct']['rps'])}")
    mem = mode_result["memory"] or {}
    if "tandem" in mem and "error" not in mem["tandem"]:
        line.append(f"idle conn: {fmt(mem['tandem']['bytes_per_conn'], ',.0f')} B/conn")
    log("")
    if line:
        n = max((v["scenarios"] for v in summary.values()), default=0)
        over = f", geometric mean over {n} of {len(sc)} scenario(s)" if sc else ""
        log(f"SUMMARY ({mode}{over}): " + "; ".join(line))
    else:
        others = []
        for s in sc.values():
            d = s["median"].get("direct")
            for t, m in s["median"].items():
                if t != "direct" and m and d:
                    others.append((t, m["rps"] / d["rps"]))
        per = {}
        for t, v in others:
            per.setdefault(t, []).append(v)
        log(f"SUMMARY ({mode}): no tandem in this run; req/s vs direct (geomean): " +
            (", ".join(f"{t} {fmt_ratio(geomean(v))}" for t, v in per.items()) or "-"))
    return mode_result


# --------------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds, median shown (default 3)")
    p.add_argument("--only", default=",".join(ALL_SCENARIOS),
                   help=f"comma-separated scenarios: {','.join(ALL_SCENARIOS)} (default: all)")
    p.add_argument("--targets", default=",".join(ALL_TARGETS),
                   help="comma-separated targets: tandem,haproxy,nginx,direct (default: all)")
    p.add_argument("--workers", default="1", choices=["1", "auto", "both"],
                   help="1: one worker per proxy, pinned (default); auto: one per core, unpinned; "
                        "both: the pinned tables, then the auto tables")
    p.add_argument("--tandem", default=os.environ.get("TANDEM_BIN") or
                   str(REPO / "build-release" / "src" / "tandem"),
                   help="tandem binary (default: $TANDEM_BIN or build-release/src/tandem)")
    p.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per target (0: none)")
    p.add_argument("--idle-conns", type=int, default=10000,
                   help="idle client connections in the memory scenario (default 10000)")
    p.add_argument("--json", default=str(REPO / "build-release" / "bench-results.json"),
                   help="where to write the results (default build-release/bench-results.json)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (configs, logs)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every run")
    args = p.parse_args(argv)
    args.tandem_admin = None  # does this tandem build accept `admin:`? (asked once, by `tandem check`)
    args.tandem_tls = None    # ... and `tls:` on a listener?
    args.tandem_ratelimit = None  # ... and `rate_limit` on a backend?
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    for t in args.targets:
        if t not in ALL_TARGETS:
            p.error(f"unknown target {t!r} (choose from {','.join(ALL_TARGETS)})")
    for s in args.only:
        if s not in ALL_SCENARIOS:
            p.error(f"unknown scenario {s!r} (choose from {','.join(ALL_SCENARIOS)})")
    if args.duration <= 0 or args.rounds < 1:
        p.error("--duration must be > 0 and --rounds >= 1")
    return args


def check_tools(args):
    missing = [x for x in (WRK, NGINX, TASKSET) if not os.access(x, os.X_OK)]
    if "haproxy" in args.targets and not os.access(HAPROXY, os.X_OK):
        missing.append(HAPROXY)
    if "tandem" in args.targets:
        args.tandem = str(Path(args.tandem).resolve())
        if not os.access(args.tandem, os.X_OK):
            raise BenchError(f"tandem binary not found: {args.tandem} (build Release, pass --tandem "
                             f"PATH or TANDEM_BIN, or leave tandem out with --targets)")
    if missing:
        raise BenchError("missing tools: " + ", ".join(missing))
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs at least 2 CPUs (proxy on CPU 0, backend and wrk on CPU 1)")


def main(argv):
    args = parse_args(argv)

    # SIGTERM/SIGHUP behave like Ctrl-C so that `finally` blocks stop what we started.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if "memory" in args.only and nofile != resource.RLIM_INFINITY and nofile < args.idle_conns + 500:
        warn(f"RLIMIT_NOFILE is {nofile}; lowering --idle-conns to {nofile - 500}")
        args.idle_conns = max(100, nofile - 500)

    try:
        check_tools(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    versions = {"haproxy": version_of([HAPROXY, "-v"]), "nginx": version_of([NGINX, "-v"]),
                "wrk": version_of([WRK, "-v"])}
    if "tandem" in args.targets:
        versions["tandem"] = version_of([args.tandem, "version"])
    log("Tandem side-by-side benchmark (bench/run.py)")
    log(f"  host: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}; "
        f"loopback only; RLIMIT_NOFILE {nofile}")
    for k, v in versions.items():
        log(f"  {k}: {v}" + (f"  [{args.tandem}]" if k == "tandem" else ""))
    log(f"  targets: {', '.join(args.targets)}; scenarios: {', '.join(args.only)}")
    try:
        load = os.getloadavg()
        log(f"  load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
            + ("  (machine busy: expect noise)" if load[0] > 0.5 else ""))
    except OSError:
        pass

    tmp = tempfile.mkdtemp(prefix="tandem-bench-")
    args.tmp = tmp
    modes = {"1": ["pinned"], "auto": ["auto"], "both": ["pinned", "auto"]}[args.workers]
    result = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                 "loadavg_start": list(os.getloadavg())},
        "versions": versions,
        "config": {"duration_s": args.duration, "rounds": args.rounds, "warmup_s": args.warmup,
                   "targets": args.targets, "scenarios": args.only, "wrk_threads": 1,
                   "idle_conns": args.idle_conns, "small_body_bytes": 36,
                   "large_body_bytes": LARGE_SIZE},
        "modes": {},
    }
    status = 0
    try:
        for mode in modes:
            mr = run_mode(args, mode, args.targets, args.only)
            result["modes"][mode] = mr
            if mr["failed_targets"] or mr.get("sanity_problems"):
                status = 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopped everything we started", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if args.keep_tmp:
            log(f"temp dir kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log(f"results written to {out}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
