"""The lab's allow-listed proxy: package registries only, read from this machine's own clients.

Hosts have no route out. Their apt (and pip/npm, if configured) talks to this proxy on the
bridge address (10.77.0.1:3142), which

- forwards GET/HEAD for `http://` URLs whose host is an allowed apt source;
- opens a CONNECT tunnel only to an allowed host on port 443 (pip and npm over HTTPS,
  and apt sources that use https);
- answers 403 to everything else, without any outside traffic.

The allow-list is read at run time from this machine's configuration, so no registry
host is written in the code: apt sources (/etc/apt/sources.list*), pip's index settings
(`pip config list`, plus pip's own default PyPI constants), and `npm config get registry`.
Upstream requests take this machine's normal path (its http_proxy/https_proxy if set).
Stdlib only; the server runs in daemon threads of the calling process.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import select
import shutil
import socket
import subprocess
import sys
import threading
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from coursehub.lab.aptsources import read_sources

DEFAULT_PORT = 3142
HOP_BY_HOP = {"connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate",
              "te", "trailer", "trailers", "transfer-encoding", "upgrade"}


@dataclass(frozen=True)
class Allowlist:
    """Where the proxy may go: `http` for GET/HEAD (host or host:port), `connect` for CONNECT :443."""

    http: frozenset[str] = field(default_factory=frozenset)
    connect: frozenset[str] = field(default_factory=frozenset)

    def allows_http(self, host: str, port: int) -> bool:
        host = host.lower()
        return (port == 80 and host in self.http) or f"{host}:{port}" in self.http

    def allows_connect(self, host: str, port: int) -> bool:
        return port == 443 and host.lower() in self.connect


# ---------------------------------------------------------------- reading the machine's clients


def _add_url(url: str, http: set[str], connect: set[str]) -> None:
    u = urlsplit(url.strip().strip("'\""))
    if not u.hostname:
        return
    if u.scheme == "http":
        http.add(u.hostname.lower() if u.port in (None, 80) else f"{u.hostname.lower()}:{u.port}")
    elif u.scheme == "https" and u.port in (None, 443):
        connect.add(u.hostname.lower())


def apt_source_urls(root: Path = Path("/")) -> list[str]:
    """Every URI named by the enabled apt sources."""
    return [u for src in read_sources(root) for u in src.uris]


@functools.cache
def pip_config(python: str | None = None) -> dict[str, list[str]]:
    """index-url and extra-index-url from this machine's `pip config list` (read once per process)."""
    r = subprocess.run([python or sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                       stdin=subprocess.DEVNULL)
    out: dict[str, list[str]] = {}
    for line in r.stdout.splitlines() if r.returncode == 0 else []:
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in ("index-url", "extra-index-url"):
            out.setdefault(name, []).extend(value.strip().strip("'\"").split())
    return out


def pip_index_urls(python: str | None = None) -> list[str]:
    """pip's default PyPI hosts (from pip itself) plus index-url/extra-index-url from `pip config list`."""
    python = python or sys.executable
    code = (
        "from pip._internal.models.index import PyPI\n"
        "print(PyPI.url); print('https://' + PyPI.file_storage_domain + '/')\n"
    )
    urls: list[str] = []
    r = subprocess.run([python, "-c", code], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode == 0:
        urls += r.stdout.split()
    for values in pip_config(python).values():
        urls += values
    return urls


@functools.cache
def npm_registry_urls() -> tuple[str, ...]:
    """`npm config get registry`, if npm is installed (read once per process)."""
    npm = shutil.which("npm")
    if not npm:
        return ()
    r = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return tuple(r.stdout.split()) if r.returncode == 0 else ()


def allowlist_from_machine() -> Allowlist:
    """The registries this machine's own apt, pip and npm use."""
    http: set[str] = set()
    connect: set[str] = set()
    for url in [*apt_source_urls(), *pip_index_urls(), *npm_registry_urls()]:
        _add_url(url, http, connect)
    return Allowlist(http=frozenset(http), connect=frozenset(connect))


def guest_client_files(proxy_url: str) -> dict[str, str]:
    """pip and npm settings for a lab host: this proxy, and the indexes this machine's clients use.

    Keys are paths relative to the guest's root. (apt's setting is part of the image.)
    """
    pip = f"[global]\nproxy = {proxy_url}\n"
    web = lambda urls: [u for u in urls if u.startswith(("http://", "https://"))]  # noqa: E731
    cfg = pip_config()
    if web(cfg.get("index-url", [])):
        pip += f"index-url = {web(cfg['index-url'])[0]}\n"
    if web(cfg.get("extra-index-url", [])):
        pip += f"extra-index-url = {' '.join(web(cfg['extra-index-url']))}\n"
    npm = f"proxy={proxy_url}\nhttps-proxy={proxy_url}\n"
    npm += "".join(f"registry={u}\n" for u in npm_registry_urls()[:1])
    return {"etc/pip.conf": pip, "etc/npmrc": npm}


# ---------------------------------------------------------------- the server


def _upstream_proxy(scheme: str, host: str) -> tuple[str, int] | None:
    """This machine's own proxy for `scheme` (from the environment), unless `host` bypasses it."""
    proxies = urllib.request.getproxies()
    if scheme not in proxies or urllib.request.proxy_bypass(host):
        return None
    u = urlsplit(proxies[scheme] if "://" in proxies[scheme] else "http://" + proxies[scheme])
    return (u.hostname or "", u.port or 80)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib's name)
        self.server.log(f"{self.client_address[0]} {format % args}")

    def _deny(self, why: str) -> None:
        self.server.count("denied")
        body = f"403 coursehub lab proxy: {why}\n".encode()
        self.send_response(403)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- GET/HEAD forwarding
    def do_GET(self) -> None:  # noqa: N802 (stdlib's name)
        u = urlsplit(self.path)
        port = u.port or 80
        if u.scheme != "http" or not u.hostname or not self.server.allow.allows_http(u.hostname, port):
            return self._deny(f"{self.command} {self.path} is not an allowed package source")
        via = _upstream_proxy("http", u.hostname)
        conn = http.client.HTTPConnection(*(via or (u.hostname, port)), timeout=60)
        target = self.path if via else (u.path or "/") + (f"?{u.query}" if u.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            conn.request(self.command, target, headers=headers)
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            self.send_error(502, f"upstream: {e}")
            return
        try:
            self.send_response_only(resp.status, resp.reason)
            length = resp.getheader("Content-Length")
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP:
                    self.send_header(k, v)
            no_body = self.command == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200
            if not no_body and length is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.server.count("forwarded")
            if not no_body:
                while chunk := resp.read(65536):
                    self.wfile.write(chunk)
        finally:
            conn.close()

    do_HEAD = do_GET  # noqa: N815

    # -- CONNECT tunnels
    def do_CONNECT(self) -> None:  # noqa: N802
        host, _, port_s = self.path.rpartition(":")
        port = int(port_s) if port_s.isdigit() else 0
        if not self.server.allow.allows_connect(host, port):
            self.close_connection = True
            return self._deny(f"CONNECT {self.path} is not an allowed registry")
        try:
            up = self._open_tunnel(host, port)
        except OSError as e:
            self.close_connection = True
            self.send_error(502, f"upstream: {e}")
            return
        self.send_response_only(200, "Connection established")
        self.end_headers()
        self.server.count("tunnels")
        self.close_connection = True
        with up:
            self._pump(self.connection, up)

    def _open_tunnel(self, host: str, port: int) -> socket.socket:
        via = _upstream_proxy("https", host)
        up = socket.create_connection(via or (host, port), timeout=30)
        if via:
            up.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                data = up.recv(4096)
                if not data:
                    break
                head += data
            if head.split(b" ", 2)[1:2] != [b"200"]:
                up.close()
                raise OSError(f"upstream proxy refused CONNECT: {head[:80]!r}")
        up.settimeout(None)
        return up

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        socks = [a, b]
        while not self.server.stopping.is_set():
            readable, _, broken = select.select(socks, [], socks, 1.0)
            if broken:
                return
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (b if s is a else a).sendall(data)

    def _other(self) -> None:
        self.close_connection = True
        self._deny(f"method {self.command} is not allowed")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _other  # noqa: N815


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], allow: Allowlist, log_path: Path | None) -> None:
        super().__init__(addr, _Handler)
        self.allow = allow
        self.stopping = threading.Event()
        self.counts: dict[str, int] = {"forwarded": 0, "tunnels": 0, "denied": 0}
        self._lock = threading.Lock()
        self._log = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115 (lives with the server)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that went away mid-request is normal here: log it, don't print a traceback."""
        self.log(f"{client_address} error: {sys.exc_info()[1]!r}")

    def count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def log(self, line: str) -> None:
        if self._log:
            with self._lock:
                self._log.write(line + "\n")

    def server_close(self) -> None:
        super().server_close()
        if self._log:
            self._log.close()
            self._log = None


def listening(address: str, port: int = DEFAULT_PORT) -> bool:
    """Is some process of this machine (this network namespace) listening on address:port?"""
    want = f"{socket.htonl(int.from_bytes(socket.inet_aton(address), 'big')):08X}:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(f[1] == want and f[3] == "0A" for f in (ln.split() for ln in lines))


class LabProxy:
    """The proxy, served from a daemon thread: `LabProxy(address).start()` ... `.stop()`."""

    def __init__(self, address: str, port: int = DEFAULT_PORT, allow: Allowlist | None = None,
                 log_path: Path | None = None) -> None:
        self.address, self.port = address, port
        self.allow = allow if allow is not None else allowlist_from_machine()
        self._log_path = log_path
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._server.counts) if self._server else {}

    def start(self) -> LabProxy:
        if self._server is None:
            self._server = _Server((self.address, self.port), self.allow, self._log_path)
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                            name="lab-proxy", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stopping.set()
            self._server.shutdown()
            with contextlib.suppress(OSError):
                self._server.server_close()
            if self._thread:
                self._thread.join(timeout=5)
            self._server = self._thread = None
