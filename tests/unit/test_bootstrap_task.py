"""`inv bootstrap` with topology cluster: which hosts each Kubernetes phase runs on.

The phases themselves run kubeadm and kubectl, which cannot exist on these machines;
here only `run_phases` (the one call that would reach the hosts) is replaced, to
record the phases the task hands it. The phases are the real `bootstrap_phases`.
"""

from __future__ import annotations

import pytest
import yaml

from coursehub import inventory
from coursehub.inventory import Host, Inventory

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0mRs1Wq0p3vA8tq3w3V7y0Ui2vS1cK0y8vYbqR2mE"


@pytest.fixture
def cluster(tmp_path, monkeypatch, vars_dict):
    data = vars_dict
    data["topology"] = "cluster"
    data["storage"]["backend"] = "none"
    data["kubernetes"]["load_balancer"] = "none"
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(data))
    inv = Inventory(dir=tmp_path / "inv", identity_file="", hosts=[
        Host("c-1", "10.0.0.11", roles=["head"], host_keys=[KEY]),
        Host("c-2", "10.0.0.12", host_keys=[KEY]),
        Host("c-3", "10.0.0.13", host_keys=[KEY]),
    ])
    inventory.write(inv)
    monkeypatch.setenv("COURSEHUB_VARS", str(tmp_path / "vars.yml"))
    monkeypatch.setenv("COURSEHUB_INVENTORY", str(inv.dir))
    seen: list = []
    import coursehub.kube.phases as phases

    monkeypatch.setattr(phases, "run_phases", lambda ph, inv, **kw: seen.extend(ph) or [])
    return seen


def by_phase(seen):
    return {name: [h.name for h in hosts] for name, hosts, _ in seen}


def test_all_hosts_get_every_phase_in_order(cluster):
    from tasks._common import settings
    from tasks.bootstrap import _cluster

    _cluster(settings(), "", "", 0, False)
    got = by_phase(cluster)
    assert list(got)[0] == "kube-packages" and got["kube-packages"] == ["c-1", "c-2", "c-3"]
    assert got["control-plane"] == ["c-1"]
    assert got["join"] == ["c-2", "c-3"]


def test_a_new_worker_alone_gets_packages_and_joins(cluster):
    from tasks._common import settings
    from tasks.bootstrap import _cluster

    _cluster(settings(), "c-3", "", 0, False)
    got = by_phase(cluster)
    assert got["kube-packages"] == ["c-3"] and got["join"] == ["c-3"]
    assert "control-plane" not in got
