"""One lab host as it exists on disk and in the kernel, usable from any process.

A host lives in `<lab_dir>/hosts/h<i>/`:

    spec.json       what it was made from (id, name, index, address)
    upper/ work/    the overlay's private layers; merged/ is the host's root
    docker/ containerd/  per-host ext4 directories bound into the guest (dockerd refuses
                    an overlayfs /var/lib/docker)
    boot.json       the nspawn command line the supervisor runs
    supervisor.pid, nspawn.pid   recorded PIDs (with start times)
    devices.json    volume device nodes the supervisor re-creates after every boot
    stop            present: the supervisor must not start nspawn again
    console.log     the guest's console (nspawn --console=pipe)

Every method works from these files alone, so `teardown()` in a fresh process can
stop and remove hosts that another process made.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from coursehub.lab import net
from coursehub.lab.supervisor import (
    cgroup_hierarchies,
    guest_init,
    make_device_nodes,
    read_pidfile,
    write_atomic,
    write_pidfile,
)

CGROUP_PARENT = "lab"
PROPAGATE_DIR = Path("/run/systemd/nspawn/propagate")
LOCKS_DIR = Path("/run/systemd/nspawn/locks")
SUPERVISOR = Path(__file__).with_name("supervisor.py")
DROP_CAPS = "CAP_SYS_TIME,CAP_SYS_MODULE"  # the guests share this machine's clock and kernel


class HostDir:
    """A lab host's directory and everything recorded in it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.index = int(self.path.name.removeprefix("h"))

    # ------------------------------------------------------------ names and files
    @property
    def machine(self) -> str:
        return f"lab-h{self.index}"

    @property
    def merged(self) -> Path:
        return self.path / "merged"

    @property
    def cgroup(self) -> str:
        return f"{CGROUP_PARENT}/h{self.index}"

    def spec(self) -> dict[str, object]:
        try:
            return json.loads((self.path / "spec.json").read_text())
        except (OSError, ValueError):
            return {}

    def write_spec(self, spec: dict[str, object]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "spec.json").write_text(json.dumps(spec, indent=1))

    # ------------------------------------------------------------ making it
    def prepare(self, base: Path) -> None:
        """Create the layers and mount the overlay root (idempotent)."""
        for d in ("upper", "work", "merged", "docker", "containerd"):
            (self.path / d).mkdir(parents=True, exist_ok=True)
        if not os.path.ismount(self.merged):
            opts = f"lowerdir={base},upperdir={self.path / 'upper'},workdir={self.path / 'work'}"
            _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.merged)])

    def write_boot(self, hostname: str) -> None:
        """Record the systemd-nspawn command line (the measured flags, minus the clock and module caps)."""
        argv = [
            "systemd-nspawn", "--quiet", "-D", str(self.merged), "--boot",
            f"--machine={self.machine}", f"--hostname={hostname}",
            f"--network-namespace-path=/run/netns/{net.netns_name(self.index)}",
            "--register=no", "--keep-unit", "--link-journal=no", "--resolv-conf=off",
            "--capability=all", f"--drop-capability={DROP_CAPS}",
            "--console=pipe", "--system-call-filter=@keyring",
            f"--bind={self.path / 'docker'}:/var/lib/docker",
            f"--bind={self.path / 'containerd'}:/var/lib/containerd",
        ]
        boot = {"argv": argv, "env": {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}, "cgroup": self.cgroup}
        (self.path / "boot.json").write_text(json.dumps(boot, indent=1))

    def start(self) -> subprocess.Popen[bytes]:
        """Start the supervisor (detached in its own session); it boots the guest."""
        (self.path / "stop").unlink(missing_ok=True)
        (self.path / "nspawn.pid").unlink(missing_ok=True)
        with open(self.path / "console.log", "ab") as console:
            p = subprocess.Popen([sys.executable, "-I", "-S", str(SUPERVISOR), str(self.path)],
                                 stdin=subprocess.DEVNULL, stdout=console, stderr=console,
                                 start_new_session=True, close_fds=True)
        write_pidfile(self.path / "supervisor.pid", p.pid)
        return p

    # ------------------------------------------------------------ its processes
    def supervisor_pid(self) -> int | None:
        return read_pidfile(self.path / "supervisor.pid")

    def nspawn_pid(self) -> int | None:
        return read_pidfile(self.path / "nspawn.pid")

    def init_pid(self) -> int | None:
        """The guest's PID 1 (as seen from this machine), if it runs."""
        pid = self.nspawn_pid()
        return guest_init(pid) if pid else None

    def alive(self) -> list[int]:
        """Recorded lab processes of this host that are still alive."""
        return [p for p in (self.supervisor_pid(), self.nspawn_pid()) if p]

    # ------------------------------------------------------------ faults
    def freezer_state(self) -> Path:
        return Path("/sys/fs/cgroup/freezer") / self.cgroup / "freezer.state"

    def freeze(self, frozen: bool) -> None:
        f = self.freezer_state()
        if f.exists():
            f.write_text("FROZEN\n" if frozen else "THAWED\n")
        elif frozen:
            raise RuntimeError(f"{self.machine} has no freezer cgroup (is it running?)")

    def guest_exec(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside the guest (all its namespaces) out of band, as root."""
        init = self.init_pid()
        if init is None:
            raise RuntimeError(f"{self.machine} is not running")
        return subprocess.run(["nsenter", "-t", str(init), "-m", "-u", "-i", "-n", "-p", "-C", "--", *argv],
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def signal_init(self, sig: int) -> bool:
        init = self.init_pid()
        if init is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, sig)
        return True

    # ------------------------------------------------------------ volumes
    def devices(self) -> dict[str, list[int]]:
        f = self.path / "devices.json"
        return json.loads(f.read_text()) if f.exists() else {}

    def set_device(self, device: str, numbers: tuple[int, int] | None) -> None:
        """Add (numbers) or remove (None) a device node, in the record and in the running guest."""
        devs = self.devices()
        if numbers is None:
            devs.pop(device, None)
        else:
            devs[device] = list(numbers)
        write_atomic(self.path / "devices.json", json.dumps(devs))
        init = self.init_pid()
        if init is None:
            return
        if numbers is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"/proc/{init}/root/{device.lstrip('/')}")
        else:
            make_device_nodes(init, {device: list(numbers)})

    # ------------------------------------------------------------ stopping
    def request_stop(self) -> None:
        """Clean poweroff: no restart, thaw, SIGTERM to nspawn (it halts the guest's systemd)."""
        if not self.path.is_dir():
            return
        (self.path / "stop").touch()
        with contextlib.suppress(OSError):
            self.freeze(False)
        pid = self.nspawn_pid()
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def power_cut(self) -> None:
        """Hard poweroff: no restart, SIGKILL to the guest's PID 1 (nspawn then exits)."""
        (self.path / "stop").touch()
        with contextlib.suppress(OSError):
            self.freeze(False)
        if not self.signal_init(signal.SIGKILL):
            self.kill()

    def kill(self) -> None:
        """SIGKILL the guest's PID 1 and every recorded process of this host."""
        with contextlib.suppress(OSError):
            self.freeze(False)
        self.signal_init(signal.SIGKILL)
        for pid in (self.nspawn_pid(), self.supervisor_pid()):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def wait_stopped(self, deadline: float) -> bool:
        """Wait until no recorded process of this host is alive; False on timeout."""
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # ------------------------------------------------------------ removing
    def cgroup_dirs(self) -> list[Path]:
        return [h / self.cgroup for h in cgroup_hierarchies() if (h / self.cgroup).is_dir()]

    def remove(self) -> list[str]:
        """Remove everything of a stopped host (mount, netns, cgroups, files); returns problems."""
        problems: list[str] = []
        if os.path.ismount(self.merged):
            st = os.stat(self.merged)  # nspawn's image lock is named after the root's inode
            with contextlib.suppress(FileNotFoundError):
                (LOCKS_DIR / f"inode-{st.st_dev}:{st.st_ino}").unlink()
            for attempt in range(50):
                r = subprocess.run(["umount", str(self.merged)], capture_output=True, text=True)
                if r.returncode == 0 or not os.path.ismount(self.merged):
                    break
                if attempt == 49:
                    problems.append(f"umount {self.merged}: {r.stderr.strip()}")
                time.sleep(0.05)
        try:
            net.host_down(self.index)
        except net.NetError as e:
            problems.append(str(e))
        for d in self.cgroup_dirs():
            problems += remove_cgroup_tree(d)
        prop = PROPAGATE_DIR / self.machine
        if prop.is_dir() and not os.path.ismount(prop):
            shutil.rmtree(prop, ignore_errors=True)
        if self.path.is_dir() and not os.path.ismount(self.merged):
            r = subprocess.run(["rm", "-rf", "--one-file-system", str(self.path)], capture_output=True, text=True)
            if r.returncode != 0:
                problems.append(f"rm {self.path}: {r.stderr.strip()}")
        return problems


def remove_cgroup_tree(top: Path, deadline: float = 5.0) -> list[str]:
    """rmdir a cgroup directory and its children, deepest first (retrying while tasks exit)."""
    end = time.monotonic() + deadline
    while True:
        left = []
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
            try:
                os.rmdir(dirpath)
            except FileNotFoundError:
                pass
            except OSError as e:
                left.append(f"cgroup {dirpath}: {e.strerror}")
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.05)


def _run(argv: list[str]) -> None:
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {r.stderr.strip()}")
