"""HTTP plumbing shared by the lab API's services: requests, replies, errors, routing.

Each OpenStack service answers errors in its own shape; `ApiError` carries the
status and message, and `error_body` renders it the way that service does:

- nova, cinder: ``{"itemNotFound": {"code": 404, "message": "..."}}``
- neutron:      ``{"NeutronError": {"type": "NetworkNotFound", "message": "...", "detail": ""}}``
- keystone (and every service's 401, from keystonemiddleware):
                ``{"error": {"code": 401, "title": "Unauthorized", "message": "..."}}``
- glance:       plain text, as webob writes it (``404 Not Found\\n\\n<message>\\n\\n   ``)
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

Headers = dict[str, str]

# nova and cinder name the error body's key after the status.
_NOVA_KEYS = {
    400: "badRequest", 401: "unauthorized", 403: "forbidden", 404: "itemNotFound", 405: "methodNotAllowed",
    406: "notAcceptable", 409: "conflictingRequest", 413: "overLimit", 415: "unsupportedMediaType",
    500: "computeFault", 501: "notImplemented", 503: "serviceUnavailable",
}
_NEUTRON_TYPES = {
    400: "HTTPBadRequest", 403: "HTTPForbidden", 404: "HTTPNotFound", 405: "HTTPMethodNotAllowed",
    409: "HTTPConflict", 500: "HTTPInternalServerError", 503: "HTTPServiceUnavailable",
}


class ApiError(Exception):
    """An error reply; `kind` overrides the body key (nova/cinder) or the type (neutron)."""

    def __init__(self, status: int, message: str, *, kind: str | None = None, headers: Headers | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, dict(headers or {})


@dataclass
class Request:
    """One parsed HTTP request as the service handlers see it."""

    method: str
    path: str                        # without the query string, URL-decoded
    query: dict[str, list[str]]
    headers: dict[str, str]          # lower-case names
    body: bytes
    base_url: str                    # scheme://host:port the client used
    params: dict[str, str] = field(default_factory=dict)   # named groups from the route
    service: str = "nova"
    version: tuple[int, int] = (0, 0)  # the microversion in effect (nova, cinder)
    token: Any = None

    def json(self) -> dict[str, Any]:
        """The JSON body as an object, or a 400 in the service's shape."""
        try:
            data = json.loads(self.body or b"null")
        except ValueError:
            raise ApiError(400, "Malformed request body") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Malformed request body: the body must be a JSON object")
        return data

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The last value of a query parameter."""
        values = self.query.get(name)
        return values[-1] if values else default

    def at_least(self, version: str) -> bool:
        """Is the request's microversion at or above `version` ("2.52")?"""
        return self.version >= parse_version(version)


@dataclass
class Response:
    status: int = 200
    body: Any = None                 # dict/list -> JSON, str/bytes -> as is, None -> empty
    headers: Headers = field(default_factory=dict)

    def encode(self) -> tuple[bytes, Headers]:
        headers = dict(self.headers)
        if self.body is None:
            data = b""
        elif isinstance(self.body, bytes):
            data = self.body
        elif isinstance(self.body, str):
            data = self.body.encode()
            headers.setdefault("Content-Type", "text/plain; charset=UTF-8")
        else:
            data = json.dumps(self.body).encode()
            headers.setdefault("Content-Type", "application/json")
        headers["Content-Length"] = str(len(data))
        return data, headers


def error_body(service: str, status: int, message: str, kind: str | None = None) -> Response:
    """Render an error the way `service` does."""
    if status == 401 or service == "keystone":
        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        return Response(status, {"error": {"code": status, "title": title, "message": message}})
    if service == "neutron":
        err = {"type": kind or _NEUTRON_TYPES.get(status, "HTTPError"), "message": message, "detail": ""}
        return Response(status, {"NeutronError": err})
    if service == "glance":
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        return Response(status, f"{status} {phrase}\n\n{message}\n\n   ")
    key = kind or _NOVA_KEYS.get(status, "computeFault")
    inner: dict[str, Any] = {"code": status, "message": message}
    if status == 413:
        inner["retryAfter"] = "0"
    return Response(status, {key: inner})


Handler = Callable[[Request], Response]


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler
    service: str
    auth: bool


