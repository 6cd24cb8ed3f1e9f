"""The lab API on 127.0.0.1:<free port> in a daemon thread (memory backend), shared by the module's tests.

`lab` is one LabAPI for the whole session, reset before every test (servers,
volumes, keypairs, groups, faults, journal and knobs; tokens survive, so the
session's `conn` stays logged in). `clock` is the lab's clock: tests step it
instead of sleeping. `connect(**options)` makes a fresh openstacksdk connection
(for retry and timeout options).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"

import openstack  # noqa: E402

from coursehub.lab.api import LabAPI  # noqa: E402
from coursehub.lab.memory import MemoryBackend  # noqa: E402


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """openstacksdk's deprecation chatter is not ours; a discovery problem it warns about is an error here."""
    for item in items:
        if "lab_api" in item.nodeid:
            item.add_marker(pytest.mark.filterwarnings("ignore::PendingDeprecationWarning"))
            item.add_marker(pytest.mark.filterwarnings("ignore::DeprecationWarning"))
            item.add_marker(pytest.mark.filterwarnings("error::openstack.warnings.UnsupportedServiceVersion"))


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture(scope="session")
def lab_session(backend: MemoryBackend, clock: FakeClock) -> Iterator[LabAPI]:
    api = LabAPI(backend, clock=clock).start()
    yield api
    api.stop()


@pytest.fixture
def lab(lab_session: LabAPI, backend: MemoryBackend, clock: FakeClock) -> LabAPI:
    clock.now = 1000.0          # every test starts at the same time, so session tokens stay valid
    lab_session.reset()
    backend.fail, backend.ready_after = None, 0
    backend.calls.clear()
    backend.faults.clear()
    return lab_session


@pytest.fixture(scope="session")
def connect(lab_session: LabAPI) -> Callable[..., openstack.connection.Connection]:
    def make(**options: Any) -> openstack.connection.Connection:
        return openstack.connect(**lab_session.connect_kwargs(), **options)
    return make


@pytest.fixture(scope="session")
def conn_session(connect: Callable[..., openstack.connection.Connection]) -> openstack.connection.Connection:
    return connect()


@pytest.fixture
def conn(lab: LabAPI, conn_session: openstack.connection.Connection) -> openstack.connection.Connection:
    return conn_session


@pytest.fixture
def http(lab: LabAPI, conn: openstack.connection.Connection) -> Callable[..., requests.Response]:
    """Raw HTTP to the lab with the session's token: http("GET", "/compute/v2.1/servers", mv="2.1")."""
    def call(method: str, path: str, *, mv: str | None = None, token: bool = True, **kw: Any) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        if token:
            headers["X-Auth-Token"] = conn.auth_token
        if mv:
            service = "volume" if path.startswith("/volume") else "compute"
            headers["OpenStack-API-Version"] = f"{service} {mv}"
        return requests.request(method, lab.url + path, headers=headers, timeout=10, **kw)
    return call


@pytest.fixture
def ids(lab: LabAPI) -> dict[str, str]:
    """Seeded ids: flavor m3.small, the Debian image, the lab network, the project."""
    st = lab.state
    return {
        "flavor": next(f["id"] for f in st.flavors.values() if f["name"] == "m3.small"),
        "image": next(i["id"] for i in st.images.values() if i["name"].startswith("Debian")),
        "network": st.network["id"],
        "project": st.project_id,
    }


@pytest.fixture
def journal(lab: LabAPI) -> Callable[[], list[str]]:
    """journal() -> ['METHOD path status', ...] for every request since the test began."""
    return lambda: [f"{e['method']} {e['path']} {e['status']}" for e in lab.journal.entries()]
