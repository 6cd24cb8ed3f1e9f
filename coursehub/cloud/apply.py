"""Carry out a provisioning plan: concurrent, bounded, retried, convergent.

Creates are never blindly retried (a retried POST could make a twin): a create
that failed is simply not there at the next poll, and is made again then; a
twin that did appear is deleted. Every wait has a deadline and its own poll
loop, and one listing per poll serves every server being waited for.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coursehub.cloud import discover, names
from coursehub.cloud.connect import CloudError, Retrier, transient
from coursehub.cloud.plan import Plan, ServerInfo, VolumeInfo

if TYPE_CHECKING:
    from openstack.connection import Connection

    from coursehub.settings import Settings

Log = Callable[[str], None]


class Poller:
    """Poll intervals that start short and back off to `cap` seconds."""

    def __init__(self, first: float = 0.25, cap: float = 5.0):
        self.delay, self.cap = first, cap

    def sleep(self) -> None:
        time.sleep(self.delay)
        self.delay = min(self.cap, self.delay * 1.5)


def _parallel(n: int, fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    items = list(items)
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(n, len(items)))) as pool:
        return list(pool.map(fn, items))


def check_quota(conn: Connection, s: Settings, p: Plan, flavor: Any, call: Retrier) -> None:
    """Refuse, with numbers, a plan that cannot fit in the project's quota."""
    n = len(p.servers) - len(p.remove_servers)
    gb = sum(size for _, _, size, _ in p.volumes)
    problems = []
    if p.servers:
        lim = call("compute limits", conn.compute.get_limits).absolute
        for what, need, cap, used in (
            ("instances", n, lim.instances, lim.instances_used),
            ("cores", n * flavor.vcpus, lim.total_cores, lim.total_cores_used),
            ("RAM (MB)", n * flavor.ram, lim.total_ram, lim.total_ram_used),
        ):
            if cap is not None and cap >= 0 and need > cap - used:
                problems.append(f"{what}: need {need} more, {max(cap - used, 0)} left (used {used} of {cap})")
    if p.volumes:
        lim = call("volume limits", conn.block_storage.get_limits).absolute
        for what, need, cap, used in (
            ("volumes", len(p.volumes), lim.max_total_volumes, lim.total_volumes_used),
            ("volume gigabytes", gb, lim.max_total_volume_gigabytes, lim.total_gigabytes_used),
        ):
            if cap is not None and cap >= 0 and need > cap - used:
                problems.append(f"{what}: need {need} more, {max(cap - used, 0)} left (used {used} of {cap})")
    if problems:
        raise CloudError("quota: the plan does not fit, nothing was created: " + "; ".join(problems), code=2)


def ensure_keypair(conn: Connection, s: Settings, call: Retrier, log: Log) -> None:
    path = s.resolve(s.instances.public_key_file)
    try:
        key = path.read_text().strip()
    except OSError:
        raise CloudError(f"vars.yml: instances.public_key_file: cannot read {path} to create key pair "
                         f"{s.instances.keypair!r} (got {s.instances.public_key_file!r}; expected an OpenSSH .pub file)",
                         code=2) from None
    from openstack import exceptions as osx

    try:
        call("create keypair", conn.compute.create_keypair, name=s.instances.keypair, public_key=key)
        log(f"created key pair {s.instances.keypair} from {path}")
    except osx.ConflictException:
        pass  # made meanwhile (or by a previous, interrupted run): same name is what we want


def ensure_security_group(conn: Connection, s: Settings, p: Plan, state_sg: str | None, call: Retrier, log: Log) -> str:
    from openstack import exceptions as osx

    sg_id = state_sg
    if sg_id is None:
        sg = call("create security group", conn.network.create_security_group,
                  name=names.security_group_name(s.deployment),
                  description=f"CourseHub deployment {s.deployment}: SSH from the admin range, the hub to the world")
        sg_id = sg.id
        log(f"created security group {sg.name}")
    for rule in p.add_rules:
        body: dict[str, Any] = {"security_group_id": sg_id, "direction": "ingress", "ether_type": rule.ethertype}
        if rule.remote_group:
            body["remote_group_id"] = sg_id
        else:
            body.update(protocol=rule.protocol, port_range_min=rule.port_min, port_range_max=rule.port_max,
                        remote_ip_prefix=rule.remote_ip_prefix)
        # A duplicate rule is refused with 409: already there is the state we want.
        with contextlib.suppress(osx.ConflictException):
            call("create rule", conn.network.create_security_group_rule, **body)
    for r in p.remove_rules:
        call("delete rule", conn.network.delete_security_group_rule, r.id, ignore_missing=True)
    return sg_id


