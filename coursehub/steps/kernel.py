"""Kernel prerequisites for Kubernetes: modules and network sysctls, live and persisted.

"Now" and "after reboot" are separate facts, each fixed on its own (pyinfra's
sysctl(persist=True) habit):

- persisted: /etc/modules-load.d/coursehub-k8s.conf and /etc/sysctl.d/99-coursehub-k8s.conf
- live:      a module counts as loaded when the kernel shows its effect (a module
             list entry, /sys/module, or what it provides: overlay in
             /proc/filesystems, /proc/sys/net/bridge for br_netfilter), since a
             built-in module never appears in /proc/modules; `modprobe` runs only
             for what is missing, and `sysctl -w` only for the keys that differ.

It never runs `sysctl --system`, which would re-apply every file in sysctl.d,
and it only ever writes the net.* keys below (per network namespace, so harmless
in the lab, whose hosts share this machine's kernel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action, FileSpec, ensure_file
from coursehub.steps.probe import FileState, ProbeStep, files_command, parse_files, parse_sections, q, sections
from coursehub.templates import render

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host

MODULES = ("overlay", "br_netfilter")
SYSCTLS = {
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    "net.ipv4.ip_forward": "1",
}
MODULES_FILE = "/etc/modules-load.d/coursehub-k8s.conf"
SYSCTL_FILE = "/etc/sysctl.d/99-coursehub-k8s.conf"
assert all(k.startswith("net.") for k in SYSCTLS), "only per-namespace net.* keys (see the module docstring)"


def proc_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


@dataclass(frozen=True)
class KernelFacts:
    files: list[FileState]
    modules: set[str]  # /proc/modules names
    filesystems: set[str]
    sysmodules: set[str]  # /sys/module entries among ours
    bridge_nf: bool  # /proc/sys/net/bridge exists
    values: dict[str, str]  # sysctl key -> live value ("" if absent)


def module_loaded(name: str, f: KernelFacts) -> bool:
    if name in f.modules or name in f.sysmodules:
        return True
    if name == "overlay":
        return "overlay" in f.filesystems
    if name == "br_netfilter":
        return f.bridge_nf
    return False


class Kernel(ProbeStep):
    name = "kernel"

    def __init__(self) -> None:
        self.modules_spec = FileSpec(MODULES_FILE, render("modules-load-k8s.conf.j2", modules=MODULES))
        self.sysctl_spec = FileSpec(SYSCTL_FILE, render("sysctl-k8s.conf.j2", sysctls=SYSCTLS))

    def command(self, host: Host) -> str:
        values = "; ".join(f"printf '%s=%s\\n' {k} \"$(cat {proc_path(k)} 2>/dev/null)\"" for k in SYSCTLS)
        return sections(
            files=files_command([MODULES_FILE, SYSCTL_FILE]),
            modules="cut -d' ' -f1 /proc/modules",
            filesystems="cut -f2 /proc/filesystems",
            sysmodules="cd /sys/module && ls -d " + " ".join(MODULES),
            bridge="[ -d /proc/sys/net/bridge ] && echo yes",
            values=values,
        )

    def parse(self, text: str, host: Host) -> KernelFacts:
        s = parse_sections(text)
        values = {}
        for line in s.get("values", "").splitlines():
            key, _, value = line.partition("=")
            values[key] = value.strip()
        return KernelFacts(
            files=parse_files(s.get("files", ""), 2),
            modules=set(s.get("modules", "").split()),
            filesystems=set(s.get("filesystems", "").split()),
            sysmodules=set(s.get("sysmodules", "").split()),
            bridge_nf=s.get("bridge", "").strip() == "yes",
            values=values,
        )

    def decide(self, fact: KernelFacts, remote: Remote) -> list[Action]:
        actions = ensure_file(self.modules_spec, fact.files[0].fact) + ensure_file(self.sysctl_spec, fact.files[1].fact)
        missing = [m for m in MODULES if not module_loaded(m, fact)]
        if missing:
            actions.append(Action(why="not loaded: " + ", ".join(missing), command="modprobe -a " + " ".join(missing)))
        wrong = {k: v for k, v in SYSCTLS.items() if fact.values.get(k) != v}
        if wrong:
            now = ", ".join(f"{k}={fact.values.get(k) or 'absent'}" for k in wrong)
            actions.append(Action(why="live value " + now,
                                  command="sysctl -q -w " + " ".join(q(f"{k}={v}") for k, v in wrong.items())))
        return actions
