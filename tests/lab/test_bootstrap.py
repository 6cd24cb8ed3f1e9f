"""`inv bootstrap` on three real lab hosts: a host lost mid-run, the re-run that finishes it, a second
run that changes and restarts nothing, and a dry run on a broken host that changes nothing.

The tests run in order on one lab (module scope): each starts from the state the one before left.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.lab import fleet_lab
from tests.lab.labkit import CAN_RUN_LAB, SKIP_REASON

pytestmark = [pytest.mark.lab, pytest.mark.skipif(not CAN_RUN_LAB, reason=SKIP_REASON)]

UNITS = ("containerd.service", "systemd-timesyncd.service", "ssh.service", "systemd-journald.service")


@pytest.fixture(scope="module")
def fleet():
    with fleet_lab.running(3) as fl:
        yield fl


def starts(fl: fleet_lab.FleetLab) -> dict[str, str]:
    """Every host's units with the id of their current start (a restart changes it)."""
    cmd = "systemctl show -p Id,InvocationID,ActiveEnterTimestampMonotonic " + " ".join(UNITS)
    return fl.on_all(cmd)


def test_dry_run_on_fresh_hosts_plans_every_step_and_changes_nothing(fleet):
    look = "ls /etc/apt/apt.conf.d /etc/systemd/timesyncd.conf.d; cat /etc/fstab; findmnt -n /mnt/data || true"
    before = fleet.on_all(look)
    r = fleet.inv("bootstrap", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    for name, h in fleet.report()["hosts"].items():
        assert sorted(h["plan"]) == ["clock", "disks", "kernel", "proxy", "runtime", "swap"], (name, h["plan"])
        assert h["plan"]["disks"][0].startswith("mkfs.xfs -q -L coursehub -m uuid=")
        assert any("apt-get update && apt-get install containerd" in a for a in h["plan"]["runtime"])
        assert h["changed"] == []
    assert fleet.on_all(look) == before


def test_a_host_lost_mid_run_is_unreachable_and_the_others_finish(fleet):
    node3 = fleet.spec("node3")
    proc = subprocess.Popen(fleet.inv_argv("bootstrap"), cwd=fleet_lab.REPO, env=fleet.env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    # Power node3 off while it installs containerd (apt through the lab's proxy).
    deadline = time.monotonic() + 300
    while fleet.backend.exec(node3.id, "pgrep", "-x", "apt-get").returncode != 0:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "node3 never ran apt-get"
        time.sleep(0.05)
    fleet.fault("node3", "poweroff")
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 1, out + err
    assert fleet.statuses() == {"node1": "changed", "node2": "changed", "node3": "unreachable"}, (
        out + err + fleet.report()["hosts"]["node3"]["error"])
    assert "1 unreachable" in out and "2 changed" in out
    for name in ("node1", "node2"):
        assert fleet.sh(name, "systemctl is-active containerd") == "active"


def test_rerun_after_healing_completes_the_lost_host(fleet):
    fleet.fault("node3", "poweron")
    fleet.wait_up("node3")
    r = fleet.inv("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    assert fleet.statuses() == {"node1": "ok", "node2": "ok", "node3": "changed"}, r.stdout
    assert fleet.sh("node3", "systemctl is-active containerd") == "active"


def test_hosts_are_as_vars_yml_says(fleet):
    for name in fleet.names:
        facts = fleet.sh(name, "findmnt -n -o FSTYPE /mnt/data; grep -c ' /mnt/data xfs defaults,nofail' /etc/fstab; "
                               "systemctl is-enabled swap.target; cat /proc/sys/net/ipv4/ip_forward; "
                               "grep -c 'SystemdCgroup = true' /etc/containerd/config.toml; "
                               "grep -h '^NTP=' /etc/systemd/timesyncd.conf.d/50-coursehub.conf; "
                               "grep -l 10.77.0.1:3142 /etc/apt/apt.conf.d/95coursehub-proxy /etc/environment "
                               "/etc/xdg/pip/pip.conf /etc/systemd/system/containerd.service.d/http-proxy.conf | wc -l")
        assert facts.splitlines() == ["xfs", "1", "masked", "1", "1", "NTP=10.77.0.1", "4"], (name, facts)
    # fstab names the volume by UUID, the same filesystem that is mounted
    line = fleet.sh("node1", "grep ' /mnt/data ' /etc/fstab").split()
    assert line[0] == "UUID=" + fleet.sh("node1", "blkid -p -o value -s UUID /dev/vdb")


def test_second_run_changes_nothing_and_restarts_nothing(fleet):
    before = starts(fleet)
    r = fleet.inv("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(fleet.statuses().values()) == {"ok"}, r.stdout
    assert "bootstrap: 3 ok in" in r.stdout
    assert starts(fleet) == before


def test_dry_run_on_a_broken_host_lists_exactly_what_would_change(fleet):
    broken = ("echo '/swapfile none swap sw 0 0' >> /etc/fstab; systemctl unmask swap.target; "
              "sysctl -q -w net.ipv4.ip_forward=0; rm /etc/apt/apt.conf.d/95coursehub-proxy; "
              "sed -i 's/SystemdCgroup = true/SystemdCgroup = false/' /etc/containerd/config.toml")
    fleet.sh("node2", broken)
    look = ("sha256sum /etc/fstab /etc/containerd/config.toml; systemctl is-enabled swap.target; "
            "cat /proc/sys/net/ipv4/ip_forward; ls /etc/apt/apt.conf.d; "
            "systemctl show -p InvocationID containerd systemd-timesyncd")
    state = fleet.sh("node2", look)
    r = fleet.inv("bootstrap", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    report = fleet.report()
    assert report["dry_run"] is True
    assert {n: h["plan"] != {} for n, h in report["hosts"].items()} == {"node1": False, "node2": True, "node3": False}
    plan = report["hosts"]["node2"]["plan"]
    assert sorted(plan) == ["kernel", "proxy", "runtime", "swap"], plan
    assert [a.split("  #")[0] for a in plan["proxy"]] == ["write /etc/apt/apt.conf.d/95coursehub-proxy (0644 root:root)"]
    assert plan["kernel"] == ["sysctl -q -w net.ipv4.ip_forward=1  # live value net.ipv4.ip_forward=0"]
    assert [a.split()[0] for a in plan["swap"]] == ["copy", "write", "systemctl"]
    assert [a.split("  #")[0] for a in plan["runtime"]] == [
        "write /etc/containerd/config.toml (0644 root:root)", "systemctl restart containerd.service"]
    assert "would change" in r.stdout and "nothing changed" in r.stdout
    assert fleet.sh("node2", look) == state  # the dry run touched nothing
    # The real run repairs exactly that host; a run after it changes nothing.
    r = fleet.inv("bootstrap")
    assert r.returncode == 0, r.stdout + r.stderr
    assert fleet.statuses() == {"node1": "ok", "node2": "changed", "node3": "ok"}
    assert sorted(fleet.report()["hosts"]["node2"]["changed"]) == ["kernel", "proxy", "runtime", "swap"]
    r = fleet.inv("bootstrap")
    assert set(fleet.statuses().values()) == {"ok"}, r.stdout
