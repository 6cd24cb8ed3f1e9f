"""The whole job on the lab, exactly as an admin types it, from nothing back to nothing.

lab up -> provision (3 nodes) -> bootstrap -> hub (single) -> check -> each host op ->
a full re-run of provision, bootstrap and hub that changes nothing and restarts nothing
-> destroy -> lab down, leaving nothing behind. Every step is a real `inv` process;
the cloud is the lab's OpenStack API, the hosts are real systemd hosts.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from coursehub import inventory
from tests.lab.labkit import CAN_RUN_LAB, SKIP_REASON

pytestmark = [pytest.mark.lab, pytest.mark.skipif(not CAN_RUN_LAB, reason=SKIP_REASON)]

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ["coursehub-hub", "coursehub-proxy", "systemd-timesyncd", "ssh", "containerd"]


class Admin:
    """Runs `inv` the way the README does, in a scratch folder with its own lab and inventory."""

    def __init__(self, work: Path):
        self.work = work
        self.env = dict(os.environ, COURSEHUB_LAB_DIR=str(work / "lab"), COURSEHUB_INVENTORY=str(work / "inventory"),
                        NO_PROXY="127.0.0.1,localhost,10.77.0.0/16", no_proxy="127.0.0.1,localhost,10.77.0.0/16")
        self.env.pop("COURSEHUB_VARS", None)

    def inv(self, *args: str, lab_vars: bool = True, ok: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        env = dict(self.env, COURSEHUB_VARS=str(self.work / "vars.lab.yml") if lab_vars else str(ROOT / "vars.yml"))
        r = subprocess.run([sys.executable, "-m", "invoke", "-r", str(ROOT), *args], cwd=self.work, env=env,
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if ok:
            assert r.returncode == 0, f"inv {' '.join(args)} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r

    def report(self) -> dict:
        return json.loads((self.work / "inventory" / "runs" / "last.json").read_text())

    def ssh(self, host: str, command: str) -> str:
        r = subprocess.run(["ssh", "-F", str(self.work / "inventory" / "ssh_config"), "-o", "BatchMode=yes", host,
                            command], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        return r.stdout


def started(admin: Admin, host: str) -> dict[str, str]:
    """When each service last (re)started, by the host's monotonic clock."""
    out = admin.ssh(host, "for s in " + " ".join(SERVICES) + "; do echo $s $(systemctl show -p "
                    "ActiveEnterTimestampMonotonic --value $s 2>/dev/null); done")
    return dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    lock = open("/tmp/coursehub-lab.lock", "w")  # noqa: SIM115 (held for the module)
    fcntl.flock(lock, fcntl.LOCK_EX)
    a = Admin(tmp_path_factory.mktemp("e2e"))
    try:
        yield a
    finally:
        a.inv("provision.destroy", "--yes", ok=False, timeout=300)
        a.inv("lab.down", lab_vars=False, ok=False, timeout=300)
        lock.close()


def test_the_whole_job_from_nothing_back_to_nothing(admin):
    admin.inv("lab.up", "--backend", "hosts", "--nodes", "3", lab_vars=False, timeout=900)
    assert (admin.work / "vars.lab.yml").exists()

    out = admin.inv("provision", "bootstrap", "hub", timeout=1800).stdout
    assert "provision: " in out
    hosts = ["lab-1", "lab-2", "lab-3"]

    check = admin.inv("check").stdout
    for h in hosts:
        assert h in check

    head = inventory.load(admin.work / "inventory").head()
    with urllib.request.urlopen(f"http://{head.address}/hub/login", timeout=10) as r:  # noqa: S310 (the lab bridge)
        assert r.status == 200 and b"JupyterHub" in r.read()
    admin.inv("hub.health")

    for op in (["ops.swapoff"], ["ops.resync-clocks"], ["ops.truncate-logs", "--over", "100M"], ["ops.disk-report"],
               ["ops.purge-images"], ["ops.grow-disk"], ["ops.exec", "--command", "uptime"], ["ops.users"]):
        admin.inv(*op)

    before = {h: started(admin, h) for h in hosts}
    again = admin.inv("provision", "bootstrap", "hub").stdout
    assert "provision: 0 created, 0 removed" in again
    runs = sorted((admin.work / "inventory" / "runs").glob("*-bootstrap*.json"))
    last_bootstrap = json.loads(runs[-1].read_text())
    assert {h: r["status"] for h, r in last_bootstrap["hosts"].items()} == dict.fromkeys(hosts, "ok")
    assert {h: started(admin, h) for h in hosts} == before, "a re-run restarted a service"

    admin.inv("provision.destroy", "--yes")
    assert not (admin.work / "inventory" / "hosts.yml").exists()
    down = admin.inv("lab.down", lab_vars=False)
    assert "nothing left behind" in down.stdout
