"""Time sync: systemd-timesyncd (default) or chrony, with the servers vars.yml names.

`Clock` (bootstrap) makes the chosen daemon enabled and running with
`hosts.ntp_servers` (empty: the distribution's servers). It restarts the daemon
only when its configuration changed, or when the file is newer than the running
daemon (an earlier run that stopped between the write and the restart).

`ResyncClocks` (`inv ops.resync-clocks`, the original's resync-clocks.yml) restarts
the daemon where it is stopped, or running without a sync for longer than a grace
period; a daemon that synced, or started only a moment ago, is left alone, so a
second run changes nothing. `force` restarts everywhere.

A daemon whose start is skipped by a systemd Condition (timesyncd in a container
without CAP_SYS_TIME) cannot run there: both steps leave it alone rather than
restarting it forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action, FileSpec, ensure_file, put_text
from coursehub.steps.probe import (
    FileState,
    HostRefused,
    ProbeStep,
    Unit,
    files_command,
    parse_files,
    parse_sections,
    parse_units,
    remove_file,
    sections,
    stale_since,
    units_command,
)
from coursehub.templates import render

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host
    from coursehub.settings import Settings

TIMESYNCD = "systemd-timesyncd.service"
CHRONY = "chrony.service"
TIMESYNCD_FILE = "/etc/systemd/timesyncd.conf.d/50-coursehub.conf"
CHRONY_CONF = "/etc/chrony/chrony.conf"
CHRONY_SOURCES = "/etc/chrony/sources.d/coursehub.sources"
SOURCEDIR = "sourcedir /etc/chrony/sources.d"
DISABLED = "# disabled by CourseHub (hosts.ntp_servers): "
GRACE_SECONDS = 300
SYNCED_FILE = "/run/systemd/timesync/synchronized"


def packages(settings: Settings) -> list[str]:
    return ["systemd-timesyncd"] if settings.hosts.time_sync == "timesyncd" else ["chrony"]


def chrony_conf_text(current: str, ours: bool) -> str:
    """chrony.conf with the distribution's pool/server lines disabled (ours) or restored (not ours)."""
    out = []
    for line in current.splitlines():
        word = line.split(None, 1)[0] if line.strip() else ""
        if ours and word in ("pool", "server"):
            out.append(DISABLED + line)
        elif not ours and line.startswith(DISABLED):
            out.append(line[len(DISABLED):])
        else:
            out.append(line)
    if ours and not any(ln.strip() == SOURCEDIR for ln in out):
        out.append(SOURCEDIR)
    return "\n".join(out) + "\n"


def service_action(unit: Unit, restart: bool, why_restart: str) -> list[Action]:
    """At most one systemctl line making `unit` enabled and running (restarted if asked)."""
    name = unit.id
    if unit.enabled == "masked":
        return [Action(why="masked", command=f"systemctl unmask {name} && systemctl enable --now {name}")]
    if unit.exists and not unit.condition_ok and not unit.running:
        # systemd skips its start here (e.g. a container without CAP_SYS_TIME): starting it again does nothing.
        return [] if unit.enabled in ("enabled", "static") else [Action(why="disabled", command=f"systemctl enable {name}")]
    if not unit.exists or unit.enabled not in ("enabled", "static", "alias", "indirect", "generated"):
        why = "not installed yet" if not unit.exists else f"{unit.enabled or 'not enabled'}"
        cmd = f"systemctl enable --now {name}" + (f" && systemctl restart {name}" if restart and unit.running else "")
        return [Action(why=why, command=cmd)]
    if not unit.running:
        return [Action(why=f"{unit.active}", command=f"systemctl start {name}")]
    if restart:
        return [Action(why=why_restart, command=f"systemctl restart {name}")]
    return []


@dataclass(frozen=True)
class ClockFacts:
    units: dict[str, Unit]
    files: list[FileState]  # timesyncd drop-in, chrony sources
    chrony_conf: str | None
    synced: bool
    now: int


def _facts_command() -> str:
    return sections(
        units=units_command([TIMESYNCD, CHRONY]),
        files=files_command([TIMESYNCD_FILE, CHRONY_SOURCES]),
        chrony=f"cat {CHRONY_CONF} && echo @@exists",
        synced=f"if [ -e {SYNCED_FILE} ]; then echo yes; elif command -v chronyc >/dev/null; then "
               "chronyc -n tracking | grep -q '^Leap status *: Normal' && echo yes; fi",
        now="date +%s",
    )


