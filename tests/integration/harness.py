"""Harness for Tandem's black-box integration tests (stdlib only).

- free_port(): a currently free TCP port on 127.0.0.1 (bind port 0, release).
- Tandem: writes a config, runs `tandem run -c FILE`, waits until every listener accepts TCP
  connections, captures stderr to a file, and always stops the process by PID.
- HttpBackend: a raw-socket HTTP/1.1 keep-alive server that records every request head and every
  byte it receives, counts accepted connections, and serves the endpoints the tests need.
- TcpEchoBackend: echo with half-close behaviour; BlackholeListener: a port whose SYNs are dropped.
- A raw HTTP client (Client, read_response) and minimal WebSocket framing.
"""
import base64
import hashlib
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time
import zlib
from urllib.parse import parse_qs, urlsplit

LOCAL = "127.0.0.1"
TIMEOUT = 5.0  # default socket timeout for test clients
PATTERN = bytes(range(256)) * 4096  # 1 MiB; generated bodies repeat it
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_handed_out = set()
_port_lock = threading.Lock()


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (never the same one twice per run)."""
    with _port_lock:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((LOCAL, 0))
                port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no free port")


def pattern_chunks(n, chunk=len(PATTERN)):
    """Yields n bytes of the repeating PATTERN in pieces of at most `chunk` bytes."""
    view = memoryview(PATTERN)
    sent = 0
    while sent < n:
        off = sent % 256
        k = min(chunk, n - sent, len(PATTERN) - off)
        yield view[off:off + k]
        sent += k


def pattern_crc(n):
    crc = 0
    for piece in pattern_chunks(n):
        crc = zlib.crc32(piece, crc)
    return crc


def wait_until(predicate, timeout=5.0, step=0.01, what="condition"):
    """Polls predicate() until true; raises AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


# --------------------------------------------------------------------------------------------
# Config rendering (block-style YAML, like the documented examples)

def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    import re
    if s and re.fullmatch(r"[A-Za-z0-9_./\-]+(:[A-Za-z0-9_./\-]+)*", s) and s not in (
            "true", "false", "null", "yes", "no", "on", "off"):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_yaml(obj, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, list):
                lines.append(f"{pad}{k}: []")
            elif isinstance(v, dict):
                lines.append(f"{pad}{k}: {{}}")
            else:
                lines.append(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict) and item:
                sub = to_yaml(item, indent + 2).split("\n")
                sub[0] = pad + "- " + sub[0][indent + 2:]
                lines.extend(sub)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(pad + _scalar(obj))
    return "\n".join(lines)


def server(name, port, **extra):
    d = {"name": name, "address": f"{LOCAL}:{port}"}
    d.update(extra)
    return d


def http_listener(name, port, backend, **limits):
    d = {"name": name, "listen": f"127.0.0.1:{port}", "mode": "http", "backend": backend}
    if limits:
        d["limits"] = limits
    return d


def tcp_listener(name, port, backend):
    return {"name": name, "listen": f"127.0.0.1:{port}", "mode": "tcp", "backend": backend}


def backend_cfg(name, servers, balance="round_robin", **extra):
    d = {"name": name, "balance": balance}
    d.update({k: v for k, v in extra.items() if k != "limits"})
    d["servers"] = servers
    if "limits" in extra:
        d["limits"] = extra["limits"]
    return d


def make_config(listeners, backends, workers=2, drain_timeout="5s", node="t1", admin=None):
    """A config dict. The admin server gets a free port (the default 9900 would collide between
    tests); pass admin={...} to add keys such as token_file."""
    a = {"listen": f"127.0.0.1:{free_port()}"}
    a.update(admin or {})
    return {"node": {"id": node}, "workers": workers, "drain_timeout": drain_timeout,
            "admin": a, "listeners": listeners, "backends": backends}


# --------------------------------------------------------------------------------------------
# The Tandem process

class TandemError(AssertionError):
    pass


