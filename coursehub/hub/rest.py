"""A small JupyterHub REST API client (stdlib only): users, servers, tokens.

    api = HubAPI("http://10.77.0.11/hub/api", token)
    api.users()                      # [User(name, admin, last_activity, servers), ...]
    api.create_user("alice"); api.start_server("alice"); api.stop_server("alice")

Every call has a timeout; every failure is a HubAPIError whose str() is one line
naming the method, the path and the hub's own message (the token never appears:
it travels in the Authorization header only). 404 on delete/stop counts as done,
so cleanup code can call them blindly. JupyterHub answers 202 to a start or stop
that is still in progress; `wait_server` polls until the server is ready or gone.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TIMEOUT = 15.0


class HubAPIError(Exception):
    """A hub API call failed: `status` is the HTTP status (0: no answer at all)."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Server:
    """One of a user's servers ("" is the default server)."""

    name: str
    ready: bool
    pending: str | None
    url: str
    started: str | None
    last_activity: str | None


@dataclass(frozen=True)
class User:
    name: str
    admin: bool
    last_activity: str | None
    servers: dict[str, Server] = field(default_factory=dict)
    pending: str | None = None

    @property
    def running(self) -> bool:
        return any(s.ready or s.pending for s in self.servers.values())


def parse_user(data: Mapping[str, Any]) -> User:
    """A user model from GET /users (with servers, as a token with read:servers sees them)."""
    servers = {}
    for name, s in (data.get("servers") or {}).items():
        servers[name] = Server(name=name, ready=bool(s.get("ready")), pending=s.get("pending"), url=s.get("url") or "",
                               started=s.get("started"), last_activity=s.get("last_activity"))
    return User(name=str(data["name"]), admin=bool(data.get("admin")), last_activity=data.get("last_activity"),
                servers=servers, pending=data.get("pending"))


