"""The console log a cloud-init server prints, and reading host keys back out of it.

cloud-init's `cc_keys_to_console` runs `write-ssh-key-fingerprints`, which
sends the fingerprints through `logger -s -t ec2` (so each line on the console
reads ``ec2: 256 SHA256:... root@h1 (ED25519)``; some images add a syslog
``<14>Jun  1 10:00:00`` stamp in front) and then prints the public keys between
``-----BEGIN SSH HOST KEY KEYS-----`` and ``-----END SSH HOST KEY KEYS-----``.
Network and authorized-key tables come from cloud-init itself, prefixed
``ci-info:``.

`render_console` writes such a log for a lab server; `parse_host_keys` reads the
keys back from any console log (a real cloud's or the lab's) and is what
provisioning uses to fill known_hosts, with `parse_fingerprints` to cross-check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import time
from collections.abc import Iterable, Sequence

__all__ = [
    "KEY_TYPES", "parse_public_key", "fingerprint", "md5_fingerprint", "key_bits", "render_console",
    "boot_log", "parse_host_keys", "parse_fingerprints",
]

KEY_TYPES = {
    "ssh-ed25519": "ED25519", "ecdsa-sha2-nistp256": "ECDSA", "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA", "ssh-rsa": "RSA", "ssh-dss": "DSA",
    "sk-ssh-ed25519@openssh.com": "ED25519-SK", "sk-ecdsa-sha2-nistp256@openssh.com": "ECDSA-SK",
}
BEGIN_KEYS, END_KEYS = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
BEGIN_FP, END_FP = "-----BEGIN SSH HOST KEY FINGERPRINTS-----", "-----END SSH HOST KEY FINGERPRINTS-----"
_KEY_RE = re.compile(r"(?:^|\s)(" + "|".join(re.escape(t) for t in KEY_TYPES) + r")\s+([A-Za-z0-9+/]+={0,3})(?:\s+(\S+))?")
_FP_RE = re.compile(r"(\d+)\s+(SHA256:[A-Za-z0-9+/]+={0,2})\s+(.*?)\s*\(([A-Z0-9-]+)\)\s*$")


def parse_public_key(line: str) -> tuple[str, bytes, str]:
    """(type, blob, comment) of one OpenSSH public key line; ValueError if it is not one."""
    parts = line.strip().split(None, 2)
    if len(parts) < 2 or parts[0] not in KEY_TYPES:
        raise ValueError("not an OpenSSH public key line")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the key is not valid base64") from None
    if len(blob) < 4:
        raise ValueError("the key is too short")
    (n,) = struct.unpack(">I", blob[:4])
    if blob[4:4 + n].decode("latin-1") != parts[0]:
        raise ValueError("the key's type does not match its data")
    return parts[0], blob, parts[2].strip() if len(parts) > 2 else ""


def fingerprint(blob: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a key blob ("SHA256:...", no padding)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def md5_fingerprint(blob: bytes) -> str:
    """The legacy colon-separated MD5 fingerprint (what nova shows for keypairs)."""
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def key_bits(key_type: str, blob: bytes) -> int:
    """The size ssh-keygen -l reports."""
    if key_type.startswith("ecdsa") or "ecdsa" in key_type:
        return {"nistp256": 256, "nistp384": 384, "nistp521": 521}.get(key_type.rsplit("-", 1)[-1].split("@")[0], 256)
    if key_type in ("ssh-rsa", "ssh-dss"):
        fields, off = [], 0
        while off < len(blob) and len(fields) < 3:
            (n,) = struct.unpack(">I", blob[off:off + 4])
            fields.append(blob[off + 4:off + 4 + n])
            off += 4 + n
        modulus = fields[2] if key_type == "ssh-rsa" and len(fields) > 2 else fields[1] if len(fields) > 1 else b""
        return int.from_bytes(modulus, "big").bit_length()
    return 256


def _sort_key(line: str) -> str:
    # ssh_host_<type>_key.pub files, listed by the shell glob: dsa, ecdsa, ed25519, rsa
    t = line.split(None, 1)[0]
    return {"ssh-dss": "dsa", "ssh-rsa": "rsa", "ssh-ed25519": "ed25519"}.get(t, "ecdsa" if "ecdsa" in t else t)


def _is_key(line: str) -> bool:
    try:
        parse_public_key(line)
    except ValueError:
        return False
    return True


def boot_log(name: str, started: float | None = None) -> list[str]:
    """The kernel and early cloud-init lines a server prints before its keys."""
    return [
        "[    0.000000] Linux version 6.1.0-lab-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC",
        "[    0.000000] Command line: BOOT_IMAGE=/boot/vmlinuz root=LABEL=cloudimg-rootfs ro console=tty1 console=ttyS0",
        f"[    2.412733] cloud-init[412]: Cloud-init v. 24.4 running 'init-local' at {_stamp(started)}. Up 2.41 seconds.",
        f"[    3.018221] cloud-init[488]: Cloud-init v. 24.4 running 'init' at {_stamp(started)}. Up 3.01 seconds.",
        f"[    3.201553] systemd-hostnamed[512]: Hostname set to <{name}> (static)",
    ]


def render_console(name: str, host_keys: Sequence[str], *, address: str = "", mac: str = "", user: str = "",
                   user_keys: Iterable[str] = (), started: float | None = None, finished: bool = True) -> str:
    """A console log for server `name` whose host keys are `host_keys` (OpenSSH lines)."""
    keys = sorted((k.strip() for k in host_keys if _is_key(k)), key=_sort_key)
    lines = boot_log(name, started)
    lines += _net_table(address, mac)
    if user:
        lines += _user_table(user, list(user_keys))
    if finished:
        logged = ["", "#" * 61, BEGIN_FP]
        for key in keys:
            ktype, blob, comment = parse_public_key(key)
            logged.append(f"{key_bits(ktype, blob)} {fingerprint(blob)} {comment or 'no comment'} ({KEY_TYPES[ktype]})")
        logged += [END_FP, "#" * 61]
        lines += [f"ec2: {text}" for text in logged]
        lines += [BEGIN_KEYS, *keys, END_KEYS]
        lines.append(f"[   11.804129] cloud-init[731]: Cloud-init v. 24.4 finished at {_stamp(started)}. "
                     "Datasource DataSourceOpenStackLocal [net,ver=2].  Up 11.80 seconds")
        lines.append("")
        lines.append(f"Debian GNU/Linux 12 {name} ttyS0")
        lines.append("")
        lines.append(f"{name} login: ")
    return "\r\n".join(lines)


def _stamp(ts: float | None) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(ts))


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    def row(cells: list[str]) -> str:
        return "|" + "|".join(f" {c:^{w}} " for c, w in zip(cells, widths, strict=True)) + "|"
    out = [title.center(len(rule), "+"), rule, row(header), rule, *(row(r) for r in rows), rule]
    return [f"ci-info: {line}" for line in out]


def _net_table(address: str, mac: str) -> list[str]:
    rows = [["eth0", "True", address or ".", "255.255.255.0", "global", mac or "."],
            ["lo", "True", "127.0.0.1", "255.0.0.0", "host", "."]]
    return _table("Net device info", ["Device", "Up", "Address", "Mask", "Scope", "Hw-Address"], rows)


def _user_table(user: str, user_keys: list[str]) -> list[str]:
    rows = []
    for key in user_keys:
        try:
            ktype, blob, comment = parse_public_key(key)
        except ValueError:
            continue
        digest = hashlib.sha256(blob).hexdigest()
        rows.append([ktype, ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)), "-", comment or "-"])
    if not rows:
        return [f"ci-info: no authorized SSH keys fingerprints found for user {user}."]
    return _table(f"Authorized keys from /home/{user}/.ssh/authorized_keys for user {user}",
                  ["Keytype", "Fingerprint (sha256)", "Options", "Comment"], rows)


# ----------------------------------------------------------------------------- reading it back

def _last_block(text: str, begin: str, end: str) -> list[str] | None:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    block: list[str] | None = None
    current: list[str] | None = None
    for line in lines:
        if begin in line:
            current = []
        elif end in line:
            if current is not None:
                block = current
            current = None
        elif current is not None:
            current.append(line)
    return block


def parse_host_keys(console_text: str) -> list[str]:
    """The host public keys ("type base64 [comment]") from the last complete keys block of a console log.

    Tolerates prefixes (``ec2:``, syslog stamps, kernel times) and CRLF line ends; skips
    lines whose key data does not decode. Returns [] when the block has not been printed yet.
    """
    block = _last_block(console_text, BEGIN_KEYS, END_KEYS)
    if not block:
        return []
    keys = []
    for line in block:
        m = _KEY_RE.search(line)
        if not m:
            continue
        text = " ".join(p for p in m.groups() if p)
        try:
            parse_public_key(text)
        except ValueError:
            continue
        if text not in keys:
            keys.append(text)
    return keys


def parse_fingerprints(console_text: str) -> list[tuple[str, str]]:
    """[(fingerprint, kind)] from the last fingerprints block, e.g. ("SHA256:...", "ED25519")."""
    block = _last_block(console_text, BEGIN_FP, END_FP) or []
    out = []
    for line in block:
        m = _FP_RE.search(line)
        if m:
            out.append((m.group(2), m.group(4)))
    return out
