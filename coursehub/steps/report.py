"""Disk report (read-only): df per host with a free-space threshold, the biggest directories.

    coursehub-1   ok
                | /          overlay   19.6G total   4.1G free  21%
                | /mnt/data  xfs       30.0G total   1.2G free   4%  LOW (under 15%)
                | biggest under /var: 3.1G /var/lib/containerd, 220M /var/log, ...

`--user NAME` reports one user's home instead of a path: the passwd home, else
/home/NAME, /home/jupyter-NAME (single-node hub) or NAME under the NFS export.
The report lines are the host's output in the task's table and run report; the
step never plans or changes anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action
from coursehub.steps.probe import ProbeStep, human_size, parse_sections, q, sections

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host

SKIP_FS = ("tmpfs", "devtmpfs", "squashfs", "efivarfs", "ramfs", "nsfs", "proc", "sysfs")
USER = re.compile(r"^[a-z_][a-z0-9_.@-]{0,63}$", re.I)


@dataclass(frozen=True)
class Fs:
    source: str
    fstype: str
    size: int
    avail: int
    target: str

    @property
    def free_percent(self) -> float:
        return 100.0 * self.avail / self.size if self.size else 100.0


@dataclass(frozen=True)
class Report:
    filesystems: list[Fs]
    path: str  # the directory looked into ("" when there was none, e.g. no such user here)
    total: int  # its size in bytes
    biggest: list[tuple[int, str]]  # its largest entries, biggest first


def parse_df(text: str) -> list[Fs]:
    out, seen = [], set()
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) >= 5 and f[2].isdigit() and f[3].isdigit() and f[1] not in SKIP_FS and f[2] != "0":
            key = (f[0], f[4])
            if key not in seen:
                seen.add(key)
                out.append(Fs(f[0], f[1], int(f[2]), int(f[3]), " ".join(f[4:])))
    return out


def parse_du(text: str) -> tuple[str, int, list[tuple[int, str]]]:
    """`du -d1` lines (any order) -> (the top directory, its size, its children biggest first)."""
    rows = []
    for line in text.splitlines():
        size, sep, path = line.partition("\t")
        if sep and size.isdigit():
            rows.append((int(size), path))
    if not rows:
        return "", 0, []
    total, top = min(rows, key=lambda r: len(r[1]))
    return top, total, sorted([r for r in rows if r[1] != top], key=lambda r: (-r[0], r[1]))


def format_report(r: Report, warn_below: int, top: int, user: str = "") -> str:
    lines = []
    width = max([len(f.target) for f in r.filesystems] + [4])
    for f in r.filesystems:
        low = f"  LOW (under {warn_below}%)" if f.free_percent < warn_below else ""
        lines.append(f"{f.target:<{width}}  {f.fstype:<8} {human_size(f.size):>6} total {human_size(f.avail):>6} free "
                     f"{f.free_percent:3.0f}%{low}")
    if user and not r.path:
        lines.append(f"no home directory for {user} on this host")
    elif r.path:
        head = f"home of {user}: {r.path}" if user else f"biggest under {r.path}"
        items = ", ".join(f"{human_size(s)} {p}" for s, p in r.biggest[:top]) or "(empty)"
        lines.append(f"{head} ({human_size(r.total)}): {items}")
    return "\n".join(lines)


class DiskReport(ProbeStep):
    name = "disk-report"

    def __init__(self, warn_below: int, path: str = "/var", top: int = 5, user: str = "", homes: tuple[str, ...] = ()):
        if user and not USER.match(user):
            raise ValueError(f"--user: not a user name: {user!r}")
        if path and not path.startswith("/"):
            raise ValueError(f"--path must be absolute, got {path!r}")
        self.warn_below, self.path, self.top, self.user, self.homes = warn_below, path, top, user, homes

    def command(self, host: Host) -> str:
        excl = " ".join(f"-x {t}" for t in SKIP_FS[:5])
        if self.user:
            u = q(self.user)
            cands = " ".join(q(c) for c in ("/home/" + self.user, "/home/jupyter-" + self.user,
                                            *(f"{h.rstrip('/')}/{self.user}" for h in self.homes)))
            where = (f"h=$(getent passwd {u} | cut -d: -f6); for c in $h {cands}; do "
                     "if [ -d \"$c\" ] && [ \"$c\" != / ]; then p=$c; break; fi; done")
        else:
            where = f"p={q(self.path)}"
        du = f'{where}; [ -n "$p" ] && [ -d "$p" ] && du -x -B1 -d1 "$p" | sort -rn | head -n {self.top + 1}'
        return sections(df=f"df -B1 --output=source,fstype,size,avail,target {excl}", du=du)

    def parse(self, text: str, host: Host) -> Report:
        s = parse_sections(text)
        path, total, rows = parse_du(s.get("du", ""))
        return Report(parse_df(s.get("df", "")), path, total, rows)

    def probe(self, remote: Remote) -> Report:
        report = super().probe(remote)
        remote.kept.append(format_report(report, self.warn_below, self.top, self.user))
        return report

    def decide(self, fact: Report, remote: Remote) -> list[Action]:
        return []
