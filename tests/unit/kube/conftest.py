"""Fakes for the Kubernetes step tests: a Remote that answers scripted commands and fails on any other."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from coursehub import settings as settings_mod
from coursehub.fleet import CommandFailed, Out
from coursehub.inventory import Host, Inventory

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


class FakeConn:
    """Stands in for a Fabric connection: records stdin-fed commands."""

    def __init__(self, remote: FakeRemote):
        self.remote = remote

    def run(self, line, hide=True, warn=True, in_stream=None, timeout=None):
        data = in_stream.read() if in_stream is not None else ""
        self.remote.stdin_runs.append((line, data))
        out = self.remote._answer(line)

        @dataclasses.dataclass
        class R:
            stdout: str
            stderr: str
            exited: int

        return R(out.stdout, out.stderr, out.rc)


class FakeRemote:
    """`answers`: (regex, stdout[, rc]) tried in order; an unknown command fails the test (MockContext style)."""

    def __init__(self, answers=(), host: Host | None = None, strict: bool = True):
        self.answers = [(re.compile(a[0]), a[1], a[2] if len(a) > 2 else 0) for a in answers]
        self.host = host or Host(name="head", address="10.0.0.5", user="ubuntu", roles=["head"])
        self.commands: list[str] = []
        self.stdin_runs: list[tuple[str, str]] = []
        self.puts = []
        self.kept: list[str] = []
        self.sudo = ""
        self.strict = strict
        self.conn = FakeConn(self)

    def redact(self, text: str) -> str:
        from coursehub import secrets

        return secrets.KNOWN(text)

    def _answer(self, command: str) -> Out:
        for rx, stdout, rc in self.answers:
            if rx.search(command):
                return Out(stdout, "" if rc == 0 else "error", rc, None)
        if self.strict:
            raise AssertionError(f"unexpected command: {command}")
        return Out("", "", 0, None)

    def run(self, command: str, check: bool = True, timeout=None) -> Out:
        self.commands.append(command)
        out = self._answer(command)
        if check and out.rc != 0:
            raise CommandFailed(command, out.rc, out.stdout, out.stderr)
        return Out(out.stdout, out.stderr, out.rc, self)

    def put(self, spec) -> None:
        self.puts.append(spec)


@pytest.fixture
def settings():
    return settings_mod.load(ROOT / "vars.yml")


def with_(s, **groups):
    """A copy of Settings with some groups' fields replaced: with_(s, kubernetes={"cni": "flannel"})."""
    changes = {g: dataclasses.replace(getattr(s, g), **v) for g, v in groups.items()}
    return dataclasses.replace(s, **changes)


@pytest.fixture
def inv(tmp_path):
    return Inventory(dir=tmp_path / "inventory", hosts=[
        Host(name="head", address="10.0.0.5", user="ubuntu", roles=["head", "storage"]),
        Host(name="w1", address="10.0.0.6", user="ubuntu"),
        Host(name="w2", address="10.0.0.7", user="ubuntu"),
    ])
