"""From vars.yml and what the cloud has, decide what to create, keep and remove.

Pure functions on plain data: `discover` (cloud/ops.py) fills a CloudState from
the API, `plan()` compares it with the wanted state. The plan is what
`inv provision.plan` prints and what `inv provision` applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from coursehub.cloud import names

if TYPE_CHECKING:
    from coursehub.settings import Settings


class PlanError(Exception):
    """The wanted state cannot be reached safely; str() is one line."""


@dataclass
class ServerInfo:
    id: str
    name: str
    index: int
    status: str
    roles: tuple[str, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    volume_ids: list[str] = field(default_factory=list)
    fault: str = ""


@dataclass
class VolumeInfo:
    id: str
    name: str
    size: int
    status: str
    attached_to: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    device: str = ""  # the attachment's device name, when attached


@dataclass
class Rule:
    """A security group rule in the form we compare by."""

    protocol: str | None
    port_min: int | None
    port_max: int | None
    remote_ip_prefix: str | None
    remote_group: bool = False  # from members of this same group
    ethertype: str = "IPv4"

    def describe(self) -> str:
        ports = "all ports" if self.port_min is None else f"{self.protocol}/{self.port_min}"
        src = "group members" if self.remote_group else self.remote_ip_prefix
        return f"ingress {ports} from {src}"


@dataclass
class RuleInfo:
    id: str
    rule: Rule


@dataclass
class CloudState:
    keypair: bool = False
    security_group_id: str | None = None
    rules: list[RuleInfo] = field(default_factory=list)
    servers: list[ServerInfo] = field(default_factory=list)
    volumes: list[VolumeInfo] = field(default_factory=list)


@dataclass
class Plan:
    create: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    servers: list[names.WantedServer] = field(default_factory=list)  # to create
    remove_servers: list[ServerInfo] = field(default_factory=list)
    volumes: list[tuple[str, str, int, int]] = field(default_factory=list)  # (name, role, size, index) to create
    remove_volumes: list[VolumeInfo] = field(default_factory=list)
    attach: list[tuple[str, str]] = field(default_factory=list)  # (server name, volume name)
    add_rules: list[Rule] = field(default_factory=list)
    remove_rules: list[RuleInfo] = field(default_factory=list)
    keypair: bool = False
    security_group: bool = False

    @property
    def changes(self) -> int:
        return len(self.create) + len(self.remove)

    def lines(self) -> list[str]:
        return ([f"+ {x}" for x in self.create] + [f"- {x}" for x in self.remove] + [f"= {x}" for x in self.keep])


def wanted_rules(s: Settings) -> list[Rule]:
    """SSH only from the admin's range; the public ports from anywhere; everything between members."""
    rules = [Rule("tcp", 22, 22, s.network.admin_cidr)]
    rules += [Rule("tcp", p, p, "0.0.0.0/0") for p in s.network.public_ports if p != 22]
    rules.append(Rule(None, None, None, None, remote_group=True))
    return rules


def wanted_servers(s: Settings, head_index: int | None, indices: list[int]) -> list[names.WantedServer]:
    """The servers vars.yml asks for at the given indices, with roles and volumes."""
    out = []
    for i in indices:
        roles = ["head"] if i == head_index else ["compute"]
        if s.storage.backend == "nfs" and i == head_index:
            roles.append("storage")
        vols = []
        if s.volumes.enabled and (s.volumes.nodes == 0 or i <= s.volumes.nodes):
            if s.volumes.data_gb:
                vols.append((names.volume_name(s.deployment, i, "data"), "data", s.volumes.data_gb))
            if s.volumes.storage_gb:
                vols.append((names.volume_name(s.deployment, i, "storage"), "storage", s.volumes.storage_gb))
                if "storage" not in roles:
                    roles.append("storage")
        out.append(names.WantedServer(i, names.server_name(s.deployment, i), tuple(roles), tuple(vols)))
    return out