class Tandem:
    """One `tandem run` process. Use start()/stop(); stop() is idempotent and kills by PID."""

    instances = []  # every instance ever started in this pytest process (for failure reports)

    def __init__(self, binary, workdir, config, name="tandem"):
        self.binary = binary
        self.workdir = str(workdir)
        self.name = name
        self.config = config
        self.config_path = os.path.join(self.workdir, f"{name}.yaml")
        self.stderr_path = os.path.join(self.workdir, f"{name}.stderr")
        self.proc = None
        self.returncode = None
        self.expected_exit = False  # set by tests that stop it themselves
        self._stderr_file = None

    @property
    def pid(self):
        return self.proc.pid

    def listener_ports(self):
        """Every port the process must accept on before it counts as started (admin included)."""
        if isinstance(self.config, str):
            return []
        ports = [int(l["listen"].rsplit(":", 1)[1]) for l in self.config["listeners"]]
        if self.admin_port:
            ports.append(self.admin_port)
        return ports

    @property
    def admin_port(self):
        if isinstance(self.config, str):
            return None
        a = self.config.get("admin") or {}
        if a.get("enabled") is False or "listen" not in a:
            return None
        return int(a["listen"].rsplit(":", 1)[1])

    def admin(self, method, path, body=None, token=None, timeout=5.0):
        """One admin API call; returns (status, headers dict, body bytes)."""
        import http.client
        conn = http.client.HTTPConnection(LOCAL, self.admin_port, timeout=timeout)
        try:
            headers = {}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            if body is not None and not isinstance(body, (bytes, str)):
                import json as _json
                body = _json.dumps(body)
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def admin_json(self, path):
        import json as _json
        status, _, body = self.admin("GET", path)
        if status != 200:
            raise AssertionError(f"GET {path}: {status} {body[:200]!r}")
        return _json.loads(body)

    def port(self, listener_name=None):
        for l in self.config["listeners"]:
            if listener_name is None or l["name"] == listener_name:
                return int(l["listen"].rsplit(":", 1)[1])
        raise KeyError(listener_name)

    def write_config(self):
        text = self.config if isinstance(self.config, str) else to_yaml(self.config) + "\n"
        with open(self.config_path, "w") as f:
            f.write(text)
        return self.config_path

    def start(self, ready_timeout=10.0):
        self.write_config()
        self._stderr_file = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([self.binary, "run", "-c", self.config_path],
                                     stdin=subprocess.DEVNULL, stdout=self._stderr_file,
                                     stderr=self._stderr_file, cwd=self.workdir)
        Tandem.instances.append(self)
        deadline = time.monotonic() + ready_timeout
        pending = list(self.listener_ports())
        while pending:
            rc = self.proc.poll()
            if rc is not None:
                self.stop()
                raise TandemError(f"{self.name} exited with status {rc} before its listeners "
                                  f"{pending} were ready; stderr:\n{self.stderr_tail()}")
            try:
                with socket.create_connection((LOCAL, pending[0]), timeout=0.5):
                    pass
                pending.pop(0)
                continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TandemError(f"{self.name}: listeners {pending} not accepting after "
                                  f"{ready_timeout}s; stderr:\n{self.stderr_tail()}")
            time.sleep(0.01)
        return self

    def ensure_running(self):
        """Restarts the process (same config, same ports) if it has died; returns self."""
        if self.alive():
            return self
        self.stop()
        self.restarts = getattr(self, "restarts", 0) + 1
        self.stderr_path = os.path.join(self.workdir, f"{self.name}.{self.restarts}.stderr")
        self.expected_exit = False
        return self.start()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.expected_exit = True
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit status or None if still running."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, timeout=5.0):
        """SIGTERM, wait, then SIGKILL. Returns the exit status (negative = killed by signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.returncode = self.proc.returncode
        if self._stderr_file:
            self._stderr_file.close()
            self._stderr_file = None
        return self.returncode

    def stderr_text(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stderr_tail(self, lines=60):
        return "\n".join(self.stderr_text().splitlines()[-lines:])

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def check_alive(tandem, http_port=None, tcp_port=None, rounds=4):
    """Liveness probe after a test: a few fresh connections through the proxy (so every worker
    likely sees one; some crashes only show on the next event), then the process must still run."""
    problems = []
    for i in range(rounds):
        try:
            if http_port:
                with socket.create_connection((LOCAL, http_port), timeout=3) as s:
                    s.sendall(b"GET /__alive HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
                    got = read_raw_until_close(s, timeout=3)
                    if not got.startswith(b"HTTP/1.1 200 "):
                        problems.append(f"probe {i}: {got[:60]!r}")
            if tcp_port:
                with socket.create_connection((LOCAL, tcp_port), timeout=3) as s:
                    s.sendall(b"ping")
                    s.shutdown(socket.SHUT_WR)
                    got = read_raw_until_close(s, timeout=3)
                    if not got.startswith(b"ping"):
                        problems.append(f"tcp probe {i}: {got[:60]!r}")
        except OSError as ex:
            problems.append(f"probe {i}: {ex!r}")
    if not tandem.alive():
        tandem.wait(1)
        raise AssertionError(f"tandem died during or right after the test (status "
                             f"{tandem.proc.returncode}); liveness probes: {problems}; stderr:\n"
                             f"{tandem.stderr_tail(20)}")
    if problems:
        raise AssertionError(f"tandem stopped serving after the test: {problems}")


def run_cli(binary, *args, timeout=10):
    return subprocess.run([binary, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout)


class RssMonitor:
    """Samples a process's VmRSS every 10 ms in a thread; .peak_kib is the maximum seen."""

    def __init__(self, pid):
        self.pid = pid
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        path = f"/proc/{self.pid}/status"
        while not self._stop.is_set():
            try:
                with open(path) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                            self.samples += 1
                            break
            except OSError:
                return
            self._stop.wait(0.01)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(2)


# --------------------------------------------------------------------------------------------
# Byte-level reading and HTTP message parsing (lenient: the harness must see whatever arrives)

class ProtocolError(Exception):
    pass