def converge_volumes(conn: Connection, s: Settings, wanted: list[tuple[str, str, int, int]], call: Retrier,
                     log: Log) -> dict[str, VolumeInfo]:
    """Make each wanted volume exist and be available (or in-use); recreate ones in error."""
    deadline = time.monotonic() + s.cloud.build_timeout
    attempts: dict[str, int] = {}
    ignore: set[str] = set()
    todo = {name: (role, size, idx) for name, role, size, idx in wanted}
    done: dict[str, VolumeInfo] = {}
    poll = Poller()
    while todo:
        have: dict[str, list[VolumeInfo]] = {}
        for v in discover.volumes(conn, s, call):
            if v.id not in ignore:
                have.setdefault(v.name, []).append(v)
        to_create = []
        for name in list(todo):
            found = have.get(name, [])
            for twin in found[1:]:
                call("delete twin volume", conn.block_storage.delete_volume, twin.id, ignore_missing=True)
                ignore.add(twin.id)
            if not found:
                to_create.append(name)
            elif found[0].status in ("available", "in-use"):
                done[name] = found[0]
                del todo[name]
            elif found[0].status in ("error", "error_extending"):
                log(f"volume {name} is in error; deleting it to make it again")
                call("delete volume", conn.block_storage.delete_volume, found[0].id, ignore_missing=True)
                ignore.add(found[0].id)
                to_create.append(name)
        for name in to_create:
            attempts[name] = attempts.get(name, 0) + 1
            if attempts[name] > s.cloud.retries + 1:
                raise CloudError(f"volume {name}: could not be created after {attempts[name] - 1} attempts")

        def create(name: str) -> None:
            role, size, idx = todo[name]
            meta = {names.DEPLOYMENT: s.deployment, names.VOLUME_ROLE: role, names.INDEX: str(idx)}
            try:
                conn.block_storage.create_volume(name=name, size=size, metadata=meta,
                                                 availability_zone=s.volumes.availability_zone or None)
            except Exception as e:
                if not transient(e):
                    raise
                log(f"volume {name}: {type(e).__name__} on create; will look again")

        _parallel(s.cloud.parallel, create, to_create)
        if not todo:
            break
        if time.monotonic() > deadline:
            raise CloudError(f"volumes not ready after {s.cloud.build_timeout} s: {', '.join(sorted(todo))}")
        poll.sleep()
    return done


def converge_servers(conn: Connection, s: Settings, wanted: list[names.WantedServer], res: dict[str, Any],
                     sg_name: str, call: Retrier, log: Log) -> dict[str, ServerInfo]:
    """Make each wanted server exist and be ACTIVE; an ERROR build is deleted and made again."""
    deadline = time.monotonic() + s.cloud.build_timeout
    attempts: dict[str, int] = {}
    ignore: set[str] = set()
    todo = {w.name: w for w in wanted}
    done: dict[str, ServerInfo] = {}
    groups = [{"name": sg_name}] + [{"name": g} for g in s.instances.extra_security_groups]
    poll = Poller()
    while todo:
        have: dict[str, list[ServerInfo]] = {}
        for x in discover.servers(conn, s, call):
            if x.id not in ignore:
                have.setdefault(x.name, []).append(x)
        to_create = []
        for name in list(todo):
            found = sorted(have.get(name, []), key=lambda x: x.status != "ACTIVE")
            for twin in found[1:]:
                log(f"server {name}: deleting a twin ({twin.id}) left by a retried request")
                call("delete twin server", conn.compute.delete_server, twin.id, ignore_missing=True)
                ignore.add(twin.id)
            if not found:
                to_create.append(name)
            elif found[0].status == "ACTIVE":
                done[name] = found[0]
                del todo[name]
            elif found[0].status == "ERROR":
                log(f"server {name} ended in ERROR ({found[0].fault or 'no fault given'}); deleting it to build it again")
                call("delete server", conn.compute.delete_server, found[0].id, ignore_missing=True)
                ignore.add(found[0].id)
                to_create.append(name)
        for name in to_create:
            attempts[name] = attempts.get(name, 0) + 1
            if attempts[name] > s.cloud.retries + 1:
                raise CloudError(f"server {name}: could not be built after {attempts[name] - 1} attempts")

        def create(name: str) -> None:
            w = todo[name]
            try:
                conn.compute.create_server(
                    name=name, image_id=res["image"].id, flavor_id=res["flavor"].id,
                    networks=[{"uuid": res["network"].id}], key_name=s.instances.keypair, security_groups=groups,
                    availability_zone=s.instances.availability_zone or None, metadata=w.metadata(s.deployment))
            except Exception as e:
                if not transient(e):
                    raise
                log(f"server {name}: {type(e).__name__} on create; will look again")

        _parallel(s.cloud.parallel, create, to_create)
        if to_create:
            log(f"building {len(to_create)} server(s): {', '.join(to_create)}")
        if not todo:
            break
        if time.monotonic() > deadline:
            raise CloudError(f"servers not ACTIVE after {s.cloud.build_timeout} s: {', '.join(sorted(todo))}")
        poll.sleep()
    return done


