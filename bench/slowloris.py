#!/usr/bin/python3
"""Slowloris side by side: Tandem vs HAProxy vs NGINX, each holding 2,000 slow connections.

For each proxy (one worker/thread, pinned to CPU 0, in front of the same backend nginx as
bench/run.py, which shares CPU 1 with this script):
  1. baseline: a normal client alone for --baseline seconds;
  2. --conns slow connections are opened and each sends one more header byte about every second
     (a single-process selectors loop), staying under the 30 s header timeout all three proxies
     are given (Tandem `header_timeout`, HAProxy `timeout http-request`, NGINX
     `client_header_timeout`);
  3. while they trickle, the normal client (a separate process: a new connection, one GET, every
     --interval seconds) measures its latency for --duration seconds.
The table shows p50/p99/max of the normal client with and without the slow connections, its
errors, how many slow connections the proxy still held at the end, and the proxy's CPU time.

Everything on 127.0.0.1; bounded in connections and time; every process stopped by PID.
Standard library only; run with Debian's /usr/bin/python3:
    /usr/bin/python3 bench/slowloris.py --tandem build-release/src/tandem
"""
import argparse
import multiprocessing
import os
import selectors
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (bench/run.py: Server, Bench.start_backend, wait_ready, ...)

TANDEM_CONF = """node: {{id: slowloris}}
admin: {{listen: 127.0.0.1:{admin}}}
workers: 1
drain_timeout: 2s
listeners:
  - name: bench
    listen: 127.0.0.1:{port}
    mode: http
    backend: app
    limits: {{header_timeout: {ht}s, idle_timeout: 300s, max_connections: 15000}}
backends:
  - name: app
    servers: [{{name: b1, address: 127.0.0.1:{backend}}}]
    limits: {{max_idle_per_server: 1024}}
"""

HAPROXY_CONF = """global
    nbthread 1
    maxconn 8000
    ulimit-n 20000
    pidfile {tmp}/slow-haproxy.pid
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-request {ht}s
    timeout http-keep-alive 300s
    maxconn 8000
frontend bench
    bind 127.0.0.1:{port}
    default_backend app
backend app
    http-reuse always
    option forwardfor
    server b1 127.0.0.1:{backend}
"""

NGINX_CONF = """user root;
worker_processes 1;
worker_rlimit_nofile 20000;
pid {tmp}/slow-nginx.pid;
error_log {tmp}/slow-nginx-error.log error;
events {{ worker_connections 19000; use epoll; }}
http {{
    access_log off;
    client_header_timeout {ht}s;
    keepalive_timeout 300s;
    client_body_temp_path {tmp}/slow-nginx-body;
    proxy_temp_path {tmp}/slow-nginx-proxy;
    fastcgi_temp_path {tmp}/slow-nginx-fastcgi;
    uwsgi_temp_path {tmp}/slow-nginx-uwsgi;
    scgi_temp_path {tmp}/slow-nginx-scgi;
    upstream app {{ server 127.0.0.1:{backend}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


def start_proxy(bench, target, backend_port, ht, pin):
    port = run.free_port()
    tmp = bench.tmp
    if target == "tandem":
        conf = tmp / "slow-tandem.yaml"
        conf.write_text(TANDEM_CONF.format(admin=run.free_port(), port=port, ht=ht,
                                           backend=backend_port))
        argv = [bench.args.tandem, "run", "-c", str(conf)]
        srv = run.Server("tandem", argv, tmp, pin=pin)
    elif target == "haproxy":
        conf = tmp / "slow-haproxy.cfg"
        conf.write_text(HAPROXY_CONF.format(tmp=tmp, port=port, ht=ht, backend=backend_port))
        srv = run.Server("haproxy", [run.HAPROXY, "-f", str(conf), "-db"], tmp, pin=pin)
    else:
        conf = tmp / "slow-nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, ht=ht, backend=backend_port))
        srv = run.Server("nginx", [run.NGINX, "-p", str(tmp), "-e", str(tmp / "slow-nginx.log"),
                                   "-c", str(conf), "-g", "daemon off;"], tmp, tree=True, pin=pin)
    srv.port = port
    bench.start(srv)
    run.wait_ready(srv, port)
    return srv, port


def normal_client(port, seconds, interval, conn):
    """Child process: one GET on a new connection every `interval` s; sends back
    (latencies in s, error count)."""
    lat, errors = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            status, _ = run.http_get(port, "/", timeout=5.0)
            if status == 200:
                lat.append(time.monotonic() - t0)
            else:
                errors += 1
        except (OSError, ValueError):
            errors += 1
        left = interval - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)
    conn.send((lat, errors))
    conn.close()


class Slowloris:
    """`n` connections, each sending one more header byte about every second, staggered so that
    about n/100 connections send every 10 ms. One process, one selector."""

    def __init__(self, port, n):
        self.port, self.n = port, n
        self.sel = selectors.DefaultSelector()
        self.socks = []
        self.closed = 0
        self.cursor = 0

    def open(self, deadline):
        head = b"GET /slow HTTP/1.1\r\nHost: bench\r\nX-Slow: "
        for i in range(self.n):
            if time.monotonic() > deadline:
                raise run.BenchError(f"opened only {i} of {self.n} slow connections in time")
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", self.port))
            self.socks.append(s)
            self.sel.register(s, selectors.EVENT_READ)
            if i % 200 == 199:
                time.sleep(0.02)  # do not overrun the listen backlogs
        # The request line and the start of a header: the head never completes.
        for s in self.socks:
            end = time.monotonic() + 2
            while True:
                try:
                    s.send(head)
                    break
                except BlockingIOError:  # connect still in progress
                    if time.monotonic() > end:
                        break
                    time.sleep(0.001)
                except OSError:
                    break

    def step(self):
        """One 10 ms tick: the next n/100 connections send a byte; closes are counted."""
        k = max(1, self.n // 100)
        for _ in range(k):
            s = self.socks[self.cursor]
            self.cursor = (self.cursor + 1) % self.n
            if s.fileno() >= 0:
                try:
                    s.send(b"a")
                except OSError:
                    pass
        for key, _ in self.sel.select(timeout=0.01):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self.sel.unregister(s)
                s.close()
                self.closed += 1

    def held(self):
        return self.n - self.closed

    def close(self):
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        self.sel.close()


def measure(port, seconds, interval, loris=None):
    """Runs the normal client in a child process for `seconds`; drives `loris` meanwhile."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=normal_client, args=(port, seconds, interval, child), daemon=True)
    p.start()
    child.close()
    deadline = time.monotonic() + seconds + 15
    try:
        while not parent.poll(0):
            if time.monotonic() > deadline:
                raise run.BenchError("the normal client did not finish in time")
            if loris:
                loris.step()
            else:
                time.sleep(0.01)
        lat, errors = parent.recv()
    finally:
        p.join(5)
        if p.is_alive():
            p.kill()
            p.join(5)
    return lat, errors


