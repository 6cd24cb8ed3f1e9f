"""Fixtures for the lab's real hosts: a HostsBackend with three servers, SSH as the image user.

Lab tests need root, systemd-nspawn and mmdebstrap; without them they are skipped.
The base image is built once per machine (~40 s) and cached in /var/cache/coursehub-lab.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.labkit import Lab, LabHost, lab_lock, make_spec, write_known_hosts


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An ed25519 client keypair made for this test session."""
    d = tmp_path_factory.mktemp("sshkey")
    key = d / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab-test", "-f", str(key)], check=True)
    return key, (d / "id_ed25519.pub").read_text().strip()


@pytest.fixture(scope="module")
def lab(client_key: tuple[Path, str]) -> Iterator[Lab]:
    """Three hosts (node1..node3) from ServerSpecs, booted in parallel; closed at module end."""
    from coursehub.lab.hosts import HostsBackend

    lab_dir = Path(f"/var/tmp/coursehub-lab-test-{os.getpid()}")
    with lab_lock():
        backend = HostsBackend(lab_dir)
        try:
            backend.wait_base(timeout=900)
            key, pub = client_key
            hosts = [LabHost(spec, backend.create(spec)) for spec in (make_spec(i, pub, 3) for i in (1, 2, 3))]
            known = lab_dir / "known_hosts"
            write_known_hosts(known, hosts)
            states = backend.wait_ready([h.spec.id for h in hosts], timeout=120)
            assert all(states.values()), {i: backend.error(i) for i in states}
            yield Lab(backend=backend, hosts=hosts, key=key, known_hosts=known, dir=lab_dir)
        finally:
            backend.close()
            subprocess.run(["rm", "-rf", "--one-file-system", str(lab_dir)], check=False)
