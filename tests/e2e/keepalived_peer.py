"""keepalived 2.2 (Debian) as a VRRPv3 peer in a namespace made by netns.Topology, for the interop
tests (tests/e2e/test_keepalived.py) and the failover benchmark (bench/failover.py).

keepalived runs in the foreground (`-n`), logs to its own file (`-l -D`), VRRP only (`-P`), with its
config and pid files in the caller's directory. It runs as two processes: the parent (the one we
spawn) and a VRRP child (its PID in the `-r` file) that owns the state machine. A SIGTERM to the
parent (or a SIGKILL: the child gets SIGTERM when its parent dies) makes the child send a
priority-0 advert and remove its VIPs. Everything is stopped by PID."""
import os
import re
import shutil
import signal
import textwrap
import time

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"

# A tiny HTTP/1.1 server: the namespace that holds the VIP answers on 0.0.0.0:PORT with BODY.
HTTPD = textwrap.dedent("""
    import http.server, sys
    port, body = int(sys.argv[1]), sys.argv[2].encode() + b"\\n"
    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes (keep-alive clients)
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    class S(http.server.ThreadingHTTPServer):
        request_queue_size = 1024
        daemon_threads = True
    S(("0.0.0.0", port), H).serve_forever()
""")

# keepalived's complaints about a received VRRP packet (strings from the 2.2.7 binary): none of
# them may show up when it talks to Tandem.
BAD_PACKET = re.compile(r"invalid|wrong version|mismatch|too short|checksum|not present in "
                        r"MASTER advert|Invalid packet", re.IGNORECASE)
STATE_LINE = re.compile(r"\(VI_1\) Entering (MASTER|BACKUP|FAULT) STATE")


def available():
    """Why keepalived cannot be used here, or None."""
    if not os.path.exists(KEEPALIVED):
        return f"{KEEPALIVED} is missing (Debian keepalived; scripts/install-deps.sh installs it)"
    return None


def config(name, interface, priority, vip, advert_ms=100, vrid=51, garp_count=5,
           garp_repeat_s=5):
    """A keepalived.conf for one VRRPv3 instance VI_1 (multicast, no scripts, no auth).
    `state BACKUP` + preempt (the default): a higher priority takes over, as Tandem does."""
    if advert_ms % 10:
        raise ValueError("VRRPv3 adverts are whole centiseconds")
    return textwrap.dedent(f"""\
        global_defs {{
            router_id {name}
            vrrp_version 3
            vrrp_garp_master_repeat {garp_count}
            vrrp_garp_master_delay {garp_repeat_s}
            vrrp_garp_master_refresh 0
        }}
        vrrp_instance VI_1 {{
            state BACKUP
            interface {interface}
            virtual_router_id {vrid}
            priority {priority}
            advert_int {advert_ms / 1000:.2f}
            garp_master_repeat {garp_count}
            garp_master_delay {garp_repeat_s}
            virtual_ipaddress {{
                {vip}
            }}
        }}
    """)


def _alive(pid):
    """pid is a live (not zombie) keepalived process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"keepalived" in cmd


class Keepalived:
    """One keepalived on host `host` of a netns.Topology; files go to directory `tmp`."""

    def __init__(self, topo, host, tmp, priority, vip, advert_ms=100):
        self.topo, self.host = topo, host
        self.tmp = str(tmp)
        _, _, interface = topo.hosts[host]
        self.conf = os.path.join(self.tmp, f"keepalived-{host}.conf")
        self.log = os.path.join(self.tmp, f"keepalived-{host}.log")
        self.pidfile = os.path.join(self.tmp, f"keepalived-{host}.pid")
        self.vrrp_pidfile = os.path.join(self.tmp, f"keepalived-{host}.vrrp.pid")
        with open(self.conf, "w") as f:
            f.write(config(host, interface, priority, vip, advert_ms))
        self.proc = None
        self.vrrp_pid = None
        self.starts = 0
        self._current_log = None

    def start(self, timeout=5):
        for path in (self.pidfile, self.vrrp_pidfile):
            if os.path.exists(path):
                os.unlink(path)
        # Each start logs to a file of its own: state() reads the running one's.
        self.starts += 1
        self._current_log = f"{self.log}.{self.starts}"
        self.proc = self.topo.spawn(self.host, KEEPALIVED, "-n", "-l", "-D", "-P",
                                    "-f", self.conf, "-p", self.pidfile, "-r", self.vrrp_pidfile,
                                    log=self._current_log)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keepalived on {self.host} exited {self.proc.returncode}:\n"
                                   + self.text())
            if self.state() is not None and self._read_vrrp_pid():
                return self
            if time.monotonic() > deadline:
                raise AssertionError(f"keepalived on {self.host} not up after {timeout}s:\n"
                                     + self.text())
            time.sleep(0.01)

    def _read_vrrp_pid(self):
        try:
            with open(self.vrrp_pidfile) as f:
                self.vrrp_pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return self.vrrp_pid

    def text(self):
        """Every line keepalived logged, over all its starts."""
        out = []
        for i in range(1, self.starts + 1):
            with open(f"{self.log}.{i}", errors="replace") as f:
                out.append(f.read())
        return "".join(out)

    def current_text(self):
        """What the running (or last) keepalived logged."""
        if self._current_log is None:
            return ""
        with open(self._current_log, errors="replace") as f:
            return f.read()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def state(self):
        """'master', 'backup' or 'fault' from the last state line of the running keepalived's
        log; None when it is not running or has not entered a state yet."""
        if not self.running():
            return None
        states = STATE_LINE.findall(self.current_text())
        return states[-1].lower() if states else None

    def transitions(self):
        """State lines of the running keepalived (its init BACKUP included)."""
        return len(STATE_LINE.findall(self.current_text()))

    def bad_packet_lines(self):
        return [line for line in self.text().splitlines() if BAD_PACKET.search(line)]

    def stop(self, sig=signal.SIGTERM, timeout=10):
        """Stops the parent with `sig` and waits; then makes sure the VRRP child is gone too
        (SIGKILL by its PID if it outlived the parent by more than `timeout`)."""
        if self.proc is None:
            return None
        self._read_vrrp_pid()
        rc = self.topo.stop(self.proc, sig, timeout)
        pid = self.vrrp_pid
        if pid:
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        return rc
