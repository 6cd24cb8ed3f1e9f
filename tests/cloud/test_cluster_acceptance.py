"""Acceptance: the whole `cluster` path against a real OpenStack project.

Skipped unless OpenStack credentials are in the environment (OS_AUTH_URL, or OS_CLOUD
with a clouds.yaml) *and* COURSEHUB_CLOUD_ACCEPTANCE=1: it creates servers and volumes
that cost quota, and deletes them at the end. See tests/cloud/README.md.

It runs the admin's own commands through subprocess, in order, and checks each result:

    inv provision bootstrap hub check        build everything
    inv bootstrap                            again: every host ok, nothing changed
    inv ops.nodes / ops.cordon / ops.uncordon / ops.prepull / ops.inspect-user
    (kubectl on the head)                    nodes Ready, a default StorageClass, the LB address,
                                             and CourseHub's parsers on the real outputs
    inv provision.destroy --yes              unless COURSEHUB_CLOUD_KEEP=1
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WANTED = os.environ.get("COURSEHUB_CLOUD_ACCEPTANCE") == "1"
CREDS = bool(os.environ.get("OS_AUTH_URL") or os.environ.get("OS_CLOUD"))

pytestmark = [
    pytest.mark.cloud,
    pytest.mark.skipif(not (WANTED and CREDS),
                       reason="needs OS_AUTH_URL or OS_CLOUD, and COURSEHUB_CLOUD_ACCEPTANCE=1 (creates real servers)"),
]


def inv_cmd(*args: str, env: dict[str, str], timeout: float = 3600, check: bool = True) -> subprocess.CompletedProcess:
    """Run `inv ARGS` as an admin would, from the repository root; print its output on failure."""
    inv = Path(sys.executable).with_name("inv")
    r = subprocess.run([str(inv), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        pytest.fail(f"inv {' '.join(args)} exited {r.returncode}\n--- stdout\n{r.stdout[-6000:]}\n--- stderr\n{r.stderr[-4000:]}")
    return r


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    vars_file = os.environ.get("COURSEHUB_VARS")
    if not vars_file:
        pytest.skip("set COURSEHUB_VARS to the acceptance vars.yml (topology: cluster, your flavor, image, network)")
    e = dict(os.environ)
    e["COURSEHUB_INVENTORY"] = os.environ.get("COURSEHUB_INVENTORY") or str(tmp_path_factory.mktemp("inventory"))
    yield e
    if os.environ.get("COURSEHUB_CLOUD_KEEP") != "1":
        inv_cmd("provision.destroy", "--yes", env=e, check=False)


@pytest.fixture(scope="module")
def built(env):
    inv_cmd("provision", "bootstrap", "hub", "check", env=env, timeout=5400)
    return env


def head_kubectl(env, *args: str) -> str:
    """kubectl on the head, through the inventory's ssh_config (as the image user, with its ~/.kube/config)."""
    from coursehub import inventory

    inv = inventory.load(env["COURSEHUB_INVENTORY"])
    head = inv.head()
    r = subprocess.run(["ssh", "-F", str(inv.ssh_config), head.name, "kubectl " + " ".join(shlex.quote(a) for a in args)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cluster_is_up(built):
    from coursehub.kube import parse

    nodes = parse.parse_nodes(head_kubectl(built, "get", "nodes", "--output=json"))
    assert nodes and all(n.ready for n in nodes), [(n.name, n.conditions) for n in nodes]
    assert {n.labels.get("hub.jupyter.org/node-purpose") for n in nodes} <= {"core", "user"}
    pods = parse.parse_pods(head_kubectl(built, "get", "pods", "--all-namespaces", "--output=json"))
    assert any(p.labels.get("component") == "hub" and p.phase == "Running" for p in pods)
    classes = json.loads(head_kubectl(built, "get", "storageclass", "--output=json"))["items"]
    assert [c["metadata"]["name"] for c in classes
            if c["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"]


def test_parsers_on_real_output(built):
    from coursehub.kube import parse

    parse.parse_pdbs(head_kubectl(built, "get", "poddisruptionbudgets", "--all-namespaces", "--output=json"))
    assert head_kubectl(built, "get", "--raw=/readyz").strip() == "ok"


def test_second_bootstrap_changes_nothing(built):
    r = inv_cmd("bootstrap", env=built)
    assert " changed" not in r.stdout.split("bootstrap", 1)[-1].splitlines()[-1] or "0 changed" in r.stdout


def test_runbook_ops(built):
    out = inv_cmd("ops.nodes", env=built).stdout
    assert "NODE" in out and "STATUS" in out
    from coursehub import inventory

    worker = next(h.name for h in inventory.load(built["COURSEHUB_INVENTORY"]).hosts if not h.has("head"))
    inv_cmd("ops.cordon", "--node", worker, env=built)
    assert '"unschedulable": true' in head_kubectl(built, "get", "node", worker, "--output=json")
    inv_cmd("ops.uncordon", "--node", worker, env=built)
    inv_cmd("ops.taint", "--node", worker, env=built)
    inv_cmd("ops.untaint", "--node", worker, env=built)
    inv_cmd("ops.prepull", "--image", "registry.k8s.io/pause:3.10", env=built)
