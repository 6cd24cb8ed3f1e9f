"""The health check's order, retries and cleanup, with a scripted in-memory hub API."""

from __future__ import annotations

import pytest

from coursehub.hub import health
from coursehub.hub.rest import HubAPIError, User


class FakeAPI:
    base, root = "http://hub/hub/api", "http://hub"

    def __init__(self, leftover: bool = False, fail_status: int = 0):
        self.users_: dict[str, bool] = {health.TEST_USER: False} if leftover else {}
        self.calls: list[str] = []
        self.fail_status = fail_status  # how many server_status calls fail first

    def info(self):
        return {"version": "5.5.4"}

    def user(self, name):
        self.calls.append(f"user {name}")
        return User(name, False, None) if name in self.users_ else None

    def create_user(self, name):
        self.calls.append(f"create {name}")
        self.users_[name] = False

    def delete_user(self, name):
        self.calls.append(f"delete {name}")
        return self.users_.pop(name, None) is not None

    def start_server(self, name):
        self.calls.append(f"start {name}")
        self.users_[name] = True
        return 202

    def stop_server(self, name):
        self.calls.append(f"stop {name}")
        self.users_[name] = False
        return 202

    def wait_server(self, name, ready, timeout):
        self.calls.append(f"wait {'ready' if ready else 'stopped'}")

    def server_status(self, name):
        self.calls.append("proxy")
        if self.fail_status:
            self.fail_status -= 1
            raise HubAPIError("GET /user/x/api/status: HTTP 503: proxy has no route", 503)
        return {"started": "now", "kernels": []}


def test_happy_path_order_and_cleanup() -> None:
    api, removed = FakeAPI(), []
    r = health.check(api, attempts=1, log=lambda s: None, remove_host_user=removed.append, pause=0)
    assert r.ok and r.attempts == 1
    core = [c for c in api.calls if not c.startswith("user ")]
    assert core == [f"create {health.TEST_USER}", f"start {health.TEST_USER}", "wait ready", "proxy",
                    f"stop {health.TEST_USER}", "wait stopped", f"stop {health.TEST_USER}", "wait stopped",
                    f"delete {health.TEST_USER}"]
    assert api.users_ == {} and removed == [health.TEST_USER, health.TEST_USER]


def test_leftover_user_is_removed_first() -> None:
    api = FakeAPI(leftover=True)
    assert health.check(api, attempts=1, log=lambda s: None, pause=0).ok
    core = [c for c in api.calls if not c.startswith("user ")]
    assert core[:3] == [f"stop {health.TEST_USER}", "wait stopped", f"delete {health.TEST_USER}"]
    assert core[3] == f"create {health.TEST_USER}"


def test_failure_is_retried_and_always_cleaned_up() -> None:
    api = FakeAPI(fail_status=1)
    r = health.check(api, attempts=2, log=lambda s: None, pause=0)
    assert r.ok and r.attempts == 2 and "HTTP 503" in r.errors[0]
    assert api.users_ == {}


@pytest.mark.parametrize("attempts", [1, 3])
def test_gives_up_after_attempts(attempts: int) -> None:
    api = FakeAPI(fail_status=99)
    r = health.check(api, attempts=attempts, log=lambda s: None, pause=0)
    assert not r.ok and r.attempts == attempts and len(r.errors) == attempts
    assert api.users_ == {}