def plan(s: Settings, state: CloudState, allow_remove: bool = False) -> Plan:
    """Compare the wanted state with `state`; raise PlanError where it would be unsafe."""
    p = Plan()
    dep = s.deployment
    if state.keypair:
        p.keep.append(f"keypair {s.instances.keypair}")
    else:
        p.keypair = True
        p.create.append(f"keypair {s.instances.keypair} (from {s.instances.public_key_file})")
    sg = names.security_group_name(dep)
    if state.security_group_id is None:
        p.security_group = True
        p.create.append(f"security group {sg}")
    wanted = wanted_rules(s)
    have = list(state.rules)
    for rule in wanted:
        match = next((r for r in have if r.rule == rule), None)
        if match:
            have.remove(match)
            p.keep.append(f"rule {rule.describe()}")
        else:
            p.add_rules.append(rule)
            p.create.append(f"rule {rule.describe()}")
    for r in have:
        p.remove_rules.append(r)
        p.remove.append(f"rule {r.rule.describe()} (not in vars.yml)")

    servers = sorted(state.servers, key=lambda x: x.index)
    heads = [x for x in servers if "head" in x.roles]
    if len(heads) > 1:
        raise PlanError(f"more than one server is marked head: {', '.join(x.name for x in heads)}; "
                        f"remove '{names.ROLES}=head' from all but one")
    if servers and not heads:
        raise PlanError(f"servers exist ({', '.join(x.name for x in servers)}) but none is marked head in its "
                        "metadata; the head is never re-elected silently")
    head_index = heads[0].index if heads else None
    count = s.instances.count
    extra = len(servers) - count
    if extra > 0:
        victims = [x for x in reversed(servers) if "head" not in x.roles][:extra]
        if not allow_remove:
            raise PlanError(
                f"instances.count is {count} but {len(servers)} servers exist; removing "
                f"{', '.join(v.name for v in victims)} needs --remove (drain them first: inv ops.drain --node NAME)")
        p.remove_servers = victims
        p.remove += [f"server {v.name} (newest non-head node)" for v in victims]
    kept = [x for x in servers if x not in p.remove_servers]
    taken = {x.index for x in kept}
    new_indices: list[int] = []
    i = 1
    while len(taken) + len(new_indices) < count:
        if i not in taken:
            new_indices.append(i)
        i += 1
    if head_index is None and new_indices:
        head_index = new_indices[0]
    for x in kept:
        p.keep.append(f"server {x.name} ({','.join(x.roles)}, {x.status})")
    p.servers = wanted_servers(s, head_index, new_indices)
    p.create += [f"server {w.name} ({','.join(w.roles)}, {s.instances.flavor})" for w in p.servers]

    vols = {v.name: v for v in state.volumes}
    by_id = {x.id: x for x in kept}
    keep_targets = wanted_servers(s, head_index, sorted(taken)) + p.servers
    wanted_vol_names: set[str] = set()
    for w in keep_targets:
        for vname, role, size in w.volumes:
            wanted_vol_names.add(vname)
            v = vols.get(vname)
            if v is None:
                p.volumes.append((vname, role, size, w.index))
                p.create.append(f"volume {vname} ({size} GB, {role})")
                p.attach.append((w.name, vname))
                continue
            attached = [by_id[sid].name for sid in v.attached_to if sid in by_id]
            if w.name in attached:
                p.keep.append(f"volume {vname} ({v.size} GB, attached to {w.name})")
            elif v.attached_to:
                raise PlanError(f"volume {vname} is attached to another server ({', '.join(v.attached_to)})")
            else:
                p.keep.append(f"volume {vname} ({v.size} GB)")
                p.attach.append((w.name, vname))
                p.create.append(f"attachment {vname} -> {w.name}")
    for v in state.volumes:
        if v.name not in wanted_vol_names:
            p.remove_volumes.append(v)
            p.remove.append(f"volume {v.name} ({v.size} GB)")
    if p.remove_volumes and not allow_remove:
        raise PlanError(f"volumes would be deleted with their data ({', '.join(v.name for v in p.remove_volumes)}); "
                        "pass --remove if that is what you want")
    return p
