"""Provisioning: vars.yml -> OpenStack resources -> inventory/ (the only stage that talks to the cloud).

    report = cloud.provision(settings, inventory_dir)        # plan, apply, write inventory
    report = cloud.provision(settings, inventory_dir, dry_run=True)   # plan only
    cloud.destroy(settings, inventory_dir)

Provisioning ends at the inventory: it never logs in to a server. Host keys
come from each server's console log; waiting for SSH is bootstrap's first step.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from coursehub.cloud.connect import CloudError, Identity, Retrier, connect, preflight
from coursehub.cloud.plan import Plan, PlanError, ServerInfo

if TYPE_CHECKING:
    from openstack.connection import Connection

    from coursehub.inventory import Inventory
    from coursehub.settings import Settings

__all__ = ["CloudError", "PlanError", "Report", "provision", "destroy", "status", "connect_checked"]


def _stderr(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr, flush=True)


@dataclass
class Report:
    identity: Identity
    plan: Plan
    dry_run: bool
    seconds: float = 0.0
    retried: int = 0
    inventory: Inventory | None = None
    untrusted: list[str] = field(default_factory=list)
    servers: list[ServerInfo] = field(default_factory=list)


def connect_checked(s: Settings, clouds_yaml: str = "", interactive: bool | None = None,
                    log: Callable[[str], None] = _stderr) -> tuple[Connection, Identity]:
    conn = connect(s, clouds_yaml, interactive)
    ident = preflight(conn)
    log(f"cloud: {ident.user} in project {ident.project} ({ident.region}) at {ident.auth_url}")
    return conn, ident


def provision(s: Settings, inventory_dir: Path, *, dry_run: bool = False, allow_remove: bool = False,
              trust_on_first_use: bool = False, clouds_yaml: str = "", interactive: bool | None = None,
              console_timeout: float = 300, log: Callable[[str], None] = _stderr) -> Report:
    """Converge the cloud to vars.yml and write the inventory (or, dry run, only plan)."""
    from coursehub.cloud import apply, discover, names
    from coursehub.cloud.plan import plan

    t0 = time.monotonic()
    conn, ident = connect_checked(s, clouds_yaml, interactive, log)
    call = Retrier(s.cloud.retries, log=log)
    res = discover.resolve(conn, s, call)
    state = discover.discover(conn, s, call)
    p = plan(s, state, allow_remove=allow_remove)
    report = Report(ident, p, dry_run)
    if dry_run:
        report.seconds = time.monotonic() - t0
        return report
    apply.check_quota(conn, s, p, res["flavor"], call)
    if p.keypair:
        apply.ensure_keypair(conn, s, call, log)
    apply.ensure_security_group(conn, s, p, state.security_group_id, call, log)
    with ThreadPoolExecutor(max_workers=2) as pool:
        vols = pool.submit(apply.converge_volumes, conn, s, p.volumes, call, log)
        srvs = pool.submit(apply.converge_servers, conn, s, p.servers, res, names.security_group_name(s.deployment),
                           call, log)
        vols.result()
        srvs.result()
    apply.attach(conn, s, p.attach, call, log)
    if p.remove_servers or p.remove_volumes:
        apply.remove(conn, s, p, call, log)
    servers = discover.servers(conn, s, call)
    known = _known_keys(inventory_dir)
    fresh = [x for x in servers if x.id not in known]
    keys = {x.name: known[x.id] for x in servers if x.id in known}
    keys.update(apply.host_keys(conn, s, fresh, call, log, console_timeout))
    report.untrusted = sorted(n for n, k in keys.items() if not k)
    if report.untrusted and trust_on_first_use:
        keys.update(_first_use_keys(s, servers, report.untrusted, res["network"].name, log))
        report.untrusted = sorted(n for n, k in keys.items() if not k)
    report.inventory = _write_inventory(s, inventory_dir, servers, discover.volumes(conn, s, call), keys,
                                        res["network"].name)
    report.servers = servers
    report.retried = call.retried
    report.seconds = time.monotonic() - t0
    return report


def _known_keys(d: Path) -> dict[str, list[str]]:
    """Host keys already verified for these very servers (by server id) in the current inventory."""
    from coursehub import inventory

    try:
        inv = inventory.load(d)
    except inventory.InventoryError:
        return {}
    return {h.server_id: h.host_keys for h in inv.hosts if h.server_id and h.host_keys}


def _write_inventory(s: Settings, d: Path, servers: list[ServerInfo], volumes: list, keys: dict[str, list[str]],
                     network: str) -> Inventory:
    from coursehub import inventory
    from coursehub.cloud import apply

    by_server: dict[str, list[inventory.Volume]] = {}
    for v in volumes:
        for sid in v.attached_to:
            role = v.metadata.get("coursehub_volume", "data")
            by_server.setdefault(sid, []).append(inventory.Volume(v.id, v.name, v.size, role, v.device))
    hosts = [
        inventory.Host(name=x.name, address=apply.address(x, network), user=s.instances.user, roles=list(x.roles),
                       volumes=sorted(by_server.get(x.id, []), key=lambda v: v.name), metadata=x.metadata,
                       server_id=x.id, host_keys=keys.get(x.name, []))
        for x in servers
    ]
    inv = inventory.Inventory(dir=d, hosts=hosts, identity_file=apply.identity_file(s))
    inventory.write(inv)
    return inv


def _first_use_keys(s: Settings, servers: list[ServerInfo], names_: list[str], network: str,
                    log: Callable[[str], None]) -> dict[str, list[str]]:
    """--trust-on-first-use: take whatever key the server offers now. Loudly."""
    import paramiko

    from coursehub.cloud import apply

    out: dict[str, list[str]] = {}
    for x in servers:
        if x.name not in names_:
            continue
        log(f"WARNING: trusting {x.name}'s host key on first use, NOT verified against its console log")
        try:
            with paramiko.Transport((apply.address(x, network), 22)) as t:
                t.start_client(timeout=15)
                key = t.get_remote_server_key()
                out[x.name] = [f"{key.get_name()} {key.get_base64()}"]
        except (OSError, paramiko.SSHException) as e:
            log(f"{x.name}: could not read a host key on first use either: {e}")
    return out


def status(s: Settings, clouds_yaml: str = "", interactive: bool | None = None,
           log: Callable[[str], None] = _stderr) -> tuple[list[ServerInfo], list]:
    """This deployment's servers and volumes as the cloud sees them."""
    from coursehub.cloud import discover

    conn, _ = connect_checked(s, clouds_yaml, interactive, log)
    call = Retrier(s.cloud.retries, log=log)
    return discover.servers(conn, s, call), discover.volumes(conn, s, call)


def destroy(s: Settings, inventory_dir: Path, clouds_yaml: str = "", interactive: bool | None = None,
            log: Callable[[str], None] = _stderr) -> list[str]:
    """Delete every server, volume and the security group of this deployment; keep the key pair."""
    from coursehub.cloud import apply, discover, names

    conn, _ = connect_checked(s, clouds_yaml, interactive, log)
    call = Retrier(s.cloud.retries, log=log)
    state = discover.discover(conn, s, call)
    p = Plan(remove_servers=state.servers, remove_volumes=state.volumes)
    apply.remove(conn, s, p, call, log)
    removed = [f"server {x.name}" for x in state.servers] + [f"volume {v.name}" for v in state.volumes]
    if state.security_group_id:
        call("delete security group", conn.network.delete_security_group, state.security_group_id, ignore_missing=True)
        removed.append(f"security group {names.security_group_name(s.deployment)}")
    for f in ("hosts.yml", "ssh_config", "known_hosts"):
        (inventory_dir / f).unlink(missing_ok=True)
    return removed
