"""The live dashboard (issue 4) in real headless Chromium.

web/tests/dashboard_check.mjs (playwright-core from web/node_modules, driving Debian's
/usr/bin/chromium) opens the dashboard that the tandem binary serves from its embedded assets at
`GET /` of the admin listener. This test runs it against three HTTP backends behind an active HTTP
health check, under light load, and synchronises with it over pipes: the script prints READY once
every server is listed (and the victim shows up); the test then stops the victim backend and writes
KILLED on the script's stdin; the script waits for the victim's row to show "down" and prints
DOWN <ms>. No sleeps are used to synchronise; every wait is bounded.

Also checked by the script: no console errors, page errors, failed requests or HTTP errors; six
charts drawn; the server_down event in the live events list; a wrong token shown as 401; Drain and
Enable with the right token; the charts reach 3 points (one every 2 s) before the full-page
screenshot is written to <build dir>/dashboard.png (build/src/tandem -> build/).
"""
import json
import os
import queue
import shutil
import subprocess
import threading
import time

import pytest

from harness import (Stoppable, backend_cfg, free_port, get, http_listener, load, make_config,
                     server, wait_until)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEB = os.path.join(ROOT, "web")
SCRIPT = os.path.join(WEB, "tests", "dashboard_check.mjs")
CHROMIUM = "/usr/bin/chromium"
PLAYWRIGHT = os.path.join(WEB, "node_modules", "playwright-core", "package.json")
NODE = shutil.which("node") or "/usr/bin/node"
TOKEN = "dashboard-test-token"
DOWN_WITHIN_MS = 3000


def _missing():
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is missing (Debian package chromium)"
    if not os.path.exists(PLAYWRIGHT):
        return ("web/node_modules/playwright-core is missing (building the tandem_dashboard "
                "target runs `npm ci` in web/)")
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def _active_check():
    return {"type": "http", "path": "/healthz", "expect": "200-399", "interval": "200ms",
            "timeout": "150ms", "rise": 1, "fall": 2}


class _Script:
    """The node check as a child process; its stdout lines arrive in a queue (a reader thread)."""

    def __init__(self, args, cwd):
        self.proc = subprocess.Popen([NODE, SCRIPT] + args, cwd=cwd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.out = []
        self.err = []
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.out, True),
                         daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err, False),
                         daemon=True).start()

    def _pump(self, stream, keep, to_queue):
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            keep.append(line)
            if to_queue:
                self.lines.put(line)
        if to_queue:
            self.lines.put(None)  # EOF

    def expect(self, prefix, timeout):
        """The first stdout line starting with `prefix` (and the time it was read); fails on EOF
        or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"no {prefix!r} line from the browser check within {timeout}s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.wait(10)
                self.fail(f"the browser check ended (status {self.proc.returncode}) before "
                          f"printing {prefix!r}")
            if line.startswith(prefix):
                return line, time.monotonic()

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            self.fail(f"the browser check did not end within {timeout}s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()  # by PID: Popen.kill
        self.proc.wait(10)

    def fail(self, why):
        pytest.fail(f"{why}\nstdout:\n  " + "\n  ".join(self.out) +
                    "\nstderr:\n  " + "\n  ".join(self.err[-40:]), pytrace=False)


def test_dashboard_in_chromium(pool, tandem_bin, tmp_path):
    build_dir = os.path.dirname(os.path.dirname(tandem_bin))  # build/src/tandem -> build/
    shot = os.path.join(build_dir, "dashboard.png")
    if os.path.exists(shot):
        os.unlink(shot)

    a, b, c = pool.http("a"), pool.http("b"), pool.http("c")
    (tmp_path / "admin.token").write_text(TOKEN + "\n")
    port, admin_port = free_port(), free_port()
    cfg = make_config([http_listener("web", port, "app")],
                      [backend_cfg("app", [server("a", a.port), server("b", b.port),
                                           server("c", c.port)],
                                   health={"active": _active_check()})])
    cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}", "token_file": "admin.token"}
    t = pool.tandem(cfg)

    # the admin listener is up, and every server has passed a check
    def all_up():
        try:
            r = get(admin_port, "/api/v1/backends", timeout=2)
            servers = json.loads(r.body)["backends"][0]["servers"]
        except Exception:  # not listening yet, or not answering as documented (yet)
            return False
        return r.status == 200 and [s["state"] for s in servers] == ["up"] * 3
    wait_until(all_up, timeout=10, step=0.05, what="the admin API with every server up")
    index = get(admin_port, "/")
    assert index.status == 200 and b"<!doctype html>" in index.body.lower(), index

    for i in range(30):
        assert get(port, f"/warmup/{i}").status == 200
    lg = load(pool, port, threads=2, think=0.02, max_seconds=60)

    script = _Script(["--url", f"http://127.0.0.1:{admin_port}/",
                      "--servers", "app/a,app/b,app/c", "--down", "app/b",
                      "--down-within-ms", str(DOWN_WITHIN_MS),
                      "--token", TOKEN, "--act-on", "app/c", "--min-points", "3",
                      "--screenshot", shot], cwd=WEB)
    pool.items.append(Stoppable(script.stop))

    script.expect("READY", timeout=60)
    b.stop()  # connection refused from now on: the health check sees it at once
    killed_at = time.monotonic()
    script.send("KILLED")
    line, seen_at = script.expect("DOWN ", timeout=DOWN_WITHIN_MS / 1000 + 10)
    page_ms = int(line.split()[1])
    our_ms = (seen_at - killed_at) * 1000
    rc = script.wait(60)
    lg.stop(2)
    print(f"\ndashboard: app/b shown down {page_ms} ms after the kill (the script's clock; "
          f"{our_ms:.0f} ms from the test's side); screenshot {shot}")
    if rc != 0:
        script.fail(f"the browser check failed (status {rc})")
    assert our_ms <= DOWN_WITHIN_MS, f"app/b showed as down only {our_ms:.0f} ms after the kill"
    assert "OK" in script.out, script.out
    with open(shot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{shot} is not a PNG"
    assert t.alive()
