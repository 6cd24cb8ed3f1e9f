"""console.py (render and parse cloud-init console logs) and the memory backend."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from coursehub.lab.backend import ServerSpec
from coursehub.lab.console import (
    BEGIN_KEYS,
    END_KEYS,
    fingerprint,
    key_bits,
    parse_fingerprints,
    parse_host_keys,
    parse_public_key,
    render_console,
)
from coursehub.lab.memory import MemoryBackend, new_host_keys


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return list(new_host_keys("h1").lines)


def test_render_then_parse_round_trip(keys):
    text = render_console("h1", keys, address="10.77.0.11", mac="02:77:00:00:00:01", user="debian")
    assert sorted(parse_host_keys(text)) == sorted(keys)
    printed = dict(parse_fingerprints(text))
    for key in keys:
        _t, blob, _c = parse_public_key(key)
        assert fingerprint(blob) in printed
    assert "ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----" in text
    assert "ec2: 256 SHA256:" in text and "root@h1 (ED25519)" in text and "root@h1 (ECDSA)" in text
    assert "ci-info: no authorized SSH keys fingerprints found for user debian." in text
    assert "\r\n" + BEGIN_KEYS + "\r\n" in text


def test_unfinished_boot_has_no_keys(keys):
    assert parse_host_keys(render_console("h1", keys, finished=False)) == []


def test_user_key_table_is_ci_info(keys):
    text = render_console("h1", keys, user="debian", user_keys=[keys[0].replace("root@h1", "me@laptop")])
    assert "ci-info: +" in text and "Authorized keys from /home/debian/.ssh/authorized_keys" in text


def test_parser_tolerates_prefixes_crlf_noise_and_takes_the_last_block(keys):
    old = list(new_host_keys("h1", ("ed25519",)).lines)
    text = "\r\n".join([
        "[    1.0] boot", BEGIN_KEYS, *old, END_KEYS, "[   50.1] reboot: Restarting system",
        f"[   62.0] cloud-init[731]: {BEGIN_KEYS}",
        f"<14>Jun  1 10:00:00 ec2: {keys[0]}",
        f"[   62.1] {keys[1]}",
        "ssh-ed25519 !!!not-base64!!! root@h1",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGLTA1NlZdr0BJWdVQfHUP2mpeBN6x0n8PkWpTa2qKan wrong-type",
        END_KEYS, "login:"])
    assert parse_host_keys(text) == keys


def test_parser_without_a_complete_block(keys):
    assert parse_host_keys("nothing here") == []
    assert parse_host_keys("\n".join([BEGIN_KEYS, keys[0]])) == []


def test_rsa_bits_and_fingerprint_match_ssh_keygen(tmp_path, keys):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " root@h1"
    ktype, blob, comment = parse_public_key(line)
    assert (ktype, key_bits(ktype, blob), comment) == ("ssh-rsa", 2048, "root@h1")
    text = render_console("h1", [*keys, line])
    assert ("RSA" in {k for _f, k in parse_fingerprints(text)}) and "2048 SHA256:" in text
    if shutil.which("ssh-keygen"):
        for key_line in [*keys, line]:
            path = tmp_path / "k.pub"
            path.write_text(key_line + "\n")
            out = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True, text=True, check=True)
            _t, blob, _c = parse_public_key(key_line)
            assert out.stdout.split()[:2] == [str(key_bits(_t, blob)), fingerprint(blob)]


def test_provisioning_parser_reads_the_lab_console_and_checks_fingerprints(keys):
    hostkeys = pytest.importorskip("coursehub.cloud.hostkeys")
    text = render_console("h1", keys)
    assert sorted(hostkeys.parse_host_keys(text)) == sorted(" ".join(k.split()[:2]) for k in keys)
    other = new_host_keys("h1", ("ed25519",)).lines[0]
    tampered = text.replace(keys[0], other)        # a key whose fingerprint was not printed
    assert " ".join(other.split()[:2]) not in hostkeys.parse_host_keys(tampered)


def test_memory_backend(keys):
    b = MemoryBackend(fail="^bad", ready_after=1)
    spec = ServerSpec(id="s1", name="h1", index=1, address="10.77.0.11", mac="02:77:00:00:00:01", user="debian",
                      public_key="")
    made = b.create(spec)
    assert len(made.lines) == 2 and all(parse_public_key(line)[2] == "root@h1" for line in made.lines)
    assert made.lines != b.create(ServerSpec(id="s2", name="h2", index=2, address="", mac="", user="", public_key="")).lines
    assert b.ready("s1") is False and b.ready("s1") is True
    b.create(ServerSpec(id="s3", name="bad-1", index=3, address="", mac="", user="", public_key=""))
    assert b.ready("s3") is None and b.ready("unknown") is None
    b.fault("s1", "poweroff")
    assert b.ready("s1") is False
    b.fault("s1", "poweron")
    assert b.ready("s1") is True
    with pytest.raises(KeyError):
        b.fault("nope", "freeze")
    b.attach("s1", "v1", 10, "/dev/vdb")
    b.extend("v1", 20)
    assert b.volumes == {"v1": 20} and b.attached == {"v1": ("s1", "/dev/vdb")}
    b.detach("s1", "v1")
    b.delete_volume("v1")
    b.delete("s1")
    b.delete("s1")                       # idempotent
    assert "s1" not in b.servers and b.volumes == {}
    b.close()
    assert b.servers == {} and b.kind == "memory"


def test_render_skips_lines_that_are_not_keys(keys):
    text = render_console("h1", [*keys, "garbage", ""])
    assert sorted(parse_host_keys(text)) == sorted(keys) and "garbage" not in text
