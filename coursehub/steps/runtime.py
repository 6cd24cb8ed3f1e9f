"""The container runtime: containerd (default) or docker, configured, installed, running.

- containerd: /etc/containerd/config.toml from templates/containerd-config.toml.j2
  (SystemdCgroup = true, `root` on the chosen disk). Container log rotation is the
  kubelet's (containerLogMaxSize); containerd itself writes no container logs.
- docker: /etc/docker/daemon.json from templates/docker-daemon.json.j2 (data-root,
  json-file logs rotated at `hosts.log_max_size`, live-restore so a daemon restart
  never kills student containers, the systemd cgroup driver).

The configuration is written *before* the package is installed, so the runtime's
first start already uses it and no restart follows. Drop-ins: the proxy
(`network.proxy`) and, for a root outside the default, RequiresMountsFor so the
runtime never starts on an empty mount point when the data disk is missing.

The root is `hosts.runtime_root`; when that is empty it is whatever the host's
configuration already says (so `inv ops.move-docker-root` is not undone by the
next bootstrap), else the runtime's default. Moving a root that holds data is
`MoveRoot`'s job, which bootstrap runs just before this step.

A restart happens only when one of these files changed, or is newer than the
running service (an earlier run that stopped between write and restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action, FileSpec, ensure_file
from coursehub.steps.apt import AptFacts, install_actions
from coursehub.steps.apt import facts_command as apt_facts_command
from coursehub.steps.apt import parse_facts as parse_apt_facts
from coursehub.steps.clock import service_action
from coursehub.steps.moves import KINDS, current_root, mounts_dropin, normalize
from coursehub.steps.probe import (
    FileState,
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
from coursehub.steps.proxy import runtime_dropin
from coursehub.templates import render

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host, Inventory
    from coursehub.settings import Settings

PACKAGES = {"containerd": ["containerd"], "docker": ["docker.io"]}
UNITS = {"containerd": "containerd.service", "docker": "docker.service"}


def docker_log_size(size: str) -> str:
    """vars.yml's '100M' -> docker's '100m'."""
    return size.strip().lower().removesuffix("b").removesuffix("i")


def config_text(settings: Settings, root: str) -> str:
    if settings.hosts.runtime == "docker":
        return render("docker-daemon.json.j2", root=root, log_max_size=docker_log_size(settings.hosts.log_max_size))
    return render("containerd-config.toml.j2", root=root)


@dataclass(frozen=True)
class RuntimeFacts:
    config: str | None  # the config file's text (None: missing)
    files: list[FileState]  # config, proxy drop-in, mounts drop-in
    apt: AptFacts
    unit: Unit


class Runtime(ProbeStep):
    name = "runtime"

    def __init__(self, settings: Settings, inv: Inventory):
        self.settings = settings
        self.runtime = settings.hosts.runtime
        self.kind = KINDS[self.runtime]
        self.unit = UNITS[self.runtime]
        self.packages = PACKAGES[self.runtime]
        self.proxy = runtime_dropin(settings, inv, self.unit)
        self.proxy_path = f"/etc/systemd/system/{self.unit}.d/http-proxy.conf"
        self.mounts_path = mounts_dropin(self.unit, "/").path

    def command(self, host: Host) -> str:
        return sections(
            config=f"cat {self.kind.config} && echo @@exists",
            files=files_command([self.kind.config, self.proxy_path, self.mounts_path]),
            apt=apt_facts_command(self.packages),
            unit=units_command([self.unit]),
        )

    def parse(self, text: str, host: Host) -> RuntimeFacts:
        s = parse_sections(text)
        config = s.get("config", "")
        # The apt part is itself sectioned: re-join its three sections for its own parser.
        apt_text = "".join(f"@@coursehub {k}\n{s.get(k, '')}" for k in ("dpkg", "stamp", "now"))
        return RuntimeFacts(
            config=config[: -len("@@exists\n")] if config.endswith("@@exists\n") else None,
            files=parse_files(s.get("files", ""), 3),
            apt=parse_apt_facts(apt_text),
            unit=parse_units(s.get("unit", ""), [self.unit])[self.unit],
        )

    def root(self, fact: RuntimeFacts) -> str:
        return normalize(self.settings.hosts.runtime_root or current_root(self.kind, fact.config))

    def decide(self, fact: RuntimeFacts, remote: Remote) -> list[Action]:
        root = self.root(fact)
        config, proxy_state, mounts_state = fact.files
        actions = ensure_file(FileSpec(self.kind.config, config_text(self.settings, root)), config.fact)
        dropins: list[Action] = []
        if self.proxy is not None:
            dropins += ensure_file(self.proxy, proxy_state.fact)
        elif proxy_state.exists:
            dropins.append(remove_file(self.proxy_path, "no proxy in vars.yml"))
        if root != self.kind.default:
            dropins += ensure_file(mounts_dropin(self.unit, root), mounts_state.fact)
        elif mounts_state.exists:
            dropins.append(remove_file(self.mounts_path, "root is the default again"))
        if dropins:
            dropins.append(Action(why="drop-ins changed", command="systemctl daemon-reload"))
        install = install_actions(self.packages, fact.apt)
        changed = bool(actions or dropins)
        stale = stale_since(fact.unit, [f.mtime for f in fact.files])
        why = "configuration changed" if changed else "running since before its configuration changed"
        # After an install the package's own start already read the new files: no restart then.
        service = service_action(fact.unit, (changed or stale) and not install, why)
        return actions + dropins + install + service
