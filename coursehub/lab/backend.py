"""What the lab's OpenStack API asks of the machinery behind its servers.

The API (`coursehub.lab.api`) keeps every record (servers, ports, volumes,
keypairs, security groups) and calls a Backend for what a server *is*:

- `memory`: nothing runs; a server is a record with freshly generated host keys.
- `hosts`:  each server is a real systemd host in its own network namespace on
  the lab bridge (`coursehub.lab.hosts`), reachable over SSH.

All methods are called from the API's request threads; a backend is thread-safe.
`create` returns at once and boots in the background; `ready` tells the API when
the server may leave BUILD (the API also honours its own `build_seconds`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

HostFault = Literal["stop-sshd", "start-sshd", "freeze", "thaw", "cut", "heal", "poweroff", "poweron", "reboot"]


@dataclass(frozen=True)
class ServerSpec:
    """Everything the backend needs to make one server."""

    id: str                      # the Nova server id (uuid4 text)
    name: str                    # becomes the hostname
    index: int                   # 1, 2, 3 ... unique while the server exists
    address: str                 # IPv4 on the lab subnet, e.g. 10.77.0.11
    mac: str                     # fixed per index, e.g. 02:77:00:00:00:01
    user: str                    # the image's login user (gets the key and passwordless sudo)
    public_key: str              # the keypair's public key, one OpenSSH line ("" = none)
    user_data: bytes = b""       # decoded cloud-init user data, if any
    peers: dict[str, str] = field(default_factory=dict)  # name -> address of the other servers


@dataclass(frozen=True)
class HostKeys:
    """Host public keys, one OpenSSH line each ("ssh-ed25519 AAAA... root@name")."""

    lines: tuple[str, ...]


class Backend(Protocol):
    kind: str  # "memory" or "hosts"

    def create(self, spec: ServerSpec) -> HostKeys:
        """Start making the server; return its host keys (known before boot)."""

    def ready(self, server_id: str) -> bool | None:
        """True once the server is up (hosts: sshd answers), None if it failed to boot."""

    def delete(self, server_id: str) -> None:
        """Power the server off and remove everything made for it (idempotent)."""

    def attach(self, server_id: str, volume_id: str, size_gb: int, device: str) -> None:
        """Make the volume appear in the server as `device` (e.g. /dev/vdb)."""

    def detach(self, server_id: str, volume_id: str) -> None:
        """Remove the volume's device from the server; its data stays."""

    def extend(self, volume_id: str, size_gb: int) -> None:
        """Grow the volume's backing store (the device in an attached server grows too)."""

    def delete_volume(self, volume_id: str) -> None:
        """Free the volume's backing store (idempotent)."""

    def fault(self, server_id: str, what: HostFault) -> None:
        """Inject or heal a host fault (hosts backend; memory records it only)."""

    def close(self) -> None:
        """Remove every server and volume this backend made (lab.down)."""
