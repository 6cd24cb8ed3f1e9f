"""The storage and head checks' commands and judges (see facts.py for how a check is built).

Storage: the volumes' filesystems and the NFS exports. Head: kubelet and the API server
(topology cluster), or the single-node hub, its proxy and its public port (single).
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from coursehub.hub import single
from coursehub.kube import commands as k
from coursehub.steps import disks
from coursehub.steps.probe import (
    files_command,
    parse_files,
    parse_sections,
    parse_units,
    sections,
    stale_since,
    units_command,
)
from tests.infra.facts import BOOT_STATES, Skip

if TYPE_CHECKING:
    from coursehub.inventory import Host
    from coursehub.settings import Settings


# ----------------------------------------------------------------------------- storage
def storage_volumes_command(host: Host, settings: Settings) -> str:
    parts = {f"d{i}": disks.volume_command(v, m) for i, (v, m) in enumerate(disks.data_volumes(host, settings.volumes.mount))}
    raw = [v for v in host.volumes if v.role == "storage"]
    parts.update({f"s{i}": disks.volume_command(v, "") for i, v in enumerate(raw)})
    return sections(mounts="findmnt -rn -o MAJ:MIN,TARGET,FSTYPE,OPTIONS", **parts)


def volume_fs_problems(text: str, host: Host, settings: Settings) -> list[str] | Skip:
    """A storage host's data volumes hold a filesystem mounted read-write; its raw volumes are attached, unused."""
    s = parse_sections(text)
    data = disks.data_volumes(host, settings.volumes.mount)
    raw = [v for v in host.volumes if v.role == "storage"]
    if not data and not raw:
        return Skip("the inventory lists no volume for this storage host")
    mounts = {}
    for line in s.get("mounts", "").splitlines():
        f = line.split()
        if len(f) >= 4:
            mounts[f[1]] = (f[0], f[2], f[3].split(","))
    by_dev = {m[0]: t for t, m in mounts.items()}
    problems = []
    for i, (vol, mount) in enumerate(data):
        v = disks.parse_volume(s.get(f"d{i}", ""), vol, mount)
        label = vol.name or vol.id
        if not v.dev:
            problems.append(f"data volume {label} is not attached")
        elif v.fstype not in disks.KNOWN_FS:
            problems.append(f"{v.dev} (data volume {label}) holds {v.fstype or 'no filesystem'}, "
                            f"not {settings.volumes.filesystem}")
        elif mount not in mounts or mounts[mount][0] != v.majmin:
            problems.append(f"{v.fstype} on {v.dev} is not mounted at {mount}")
        elif "rw" not in mounts[mount][2]:
            problems.append(f"{mount} ({v.fstype} on {v.dev}) is mounted read-only")
    for i, vol in enumerate(raw):
        v = disks.parse_volume(s.get(f"s{i}", ""), vol, "")
        label = vol.name or vol.id
        if not v.dev:
            problems.append(f"storage volume {label} is not attached")
        elif v.majmin in by_dev:
            problems.append(f"storage volume {label} ({v.dev}) is mounted at {by_dev[v.majmin]}: Ceph needs it raw")
    return problems


EXPORTS = "/etc/exports.d/coursehub.exports"


def exports_command(host: Host, settings: Settings) -> str:
    if settings.storage.backend != "nfs":
        return "true"
    export = shlex.quote(settings.storage.nfs_export)
    return sections(file=f"cat {EXPORTS}", dir=f"stat -c '%a %U' {export}",
                    active="systemctl is-active nfs-server", live="exportfs -v")


def exports_problems(text: str, settings: Settings) -> list[str] | Skip:
    """storage.backend nfs: the export is configured for named clients only, live, and served."""
    if settings.storage.backend != "nfs":
        return Skip(f"storage.backend is {settings.storage.backend}: no NFS exports")
    export = settings.storage.nfs_export
    s = parse_sections(text)
    problems = []
    lines = [ln.split() for ln in s.get("file", "").splitlines() if ln.strip() and not ln.startswith("#")]
    mine = [f for f in lines if f and f[0] == export]
    if not mine:
        problems.append(f"{EXPORTS} does not export {export}")
    for f in mine:
        wild = [c for c in f[1:] if c.split("(")[0] in ("", "*") or "*" in c.split("(")[0]]
        if wild:
            problems.append(f"{export} is exported to anyone: {' '.join(wild)}")
    mode = s.get("dir", "").split()
    if not mode:
        problems.append(f"{export} does not exist")
    elif mode[0][-1] in "2367" or mode[1] != "root":
        problems.append(f"{export} is mode {mode[0]} owned by {mode[1]} (want 755 root)")
    if s.get("active", "").strip() != "active":
        problems.append(f"nfs-server is {s.get('active', '').strip() or 'not installed'}")
    if export not in s.get("live", "").split():
        problems.append(f"`exportfs -v` does not list {export}: the export is not live")
    return problems


