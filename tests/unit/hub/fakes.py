"""Thin fakes for hub tests: a Remote that records commands, a scripted hub API, settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coursehub.fleet import CommandFailed, Out
from coursehub.settings import Settings, from_dict


def make_settings(**sections: Any) -> Settings:
    data: dict[str, Any] = {"instances": {"flavor": "m3.large", "image": "ubuntu"},
                            "network": {"admin_cidr": "10.0.0.0/8"},
                            "users": {"auth": "dummy", "allowed": ["alice", "bob"], "admins": ["teacher"]}}
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return from_dict(data)


@dataclass
class FakeRemote:
    """Records every command; answers from `replies` (first matching prefix/substring) or with empty success."""

    replies: list[tuple[str, str]] = field(default_factory=list)
    fail: Callable[[str], bool] = lambda cmd: False
    commands: list[str] = field(default_factory=list)
    puts: list[Any] = field(default_factory=list)

    def run(self, command: str, check: bool = True, timeout: float | None = None) -> Out:
        self.commands.append(command)
        if self.fail(command):
            if check:
                raise CommandFailed(command, 1, "", "boom")
            return Out("", "boom", 1)
        for needle, answer in self.replies:
            if needle in command:
                return Out(answer, "", 0)
        return Out("", "", 0)

    def put(self, spec: Any) -> None:
        self.puts.append(spec)
        self.commands.append(f"put {spec.path} {spec.mode:04o}")
