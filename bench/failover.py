#!/usr/bin/python3
"""Failover benchmark: a Tandem pair vs a keepalived pair, client-visible gap. See bench/README.md.

Each run builds its own topology of network namespaces (DESIGN section 7, tests/e2e/netns.py): a
switch namespace with a bridge; client .2, lb1 .11 (priority 150, the master), lb2 .12
(priority 100), backend .21; VIP 198.18.0.100. Nothing is added to the root namespace. A probe in
the client's namespace opens a new connection to the VIP every 10 ms (open loop: an attempt that
hangs does not delay the next one; 50 ms connect timeout, 300 ms for the answer) and records each
attempt. The gap is the time from the first failed attempt to the next successful one.

  tandem:     Tandem on lb1 and lb2 (VRRPv3, listener 0.0.0.0:8080 -> backend .21:8000)
  keepalived: keepalived 2.2 on lb1 and lb2 (vrrp_version 3), each next to a small HTTP server on
              0.0.0.0:8080 (the same server code as the backend)

Cases (both pairs, same runs interleaved):
  death       the master's host dies: its port leaves the bridge (netns.Topology.partition).
              Nothing is said on the wire, the VIP stays on the dead host; the backup takes over
              after master-down = 3 x advert + skew. (kill -9 is not the same for both: killing
              keepalived's parent makes its VRRP child stop gracefully, with a priority-0 advert.)
  stop        graceful stop of the master's VRRP speaker (SIGTERM): priority-0 advert, the
              backup takes over after its skew time.
  death-20ms  death with 20 ms adverts (target for Tandem: < 100 ms).

Root only (network namespaces). Standard library only; run with Debian's /usr/bin/python3.
Every wait is bounded; Ctrl-C, SIGTERM and errors stop every process (by PID) and remove every
namespace it made."""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import keepalived_peer  # noqa: E402
import netns  # noqa: E402
from lb_config import VIP, lb_config  # noqa: E402

PY = "/usr/bin/python3"
WRK = "/usr/bin/wrk"
IMPLS = ["tandem", "keepalived"]
CASES = {
    # name: (how, advert ms or None for --advert-ms)
    "death": ("partition", None),
    "stop": ("sigterm", None),
    "death-20ms": ("partition", 20),
}
HIGH, LOW = 150, 100

# Open-loop probe: one new connection to VIP:8080 every 10 ms for at most `seconds` (or until
# SIGTERM); one JSON line per attempt, written when it ends: start time (CLOCK_MONOTONIC, the same
# clock as the benchmark's), ok, duration.
PROBE = textwrap.dedent("""
    import errno, json, selectors, signal, socket, sys, time
    out, seconds, host = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    PERIOD, CONNECT_TIMEOUT, ANSWER_TIMEOUT = 0.01, 0.05, 0.3
    REQ = b"GET / HTTP/1.1\\r\\nHost: vip\\r\\nConnection: close\\r\\n\\r\\n"
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
    sel = selectors.DefaultSelector()
    live = {}  # fd -> [socket, start, connected, received]
    f = open(out, "w", buffering=1)
    def finish(fd, ok):
        s, t0, _, _ = live.pop(fd)
        sel.unregister(s)
        s.close()
        f.write(json.dumps({"t": t0, "ok": ok,
                            "ms": round((time.monotonic() - t0) * 1000, 2)}) + "\\n")
    start = time.monotonic()
    end, next_t = start + seconds, start
    while live or (time.monotonic() < end and not stopping):
        now = time.monotonic()
        if now >= next_t and now < end and not stopping:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((host, 8080))
            live[s.fileno()] = [s, now, False, b""]
            sel.register(s, selectors.EVENT_WRITE)
            if err not in (0, errno.EINPROGRESS):
                finish(s.fileno(), False)
            next_t += PERIOD
            if next_t < now:
                next_t = now + PERIOD  # no burst after a stall
        now = time.monotonic()
        for fd, (s, t0, connected, _) in list(live.items()):
            if now > t0 + (ANSWER_TIMEOUT if connected else CONNECT_TIMEOUT):
                finish(fd, False)
        wake = [t0 + (ANSWER_TIMEOUT if c else CONNECT_TIMEOUT) for _, t0, c, _ in live.values()]
        if not stopping and now < end:
            wake.append(next_t)
        timeout = max(0.0, min(wake) - time.monotonic()) if wake else 0.0
        for key, _ in sel.select(timeout):
            s = key.fileobj
            fd = s.fileno()
            entry = live.get(fd)
            if entry is None:
                continue
            try:
                if not entry[2]:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        finish(fd, False)
                        continue
                    entry[2] = True
                    s.send(REQ)
                    sel.modify(s, selectors.EVENT_READ)
                else:
                    data = s.recv(256)
                    entry[3] += data
                    if len(entry[3]) >= 12 or not data:
                        finish(fd, entry[3].startswith(b"HTTP/1.1 200"))
            except OSError:
                finish(fd, False)
""")

