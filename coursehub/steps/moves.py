"""Move a data root with its data: the container runtime's, or the kubelet's.

`inv ops.move-docker-root --to PATH` and `inv ops.move-kubelet-root --to PATH` (the
runbook's "full disk": Docker's -g drop-in, kubelet's --root-dir). One step,
`MoveRoot(kind, to)`, for the three kinds below:

| kind       | configuration                                   | default root        |
|------------|-------------------------------------------------|---------------------|
| docker     | /etc/docker/daemon.json `data-root`             | /var/lib/docker     |
| containerd | /etc/containerd/config.toml top-level `root`    | /var/lib/containerd |
| kubelet    | /etc/default/kubelet `KUBELET_EXTRA_ARGS=--root-dir=` | /var/lib/kubelet |

Probe: the configured root, the service states, the target, what is mounted.
Nothing to do when the configured root already is the target. Otherwise:

1. stop the service (docker: socket too); refuse, and start it again, if anything
   is still mounted from the old root (live-restore containers, pod volumes);
2. copy with `cp -a` (owners, modes, times, links, hard links, xattrs, sparse
   files) into the target, which must be empty or hold CourseHub's own unfinished
   copy (marked; an interrupted run copies again); compare file counts and bytes;
3. switch the configuration (only the root value changes) and add a
   RequiresMountsFor drop-in, so the service never starts on an empty mount point;
4. start what was running and check the root in use (docker info).

The old copy stays where it was (it may be a mount point, and kubeadm's
kubelet flags name files in /var/lib/kubelet) and is recorded in
/etc/coursehub/moves/<kind>; `drop_old` removes it later (for the kubelet, all but
config.yaml, kubeadm-flags.env and pki/, which becomes a link to the new pki/).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from coursehub.steps import Action, FileSpec, ensure_file, put_text
from coursehub.steps.probe import (
    FileState,
    HostRefused,
    ProbeStep,
    Unit,
    files_command,
    guarded,
    parse_files,
    parse_sections,
    parse_units,
    q,
    sections,
    units_command,
)
from coursehub.templates import render

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host

MARKER = ".coursehub-copy-incomplete"
RECORDS = "/etc/coursehub/moves"


# ----------------------------------------------------------------------------- root in config texts
def docker_root(text: str) -> str:
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError:
        return ""
    return str(data.get("data-root") or data.get("graph") or "") if isinstance(data, dict) else ""


def docker_with_root(text: str, root: str) -> str:
    """daemon.json with data-root = root: only that value changes when the key is there."""
    pattern = re.compile(r'("data-root"\s*:\s*)"(?:[^"\\]|\\.)*"')
    if pattern.search(text):
        return pattern.sub(lambda m: m.group(1) + json.dumps(root), text, count=1)
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise HostRefused("/etc/docker/daemon.json is not a JSON object: fix it by hand first.")
    data.pop("graph", None)
    return json.dumps({"data-root": root, **data}, indent=2) + "\n"


_TOML_ROOT = re.compile(r'^(\s*root\s*=\s*)(["\'])(.*?)\2\s*$')


def _toml_top(lines: list[str]) -> int:
    """Index of the first [section] line (or the end)."""
    return next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))


def containerd_root(text: str) -> str:
    lines = text.splitlines()
    for ln in lines[: _toml_top(lines)]:
        m = _TOML_ROOT.match(ln)
        if m:
            return m.group(3)
    return ""


def containerd_with_root(text: str, root: str) -> str:
    lines = text.splitlines()
    top = _toml_top(lines)
    for i, ln in enumerate(lines[:top]):
        m = _TOML_ROOT.match(ln)
        if m:
            lines[i] = f'{m.group(1)}"{root}"'
            return "\n".join(lines) + "\n"
    at = next((i + 1 for i, ln in enumerate(lines[:top]) if ln.strip().startswith("version")), 0)
    lines.insert(at, f'root = "{root}"')
    return "\n".join(lines) + "\n"


_ROOT_DIR = re.compile(r"--root-dir(?:=|\s+)(\S+)")


def _extra_args(text: str) -> tuple[int, str]:
    for i, ln in enumerate(text.splitlines()):
        key, sep, value = ln.partition("=")
        if sep and key.strip() == "KUBELET_EXTRA_ARGS":
            return i, value.strip().strip("\"'")
    return -1, ""


def kubelet_root(text: str) -> str:
    m = _ROOT_DIR.search(_extra_args(text)[1])
    return m.group(1) if m else ""


def kubelet_with_root(text: str, root: str) -> str:
    lines = text.splitlines()
    i, args = _extra_args(text)
    args = _ROOT_DIR.sub(f"--root-dir={root}", args) if _ROOT_DIR.search(args) else f"{args} --root-dir={root}".strip()
    line = f'KUBELET_EXTRA_ARGS="{args}"' if " " in args else f"KUBELET_EXTRA_ARGS={args}"
    if i >= 0:
        lines[i] = line
    else:
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Kind:
    name: str
    config: str
    default: str
    stop: tuple[str, ...]  # units stopped before the copy, in order
    main: str  # the unit whose drop-in names the mount
    read: Callable[[str], str]
    write: Callable[[str, str], str]
    check: str = ""  # shell printing the root in use, run after the start (if the service runs)


KINDS = {
    "docker": Kind("docker", "/etc/docker/daemon.json", "/var/lib/docker", ("docker.socket", "docker.service"),
                   "docker.service", docker_root, docker_with_root, "docker info -f '{{.DockerRootDir}}'"),
    "containerd": Kind("containerd", "/etc/containerd/config.toml", "/var/lib/containerd", ("containerd.service",),
                       "containerd.service", containerd_root, containerd_with_root),
    "kubelet": Kind("kubelet", "/etc/default/kubelet", "/var/lib/kubelet", ("kubelet.service",),
                    "kubelet.service", kubelet_root, kubelet_with_root),
}
KUBELET_KEEP = ("config.yaml", "kubeadm-flags.env", "pki")


def mounts_dropin(unit: str, path: str) -> FileSpec:
    """The drop-in that makes `unit` wait for (and require) the mount holding `path`."""
    return FileSpec(f"/etc/systemd/system/{unit}.d/coursehub-mounts.conf",
                    render("systemd-requires-mounts.conf.j2", unit=unit, path=path))


def current_root(kind: Kind, config_text: str | None) -> str:
    return (kind.read(config_text) if config_text else "") or kind.default


def normalize(path: str) -> str:
    path = re.sub(r"/+", "/", path.strip())
    return path.rstrip("/") or "/"


def inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


# ----------------------------------------------------------------------------- facts
@dataclass(frozen=True)
class MoveFacts:
    config: str | None  # None: no config file
    units: dict[str, Unit]
    record: str  # the kept old root, from an earlier move ("" if none)
    target_entries: list[str]  # first entries in the target ("" list: missing or empty)
    target_marked: bool
    busy: list[str]  # mount points using the old root
    dropin: FileState
    used: int = -1  # bytes in the old root (second probe, only when a move is due)
    avail: int = -1  # bytes free where the target goes
    old_entries: int = -1  # entries in the old root (-1: not probed; 0: missing or empty)


def busy_mounts(mountinfo: str, root: str) -> list[str]:
    """Mount points under `root`, or mounts whose options name a path under it (overlay layers)."""
    out = []
    prefix = root.rstrip("/") + "/"
    for line in mountinfo.splitlines():
        f = line.split()
        if len(f) < 5:
            continue
        target = f[4]
        if target.startswith(prefix) or prefix in line.partition(" - ")[2]:
            out.append(target)
    return out


class MoveRoot(ProbeStep):
    """Move `kind`'s data root to `to` with its data (see the module docstring)."""

    def __init__(self, kind: str, to: str, drop_old: bool = False, stop_containers: bool = False,
                 switch_empty: bool = True):
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        self.kind = KINDS[kind]
        self.to = normalize(to)
        self.drop_old = drop_old
        self.stop_containers = stop_containers
        self.switch_empty = switch_empty  # False in bootstrap: the runtime step writes the config itself
        self.name = f"move-{kind}-root"
        self._old = ""
        if not self.to.startswith("/") or self.to == "/":
            raise ValueError(f"--to must be an absolute path other than /, got {to!r}")

    # -- probe
    def command(self, host: Host) -> str:
        k, to = self.kind, q(self.to)
        return sections(
            config=f"cat {k.config} && echo @@exists",
            units=units_command(list(k.stop)),
            record=f"cat {RECORDS}/{k.name}",
            target=f"ls -A {to} | head -n 5",
            marked=f"[ -e {to}/{MARKER} ] && echo yes",
            mountinfo="cat /proc/self/mountinfo",
            dropin=files_command([mounts_dropin(k.main, self.to).path]),
        )

    def parse(self, text: str, host: Host) -> MoveFacts:
        s = parse_sections(text)
        config = s.get("config", "")
        config_text = config[: -len("@@exists\n")] if config.endswith("@@exists\n") else None
        old = current_root(self.kind, config_text)
        return MoveFacts(
            config=config_text,
            units=parse_units(s.get("units", ""), list(self.kind.stop)),
            record=s.get("record", "").strip(),
            target_entries=[e for e in s.get("target", "").split("\n") if e.strip()],
            target_marked=s.get("marked", "").strip() == "yes",
            busy=busy_mounts(s.get("mountinfo", ""), old),
            dropin=parse_files(s.get("dropin", ""), 1)[0],
        )

    def probe(self, remote: Remote) -> MoveFacts:
        fact = super().probe(remote)
        old = current_root(self.kind, fact.config)
        if normalize(old) == self.to:
            return fact
        # Only when a move is due: how much to copy, and whether it fits (may take a while on a big root).
        o, t = q(old), q(self.to)
        cmd = sections(
            entries=f"ls -A {o} | wc -l",
            used=f"du -sxB1 {o} | cut -f1",
            avail=f"d={t}; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done; df -B1 --output=avail \"$d\" | tail -n1",
        )
        with guarded(remote, f"measure {old}"):
            s = parse_sections(remote.run(cmd).stdout)
        num = {k: int(v.strip()) if v.strip().isdigit() else -1 for k, v in s.items()}
        return replace(fact, used=num.get("used", -1), avail=num.get("avail", -1), old_entries=num.get("entries", -1))

    # -- decide
    def decide(self, fact: MoveFacts, remote: Remote) -> list[Action]:
        k = self.kind
        old = normalize(current_root(k, fact.config))
        dropin = mounts_dropin(k.main, self.to)
        if old == self.to:
            return self._drop_old(normalize(fact.record)) if self.drop_old and fact.record else []
        if inside(self.to, old) or inside(old, self.to):
            raise HostRefused(f"cannot move {old} to {self.to}: one is inside the other.")
        if fact.target_entries and not fact.target_marked:
            raise HostRefused(f"{self.to} already holds files ({', '.join(fact.target_entries[:3])}) that are not "
                              "an unfinished CourseHub copy: choose an empty or new directory.")
        new_config = k.write(fact.config or "", self.to)
        running = [name for name, u in fact.units.items() if u.running]
        if fact.old_entries == 0 or fact.old_entries == -1 and fact.used <= 0:
            # Nothing to carry over: only the configuration points elsewhere.
            if not self.switch_empty:
                return []
            actions = [put_text(FileSpec(k.config, new_config), f"root {old} is empty or missing")]
            actions += ensure_file(dropin, fact.dropin.fact)
            if running:
                actions.append(Action(why="configuration changed", command="systemctl daemon-reload && systemctl restart "
                                      + " ".join(running)))
            return actions
        if 0 <= fact.avail < fact.used:
            raise HostRefused(f"{self.to} has {fact.avail} bytes free, {old} needs {fact.used}: not moving.")
        return [
            Action(why=f"{k.name} root is {old} ({fact.used} bytes)", label=f"stop {' '.join(running) or '(nothing runs)'}; "
                   f"cp -a {old} {self.to}", command=self.copy_script(old, running)),
            put_text(FileSpec(k.config, new_config), f"{k.name} root {old} -> {self.to}"),
            *ensure_file(dropin, fact.dropin.fact),
            Action(why="copy done", label=f"start {' '.join(running) or '(nothing was running)'}; check the root in use",
                   command=self.finish_script(old, running)),
            *(self._drop_old(old) if self.drop_old else []),
        ]

    def copy_script(self, old: str, running: list[str]) -> str:
        o, t, m = q(old), q(self.to), q(f"{self.to}/{MARKER}")
        start = f"systemctl start {' '.join(running)}" if running else "true"
        count = "find . -path ./" + MARKER + " -prune -o -print | wc -l; find . -type f ! -name " + MARKER + \
            " -printf '%s\\n' | awk '{s+=$1} END {print s+0}'"
        pre = ""
        if self.stop_containers and self.kind.name == "docker":
            pre = "ids=$(docker ps -q); [ -z \"$ids\" ] || docker stop -t 30 $ids >/dev/null; "
        stop_line = f"systemctl stop {' '.join(running)}; " if running else ""
        return (
            f"fail() {{ {start}; echo \"$1\" >&2; exit 1; }}; {pre}{stop_line}"
            f"busy=$(awk -v p={q(old.rstrip('/') + '/')} '{{ split($0, a, \" - \"); "
            f"if (index($5, p) == 1 || index(a[2], p)) print $5 }}' /proc/self/mountinfo | head -n 3); "
            f"[ -z \"$busy\" ] || fail \"still in use (mounted: $busy): stop the containers or drain the node first\"; "
            f"mkdir -p {t} || fail 'cannot create {self.to}'; "
            f"if [ -e {m} ]; then find {t} -mindepth 1 -maxdepth 1 -exec rm -rf --one-file-system {{}} + ; fi; "
            f"touch {m} && cp -a {o}/. {t}/ || fail 'copy failed'; "
            f"a=$(cd {o} && {{ {count}; }}); b=$(cd {t} && {{ {count}; }}); "
            f"[ \"$a\" = \"$b\" ] || fail \"copy differs: files/bytes $(echo $a) vs $(echo $b)\""
        )

    def finish_script(self, old: str, running: list[str]) -> str:
        k = self.kind
        lines = [f"rm -f {q(self.to + '/' + MARKER)}", f"mkdir -p {RECORDS}", f"echo {q(old)} > {RECORDS}/{k.name}",
                 "systemctl daemon-reload"]
        if running:
            lines.append(f"systemctl start {' '.join(running)}")
            if k.check and k.main in running:
                lines.append(f'now=$({k.check}); [ "$now" = {q(self.to)} ] || '
                             f'{{ echo "{k.name} uses $now, not {self.to}" >&2; exit 1; }}')
        return " && ".join(lines)

    def _drop_old(self, old: str) -> list[Action]:
        if old == "/" or inside(self.to, old) or inside(old, self.to):
            raise HostRefused(f"recorded old root {old!r} overlaps {self.to}: not removing it.")
        keep = KUBELET_KEEP if self.kind.name == "kubelet" else ()
        not_kept = " ".join(f"! -name {shlex.quote(n)}" for n in keep)
        cmd = f"if [ -d {q(old)} ]; then find {q(old)} -mindepth 1 -maxdepth 1 {not_kept} -exec rm -rf --one-file-system {{}} + ; fi"
        if keep:
            cmd += (f"; if [ -d {q(self.to + '/pki')} ] && [ ! -L {q(old + '/pki')} ]; then "
                    f"rm -rf {q(old + '/pki')} && ln -s {q(self.to + '/pki')} {q(old + '/pki')}; fi")
        cmd += f"; rm -f {RECORDS}/{self.kind.name}"
        return [Action(why="--drop-old", label=f"remove the old copy in {old}", command=cmd)]
