"""The REST client's error handling, against a tiny local http.server (127.0.0.1 only)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from coursehub.hub.rest import HubAPI, HubAPIError, api_url, parse_user
from tests.unit.hub.fakes import make_settings

TOKEN = "s3cr3t-token-value"
ROUTES: dict[tuple[str, str], tuple[int, object]] = {}
SEEN: list[tuple[str, str, str, bytes]] = []


class Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        SEEN.append((self.command, self.path, self.headers.get("Authorization", ""), self.rfile.read(length)))
        status, body = ROUTES.get((self.command, self.path), (404, {"status": 404, "message": "Not Found"}))
        if body == "slow":
            import time

            time.sleep(0.8)
            body = {}
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = do_DELETE = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api() -> Iterator[HubAPI]:
    ROUTES.clear()
    SEEN.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield HubAPI(f"http://127.0.0.1:{server.server_port}/hub/api", TOKEN, timeout=0.4)
    finally:
        server.shutdown()
        server.server_close()


def test_token_in_header_never_in_errors(api: HubAPI) -> None:
    ROUTES[("GET", "/hub/api/")] = (403, {"status": 403, "message": "Action is not authorized with current scopes"})
    with pytest.raises(HubAPIError) as e:
        api.info()
    assert e.value.status == 403
    assert "GET /: HTTP 403: Action is not authorized" in str(e.value)
    assert TOKEN not in str(e.value) and TOKEN not in repr(api)
    assert SEEN[0][2] == f"token {TOKEN}"


def test_non_json_error_body(api: HubAPI) -> None:
    ROUTES[("GET", "/hub/api/users/x")] = (502, b"<html>Bad Gateway</html>")
    with pytest.raises(HubAPIError, match="HTTP 502: <html>Bad Gateway</html>"):
        api.user("x")


def test_timeout_is_an_api_error(api: HubAPI) -> None:
    ROUTES[("GET", "/hub/api/")] = (200, "slow")
    with pytest.raises(HubAPIError, match="no answer"):
        api.info()


def test_nothing_listening() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HubAPIError, match="no answer"):
        HubAPI(f"http://127.0.0.1:{port}/hub/api", TOKEN, timeout=1).info()


def test_missing_user_and_idempotent_cleanup(api: HubAPI) -> None:
    assert api.user("ghost") is None
    assert api.delete_user("ghost") is False
    assert api.stop_server("ghost") == 204
    ROUTES[("DELETE", "/hub/api/users/alice/server")] = (202, None)
    assert api.stop_server("alice") == 202


def test_start_already_running_counts_as_started(api: HubAPI) -> None:
    ROUTES[("POST", "/hub/api/users/alice/server")] = (400, {"status": 400, "message": "alice is already running"})
    assert api.start_server("alice") == 201
    ROUTES[("POST", "/hub/api/users/bob/server")] = (400, {"status": 400, "message": "bad options"})
    with pytest.raises(HubAPIError, match="bad options"):
        api.start_server("bob")


def test_users_pagination_and_quoting(api: HubAPI) -> None:
    page1 = {"items": [{"name": "a", "admin": True, "servers": {"": {"ready": True}}}],
             "_pagination": {"offset": 0, "limit": 1, "total": 2, "next": {"offset": 1}}}
    page2 = {"items": [{"name": "b@x.edu", "last_activity": "2026-01-01T00:00:00Z"}], "_pagination": {"next": None}}
    ROUTES[("GET", "/hub/api/users?include_stopped_servers=0&offset=0&limit=200")] = (200, page1)
    ROUTES[("GET", "/hub/api/users?include_stopped_servers=0&offset=1&limit=200")] = (200, page2)
    users = api.users()
    assert [u.name for u in users] == ["a", "b@x.edu"] and users[0].running and not users[1].running
    ROUTES[("POST", "/hub/api/users/b%40x.edu")] = (201, {"name": "b@x.edu"})
    assert api.create_user("b@x.edu").name == "b@x.edu"


def test_wait_server_times_out_with_state(api: HubAPI) -> None:
    ROUTES[("GET", "/hub/api/users/alice")] = (200, {"name": "alice", "pending": "spawn", "servers": {}})
    t = iter(range(100))
    with pytest.raises(HubAPIError, match="not ready after 3 s .pending spawn."):
        api.wait_server("alice", ready=True, timeout=3, clock=lambda: next(t), sleep=lambda s: None)


def test_server_status_goes_through_the_proxy_root(api: HubAPI) -> None:
    ROUTES[("GET", "/user/alice/api/status")] = (200, {"started": "now", "kernels": 0})
    assert api.server_status("alice")["started"] == "now"


def test_parse_user() -> None:
    u = parse_user({"name": "x", "servers": {"": {"ready": False, "pending": "stop"}}})
    assert u.running and not u.admin


def test_api_url() -> None:
    assert api_url(make_settings(topology="single"), "10.77.0.11") == "http://10.77.0.11/hub/api"
    assert api_url(make_settings(topology="single", hub={"port": 8000}), "10.77.0.11") == "http://10.77.0.11:8000/hub/api"
    manual = make_settings(topology="single", users={"auth": "native"},
                           hub={"https": "manual", "hosts": ["hub.example.edu"], "tls_cert_file": "c", "tls_key_file": "k"})
    assert api_url(manual, "10.77.0.11") == "https://hub.example.edu/hub/api"
    assert api_url(make_settings(hub={"hosts": ["hub.example.edu"]}), "10.0.0.5") == "http://hub.example.edu/hub/api"
