"""Packages through apt: one function builds every apt-get line.

- `apt_get(...)` is the only place an apt-get command line is written: noninteractive,
  keep the admin's config files on upgrades, a dpkg lock timeout, and a retry loop
  for the locks apt does not wait on by itself (an unattended-upgrades run or
  cloud-init holding them at first boot).
- `apt-get update` is stamp-guarded (pyinfra's cache_time): it runs only when
  something must be installed and the lists are older than an hour, judged by
  apt's own success stamp against the host's own clock.
- `Packages` installs what is missing (or pinned to another version); when
  everything is there it plans nothing, and it never upgrades or removes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action
from coursehub.steps.probe import ProbeStep, parse_sections, q, sections

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host

STAMP = "/var/lib/apt/periodic/update-success-stamp"
CACHE_SECONDS = 3600
LOCK_TRIES = 40
LOCK_DELAY = 3
LOCK_MESSAGES = ("Could not get lock", "Unable to acquire the dpkg", "Unable to lock")
INTERRUPTED = "dpkg was interrupted"
CONFIGURE = ("DEBIAN_FRONTEND=noninteractive dpkg --configure -a --force-confdef --force-confold")


def apt_get(*args: str, tries: int = LOCK_TRIES, delay: float = LOCK_DELAY) -> str:
    """An apt-get command line (args already shell-safe words), retried while a lock is held."""
    line = ("DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get -y -q "
            "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "
            "-o DPkg::Lock::Timeout=60 " + " ".join(args))
    return retry_on_lock(line, tries, delay)


def retry_on_lock(command: str, tries: int = LOCK_TRIES, delay: float = LOCK_DELAY) -> str:
    """Run `command`; while it fails because another apt/dpkg holds a lock, wait and retry.

    A dpkg run that was interrupted (a host that lost power mid-install) is finished
    with `dpkg --configure -a` once, then the command is tried again.
    """
    patterns = "|".join(f"*{q(m)}*" for m in LOCK_MESSAGES)
    return (  # a subshell: its `exit` ends only this command, so lines can be chained with &&
        f"(n=0; fixed=0; while :; do out=$({command} 2>&1); rc=$?; "
        f"if [ $rc -eq 0 ]; then printf '%s\\n' \"$out\" | tail -n 3; exit 0; fi; "
        f"case \"$out\" in {patterns}) n=$((n+1));; "
        f"*{q(INTERRUPTED)}*) if [ $fixed -eq 0 ]; then fixed=1; {CONFIGURE} >/dev/null 2>&1; continue; fi; n={tries};; "
        f"*) n={tries};; esac; "
        f"if [ $n -ge {tries} ]; then printf '%s\\n' \"$out\" | tail -n 20 >&2; exit $rc; fi; "
        f"sleep {delay:g}; done)"
    )


def update_command() -> str:
    return apt_get("update")


def install_command(packages: Sequence[str], update: bool, downgrade: bool = False) -> str:
    """`apt-get update` (if asked) then one install of `packages` without recommends."""
    words = ["install", "--no-install-recommends"] + (["--allow-downgrades"] if downgrade else [])
    install = apt_get(*words, *(q(p) for p in packages))
    return f"{update_command()} && {install}" if update else install


# ----------------------------------------------------------------------------- the step
@dataclass(frozen=True)
class AptFacts:
    installed: dict[str, str]  # package -> version, only fully installed ones
    stamp: int  # mtime of apt's update-success stamp (0: never)
    now: int  # the host's clock


def split_pin(spec: str) -> tuple[str, str]:
    """'docker.io=20.10.24' -> ('docker.io', '20.10.24'); 'curl' -> ('curl', '')."""
    name, _, version = spec.partition("=")
    return name, version


def facts_command(packages: Sequence[str]) -> str:
    names = " ".join(q(split_pin(p)[0]) for p in packages)
    return sections(
        dpkg=f"dpkg-query -W -f='${{Package}} ${{Version}} ${{db:Status-Abbrev}}\\n' {names}",
        stamp=f"stat -c %Y {STAMP}",
        now="date +%s",
    )


def parse_facts(text: str) -> AptFacts:
    s = parse_sections(text)
    installed = {}
    for line in s.get("dpkg", "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].startswith("ii"):
            installed[parts[0]] = parts[1]
    stamp, now = s.get("stamp", "").strip(), s.get("now", "").strip()
    return AptFacts(installed, int(stamp) if stamp.isdigit() else 0, int(now) if now.isdigit() else 0)


def missing(packages: Sequence[str], facts: AptFacts) -> list[str]:
    """The package specs that are not installed (or not at their pinned version)."""
    out = []
    for spec in packages:
        name, version = split_pin(spec)
        have = facts.installed.get(name)
        if have is None or (version and have != version):
            out.append(spec)
    return out


def install_actions(packages: Sequence[str], facts: AptFacts) -> list[Action]:
    """[] when all are installed, else one install action (with an update if the lists are old)."""
    todo = missing(packages, facts)
    if not todo:
        return []
    stale = facts.stamp == 0 or facts.now - facts.stamp > CACHE_SECONDS
    pinned = any(split_pin(p)[1] for p in todo)
    label = ("apt-get update && " if stale else "") + "apt-get install " + " ".join(todo)
    why = "not installed: " + ", ".join(todo) + ("; package lists older than an hour" if stale else "")
    return [Action(why=why, command=install_command(todo, stale, pinned), label=label)]


class Packages(ProbeStep):
    """Install `packages` (names, or name=version) if missing; never upgrade or remove."""

    def __init__(self, packages: Sequence[str], name: str = "packages"):
        self.name = name
        self.packages = list(dict.fromkeys(packages))

    def command(self, host: Host) -> str:
        return facts_command(self.packages)

    def parse(self, text: str, host: Host) -> AptFacts:
        return parse_facts(text)

    def decide(self, fact: AptFacts, remote: Remote) -> list[Action]:
        return install_actions(self.packages, fact)
