"""Idempotent host steps: probe, decide, apply, verify.

A step reads the host's state (`probe`, read-only, so it also runs under
--dry-run), turns the difference from the wanted state into actions that each
say why (`decide`; an empty list means "already ok"), applies them in order,
and verifies by deciding again on a fresh probe. A second run therefore plans
nothing, changes nothing and restarts nothing: a restart is an action that is
only emitted when a configuration file it depends on changed.

Concrete steps live in the modules of this package, one per concern.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from coursehub.fleet import Remote


@dataclass
class Action:
    """One change to a host, and the reason for it (shown in plans and reports).

    Exactly one of `command` (a shell command, run as root) or `fn` (a function
    given the Remote) does the work. `always` marks actions that cannot be
    idempotent (a reboot, an ad hoc command): the plan flags them.
    """

    why: str
    command: str | None = None
    fn: Callable[[Remote], Any] | None = None
    label: str = ""
    always: bool = False
    secret: bool = False  # the command text itself must not be shown

    def describe(self) -> str:
        what = self.label or ("(secret command)" if self.secret else self.command) or "update"
        return f"{what}  # {self.why}"

    def run(self, remote: Remote) -> Any:
        if self.fn is not None:
            return self.fn(remote)
        assert self.command is not None, "an Action needs a command or a fn"
        return remote.run(self.command)


class Step:
    """Base class: subclasses write probe() and decide(); apply and verify are shared."""

    name: str = "step"

    def probe(self, remote: Remote) -> Any:
        raise NotImplementedError

    def decide(self, fact: Any, remote: Remote) -> list[Action]:
        raise NotImplementedError

    def apply(self, remote: Remote, actions: Sequence[Action]) -> list[Any]:
        return [a.run(remote) for a in actions]

    def verify(self, remote: Remote) -> list[Action]:
        """What is still left to do after apply; empty means the step converged."""
        return [a for a in self.decide(self.probe(remote), remote) if not a.always]


# ----------------------------------------------------------------------------- files
@dataclass(frozen=True)
class FileFact:
    """What a host has at a path: sha256 of the content, mode, owner and group (None: no file)."""

    sha256: str | None
    mode: str = ""
    owner: str = ""
    group: str = ""


def file_probe_command(path: str) -> str:
    """One read-only command that prints `sha256 mode owner group` or `missing`."""
    q = shlex.quote(path)
    return f"if [ -f {q} ]; then printf '%s ' $(sha256sum {q} | cut -d' ' -f1); stat -c '%a %U %G' {q}; else echo missing; fi"


def parse_file_fact(text: str) -> FileFact:
    parts = text.split()
    if not parts or parts[0] == "missing" or len(parts) != 4:
        return FileFact(None)
    return FileFact(parts[0], parts[1], parts[2], parts[3])


@dataclass(frozen=True)
class FileSpec:
    """A file a step wants on the host, exactly."""

    path: str
    text: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    secret: bool = False
    sha256: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha256", hashlib.sha256(self.text.encode()).hexdigest())

    def differences(self, fact: FileFact) -> list[str]:
        if fact.sha256 is None:
            return ["missing"]
        diffs = []
        if fact.sha256 != self.sha256:
            diffs.append("content differs")
        if fact.mode.lstrip("0") != f"{self.mode:o}".lstrip("0"):
            diffs.append(f"mode {fact.mode} (want {self.mode:o})")
        if (fact.owner, fact.group) != (self.owner, self.group):
            diffs.append(f"owner {fact.owner}:{fact.group} (want {self.owner}:{self.group})")
        return diffs


def put_text(spec: FileSpec, why: str) -> Action:
    """An action installing `spec` through a temporary file and a rename."""
    return Action(why=why, fn=lambda r: r.put(spec), label=f"write {spec.path} ({spec.mode:04o} {spec.owner}:{spec.group})")


def ensure_file(spec: FileSpec, fact: FileFact) -> list[Action]:
    """[] if the host's file already is `spec`, else one put_text action saying what differs."""
    diffs = spec.differences(fact)
    return [put_text(spec, ", ".join(diffs))] if diffs else []


class Files(Step):
    """Install a set of files; optionally run a command (e.g. a restart) when any changed."""

    def __init__(self, name: str, files: Sequence[FileSpec], on_change: str = "", on_change_why: str = ""):
        self.name = name
        self.files = list(files)
        self.on_change = on_change
        self.on_change_why = on_change_why

    def probe(self, remote: Remote) -> list[FileFact]:
        out = remote.run(" ; ".join(file_probe_command(f.path) for f in self.files)).stdout
        return [parse_file_fact(line) for line in out.splitlines()]

    def decide(self, fact: list[FileFact], remote: Remote) -> list[Action]:
        actions = [a for spec, ff in zip(self.files, fact, strict=True) for a in ensure_file(spec, ff)]
        if actions and self.on_change:
            actions.append(Action(why=self.on_change_why or "configuration changed", command=self.on_change))
        return actions

    def verify(self, remote: Remote) -> list[Action]:
        # The on_change command has run once; only the files themselves must match now.
        return [a for a in self.decide(self.probe(remote), remote) if a.command != self.on_change]


class Exec(Step):
    """An ad hoc command on every host (`inv ops.exec`): always runs, output kept."""

    name = "exec"

    def __init__(self, command: str):
        self.command = command

    def probe(self, remote: Remote) -> None:
        return None

    def decide(self, fact: None, remote: Remote) -> list[Action]:
        return [Action(why="ad hoc command", fn=lambda r: r.run(self.command, check=False).keep(), label=self.command, always=True)]

    def verify(self, remote: Remote) -> list[Action]:
        return []