class Reader:
    """Buffered reader over a socket. `log`, if given, is a callable receiving every chunk read."""

    def __init__(self, sock, log=None):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.log = log

    def _fill(self, n=262144):
        if self.eof:
            return False
        try:
            data = self.sock.recv(n)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        if self.log:
            self.log(data)
        self.buf += data
        return True

    def read_until(self, delim, limit=1 << 20):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ProtocolError(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self._fill():
                raise EOFError(f"EOF before {delim!r} (have {bytes(self.buf[:200])!r})")

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill(max(65536, min(n - len(self.buf), 1 << 20))):
                raise EOFError(f"EOF after {len(self.buf)} of {n} bytes")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def iter_exact(self, n, chunk=1 << 20):
        """Yields exactly n bytes in pieces (streaming; raises EOFError if the peer stops)."""
        left = n
        if self.buf:
            k = min(left, len(self.buf))
            yield bytes(self.buf[:k])
            del self.buf[:k]
            left -= k
        while left > 0:
            try:
                data = self.sock.recv(min(left, chunk))
            except ConnectionResetError:
                data = b""
            if not data:
                self.eof = True
                raise EOFError(f"EOF with {left} of {n} bytes missing")
            if self.log:
                self.log(data)
            left -= len(data)
            yield data

    def read_some(self, n=65536):
        if self.buf:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        if not self._fill(n):
            return b""
        return self.read_some(n)

    def read_to_eof(self, limit=1 << 30):
        while self._fill() and len(self.buf) < limit:
            pass
        out = bytes(self.buf)
        self.buf.clear()
        return out


class Message:
    """A parsed request or response head, plus its body once read."""

    def __init__(self, raw_head):
        self.raw_head = raw_head
        text = raw_head.decode("latin-1")
        lines = text[:-4].split("\r\n") if text.endswith("\r\n\r\n") else text.split("\r\n")
        self.first_line = lines[0]
        self.headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            self.headers.append((name, value.strip(" \t") if sep else None))
        self.body = b""
        self.body_len = 0
        self.chunked_raw = None  # raw chunk framing, when the body was chunked
        self.trailers = []

    def get(self, name, default=None):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return default

    def get_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def has(self, name):
        return any(n.lower() == name.lower() for n, _ in self.headers)

    def header_names(self):
        return [n.lower() for n, _ in self.headers]

    def tokens(self, name):
        out = []
        for v in self.get_all(name):
            out += [t.strip().lower() for t in (v or "").split(",") if t.strip()]
        return out


class Request(Message):
    def __init__(self, raw_head):
        super().__init__(raw_head)
        parts = self.first_line.split(" ")
        self.method = parts[0] if parts else ""
        self.target = parts[1] if len(parts) > 1 else ""
        self.version = parts[2] if len(parts) > 2 else ""
        u = urlsplit(self.target)
        self.path = u.path
        self.query = {k: v[-1] for k, v in parse_qs(u.query).items()}
        self.complete = False  # the whole body arrived
        self.conn_id = None

    def q(self, name, default=None):
        return self.query.get(name, default)


class Response(Message):
    def __init__(self, raw_head):
        super().__init__(raw_head)
        parts = self.first_line.split(" ", 2)
        self.version = parts[0]
        try:
            self.status = int(parts[1])
        except (IndexError, ValueError):
            self.status = -1
        self.reason = parts[2] if len(parts) > 2 else ""

    def __repr__(self):
        return f"<Response {self.status} {self.headers} body={self.body[:80]!r}>"


def body_framing(msg, is_request, method="GET"):
    """('none'|'length'|'chunked'|'close', length) following RFC 9112 §6.3 (leniently)."""
    if not is_request:
        if method == "HEAD" or 100 <= msg.status < 200 or msg.status in (204, 304):
            return "none", 0
    te = msg.tokens("transfer-encoding")
    if te:
        if te[-1] == "chunked":
            return "chunked", None
        return ("close", None) if not is_request else ("bad", None)
    cl = msg.get("content-length")
    if cl is not None:
        return "length", int(cl.split(",")[0].strip())
    return ("none", 0) if is_request else ("close", None)


def read_chunked(reader, on_data, raw=None):
    """Decodes a chunked body, calling on_data(bytes) per data piece; returns trailers."""
    while True:
        line = reader.read_until(b"\r\n", limit=4096)
        if raw is not None:
            raw.append(line)
        size = int(line[:-2].split(b";")[0].strip(), 16)
        if size == 0:
            trailers = []
            while True:
                t = reader.read_until(b"\r\n", limit=65536)
                if raw is not None:
                    raw.append(t)
                if t == b"\r\n":
                    return trailers
                trailers.append(t[:-2].decode("latin-1"))
        for piece in reader.iter_exact(size):
            on_data(piece)
        crlf = reader.read_exact(2)
        if raw is not None:
            raw.append(crlf)
        if crlf != b"\r\n":
            raise ProtocolError(f"chunk data not followed by CRLF: {crlf!r}")


def read_response(reader, method="GET", keep_body=True, on_data=None, max_head=1 << 20):
    """Reads one response (head + body per the framing rules). Interim 1xx are returned as is."""
    raw = reader.read_until(b"\r\n\r\n", limit=max_head)
    resp = Response(raw)
    parts = []

    def sink(piece):
        resp.body_len += len(piece)
        if on_data:
            on_data(piece)
        if keep_body:
            parts.append(bytes(piece))

    kind, n = body_framing(resp, False, method)
    if kind == "length":
        for piece in reader.iter_exact(n):
            sink(piece)
    elif kind == "chunked":
        resp.chunked_raw = []
        resp.trailers = read_chunked(reader, sink, raw=resp.chunked_raw if keep_body else None)
    elif kind == "close":
        while True:
            piece = reader.read_some(1 << 20)
            if not piece:
                break
            sink(piece)
    resp.body = b"".join(parts)
    return resp


def read_final_response(reader, method="GET", **kw):
    """Skips interim (1xx) responses; returns (final, [interims])."""
    interims = []
    while True:
        resp = read_response(reader, method, **kw)
        if 100 <= resp.status < 200 and resp.status != 101:
            interims.append(resp)
            continue
        return resp, interims


def build_request(method="GET", target="/", headers=None, body=None, host="tandem.test",
                  version="HTTP/1.1"):
    hs = [("Host", host)] if host is not None else []
    hs += list(headers or [])
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                     for k, _ in hs):
        hs.append(("Content-Length", str(len(body))))
    head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n"
    return head.encode("latin-1") + (body or b"")


def chunk_encode(pieces, trailers=()):
    out = b""
    for p in pieces:
        if p:
            out += b"%x\r\n" % len(p) + p + b"\r\n"
    out += b"0\r\n" + b"".join(t.encode() + b"\r\n" for t in trailers) + b"\r\n"
    return out


class Client:
    """A raw HTTP/1.1 client connection (one socket, keep-alive, pipelining allowed)."""

    def __init__(self, port, timeout=TIMEOUT):
        self.sock = socket.create_connection((LOCAL, port), timeout=timeout)
        self.sock.settimeout(timeout)
        self.reader = Reader(self.sock)

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", target="/", headers=None, body=None, **kw):
        self.send(build_request(method, target, headers, body, **kw))
        return read_final_response(self.reader, method)[0]

    def read_response(self, method="GET", **kw):
        return read_final_response(self.reader, method, **kw)[0]

    def closed_by_peer(self, timeout=2.0):
        """True if the peer closes (EOF or RST) within timeout with no further bytes."""
        self.sock.settimeout(timeout)
        try:
            extra = self.reader.read_some()
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if extra:
            raise AssertionError(f"unexpected bytes after response: {extra[:200]!r}")
        return True

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def get(port, target="/", method="GET", headers=None, body=None, timeout=TIMEOUT):
    """One request on a fresh connection."""
    with Client(port, timeout) as c:
        return c.request(method, target, headers, body)


def read_raw_until_close(sock, timeout=TIMEOUT, limit=1 << 20):
    """Everything the peer sends until it closes (EOF or RST). Raises on timeout."""
    sock.settimeout(timeout)
    out = bytearray()
    while len(out) < limit:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return bytes(out)


# --------------------------------------------------------------------------------------------
# WebSocket framing (RFC 6455), minimal

def ws_accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def _mask(payload, key):
    if not payload:
        return b""
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def ws_frame(opcode, payload, mask=True, fin=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        key = os.urandom(4)
        return head + key + _mask(payload, key)
    return head + payload


def ws_read_frame(reader):
    """Returns (fin, opcode, payload, was_masked)."""
    b0, b1 = reader.read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", reader.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", reader.read_exact(8))[0]
    key = reader.read_exact(4) if b1 & 0x80 else None
    payload = reader.read_exact(n)
    if key:
        payload = _mask(payload, key)
    return bool(b0 & 0x80), b0 & 0x0F, payload, key is not None