class Router:
    """Regex routes; `{name}` in a template matches one path segment."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, handler: Handler, service: str, auth: bool = True) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
        self.routes.append(Route(method, re.compile(f"^{regex}/?$"), handler, service, auth))

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, params, path_known): path_known tells 405 from 404 when route is None."""
        path_known = False
        for route in self.routes:
            m = route.pattern.match(path)
            if m:
                if route.method == method or (method == "HEAD" and route.method == "GET"):
                    return route, m.groupdict(), True
                path_known = True
        return None, {}, path_known


def service_of(path: str) -> str:
    """Which service a path belongs to (for error shapes of unrouted paths and faults)."""
    head = path.lstrip("/").split("/", 1)[0]
    return {"identity": "keystone", "compute": "nova", "network": "neutron", "volume": "cinder",
            "image": "glance"}.get(head, "nova")


# ----------------------------------------------------------------------------- microversions

def parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.strip().partition(".")
    return int(major), int(minor or 0)


def negotiate(req: Request, service: str, minimum: str, maximum: str, legacy: str | None = None) -> tuple[int, int]:
    """The microversion the client asked for (default: the minimum), or a 406."""
    asked = None
    for part in req.headers.get("openstack-api-version", "").split(","):
        name, _, value = part.strip().partition(" ")
        if name.lower() == service and value.strip():
            asked = value.strip()
    if asked is None and legacy:
        asked = req.headers.get(legacy.lower()) or None
    lo, hi = parse_version(minimum), parse_version(maximum)
    if asked is None:
        return lo
    if asked.lower() == "latest":
        return hi
    try:
        wanted = parse_version(asked)
    except ValueError:
        raise ApiError(400, f"Invalid API version request string: {asked}") from None
    if not lo <= wanted <= hi:
        raise ApiError(406, f"Version {asked} is not supported by the API. Minimum is {minimum} and maximum is {maximum}.")
    return wanted


def version_headers(service: str, version: tuple[int, int], legacy: str | None = None) -> Headers:
    text = f"{version[0]}.{version[1]}"
    headers = {"OpenStack-API-Version": f"{service} {text}", "Vary": "OpenStack-API-Version"}
    if legacy:
        headers[legacy] = text
        headers["Vary"] += ", " + legacy
    return headers


# ----------------------------------------------------------------------------- lists

_NOT_FILTERS = {"limit", "marker", "sort_key", "sort_dir", "fields", "page_reverse", "all_projects", "all_tenants"}


def filter_by_query(items: Iterable[dict[str, Any]], query: dict[str, list[str]], skip: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Neutron-style filters: every other query key must equal the item's value (any of several)."""
    out = []
    for item in items:
        ok = True
        for key, wanted in query.items():
            if key in _NOT_FILTERS or key in skip:
                continue
            if key not in item:
                continue
            if _text(item[key]) not in {w.lower() if w.lower() in ("true", "false") else w for w in wanted}:
                ok = False
                break
        if ok:
            out.append(item)
    return out


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def paginate(items: list[dict[str, Any]], req: Request, key: str = "id") -> tuple[list[dict[str, Any]], str | None]:
    """Apply `marker` and `limit`; return the page and the next marker (None when this is the last page)."""
    marker = req.arg("marker")
    if marker is not None:
        ids = [str(i.get(key)) for i in items]
        if marker not in ids:
            raise ApiError(400, f"marker [{marker}] not found", kind="MarkerNotFound" if req.service == "neutron" else None)
        items = items[ids.index(marker) + 1:]
    limit_text = req.arg("limit")
    if limit_text is None:
        return items, None
    try:
        limit = int(limit_text)
        if limit < 0:
            raise ValueError
    except ValueError:
        raise ApiError(400, "limit param must be an integer") from None
    if limit == 0 or len(items) <= limit:
        return items if limit == 0 else items[:limit], None
    return items[:limit], str(items[limit - 1].get(key))


def next_link(req: Request, marker: str | None) -> list[dict[str, str]]:
    """A `[{"rel": "next", "href": ...}]` list for nova, neutron and cinder pages."""
    if marker is None:
        return []
    query = {k: v for k, v in req.query.items() if k != "marker"}
    query["marker"] = [marker]
    return [{"rel": "next", "href": f"{req.base_url}{req.path}?{urllib.parse.urlencode(query, doseq=True)}"}]


# ----------------------------------------------------------------------------- time

def iso(ts: float, fraction: bool = False, zulu: bool = True) -> str:
    """A UTC timestamp as OpenStack writes it ("2026-01-02T03:04:05Z" / ".000000")."""
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    if fraction:
        text += f".{int((ts % 1) * 1_000_000):06d}"
    return text + ("Z" if zulu else "")
