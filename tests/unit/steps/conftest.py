"""Fixtures for the host-step tests: canned probe output in, expected actions out. No hosts.

    def test_x(make_settings, fake_remote, lab_host):
        s = make_settings(hosts={"time_sync": "chrony"})
        r = fake_remote(lab_host(), {"systemctl show": "..."})   # command substring -> output
        step.decide(step.parse(text, r.host), r)

`FakeRemote` answers commands by the first key contained in the command and
raises on any other command, so a test also proves which commands were sent.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from coursehub import inventory, settings
from coursehub.fleet import Out
from coursehub.steps import FileSpec

BASE_VARS: dict[str, Any] = {
    "instances": {"flavor": "m3.large", "image": "Debian 12"},
    "network": {"admin_cidr": "10.0.0.0/8"},
    "users": {"auth": "native"},
}


def _merge(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in more.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture
def make_settings() -> Callable[..., settings.Settings]:
    """make_settings(hosts={...}, volumes={...}, ...) -> validated Settings."""

    def make(**sections: Any) -> settings.Settings:
        return settings.from_dict(_merge(BASE_VARS, sections), "vars.yml")

    return make


@pytest.fixture
def lab_host() -> Callable[..., inventory.Host]:
    """lab_host(name="h1", volumes=[{...}], ...) -> a Host."""

    def make(name: str = "h1", address: str = "10.77.0.11", volumes: list[dict[str, Any]] | None = None,
             **kw: Any) -> inventory.Host:
        vols = [inventory.Volume(**v) for v in (volumes or [])]
        return inventory.Host(name=name, address=address, volumes=vols, **kw)

    return make


@pytest.fixture
def make_inventory(tmp_path, lab_host) -> Callable[..., inventory.Inventory]:
    def make(*hosts: inventory.Host) -> inventory.Inventory:
        return inventory.Inventory(dir=tmp_path / "inventory", hosts=list(hosts) or [lab_host()])

    return make


class UnexpectedCommand(AssertionError):
    pass


@dataclass
class FakeRemote:
    """A Remote whose commands get canned output; anything unscripted fails the test."""

    host: inventory.Host
    script: dict[str, str | tuple[str, int]] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)
    puts: list[FileSpec] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def run(self, command: str, check: bool = True, timeout: float | None = None) -> Out:
        self.commands.append(command)
        for key, answer in self.script.items():
            if key in command:
                text, rc = answer if isinstance(answer, tuple) else (answer, 0)
                return Out(text, "", rc, self)  # type: ignore[arg-type]
        raise UnexpectedCommand(f"unexpected command: {command[:200]}")

    def put(self, spec: FileSpec) -> None:
        self.puts.append(spec)


@pytest.fixture
def fake_remote() -> Callable[..., FakeRemote]:
    def make(host: inventory.Host, script: dict[str, Any] | None = None) -> FakeRemote:
        return FakeRemote(host, dict(script or {}))

    return make


def unit_block(name: str, load: str = "loaded", active: str = "active", enabled: str = "enabled",
               since: int | None = 1_700_000_000, condition: str = "yes") -> str:
    """One `systemctl show --timestamp=unix` block, as systemd 252 prints it."""
    stamp = f"@{since}" if since and active == "active" else ""
    return (f"Id={name}\nLoadState={load}\nActiveState={active}\nSubState={'running' if active == 'active' else 'dead'}\n"
            f"UnitFileState={enabled}\nActiveEnterTimestamp={stamp}\nConditionResult={condition}\n"
            f"ConditionTimestamp={'@1700000000' if load == 'loaded' else ''}\n")


@pytest.fixture
def unit() -> Callable[..., str]:
    return unit_block
