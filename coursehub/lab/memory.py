"""The `memory` backend: servers are records with real, freshly generated host keys.

Nothing boots. `create` makes an ed25519 and an ECDSA P-256 host key per server
(the private halves are thrown away) so the console log, known_hosts and the
provisioning code see exactly what a real server would give them. Everything
else is recorded in `calls` for tests to assert on.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .backend import HostFault, HostKeys, ServerSpec

__all__ = ["MemoryBackend", "new_host_keys"]


def _openssh(public_key: Any, comment: str) -> str:
    raw = public_key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{raw} {comment}"


def new_host_keys(name: str, kinds: tuple[str, ...] = ("ed25519", "ecdsa")) -> HostKeys:
    """Fresh host public keys for `name` ("ssh-ed25519 AAAA... root@name", ...)."""
    lines = []
    for kind in kinds:
        if kind == "ed25519":
            lines.append(_openssh(ed25519.Ed25519PrivateKey.generate().public_key(), f"root@{name}"))
        elif kind == "ecdsa":
            lines.append(_openssh(ec.generate_private_key(ec.SECP256R1()).public_key(), f"root@{name}"))
        else:
            raise ValueError(f"unsupported host key type {kind!r}")
    return HostKeys(tuple(lines))


class MemoryBackend:
    """A Backend whose servers exist only as records.

    fail: a regex; servers whose name matches never boot (`ready` returns None).
    ready_after: how many `ready` calls a server answers False before True (0 = up at once).
    """

    kind = "memory"

    def __init__(self, fail: str = "", ready_after: int = 0, key_kinds: tuple[str, ...] = ("ed25519", "ecdsa")):
        self._lock = threading.Lock()
        self.fail = re.compile(fail) if fail else None
        self.ready_after = ready_after
        self.key_kinds = key_kinds
        self.servers: dict[str, ServerSpec] = {}
        self.host_keys: dict[str, HostKeys] = {}
        self.powered: dict[str, bool] = {}
        self.volumes: dict[str, int] = {}                      # volume id -> size GB
        self.attached: dict[str, tuple[str, str]] = {}         # volume id -> (server id, device)
        self.faults: list[tuple[str, HostFault]] = []
        self.calls: list[tuple[Any, ...]] = []
        self._polls: dict[str, int] = {}

    def _call(self, *record: Any) -> None:
        self.calls.append(record)

    def create(self, spec: ServerSpec) -> HostKeys:
        keys = new_host_keys(spec.name, self.key_kinds)
        with self._lock:
            self._call("create", spec.id, spec.name)
            self.servers[spec.id] = spec
            self.host_keys[spec.id] = keys
            self.powered[spec.id] = True
            self._polls[spec.id] = 0
        return keys

    def ready(self, server_id: str) -> bool | None:
        with self._lock:
            spec = self.servers.get(server_id)
            if spec is None:
                return None
            if self.fail and self.fail.search(spec.name):
                return None
            self._polls[server_id] += 1
            return self._polls[server_id] > self.ready_after and self.powered.get(server_id, False)

    def delete(self, server_id: str) -> None:
        with self._lock:
            self._call("delete", server_id)
            self.servers.pop(server_id, None)
            self.host_keys.pop(server_id, None)
            self.powered.pop(server_id, None)
            for vol, (sid, _dev) in list(self.attached.items()):
                if sid == server_id:
                    del self.attached[vol]

    def attach(self, server_id: str, volume_id: str, size_gb: int, device: str) -> None:
        with self._lock:
            self._call("attach", server_id, volume_id, size_gb, device)
            if server_id not in self.servers:
                raise RuntimeError(f"no server {server_id}")
            self.volumes[volume_id] = size_gb
            self.attached[volume_id] = (server_id, device)

    def detach(self, server_id: str, volume_id: str) -> None:
        with self._lock:
            self._call("detach", server_id, volume_id)
            if self.attached.get(volume_id, ("", ""))[0] == server_id:
                del self.attached[volume_id]

    def extend(self, volume_id: str, size_gb: int) -> None:
        with self._lock:
            self._call("extend", volume_id, size_gb)
            self.volumes[volume_id] = size_gb

    def delete_volume(self, volume_id: str) -> None:
        with self._lock:
            self._call("delete_volume", volume_id)
            self.volumes.pop(volume_id, None)
            self.attached.pop(volume_id, None)

    def fault(self, server_id: str, what: HostFault) -> None:
        with self._lock:
            self._call("fault", server_id, what)
            if server_id not in self.servers:
                raise KeyError(server_id)
            self.faults.append((server_id, what))
            if what == "poweroff":
                self.powered[server_id] = False
            elif what in ("poweron", "reboot"):
                self.powered[server_id] = True

    def close(self) -> None:
        with self._lock:
            self._call("close")
            self.servers.clear()
            self.host_keys.clear()
            self.powered.clear()
            self.volumes.clear()
            self.attached.clear()