def attach(conn: Connection, s: Settings, pairs: list[tuple[str, str]], call: Retrier, log: Log) -> None:
    """Attach each (server, volume) pair and wait until the volumes are in-use."""
    if not pairs:
        return
    srv = {x.name: x for x in discover.servers(conn, s, call)}
    vols = {v.name: v for v in discover.volumes(conn, s, call)}

    def one(pair: tuple[str, str]) -> None:
        server, volume = srv[pair[0]], vols[pair[1]]
        if server.id in volume.attached_to:
            return
        call("attach volume", conn.compute.create_volume_attachment, server.id, volume=volume.id)

    _parallel(s.cloud.parallel, one, pairs)
    deadline = time.monotonic() + s.cloud.build_timeout
    poll = Poller()
    wanted = {v for _, v in pairs}
    while True:
        states = {v.name: v.status for v in discover.volumes(conn, s, call) if v.name in wanted}
        waiting = sorted(n for n, st in states.items() if st != "in-use")
        if not waiting:
            log(f"attached {len(pairs)} volume(s)")
            return
        if time.monotonic() > deadline:
            raise CloudError(f"volumes not attached after {s.cloud.build_timeout} s: {', '.join(waiting)}")
        poll.sleep()


def remove(conn: Connection, s: Settings, p: Plan, call: Retrier, log: Log) -> None:
    """Delete the plan's servers (wait until gone), then its volumes."""
    from openstack import exceptions as osx

    _parallel(s.cloud.parallel, lambda x: call("delete server", conn.compute.delete_server, x.id, ignore_missing=True),
              p.remove_servers)
    deadline = time.monotonic() + s.cloud.build_timeout
    poll = Poller()
    gone = {x.id for x in p.remove_servers}
    while gone and time.monotonic() < deadline:
        gone = {x.id for x in discover.servers(conn, s, call)} & gone
        if gone:
            poll.sleep()
    for x in p.remove_servers:
        log(f"deleted server {x.name}")

    def delete_volume(v: VolumeInfo) -> None:
        poll = Poller()
        while time.monotonic() < deadline:
            try:
                call("delete volume", conn.block_storage.delete_volume, v.id, ignore_missing=True)
                log(f"deleted volume {v.name}")
                return
            except (osx.BadRequestException, osx.ConflictException):
                poll.sleep()  # still detaching
        raise CloudError(f"volume {v.name} could not be deleted in {s.cloud.build_timeout} s")

    _parallel(s.cloud.parallel, delete_volume, p.remove_volumes)


def host_keys(conn: Connection, s: Settings, servers: list[ServerInfo], call: Retrier, log: Log,
              timeout: float) -> dict[str, list[str]]:
    """Each server's host keys from its console log, polled until cloud-init has printed them."""
    from coursehub.cloud.hostkeys import parse_host_keys

    def one(x: ServerInfo) -> tuple[str, list[str]]:
        deadline = time.monotonic() + timeout
        poll = Poller(0.25, 3.0)
        while True:
            out = call("console log", conn.compute.get_server_console_output, x.id)
            keys = parse_host_keys((out or {}).get("output", "") if isinstance(out, dict) else str(out))
            if keys or time.monotonic() > deadline:
                return x.name, keys
            poll.sleep()

    found = dict(_parallel(s.cloud.parallel, one, servers))
    missing = sorted(n for n, k in found.items() if not k)
    if missing:
        log(f"no host keys in the console log of: {', '.join(missing)} (they stay untrusted)")
    return found


def address(x: ServerInfo, network: str) -> str:
    """The server's floating IPv4 if it has one, else its fixed IPv4 on `network`."""
    entries = x.addresses.get(network) or [e for v in x.addresses.values() for e in v]
    v4 = [e for e in entries if e.get("version") == 4]
    floating = [e for e in v4 if e.get("OS-EXT-IPS:type") == "floating"]
    chosen = (floating or v4 or entries or [{}])[0]
    return str(chosen.get("addr", ""))


def identity_file(s: Settings) -> str:
    return str(Path(s.resolve(s.instances.private_key_file)))