def ws_handshake(port, path="/ws", extra_headers=(), timeout=TIMEOUT):
    """Opens a WebSocket; returns (Client, 101 Response, key)."""
    key = base64.b64encode(os.urandom(16)).decode()
    c = Client(port, timeout)
    c.send(build_request("GET", path, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                       ("Sec-WebSocket-Key", key),
                                       ("Sec-WebSocket-Version", "13"), *extra_headers]))
    raw = c.reader.read_until(b"\r\n\r\n")
    return c, Response(raw), key


# --------------------------------------------------------------------------------------------
# Backends

class _ServerBase:
    def __init__(self, name, port=0, backlog=128):
        self.name = name
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((LOCAL, port))
        self.lsock.listen(backlog)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.accepted = 0
        self.closed_ids = set()  # conn_ids of connections this server has closed
        self._conns = set()
        self._threads = []
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=f"{name}-accept")

    @property
    def address(self):
        return f"{LOCAL}:{self.port}"

    def start(self):
        self._accept_thread.start()
        return self

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                sock, _ = self.lsock.accept()
            except OSError:
                return
            if self.stopping.is_set():
                sock.close()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.accepted += 1
                conn_id = self.accepted
                self._conns.add(sock)
            t = threading.Thread(target=self._serve, args=(sock, conn_id), daemon=True,
                                 name=f"{self.name}-c{conn_id}")
            self._threads.append(t)
            t.start()

    def _serve(self, sock, conn_id):
        try:
            sock.settimeout(30)
            self.handle(sock, conn_id)
        except (OSError, EOFError, ProtocolError, ValueError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass
            with self.lock:
                self._conns.discard(sock)
                self.closed_ids.add(conn_id)

    def handle(self, sock, conn_id):
        raise NotImplementedError

    def stop(self):
        self.stopping.set()
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.lsock.close()
        with self.lock:
            conns = list(self._conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accept_thread.join(2)
        for t in self._threads:
            t.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


MALFORMED_RESPONSES = {
    "garbage": b"THIS IS NOT HTTP\r\n\r\n",
    "bad_status": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    "bad_version": b"HTTP/9.9 200 OK\r\nContent-Length: 0\r\n\r\n",
    "differing_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n0\r\n\r\n",
    "space_before_colon": b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello",
    "bad_header_name": b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 5\r\n\r\nhello",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n folded\r\nContent-Length: 5\r\n\r\nhello",
    "ctl_in_value": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 5\r\n\r\nhello",
    "bad_cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
    "close_without_response": b"",
}


class HttpBackend(_ServerBase):
    """Raw-socket HTTP/1.1 origin server. See module docstring and `handle` for endpoints:

    /echo[?chunked=1]        echoes the request body (streaming; chunked response if asked)
    /sink[?pause_ms=N]       consumes the body, answers "bytes=N crc=C" (pauses mid-body if asked)
    /big?n=BYTES[&chunked=1][&pause_ms=N]   streams the PATTERN body
    /slow?ms=N               delays the response head
    /reject[?linger=1]       403 at once, without reading the request body, then closes
                             (linger=1: half-closes and drains the input first, like nginx)
    /status?code=N[&cl=N]    answers that status (no body for 1xx/204/304; `cl` adds a CL header)
    /early                   103 Early Hints, then 200
    /hop                     response carrying hop-by-hop headers
    /noclen                  body delimited by closing the connection
    /drip?n=N&ms=M           chunked response, one small chunk every M ms
    /extra                   a valid response followed by an unsolicited second one
    /leak?kind=K             a (101|204|304|head|cl|chunked) response immediately followed by
                             "HTTP/1.1 200 ... LEAKED" on the same connection (gap_ms=N: N ms
                             later), then held open for hold=S seconds
    /badchunk[?split_ms=N]   chunked response with an invalid chunk size after the first chunk
                             (head and body in one write, or the body N ms after the head)
    /stall?ms=N              promises Content-Length: 100, sends 10 bytes, stalls N ms
    /stale?ms=N              normal keep-alive response, then closes the connection N ms later
    /truncate                promises Content-Length: 100, sends 10 bytes, closes
    /malformed?kind=K        writes MALFORMED_RESPONSES[K] and closes
    /close                   answers with Connection: close and closes
    Upgrade: websocket       RFC 6455 handshake, a greeting frame, then echoes frames
                             (unless ?decline=1: then served as a plain request)
    anything else            200, body "NAME METHOD TARGET\\n"
    Every response carries X-Backend: NAME. HEAD gets the GET headers without a body.
    """

    def __init__(self, name, port=0):
        super().__init__(name, port)
        self.requests = []     # Request objects, in arrival order (heads recorded on arrival)
        self.raw = {}          # conn_id -> bytearray of everything received (capped)
        self.raw_total = 0     # bytes received since reset()
        self.garbage = []      # unparseable leftovers at EOF
        self.ws_sessions = 0
        self.request_seen = threading.Condition(self.lock)

    def reset(self):
        with self.lock:
            self.requests = []
            self.raw = {}
            self.raw_total = 0
            self.garbage = []
            self.accepted_at_reset = self.accepted

    def accepted_since_reset(self):
        with self.lock:
            return self.accepted - getattr(self, "accepted_at_reset", 0)

    def targets(self):
        with self.lock:
            return [r.target for r in self.requests]

    def wait_requests(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        with self.request_seen:
            while len(self.requests) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: {len(self.requests)} requests, "
                                         f"expected {n}")
                self.request_seen.wait(left)
            return list(self.requests)

    def all_raw(self):
        with self.lock:
            return b"".join(bytes(v) for v in self.raw.values())

    def _log(self, conn_id):
        def log(data):
            with self.lock:
                self.raw_total += len(data)
                buf = self.raw.setdefault(conn_id, bytearray())
                if len(buf) < (1 << 20):
                    buf += data[: (1 << 20) - len(buf)]
        return log

    # -- helpers
    def _send_head(self, sock, status, headers, reason=None, close=False):
        reason = reason or {100: "Continue", 101: "Switching Protocols", 103: "Early Hints",
                            200: "OK", 204: "No Content", 304: "Not Modified",
                            404: "Not Found"}.get(status, "Status")
        hs = [("X-Backend", self.name)] + list(headers)
        if close:
            hs.append(("Connection", "close"))
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs)
        sock.sendall(head.encode("latin-1") + b"\r\n")

    def _respond(self, sock, req, status, body=b"", headers=(), close=False):
        hs = list(headers)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            hs.append(("Content-Length", str(len(body))))
        self._send_head(sock, status, hs, close=close)
        if body and not no_body and req.method != "HEAD":
            sock.sendall(body)

    def _read_body(self, reader, req, on_data):
        kind, n = body_framing(req, True)
        if kind == "length":
            for piece in reader.iter_exact(n):
                on_data(piece)
        elif kind == "chunked":
            req.trailers = read_chunked(reader, on_data)
        elif kind == "bad":
            raise ProtocolError("request with non-chunked transfer coding")
        req.complete = True

    # -- connection loop
    def handle(self, sock, conn_id):
        reader = Reader(sock, log=self._log(conn_id))
        while not self.stopping.is_set():
            try:
                raw = reader.read_until(b"\r\n\r\n", limit=1 << 20)
            except EOFError:
                if reader.buf:
                    with self.lock:
                        self.garbage.append(bytes(reader.buf))
                return
            req = Request(raw)
            req.conn_id = conn_id
            with self.request_seen:
                self.requests.append(req)
                self.request_seen.notify_all()
            if ("websocket" in req.tokens("upgrade") and req.get("sec-websocket-key")
                    and req.q("decline") != "1"):
                self._websocket(sock, reader, req)
                return
            keep = self._dispatch(sock, reader, req)
            conn_close = "close" in req.tokens("connection") or (
                req.version == "HTTP/1.0" and "keep-alive" not in req.tokens("connection"))
            if not keep or conn_close:
                return

    def _dispatch(self, sock, reader, req):
        path = req.path
        if req.get("expect", "").lower() == "100-continue" and path not in ("/status",):
            self._send_head(sock, 100, [])
        if path == "/echo":
            return self._echo(sock, reader, req)
        if path == "/sink":
            return self._sink(sock, reader, req)
        if path == "/reject":  # answers at once without reading the body, then closes
            self._respond(sock, req, 403, f"{self.name} rejected\n".encode(), close=True)
            if req.q("linger") == "1":  # lingering close: half-close, drain input, then close
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(2)
                try:
                    while reader.read_some(1 << 20):
                        pass
                except OSError:
                    pass
            return False
        # every other endpoint consumes (and discards) the request body first
        self._read_body(reader, req, lambda p: None)
        if path == "/big":
            return self._big(sock, req)
        if path == "/slow":
            if self.stopping.wait(int(req.q("ms", "1000")) / 1000):
                return False
            self._respond(sock, req, 200, f"{self.name} slow\n".encode())
            return True
        if path == "/status":
            code = int(req.q("code", "200"))
            hs = [("Content-Length", req.q("cl"))] if req.q("cl") else []
            if code in (204, 304) or 100 <= code < 200:
                self._send_head(sock, code, hs)
                if code == 101 or 100 <= code < 200:
                    self._respond(sock, req, 200, f"{self.name} after {code}\n".encode())
                return True
            self._respond(sock, req, code, f"{self.name} status {code}\n".encode())
            return True
        if path == "/early":
            self._send_head(sock, 103, [("Link", "</style.css>; rel=preload")])
            self._respond(sock, req, 200, f"{self.name} early\n".encode())
            return True
        if path == "/hop":
            self._respond(sock, req, 200, f"{self.name} hop\n".encode(), headers=[
                ("Connection", "X-Resp-Hop, keep-alive"), ("X-Resp-Hop", "secret"),
                ("Keep-Alive", "timeout=77"), ("Proxy-Connection", "keep-alive"),
                ("Trailer", "X-Nothing"), ("Upgrade", "foo/1"), ("X-Resp-E2E", "kept")])
            return True
        if path == "/noclen":
            body = f"{self.name} until close\n".encode() * 100
            sock.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: " + self.name.encode() + b"\r\n\r\n"
                         + (body if req.method != "HEAD" else b""))
            return False
        if path == "/drip":  # chunked, one chunk every ms milliseconds
            self._send_head(sock, 200, [("Transfer-Encoding", "chunked")])
            for i in range(int(req.q("n", "5"))):
                if i and self.stopping.wait(int(req.q("ms", "200")) / 1000):
                    return False
                piece = f"drip {i}\n".encode()
                sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
            return True
        if path == "/leak":  # a response followed by bytes that must never reach anyone
            kind = req.q("kind", "101")
            leak = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nLEAKED"
            first = {"101": b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
                     "204": b"HTTP/1.1 204 No Content\r\n\r\n",
                     "304": b"HTTP/1.1 304 Not Modified\r\n\r\n",
                     "head": b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n",
                     "cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
                     "chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"5\r\nhello\r\n0\r\n\r\n"}[kind]
            gap = int(req.q("gap_ms", "0")) / 1000
            if gap:  # the leak arrives later, when the connection may be idle in a pool
                sock.sendall(first)
                self.stopping.wait(gap)
                sock.sendall(leak)
            else:
                sock.sendall(first + leak)
            self.stopping.wait(float(req.q("hold", "1")))
            return False
        if path == "/extra":  # a second, unsolicited response after the first
            sock.sendall(b"HTTP/1.1 200 OK\r\nX-Backend: " + self.name.encode()
                         + b"\r\nContent-Length: 5\r\n\r\nhello"
                         + b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
            self.stopping.wait(0.5)
            return False
        if path == "/badchunk":  # a valid chunk, then an invalid chunk size
            head = (b"HTTP/1.1 200 OK\r\nX-Backend: " + self.name.encode()
                    + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
            body = b"5\r\nhello\r\nzz\r\nBADBYTES\r\n0\r\n\r\n"
            split = int(req.q("split_ms", "0")) / 1000
            if split:  # head first, body later: tandem has forwarded the head by then
                sock.sendall(head)
                self.stopping.wait(split)
                sock.sendall(body)
            else:  # one write
                sock.sendall(head + body)
            self.stopping.wait(0.5)
            return False
        if path == "/stall":  # promises 100 bytes, sends 10, then neither sends nor closes
            self._send_head(sock, 200, [("Content-Length", "100")])
            sock.sendall(b"0123456789")
            self.stopping.wait(int(req.q("ms", "5000")) / 1000)
            return False
        if path == "/stale":  # a normal keep-alive response, then a silent close shortly after
            self._respond(sock, req, 200, f"{self.name} stale\n".encode())
            self.stopping.wait(int(req.q("ms", "50")) / 1000)
            return False
        if path == "/truncate":
            self._send_head(sock, 200, [("Content-Length", "100")])
            sock.sendall(b"0123456789")
            return False
        if path == "/malformed":
            sock.sendall(MALFORMED_RESPONSES[req.q("kind", "garbage")])
            return False
        if path == "/close":
            self._respond(sock, req, 200, f"{self.name} closing\n".encode(), close=True)
            return False
        self._respond(sock, req, 200, f"{self.name} {req.method} {req.target}\n".encode())
        return True

    def _echo(self, sock, reader, req):
        kind, n = body_framing(req, True)
        if req.q("chunked") == "1":
            self._send_head(sock, 200, [("Transfer-Encoding", "chunked")])
            self._read_body(reader, req,
                            lambda p: sock.sendall(b"%x\r\n" % len(p) + bytes(p) + b"\r\n"))
            sock.sendall(b"0\r\nX-Echo-Trailer: done\r\n\r\n")
        elif kind == "length":
            self._send_head(sock, 200, [("Content-Length", str(n))])
            self._read_body(reader, req, sock.sendall)
        else:
            parts = []
            self._read_body(reader, req, parts.append)
            self._respond(sock, req, 200, b"".join(parts))
        return True

    def _sink(self, sock, reader, req):
        state = {"n": 0, "crc": 0, "paused": False}
        pause = int(req.q("pause_ms", "0")) / 1000
        total = int(req.get("content-length", "0") or 0)

        def on_data(p):
            state["n"] += len(p)
            state["crc"] = zlib.crc32(p, state["crc"])
            if pause and not state["paused"] and state["n"] >= total // 2:
                state["paused"] = True
                time.sleep(pause)

        self._read_body(reader, req, on_data)
        self._respond(sock, req, 200, f"bytes={state['n']} crc={state['crc']}".encode())
        return True

    def _big(self, sock, req):
        n = int(req.q("n", "1024"))
        pause = int(req.q("pause_ms", "0")) / 1000
        chunked = req.q("chunked") == "1"
        piece = int(req.q("piece", str(256 * 1024)))
        if chunked:
            self._send_head(sock, 200, [("Transfer-Encoding", "chunked")])
        else:
            self._send_head(sock, 200, [("Content-Length", str(n))])
        if req.method == "HEAD":
            return True
        sent = 0
        paused = not pause
        for p in pattern_chunks(n, piece):
            sock.sendall(b"%x\r\n" % len(p) + p + b"\r\n" if chunked else p)
            sent += len(p)
            if not paused and sent >= n // 2:
                paused = True
                time.sleep(pause)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        return True

    def _websocket(self, sock, reader, req):
        with self.lock:
            self.ws_sessions += 1
        accept = ws_accept_key(req.get("sec-websocket-key"))
        greeting = ws_frame(0x1, f"hello from {self.name}".encode(), mask=False)
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nX-Backend: " + self.name + "\r\n"
                      "Sec-WebSocket-Accept: " + accept + "\r\n\r\n").encode() + greeting)
        while True:
            fin, op, payload, masked = ws_read_frame(reader)
            if not masked:  # RFC 6455 §5.1: client frames must be masked
                sock.sendall(ws_frame(0x8, struct.pack("!H", 1002), mask=False))
                return
            if op == 0x8:
                sock.sendall(ws_frame(0x8, payload[:2], mask=False))
                return
            if op == 0x9:
                sock.sendall(ws_frame(0xA, payload, mask=False))
            elif op in (0x0, 0x1, 0x2):
                sock.sendall(ws_frame(op, payload, mask=False, fin=fin))


class TcpEchoBackend(_ServerBase):
    """mode 'echo': echoes everything; after the client's EOF sends b"EOF <n>\\n" and closes.
    mode 'banner': sends b"BANNER <name>\\n", shuts its write side, records what it then receives.
    """

    def __init__(self, name, mode="echo", port=0):
        super().__init__(name, port)
        self.mode = mode
        self.received = {}   # conn_id -> bytes count (echo) / bytes (banner)
        self.saw_eof = {}

    def handle(self, sock, conn_id):
        if self.mode == "banner":
            sock.sendall(b"BANNER " + self.name.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            data = bytearray()
            while True:
                d = sock.recv(65536)
                if not d:
                    break
                data += d
            with self.lock:
                self.received[conn_id] = bytes(data)
                self.saw_eof[conn_id] = True
            return
        n = 0
        while True:
            d = sock.recv(1 << 18)
            if not d:
                break
            n += len(d)
            sock.sendall(d)
        with self.lock:
            self.received[conn_id] = n
            self.saw_eof[conn_id] = True
        sock.sendall(b"EOF %d\n" % n)


class BlackholeListener:
    """A listening port whose accept queue is full, so further SYNs are dropped and connect()s to
    it hang: simulates an unreachable server on 127.0.0.1 for connect-timeout tests."""

    def __init__(self):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind((LOCAL, 0))
        self.lsock.listen(0)
        self.port = self.lsock.getsockname()[1]
        self.fillers = []
        for _ in range(2):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((LOCAL, self.port))
            self.fillers.append(s)
        # wait until the fillers' handshakes are done (the first lands in the accept queue)
        select.select([], self.fillers[:1], [], 2)

    @property
    def address(self):
        return f"{LOCAL}:{self.port}"

    def close(self):
        for s in self.fillers:
            s.close()
        self.lsock.close()


# --------------------------------------------------------------------------------------------
# Failure handling (issue 3): backends with switchable faults, backends in their own process (to
# SIGKILL/SIGSTOP them), and a bounded load generator that records every request.

class FaultyBackend(HttpBackend):
    """An HttpBackend whose behaviour can be switched while it runs:
    health_status  status of GET /healthz (default 200, body "ok")
    fault          None: normal; an int: every other request is answered with that status;
                   "reset": the request (and its body) is read, then the connection is closed
                   without a response byte
    health_hits    [(monotonic time, status answered)] of the /healthz requests
    """

    def __init__(self, name, port=0, health_status=200, fault=None):
        super().__init__(name, port)
        self.health_status = health_status
        self.fault = fault
        self.health_hits = []

    def data_requests(self):
        """Request heads other than /healthz, in arrival order."""
        with self.lock:
            return [r for r in self.requests if r.path != "/healthz"]

    def _dispatch(self, sock, reader, req):
        if req.path == "/healthz":
            self._read_body(reader, req, lambda p: None)
            code = self.health_status
            with self.lock:
                self.health_hits.append((time.monotonic(), code))
            self._respond(sock, req, code, b"ok\n" if code < 400 else b"sick\n")
            return True
        req.t = time.monotonic()
        fault = self.fault
        if fault is None:
            return super()._dispatch(sock, reader, req)
        self._read_body(reader, req, lambda p: None)
        if fault == "reset":
            return False
        self._respond(sock, req, int(fault), f"{self.name} fault {fault}\n".encode())
        return True


_PROCESS_BACKEND = r'''
import os, sys, threading, time
sys.path.insert(0, sys.argv[1])
import harness

class B(harness.HttpBackend):
    def _respond(self, sock, req, status, body=b"", headers=(), close=False):
        # head and body in one write, so that a kill never leaves half a response
        hs = [("X-Backend", self.name)] + list(headers)
        no_body = status in (204, 304) or 100 <= status < 200
        if not no_body:
            hs.append(("Content-Length", str(len(body))))
        if close:
            hs.append(("Connection", "close"))
        head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Status'}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in hs) + "\r\n"
        send_body = body and not no_body and req.method != "HEAD"
        sock.sendall(head.encode("latin-1") + (body if send_body else b""))

    def _dispatch(self, sock, reader, req):
        os.write(1, f"REQ {time.monotonic():.6f} {req.method} {req.target}\n".encode())
        with self.lock:
            self.requests.clear()  # the parent keeps the log; keep memory flat
            self.raw.clear()
        return super()._dispatch(sock, reader, req)

b = B(sys.argv[2], int(sys.argv[3])).start()
os.write(1, f"PORT {b.port}\n".encode())
sys.stdin.read()  # until the parent closes our stdin (or kills us)
os._exit(0)
'''

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else None


class ProcessBackend:
    """An HttpBackend (all its endpoints; /healthz answers 200) in its own /usr/bin/python3
    process, so that tests can SIGKILL or SIGSTOP it. Every response is written in one piece.
    `log` holds (monotonic time, method, target) of every request it received (the child reports
    them on its stdout; CLOCK_MONOTONIC is system-wide). restart() comes back on the same port."""

    def __init__(self, name, port=0):
        import sys
        self.name = name
        self.port = port
        self.python = PYTHON or sys.executable
        self.proc = None
        self.log = []
        self.lock = threading.Lock()
        self.started_at = []  # monotonic time of each (re)start

    @property
    def address(self):
        return f"{LOCAL}:{self.port}"

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            proc = subprocess.Popen(
                [self.python, "-u", "-c", _PROCESS_BACKEND,
                 os.path.dirname(os.path.abspath(__file__)), self.name, str(self.port)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            line = proc.stdout.readline()  # the child prints its port or dies (bind failed)
            if line.startswith(b"PORT "):
                break
            proc.kill()
            proc.wait()
            if time.monotonic() > deadline:
                raise RuntimeError(f"backend process {self.name} did not start on port "
                                   f"{self.port}")
            time.sleep(0.05)
        self.port = int(line.split()[1])
        self.proc = proc
        self.started_at.append(time.monotonic())
        threading.Thread(target=self._read, args=(proc,), daemon=True,
                         name=f"{self.name}-log").start()
        return self

    def _read(self, proc):
        for line in proc.stdout:
            parts = line.decode("latin-1").split()
            if len(parts) == 4 and parts[0] == "REQ":
                with self.lock:
                    self.log.append((float(parts[1]), parts[2], parts[3]))

    def requests(self, since=0.0, health=False):
        """(time, method, target) received since `since`: /healthz ones if health else the rest."""
        with self.lock:
            return [r for r in self.log
                    if r[0] >= since and (r[2].startswith("/healthz") == health)]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill(self):
        """SIGKILL; returns once the process is gone (its sockets closed by the kernel)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def restart(self, timeout=10.0):
        self.stop()
        return self.start(timeout)

    def stop(self):
        """Always safe: SIGCONT (it may be stopped), SIGKILL, reap."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                try:
                    os.kill(self.proc.pid, sig)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(5)
        finally:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    f.close()
                except OSError:
                    pass


class LoadRecord:
    __slots__ = ("tid", "t0", "t1", "status", "backend", "error", "sent", "conn_close")

    def __init__(self, tid, t0, t1, status, backend, error, sent, conn_close=False):
        self.tid, self.t0, self.t1 = tid, t0, t1
        self.status, self.backend, self.error = status, backend, error
        self.sent, self.conn_close = sent, conn_close

    @property
    def latency(self):
        return self.t1 - self.t0

    @property
    def failed(self):
        """A request that was sent and did not get a 200 (an error status, or no response)."""
        return self.sent and (self.error is not None or self.status != 200)

    def __repr__(self):
        return (f"<{self.tid} t0={self.t0:.3f} {self.latency * 1000:.0f}ms {self.status} "
                f"{self.backend} err={self.error} sent={self.sent}>")


def _peer_closed(sock):
    """True if the peer has closed (or reset) this idle connection: a client must not reuse it."""
    r, _, _ = select.select([sock], [], [], 0)
    if not r:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class LoadGen:
    """`threads` clients, each sending sequential requests on a keep-alive connection (a new one
    after Connection: close or an error), for at most max_requests per thread and max_seconds.
    Every request is recorded (LoadRecord: monotonic start/end, status, X-Backend, error, whether it
    was sent). An idle connection the peer has closed is noticed before reuse and not counted.
    drain(): no new connections from now on; each client ends when its connection closes."""

    def __init__(self, port, threads=4, target="/load", method="GET", body=None, timeout=3.0,
                 max_requests=100000, max_seconds=30.0, think=0.0):
        self.port = port
        self.threads = threads
        self.target = target
        self.method = method
        self.body = body
        self.timeout = timeout
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.think = think
        self.records = []
        self.endings = {}  # tid -> how its last connection ended
        self._stop = threading.Event()
        self._no_new = threading.Event()
        self._threads = []
        self.t_start = None

    def start(self):
        self.t_start = time.monotonic()
        for tid in range(self.threads):
            t = threading.Thread(target=self._run, args=(tid,), daemon=True, name=f"load{tid}")
            self._threads.append(t)
            t.start()
        return self

    def _target(self, tid, seq):
        return f"{self.target}{'&' if '?' in self.target else '?'}c={tid}&n={seq}"

    def _run(self, tid):
        conn = None
        deadline = self.t_start + self.max_seconds
        seq = 0
        ending = "stopped"
        while not self._stop.is_set() and seq < self.max_requests and time.monotonic() < deadline:
            if conn is not None and _peer_closed(conn.sock):
                conn.close()
                conn = None
                ending = "idle-close"
            if conn is None:
                if self._no_new.is_set():
                    break
                t0 = time.monotonic()
                try:
                    conn = Client(self.port, self.timeout)
                except OSError as ex:
                    self.records.append(LoadRecord(tid, t0, time.monotonic(), None, None,
                                                   f"connect: {ex!r}", False))
                    time.sleep(0.01)
                    continue
            seq += 1
            t0 = time.monotonic()
            try:
                conn.send(build_request(self.method, self._target(tid, seq), body=self.body))
                resp = read_final_response(conn.reader, self.method)[0]
            except (OSError, EOFError, ProtocolError, ValueError) as ex:
                self.records.append(LoadRecord(tid, t0, time.monotonic(), None, None,
                                               f"{type(ex).__name__}: {ex}", True))
                conn.close()
                conn = None
                ending = "error"
                continue
            close = "close" in resp.tokens("connection")
            self.records.append(LoadRecord(tid, t0, time.monotonic(), resp.status,
                                           resp.get("x-backend"), None, True, close))
            if close:
                conn.close()
                conn = None
                ending = "connection-close"
            if self.think:
                time.sleep(self.think)
        if conn is not None:
            conn.close()
        self.endings[tid] = ending

    def drain(self):
        self._no_new.set()

    def stop(self, timeout=None):
        self._stop.set()
        return self.join(timeout)

    def join(self, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout + 2)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    # -- analysis (records are in completion order; windows select by start time)
    def sent(self, t0=0.0, t1=float("inf")):
        return [r for r in list(self.records) if r.sent and t0 <= r.t0 < t1]

    def failures(self, t0=0.0, t1=float("inf")):
        return [r for r in self.sent(t0, t1) if r.failed]

    def by_backend(self, t0=0.0, t1=float("inf")):
        out = {}
        for r in self.sent(t0, t1):
            out[r.backend] = out.get(r.backend, 0) + 1
        return out

    def share(self, name, t0=0.0, t1=float("inf")):
        rs = self.sent(t0, t1)
        return sum(1 for r in rs if r.backend == name) / len(rs) if rs else 0.0

    def times_of(self, name, t0=0.0, t1=float("inf")):
        return [r.t0 for r in self.sent(t0, t1) if r.backend == name]

    def wait_count(self, n, timeout=10.0):
        wait_until(lambda: len(self.records) >= n, timeout=timeout, what=f"{n} load requests")

    def summary(self, t0=0.0, t1=float("inf")):
        rs = self.sent(t0, t1)
        lat = sorted(r.latency for r in rs) or [0.0]
        return (f"{len(rs)} requests, {len(self.failures(t0, t1))} failed, by backend "
                f"{self.by_backend(t0, t1)}, p50 {lat[len(lat) // 2] * 1000:.1f}ms, "
                f"max {lat[-1] * 1000:.1f}ms")


# -- Pool helpers shared by the issue-3 tests: everything they start is stopped at teardown --------

def faulty(pool, name, **kw):
    """A FaultyBackend registered with the test's pool."""
    b = FaultyBackend(name, **kw).start()
    pool.items.append(b)
    return b


class Stoppable:
    def __init__(self, fn):
        self.stop = fn


def load(pool, port, **kw):
    """A LoadGen that is stopped at teardown even if the test fails half-way."""
    lg = LoadGen(port, **kw)
    pool.items.append(Stoppable(lambda: lg.stop(1)))
    return lg.start()


def run_together(n, fn, timeout=10):
    """Runs fn(i, ready) in n threads; each calls ready.wait() when set up, and all go on at once.
    Returns when every thread has ended (each join bounded by `timeout`)."""
    ready = threading.Barrier(n + 1, timeout=5)
    threads = [threading.Thread(target=fn, args=(i, ready)) for i in range(n)]
    for th in threads:
        th.start()
    ready.wait()
    for th in threads:
        th.join(timeout)


# -- etcd (Debian etcd-server), started and stopped by the tests that need it ----------------------

ETCD = "/usr/bin/etcd"


class EtcdServer:
    """A real single-node etcd on free 127.0.0.1 ports with its own data dir. stop() keeps the data
    dir, so start() again brings the same store back on the same ports (an outage and a return)."""

    def __init__(self, workdir, name="etcd"):
        self.dir = os.path.join(str(workdir), name)
        os.makedirs(self.dir, exist_ok=True)
        self.port, self.peer_port = free_port(), free_port()
        self.proc = None
        self.log_path = os.path.join(self.dir, "etcd.log")

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=10.0):
        peer = f"http://127.0.0.1:{self.peer_port}"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [ETCD, "--name", "default", "--data-dir", os.path.join(self.dir, "data"),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"default={peer}", "--heartbeat-interval=10",
             "--election-timeout=100", "--logger=zap", "--log-outputs=stderr"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        wait_until(self.healthy, timeout=timeout, step=0.02, what="etcd healthy")
        return self

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"etcd exited ({self.proc.returncode}); log:\n"
                                 + open(self.log_path, errors="replace").read()[-2000:])
        try:
            with socket.create_connection((LOCAL, self.port), timeout=0.5) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n")
                return b'"health":"true"' in read_raw_until_close(s, timeout=1)
        except OSError:
            return False

    def call(self, path, body):
        """One JSON-gateway call; returns the decoded JSON answer."""
        import json as _json
        import http.client
        conn = http.client.HTTPConnection(LOCAL, self.port, timeout=5)
        try:
            conn.request("POST", path, body=_json.dumps(body))
            return _json.loads(conn.getresponse().read() or b"{}")
        finally:
            conn.close()

    def put(self, key, value):
        r = self.call("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
        return int(r["header"]["revision"])

    def get(self, key):
        r = self.call("/v3/kv/range", {"key": _b64(key)})
        kvs = r.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def compact(self, revision):
        return self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def stop(self, kill=False):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None


def _b64(text):
    return base64.b64encode(text.encode()).decode()
