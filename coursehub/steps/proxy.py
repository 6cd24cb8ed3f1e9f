"""An optional outbound web proxy for apt, pip, the container runtime and logins.

The original's setup_proxy wrote a hard-coded university proxy into
/etc/environment and ~ubuntu/.bashrc. Here the proxy is `network.proxy`:

- apt:     /etc/apt/apt.conf.d/95coursehub-proxy
- pip:     /etc/xdg/pip/pip.conf (pip's site-wide file that nobody else writes)
- logins:  a marked block of http_proxy/https_proxy/no_proxy (both cases) in
           /etc/environment, which pam_env reads for every login
- runtime: a systemd drop-in for containerd/docker (`runtime_dropin`, installed
           by the runtime step, which restarts the runtime only when it changed)

no_proxy always holds localhost, every inventory host's name and address, the
Kubernetes pod and service ranges (cluster topology) and `network.no_proxy`.
An empty `network.proxy` removes CourseHub's files and its block, and leaves
proxy lines an admin wrote by hand alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action, FileSpec, ensure_file, put_text
from coursehub.steps.probe import (
    FileState,
    ProbeStep,
    files_command,
    parse_files,
    parse_sections,
    remove_file,
    sections,
)
from coursehub.templates import render

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host, Inventory
    from coursehub.settings import Settings

APT_FILE = "/etc/apt/apt.conf.d/95coursehub-proxy"
PIP_FILE = "/etc/xdg/pip/pip.conf"
ENV_FILE = "/etc/environment"
MARKER = "# CourseHub proxy (network.proxy in vars.yml); edit vars.yml, not these lines"
KEYS = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY")


def no_proxy(settings: Settings, inv: Inventory) -> str:
    """The comma-separated no_proxy value: local, the hosts, cluster ranges, then vars.yml's."""
    items = ["localhost", "127.0.0.1", "::1"]
    for h in inv.hosts:
        items += [h.name, h.address]
    if settings.topology == "cluster":
        items += [settings.kubernetes.pod_cidr, settings.kubernetes.service_cidr, ".svc", ".cluster.local"]
    items += list(settings.network.no_proxy)
    return ",".join(dict.fromkeys(items))


def proxy_env(settings: Settings, inv: Inventory) -> dict[str, str]:
    """The variables a login gets ({} without a proxy)."""
    url = settings.network.proxy
    if not url:
        return {}
    np = no_proxy(settings, inv)
    return {"http_proxy": url, "https_proxy": url, "no_proxy": np,
            "HTTP_PROXY": url, "HTTPS_PROXY": url, "NO_PROXY": np}


def environment_text(current: str, wanted: dict[str, str]) -> str:
    """/etc/environment with CourseHub's proxy block set to `wanted` (removed when empty).

    With a proxy, every *_proxy line goes (ours replace them); without one, only
    the lines of CourseHub's own marked block go.
    """
    if not wanted and MARKER not in current:
        return current  # nothing of ours there: leave the file exactly as it is
    lines = current.splitlines()
    out: list[str] = []
    in_block = False
    for line in lines:
        key = line.split("=", 1)[0].strip()
        if line.strip() == MARKER:
            in_block = True
            continue
        if key in KEYS and (wanted or in_block):
            continue
        in_block = in_block and key in KEYS
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    if wanted:
        out += [MARKER] + [f"{k}={v}" for k, v in wanted.items()]
    return "\n".join(out) + "\n" if out else ""


def runtime_dropin(settings: Settings, inv: Inventory, unit: str) -> FileSpec | None:
    """The runtime's proxy drop-in, or None without a proxy."""
    if not settings.network.proxy:
        return None
    text = render("proxy-systemd.conf.j2", unit=unit, proxy=settings.network.proxy, no_proxy=no_proxy(settings, inv))
    return FileSpec(f"/etc/systemd/system/{unit}.d/http-proxy.conf", text)


@dataclass(frozen=True)
class ProxyFacts:
    apt: FileState
    pip: FileState
    environment: str
    environment_exists: bool


class Proxy(ProbeStep):
    """apt, pip and login proxy settings (the runtime's drop-in is the runtime step's)."""

    name = "proxy"

    def __init__(self, settings: Settings, inv: Inventory):
        url = settings.network.proxy
        self.url = url
        self.env = proxy_env(settings, inv)
        self.apt = FileSpec(APT_FILE, render("proxy-apt.conf.j2", proxy=url)) if url else None
        self.pip = FileSpec(PIP_FILE, render("proxy-pip.conf.j2", proxy=url)) if url else None

    def command(self, host: Host) -> str:
        return sections(files=files_command([APT_FILE, PIP_FILE]), env=f"cat {ENV_FILE} && echo @@exists")

    def parse(self, text: str, host: Host) -> ProxyFacts:
        s = parse_sections(text)
        apt, pip = parse_files(s.get("files", ""), 2)
        env = s.get("env", "")
        exists = env.endswith("@@exists\n")
        return ProxyFacts(apt, pip, env[: -len("@@exists\n")] if exists else "", exists)

    def decide(self, fact: ProxyFacts, remote: Remote) -> list[Action]:
        actions: list[Action] = []
        for spec, state, path in ((self.apt, fact.apt, APT_FILE), (self.pip, fact.pip, PIP_FILE)):
            if spec is not None:
                actions += ensure_file(spec, state.fact)
            elif state.exists:
                actions.append(remove_file(path, "no proxy in vars.yml"))
        text = environment_text(fact.environment, self.env)
        if text != fact.environment and (fact.environment_exists or text):
            why = "proxy block differs" if self.env else "no proxy in vars.yml: remove CourseHub's block"
            actions.append(put_text(FileSpec(ENV_FILE, text), why))
        return actions
