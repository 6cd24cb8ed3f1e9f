"""Preflight: refuse hosts CourseHub cannot prepare, one clear sentence each (TLJH-style).

Checks, in one read-only command: the OS release (Debian 12+ or Ubuntu 22.04+),
systemd as PID 1 (at least 248, for `systemctl show --timestamp=unix`), apt,
and free space on / (at least 2 GiB). It never changes anything; a host that fails
is reported failed with the sentence and the later steps do not run on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action
from coursehub.steps.probe import HostRefused, ProbeStep, human_size, parse_kv, parse_sections, sections

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host

MIN_FREE = 2 * 1024**3
SUPPORTED = {"debian": (12,), "ubuntu": (22, 4)}


@dataclass(frozen=True)
class Facts:
    os_id: str
    version: tuple[int, ...]
    pretty: str
    pid1: str
    systemd: int
    apt: bool
    root_free: int


def _version(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


class Preflight(ProbeStep):
    name = "preflight"

    def command(self, host: Host) -> str:
        return sections(
            os="cat /etc/os-release",
            pid1="cat /proc/1/comm",
            systemd="systemctl --version | head -n1",
            apt="command -v apt-get",
            free="df -B1 --output=avail / | tail -n1",
        )

    def parse(self, text: str, host: Host) -> Facts:
        s = parse_sections(text)
        osr = parse_kv(s.get("os", ""))
        words = s.get("systemd", "").split()
        free = s.get("free", "").strip()
        return Facts(
            os_id=osr.get("ID", "unknown"),
            version=_version(osr.get("VERSION_ID", "")),
            pretty=osr.get("PRETTY_NAME", osr.get("ID", "an unknown OS")),
            pid1=s.get("pid1", "").strip(),
            systemd=int(words[1]) if len(words) > 1 and words[1].isdigit() else 0,
            apt=bool(s.get("apt", "").strip()),
            root_free=int(free) if free.isdigit() else -1,
        )

    def decide(self, fact: Facts, remote: Remote) -> list[Action]:
        problem = check(fact)
        if problem:
            raise HostRefused(problem)
        return []


def check(f: Facts) -> str:
    """'' if the host is fine, else the one sentence that says why not."""
    want = SUPPORTED.get(f.os_id)
    if want is None:
        return f"{f.pretty} is not supported: CourseHub prepares Debian 12+ or Ubuntu 22.04+ hosts."
    if f.version < want:
        need = ".".join(f"{n:02d}" if i else str(n) for i, n in enumerate(want))
        return f"{f.pretty} is too old: CourseHub needs {f.os_id.capitalize()} {need} or newer."
    if f.pid1 != "systemd":
        return f"PID 1 is {f.pid1 or 'unknown'}, not systemd: CourseHub manages services through systemd."
    if f.systemd < 248:
        return f"systemd {f.systemd or '(unknown version)'} is too old: CourseHub needs systemd 248 or newer."
    if not f.apt:
        return "apt-get is missing: CourseHub installs packages with apt."
    if 0 <= f.root_free < MIN_FREE:
        return f"only {human_size(f.root_free)} free on /: CourseHub needs at least {human_size(MIN_FREE)}."
    return ""
