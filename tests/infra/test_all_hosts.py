"""Every host: login, swap, time sync, data disks, free space, container runtime, sshd, permissions.

Each check is a read-only command and a judge from tests/infra/facts.py; a failure
names what is wrong in one line. The test's name without `test_` is its column in
`inv check`'s table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.infra import facts
from tests.infra.targets import verdict

if TYPE_CHECKING:
    from coursehub.inventory import Host
    from coursehub.settings import Settings

ROLE = ""  # every host


def test_ssh(login: str) -> None:
    """We log in with the inventory's key and strict host-key checking, and can act as root."""
    assert not login, login


@pytest.mark.probe(command=facts.swap_command)
def test_swap(probed: str) -> None:
    """Swap is off now, not in /etc/fstab, and swap.target is masked."""
    verdict(facts.swap_problems(probed))


@pytest.mark.probe(command=facts.time_command)
def test_clock(probed: str, settings: Settings) -> None:
    """The time daemon vars.yml names (hosts.time_sync) is enabled and running."""
    verdict(facts.time_problems(probed, settings))


@pytest.mark.probe(command=facts.disks_command)
def test_disks(probed: str, node: Host, settings: Settings) -> None:
    """Each data volume is mounted where vars.yml says, by UUID in /etc/fstab, with nofail."""
    verdict(facts.disk_problems(probed, node, settings))


@pytest.mark.probe(command=facts.free_command)
def test_free(probed: str, settings: Settings) -> None:
    """/, /var, /home, the data mounts and the runtime root have more than hosts.disk_free_percent free."""
    verdict(facts.free_problems(probed, settings))


@pytest.mark.probe(command=facts.runtime_command)
def test_runtime(probed: str, settings: Settings) -> None:
    """The container runtime runs with its root where vars.yml says (hosts.runtime_root or its default)."""
    verdict(facts.runtime_problems(probed, settings))


@pytest.mark.probe(command=facts.sshd_command)
def test_sshd(probed: str) -> None:
    """sshd refuses password (and keyboard-interactive) login."""
    verdict(facts.sshd_problems(probed))


@pytest.mark.probe(command=facts.world_writable_command)
def test_perms(probed: str) -> None:
    """Nothing CourseHub wrote (its files and trees, the mount points it made) is world-writable."""
    verdict(facts.world_writable_problems(probed))
