"""Host keys from a server's console log, the way cloud-init prints them.

cloud-init writes two blocks to the console on first boot:

    -----BEGIN SSH HOST KEY FINGERPRINTS-----
    256 SHA256:... root@host (ED25519)
    -----END SSH HOST KEY FINGERPRINTS-----
    -----BEGIN SSH HOST KEY KEYS-----
    ssh-ed25519 AAAA... root@host
    -----END SSH HOST KEY KEYS-----

(lines may carry a `ci-info: ` or `ec2: ` prefix). The keys block is what we
trust; each key's fingerprint must also appear in the fingerprints block when
that block is present, so a truncated or mangled log is not half-trusted.
"""

from __future__ import annotations

import base64
import hashlib
import re

_KEY_LINE = re.compile(r"(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)) ([A-Za-z0-9+/]+={0,3})(?: (\S+))?")
_FP = re.compile(r"SHA256:([A-Za-z0-9+/]+)")


def _block(text: str, name: str) -> list[str] | None:
    begin, end = f"-----BEGIN {name}-----", f"-----END {name}-----"
    lines: list[str] | None = None
    for raw in text.splitlines():
        line = re.sub(r"^(ci-info: |ec2: )", "", raw.strip())
        if line == begin:
            lines = []
        elif line == end and lines is not None:
            return lines
        elif lines is not None:
            lines.append(line)
    return None


def fingerprint(key_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint (unpadded base64) of a key blob."""
    digest = hashlib.sha256(base64.b64decode(key_b64)).digest()
    return base64.b64encode(digest).decode().rstrip("=")


def parse_host_keys(console: str) -> list[str]:
    """The host public keys in a console log ("type base64" lines); [] if none can be trusted."""
    keys_block = _block(console, "SSH HOST KEY KEYS")
    if not keys_block:
        return []
    keys = []
    for line in keys_block:
        m = _KEY_LINE.search(line)
        if m:
            try:
                base64.b64decode(m.group(2), validate=True)
            except ValueError:
                continue
            keys.append(f"{m.group(1)} {m.group(2)}")
    fps_block = _block(console, "SSH HOST KEY FINGERPRINTS")
    if fps_block is not None:
        printed = {m.group(1) for line in fps_block for m in [_FP.search(line)] if m}
        keys = [k for k in keys if fingerprint(k.split()[1]) in printed]
    return keys
