"""What the host steps share: one-command probes cut into sections, unit states, sizes.

A step's probe is ONE read-only remote command that prints everything the step
needs, in named sections, and a pure parser that turns the text into a fact:

    cmd = sections(swaps="cat /proc/swaps", fstab="cat /etc/fstab")
    parse_sections(remote.run(cmd).stdout) == {"swaps": "...", "fstab": "..."}

`ProbeStep` wires that up: a subclass writes `command(host)` and `parse(text, host)`,
so unit tests feed canned text to `parse` and `decide` without any host.

(Candidates for coursehub/steps/__init__.py once they have settled.)
"""

from __future__ import annotations

import contextlib
import re
import shlex
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coursehub.steps import Action, FileFact, FileSpec, Step, parse_file_fact

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host

MARK = "@@coursehub "


class HostRefused(Exception):
    """The host is in a state this step must not touch (or cannot work with): one sentence why."""


# ----------------------------------------------------------------------------- sections
def sections(**commands: str) -> str:
    """One shell command printing each command's stdout under a `@@coursehub <name>` line.

    Each part runs in its own group with stderr dropped and its exit status
    ignored, so a missing tool or file gives an empty section, never a failed probe.
    """
    parts = [f"echo '{MARK}{name}'; {{ {cmd.strip().rstrip(';')} ; }} 2>/dev/null" for name, cmd in commands.items()]
    return "; ".join(parts) + "; true"


def parse_sections(text: str) -> dict[str, str]:
    """The inverse of sections(): name -> that part's output (each line ending in a newline)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(MARK):
            current = out.setdefault(line[len(MARK):].strip(), [])
        elif current is not None:
            current.append(line + "\n")
    return {k: "".join(v) for k, v in out.items()}


class ProbeStep(Step):
    """A step whose probe is one command (`command`) and a pure parser (`parse`).

    Probe and apply run `guarded`: a connection that drops mid-command makes the
    host unreachable (not failed), and a failing action is named by its label.
    """

    def command(self, host: Host) -> str:
        raise NotImplementedError

    def parse(self, text: str, host: Host) -> Any:
        raise NotImplementedError

    def probe(self, remote: Remote) -> Any:
        no_delay(remote)
        with guarded(remote, f"probe {self.name}"):
            text = remote.run(self.command(remote.host)).stdout
        return self.parse(text, remote.host)

    def apply(self, remote: Remote, actions: Sequence[Action]) -> list[Any]:
        out = []
        for a in actions:
            with guarded(remote, a.label or a.command or a.why):
                out.append(a.run(remote))
        return out


def no_delay(remote: Any) -> None:
    """TCP_NODELAY on the host's SSH socket: a command then takes ~15 ms instead of ~50 ms.

    Measured on the lab: without it every short command waits out a 40 ms delayed ACK.
    (Belongs in fleet.connect; setting it again is harmless.)
    """
    sock = getattr(getattr(getattr(remote, "conn", None), "transport", None), "sock", None)
    if sock is not None and hasattr(sock, "setsockopt"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def connection_lost(remote: Any) -> bool:
    """True when the host's SSH transport is gone (a real Remote; fakes never lose theirs)."""
    conn = getattr(remote, "conn", None)
    if conn is None:
        return False
    transport = getattr(conn, "transport", None)
    return transport is None or not transport.is_active()


@contextlib.contextmanager
def guarded(remote: Any, label: str) -> Iterator[None]:
    """Report a dropped connection as Unreachable, and a failed command by `label` (not a long script).

    A command that ends without an exit status (rc -1) while the transport is down
    was cut off by the host going away (power, network), not by the command.
    (A candidate for fleet.Remote.run itself.)
    """
    from coursehub import fleet

    try:
        yield
    except fleet.CommandFailed as e:
        if e.rc == -1 and connection_lost(remote):
            raise fleet.Unreachable(f"connection lost during `{label}`") from None
        if label and label != e.command and len(e.command) > 100:
            raise fleet.CommandFailed(label, e.rc, e.stdout, e.stderr) from None
        raise
    except (OSError, EOFError, ConnectionError) as e:
        if connection_lost(remote):
            raise fleet.Unreachable(f"connection lost during `{label}`: {e}") from None
        raise
    except Exception as e:  # paramiko.SSHException from a dead session (sftp), without importing paramiko here
        if type(e).__name__.endswith("SSHException") and connection_lost(remote):
            raise fleet.Unreachable(f"connection lost during `{label}`: {e}") from None
        raise


