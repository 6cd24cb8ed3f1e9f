"""Real OpenSSH servers on loopback addresses, one per fake host, for fleet tests.

Each "host" is an sshd bound to 127.0.0.N:PORT with its own ed25519 host key,
accepting one client key. Commands run on this machine as the current user, so
tests that use these hosts only touch files under their own temporary folder.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port(addr: str) -> int:
    with socket.socket() as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def keygen(path: Path, comment: str = "") -> str:
    """Make an ed25519 key pair at path; return the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip() if path.suffix else Path(f"{path}.pub").read_text().strip()


@dataclass
class SshdHost:
    name: str
    address: str
    port: int
    host_key_pub: str
    proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def start(root: Path, name: str, address: str, client_pub: str) -> SshdHost:
    """Start one sshd for `name` on `address` (a free port); wait until it answers."""
    d = root / name
    d.mkdir(parents=True)
    hostkey = d / "ssh_host_ed25519_key"
    pub = keygen(hostkey, f"root@{name}")
    auth = d / "authorized_keys"
    auth.write_text(client_pub + "\n")
    auth.chmod(0o600)
    port = free_port(address)
    cfg = d / "sshd_config"
    cfg.write_text(
        f"ListenAddress {address}:{port}\nHostKey {hostkey}\nAuthorizedKeysFile {auth}\nPidFile {d / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "PermitRootLogin prohibit-password\nUseDNS no\nMaxStartups 100:30:200\nLogLevel ERROR\n"
        "Subsystem sftp internal-sftp\n"
    )
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)
    with open(d / "sshd.log", "wb") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stderr=log)
    host = SshdHost(name, address, port, pub, proc)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return host
        except OSError:
            time.sleep(0.05)
    host.stop()
    raise RuntimeError(f"sshd for {name} did not start: {(d / 'sshd.log').read_text()}")


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name
