"""One lab host's supervisor process, plus the PID records every lab process gets.

Run as `python -I -S supervisor.py HOSTDIR` (stdlib only, so it starts in ~20 ms and
does not import the package). It

1. records its own PID (with the process start time, so a reused PID is never
   mistaken for it) in HOSTDIR/supervisor.pid;
2. moves itself into `/sys/fs/cgroup/<hierarchy>/lab/<host>` for every hierarchy except
   memory (cpuset seeded from the parent). `systemd-nspawn --register=no --keep-unit`
   puts its `payload/` and `supervisor/` cgroups under its caller's, so this gives every
   guest its own subtree and a freezer cgroup per host;
3. runs the `systemd-nspawn --boot` command line from HOSTDIR/boot.json, records its PID
   in HOSTDIR/nspawn.pid, re-creates the volume device nodes listed in
   HOSTDIR/devices.json once the guest's systemd runs, and starts nspawn again while it
   exits with 133 (the guest rebooted) and HOSTDIR/stop does not exist.

SIGTERM makes it create HOSTDIR/stop and pass SIGTERM to nspawn (a clean poweroff).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
REBOOT_EXIT = 133
SKIP_HIERARCHIES = {"memory"}

# ---------------------------------------------------------------- PID records


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None if it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[19]


def write_atomic(path: Path, text: str) -> None:
    """Replace a small file's content at once (a unique temp name, so concurrent writers don't clash)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_pidfile(path: Path, pid: int) -> None:
    """Record `pid` with its start time."""
    write_atomic(path, f"{pid} {start_time(pid) or '?'}\n")


def read_pidfile(path: Path) -> int | None:
    """The recorded PID if that very process is still alive (same start time), else None."""
    try:
        pid_s, st = path.read_text().split()
        pid = int(pid_s)
    except (OSError, ValueError):
        return None
    now = start_time(pid)
    if now is None or now != st or _is_zombie(pid):
        return None
    return pid


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


# ---------------------------------------------------------------- cgroups


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy under /sys/fs/cgroup except memory."""
    out = []
    for d in sorted(CGROUP_ROOT.iterdir()) if CGROUP_ROOT.is_dir() else []:
        if d.name not in SKIP_HIERARCHIES and d.is_dir() and not d.is_symlink() and (d / "cgroup.procs").exists():
            out.append(d)
    return out


def _seed_cpuset(d: Path) -> None:
    for f in ("cpuset.cpus", "cpuset.mems"):
        if (d / f).exists() and not (d / f).read_text().strip():
            (d / f).write_text((d.parent / f).read_text())


def join_cgroups(rel: str, pid: int) -> None:
    """Create `<hier>/<rel>` (e.g. lab/h3) in every hierarchy and move `pid` into it."""
    for hier in cgroup_hierarchies():
        d = hier
        for part in Path(rel).parts:
            d = d / part
            d.mkdir(exist_ok=True)
            if hier.name.startswith("cpuset") or (d / "cpuset.cpus").exists():
                _seed_cpuset(d)
        (d / "cgroup.procs").write_text(f"{pid}\n")


# ---------------------------------------------------------------- the guest


def guest_init(nspawn_pid: int) -> int | None:
    """PID (in this machine's namespace) of the guest's PID 1 started by that nspawn."""
    for ent in os.scandir("/proc"):
        if not ent.name.isdigit():
            continue
        try:
            status = Path(f"/proc/{ent.name}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("PPid", "").strip() == str(nspawn_pid) and fields.get("NSpid", "").split()[-1:] == ["1"]:
            return int(ent.name)
    return None


def make_device_nodes(init_pid: int, devices: dict[str, list[int]]) -> None:
    """Create block device nodes (path -> [major, minor]) in the guest's own /dev."""
    root = Path(f"/proc/{init_pid}/root")
    for path, (major, minor) in devices.items():
        node = root / path.lstrip("/")
        try:
            st = os.stat(node)
            if stat.S_ISBLK(st.st_mode) and st.st_rdev == os.makedev(major, minor):
                continue
            os.unlink(node)
        except FileNotFoundError:
            pass
        with contextlib.suppress(FileExistsError):  # made at the same moment by the backend's attach()
            os.mknod(node, stat.S_IFBLK | 0o660, os.makedev(major, minor))


def _restore_devices(hdir: Path, nspawn_pid: int, deadline: float) -> None:
    devices = json.loads((hdir / "devices.json").read_text()) if (hdir / "devices.json").exists() else {}
    if not devices:
        return
    while time.monotonic() < deadline:
        init = guest_init(nspawn_pid)
        if init is not None:
            try:
                if Path(f"/proc/{init}/comm").read_text().strip() == "systemd":
                    make_device_nodes(init, devices)
                    return
            except OSError:
                pass
        time.sleep(0.02)


# ---------------------------------------------------------------- main loop


def main(hdir: Path) -> int:
    """Supervise one host until it powers off or HOSTDIR/stop appears."""
    write_pidfile(hdir / "supervisor.pid", os.getpid())
    boot = json.loads((hdir / "boot.json").read_text())
    join_cgroups(boot["cgroup"], os.getpid())
    child: list[subprocess.Popen[bytes]] = []

    def on_term(signum: int, _frame: object) -> None:
        (hdir / "stop").touch()
        if child and child[0].poll() is None:
            child[0].send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    env = {**os.environ, **boot.get("env", {})}
    rc = 0
    while not (hdir / "stop").exists():
        p = subprocess.Popen(boot["argv"], env=env, stdin=subprocess.DEVNULL)
        child[:] = [p]
        write_pidfile(hdir / "nspawn.pid", p.pid)
        try:
            _restore_devices(hdir, p.pid, time.monotonic() + 30)
        except OSError as e:
            print(f"coursehub-lab supervisor: volume nodes: {e}", file=sys.stderr, flush=True)
        while True:
            try:
                rc = p.wait()
                break
            except InterruptedError:
                continue
        with open(hdir / "exits", "a") as fh:
            fh.write(f"{time.time():.3f} {rc}\n")
        if rc != REBOOT_EXIT:
            break
    return rc


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
