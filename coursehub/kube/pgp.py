"""The pkgs.k8s.io signing key, checked in pure Python (no gpg needed anywhere).

`Release.key` is an ASCII-armored OpenPGP public key. We dearmor it (RFC 4880
section 6), walk its packets (section 4.2), and compute the v4 fingerprint of
every primary key (section 12.2: SHA-1 over 0x99, a two-octet length and the key
packet body). A key file is accepted only if *every* primary key in it has the
pinned fingerprint, so a file that smuggles in a second key is refused.
"""

from __future__ import annotations

import base64
import hashlib

PUBLIC_KEY = 6  # packet tag of a primary public key


class PgpError(ValueError):
    """Not a usable key file; str() says why."""


def dearmor(text: str) -> bytes:
    """The binary packets of an ASCII-armored block (headers and the CRC line dropped)."""
    lines = [ln.strip() for ln in text.strip().splitlines()]
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith("-----BEGIN PGP PUBLIC KEY BLOCK"))
        end = next(i for i, ln in enumerate(lines) if ln.startswith("-----END PGP PUBLIC KEY BLOCK"))
    except StopIteration:
        raise PgpError("not an armored OpenPGP public key block") from None
    body = lines[start + 1:end]
    # armor headers end at the first empty line (there may be none)
    if "" in body:
        body = body[body.index("") + 1:]
    data = [ln for ln in body if ln and not ln.startswith("=")]
    try:
        return base64.b64decode("".join(data), validate=True)
    except ValueError as e:
        raise PgpError(f"bad base64 in the key block: {e}") from None


def packets(data: bytes) -> list[tuple[int, bytes]]:
    """(tag, body) for each packet, old and new header formats."""
    out = []
    i = 0
    while i < len(data):
        head = data[i]
        if not head & 0x80:
            raise PgpError(f"not an OpenPGP packet at offset {i}")
        if head & 0x40:  # new format
            tag = head & 0x3F
            i += 1
            first = data[i]
            if first < 192:
                length, i = first, i + 1
            elif first < 224:
                length, i = ((first - 192) << 8) + data[i + 1] + 192, i + 2
            elif first == 255:
                length, i = int.from_bytes(data[i + 1:i + 5], "big"), i + 5
            else:
                raise PgpError("partial body lengths are not used in key files")
        else:  # old format
            tag = (head >> 2) & 0x0F
            kind = head & 0x03
            i += 1
            if kind == 3:
                raise PgpError("indeterminate packet length")
            size = (1, 2, 4)[kind]
            length, i = int.from_bytes(data[i:i + size], "big"), i + size
        if i + length > len(data):
            raise PgpError("truncated packet")
        out.append((tag, data[i:i + length]))
        i += length
    return out


def fingerprints(data: bytes) -> list[str]:
    """The v4 fingerprints (upper-case hex) of the primary keys in binary key data."""
    found = []
    for tag, body in packets(data):
        if tag != PUBLIC_KEY:
            continue
        if not body or body[0] != 4:
            raise PgpError(f"primary key version {body[0] if body else '?'} (only v4 keys are expected)")
        found.append(hashlib.sha1(b"\x99" + len(body).to_bytes(2, "big") + body).hexdigest().upper())
    return found


def verified_keyring(armored: str, fingerprint: str) -> bytes:
    """The binary keyring for apt's signed-by, if the key is exactly the pinned one."""
    data = dearmor(armored)
    found = fingerprints(data)
    want = fingerprint.replace(" ", "").upper()
    if not found:
        raise PgpError("the key file holds no public key")
    if any(f != want for f in found):
        raise PgpError(f"key fingerprint {', '.join(found)} is not the pinned {want}")
    return data