# Load for --soak when wrk is missing: keep-alive GETs as fast as one process can.
HAMMER = textwrap.dedent("""
    import http.client, sys, time
    end = time.monotonic() + float(sys.argv[1])
    ok = bad = 0
    c = None
    while time.monotonic() < end:
        try:
            if c is None:
                c = http.client.HTTPConnection(sys.argv[2], 8080, timeout=1)
            c.request("GET", "/")
            r = c.getresponse()
            r.read()
            ok += r.status == 200
        except Exception:
            bad += 1
            c = None
    print(ok, bad)
""")


class BenchError(Exception):
    pass


class TimeLimit(BaseException):
    """The whole run's time limit: not caught by a single run's error handling."""


def log(msg=""):
    print(msg, flush=True)


class Pair:
    """Two VRRP speakers on lb1 (HIGH) and lb2 (LOW) of a fresh topology, with everything they
    need; lb1 is the master once start() returns."""

    def __init__(self, impl, advert_ms, tmp, tandem_bin):
        self.impl, self.advert_ms, self.bin = impl, advert_ms, tandem_bin
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{impl}-", dir=tmp))
        self.topo = netns.Topology()
        self.procs = {}  # Tandem processes by host
        self.kad = {}    # Keepalived by host
        self.closed = False

    # --- set-up -------------------------------------------------------------------------------
    def start(self, timeout=10):
        topo = self.topo
        topo.add_host("client", "198.18.0.2")
        topo.add_host("lb1", "198.18.0.11")
        topo.add_host("lb2", "198.18.0.12")
        (self.tmp / "httpd.py").write_text(keepalived_peer.HTTPD)
        (self.tmp / "probe.py").write_text(PROBE)
        (self.tmp / "hammer.py").write_text(HAMMER)
        if self.impl == "tandem":
            topo.add_host("be", "198.18.0.21")
            topo.spawn("be", PY, str(self.tmp / "httpd.py"), "8000", "backend")
            for host, prio in (("lb1", HIGH), ("lb2", LOW)):
                conf = self.tmp / f"{host}.yaml"
                conf.write_text(lb_config(host, prio, interval=f"{self.advert_ms}ms"))
                self.procs[host] = topo.spawn(host, self.bin, "run", "-c", str(conf),
                                              log=str(self.tmp / f"{host}.log"))
        else:
            for host, prio in (("lb1", HIGH), ("lb2", LOW)):
                topo.spawn(host, PY, str(self.tmp / "httpd.py"), "8080", host)
                self.kad[host] = keepalived_peer.Keepalived(topo, host, self.tmp, prio,
                                                            f"{VIP}/24", self.advert_ms)
            for k in self.kad.values():
                k.start()

        def settled():
            for host, p in self.procs.items():
                if p.poll() is not None:
                    raise BenchError(f"tandem on {host} exited {p.returncode}: "
                                     + (self.tmp / f"{host}.log").read_text()[-500:])
            return self.states() == ("master", "backup")
        netns.wait_until(settled, timeout, f"{self.impl}: lb1 master, lb2 backup")
        netns.wait_until(lambda: self.holders() == ["lb1"], 3, f"{self.impl}: lb1 holds the VIP")
        netns.wait_until(lambda: self.vip_answers(), 3, f"{self.impl}: the VIP answers")

    # --- observation --------------------------------------------------------------------------
    def _admin(self, host, path):
        p = self.procs.get(host)
        if p is None or p.poll() is not None:
            return None
        code = ("import urllib.request\n"
                f"print(urllib.request.urlopen('http://127.0.0.1:9900{path}', timeout=1)"
                ".read().decode())")
        r = self.topo.exec(host, PY, "-c", code, check=False)
        try:
            return json.loads(r.stdout) if r.returncode == 0 else None
        except ValueError:
            return None

    def state(self, host):
        if self.impl == "tandem":
            c = self._admin(host, "/api/v1/cluster")
            return c and c["vrrp"]["state"]
        return self.kad[host].state()

    def states(self):
        return self.state("lb1"), self.state("lb2")

    def transitions(self, host):
        if self.impl == "tandem":
            c = self._admin(host, "/api/v1/cluster")
            return c and c["vrrp"]["transitions"]
        return self.kad[host].transitions()

    def holders(self):
        return [h for h in ("lb1", "lb2") if f"{VIP}/24" in self.topo.addresses(h)]

    def vip_answers(self):
        code = ("import urllib.request\n"
                f"print(urllib.request.urlopen('http://{VIP}:8080/', timeout=1).status)")
        r = self.topo.exec("client", PY, "-c", code, check=False)
        return r.returncode == 0 and r.stdout.strip() == b"200"

    # --- faults -------------------------------------------------------------------------------
    def kill_host(self, host):
        self.topo.partition(host, True)

    def sigterm(self, host):
        """SIGTERM to the VRRP speaker, without waiting for it to exit."""
        pid = self.procs[host].pid if self.impl == "tandem" else self.kad[host].proc.pid
        os.kill(pid, signal.SIGTERM)

    # --- probe --------------------------------------------------------------------------------
    def probe(self, seconds):
        out = self.tmp / f"probe-{time.monotonic_ns()}.jsonl"
        p = self.topo.spawn("client", PY, str(self.tmp / "probe.py"), str(out), str(seconds), VIP)
        return p, out

    # --- tear-down ----------------------------------------------------------------------------
    def close(self):
        if self.closed:
            return
        try:
            for p in self.procs.values():  # Tandem: SIGTERM all, then wait (each bounded)
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGTERM)
            for k in self.kad.values():
                if k.running():
                    os.kill(k.proc.pid, signal.SIGTERM)
            for p in self.procs.values():
                self.topo.stop(p, signal.SIGTERM, timeout=5)
            for k in self.kad.values():
                k.stop(signal.SIGTERM, timeout=5)  # also reaps its VRRP child by PID
        finally:
            self.topo.destroy()  # SIGKILL by PID for whatever is left, then the namespaces
        self.closed = True


