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
from dataclasses import dataclass
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


@dataclass
class _Kind:
    """What converging one kind of resource (volumes, servers) needs to know."""

    noun: str                               # "volume"
    made: str                               # "created": could not be <made>
    making: str                             # "creating": the progress line
    ready_word: str                         # "ready": not <ready_word> after ...
    listing: Callable[[], list[Any]]        # this deployment's resources (.id, .name, .status)
    is_ready: Callable[[Any], bool]
    is_failed: Callable[[Any], bool]
    failed_why: Callable[[Any], str]        # the log line for a failed one
    delete: Callable[[str], Any]            # by id
    create: Callable[[str], None]           # by name; may raise


def _converge(s: Settings, kind: _Kind, wanted: Iterable[str], log: Log) -> dict[str, Any]:
    """Make each wanted resource exist and be ready: one listing per poll for all of them;
    a failed one is deleted and made again (bounded); a twin left by a retried request is deleted;
    a create that failed transiently is simply made again at the next poll."""
    deadline = time.monotonic() + s.cloud.build_timeout
    attempts: dict[str, int] = {}
    ignore: set[str] = set()
    todo = list(dict.fromkeys(wanted))
    done: dict[str, Any] = {}
    poll = Poller()
    while todo:
        have: dict[str, list[Any]] = {}
        for x in kind.listing():
            if x.id not in ignore:
                have.setdefault(x.name, []).append(x)
        to_create = []
        for name in list(todo):
            found = sorted(have.get(name, []), key=lambda x: not kind.is_ready(x))
            for twin in found[1:]:
                log(f"{kind.noun} {name}: deleting a twin ({twin.id}) left by a retried request")
                kind.delete(twin.id)
                ignore.add(twin.id)
            if not found:
                to_create.append(name)
            elif kind.is_ready(found[0]):
                done[name] = found[0]
                todo.remove(name)
            elif kind.is_failed(found[0]):
                log(kind.failed_why(found[0]))
                kind.delete(found[0].id)
                ignore.add(found[0].id)
                to_create.append(name)
        for name in to_create:
            attempts[name] = attempts.get(name, 0) + 1
            if attempts[name] > s.cloud.retries + 1:
                raise CloudError(f"{kind.noun} {name}: could not be {kind.made} after {attempts[name] - 1} attempts")

        def create(name: str) -> None:
            try:
                kind.create(name)
            except Exception as e:
                if not transient(e):
                    raise
                log(f"{kind.noun} {name}: {type(e).__name__} on create; will look again")

        _parallel(s.cloud.parallel, create, to_create)
        if to_create:
            log(f"{kind.making} {len(to_create)} {kind.noun}(s): {', '.join(to_create)}")
        if not todo:
            break
        if time.monotonic() > deadline:
            raise CloudError(f"{kind.noun}s not {kind.ready_word} after {s.cloud.build_timeout} s: "
                             f"{', '.join(sorted(todo))}")
        poll.sleep()
    return done


def converge_volumes(conn: Connection, s: Settings, wanted: list[tuple[str, str, int, int]], call: Retrier,
                     log: Log) -> dict[str, VolumeInfo]:
    """Make each wanted volume exist and be available (or in-use); recreate ones in error."""
    spec = {name: (role, size, idx) for name, role, size, idx in wanted}

    def create(name: str) -> None:
        role, size, idx = spec[name]
        meta = {names.DEPLOYMENT: s.deployment, names.VOLUME_ROLE: role, names.INDEX: str(idx)}
        conn.block_storage.create_volume(name=name, size=size, metadata=meta,
                                         availability_zone=s.volumes.availability_zone or None)

    return _converge(s, _Kind(
        noun="volume", made="created", making="creating", ready_word="ready",
        listing=lambda: discover.volumes(conn, s, call),
        is_ready=lambda v: v.status in ("available", "in-use"),
        is_failed=lambda v: v.status in ("error", "error_extending"),
        failed_why=lambda v: f"volume {v.name} is in error; deleting it to make it again",
        delete=lambda vid: call("delete volume", conn.block_storage.delete_volume, vid, ignore_missing=True),
        create=create), spec, log)


def converge_servers(conn: Connection, s: Settings, wanted: list[names.WantedServer], res: dict[str, Any],
                     sg_name: str, call: Retrier, log: Log) -> dict[str, ServerInfo]:
    """Make each wanted server exist and be ACTIVE; an ERROR build is deleted and made again."""
    by_name = {w.name: w for w in wanted}
    groups = [{"name": sg_name}] + [{"name": g} for g in s.instances.extra_security_groups]

    def create(name: str) -> None:
        conn.compute.create_server(
            name=name, image_id=res["image"].id, flavor_id=res["flavor"].id,
            networks=[{"uuid": res["network"].id}], key_name=s.instances.keypair, security_groups=groups,
            availability_zone=s.instances.availability_zone or None, metadata=by_name[name].metadata(s.deployment))

    return _converge(s, _Kind(
        noun="server", made="built", making="building", ready_word="ACTIVE",
        listing=lambda: discover.servers(conn, s, call),
        is_ready=lambda x: x.status == "ACTIVE",
        is_failed=lambda x: x.status == "ERROR",
        failed_why=lambda x: f"server {x.name} ended in ERROR ({x.fault or 'no fault given'}); deleting it to build it again",
        delete=lambda sid: call("delete server", conn.compute.delete_server, sid, ignore_missing=True),
        create=create), by_name, log)


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
