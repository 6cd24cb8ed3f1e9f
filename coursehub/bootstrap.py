"""Bootstrap: the ordered host steps that prepare every host (TLJH's ensure_* list).

    steps = host_steps(settings, inventory)
    fleet.run(steps, inventory, task="bootstrap")

Each step probes, changes only what differs, and verifies; re-running is the
upgrade, and a second run changes nothing and restarts nothing. The order matters:

 1. preflight    OS release, systemd, apt, free space: refuse a host early, in one sentence
 2. proxy        apt/pip/login proxy first, so every download below can use it
 3. packages     base tools, the filesystem's tools, the time daemon, hosts.packages
 4. clock        timesyncd or chrony, hosts.ntp_servers
 5. swap         off now and after reboot
 6. kernel       modules and net sysctls for Kubernetes (topology cluster)
 7. disks        data volumes by id: formatted only if blank, mounted by UUID
 8. move-*-root  only when vars.yml names a root and the data is elsewhere
 9. runtime      containerd or docker: config first, then install, then run

The Kubernetes phases come after these (another module; see tasks/bootstrap.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coursehub.steps import clock
from coursehub.steps.apt import Packages
from coursehub.steps.disks import Disks
from coursehub.steps.kernel import Kernel
from coursehub.steps.moves import MoveRoot
from coursehub.steps.preflight import Preflight
from coursehub.steps.proxy import Proxy
from coursehub.steps.runtime import Runtime
from coursehub.steps.swap import SwapOff

if TYPE_CHECKING:
    from coursehub.inventory import Inventory
    from coursehub.settings import Settings
    from coursehub.steps import Step

BASE_PACKAGES = ("ca-certificates", "curl", "kmod", "procps", "util-linux")


def base_packages(settings: Settings) -> list[str]:
    fs = "xfsprogs" if settings.volumes.filesystem == "xfs" else "e2fsprogs"
    return [*BASE_PACKAGES, fs, *clock.packages(settings), *settings.hosts.packages]


def host_steps(settings: Settings, inventory: Inventory) -> list[Step]:
    """Every host-level step of bootstrap, in order."""
    steps: list[Step] = [
        Preflight(),
        Proxy(settings, inventory),
        Packages(base_packages(settings)),
        clock.Clock(settings),
        SwapOff(),
    ]
    if settings.topology == "cluster":
        steps.append(Kernel())
    steps.append(Disks(settings))
    if settings.hosts.runtime_root:
        steps.append(MoveRoot(settings.hosts.runtime, settings.hosts.runtime_root, switch_empty=False))
    if settings.topology == "cluster" and settings.kubernetes.kubelet_root:
        steps.append(MoveRoot("kubelet", settings.kubernetes.kubelet_root))
    steps.append(Runtime(settings, inventory))
    return steps
