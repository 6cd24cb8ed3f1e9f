"""LabAPI: the lab's OpenStack-compatible HTTP API on one port (stdlib ThreadingHTTPServer).

    api = LabAPI(MemoryBackend(), port=0).start()
    conn = openstack.connect(**api.connect_kwargs())     # or write api.clouds_yaml()
    ...
    api.stop()

Paths follow devstack: /identity, /compute/v2.1, /network, /volume/v3/{project},
/image, plus the control surface /_lab/... (see `control.py`). Every reply is
HTTP/1.1 with a Content-Length, because openstacksdk keeps connections alive.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from coursehub.lab.backend import Backend

from . import cinder, control, glance, keystone, neutron, nova, nova_servers
from .faults import Faults, Journal
from .state import LabConfig, LabState
from .web import ApiError, Request, Response, Router, error_body, negotiate, service_of, version_headers

log = logging.getLogger(__name__)

NOVA_MIN, NOVA_MAX = "2.1", "2.96"
CINDER_MIN, CINDER_MAX = "3.0", "3.71"
CLOUD_NAME = "coursehub-lab"


def clouds_yaml(url: str, password: str) -> dict[str, Any]:
    """A clouds.yaml document with one cloud, `coursehub-lab`, for the lab API at `url`.

    The result holds the lab password: write it to a 0600 file, never print it.
    """
    return {"clouds": {CLOUD_NAME: {
        "auth": {"auth_url": f"{url.rstrip('/')}/identity/v3", "username": "admin", "password": password,
                 "project_name": "coursehub", "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": "Lab", "identity_api_version": 3, "interface": "public",
    }}}


class LabAPI:
    """The lab cloud: state, backend, routes, faults and journal behind one HTTP port."""

    def __init__(self, backend: Backend, subnet: str = "10.77.0.0/24", host: str = "127.0.0.1", port: int = 0,
                 build_seconds: float = 0.0, clock: Any = time.monotonic, password: str | None = None):
        self.backend = backend
        self.host, self.port = host, port
        self.state = LabState(subnet, clock=clock, password=password, config=LabConfig(build_seconds=build_seconds))
        self.faults = Faults()
        self.journal = Journal()
        self.router = Router()
        for module in (keystone, nova, nova_servers, neutron, cinder, glance):
            module.register(self.router, self)
        self.control = Router()
        control.register(self.control, self)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> LabAPI:
        """Bind and serve in a daemon thread; `url` is valid afterwards."""
        handler = type("LabHandler", (_Handler,), {"api": self})
        self._httpd = ThreadingHTTPServer((self.host, self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="lab-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ for tests and tools
    def set_faults(self, rules: list[Any]) -> None:
        """Replace the fault rules (dicts as `POST /_lab/faults` takes them)."""
        self.faults.set(rules)

    def configure(self, **knobs: Any) -> None:
        """Change knobs: build_seconds, delete_seconds, volume_seconds, token_seconds, error_builds,
        error_names, quotas={name: limit}."""
        with self.state.lock:
            self.state.config.update(knobs)

    def reset(self) -> None:
        """Delete every server and volume (in the backend too), re-seed, clear faults and journal."""
        with self.state.lock:
            servers, volumes = list(self.state.servers), list(self.state.volumes)
        for sid in servers:
            _quietly(self.backend.delete, sid)
        for vid in volumes:
            _quietly(self.backend.delete_volume, vid)
        self.state.reset()
        self.faults.clear()
        self.journal.clear()

    def clouds_yaml(self) -> dict[str, Any]:
        return clouds_yaml(self.url, self.state.password)

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `openstack.connect(...)` (holds the password)."""
        auth = self.clouds_yaml()["clouds"][CLOUD_NAME]
        return {**auth["auth"], "region_name": "Lab", "identity_api_version": "3"}

    # ------------------------------------------------------------------ dispatch
    def dispatch(self, req: Request) -> Response:
        """Route one (non-control) request: auth, microversion, settle the clock, handle, render errors."""
        route, params, known = self.router.match(req.method, req.path)
        req.service = route.service if route else service_of(req.path)
        extra: dict[str, str] = {}
        try:
            if req.service == "nova":
                req.version = negotiate(req, "compute", NOVA_MIN, NOVA_MAX, legacy="X-OpenStack-Nova-API-Version")
                extra = version_headers("compute", req.version, legacy="X-OpenStack-Nova-API-Version")
            elif req.service == "cinder":
                req.version = negotiate(req, "volume", CINDER_MIN, CINDER_MAX)
                extra = version_headers("volume", req.version)
            if route is None:
                raise ApiError(405 if known else 404, "Method not allowed" if known else "The resource could not be found.")
            req.params = params
            if route.auth:
                with self.state.lock:
                    ok = self.state.token_valid(req.headers.get("x-auth-token"))
                if not ok:
                    raise ApiError(401, "The request you have made requires authentication.",
                                   headers={"WWW-Authenticate": f'Keystone uri="{req.base_url}/identity"'})
            with self.state.lock:
                self.state.settle()
            resp = route.handler(req)
        except ApiError as e:
            resp = error_body(req.service, e.status, e.message, e.kind)
            resp.headers.update(e.headers)
        except Exception:
            log.exception("lab API: %s %s failed", req.method, req.path)
            resp = error_body(req.service, 500, "An unexpected error prevented the server from fulfilling your request.")
        for key, value in extra.items():
            resp.headers.setdefault(key, value)
        return resp


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("lab backend: %s%r failed", getattr(fn, "__name__", fn), args)


class _Handler(BaseHTTPRequestHandler):
    """One connection: parse, apply faults, dispatch, reply, journal."""

    protocol_version = "HTTP/1.1"
    server_version = "CourseHubLab/1"
    timeout = 300
    disable_nagle_algorithm = True   # headers and body go out as separate writes: no 40 ms delayed-ACK stall
    api: LabAPI

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        started = time.time()
        body = self._read_body()
        parts = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(parts.path) or "/"
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        if path.startswith("/network/") and path.endswith(".json"):
            path = path[:-5]        # neutron accepts a format suffix
        host = self.headers.get("Host") or f"{self.api.host}:{self.api.port}"
        req = Request(method=self.command, path=path, query=urllib.parse.parse_qs(parts.query, keep_blank_values=True),
                      headers={k.lower(): v for k, v in self.headers.items()}, body=body, base_url=f"http://{host}")
        if path == "/_lab" or path.startswith("/_lab/"):
            self._reply(control.dispatch(self.api, req))
            return
        shown = parts.path + (f"?{parts.query}" if parts.query else "")
        rule = self.api.faults.take(self.command, shown)
        if rule is not None and rule.delay:
            time.sleep(rule.delay)
        if rule is not None and rule.drop:
            self.api.journal.record(self.command, shown, 0, started, fault=True)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if rule is not None and rule.status is not None:
            service = service_of(path)
            if rule.body is None:
                resp = error_body(service, rule.status, f"Injected fault ({rule.status}) for {self.command} {parts.path}")
            else:
                resp = Response(rule.status, rule.body)
            resp.headers.update(rule.headers)
            if rule.status == 413 and service in ("nova", "cinder"):
                resp.headers.setdefault("Retry-After", "0")
        else:
            resp = self.api.dispatch(req)
        self.api.journal.record(self.command, shown, resp.status, started, fault=rule is not None)
        self._reply(resp)

    def _reply(self, resp: Response) -> None:
        if resp.status in (204, 304):
            resp.body = None
        data, headers = resp.encode()
        try:
            self.send_response(resp.status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD" and resp.status not in (204, 304):
                self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
