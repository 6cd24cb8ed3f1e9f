"""The lab's network on this machine: one bridge, a netns + veth per host, nothing routed out.

- Bridge `labbr0` holds the gateway address (the subnet's first address, 10.77.0.1/24 by
  default), STP off, forward delay 0. The machine never forwards for it (`ip_forward` is
  not touched) and hosts get no default route, so a host reaches only its peers and the
  machine itself (the apt/pip/npm proxy listens on the gateway address).
- Safety route: `unreachable <subnet's /16>`, so lab addresses can never leave through the
  machine's default gateway, even if the bridge is gone.
- Host i: netns `lab-h<i>`, veth `lv-h<i>` on the bridge, peer `eth0` in the netns with the
  host's fixed MAC and address; `ip neigh flush` clears a stale ARP entry for a reused address.
- Bring-up raises the inotify limits (each guest systemd needs ~8 instances; the default
  128 breaks past ~20 hosts) and saves the old values in a file; teardown restores them.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from coursehub.lab.supervisor import write_atomic

BRIDGE = "labbr0"
NETNS_PREFIX = "lab-"
VETH_PREFIX = "lv-"
SYSCTLS: dict[str, int] = {"fs.inotify.max_user_instances": 8192, "fs.inotify.max_user_watches": 1048576}


class NetError(RuntimeError):
    """An `ip` command failed; the message has the command and its stderr."""


@dataclass(frozen=True)
class LabNet:
    """The addresses the lab uses, derived from its subnet."""

    subnet: ipaddress.IPv4Network
    gateway: str
    safety: ipaddress.IPv4Network  # covered by the unreachable route

    @classmethod
    def from_subnet(cls, subnet: str) -> LabNet:
        net = ipaddress.IPv4Network(subnet)
        if not net.is_private:
            raise ValueError(f"lab subnet {subnet} is not a private range")
        safety = net.supernet(new_prefix=16) if net.prefixlen > 16 else net
        return cls(subnet=net, gateway=str(net.network_address + 1), safety=safety)

    @property
    def prefixlen(self) -> int:
        return self.subnet.prefixlen


def netns_name(index: int) -> str:
    return f"{NETNS_PREFIX}h{index}"


def veth_name(index: int) -> str:
    return f"{VETH_PREFIX}h{index}"


def ip(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `ip ARGS`; raise NetError with stderr when `check` and it fails."""
    r = subprocess.run(["ip", *args], input=stdin, capture_output=True, text=True,
                       stdin=None if stdin is not None else subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


# ---------------------------------------------------------------- bridge and route


def bridge_exists() -> bool:
    return Path(f"/sys/class/net/{BRIDGE}").exists()


def bridge_up(net: LabNet) -> None:
    """Create the bridge, its address and the safety route (idempotent)."""
    if not bridge_exists():
        ip("link", "add", BRIDGE, "type", "bridge", "stp_state", "0", "forward_delay", "0")
    addr = f"{net.gateway}/{net.prefixlen}"
    if addr not in ip("-o", "-4", "addr", "show", "dev", BRIDGE).stdout:
        ip("addr", "add", addr, "dev", BRIDGE)
    ip("link", "set", BRIDGE, "up")
    ip("route", "replace", "unreachable", str(net.safety))


def bridge_down(net: LabNet) -> None:
    """Remove the bridge and the safety route (idempotent)."""
    if bridge_exists():
        ip("link", "del", BRIDGE)
    if safety_route_present(net):
        ip("route", "del", "unreachable", str(net.safety))


def safety_route_present(net: LabNet) -> bool:
    out = ip("route", "show", "type", "unreachable", check=False).stdout
    return any(line.split()[:2] == ["unreachable", str(net.safety)] for line in out.splitlines())


# ---------------------------------------------------------------- per host


def host_up(index: int, address: str, mac: str, net: LabNet) -> None:
    """Make netns lab-h<i> with eth0 (fixed MAC, address) joined to the bridge by lv-h<i>."""
    ns, veth = netns_name(index), veth_name(index)
    host_down(index)
    ip("netns", "add", ns)
    ip("-b", "-", stdin=(
        f"link add {veth} type veth peer name eth0 netns {ns} address {mac}\n"
        f"link set {veth} master {BRIDGE} up\n"
    ))
    ip("-n", ns, "-b", "-", stdin=(
        f"addr add {address}/{net.prefixlen} dev eth0\n"
        "link set lo up\n"
        "link set eth0 up\n"
    ))
    ip("neigh", "flush", "to", address, "dev", BRIDGE, check=False)


def host_down(index: int) -> None:
    """Remove the host's netns and veth (idempotent)."""
    ns, veth = netns_name(index), veth_name(index)
    if Path(f"/run/netns/{ns}").exists():
        ip("netns", "del", ns)
    if Path(f"/sys/class/net/{veth}").exists():
        ip("link", "del", veth, check=False)


def link_set(index: int, up: bool) -> None:
    """Cut (down) or heal (up) the host's link to the bridge."""
    ip("link", "set", veth_name(index), "up" if up else "down")


def lab_netns() -> list[str]:
    d = Path("/run/netns")
    return sorted(p.name for p in d.iterdir() if p.name.startswith(NETNS_PREFIX)) if d.is_dir() else []


def lab_links() -> list[str]:
    return sorted(p.name for p in Path("/sys/class/net").iterdir()
                  if p.name.startswith(VETH_PREFIX) or p.name == BRIDGE)


# ---------------------------------------------------------------- sysctls


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> int:
    return int(_sysctl_path(name).read_text().split()[0])


def raise_sysctls(saved: Path) -> None:
    """Raise the inotify limits, saving the original values once in `saved`."""
    if not saved.exists():
        write_atomic(saved, json.dumps({k: read_sysctl(k) for k in SYSCTLS}))
    for name, want in SYSCTLS.items():
        if read_sysctl(name) < want:
            _sysctl_path(name).write_text(f"{want}\n")


def restore_sysctls(saved: Path) -> None:
    """Write the saved values back and forget them (idempotent)."""
    if not saved.exists():
        return
    for name, value in json.loads(saved.read_text()).items():
        if read_sysctl(name) != value:
            _sysctl_path(name).write_text(f"{value}\n")
    saved.unlink()


def sysctl_changes(saved: Path) -> dict[str, tuple[int, int]]:
    """name -> (saved, current) for every saved sysctl whose value differs now."""
    if not saved.exists():
        return {}
    old = json.loads(saved.read_text())
    return {k: (v, read_sysctl(k)) for k, v in old.items() if read_sysctl(k) != v}
