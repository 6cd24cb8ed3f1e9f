"""Runaway logs truncated in place (the runbook's `truncate -s 0`), and listed.

Looks at regular files over a size under /var/log (pod logs in /var/log/pods
included) and under docker's containers/ directory (its configured data-root).
Each is truncated in place, so the process writing it keeps its open file and
goes on writing; nothing is deleted. journald's binary files (*.journal) are
left alone: truncating them corrupts them (`journalctl --vacuum-size` is the way).
A second run finds nothing over the size and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action
from coursehub.steps.probe import ProbeStep, human_size, q

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host

DOCKER_ROOT = ("r=$(sed -n 's/.*\"data-root\" *: *\"\\([^\"]*\\)\".*/\\1/p' /etc/docker/daemon.json 2>/dev/null); "
               "r=${r:-/var/lib/docker}")


@dataclass(frozen=True)
class BigFile:
    size: int
    path: str


def parse_big(text: str) -> list[BigFile]:
    out = []
    for line in text.splitlines():
        size, sep, path = line.partition("\t")
        if sep and size.isdigit() and path.startswith("/"):
            out.append(BigFile(int(size), path))
    return sorted(out, key=lambda f: (-f.size, f.path))


class TruncateLogs(ProbeStep):
    name = "truncate-logs"

    def __init__(self, over: int):
        if over < 1:
            raise ValueError("--over must be at least 1 byte")
        self.over = over

    def command(self, host: Host) -> str:
        return (f"{DOCKER_ROOT}; for d in /var/log \"$r/containers\"; do [ -d \"$d\" ] && "
                f"find \"$d\" -xdev -type f -size +{self.over}c ! -name '*.journal' ! -name '*.journal~' "
                "-printf '%s\\t%p\\n'; done 2>/dev/null; true")

    def parse(self, text: str, host: Host) -> list[BigFile]:
        return parse_big(text)

    def decide(self, fact: list[BigFile], remote: Remote) -> list[Action]:
        if not fact:
            return []
        listing = "; ".join(f"{f.path} ({human_size(f.size)})" for f in fact)
        total = sum(f.size for f in fact)
        cmd = "truncate -s 0 -- " + " ".join(q(f.path) for f in fact) + " && printf 'truncated %s\\n' " + \
            " ".join(q(f"{human_size(f.size):>6}  {f.path}") for f in fact)
        return [Action(why=f"{len(fact)} file(s), {human_size(total)} over {human_size(self.over)}",
                       label=f"truncate {listing}", fn=lambda r: r.run(cmd).keep())]
