"""The lab cloud's records: one project, its seed, servers, volumes, ports, and the knobs.

Everything lives in `LabState` behind one re-entrant lock. Status is computed
lazily from an injectable clock (`LabState.clock`), so tests can step time
instead of sleeping: a server is BUILD until `build_seconds` have passed *and*
the backend says it is up; a volume's pending transition (creating ->
available, attaching -> in-use, ...) lands when its `settle_at` has passed.

Seed (fixed ids, derived from names, so they are stable across runs):
flavors m3.small/medium/large/xlarge; images "NeCTAR Ubuntu 24.04 LTS (Noble) amd64"
(login user `ubuntu`) and "Debian 12 (Bookworm)" (login user `debian`) -- the
image property `default_user` names the login user that the backend creates;
network `lab` with subnet `lab-subnet` on the lab CIDR (gateway .1, server i
gets .(10+i) and MAC 02:77:00:00:ii:ii); security group `default`; AZ `nova`.
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from coursehub.lab.backend import HostKeys

from .web import ApiError

_NS = uuid.UUID("5d1f8c7e-6a43-4f0e-9b1e-77c0ffee0001")

DEFAULT_QUOTAS: dict[str, int] = {
    # nova
    "instances": 50, "cores": 200, "ram": 819200, "key_pairs": 100, "metadata_items": 128,
    "server_groups": 10, "server_group_members": 10,
    # cinder
    "volumes": 50, "gigabytes": 2000, "snapshots": 10, "backups": 10, "backup_gigabytes": 1000,
    # neutron
    "security_group": 10, "security_group_rule": 100, "network": 100, "subnet": 100, "port": 500,
    "router": 10, "floatingip": 50,
}

FLAVORS = [  # name, vcpus, ram MB, disk GB
    ("m3.small", 1, 2048, 30), ("m3.medium", 2, 8192, 30), ("m3.large", 4, 16384, 30), ("m3.xlarge", 8, 32768, 30),
]
IMAGES = [  # name, default_user, os_distro, os_version
    ("NeCTAR Ubuntu 24.04 LTS (Noble) amd64", "ubuntu", "ubuntu", "24.04"),
    ("Debian 12 (Bookworm)", "debian", "debian", "12"),
]


def stable_id(kind: str, name: str, hexed: bool = False) -> str:
    u = uuid.uuid5(_NS, f"{kind}:{name}")
    return u.hex if hexed else str(u)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass
class LabConfig:
    """Knobs set by `POST /_lab/config` (and the LabAPI constructor)."""

    build_seconds: float = 0.0      # a server stays in BUILD at least this long
    delete_seconds: float = 0.0     # a deleted server answers GET (task_state deleting) this long, then 404
    volume_seconds: float = 0.0     # volume transitions (creating, attaching, extending, ...) take this long
    token_seconds: float = 3600.0   # token lifetime
    error_builds: int = 0           # the next N servers created end in ERROR
    error_names: str = ""           # servers whose name matches this regex (re.search) end in ERROR
    quotas: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_QUOTAS))

    def update(self, data: dict[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        for key, value in data.items():
            if key not in known:
                raise ApiError(400, f"unknown config key {key!r}; known: {', '.join(sorted(known))}")
            if key == "quotas":
                if not isinstance(value, dict) or not all(isinstance(v, int) for v in value.values()):
                    raise ApiError(400, "quotas must map names to whole numbers (-1 = unlimited)")
                unknown = set(value) - set(DEFAULT_QUOTAS)
                if unknown:
                    raise ApiError(400, f"unknown quota {sorted(unknown)}; known: {', '.join(DEFAULT_QUOTAS)}")
                self.quotas.update(value)
            elif key == "error_names":
                if not isinstance(value, str):
                    raise ApiError(400, "error_names must be a regular expression")
                self.error_names = value
            else:
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ApiError(400, f"{key} must be a number >= 0")
                setattr(self, key, int(value) if key == "error_builds" else float(value))

    def public(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Server:
    id: str
    name: str
    index: int
    flavor_id: str
    image_id: str
    key_name: str | None
    security_groups: list[str]
    availability_zone: str
    metadata: dict[str, str]
    tags: list[str]
    port_id: str | None
    address: str
    mac: str
    created: float                     # wall clock (for timestamps)
    started: float                     # lab clock (for BUILD)
    description: str | None = None
    user_data: bytes = b""
    login_user: str = ""               # the image's default_user
    public_key: str = ""               # the keypair's public key at boot
    host_keys: HostKeys | None = None
    status: str = "BUILD"              # BUILD, ACTIVE, ERROR, SHUTOFF
    fault: dict[str, Any] | None = None
    forced_error: str | None = None    # why the lab decided this build fails
    launched: float | None = None
    updated: float = 0.0
    deleting: bool = False
    gone_at: float | None = None       # lab clock: after this, the server is purged (404)
    volumes: list[str] = field(default_factory=list)


@dataclass
class Volume:
    id: str
    name: str | None
    size: int
    availability_zone: str
    description: str | None
    metadata: dict[str, str]
    created: float
    status: str = "creating"
    settle_at: float = 0.0             # lab clock when `settle_to` takes over
    settle_to: str | None = "available"
    attachments: list[dict[str, Any]] = field(default_factory=list)
    updated: float = 0.0
    gone_at: float | None = None


class LabState:
    """Every record of the lab project; hold `lock` while reading or changing."""

    def __init__(self, subnet: str = "10.77.0.0/24", clock: Callable[[], float] = time.monotonic,
                 password: str | None = None, config: LabConfig | None = None):
        self.lock = threading.RLock()
        self.clock = clock
        self.subnet = ipaddress.ip_network(subnet)
        if self.subnet.version != 4 or self.subnet.num_addresses < 16:
            raise ValueError(f"lab subnet must be IPv4 with room for hosts: {subnet}")
        self.password = password or secrets.token_urlsafe(24)
        self.username, self.project_name, self.region = "admin", "coursehub", "Lab"
        self.user_id = stable_id("user", self.username, hexed=True)
        self.project_id = stable_id("project", self.project_name, hexed=True)
        self._initial_config = config or LabConfig()
        self.reset()

    # ------------------------------------------------------------------ seed
    def reset(self) -> None:
        """Forget every server, volume, keypair and group; re-seed; restore the knobs."""
        with self.lock:
            init = self._initial_config
            self.config = LabConfig(**{f.name: getattr(init, f.name) for f in fields(init)})
            self.config.quotas = dict(init.quotas)
            self.tokens: dict[str, float] = getattr(self, "tokens", {})
            self.servers: dict[str, Server] = {}
            self.volumes: dict[str, Volume] = {}
            self.keypairs: dict[str, dict[str, Any]] = {}
            self.keypair_seq = 0
            self.ports: dict[str, dict[str, Any]] = {}
            self.security_groups: dict[str, dict[str, Any]] = {}
            self.rules: dict[str, dict[str, Any]] = {}
            now = time.time()
            self.flavors = {
                stable_id("flavor", n): {"id": stable_id("flavor", n), "name": n, "vcpus": c, "ram": r, "disk": d,
                                         "ephemeral": 0, "swap": 0, "is_public": True, "extra_specs": {}}
                for n, c, r, d in FLAVORS
            }
            self.images = {
                stable_id("image", n): {"id": stable_id("image", n), "name": n, "default_user": u, "os_distro": o,
                                        "os_version": v, "created": now - 86400}
                for n, u, o, v in IMAGES
            }
            net_id, sub_id = stable_id("network", "lab"), stable_id("subnet", "lab-subnet")
            hosts = list(self.subnet.hosts())
            self.networks = {net_id: {"id": net_id, "name": "lab", "subnets": [sub_id], "created": now - 86400}}
            self.subnets = {sub_id: {
                "id": sub_id, "name": "lab-subnet", "network_id": net_id, "cidr": str(self.subnet),
                "gateway_ip": str(hosts[0]), "allocation_pools": [{"start": str(hosts[10]), "end": str(hosts[-1])}],
                "created": now - 86400,
            }}
            self.add_security_group("default", "Default security group", default=True)

    # ------------------------------------------------------------------ network
    @staticmethod
    def lab_network_id() -> str:
        return stable_id("network", "lab")

    @property
    def network(self) -> dict[str, Any]:
        return next(iter(self.networks.values()))

    @property
    def subnet_record(self) -> dict[str, Any]:
        return next(iter(self.subnets.values()))

    def max_index(self) -> int:
        return self.subnet.num_addresses - 12   # .10+index stays below the broadcast address

    def free_index(self) -> int | None:
        used = {s.index for s in self.servers.values()}
        return next((i for i in range(1, self.max_index() + 1) if i not in used), None)

    def address_for(self, index: int) -> str:
        return str(self.subnet.network_address + 10 + index)

    @staticmethod
    def mac_for(index: int) -> str:
        return f"02:77:00:00:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"

    def add_port(self, server_id: str, address: str, mac: str, sg_ids: list[str]) -> dict[str, Any]:
        port_id = new_id()
        port = {"id": port_id, "name": "", "network_id": self.network["id"], "mac_address": mac,
                "fixed_ips": [{"subnet_id": self.subnet_record["id"], "ip_address": address}],
                "device_id": server_id, "device_owner": "compute:nova", "security_groups": sg_ids,
                "created": time.time()}
        self.ports[port_id] = port
        return port

    def add_security_group(self, name: str, description: str, default: bool = False) -> dict[str, Any]:
        sg_id = stable_id("sg", "default") if default else new_id()
        now = time.time()
        sg = {"id": sg_id, "name": name, "description": description, "created": now, "updated": now,
              "revision_number": 1, "stateful": True}
        self.security_groups[sg_id] = sg
        for ethertype in ("IPv4", "IPv6"):
            if default:
                self.add_rule(sg_id, direction="ingress", ethertype=ethertype, remote_group_id=sg_id)
            self.add_rule(sg_id, direction="egress", ethertype=ethertype)
        return sg

    def add_rule(self, sg_id: str, **attrs: Any) -> dict[str, Any]:
        now = time.time()
        rule = {"id": new_id(), "security_group_id": sg_id, "direction": "ingress", "ethertype": "IPv4",
                "protocol": None, "port_range_min": None, "port_range_max": None, "remote_ip_prefix": None,
                "remote_group_id": None, "remote_address_group_id": None, "description": "",
                "created": now, "updated": now, "revision_number": 0}
        rule.update(attrs)
        self.rules[rule["id"]] = rule
        return rule

    def rules_of(self, sg_id: str) -> list[dict[str, Any]]:
        return [r for r in self.rules.values() if r["security_group_id"] == sg_id]

    # ------------------------------------------------------------------ usage and quota
    def live_servers(self) -> list[Server]:
        return [s for s in self.servers.values() if not s.deleting]

    def usage(self) -> dict[str, int]:
        servers = self.live_servers()
        flavors = [self.flavors.get(s.flavor_id, {}) for s in servers]
        return {
            "instances": len(servers), "cores": sum(f.get("vcpus", 0) for f in flavors),
            "ram": sum(f.get("ram", 0) for f in flavors), "key_pairs": len(self.keypairs),
            "volumes": len(self.volumes), "gigabytes": sum(v.size for v in self.volumes.values()),
            "security_group": len(self.security_groups), "security_group_rule": len(self.rules),
            "network": len(self.networks), "subnet": len(self.subnets), "port": len(self.ports),
        }

    def quota(self, name: str) -> int:
        return self.config.quotas.get(name, -1)

    def over_quota(self, wanted: dict[str, int]) -> list[tuple[str, int, int, int]]:
        """[(name, requested, used, limit)] for each resource that `wanted` more of would exceed."""
        used = self.usage()
        out = []
        for name, more in wanted.items():
            limit = self.quota(name)
            if limit >= 0 and used.get(name, 0) + more > limit:
                out.append((name, more, used.get(name, 0), limit))
        return out

    # ------------------------------------------------------------------ tokens
    def issue_token(self) -> tuple[str, float]:
        """A new token and its wall-clock expiry."""
        token = "gAAAAAB" + secrets.token_urlsafe(96)
        self.tokens[token] = self.clock() + self.config.token_seconds
        return token, time.time() + self.config.token_seconds

    def token_valid(self, token: str | None) -> bool:
        expiry = self.tokens.get(token or "")
        if expiry is None:
            return False
        if self.clock() >= expiry:
            self.tokens.pop(token or "", None)
            return False
        return True

    # ------------------------------------------------------------------ time passes
    def settle(self) -> list[Server]:
        """Apply every transition whose time has come; return the servers just purged."""
        now = self.clock()
        for vol in list(self.volumes.values()):
            if vol.gone_at is not None and now >= vol.gone_at:
                del self.volumes[vol.id]
            elif vol.settle_to is not None and now >= vol.settle_at:
                vol.status, vol.settle_to, vol.updated = vol.settle_to, None, time.time()
        purged = []
        for srv in list(self.servers.values()):
            if srv.gone_at is not None and now >= srv.gone_at:
                del self.servers[srv.id]
                if srv.port_id:
                    self.ports.pop(srv.port_id, None)
                purged.append(srv)
        return purged

    def transition(self, vol: Volume, now_status: str, then: str | None) -> None:
        """Put a volume in `now_status`; it lands in `then` once volume_seconds have passed.

        The reply to the request that starts a transition shows `now_status`; the next
        read settles it (with volume_seconds 0, that is the very next request).
        """
        vol.status, vol.updated = now_status, time.time()
        vol.settle_to, vol.settle_at = then, self.clock() + self.config.volume_seconds
