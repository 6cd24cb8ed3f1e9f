"""testinfra checks of every host, by role. `inv check` runs them (a few pytest processes); so can pytest:

    pytest tests/infra -p no:cacheprovider                          # every host of $COURSEHUB_INVENTORY
    pytest tests/infra -p no:cacheprovider --hosts=node1 --ssh-config=inventory/ssh_config

Settings and inventory come from $COURSEHUB_VARS and $COURSEHUB_INVENTORY (default
./vars.yml, ./inventory), exactly as for the tasks. The project's own `pytest` never
collects this folder (pyproject's testpaths): it needs a target inventory.

Hosts are parametrized as `ssh://<name>` on testinfra's ssh backend (see targets.py);
testinfra's own --hosts and --ssh-config options narrow the hosts and name the config.
Each test module names the role its checks are for (`ROLE`, "" for every host); a test
marked `@pytest.mark.topology("single")` runs only when vars.yml has that topology.

A check names its read-only command with `@pytest.mark.probe(command=facts.<what>_command)`
and judges the `probed` output. When collection is done, every selected host is logged
into and its checks' commands run together: one round trip per host, --check-threads
hosts at once. The checks themselves then only judge. A host that cannot be logged into
fails `test_ssh`, and its other checks are skipped. Every check only reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.infra.targets import Targets

if TYPE_CHECKING:
    import testinfra.host

    from coursehub.inventory import Host, Inventory
    from coursehub.settings import Settings

NOT_CHECKED = "not checked: no login (see ssh)"
_TARGETS: list[Targets] = []  # this process's one Targets, made on first use


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("coursehub").addoption(
        "--check-threads", type=int, default=20, dest="check_threads",
        help="how many hosts this process reads at once (inv check: vars.yml `parallel` over its processes)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topology(name): only for vars.yml topology `name` (cluster or single)")
    config.addinivalue_line("markers", "probe(command=fn): the read-only command(host, settings) whose output the "
                            "check judges; a host's commands all run in one round trip (fixture `probed`)")


def targets(config: pytest.Config) -> Targets:
    if not _TARGETS:
        from coursehub.inventory import InventoryError
        from coursehub.settings import SettingsError

        try:
            _TARGETS.append(Targets.load(config.getoption("ssh_config")))
        except (SettingsError, InventoryError) as e:
            raise pytest.UsageError(str(e)) from None
    return _TARGETS[0]


def _wanted(config: pytest.Config) -> list[str]:
    """Host names from testinfra's --hosts (ssh://name or name), [] for all."""
    raw = config.getoption("hosts") or ""
    return [h.strip().removeprefix("ssh://").split("?")[0] for h in raw.split(",") if h.strip()]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "host" in metafunc.fixturenames:
        chosen = targets(metafunc.config).select(_wanted(metafunc.config), getattr(metafunc.module, "ROLE", ""))
        names = [h.name for h in chosen]
        metafunc.parametrize("host", names, ids=[f"ssh://{n}" for n in names], indirect=True, scope="module")


def _applies(item: pytest.Item, topology: str) -> bool:
    """False for the other topology's checks and for a role no selected host has (an empty parameter set)."""
    mark = item.get_closest_marker("topology")
    if mark is not None and mark.args[0] != topology:
        return False
    callspec = getattr(item, "callspec", None)
    return callspec is None or isinstance(callspec.params.get("host", ""), str)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the checks that do not apply here (not failures: just not this deployment's or these hosts')."""
    topology = targets(config).settings.topology
    keep, drop = [], []
    for item in items:
        (keep if _applies(item, topology) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="module")
def host(request: pytest.FixtureRequest) -> testinfra.host.Host:
    """The testinfra host under check (overrides the plugin's `host` with our parametrization)."""
    return targets(request.config).host(request.param)


@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest) -> Settings:
    return targets(request.config).settings


@pytest.fixture(scope="session")
def inventory(request: pytest.FixtureRequest) -> Inventory:
    return targets(request.config).inventory


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest, host: testinfra.host.Host) -> Host:
    """The inventory's record of the host under check (roles, user, volumes)."""
    return targets(request.config).inventory.get(host.backend.hostname)


@pytest.fixture
def login(request: pytest.FixtureRequest, host: testinfra.host.Host) -> str:
    """'' when the host can be logged into as root, else why not."""
    return targets(request.config).login_problem(host)


@pytest.fixture
def probed(request: pytest.FixtureRequest, host: testinfra.host.Host) -> str:
    """The output of this check's `probe` command on this host (read before the checks ran)."""
    t = targets(request.config)
    name = host.backend.hostname
    if name not in t.outputs:  # not prefetched (run by hand with a plugin that reorders?): read it now
        t.probe(host, commands(request.session.items)[name])
    return t.outputs[name].get(request.node.originalname, "")


def commands(items: list[pytest.Item]) -> dict[str, dict[str, str]]:
    """host -> check -> the command of each selected check that has a `probe` mark."""
    t = _TARGETS[0]
    out: dict[str, dict[str, str]] = {}
    for item in items:
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("host") if callspec is not None else None
        if isinstance(name, str):
            cmds = out.setdefault(name, {})
            mark = item.get_closest_marker("probe")
            if mark is not None:
                cmds[item.originalname] = mark.kwargs["command"](t.inventory.get(name), t.settings)
    return out


def pytest_collection_finish(session: pytest.Session) -> None:
    """Read every selected host before any check runs: logins and probes, --check-threads hosts at once."""
    if _TARGETS and not session.config.getoption("collectonly"):
        _TARGETS[0].prefetch(commands(session.items), session.config.getoption("check_threads"))


@pytest.fixture(autouse=True)
def _reachable(request: pytest.FixtureRequest) -> None:
    """Skip a host's checks when it cannot be logged into (test_ssh fails and says why)."""
    if "host" not in request.fixturenames or request.node.originalname == "test_ssh":
        return
    if targets(request.config).login_problem(request.getfixturevalue("host")):
        pytest.skip(NOT_CHECKED)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _TARGETS:
        _TARGETS[0].close()
