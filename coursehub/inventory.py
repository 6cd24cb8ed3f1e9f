"""The inventory: hosts and their roles, and the three files every stage reads.

`inventory/hosts.yml` is the source of truth; `ssh_config` and `known_hosts`
are derived from it, so an admin can write `hosts.yml` by hand (with each
host's `host_keys`) for machines CourseHub did not provision, and every later
stage works on them:

    identity_file: ~/.ssh/id_ed25519
    hosts:
      - name: head
        address: 203.0.113.10
        user: ubuntu
        roles: [head, storage]
        host_keys: ["ssh-ed25519 AAAA..."]

`ssh -F inventory/ssh_config <name>` logs in with strict host-key checking
against `inventory/known_hosts`; Fabric and testinfra read the same files.
Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("head", "compute", "storage")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_KEY = re.compile(r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh.com) [A-Za-z0-9+/=]+( .*)?$")


class InventoryError(Exception):
    """A bad or missing inventory: str() is one line naming the file and the entry."""


@dataclass
class Volume:
    """A volume attached to a host."""

    id: str
    name: str = ""
    size_gb: int = 0
    role: str = "data"  # data (runtime root, homes) or storage (raw, for Ceph)
    device: str = ""  # the attachment's device name, e.g. /dev/vdb (a hint; the id is what counts)


@dataclass
class Host:
    """One machine CourseHub manages."""

    name: str
    address: str
    user: str = "root"
    port: int = 22
    roles: list[str] = field(default_factory=lambda: ["compute"])
    volumes: list[Volume] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    server_id: str = ""
    host_keys: list[str] = field(default_factory=list)

    def has(self, role: str) -> bool:
        return role in self.roles

    @property
    def known_hosts_patterns(self) -> str:
        """The names OpenSSH and paramiko look this host up by, as a known_hosts pattern."""
        names = [self.name, self.address] if self.name != self.address else [self.address]
        return ",".join(n if self.port == 22 else f"[{n}]:{self.port}" for n in names)


@dataclass
class Inventory:
    """The hosts of one deployment, and where their files live."""

    dir: Path
    hosts: list[Host]
    identity_file: str = ""

    @property
    def hosts_file(self) -> Path:
        return self.dir / "hosts.yml"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    def head(self) -> Host:
        heads = [h for h in self.hosts if h.has("head")]
        if len(heads) != 1:
            raise InventoryError(f"{self.hosts_file}: expected exactly one host with role head, found {len(heads)}")
        return heads[0]

    def get(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise InventoryError(f"{self.hosts_file}: no host named {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    def select(self, names: str | Iterable[str] = "", role: str = "") -> list[Host]:
        """Hosts named in `names` (comma-separated or a list; empty: all), with `role` if given."""
        wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
        chosen = [self.get(n) for n in wanted] if wanted else list(self.hosts)
        if role:
            if role not in ROLES:
                raise InventoryError(f"--role: unknown role {role!r} (expected one of {', '.join(ROLES)})")
            chosen = [h for h in chosen if h.has(role)]
        return chosen


# ----------------------------------------------------------------------------- reading
def load(directory: str | os.PathLike[str]) -> Inventory:
    """Read hosts.yml; (re)write ssh_config and known_hosts if they are missing or older."""
    import yaml

    d = Path(directory)
    path = d / "hosts.yml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InventoryError(f"{path}: no inventory yet (run `inv provision`, or write hosts.yml by hand)") from None
    except yaml.YAMLError as e:
        raise InventoryError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    inv = from_dict(data, d)
    derived = [inv.ssh_config, inv.known_hosts]
    if any(not p.exists() or p.stat().st_mtime < path.stat().st_mtime for p in derived):
        _write_derived(inv)
    return inv


def from_dict(data: Any, directory: Path) -> Inventory:
    path = directory / "hosts.yml"
    if not isinstance(data, dict) or not isinstance(data.get("hosts"), list):
        raise InventoryError(f"{path}: expected a mapping with a 'hosts' list")
    unknown = set(data) - {"hosts", "identity_file", "deployment"}
    if unknown:
        raise InventoryError(f"{path}: unknown key {sorted(unknown)[0]!r} (expected hosts, identity_file)")
    hosts = [_host(raw, f"{path}: hosts[{i}]") for i, raw in enumerate(data["hosts"])]
    seen: set[str] = set()
    for i, h in enumerate(hosts):
        if h.name in seen:
            raise InventoryError(f"{path}: hosts[{i}].name: duplicate host {h.name!r}")
        seen.add(h.name)
    return Inventory(dir=directory, hosts=hosts, identity_file=str(data.get("identity_file") or ""))


def _host(raw: Any, where: str) -> Host:
    if not isinstance(raw, dict):
        raise InventoryError(f"{where}: expected a mapping with name and address")
    known = set(Host.__dataclass_fields__)
    for key in raw:
        if key not in known:
            raise InventoryError(f"{where}.{key}: unknown key (expected {', '.join(sorted(known))})")
    for key in ("name", "address"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise InventoryError(f"{where}.{key}: required text is missing")
    if not _NAME.match(raw["name"]):
        raise InventoryError(f"{where}.name: invalid host name {raw['name']!r} (letters, digits, . _ -)")
    try:
        ipaddress.ip_address(raw["address"])
    except ValueError:
        if not _NAME.match(raw["address"]):
            raise InventoryError(f"{where}.address: not an IP address or host name: {raw['address']!r}") from None
    port = raw.get("port", 22)
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise InventoryError(f"{where}.port: expected a TCP port, got {port!r}")
    roles = raw.get("roles", ["compute"])
    if not isinstance(roles, list) or any(r not in ROLES for r in roles):
        raise InventoryError(f"{where}.roles: expected a list of {', '.join(ROLES)}, got {roles!r}")
    keys = raw.get("host_keys", [])
    if not isinstance(keys, list) or any(not isinstance(k, str) or not _KEY.match(k) for k in keys):
        raise InventoryError(f"{where}.host_keys: expected OpenSSH public key lines ('ssh-ed25519 AAAA...')")
    vols = raw.get("volumes", [])
    if not isinstance(vols, list) or any(not isinstance(v, dict) or "id" not in v for v in vols):
        raise InventoryError(f"{where}.volumes: expected a list of mappings with an id")
    try:
        volumes = [Volume(**v) for v in vols]
    except TypeError as e:
        raise InventoryError(f"{where}.volumes: {e}") from None
    return Host(
        name=raw["name"], address=raw["address"], user=str(raw.get("user", "root")), port=port,
        roles=list(roles), volumes=volumes, metadata={str(k): str(v) for k, v in (raw.get("metadata") or {}).items()},
        server_id=str(raw.get("server_id", "")), host_keys=list(keys),
    )


# ----------------------------------------------------------------------------- writing
def write(inv: Inventory) -> None:
    """Write hosts.yml, ssh_config and known_hosts for `inv` (atomically, each file)."""
    import yaml

    inv.dir.mkdir(parents=True, exist_ok=True)
    doc = {"identity_file": inv.identity_file, "hosts": [_host_dict(h) for h in inv.hosts]}
    header = "# Generated by CourseHub (inv provision). Hand-written files of this shape work too.\n"
    atomic_write(inv.hosts_file, header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    _write_derived(inv)


def _host_dict(h: Host) -> dict[str, Any]:
    d = asdict(h)
    for key in ("metadata", "server_id", "volumes", "host_keys"):
        if not d[key]:
            d.pop(key)
    return d


def _write_derived(inv: Inventory) -> None:
    atomic_write(inv.ssh_config, render_ssh_config(inv))
    atomic_write(inv.known_hosts, render_known_hosts(inv.hosts))


def render_ssh_config(inv: Inventory) -> str:
    """An ssh_config whose every host uses strict checking against inventory/known_hosts."""
    known = inv.known_hosts.resolve()
    lines = [f"# Generated by CourseHub from {inv.hosts_file.name}: ssh -F {inv.ssh_config} <name>", ""]
    for h in inv.hosts:
        lines += [
            f"Host {h.name}",
            f"  HostName {h.address}",
            f"  User {h.user}",
            f"  Port {h.port}",
        ]
        if inv.identity_file:
            lines += [f"  IdentityFile {Path(inv.identity_file).expanduser().resolve()}", "  IdentitiesOnly yes"]
        lines += [
            f"  UserKnownHostsFile {known}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  PasswordAuthentication no",
            "  ConnectTimeout 10",
            "  ServerAliveInterval 15",
            "",
        ]
    return "\n".join(lines)


def render_known_hosts(hosts: Iterable[Host]) -> str:
    out = ["# Generated by CourseHub: host keys read from each server's console log, never by keyscan."]
    for h in hosts:
        out += [f"{h.known_hosts_patterns} {' '.join(k.split()[:2])}" for k in h.host_keys]
    return "\n".join(out) + "\n"


def atomic_write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