def pct(values, q):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def summary(lat, errors):
    return {"n": len(lat), "errors": errors,
            "p50": pct(lat, 0.50), "p99": pct(lat, 0.99), "max": max(lat) if lat else None}


def ms(v):
    return "-" if v is None else f"{v * 1000:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tandem", default=os.environ.get("TANDEM_BIN")
                    or str(run.REPO / "build-release/src/tandem"))
    ap.add_argument("--targets", default="tandem,haproxy,nginx")
    ap.add_argument("--conns", type=int, default=2000)
    ap.add_argument("--duration", type=float, default=15.0, help="seconds under slowloris")
    ap.add_argument("--baseline", type=float, default=5.0, help="seconds without it")
    ap.add_argument("--interval", type=float, default=0.01, help="normal client pacing (s)")
    ap.add_argument("--header-timeout", type=int, default=30)
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()
    targets = [t for t in args.targets.split(",") if t]
    if args.conns > 8000:
        sys.exit("--conns: at most 8000 (descriptors: 20,000 per process)")
    if args.duration + 5 >= args.header_timeout:
        sys.exit("--duration must end well before --header-timeout (the slow heads must stay)")
    if "tandem" in targets and not os.access(args.tandem, os.X_OK):
        sys.exit(f"no tandem binary at {args.tandem} (make build-release, or --tandem PATH)")
    args.tandem_admin = True
    tmp = Path(tempfile.mkdtemp(prefix="tandem-slowloris-"))
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    bench = run.Bench(args, tmp)
    results = {}
    try:
        backend = bench.start_backend(pin="1")
        for target in targets:
            srv, port = start_proxy(bench, target, backend.port, args.header_timeout, pin="0")
            base = summary(*measure(port, args.baseline, args.interval))
            loris = Slowloris(port, args.conns)
            try:
                c0 = srv.cpu_ticks()
                loris.open(time.monotonic() + 20)
                for _ in range(100):  # a second of trickling before measuring
                    loris.step()
                lat, errors = measure(port, args.duration, args.interval, loris)
                cpu = (srv.cpu_ticks() - c0) / os.sysconf("SC_CLK_TCK")
                res = summary(lat, errors)
                res.update(base={k: base[k] for k in ("p50", "p99", "max", "errors")},
                           held=loris.held(), cpu=cpu, rss_kib=srv.rss_kib())
                results[target] = res
            finally:
                loris.close()
                bench.stop(srv)
            run.log(f"{target}: p50 {ms(res['p50'])} ms, p99 {ms(res['p99'])} ms, "
                    f"max {ms(res['max'])} ms, errors {res['errors']}, held {res['held']}")
    except KeyboardInterrupt:
        run.warn("interrupted")
    finally:
        bench.stop_all()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if not results:
        return 1
    print()
    print(f"Normal client (new connection per GET, every {args.interval * 1000:.0f} ms) while "
          f"{args.conns} slow connections trickle a header byte per second "
          f"(header timeout {args.header_timeout}s; 1 worker, CPU 0):")
    hdr = (f"{'proxy':8} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>6} "
           f"{'held':>6} {'cpu s':>6} {'RSS MiB':>8} | {'base p50':>8} {'base p99':>8} "
           f"{'base max':>8}")
    print(hdr)
    print("-" * len(hdr))
    for t, r in results.items():
        b = r["base"]
        print(f"{t:8} {r['n']:>6} {ms(r['p50']):>8} {ms(r['p99']):>8} {ms(r['max']):>8} "
              f"{r['errors']:>6} {r['held']:>6} {r['cpu']:>6.2f} {r['rss_kib'] / 1024:>8.1f} | "
              f"{ms(b['p50']):>8} {ms(b['p99']):>8} {ms(b['max']):>8}")
    if "tandem" in results:
        for ref in ("haproxy", "nginx"):
            if ref in results and results[ref]["p99"] and results["tandem"]["p99"]:
                print(f"tandem/{ref}: p50 x{results['tandem']['p50'] / results[ref]['p50']:.2f}, "
                      f"p99 x{results['tandem']['p99'] / results[ref]['p99']:.2f} "
                      f"(< 1 = Tandem faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