# ----------------------------------------------------------------------------- systemd units
SHOW_PROPS = "Id,LoadState,ActiveState,SubState,UnitFileState,ActiveEnterTimestamp,ConditionResult,ConditionTimestamp"


@dataclass(frozen=True)
class Unit:
    """A systemd unit as `systemctl show` describes it."""

    id: str
    load: str = "not-found"  # loaded, not-found, masked
    active: str = "inactive"  # active, inactive, failed, activating ...
    enabled: str = ""  # enabled, disabled, masked, static, "" (no unit file)
    since: int = 0  # unix time it last became active; 0: never
    condition_ok: bool = True  # False: its start was skipped by a Condition (e.g. in a container)

    @property
    def exists(self) -> bool:
        return self.load == "loaded"

    @property
    def running(self) -> bool:
        return self.active in ("active", "reloading", "activating")


def units_command(units: Sequence[str]) -> str:
    """`systemctl show` for `units` (one block each, unix timestamps)."""
    return f"systemctl show --timestamp=unix -p {SHOW_PROPS} " + " ".join(shlex.quote(u) for u in units)


def parse_units(text: str, units: Sequence[str]) -> dict[str, Unit]:
    """Blocks of Key=Value (blank-line separated, in the order asked) -> Unit per name asked."""
    blocks = [b for b in re.split(r"\n\s*\n", text.strip()) if b.strip()]
    out: dict[str, Unit] = {}
    for name, block in zip(units, blocks, strict=False):
        kv = parse_kv(block)
        since = kv.get("ActiveEnterTimestamp", "")
        out[name] = Unit(
            id=kv.get("Id", name),
            load=kv.get("LoadState", "not-found") or "not-found",
            active=kv.get("ActiveState", "inactive") or "inactive",
            enabled=kv.get("UnitFileState", ""),
            since=int(since[1:]) if re.fullmatch(r"@\d+", since) else 0,
            # ConditionResult is "no" until a start attempt evaluated it: only a dated "no" counts.
            condition_ok=kv.get("ConditionResult", "yes") != "no" or not kv.get("ConditionTimestamp", ""),
        )
    for name in units:
        out.setdefault(name, Unit(id=name))
    return out


def parse_kv(text: str) -> dict[str, str]:
    """Key=Value lines (systemctl show, os-release, /etc/default files) -> dict; quotes removed."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.lstrip().startswith("#"):
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            out[key.strip()] = value
    return out


def stale_since(unit: Unit, mtimes: Iterable[int]) -> bool:
    """True when a running unit started before one of its configuration files last changed.

    This catches a restart that an earlier, interrupted run never got to: the file
    already has the wanted content, but the service still runs the old one.
    """
    newest = max(mtimes, default=0)
    return unit.running and unit.since > 0 and newest > unit.since


# ----------------------------------------------------------------------------- files
def files_command(specs: Iterable[FileSpec | str]) -> str:
    """One line per path: `sha256 mode owner group mtime` or `missing`."""
    parts = []
    for spec in specs:
        path = spec.path if isinstance(spec, FileSpec) else spec
        q = shlex.quote(path)
        parts.append(f"if [ -f {q} ]; then printf '%s ' $(sha256sum {q} | cut -d' ' -f1); "
                     f"stat -c '%a %U %G %Y' {q}; else echo missing; fi")
    return "; ".join(parts) if parts else "true"


@dataclass(frozen=True)
class FileState:
    fact: FileFact
    mtime: int = 0

    @property
    def exists(self) -> bool:
        return self.fact.sha256 is not None


def parse_files(text: str, count: int) -> list[FileState]:
    lines = text.splitlines()
    out = []
    for i in range(count):
        parts = lines[i].split() if i < len(lines) else []
        if len(parts) == 5:
            out.append(FileState(parse_file_fact(" ".join(parts[:4])), int(parts[4])))
        else:
            out.append(FileState(FileFact(None)))
    return out


def remove_file(path: str, why: str) -> Action:
    return Action(why=why, command=f"rm -f {shlex.quote(path)}", label=f"remove {path}")


# ----------------------------------------------------------------------------- sizes
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """'100M' -> 104857600, '2G', '1.5G', '512K', '4096' (bytes); binary units, case-insensitive."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.I)
    if not m:
        raise ValueError(f"not a size: {text!r} (expected a number with K, M, G or T, such as 100M or 2G)")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def human_size(n: float) -> str:
    """1536 -> '1.5K'; binary units, one decimal below 10."""
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit == "" or abs(n) >= 10 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.0f}T"


def q(text: str) -> str:
    """Shell-quote."""
    return shlex.quote(text)
