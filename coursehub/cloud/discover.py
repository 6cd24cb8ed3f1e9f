"""Read what this deployment has on the cloud (GETs only), and look names up.

A name lookup that misses lists what exists and suggests the closest names,
so a typo in vars.yml gets `did you mean ...` instead of a stack trace.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from coursehub.cloud import names
from coursehub.cloud.connect import CloudError, Retrier
from coursehub.cloud.plan import CloudState, Rule, RuleInfo, ServerInfo, VolumeInfo

if TYPE_CHECKING:
    from openstack.connection import Connection

    from coursehub.settings import Settings


def lookup(call: Retrier, kind: str, key: str, wanted: str, find: Any, listing: Any) -> Any:
    """find(wanted) or a one-line CloudError naming the vars.yml key with suggestions."""
    found = call(f"find {kind}", find, wanted, ignore_missing=True)
    if found is not None:
        return found
    available = sorted({getattr(x, "name", None) or "" for x in call(f"list {kind}s", lambda: list(listing()))} - {""})
    close = difflib.get_close_matches(wanted, available, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    shown = ", ".join(available[:8]) + (" ..." if len(available) > 8 else "")
    raise CloudError(f"vars.yml: {key}: no {kind} named {wanted!r}{hint} (available: {shown or 'none'})", code=2)


def resolve(conn: Connection, s: Settings, call: Retrier) -> dict[str, Any]:
    """Flavor, image and network objects named in vars.yml (raises on typos)."""
    flavor = lookup(call, "flavor", "instances.flavor", s.instances.flavor, conn.compute.find_flavor,
                    lambda: conn.compute.flavors(details=True))
    image = lookup(call, "image", "instances.image", s.instances.image, conn.image.find_image, conn.image.images)
    if s.instances.network:
        network = lookup(call, "network", "instances.network", s.instances.network, conn.network.find_network,
                         conn.network.networks)
    else:
        nets = call("list networks", lambda: [n for n in conn.network.networks() if not n.is_router_external])
        if len(nets) != 1:
            raise CloudError(f"vars.yml: instances.network: the project has {len(nets)} networks, so name one "
                             f"(got ''; expected one of {', '.join(sorted(n.name for n in nets)) or 'none'})", code=2)
        network = nets[0]
    return {"flavor": flavor, "image": image, "network": network}


def discover(conn: Connection, s: Settings, call: Retrier) -> CloudState:
    """Everything of this deployment: keypair, security group and rules, servers, volumes."""
    st = CloudState()
    st.keypair = call("find keypair", conn.compute.find_keypair, s.instances.keypair, ignore_missing=True) is not None
    sg = call("find security group", conn.network.find_security_group, names.security_group_name(s.deployment),
              ignore_missing=True)
    if sg is not None:
        st.security_group_id = sg.id
        for r in call("list rules", lambda: list(conn.network.security_group_rules(security_group_id=sg.id))):
            if r.direction != "ingress":
                continue
            st.rules.append(RuleInfo(r.id, Rule(
                protocol=r.protocol, port_min=r.port_range_min, port_max=r.port_range_max,
                remote_ip_prefix=r.remote_ip_prefix, remote_group=r.remote_group_id == sg.id,
                ethertype=r.ether_type or "IPv4")))
    st.servers = servers(conn, s, call)
    st.volumes = volumes(conn, s, call)
    return st


def servers(conn: Connection, s: Settings, call: Retrier) -> list[ServerInfo]:
    out = []
    listed = call("list servers", lambda: list(conn.compute.servers(details=True, name=names.server_name_regex(s.deployment))))
    for x in listed:
        idx = names.index_of(x.name, s.deployment)
        if idx is None or not names.ours(x.metadata, s.deployment):
            continue
        fault = (x.fault or {}).get("message", "") if isinstance(x.fault, dict) else ""
        out.append(ServerInfo(
            id=x.id, name=x.name, index=idx, status=x.status, roles=names.roles_from_metadata(x.metadata),
            metadata=dict(x.metadata or {}), addresses=dict(x.addresses or {}),
            volume_ids=[v["id"] for v in (x.attached_volumes or [])], fault=fault))
    return sorted(out, key=lambda v: v.index)


def volumes(conn: Connection, s: Settings, call: Retrier) -> list[VolumeInfo]:
    out = []
    prefix = f"{s.deployment}-"
    for v in call("list volumes", lambda: list(conn.block_storage.volumes(details=True))):
        if not (v.name or "").startswith(prefix) or not names.ours(v.metadata, s.deployment):
            continue
        out.append(VolumeInfo(id=v.id, name=v.name, size=v.size, status=v.status,
                              attached_to=[a.get("server_id", "") for a in (v.attachments or [])],
                              metadata=dict(v.metadata or {}),
                              device=next((a.get("device", "") for a in (v.attachments or [])), "")))
    return out