def _parse(text: str) -> ClockFacts:
    s = parse_sections(text)
    chrony = s.get("chrony", "")
    now = s.get("now", "").strip()
    return ClockFacts(
        units=parse_units(s.get("units", ""), [TIMESYNCD, CHRONY]),
        files=parse_files(s.get("files", ""), 2),
        chrony_conf=chrony[: -len("@@exists\n")] if chrony.endswith("@@exists\n") else None,
        synced=s.get("synced", "").strip() == "yes",
        now=int(now) if now.isdigit() else 0,
    )


class Clock(ProbeStep):
    """The chosen time daemon enabled, running and using hosts.ntp_servers."""

    name = "clock"

    def __init__(self, settings: Settings):
        self.kind = settings.hosts.time_sync
        self.servers = list(settings.hosts.ntp_servers)

    def command(self, host: Host) -> str:
        return _facts_command()

    def parse(self, text: str, host: Host) -> ClockFacts:
        return _parse(text)

    def decide(self, fact: ClockFacts, remote: Remote) -> list[Action]:
        return self.timesyncd(fact) if self.kind == "timesyncd" else self.chrony(fact)

    def timesyncd(self, fact: ClockFacts) -> list[Action]:
        state = fact.files[0]
        if self.servers:
            spec = FileSpec(TIMESYNCD_FILE, render("timesyncd.conf.j2", servers=self.servers))
            actions = ensure_file(spec, state.fact)
        else:
            actions = [remove_file(TIMESYNCD_FILE, "no hosts.ntp_servers: the distribution's servers")] if state.exists else []
        unit = fact.units[TIMESYNCD]
        changed = bool(actions)
        stale = stale_since(unit, [state.mtime])
        why = "configuration changed" if changed else "running since before its configuration changed"
        return actions + service_action(unit, changed or stale, why)

    def chrony(self, fact: ClockFacts) -> list[Action]:
        state = fact.files[1]
        actions: list[Action] = []
        if self.servers:
            spec = FileSpec(CHRONY_SOURCES, render("chrony-sources.j2", servers=self.servers))
            actions += ensure_file(spec, state.fact)
        elif state.exists:
            actions.append(remove_file(CHRONY_SOURCES, "no hosts.ntp_servers: the distribution's servers"))
        mtimes = [state.mtime]
        if fact.chrony_conf is not None:  # before chrony is installed there is nothing to edit
            text = chrony_conf_text(fact.chrony_conf, bool(self.servers))
            if text != fact.chrony_conf and (self.servers or DISABLED in fact.chrony_conf):
                why = "disable the distribution's servers" if self.servers else "restore the distribution's servers"
                actions.append(put_text(FileSpec(CHRONY_CONF, text), why))
        unit = fact.units[CHRONY]
        changed = bool(actions)
        why = "configuration changed" if changed else "running since before its configuration changed"
        return actions + service_action(unit, changed or stale_since(unit, mtimes), why)


class ResyncClocks(ProbeStep):
    """Restart the time daemon where it is stopped, or has not synced for a while (force: everywhere)."""

    name = "resync-clocks"

    def __init__(self, settings: Settings, force: bool = False, grace: int = GRACE_SECONDS):
        self.unit = TIMESYNCD if settings.hosts.time_sync == "timesyncd" else CHRONY
        self.force = force
        self.grace = grace

    def command(self, host: Host) -> str:
        return _facts_command()

    def parse(self, text: str, host: Host) -> ClockFacts:
        return _parse(text)

    def decide(self, fact: ClockFacts, remote: Remote) -> list[Action]:
        unit = fact.units[self.unit]
        name = unit.id
        if self.force:
            return [Action(why="--force", command=f"systemctl restart {name}", always=True)]
        if unit.exists and not unit.condition_ok and not unit.running:
            return []  # systemd skips it on this host (see the module docstring)
        if not unit.exists:
            raise HostRefused(f"{name} is not installed: run `inv bootstrap` first (hosts.time_sync in vars.yml).")
        if not unit.running:
            return [Action(why=f"{name} is {unit.active}", command=f"systemctl restart {name}")]
        age = fact.now - unit.since if unit.since and fact.now else 0
        if not fact.synced and age > self.grace:
            return [Action(why=f"not synchronised after {age} s running", command=f"systemctl restart {name}")]
        return []

    def verify(self, remote: Remote) -> list[Action]:
        """Running again (a sync itself can take minutes; the next run judges it)."""
        if self.force:
            return []
        fact = self.probe(remote)
        unit = fact.units[self.unit]
        if unit.running or not unit.condition_ok:
            return []
        return self.decide(fact, remote)