# ----------------------------------------------------------------------------- head: cluster
KUBELET = "kubelet.service"
KUBELET_HEALTHZ = "http://127.0.0.1:10248/healthz"


def kubelet_command(host: Host, settings: Settings) -> str:
    return sections(unit=units_command([KUBELET]), healthz=f"curl -sS --noproxy '*' --max-time 5 {KUBELET_HEALTHZ} 2>&1")


def kubelet_problems(text: str) -> list[str]:
    """kubelet is enabled, running, and its health endpoint answers ok."""
    s = parse_sections(text)
    unit = parse_units(s.get("unit", ""), [KUBELET])[KUBELET]
    if not unit.exists:
        return [f"{KUBELET} is not installed: run `inv bootstrap`"]
    problems = []
    if not unit.running:
        problems.append(f"{KUBELET} is {unit.active}")
    if unit.enabled not in BOOT_STATES:
        problems.append(f"{KUBELET} is {unit.enabled or 'not enabled'}: it would not start at boot")
    health = " ".join(s.get("healthz", "").split())
    if health != "ok":
        problems.append(f"{KUBELET_HEALTHZ} answers {health[:160] or 'nothing'}")
    return problems


def api_command(host: Host, settings: Settings) -> str:
    return f"{k.sh(k.readyz())} 2>&1"


def api_problems(text: str) -> list[str]:
    """The API server answers `ok` on /readyz (with the admin kubeconfig, as root on the head)."""
    answer = " ".join(text.split())
    return [] if answer == "ok" else [f"kubectl get --raw=/readyz: {answer[:200] or 'no answer'}"]


# ----------------------------------------------------------------------------- head: single hub
def hub_units() -> list[str]:
    return [single.PROXY_UNIT, single.HUB_UNIT]


# The file lists need the secrets' names, never their values: hub_files only puts them into texts we drop.
_NO_SECRETS = {single.API_TOKEN: "", single.PROXY_TOKEN: "", single.DUMMY_PASSWORD: ""}


def hub_file_paths(settings: Settings) -> tuple[list[str], list[str]]:
    """(the hub's files, the proxy's files): a change to one restarts that service."""
    return ([f.path for f in single.hub_files(settings, _NO_SECRETS)],
            [f.path for f in single.proxy_files(settings, _NO_SECRETS, ("", ""))])


def hub_command(host: Host, settings: Settings) -> str:
    hub_files, proxy_files = hub_file_paths(settings)
    return sections(units=units_command(hub_units()), files=files_command(hub_files + proxy_files))


def hub_problems(text: str, settings: Settings) -> list[str]:
    """The hub and its proxy are enabled, running, and started after their files last changed."""
    s = parse_sections(text)
    units = parse_units(s.get("units", ""), hub_units())
    hub_files, proxy_files = hub_file_paths(settings)
    paths = hub_files + proxy_files
    states = dict(zip(paths, parse_files(s.get("files", ""), len(paths)), strict=True))
    problems = []
    for name, files in ((single.PROXY_UNIT, proxy_files), (single.HUB_UNIT, hub_files)):
        unit = units[name]
        if not unit.exists:
            problems.append(f"{name} is not installed: run `inv hub`")
            continue
        if not unit.running:
            problems.append(f"{name} is {unit.active}")
        elif stale_since(unit, [states[f].mtime for f in files]):
            problems.append(f"{name} runs with older configuration (a file changed after its start; restart pending)")
        if unit.enabled not in BOOT_STATES:
            problems.append(f"{name} is {unit.enabled or 'not enabled'}: it would not start at boot")
    return problems


def hub_url(settings: Settings, address: str = "127.0.0.1") -> str:
    scheme = "http" if settings.hub.https == "none" else "https"
    return f"{scheme}://{address}:{single.public_port(settings)}/hub/api/"


def port_command(host: Host, settings: Settings) -> str:
    port = single.public_port(settings)
    return sections(
        listen=f"ss -Hltn 'sport = :{port}'",
        http=f"curl -sS -k --noproxy '*' --max-time 10 -o /dev/null -w '%{{http_code}}' {hub_url(settings)} 2>&1",
    )


def port_problems(text: str, settings: Settings, outside: str) -> list[str]:
    """The hub's public port listens on the head, the hub answers through it there, and from here.

    `outside` is "" when this machine reached the port over TCP, else the error.
    """
    port = single.public_port(settings)
    s = parse_sections(text)
    problems = []
    if not s.get("listen", "").strip():
        problems.append(f"nothing listens on port {port}")
    answer = s.get("http", "").strip()
    code, error = answer[-3:], answer[:-3].strip()  # curl -w '%{http_code}' comes last; 000: no HTTP answer
    if code != "200":
        got = f"HTTP {code}" if code.isdigit() and code != "000" else (error[:160] or "no answer")
        problems.append(f"GET {hub_url(settings)} on the head: {got}")
    if outside:
        problems.append(f"port {port} does not answer from this machine: {outside}")
    return problems
