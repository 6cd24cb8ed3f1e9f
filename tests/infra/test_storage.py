"""Storage hosts: the volumes' filesystems, and the NFS exports (storage.backend nfs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.infra import roles
from tests.infra.targets import verdict

if TYPE_CHECKING:
    from coursehub.inventory import Host
    from coursehub.settings import Settings

ROLE = "storage"


@pytest.mark.probe(command=roles.storage_volumes_command)
def test_volume_fs(probed: str, node: Host, settings: Settings) -> None:
    """Data volumes hold a filesystem mounted read-write; raw (Ceph) volumes are attached and unmounted."""
    verdict(roles.volume_fs_problems(probed, node, settings))


@pytest.mark.probe(command=roles.exports_command)
def test_exports(probed: str, settings: Settings) -> None:
    """storage.nfs_export is exported to named clients only, live, by a running nfs-server; not world-writable."""
    verdict(roles.exports_problems(probed, settings))
