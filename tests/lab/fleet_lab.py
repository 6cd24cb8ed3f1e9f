"""A lab of N real hosts with a CourseHub inventory and vars file: what the host-ops tests and the
benchmark run `inv` against.

    with fleet_lab.running(3) as fl:
        fl.inv("bootstrap")                    # the real `inv`, COURSEHUB_VARS/INVENTORY pointing here
        fl.report()["hosts"]["node1"]          # inventory/runs/last.json
        fl.sh("node1", "swapon --show")        # as root on the host, over OpenSSH with inventory/ssh_config

Each host is the lab's HostsBackend server (systemd-nspawn, Debian), reached as the image
user `debian` with sudo, with a 1 GiB volume attached as /dev/vdb (the first host also gets
a udev-style /dev/disk/by-id/virtio-<id> link, so both ways of finding a volume are used).
The vars file points time sync only at the bridge (10.77.0.1, which serves no NTP) and
apt at the lab's proxy. An exclusive flock on /tmp/coursehub-lab.lock is held while
the lab is up: two labs on one machine would share the bridge.

Test setup only (not CourseHub): the lab drops CAP_SYS_TIME from its guests, so systemd
skips timesyncd there; a drop-in lifts that Condition (and the capability settings) so that
timesyncd runs - it still cannot change the clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import shlex
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coursehub import inventory
from tests.lab.labkit import USER, LabHost, make_spec

REPO = Path(__file__).resolve().parents[2]
INV = REPO / ".venv" / "bin" / "inv"
LOCK = Path("/tmp/coursehub-lab.lock")
TIMESYNCD_LAB_DROPIN = """[Unit]
ConditionCapability=
[Service]
AmbientCapabilities=
CapabilityBoundingSet=
"""


@dataclass
class FleetLab:
    backend: Any  # coursehub.lab.hosts.HostsBackend
    hosts: list[LabHost]
    dir: Path
    key: Path
    inventory: inventory.Inventory
    vars_path: Path
    volumes: dict[str, str] = field(default_factory=dict)  # host name -> volume id

    # ------------------------------------------------------------ hosts
    def spec(self, name: str) -> Any:
        return next(h.spec for h in self.hosts if h.spec.name == name)

    @property
    def names(self) -> list[str]:
        return [h.spec.name for h in self.hosts]

    def ssh(self, name: str, command: str, timeout: float = 120, input: bytes | None = None,
            ) -> subprocess.CompletedProcess[bytes]:
        """`command` as root on host `name` (sudo sh -c), over OpenSSH with the inventory's ssh_config."""
        argv = ["ssh", "-F", str(self.inventory.ssh_config), "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", name,
                "sudo -n sh -c " + shlex.quote(command)]
        return subprocess.run(argv, capture_output=True, timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL)

    def sh(self, name: str, command: str, timeout: float = 120) -> str:
        """Like ssh(), but it must succeed; its stdout, stripped."""
        r = self.ssh(name, command, timeout)
        assert r.returncode == 0, f"{name}: {command!r} rc={r.returncode}\n{r.stdout.decode()}\n{r.stderr.decode()}"
        return r.stdout.decode().strip()

    def on_all(self, command: str) -> dict[str, str]:
        with ThreadPoolExecutor(len(self.hosts)) as pool:
            return dict(zip(self.names, pool.map(lambda n: self.sh(n, command), self.names), strict=True))

    def fault(self, name: str, what: str) -> None:
        self.backend.fault(self.spec(name).id, what)

    def wait_up(self, name: str, timeout: float = 60) -> None:
        states = self.backend.wait_ready([self.spec(name).id], timeout=timeout)
        assert all(states.values()), states
        end = time.monotonic() + timeout
        while self.ssh(name, "systemctl is-system-running --wait >/dev/null; true", timeout=30).returncode != 0:
            assert time.monotonic() < end, f"{name} did not come back"
            time.sleep(0.2)

    # ------------------------------------------------------------ inv
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSEHUB_", "OS_"))}
        env.update(COURSEHUB_VARS=str(self.vars_path), COURSEHUB_INVENTORY=str(self.inventory.dir),
                   NO_PROXY="127.0.0.1,localhost,10.77.0.0/16", no_proxy="127.0.0.1,localhost,10.77.0.0/16")
        return env

    def inv_argv(self, *args: str) -> list[str]:
        # These labs test the host steps. Their vars say topology cluster (so the Kubernetes
        # host prerequisites are made), but the cluster phases themselves need pkgs.k8s.io,
        # which these machines cannot reach: bootstrap runs with --only-hosts here.
        if args and args[0] == "bootstrap":
            args = (args[0], "--only-hosts", *args[1:])
        return [str(INV), *args]

    def inv(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run `inv ARGS` from the repository with this lab's vars and inventory."""
        return subprocess.run(self.inv_argv(*args), cwd=REPO, env=self.env(), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def report(self) -> dict[str, Any]:
        return json.loads((self.inventory.dir / "runs" / "last.json").read_text())

    def statuses(self) -> dict[str, str]:
        return {n: r["status"] for n, r in self.report()["hosts"].items()}


def _vars(path: Path, n: int, overrides: dict[str, Any] | None) -> None:
    data = yaml.safe_load((REPO / "vars.yml").read_text())
    data.update(deployment="labtest", topology="cluster", parallel=max(n, 1))
    data["network"].update(admin_cidr="10.77.0.0/24", proxy="http://10.77.0.1:3142")
    data["hosts"].update(ntp_servers=["10.77.0.1"])
    data["volumes"].update(mount="/mnt/data", filesystem="xfs")
    for section, values in (overrides or {}).items():
        if isinstance(values, dict):
            data.setdefault(section, {}).update(values)
        else:
            data[section] = values
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@contextlib.contextmanager
def locked() -> Iterator[None]:
    """The machine-wide lab lock (blocks while another lab runs)."""
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def running(n: int, *, volume_gb: int = 1, vars_overrides: dict[str, Any] | None = None,
            lab_dir: Path | None = None, lock: bool = True) -> Iterator[FleetLab]:
    """N hosts up, each with a data volume, an inventory and a vars file; all removed afterwards.

    lock=False: the caller already holds `locked()` (a benchmark keeping the machine across sizes).
    """
    with locked() if lock else contextlib.nullcontext():
        lab_dir = lab_dir or Path(f"/var/tmp/coursehub-fleetlab-{os.getpid()}")
        backend = _backend(lab_dir)
        try:
            yield _start(backend, lab_dir, n, volume_gb, vars_overrides)
        finally:
            from coursehub import fleet

            fleet.close_all()
            backend.close()
            subprocess.run(["rm", "-rf", "--one-file-system", str(lab_dir)], check=False)


def _backend(lab_dir: Path, wait: float = 900) -> Any:
    """A HostsBackend, waiting while a lab that does not take the flock still holds the bridge."""
    from coursehub.lab.hosts import HostsBackend, LabBusy

    end = time.monotonic() + wait
    while True:
        try:
            return HostsBackend(lab_dir)
        except LabBusy:
            if time.monotonic() > end:
                raise
            time.sleep(2)


def _start(backend: Any, lab_dir: Path, n: int, volume_gb: int, vars_overrides: dict[str, Any] | None) -> FleetLab:
    backend.wait_base(timeout=900)
    keydir = lab_dir / "client"
    keydir.mkdir(parents=True, exist_ok=True)
    key = keydir / "id_ed25519"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fleetlab", "-f", str(key)], check=True)
    pub = (keydir / "id_ed25519.pub").read_text().strip()
    hosts = [LabHost(spec, backend.create(spec)) for spec in (make_spec(i, pub, n) for i in range(1, n + 1))]
    states = backend.wait_ready([h.spec.id for h in hosts], timeout=60 + 3 * n)
    assert all(states.values()), {i: backend.error(i) for i, ok in states.items() if not ok}
    volumes: dict[str, str] = {}
    inv_hosts = []
    for i, h in enumerate(hosts):
        vol = str(uuid.uuid4())
        if volume_gb:
            backend.attach(h.spec.id, vol, volume_gb, "/dev/vdb")
            volumes[h.spec.name] = vol
        roles = ["head", "storage"] if i == 0 else ["compute"]
        vols = [inventory.Volume(id=vol, name=f"{h.spec.name}-data", size_gb=volume_gb, role="data",
                                 device="/dev/vdb")] if volume_gb else []
        inv_hosts.append(inventory.Host(name=h.spec.name, address=h.spec.address, user=USER, roles=roles,
                                        volumes=vols, server_id=h.spec.id, host_keys=list(h.keys.lines)))
    inv = inventory.Inventory(dir=lab_dir / "inventory", hosts=inv_hosts, identity_file=str(key))
    inventory.write(inv)
    vars_path = lab_dir / "vars.yml"
    _vars(vars_path, n, vars_overrides)
    fl = FleetLab(backend=backend, hosts=hosts, dir=lab_dir, key=key, inventory=inv, vars_path=vars_path,
                  volumes=volumes)
    dropin = "/etc/systemd/system/systemd-timesyncd.service.d/20-labtest-no-sys-time.conf"
    setup = (f"mkdir -p $(dirname {dropin}) && printf %s {shlex.quote(TIMESYNCD_LAB_DROPIN)} > {dropin} && "
             "systemctl daemon-reload && systemctl restart systemd-timesyncd && systemctl is-system-running --wait "
             ">/dev/null; systemctl is-active systemd-timesyncd")
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda name: fl.sh(name, setup), fl.names))
    if volume_gb and hosts:
        first = hosts[0].spec.name
        fl.sh(first, f"mkdir -p /dev/disk/by-id && ln -sf ../../vdb /dev/disk/by-id/virtio-{volumes[first][:20]}")
    return fl


# ----------------------------------------------------------------------------- a tiny image
def tiny_image(tag: str = "coursehub/tiny:1") -> bytes:
    """A docker-archive tarball (what `docker save` writes) with one layer holding one file."""
    import hashlib

    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        data = f"hello from {tag}\n".encode()
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello.txt"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, blob in (("layer/layer.tar", layer_bytes), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    return out.getvalue()