LIVE = []  # open Pairs, closed on the way out whatever happens


def read_rows(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass  # a line being written
    except OSError:
        pass
    rows.sort(key=lambda r: r["t"])
    return rows


def analyse(rows, t_fault):
    """{gap, back, lost, noise}: gap (s) from the first failed attempt (started at most 50 ms
    before the fault: an attempt in flight may fail with it) to the next successful one, started
    at `back`; `lost` failed attempts in between; `noise` failures before that window. gap and
    back are None while the VIP has not answered again."""
    noise = sum(not r["ok"] for r in rows if r["t"] < t_fault - 0.05)
    late = [r for r in rows if r["t"] >= t_fault - 0.05]
    first_fail = next((r for r in late if not r["ok"]), None)
    if first_fail is None:
        return {"gap": 0.0, "back": t_fault, "lost": 0, "noise": noise}
    back = next((r for r in late if r["ok"] and r["t"] > first_fail["t"]), None)
    if back is None:
        return {"gap": None, "back": None, "lost": sum(not r["ok"] for r in late),
                "noise": noise}
    lost = sum(not r["ok"] for r in late if r["t"] < back["t"])
    return {"gap": back["t"] - first_fail["t"], "back": back["t"], "lost": lost, "noise": noise}


def one_run(args, impl, case):
    how, advert = CASES[case]
    advert_ms = advert or args.advert_ms
    pair = Pair(impl, advert_ms, args.tmp, args.tandem)
    LIVE.append(pair)
    try:
        pair.start()
        # Bound for everything after the fault: master-down at this advert interval, plus slack.
        bound = 3.0 + 4 * advert_ms / 1000
        probe, out = pair.probe(bound + 3.0)
        netns.wait_until(lambda: sum(r["ok"] for r in read_rows(out)) >= 30, 3,
                         "the probe's steady state (30 answered requests)")
        # The fault lands at a random phase of the advert schedule: without this, the instant
        # is tied to when the pair started (keepalived's adverts start on its MASTER entry), the
        # time since the last advert is nearly constant, and the gaps compare phases, not
        # implementations.
        time.sleep(random.uniform(0, advert_ms / 1000))
        t_fault = time.monotonic()
        if how == "partition":
            pair.kill_host("lb1")
        else:
            pair.sigterm("lb1")
        netns.wait_until(lambda: pair.state("lb2") == "master", bound, "lb2 master")

        def recovered():
            rows = read_rows(out)
            a = analyse(rows, t_fault)
            # 30 more attempts after the first answer, so that a relapse would show.
            return a["back"] is not None and sum(r["t"] > a["back"] for r in rows) >= 30
        netns.wait_until(recovered, bound, "the VIP answering again")
        os.kill(probe.pid, signal.SIGTERM)
        probe.wait(5)
        a = analyse(read_rows(out), t_fault)
        if a["gap"] is None:
            raise BenchError("the VIP never answered again")
        return {"gap_ms": round(a["gap"] * 1000, 1), "lost": a["lost"], "noise": a["noise"]}
    finally:
        pair.close()
        LIVE.remove(pair)


def soak(args, impl, seconds):
    """Full load on the VIP for `seconds`, probe running; VRRP transitions on both nodes."""
    pair = Pair(impl, args.advert_ms, args.tmp, args.tandem)
    LIVE.append(pair)
    try:
        pair.start()
        before = {h: pair.transitions(h) for h in ("lb1", "lb2")}
        probe, out = pair.probe(seconds)
        loaders = []
        if os.path.exists(WRK):
            loaders.append(pair.topo.spawn("client", WRK, "-t2", "-c32", f"-d{int(seconds)}s",
                                           "--timeout", "2s", f"http://{VIP}:8080/",
                                           log=str(pair.tmp / "wrk.log")))
        else:
            for i in range(4):
                loaders.append(pair.topo.spawn("client", PY, str(pair.tmp / "hammer.py"),
                                               str(seconds), VIP,
                                               log=str(pair.tmp / f"hammer{i}.log")))
        deadline = time.monotonic() + seconds + 30
        for p in [probe] + loaders:
            p.wait(max(1, deadline - time.monotonic()))
        after = {h: pair.transitions(h) for h in ("lb1", "lb2")}
        rows = read_rows(out)
        load = " ".join((pair.tmp / ("wrk.log" if os.path.exists(WRK) else "hammer0.log"))
                        .read_text().split())
        rps = load.split("Requests/sec: ")[1].split()[0] if "Requests/sec: " in load else "?"
        return {"load_rps": rps, "transitions": {h: after[h] - before[h] for h in before},
                "states": list(pair.states()), "holders": pair.holders(),
                "probe_requests": len(rows), "probe_failed": sum(not r["ok"] for r in rows),
                "load": load[-300:]}
    finally:
        pair.close()
        LIVE.remove(pair)


def fmt_ms(v):
    return f"{v:.0f}" if v is not None else "-"


def summarise(results, impls, cases):
    table = {}
    for case in cases:
        for impl in impls:
            gaps = [r["gap_ms"] for r in results[case][impl]]
            table.setdefault(case, {})[impl] = (
                {"median": statistics.median(gaps), "min": min(gaps), "max": max(gaps),
                 "runs": len(gaps)} if gaps else None)
    return table


def print_table(table, impls, cases, advert_ms):
    log()
    log("Client-visible gap in ms (first failed to first successful request), median / min / max")
    head = f"{'case':<12} {'advert':>7}  " + "  ".join(f"{i:>22}" for i in impls)
    if set(impls) == set(IMPLS):
        head += f"  {'tandem/keepalived':>18}"
    log(head)
    for case in cases:
        adv = CASES[case][1] or advert_ms
        cells = []
        for impl in impls:
            s = table[case][impl]
            cells.append(f"{fmt_ms(s['median']):>8} / {fmt_ms(s['min']):>4} / {fmt_ms(s['max']):>4}"
                         if s else f"{'-':>22}")
        line = f"{case:<12} {adv:>5}ms  " + "  ".join(f"{c:>22}" for c in cells)
        t, k = table[case].get("tandem"), table[case].get("keepalived")
        if t and k:
            line += f"  {t['median'] / k['median']:>18.2f}" if k["median"] else f"  {'-':>18}"
        log(line)
    log()
    log("Expected from RFC 5798 (backup priority 100, skew = (256-100)/256 x advert), give or take")
    log("the probe's 10 ms: stop = skew; death = master-down (3 x advert + skew) less the time")
    log("since the last advert when the host died, so between 2 x advert + skew and master-down:")
    for case in cases:
        adv = CASES[case][1] or advert_ms
        skew = (256 - LOW) / 256 * adv
        exp = f"{skew:.0f}" if CASES[case][0] == "sigterm" else \
            f"{2 * adv + skew:.0f}..{3 * adv + skew:.0f}"
        log(f"  {case:<12} {exp} ms")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See bench/README.md.")
    ap.add_argument("--runs", type=int, default=5, help="runs per case and pair (default 5)")
    ap.add_argument("--advert-ms", type=int, default=100,
                    help="advert interval for death/stop, whole centiseconds (default 100)")
    ap.add_argument("--cases", default=",".join(CASES),
                    help=f"comma-separated, of {','.join(CASES)} (default all)")
    ap.add_argument("--targets", default=",".join(IMPLS), help="tandem,keepalived (default both)")
    ap.add_argument("--soak", type=float, default=0, metavar="SECONDS",
                    help="also run SECONDS of full load on the VIP per pair and count VRRP "
                         "transitions (expect 0); e.g. 300")
    ap.add_argument("--tandem", default=os.environ.get("TANDEM_BIN") or next(
        (str(p) for p in (REPO / "build-release/src/tandem", REPO / "build-dev/src/tandem")
         if p.exists()), str(REPO / "build-release/src/tandem")),
                    help="Tandem binary (default $TANDEM_BIN, build-release/, build-dev/)")
    ap.add_argument("--json", help="also write the results as JSON to this path")
    ap.add_argument("--time-limit", type=float, default=0,
                    help="seconds for the whole run (default: 60 per run plus the soak)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep configs, logs and probe data")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run")
    args = ap.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    args.targets = [t for t in args.targets.split(",") if t]
    bad = [c for c in args.cases if c not in CASES] + [t for t in args.targets if t not in IMPLS]
    if bad:
        ap.error(f"unknown case/target: {', '.join(bad)}")
    if args.runs < 1 or args.advert_ms < 10 or args.advert_ms % 10 or args.advert_ms > 40950:
        ap.error("--runs >= 1; --advert-ms a multiple of 10 in 10..40950")
    if not args.time_limit:
        args.time_limit = 60 * args.runs * len(args.cases) * len(args.targets) \
            + 2 * args.soak * len(args.targets) + 120
    return args


def check(args):
    if os.geteuid() != 0:
        raise BenchError("bench/failover.py must run as root: it creates network namespaces, "
                         "a bridge and veth pairs (sudo /usr/bin/python3 bench/failover.py)")
    why = netns.available()
    if why:
        raise BenchError(why)
    if "keepalived" in args.targets:
        why = keepalived_peer.available()
        if why:
            raise BenchError(why)
    if "tandem" in args.targets:
        if not os.access(args.tandem, os.X_OK):
            raise BenchError(f"no Tandem binary at {args.tandem} (--tandem or TANDEM_BIN)")
        # A binary without VRRP (an old build) would fail every run the same way: say it now.
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write(lb_config("lb1", HIGH, interval=f"{args.advert_ms}ms"))
            f.flush()
            r = subprocess.run([args.tandem, "check", "-c", f.name], capture_output=True,
                               timeout=10, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise BenchError(f"{args.tandem} rejects the VRRP config (an old build? --tandem or "
                             f"TANDEM_BIN): {(r.stdout + r.stderr).decode().strip()}")


def version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=5, stdin=subprocess.DEVNULL)
        return (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "?"


def main(argv):
    args = parse_args(argv)
    try:
        check(args)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    # The whole run is bounded: SIGALRM interrupts whatever is waiting, then cleanup runs.
    def on_alarm(_signum, _frame):
        raise TimeLimit(f"time limit of {args.time_limit:.0f}s reached (--time-limit)")
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(args.time_limit))

    args.tmp = tempfile.mkdtemp(prefix="tandem-failover-")
    log("Tandem failover benchmark (bench/failover.py)")
    log(f"  host: {platform.node()}, {os.cpu_count()} CPUs, kernel {platform.release()}, "
        f"load {os.getloadavg()[0]:.2f}")
    if "tandem" in args.targets:
        log(f"  tandem: {version([args.tandem, 'version'])}  [{args.tandem}]")
    if "keepalived" in args.targets:
        log(f"  keepalived: {version([keepalived_peer.KEEPALIVED, '-v'])}")
    log(f"  runs: {args.runs}; cases: {', '.join(args.cases)}; advert {args.advert_ms} ms; "
        f"death = the master's bridge port cut; probe: a new connection every 10 ms")
    results = {c: {i: [] for i in args.targets} for c in args.cases}
    status = 0
    out = {"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "advert_ms": args.advert_ms,
           "runs": args.runs, "results": results}
    try:
        for k in range(args.runs):
            for case in args.cases:
                order = args.targets[k % len(args.targets):] + args.targets[:k % len(args.targets)]
                for impl in order:
                    try:
                        r = one_run(args, impl, case)
                    except (AssertionError, BenchError, RuntimeError) as e:
                        status = 1
                        log(f"  run {k + 1} {case} {impl}: FAILED: {e}")
                        continue
                    results[case][impl].append(r)
                    if args.verbose or r["noise"]:
                        log(f"  run {k + 1} {case:<11} {impl:<10} gap {r['gap_ms']:6.1f} ms, "
                            f"{r['lost']} failed requests"
                            + (f", {r['noise']} failures before the fault" if r["noise"] else ""))
            if not args.verbose:
                log(f"  round {k + 1}/{args.runs} done")
        table = summarise(results, args.targets, args.cases)
        out["summary"] = table
        print_table(table, args.targets, args.cases, args.advert_ms)
        if args.soak:
            log(f"\nSoak: {args.soak:.0f} s of full load on the VIP "
                f"({'wrk -t2 -c32' if os.path.exists(WRK) else '4 keep-alive clients'}) "
                f"plus the probe; VRRP transitions on both nodes (expect 0)")
            out["soak"] = {}
            for impl in args.targets:
                s = soak(args, impl, args.soak)
                out["soak"][impl] = s
                bad = any(s["transitions"].values()) or s["holders"] != ["lb1"]
                status |= 1 if bad else 0
                log(f"  {impl:<10} transitions lb1 {s['transitions']['lb1']}, lb2 "
                    f"{s['transitions']['lb2']}; states {s['states']}, VIP on {s['holders']}; "
                    f"probe {s['probe_failed']}/{s['probe_requests']} failed; "
                    f"load {s['load_rps']} req/s"
                    + ("  <-- FALSE FAILOVER" if bad else ""))
                if args.verbose:
                    log(f"             load: {s['load']}")
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything we started", file=sys.stderr)
        status = 130
    except (BenchError, TimeLimit) as e:
        print(f"error: {e}", file=sys.stderr)
        status = 1
    finally:
        signal.alarm(0)
        for pair in list(LIVE):
            try:
                pair.close()
            except Exception as e:  # keep going: every other pair must go too
                print(f"cleanup: {e}", file=sys.stderr)
        if args.keep_tmp:
            log(f"temp dir kept: {args.tmp}")
        else:
            shutil.rmtree(args.tmp, ignore_errors=True)
    if args.json and status != 130:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        log(f"results written to {args.json}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
