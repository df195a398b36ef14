"""Network namespaces for end-to-end HA tests (DESIGN section 7).

A Topology makes a "switch" namespace holding a Linux bridge, and one namespace per host joined
to it by a veth pair; hosts get 198.18.0.x/24 addresses. Nothing is added to the root namespace
(no address, no route): every packet to 198.18.0.0/15 starts inside a namespace made here.
Names carry a random tag; destroy() removes everything, and processes are stopped by PID."""
import json
import os
import secrets
import signal
import subprocess
import time

IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "/sbin/ip"


def run(*args, check=True, timeout=10):
    r = subprocess.run(list(args), capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.returncode} {r.stderr.decode().strip()}")
    return r


def available():
    """Why the tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces); CI runs as root"
    if not os.path.exists(IP):
        return f"{IP} is missing (Debian iproute2)"
    probe = f"tnd-probe-{secrets.token_hex(3)}"
    r = run(IP, "netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.decode().strip()}"
    run(IP, "netns", "del", probe, check=False)
    return None


class Topology:
    def __init__(self):
        self.tag = "t" + secrets.token_hex(3)
        self.switch = f"{self.tag}-sw"
        self.hosts = {}   # name -> (namespace, ip, interface name inside it)
        self.procs = []
        run(IP, "netns", "add", self.switch)
        self.sw("link", "add", "br0", "type", "bridge")
        self.sw("link", "set", "br0", "up")

    def sw(self, *args):
        return run(IP, "-n", self.switch, *args)

    def add_host(self, name, ip):
        ns = f"{self.tag}-{name}"
        run(IP, "netns", "add", ns)
        # veth pair created in the switch namespace; one end moves into the host's namespace.
        host_if, sw_if = f"eth-{name}"[:15], f"sw-{name}"[:15]
        self.sw("link", "add", host_if, "type", "veth", "peer", "name", sw_if)
        self.sw("link", "set", host_if, "netns", ns)
        self.sw("link", "set", sw_if, "master", "br0")
        self.sw("link", "set", sw_if, "up")
        self.hosts[name] = (ns, ip, host_if)
        self.ns(name, "link", "set", "lo", "up")
        self.ns(name, "addr", "add", f"{ip}/24", "dev", host_if)
        self.ns(name, "link", "set", host_if, "up")
        self.hosts[name] = (ns, ip, host_if)
        return ns

    def add_link(self, a, a_ip, b, b_ip, prefix=24):
        """A point-to-point veth between hosts a and b (each made here, without a bridge port,
        when it does not exist yet), e.g. a router namespace between a client subnet and the
        switch. The pair is created inside a's namespace with its peer in b's: nothing touches
        the root namespace. Interfaces are named p-<other host>."""
        for name, ip in ((a, a_ip), (b, b_ip)):
            if name not in self.hosts:
                ns = f"{self.tag}-{name}"
                run(IP, "netns", "add", ns)
                self.hosts[name] = (ns, ip, f"p-{b if name == a else a}"[:15])
                self.ns(name, "link", "set", "lo", "up")
        a_if, b_if = f"p-{b}"[:15], f"p-{a}"[:15]
        self.ns(a, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns",
                self.hosts[b][0])
        for name, ifname, ip in ((a, a_if, a_ip), (b, b_if, b_ip)):
            self.ns(name, "addr", "add", f"{ip}/{prefix}", "dev", ifname)
            self.ns(name, "link", "set", ifname, "up")

    def sysctl(self, name, key, value):
        """Sets a sysctl inside a host's namespace (net.* keys are per namespace)."""
        path = "/proc/sys/" + key.replace(".", "/")
        self.exec(name, "/bin/sh", "-c", f"echo {value} > {path}")

    def ns(self, name, *args, check=True):
        return run(IP, "-n", self.hosts[name][0], *args, check=check)

    def exec(self, name, *cmd, timeout=10, check=True):
        return run(IP, "netns", "exec", self.hosts[name][0], *cmd, timeout=timeout, check=check)

    def spawn(self, name, *cmd, log=None):
        f = open(log, "wb") if log else subprocess.DEVNULL
        p = subprocess.Popen([IP, "netns", "exec", self.hosts[name][0], *cmd],
                             stdin=subprocess.DEVNULL, stdout=f, stderr=f)
        self.procs.append(p)
        return p

    def http_status(self, name, url):
        """The HTTP status of a GET from inside host `name` (0: no answer within 1 s)."""
        code = ("import urllib.request\n"
                "try:\n"
                f"  print(urllib.request.urlopen({url!r}, timeout=1).status)\n"
                "except Exception as e:\n"
                "  print(getattr(e, 'code', 0))\n")
        r = self.exec(name, "/usr/bin/python3", "-c", code, check=False)
        return int(r.stdout.strip() or 0)

    def admin_json(self, name, path, port=9900):
        """GET a Tandem admin API path inside host `name`; None if it does not answer."""
        code = ("import urllib.request\n"
                f"print(urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=1).read()"
                ".decode())")
        r = self.exec(name, "/usr/bin/python3", "-c", code, check=False)
        return json.loads(r.stdout) if r.returncode == 0 else None

    def spawn_piped(self, name, *cmd):
        """Like spawn, with a pipe on stdin (the process runs until the test closes it)."""
        p = subprocess.Popen([IP, "netns", "exec", self.hosts[name][0], *cmd],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def link(self, name, up):
        """Unplugs (or plugs back) a host's cable: its switch-side veth end goes down, so the
        host sees its interface lose carrier."""
        self.sw("link", "set", f"sw-{name}"[:15], "up" if up else "down")

    def partition(self, name, cut):
        """Isolates a host (or ends that): its port leaves the bridge while both ends stay up, so
        nothing crosses and nobody sees a link change."""
        port = f"sw-{name}"[:15]
        if cut:
            self.sw("link", "set", port, "nomaster")
        else:
            self.sw("link", "set", port, "master", "br0")

    def addresses(self, name):
        out = self.ns(name, "-4", "-o", "addr", "show").stdout.decode()
        return [line.split()[3] for line in out.splitlines()]

    def stop(self, p, sig=signal.SIGTERM, timeout=10):
        if p.poll() is None:
            os.kill(p.pid, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
        return p.returncode

    def destroy(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        for ns, _, _ in self.hosts.values():
            run(IP, "netns", "del", ns, check=False)
        run(IP, "netns", "del", self.switch, check=False)


def wait_until(pred, timeout, what, step=0.01):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
