"""The `hosts` backend: every lab server is a real Debian host on this machine (root).

Each server becomes a `systemd-nspawn --boot` guest (systemd as PID 1, sshd) on an
overlay of the cached base image (`coursehub.lab.image`), in its own network namespace
on the lab bridge (`coursehub.lab.net`), supervised by its own process
(`coursehub.lab.supervisor`) and described on disk (`coursehub.lab.machine`). Hosts
reach the outside only through the allow-listed package proxy (`coursehub.lab.proxy`).

    backend = HostsBackend(Path("/var/tmp/lab"))
    keys = backend.create(spec)        # returns at once; boots in the background
    backend.ready(spec.id)             # True once sshd answers, None if the boot failed
    backend.close()                    # everything removed

`teardown(lab_dir)` does what `close()` does from the records on disk, for a process
that did not make the hosts (`inv lab.down`); `leftovers(lab_dir)` lists anything of a
lab still present (netns, veth, bridge, route, mounts, loop devices, cgroups,
processes, raised sysctls).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from coursehub.lab import image, loopdev, net
from coursehub.lab.backend import HostFault, HostKeys, ServerSpec
from coursehub.lab.guest import HostKey, extra_ca_certs, hostname_for, new_host_key, personalize
from coursehub.lab.machine import CGROUP_PARENT, PROPAGATE_DIR, HostDir, remove_cgroup_tree
from coursehub.lab.proxy import DEFAULT_PORT, LabProxy, guest_client_files
from coursehub.lab.proxy import listening as proxy_listening
from coursehub.lab.supervisor import cgroup_hierarchies, start_time, write_atomic

STATE_FILE = "hosts-lab.json"
SYSCTL_FILE = "hosts-sysctl-saved.json"
STOP_DEADLINE = 10.0  # seconds a clean poweroff may take before the host is killed


class LabBusy(RuntimeError):
    """Another lab is running (on this lab_dir, or the bridge belongs to another one)."""


@dataclass
class _Host:
    spec: ServerSpec
    dir: HostDir
    keys: HostKeys
    hostname: str
    state: str = "building"  # building | booting | up | off | failed | deleted
    error: str = ""
    proc: subprocess.Popen[bytes] | None = None
    thread: threading.Thread | None = None
    gen: int = 0  # bumped at every (re)start so a stale waiter gives up
    lock: threading.RLock = field(default_factory=threading.RLock)


@dataclass
class _Volume:
    id: str
    path: Path
    size_gb: int
    server_id: str | None = None
    device: str | None = None
    loop: str | None = None

    def save(self) -> None:
        rec = {"id": self.id, "size_gb": self.size_gb, "server_id": self.server_id,
               "device": self.device, "loop": self.loop}
        write_atomic(self.path.with_suffix(".json"), json.dumps(rec))


def ssh_banner(address: str, timeout: float = 0.5) -> bool:
    """True if something on address:22 greets with an SSH banner."""
    try:
        with socket.create_connection((address, 22), timeout=timeout) as s:
            s.settimeout(timeout)
            data = b""
            while len(data) < 4:
                chunk = s.recv(4 - len(data))
                if not chunk:
                    break
                data += chunk
            return data == b"SSH-"
    except OSError:
        return False


class HostsBackend:
    """Lab servers as real systemd hosts (see the module docstring)."""

    kind = "hosts"

    def __init__(self, lab_dir: Path, subnet: str = "10.77.0.0/24", *, cache_dir: Path | None = None,
                 boot_timeout: float = 120.0, proxy: bool = True) -> None:
        self.lab_dir = Path(lab_dir).resolve()
        self.net = net.LabNet.from_subnet(subnet)
        self.boot_timeout = boot_timeout
        self._hosts: dict[str, _Host] = {}
        self._volumes: dict[str, _Volume] = {}
        self._lock = threading.RLock()
        self._closed = False
        _claim(self.lab_dir, self.net)
        self.proxy: LabProxy | None = None
        try:
            self.hosts_dir.mkdir(parents=True, exist_ok=True)
            self.volumes_dir.mkdir(parents=True, exist_ok=True)
            net.raise_sysctls(self.lab_dir / SYSCTL_FILE)
            net.bridge_up(self.net)
            if proxy:
                self.proxy = LabProxy(self.net.gateway, DEFAULT_PORT, log_path=self.lab_dir / "proxy.log").start()
        except BaseException:
            teardown(self.lab_dir)  # undo the half-made lab
            raise
        self._base: Path | None = None
        self._base_error = ""
        self._extra_cas: list[str] = []
        self._client_files: dict[str, str] = {}
        self._base_ready = threading.Event()
        threading.Thread(target=self._prepare_base, args=(cache_dir,), name="lab-base", daemon=True).start()

    # ------------------------------------------------------------ paths
    @property
    def hosts_dir(self) -> Path:
        return self.lab_dir / "hosts"

    @property
    def volumes_dir(self) -> Path:
        return self.lab_dir / "volumes"

    def _prepare_base(self, cache_dir: Path | None) -> None:
        try:
            base = image.ensure_base(cache_dir)
            self._extra_cas = extra_ca_certs(base)
            self._client_files = guest_client_files(f"http://{self.net.gateway}:{DEFAULT_PORT}")
            self._base = base
        except Exception as e:  # noqa: BLE001 (reported through ready() as a failed boot)
            self._base_error = f"base image: {e}"
        finally:
            self._base_ready.set()

    def wait_base(self, timeout: float | None = None) -> Path:
        """Block until the base rootfs is ready (built/extracted); raise if that failed."""
        if not self._base_ready.wait(timeout):
            raise TimeoutError("base image not ready")
        if self._base is None:
            raise RuntimeError(self._base_error)
        return self._base

    # ------------------------------------------------------------ servers
    def create(self, spec: ServerSpec) -> HostKeys:
        """Start making the host; returns its host keys at once (the boot runs in a thread)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("backend is closed")
            if spec.id in self._hosts:
                return self._hosts[spec.id].keys
            if any(h.spec.index == spec.index for h in self._hosts.values()):
                raise ValueError(f"server index {spec.index} is in use")
            hostname = hostname_for(spec.name)
            key = new_host_key(hostname)
            host = _Host(spec=spec, dir=HostDir(self.hosts_dir / f"h{spec.index}"),
                         keys=HostKeys((key.public_line,)), hostname=hostname)
            host.dir.write_spec({"id": spec.id, "name": spec.name, "index": spec.index,
                                 "address": spec.address, "mac": spec.mac, "user": spec.user})
            self._hosts[spec.id] = host
            host.thread = threading.Thread(target=self._build, args=(host, key), name=f"lab-build-h{spec.index}",
                                           daemon=True)
            host.thread.start()
            return host.keys

    def _build(self, host: _Host, key: HostKey) -> None:
        spec = host.spec
        try:
            base = self.wait_base(timeout=900)
            with host.lock:
                if host.state == "deleted":
                    return
                net.host_up(spec.index, spec.address, spec.mac, self.net)
                host.dir.prepare(base)
                personalize(host.dir.merged, hostname=host.hostname, address=spec.address, peers=spec.peers,
                            user=spec.user, public_key=spec.public_key, host_key=key,
                            gateway=self.net.gateway, user_data=spec.user_data, extra_cas=self._extra_cas,
                            files=self._client_files)
                host.dir.write_boot(host.hostname)
                self._start(host)
        except Exception as e:  # noqa: BLE001 (the API learns it through ready() -> None)
            with host.lock:
                if host.state != "deleted":
                    host.state, host.error = "failed", str(e)

    def _start(self, host: _Host, wait_new_nspawn: int | None = None) -> None:
        """(Re)start the host's supervisor if needed and watch for sshd; caller holds host.lock."""
        host.gen += 1
        host.state = "booting"
        if wait_new_nspawn is None and (host.proc is None or host.proc.poll() is not None):
            host.proc = host.dir.start()
        threading.Thread(target=self._watch, args=(host, host.gen, wait_new_nspawn), daemon=True,
                         name=f"lab-watch-h{host.spec.index}").start()

    def _watch(self, host: _Host, gen: int, old_nspawn: int | None) -> None:
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline and host.gen == gen:
            proc = host.proc
            if proc is not None and proc.poll() is not None:
                with host.lock:
                    if host.gen == gen:
                        host.state = "failed"
                        host.error = f"supervisor exited {proc.returncode}: {self._console_tail(host)}"
                return
            if old_nspawn is not None and host.dir.nspawn_pid() in (old_nspawn, None):
                time.sleep(0.05)
                continue
            old_nspawn = None
            if ssh_banner(host.spec.address, timeout=0.5):
                with host.lock:
                    if host.gen == gen:
                        host.state = "up"
                return
            time.sleep(0.05)
        with host.lock:
            if host.gen == gen:
                host.state = "failed"
                host.error = f"no SSH banner within {self.boot_timeout:.0f} s: {self._console_tail(host)}"

    @staticmethod
    def _console_tail(host: _Host, n: int = 5) -> str:
        try:
            lines = (host.dir.path / "console.log").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return " | ".join(lines[-n:])

    def ready(self, server_id: str) -> bool | None:
        """True once sshd answers, False while building/booting/off, None if the boot failed."""
        host = self._hosts.get(server_id)
        if host is None or host.state == "failed":
            return None
        return host.state == "up"

    def console_log(self, server_id: str, limit: int = 65536) -> str:
        """The end of the host's console output (what systemd printed while booting)."""
        host = self._hosts.get(server_id)
        if host is None:
            return ""
        try:
            with open(host.dir.path / "console.log", "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - limit))
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def error(self, server_id: str) -> str:
        """Why a server failed (empty if it did not)."""
        host = self._hosts.get(server_id)
        return host.error if host else "unknown server"

    def wait_ready(self, server_ids: Iterable[str], timeout: float = 120.0) -> dict[str, bool | None]:
        """Poll ready() for several servers until all are decided or `timeout` passes."""
        ids = list(server_ids)
        end = time.monotonic() + timeout
        while True:
            states = {i: self.ready(i) for i in ids}
            if all(s is not False for s in states.values()) or time.monotonic() > end:
                return states
            time.sleep(0.02)

    def delete(self, server_id: str) -> None:
        """Power the host off (cleanly, killed after a deadline) and remove all of it (idempotent).

        The server keeps its index until everything is gone, so no new server can take
        its netns or address meanwhile; its volumes are detached and keep their data.
        """
        host = self._hosts.get(server_id)
        if host is None:
            return
        with host.lock:
            if host.state == "deleted":
                return
            host.state, host.gen = "deleted", host.gen + 1
        if host.thread:
            host.thread.join(timeout=60)
        for vol in self._attached(server_id):
            self._detach(vol)
        _stop_hosts([host.dir], STOP_DEADLINE)
        _reap(host)
        host.dir.remove()
        with self._lock:
            self._hosts.pop(server_id, None)

    def host_dir(self, server_id: str) -> HostDir:
        """The host's on-disk record (paths, PIDs, out-of-band exec)."""
        return self._hosts[server_id].dir

    # ------------------------------------------------------------ volumes
    def _volume(self, volume_id: str, size_gb: int = 0) -> _Volume:
        with self._lock:
            vol = self._volumes.get(volume_id)
            if vol is None:
                vol = _Volume(id=volume_id, path=self.volumes_dir / f"{volume_id}.img", size_gb=size_gb)
                self._volumes[volume_id] = vol
            return vol

    def _attached(self, server_id: str) -> list[_Volume]:
        with self._lock:
            return [v for v in self._volumes.values() if v.server_id == server_id]

    def attach(self, server_id: str, volume_id: str, size_gb: int, device: str) -> None:
        """Back the volume with a sparse file and a loop device; make `device` appear in the host."""
        host = self._hosts.get(server_id)
        if host is None:
            raise KeyError(f"no such server {server_id}")
        if not device.startswith("/dev/") or "/" in device[5:]:
            raise ValueError(f"device must be /dev/<name>, not {device!r}")
        vol = self._volume(volume_id, size_gb)
        with self._lock:
            if vol.server_id == server_id and vol.device == device:
                return
            if vol.server_id is not None:
                raise ValueError(f"volume {volume_id} is attached to {vol.server_id}")
            loopdev.create_file(vol.path, max(size_gb, vol.size_gb))
            vol.size_gb = max(size_gb, vol.size_gb)
            vol.loop = loopdev.attach(vol.path)
            vol.server_id, vol.device = server_id, device
            vol.save()
        host.dir.set_device(device, loopdev.device_numbers(vol.loop))

    def detach(self, server_id: str, volume_id: str) -> None:
        """Remove the device node from the host and free the loop device; the file stays."""
        vol = self._volumes.get(volume_id)
        if vol is not None and vol.server_id == server_id:
            self._detach(vol)

    def _detach(self, vol: _Volume) -> None:
        with self._lock:
            host = self._hosts.get(vol.server_id or "")
            if host is not None and vol.device:
                with contextlib.suppress(OSError, RuntimeError):
                    host.dir.set_device(vol.device, None)
            if vol.loop:
                loopdev.detach(vol.loop)
            vol.server_id = vol.device = vol.loop = None
            vol.save()

    def extend(self, volume_id: str, size_gb: int) -> None:
        """Grow the backing file; an attached device grows at once (`losetup -c`)."""
        vol = self._volume(volume_id, size_gb)
        with self._lock:
            loopdev.create_file(vol.path, size_gb)
            vol.size_gb = max(size_gb, vol.size_gb)
            if vol.loop:
                loopdev.refresh(vol.loop)
            vol.save()

    def delete_volume(self, volume_id: str) -> None:
        """Detach if needed and delete the backing file (idempotent)."""
        vol = self._volumes.get(volume_id)
        if vol is None:
            return
        if vol.server_id:
            self._detach(vol)
        with self._lock:
            self._volumes.pop(volume_id, None)
            vol.path.unlink(missing_ok=True)
            vol.path.with_suffix(".json").unlink(missing_ok=True)

    # ------------------------------------------------------------ faults
    def fault(self, server_id: str, what: HostFault) -> None:
        """Inject or heal a host fault; see HostFault for the names."""
        host = self._hosts.get(server_id)
        if host is None:
            raise KeyError(f"no such server {server_id}")
        d = host.dir
        with host.lock:
            if what in ("stop-sshd", "start-sshd"):
                verb = "stop" if what == "stop-sshd" else "start"
                r = d.guest_exec("systemctl", verb, "ssh.service")
                if r.returncode != 0:
                    raise RuntimeError(f"systemctl {verb} ssh on {host.hostname}: {r.stderr.strip()}")
            elif what in ("freeze", "thaw"):
                d.freeze(what == "freeze")
            elif what in ("cut", "heal"):
                net.link_set(host.spec.index, up=what == "heal")
            elif what == "poweroff":
                host.gen += 1
                d.power_cut()
                if not d.wait_stopped(time.monotonic() + STOP_DEADLINE):
                    d.kill()
                    d.wait_stopped(time.monotonic() + 5)
                _reap(host)
                host.state = "off"
            elif what == "poweron":
                if host.state == "off" or not d.alive():
                    d.freeze(False)
                    host.proc = None
                    self._start(host)
            elif what == "reboot":
                old = d.nspawn_pid()
                if old is None or not d.signal_init(signal.SIGRTMIN + 5):  # systemd: reboot.target
                    raise RuntimeError(f"{host.hostname} is not running")
                self._start(host, wait_new_nspawn=old)
            else:
                raise ValueError(f"unknown host fault {what!r}")

    def exec(self, server_id: str, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command in the host out of band (nsenter, as root), e.g. to repair it."""
        return self._hosts[server_id].dir.guest_exec(*argv, timeout=timeout)

    # ------------------------------------------------------------ the end
    def close(self) -> None:
        """Remove every host and volume, the bridge, the route; restore sysctls; stop the proxy."""
        with self._lock:
            self._closed = True
            hosts = list(self._hosts.values())
            self._hosts.clear()
        for h in hosts:
            with h.lock:
                h.state, h.gen = "deleted", h.gen + 1
        for h in hosts:
            if h.thread:
                h.thread.join(timeout=60)
        if self.proxy:
            self.proxy.stop()
        teardown(self.lab_dir, hosts_reaper=lambda: [_reap(h) for h in hosts])
        self._volumes.clear()

    def __enter__(self) -> HostsBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reap(host: _Host) -> None:
    if host.proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            host.proc.wait(timeout=5)


# ---------------------------------------------------------------- lab-wide, from disk


def _saved_net(lab_dir: Path) -> net.LabNet:
    try:
        return net.LabNet.from_subnet(json.loads((lab_dir / STATE_FILE).read_text())["subnet"])
    except (OSError, ValueError, KeyError):
        return net.LabNet.from_subnet("10.77.0.0/24")


def _host_dirs(lab_dir: Path) -> list[HostDir]:
    d = lab_dir / "hosts"
    return [HostDir(p) for p in sorted(d.glob("h[0-9]*")) if p.is_dir()] if d.is_dir() else []


def _owner_alive(lab_dir: Path) -> bool:
    """Is the process that made this lab (recorded in its state file) still running?"""
    try:
        rec = json.loads((lab_dir / STATE_FILE).read_text())
        return start_time(int(rec["pid"])) == rec.get("start")
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _claim(lab_dir: Path, lab_net: net.LabNet) -> None:
    """Refuse to start over a running lab; clean up after a dead one."""
    if any(h.alive() for h in _host_dirs(lab_dir)) or _owner_alive(lab_dir):
        raise LabBusy(f"a lab is running in {lab_dir} (run teardown first)")
    mine = (lab_dir / STATE_FILE).exists()
    if mine:
        teardown(lab_dir)
    elif net.bridge_exists():
        raise LabBusy(f"bridge {net.BRIDGE} exists but {lab_dir} did not make it: another lab is up")
    lab_dir.mkdir(parents=True, exist_ok=True)
    (lab_dir / STATE_FILE).write_text(json.dumps({"subnet": str(lab_net.subnet), "pid": os.getpid(),
                                                  "start": start_time(os.getpid())}))


def _stop_hosts(hosts: list[HostDir], deadline_s: float) -> None:
    """Clean poweroff of all at once; whatever is still running after the deadline is killed."""
    for h in hosts:
        h.request_stop()
    end = time.monotonic() + deadline_s
    for h in hosts:
        if not h.wait_stopped(end):
            h.kill()
    for h in hosts:
        h.wait_stopped(time.monotonic() + 5)


def teardown(lab_dir: Path, deadline: float = STOP_DEADLINE, hosts_reaper: Callable[[], object] | None = None) -> list[str]:
    """Stop and remove everything a hosts lab made in `lab_dir`; returns problems (empty = clean).

    Works from the records on disk, so any process can run it (`inv lab.down`).
    Only processes recorded in the lab's PID files are signalled.
    """
    lab_dir = Path(lab_dir).resolve()
    hosts = _host_dirs(lab_dir)
    _stop_hosts(hosts, deadline)
    if hosts_reaper is not None:
        hosts_reaper()
    problems: list[str] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        for p in pool.map(HostDir.remove, hosts):
            problems += p
    for loop in loopdev.loops_backed_under(lab_dir):
        try:
            loopdev.detach(loop)
        except loopdev.LoopError as e:
            problems.append(str(e))
    vols = lab_dir / "volumes"
    if vols.is_dir():
        subprocess.run(["rm", "-rf", "--one-file-system", str(vols)], check=False)
    for h in (lab_dir / "hosts",):
        with contextlib.suppress(OSError):
            h.rmdir()
    for hier in cgroup_hierarchies():
        top = hier / CGROUP_PARENT
        if top.is_dir() and not any(p.is_dir() for p in top.iterdir()):
            problems += remove_cgroup_tree(top)
    lab_net = _saved_net(lab_dir)
    if (lab_dir / STATE_FILE).exists() or net.bridge_exists():
        try:
            net.bridge_down(lab_net)
        except net.NetError as e:
            problems.append(str(e))
    net.restore_sysctls(lab_dir / SYSCTL_FILE)
    (lab_dir / STATE_FILE).unlink(missing_ok=True)
    return problems


def leftovers(lab_dir: Path) -> list[str]:
    """Everything of a lab still present on this machine, one line each (empty = nothing)."""
    lab_dir = Path(lab_dir).resolve()
    out: list[str] = [f"netns {n}" for n in net.lab_netns()]
    out += [f"link {n}" for n in net.lab_links()]
    lab_net = _saved_net(lab_dir)
    if net.safety_route_present(lab_net):
        out.append(f"route unreachable {lab_net.safety}")
    prefix = str(lab_dir).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mnt = line.split()[4]
            if mnt.startswith(prefix) or mnt.startswith(f"{PROPAGATE_DIR}/lab-"):
                out.append(f"mount {mnt}")
    if PROPAGATE_DIR.is_dir():
        out += [f"dir {p}" for p in PROPAGATE_DIR.glob("lab-*")]
    out += [f"loop {dev} -> {f}" for dev, f in loopdev.loops_backed_under(lab_dir).items()]
    for hier in cgroup_hierarchies():
        top = hier / CGROUP_PARENT
        if top.is_dir():
            out.append(f"cgroup {top}")
            out += [f"cgroup {p}" for p in sorted(top.iterdir()) if p.is_dir()]
    for h in _host_dirs(lab_dir):
        out += [f"process {pid} ({h.machine})" for pid in h.alive()]
        out.append(f"host dir {h.path}")
    for name, (old, now) in net.sysctl_changes(lab_dir / SYSCTL_FILE).items():
        out.append(f"sysctl {name} = {now} (was {old})")
    if (lab_dir / SYSCTL_FILE).exists():
        out.append(f"sysctl values saved but not restored: {lab_dir / SYSCTL_FILE}")
    if proxy_listening(lab_net.gateway, DEFAULT_PORT):
        out.append(f"proxy still listening on {lab_net.gateway}:{DEFAULT_PORT}")
    return out
