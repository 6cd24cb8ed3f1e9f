"""Each host chore of the runbook on three real lab hosts: break a host the way the runbook describes,
run the op, see it repaired, and run it again to see nothing change.

The module bootstraps its lab first (containerd, the data volume on /mnt/data).
"""

from __future__ import annotations

import pytest

from tests.lab import fleet_lab
from tests.lab.labkit import CAN_RUN_LAB, SKIP_REASON

pytestmark = [pytest.mark.lab, pytest.mark.skipif(not CAN_RUN_LAB, reason=SKIP_REASON)]


@pytest.fixture(scope="module")
def fleet():
    with fleet_lab.running(3) as fl:
        r = fl.inv("bootstrap")
        assert r.returncode == 0, r.stdout + r.stderr
        yield fl


def run_ok(fl: fleet_lab.FleetLab, *args: str) -> dict[str, dict]:
    r = fl.inv(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    return fl.report()["hosts"]


def run_twice(fl: fleet_lab.FleetLab, *args: str, changed: set[str]) -> dict[str, dict]:
    """The op repairs exactly `changed`; the re-run changes nothing anywhere."""
    first = run_ok(fl, *args)
    assert {n for n, h in first.items() if h["status"] == "changed"} == changed, first
    assert all(h["status"] in ("ok", "changed") for h in first.values()), first
    again = run_ok(fl, *args)
    assert {h["status"] for h in again.values()} == {"ok"}, again
    return first


def test_swapoff_after_a_swap_entry_came_back(fleet):
    fleet.sh("node1", "echo '/swapfile none swap sw 0 0' >> /etc/fstab && systemctl unmask swap.target")
    plan = run_ok(fleet, "ops.swapoff", "--dry-run")["node1"]["plan"]["swap"]
    assert "swap in fstab: /swapfile" in plan[1]
    assert fleet.sh("node1", "grep -c '^/swapfile' /etc/fstab") == "1"  # the dry run changed nothing
    run_twice(fleet, "ops.swapoff", changed={"node1"})
    out = fleet.sh("node1", "grep swapfile /etc/fstab; systemctl is-enabled swap.target; cat /proc/swaps | wc -l")
    assert out.splitlines() == ["# swap off for Kubernetes (CourseHub): /swapfile none swap sw 0 0", "masked", "1"]


def test_resync_clocks_restarts_a_stopped_time_daemon(fleet):
    fleet.sh("node2", "systemctl stop systemd-timesyncd")
    run_twice(fleet, "ops.resync-clocks", changed={"node2"})
    assert fleet.sh("node2", "systemctl is-active systemd-timesyncd") == "active"
    forced = run_ok(fleet, "ops.resync-clocks", "--force")
    assert {h["status"] for h in forced.values()} == {"changed"}


def test_truncate_logs_empties_a_2g_log_in_place(fleet):
    fleet.sh("node3", "truncate -s 2G /var/log/runaway.log && echo small > /var/log/small.log")
    first = run_twice(fleet, "ops.truncate-logs", "--over", "1G", changed={"node3"})
    assert any("truncated" in line and "/var/log/runaway.log" in line and "2.0G" in line
               for line in first["node3"]["output"]), first["node3"]
    assert fleet.sh("node3", "stat -c %s /var/log/runaway.log; cat /var/log/small.log") == "0\nsmall"


def test_disk_report_lists_filesystems_and_biggest_directories(fleet):
    hosts = run_ok(fleet, "ops.disk-report", "--warn-below", "99", "--path", "/var", "--top", "3")
    for name, h in hosts.items():
        text = "\n".join(h["output"])
        assert h["status"] == "ok" and "/mnt/data" in text and "LOW (under 99%)" in text, (name, text)
        assert "biggest under /var (" in text
    hosts = run_ok(fleet, "ops.disk-report", "--user", "debian")
    assert all("home of debian: /home/debian" in "\n".join(h["output"]) for h in hosts.values())


def test_exec_runs_ad_hoc_commands_with_the_per_host_table(fleet):
    r = fleet.inv("ops.exec", "--", "hostname; false")
    assert r.returncode == 0, r.stdout + r.stderr
    for name, h in fleet.report()["hosts"].items():
        assert h["output"] == [f"{name}\n(exit code 1)\n"], h
    assert "| node2" in r.stdout


def test_purge_images_removes_unused_images(fleet):
    tar = fleet_lab.tiny_image()
    r = fleet.ssh("node1", "cat > /tmp/tiny.tar && ctr -n default images import /tmp/tiny.tar >/dev/null && "
                           "ctr -n default images ls -q", input=tar)
    assert r.returncode == 0 and b"coursehub/tiny:1" in r.stdout, r.stderr
    plan = run_ok(fleet, "ops.purge-images", "--dry-run")["node1"]["plan"]["purge-images"]
    assert "coursehub/tiny:1" in plan[0]
    run_twice(fleet, "ops.purge-images", changed={"node1"})
    assert fleet.sh("node1", "ctr -n default images ls -q") == ""


def test_grow_disk_after_the_volume_was_extended(fleet):
    before = int(fleet.sh("node2", "df -B1 --output=size /mnt/data | tail -n1"))
    fleet.backend.extend(fleet.volumes["node2"], 2)  # what the lab's Cinder does on `volume extend`
    assert fleet.sh("node2", "blockdev --getsize64 /dev/vdb") == str(2 * 1024**3)
    run_twice(fleet, "ops.grow-disk", changed={"node2"})
    after = int(fleet.sh("node2", "df -B1 --output=size /mnt/data | tail -n1"))
    assert after > before + 900 * 1024**2, (before, after)


def test_move_containerd_root_to_the_data_disk(fleet):
    """The runbook's full disk: the runtime's root is on the root disk; it moves with its images."""
    tar = fleet_lab.tiny_image("coursehub/keep:1")
    r = fleet.ssh("node2", "cat > /tmp/keep.tar && ctr -n default images import /tmp/keep.tar >/dev/null", input=tar)
    assert r.returncode == 0, r.stderr
    first = run_twice(fleet, "ops.move-docker-root", "--to", "/mnt/data/containerd", "--hosts", "node2",
                      changed={"node2"})
    assert list(first) == ["node2"]
    out = fleet.sh("node2", "grep '^root' /etc/containerd/config.toml; systemctl is-active containerd; "
                            "ctr -n default images ls -q; cat /etc/coursehub/moves/containerd; "
                            "test -e /mnt/data/containerd/.coursehub-copy-incomplete || echo no-marker")
    assert out.splitlines() == ['root = "/mnt/data/containerd"', "active", "docker.io/coursehub/keep:1", "/var/lib/containerd",
                                "no-marker"]
    # bootstrap keeps the moved root (runtime_root is empty in vars.yml) and changes nothing
    r = fleet.inv("bootstrap", "--hosts", "node2")
    assert r.returncode == 0 and fleet.statuses() == {"node2": "ok"}, r.stdout
    # the old copy stays until asked
    assert fleet.sh("node2", "ls /var/lib/containerd | wc -l") != "0"
    run_twice(fleet, "ops.move-docker-root", "--to", "/mnt/data/containerd", "--hosts", "node2", "--drop-old",
              changed={"node2"})
    assert fleet.sh("node2", "ls -A /var/lib/containerd | wc -l; test -e /etc/coursehub/moves/containerd || echo gone"
                    ) == "0\ngone"


def test_move_docker_root_with_its_data(fleet):
    """docker where the admin asks: installed on one host, an image loaded, its root moved to the data disk."""
    fleet.sh("node3", "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io "
                      ">/dev/null && systemctl is-active docker", timeout=600)
    tar = fleet_lab.tiny_image("coursehub/dock:1")
    r = fleet.ssh("node3", "cat > /tmp/dock.tar && docker load -i /tmp/dock.tar >/dev/null", input=tar)
    assert r.returncode == 0, r.stderr
    first = run_twice(fleet, "ops.move-docker-root", "--runtime", "docker", "--to", "/mnt/data/docker",
                      "--hosts", "node3", changed={"node3"})
    assert first["node3"]["changed"] == ["move-docker-root"]
    out = fleet.sh("node3", "docker info -f '{{.DockerRootDir}}'; docker image ls --format '{{.Repository}}:{{.Tag}}'; "
                            "systemctl show -p RequiresMountsFor docker")
    assert out.splitlines() == ["/mnt/data/docker", "coursehub/dock:1", "RequiresMountsFor=/mnt/data/docker"]


def test_move_kubelet_root(fleet):
    fleet.sh("node1", "mkdir -p /var/lib/kubelet/pki /var/lib/kubelet/pods/p1 && echo c > /var/lib/kubelet/config.yaml "
                      "&& echo k > /var/lib/kubelet/pki/kubelet.crt && echo x > /var/lib/kubelet/pods/p1/data && "
                      "echo 'KUBELET_EXTRA_ARGS=--node-ip=10.77.0.11' > /etc/default/kubelet")
    run_twice(fleet, "ops.move-kubelet-root", "--to", "/mnt/data/kubelet", "--hosts", "node1", changed={"node1"})
    out = fleet.sh("node1", "cat /etc/default/kubelet /mnt/data/kubelet/pods/p1/data")
    assert out.splitlines() == ['KUBELET_EXTRA_ARGS="--node-ip=10.77.0.11 --root-dir=/mnt/data/kubelet"', "x"]
    run_twice(fleet, "ops.move-kubelet-root", "--to", "/mnt/data/kubelet", "--hosts", "node1", "--drop-old",
              changed={"node1"})
    out = fleet.sh("node1", "ls -A /var/lib/kubelet; readlink /var/lib/kubelet/pki")
    assert out.splitlines() == ["config.yaml", "pki", "/mnt/data/kubelet/pki"]
