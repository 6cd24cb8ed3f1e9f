"""Steps as the fleet runs them, over fake connections: one probe command each, and --dry-run sends
nothing but probes. Also: the bootstrap list, and every ops task documents every flag."""

from __future__ import annotations

import inspect
import io
from types import SimpleNamespace

import pytest

from coursehub import fleet
from coursehub.bootstrap import host_steps
from coursehub.steps.clock import Clock, ResyncClocks
from coursehub.steps.disks import Disks, GrowDisk
from coursehub.steps.images import PurgeImages
from coursehub.steps.kernel import Kernel
from coursehub.steps.logs import TruncateLogs
from coursehub.steps.moves import MoveRoot
from coursehub.steps.preflight import Preflight
from coursehub.steps.proxy import Proxy
from coursehub.steps.report import DiskReport
from coursehub.steps.runtime import Runtime
from coursehub.steps.swap import SwapOff

PROBE_ONLY = ("cat ", "systemctl show", "systemctl list-", "systemctl is-enabled", "dpkg-query", "stat ", "date +%s",
              "df ", "du ", "ls ", "find ", "blkid", "blockdev", "head -c", "readlink")


def all_steps(s, inv):
    return [Preflight(), Proxy(s, inv), Clock(s), ResyncClocks(s), SwapOff(), Kernel(), Disks(s), GrowDisk(s),
            Runtime(s, inv), MoveRoot("docker", "/mnt/data/docker"), TruncateLogs(2**30), DiskReport(15),
            PurgeImages("containerd"), PurgeImages("docker")]


def test_each_probe_is_one_command(make_settings, lab_host, make_inventory, fake_remote):
    s = make_settings()
    host = lab_host(volumes=[{"id": "v1", "device": "/dev/vdb"}])
    inv = make_inventory(host)
    for step in all_steps(s, inv):
        remote = fake_remote(host, {"": ""})
        step.probe(remote)
        # A move that is due measures the old root in a second command (du may take a while).
        assert len(remote.commands) == (2 if isinstance(step, MoveRoot) else 1), (step.name, remote.commands)
    done = fake_remote(host, {"": '@@coursehub config\n{"data-root": "/mnt/data/docker"}\n@@exists\n'})
    MoveRoot("docker", "/mnt/data/docker").probe(done)
    assert len(done.commands) == 1


class FakeConnection:
    """What Remote needs from a Fabric connection; answers every command with empty output."""

    def __init__(self, log):
        self.log = log

    def run(self, line, **kw):
        self.log.append(line)
        return SimpleNamespace(stdout="", stderr="", exited=0)

    def sftp(self):
        raise AssertionError("a dry run uploaded a file")


def test_dry_run_sends_only_probes(monkeypatch, make_settings, lab_host, make_inventory):
    """A fresh host (every probe empty) plans a lot, and the dry run runs none of it."""
    s = make_settings(network={"proxy": "http://10.77.0.1:3142"}, hosts={"ntp_servers": ["10.77.0.1"]})
    host = lab_host(volumes=[{"id": "v1", "device": "/dev/vdb"}])
    inv = make_inventory(host)
    log: list[str] = []
    monkeypatch.setattr(fleet, "connect", lambda inv, h, timeout=10: FakeConnection(log))
    steps = [st for st in host_steps(s, inv) if st.name not in ("preflight", "disks")]  # those refuse empty facts
    result = fleet.run(steps, inv, task="bootstrap", dry_run=True, progress=io.StringIO())
    r = result.hosts["h1"]
    assert r.status == "changed" and r.changed == [] and r.error == ""
    assert set(r.plan) == {"proxy", "packages", "clock", "swap", "kernel", "runtime"}
    assert len(log) == len(steps)
    for line in log:
        assert "apt-get" not in line and "systemctl restart" not in line and "swapoff" not in line
        assert "modprobe" not in line and "sysctl -q -w" not in line and "mkfs" not in line


def test_bootstrap_steps_in_order(make_settings, make_inventory):
    names = [st.name for st in host_steps(make_settings(), make_inventory())]
    assert names == ["preflight", "proxy", "packages", "clock", "swap", "kernel", "disks", "runtime"]
    single = make_settings(topology="single", hosts={"runtime": "docker", "runtime_root": "/mnt/data/docker"},
                           kubernetes={"kubelet_root": "/mnt/data/kubelet"})
    names = [st.name for st in host_steps(single, make_inventory())]
    assert names == ["preflight", "proxy", "packages", "clock", "swap", "disks", "move-docker-root", "runtime"]
    cluster = make_settings(kubernetes={"kubelet_root": "/mnt/data/kubelet"})
    assert "move-kubelet-root" in [st.name for st in host_steps(cluster, make_inventory())]


def test_every_ops_task_documents_every_flag():
    import tasks.ops_host as ops

    for name in ops.__all__:
        t = getattr(ops, name)
        params = [p for p in inspect.signature(t.body).parameters if p != "c"]
        missing = [p for p in params if p not in t.help]
        assert not missing, f"{t.name}: no help for {missing}"
        assert t.__doc__ and t.__doc__.strip(), t.name
        assert {"hosts", "role", "dry_run"} <= set(params), t.name


def test_exec_takes_the_words_after_double_dash(monkeypatch):
    import tasks.ops_host as ops

    monkeypatch.setattr("sys.argv", ["inv", "ops.exec", "--role", "compute", "--", "df", "-h", "/"])
    assert ops._remainder() == "df -h /"
    monkeypatch.setattr("sys.argv", ["inv", "ops.exec"])
    assert ops._remainder() == ""


@pytest.mark.parametrize("to", ["relative/path", "/", ""])
def test_move_refuses_bad_targets(to):
    with pytest.raises(ValueError):
        MoveRoot("docker", to)
