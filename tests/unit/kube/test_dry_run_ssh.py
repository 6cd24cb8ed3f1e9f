"""Every phase's probes run for real over SSH (dry run: read-only), and the plan comes out.

Two real sshd hosts on loopback stand in for a fresh head and worker. Nothing is installed,
so each probe meets a host without Kubernetes, exactly as on a new cloud server: the plan
must say what it would do, host by host, and no probe may fail or change anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coursehub import fleet, inventory
from coursehub.kube.phases import bootstrap_phases, run_phases
from tests.support import sshd
from tests.unit.kube.conftest import with_

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not Path(sshd.SSHD).exists(), reason="needs root and sshd")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("kube-dry")
    client = root / "id_ed25519"
    pub = sshd.keygen(client, "coursehub-kube-dry")
    servers = [sshd.start(root / "sshd", name, f"127.0.0.{n}", pub) for name, n in (("head", 51), ("w1", 52))]
    yield client, servers
    fleet.close_all()
    for s in servers:
        s.stop()


def test_dry_run_plans_the_whole_cluster(hosts, tmp_path, settings):
    client, servers = hosts
    fleet.close_all()
    hs = [inventory.Host(name=s.name, address=s.address, port=s.port, user="root",
                         roles=["head"] if s.name == "head" else ["compute"], host_keys=[s.host_key_pub]) for s in servers]
    inv = inventory.Inventory(dir=tmp_path / "inventory", hosts=hs, identity_file=str(client))
    inventory.write(inv)
    s = with_(settings, storage={"backend": "none"}, kubernetes={"lb_addresses": ["10.0.0.100-10.0.0.110"]})
    results = run_phases(bootstrap_phases(s, inv), inv, task="bootstrap", dry_run=True, parallel=2)
    assert [name for name, _ in results] == ["kube-packages", "control-plane", "join", "cluster-addons"]
    for name, r in results:
        for host, hr in r.hosts.items():
            assert hr.status != fleet.FAILED and hr.status != fleet.UNREACHABLE, (name, host, hr.error)
            assert hr.changed == []  # a dry run changes nothing
    plans = {name: r.hosts for name, r in results}
    head_cp = plans["control-plane"]["head"].plan
    assert any("kubeadm init --config=/etc/coursehub/kubeadm-config.yaml" in line for line in head_cp["control-plane"])
    assert any("install helm v3.19.0" in line for line in head_cp["helm"])
    assert any("calico-v3.30.3.yaml" in line for line in head_cp["cni"])
    assert any("kubeadm join --config=/dev/stdin" in line for line in plans["join"]["w1"].plan["join"])
    addons = plans["cluster-addons"]["head"].plan
    assert any("helm upgrade --install metallb" in line for line in addons["helm metallb"])
    assert not Path("/etc/coursehub/kubeadm-config.yaml").exists()  # a dry run writes nothing
