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
    from tasks.bootstrap import _cluster_phases, _run_cluster

    s = settings()
    _run_cluster(s, _cluster_phases(s, "", ""), 0, False)
    got = by_phase(cluster)
    assert list(got)[0] == "kube-packages" and got["kube-packages"] == ["c-1", "c-2", "c-3"]
    assert got["control-plane"] == ["c-1"]
    assert got["join"] == ["c-2", "c-3"]


def test_a_new_worker_alone_gets_packages_and_joins(cluster):
    from tasks._common import settings
    from tasks.bootstrap import _cluster_phases, _run_cluster

    s = settings()
    _run_cluster(s, _cluster_phases(s, "c-3", ""), 0, False)
    got = by_phase(cluster)
    assert got["kube-packages"] == ["c-3"] and got["join"] == ["c-3"]
    assert "control-plane" not in got


def test_a_bad_cluster_setting_stops_before_any_host_is_touched(cluster, tmp_path, vars_dict):
    """MetalLB without addresses: one line, exit code 2, no host contacted (the hosts here do not exist)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    vars_dict.update(topology="cluster")
    vars_dict["kubernetes"]["load_balancer"] = "metallb"
    vars_dict["kubernetes"]["lb_addresses"] = []
    (tmp_path / "vars.yml").write_text(yaml.safe_dump(vars_dict))
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, "-m", "invoke", "bootstrap"], cwd=root, env=dict(os.environ),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.splitlines() == ["bootstrap: kubernetes.lb_addresses is empty: MetalLB needs addresses to hand "
                                     "out (CIDRs or a.b.c.d-a.b.c.e ranges the cloud lets the nodes use)"]
    assert "Traceback" not in r.stderr and not (tmp_path / "inv" / "runs").exists()
