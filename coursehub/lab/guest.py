"""A lab host's identity, written into its root filesystem before it boots.

What a cloud image plus cloud-init would give a fresh server: hostname, /etc/hosts,
a machine-id, its own SSH host key, the image user with the keypair's public key and
passwordless sudo, root's authorized_keys, and the lab's apt proxy and (dead) NTP server.
Pure file operations on the host's overlay root (no chroot, no forks), so it takes ~1 ms.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from coursehub.lab.image import apt_proxy_conf, timesyncd_conf

HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
USER_GROUPS = ("adm", "sudo", "systemd-journal")


@dataclass(frozen=True)
class HostKey:
    """An SSH host key: the private key file text and the public line."""

    private_openssh: bytes
    public_line: str  # "ssh-ed25519 AAAA... root@name"


def new_host_key(hostname: str) -> HostKey:
    """A fresh ed25519 host key (about 1 ms)."""
    key = Ed25519PrivateKey.generate()
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return HostKey(private_openssh=priv, public_line=f"{pub.decode()} root@{hostname}")


def hostname_for(name: str) -> str:
    """A valid hostname from a server name (lower case, invalid characters become '-')."""
    h = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    if not HOSTNAME_RE.match(h):
        raise ValueError(f"server name {name!r} gives no valid hostname")
    return h


def _write(path: Path, text: str | bytes, mode: int = 0o644, uid: int = 0, gid: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    tmp = path.with_name(f".{path.name}.coursehub-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
        os.fchown(fd, uid, gid)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def hosts_file(hostname: str, address: str, peers: dict[str, str]) -> str:
    """/etc/hosts: localhost, the host itself, and its peers."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters", f"{address}\t{hostname}"]
    for name, addr in sorted(peers.items(), key=lambda kv: kv[1]):
        peer = hostname_for(name)
        if peer != hostname:
            lines.append(f"{addr}\t{peer}")
    return "\n".join(lines) + "\n"


