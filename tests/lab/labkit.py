"""Helpers for the lab tests: reaching lab hosts over SSH with strict host-key checking."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from coursehub.lab.backend import HostKeys, ServerSpec

CAN_RUN_LAB = os.geteuid() == 0 and all(shutil.which(t) for t in ("systemd-nspawn", "mmdebstrap", "ip", "ssh"))
SKIP_REASON = "lab tests need root, systemd-nspawn, mmdebstrap, iproute2 and openssh-client"
USER = "debian"
# Held while a test lab is up: two labs on one machine would share the bridge and addresses.
LAB_LOCK = Path("/tmp/coursehub-lab.lock")


@contextmanager
def lab_lock(timeout: float = 1800.0) -> Iterator[None]:
    """Hold the machine's lab lock (blocking, like every lab user); then wait (bounded) for a
    lab made without it (`inv lab.up`) to go away."""
    with open(LAB_LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            end = time.monotonic() + timeout
            while os.path.exists("/sys/class/net/labbr0") and time.monotonic() < end:
                time.sleep(0.5)
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class LabHost:
    spec: ServerSpec
    keys: HostKeys


@dataclass
class Lab:
    """A running HostsBackend plus what a client needs to reach its hosts."""

    backend: object  # HostsBackend (imported lazily)
    hosts: list[LabHost]
    key: Path
    known_hosts: Path
    dir: Path

    def ssh_argv(self, host: LabHost, user: str = USER) -> list[str]:
        return ["ssh", "-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"{user}@{host.spec.address}"]

    def ssh(self, host: LabHost, command: str, user: str = USER, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run `command` on the host with OpenSSH (strict host-key checking)."""
        return subprocess.run([*self.ssh_argv(host, user), command], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def run(self, host: LabHost, command: str, user: str = USER, timeout: float = 60) -> str:
        """Like ssh(), but the command must succeed; returns its stdout stripped."""
        r = self.ssh(host, command, user, timeout)
        assert r.returncode == 0, f"{host.spec.name}: {command!r} rc={r.returncode}\n{r.stdout}\n{r.stderr}"
        return r.stdout.strip()


def make_spec(index: int, public_key: str, n_peers: int, prefix: str = "node") -> ServerSpec:
    peers = {f"{prefix}{i}": f"10.77.0.{10 + i}" for i in range(1, n_peers + 1)}
    return ServerSpec(id=str(uuid.uuid4()), name=f"{prefix}{index}", index=index, address=f"10.77.0.{10 + index}",
                      mac=f"02:77:00:00:00:{index:02x}", user=USER, public_key=public_key, peers=peers)


def write_known_hosts(path: Path, hosts: list[LabHost]) -> None:
    path.write_text("".join(f"{h.spec.address} {line}\n" for h in hosts for line in h.keys.lines))