class HubAPI:
    """The hub's REST API at `base` (…/hub/api), authenticated by `token`."""

    def __init__(self, base: str, token: str, timeout: float = DEFAULT_TIMEOUT,
                 opener: urllib.request.OpenerDirector | None = None):
        self.base = base.rstrip("/")
        self._token = token
        self.timeout = timeout
        # No proxy: the hub is reached directly (the lab's addresses must never go through one).
        self._opener = opener or urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __repr__(self) -> str:
        return f"HubAPI({self.base!r})"

    # ------------------------------------------------------------------ plumbing
    def request(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204),
                url: str | None = None) -> tuple[int, Any]:
        """(status, parsed JSON or None). HubAPIError unless the status is in `ok`."""
        target = url or self.base + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(target, data=data, method=method)
        req.add_header("Authorization", f"token {self._token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        shown = f"{method} {path or target}"
        try:
            with self._opener.open(req, timeout=self.timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except urllib.error.URLError as e:
            raise HubAPIError(f"{shown}: no answer from {self.base}: {e.reason}") from None
        except (TimeoutError, OSError) as e:
            raise HubAPIError(f"{shown}: no answer from {self.base}: {e or type(e).__name__}") from None
        parsed = _json(raw)
        if status not in ok:
            raise HubAPIError(f"{shown}: HTTP {status}: {_message(parsed, raw)}", status)
        return status, parsed

    # ------------------------------------------------------------------ hub
    def info(self) -> dict[str, Any]:
        """GET / : the hub's version."""
        return self.request("GET", "/")[1] or {}

    def whoami(self) -> dict[str, Any]:
        return self.request("GET", "/user")[1] or {}

    # ------------------------------------------------------------------ users
    def users(self) -> list[User]:
        """Every user, following JupyterHub's pagination."""
        out: list[User] = []
        offset = 0
        while True:
            _, page = self.request("GET", f"/users?include_stopped_servers=0&offset={offset}&limit=200")
            items = page.get("items", []) if isinstance(page, dict) else (page or [])
            out += [parse_user(u) for u in items]
            nxt = (page.get("_pagination") or {}).get("next") if isinstance(page, dict) else None
            if not items or not nxt:
                return out
            offset = int(nxt.get("offset", offset + len(items)))

    def user(self, name: str) -> User | None:
        status, data = self.request("GET", f"/users/{_q(name)}", ok=(200, 404))
        return parse_user(data) if status == 200 and data else None

    def create_user(self, name: str, admin: bool = False) -> User:
        _, data = self.request("POST", f"/users/{_q(name)}", body={"admin": admin} if admin else None)
        return parse_user(data)

    def set_admin(self, name: str, admin: bool) -> User:
        _, data = self.request("PATCH", f"/users/{_q(name)}", body={"admin": admin})
        return parse_user(data)

    def delete_user(self, name: str) -> bool:
        """True if deleted, False if there was no such user."""
        status, _ = self.request("DELETE", f"/users/{_q(name)}", ok=(204, 404))
        return status == 204

    # ------------------------------------------------------------------ servers
    def start_server(self, name: str) -> int:
        """201: started; 202: starting (poll with wait_server); 400 'already running' counts as started."""
        status, data = self.request("POST", f"/users/{_q(name)}/server", ok=(201, 202, 400))
        if status == 400:
            if "already running" in _message(data, b"") or "pending" in _message(data, b""):
                return 201
            raise HubAPIError(f"POST /users/{name}/server: HTTP 400: {_message(data, b'')}", 400)
        return status

    def stop_server(self, name: str) -> int:
        """204: stopped; 202: stopping; 400 (not running) and 404 count as stopped (204)."""
        status, _ = self.request("DELETE", f"/users/{_q(name)}/server", ok=(202, 204, 400, 404))
        return 202 if status == 202 else 204

    def wait_server(self, name: str, ready: bool, timeout: float, every: float = 1.0,
                    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> User | None:
        """Poll until `name`'s default server is ready (ready=True) or stopped (ready=False)."""
        deadline = clock() + timeout
        while True:
            u = self.user(name)
            server = u.servers.get("") if u else None
            if ready and server and server.ready:
                return u
            if not ready and (u is None or (server is None and not u.pending)):
                return u
            if clock() >= deadline:
                state = "no user" if u is None else (f"pending {u.pending}" if u.pending else
                                                     "ready" if server and server.ready else "not running")
                raise HubAPIError(f"{name}: server not {'ready' if ready else 'stopped'} after {timeout:g} s ({state})")
            sleep(every)

    def server_status(self, name: str) -> dict[str, Any]:
        """GET <proxy>/user/<name>/api/status: the user's own server, reached through the proxy."""
        _, data = self.request("GET", "", url=f"{self.root}/user/{_q(name)}/api/status")
        return data or {}

    @property
    def root(self) -> str:
        """The proxy's public URL (the base without /hub/api)."""
        return self.base[: -len("/hub/api")] if self.base.endswith("/hub/api") else self.base

    # ------------------------------------------------------------------ tokens
    def tokens(self, name: str) -> list[dict[str, Any]]:
        _, data = self.request("GET", f"/users/{_q(name)}/tokens")
        return list((data or {}).get("api_tokens", [])) if isinstance(data, dict) else list(data or [])


def api_url(settings: Any, head_address: str) -> str:
    """Where the hub's API answers from this machine: through the proxy.

    Single: the head host's address on hub.port (https on 443 when hub.https is on
    and hub.port is the default). Cluster: the first of hub.hosts (its DNS name),
    else the head's address on hub.port (a NodePort or MetalLB address that the
    head node also answers on).
    """
    h = settings.hub
    scheme = "http" if h.https == "none" else "https"
    host = h.hosts[0] if (h.hosts and (h.https != "none" or settings.topology == "cluster")) else head_address
    port = h.port if h.https == "none" else (443 if h.port == 80 else h.port)
    default = 80 if scheme == "http" else 443
    netloc = host if port == default else f"{host}:{port}"
    if ":" in host and not host.startswith("["):
        netloc = f"[{host}]" + ("" if port == default else f":{port}")
    return f"{scheme}://{netloc}/hub/api"


def _q(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def _json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _message(parsed: Any, raw: bytes) -> str:
    if isinstance(parsed, dict) and parsed.get("message"):
        return " ".join(str(parsed["message"]).split())[:200]
    text = raw.decode("utf-8", "replace").strip() if raw else ""
    return " ".join(text.split())[:200] or "(no message)"