def ensure_user(root: Path, user: str) -> tuple[int, int, Path]:
    """Create `user` (uid/gid >= 1000, home from /etc/skel) unless it exists; return uid, gid, home."""
    if not USER_RE.match(user):
        raise ValueError(f"invalid image user name {user!r}")
    etc = root / "etc"
    passwd = _lines(etc / "passwd")
    for line in passwd:
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3]), Path(f[5])
    used = {int(ln.split(":")[2]) for ln in passwd if ln.count(":") >= 6}
    used |= {int(ln.split(":")[2]) for ln in _lines(etc / "group") if ln.count(":") >= 3}
    uid = next(i for i in range(1000, 60000) if i not in used)
    home = Path("/home") / user
    days = int(time.time() // 86400)
    _write(etc / "passwd", "\n".join([*passwd, f"{user}:x:{uid}:{uid}:{user}:{home}:/bin/bash"]) + "\n")
    _write(etc / "shadow", "\n".join([*_lines(etc / "shadow"), f"{user}:*:{days}:0:99999:7:::"]) + "\n",
           mode=0o640, gid=_gid(root, "shadow"))
    groups = []
    for line in _lines(etc / "group"):
        f = line.split(":")
        if f[0] in USER_GROUPS:
            members = [m for m in f[3].split(",") if m]
            f[3] = ",".join([*members, user])
            line = ":".join(f)
        groups.append(line)
    groups.append(f"{user}:x:{uid}:")
    _write(etc / "group", "\n".join(groups) + "\n")
    gshadow = []
    for line in _lines(etc / "gshadow"):
        f = line.split(":")
        if f[0] in USER_GROUPS and len(f) == 4:
            f[3] = ",".join([*(m for m in f[3].split(",") if m), user])
            line = ":".join(f)
        gshadow.append(line)
    gshadow.append(f"{user}:!::")
    _write(etc / "gshadow", "\n".join(gshadow) + "\n", mode=0o640, gid=_gid(root, "shadow"))
    h = root / home.relative_to("/")
    h.mkdir(parents=True, exist_ok=True)
    os.chown(h, uid, uid)
    os.chmod(h, 0o750)
    skel = etc / "skel"
    for src in skel.iterdir() if skel.is_dir() else []:
        if src.is_file():
            _write(h / src.name, src.read_bytes(), mode=0o644, uid=uid, gid=uid)
    return uid, uid, home


def _gid(root: Path, group: str) -> int:
    for line in _lines(root / "etc/group"):
        f = line.split(":")
        if f[0] == group:
            return int(f[2])
    return 0


def authorize(root: Path, home: Path, uid: int, gid: int, public_key: str) -> None:
    """Install `public_key` as the account's only authorized key (0600, owned by it)."""
    ssh = root / home.relative_to("/") / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(ssh, uid, gid)
    os.chmod(ssh, 0o700)
    text = public_key.strip() + "\n" if public_key.strip() else ""
    _write(ssh / "authorized_keys", text, mode=0o600, uid=uid, gid=gid)


PEM_RE = re.compile(r"-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----")
MACHINE_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def extra_ca_certs(base: Path, machine_bundle: Path = MACHINE_BUNDLE) -> list[str]:
    """CA certificates this machine trusts that the base image does not (PEM, in order).

    The registries are reached through this machine's network path; where that path
    re-signs TLS (a CI egress proxy), the guests' pip/npm need the same CA the machine
    trusts, or every tunnel through the lab proxy fails verification.
    """
    def pems(p: Path) -> list[str]:
        return PEM_RE.findall(p.read_text()) if p.is_file() else []

    known = set(pems(base / "etc/ssl/certs/ca-certificates.crt"))
    return [c for c in dict.fromkeys(pems(machine_bundle)) if c not in known]


def trust_cas(root: Path, pems: list[str]) -> None:
    """Add CA certificates to the guest: one file each for update-ca-certificates, and the bundle."""
    if not pems:
        return
    for i, pem in enumerate(pems):
        _write(root / f"usr/local/share/ca-certificates/coursehub-lab-machine-{i}.crt", pem + "\n")
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    current = bundle.read_text() if bundle.exists() else ""
    _write(bundle, current + "".join(p + "\n" for p in pems if p not in current))


def personalize(root: Path, *, hostname: str, address: str, peers: dict[str, str], user: str,
                public_key: str, host_key: HostKey, gateway: str, user_data: bytes = b"",
                extra_cas: list[str] | None = None, files: dict[str, str] | None = None) -> None:
    """Write everything that makes this root filesystem one particular server."""
    etc = root / "etc"
    _write(etc / "hostname", hostname + "\n")
    _write(etc / "hosts", hosts_file(hostname, address, peers))
    _write(etc / "machine-id", uuid.uuid4().hex + "\n", mode=0o444)
    _write(etc / "ssh/ssh_host_ed25519_key", host_key.private_openssh, mode=0o600)
    _write(etc / "ssh/ssh_host_ed25519_key.pub", host_key.public_line + "\n")
    _write(etc / "ssh/sshd_config.d/05-coursehub-hostkey.conf", "HostKey /etc/ssh/ssh_host_ed25519_key\n")
    _write(etc / "systemd/timesyncd.conf.d/10-coursehub-lab.conf", timesyncd_conf(gateway))
    _write(etc / "apt/apt.conf.d/90coursehub-lab-proxy", apt_proxy_conf(gateway))
    trust_cas(root, extra_cas or [])
    for rel, text in (files or {}).items():
        _write(root / rel, text)
    authorize(root, Path("/root"), 0, 0, public_key)
    if user != "root":
        uid, gid, home = ensure_user(root, user)
        authorize(root, home, uid, gid, public_key)
        _write(etc / "sudoers.d/90-coursehub-lab", f"{user} ALL=(ALL) NOPASSWD:ALL\n", mode=0o440)
    if user_data:
        _write(root / "var/lib/cloud/instance/user-data.txt", user_data, mode=0o600)
