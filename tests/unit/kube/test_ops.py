"""Runbook operations: plans from fixtures, and the commands they would send to the head."""

from __future__ import annotations

import pytest

from coursehub.kube import ops, parse
from tests.unit.kube.conftest import FakeRemote, fixture

KC = "kubectl --kubeconfig=/etc/kubernetes/admin.conf"


def nodes():
    return parse.parse_nodes(fixture("nodes.json"))


def pods():
    return parse.parse_pods(fixture("pods.json"))


def test_node_table():
    table = ops.format_table(ops.node_rows(nodes(), pods()))
    lines = table.splitlines()
    assert lines[0].split() == ["NODE", "STATUS", "PURPOSE", "PODS", "USERS", "PRESSURE", "TAINTS", "KUBELET"]
    assert lines[1].split() == ["head", "Ready", "core", "1", "0", "-",
                                "hub.jupyter.org/dedicated=core:NoSchedule,node-role.kubernetes.io/control-plane:NoSchedule",
                                "v1.33.5"]
    assert lines[2].split() == ["w1", "Ready", "user", "3", "1", "DiskPressure", "-", "v1.33.5"]
    assert lines[3].split()[:5] == ["w2", "NotReady,SchedulingDisabled", "-", "2", "1"]


def test_drain_plan_names_blocking_budgets():
    plan = ops.drain_plan("w1", pods(), parse.parse_pdbs(fixture("pdbs.json")))
    assert plan.users == ["alice"]
    assert [p.name for p in plan.evictable] == ["proxy-5b8c9d7f6-abcde", "jupyter-alice"]
    assert plan.blocker_text() == "jhub/proxy-5b8c9d7f6-abcde (PodDisruptionBudget proxy: 0 disruptions allowed)"
    plan2 = ops.drain_plan("w2", pods(), parse.parse_pdbs(fixture("pdbs.json")))
    assert plan2.users == [] and plan2.evictable == []  # a deleting user pod and a DaemonSet pod only


def drain_fact(node="w1"):
    n = next(x for x in nodes() if x.name == node)
    return {"node": n, "plan": ops.drain_plan(node, pods(), parse.parse_pdbs(fixture("pdbs.json")))}


def test_drain_stops_before_a_blocked_eviction():
    with pytest.raises(ops.OpsError, match="eviction would be refused for jhub/proxy.*--ignore-pdb"):
        ops.Drain("w1").decide(drain_fact(), FakeRemote())


def test_drain_with_ignore_pdb_and_stopping_servers():
    stopped = []
    acts = ops.Drain("w1", timeout=120, stop_servers=stopped.extend, ignore_pdb=True).decide(drain_fact(), FakeRemote())
    assert [a.command or a.label for a in acts] == [
        f"{KC} cordon w1",
        "stop through the hub API: alice",
        f"{KC} drain w1 --ignore-daemonsets --delete-emptydir-data --timeout=120s --disable-eviction"]
    r = FakeRemote([(r"get pods --all-namespaces --field-selector=spec.nodeName=w1", '{"kind": "List", "items": []}')])
    acts[1].run(r)
    assert stopped == ["alice"]


def test_cordon_and_taint_are_idempotent():
    w1, w2 = nodes()[1], nodes()[2]
    assert ops.Cordon("w2").decide(w2, FakeRemote()) == []
    assert [a.command for a in ops.Cordon("w1").decide(w1, FakeRemote())] == [f"{KC} cordon w1"]
    assert [a.command for a in ops.Cordon("w2", on=False).decide(w2, FakeRemote())] == [f"{KC} uncordon w2"]
    (t,) = ops.Taint("w1", "hub.jupyter.org/unhealthy").decide(w1, FakeRemote())
    assert t.command == f"{KC} taint nodes w1 hub.jupyter.org/unhealthy:PreferNoSchedule --overwrite"
    head = nodes()[0]
    assert ops.Taint("head", "hub.jupyter.org/dedicated", "core", "NoSchedule").decide(head, FakeRemote()) == []
    (u,) = ops.Taint("head", "hub.jupyter.org/dedicated", effect="NoSchedule", remove=True).decide(head, FakeRemote())
    assert u.command == f"{KC} taint nodes head hub.jupyter.org/dedicated:NoSchedule-"
    with pytest.raises(ops.OpsError, match="--effect"):
        ops.Taint("w1", "k", effect="Sometimes")


def test_unknown_node():
    r = FakeRemote([(r"get node nope --ignore-not-found", "")])
    with pytest.raises(ops.OpsError, match="no node 'nope'"):
        ops.Cordon("nope").probe(r)


def test_pick_claim_both_schemes():
    legacy = [{"metadata": {"name": "claim-bob-2esmith"}}]
    assert ops.pick_claim("bob.smith", legacy) == "claim-bob-2esmith"
    new = parse.claim_names("bob.smith")[0]
    assert ops.pick_claim("bob.smith", legacy + [{"metadata": {"name": new}}]) == new  # KubeSpawner 7's name first
    annotated = [{"metadata": {"name": "claim-whatever", "annotations": {"hub.jupyter.org/username": "bob.smith"}}}]
    assert ops.pick_claim("bob.smith", legacy + annotated) == "claim-whatever"
    assert ops.pick_claim("carol", legacy) is None


def test_inspect_user_plan(settings):
    step = ops.InspectUser(settings, "alice", "jhub", "ssh -F inventory/ssh_config head ")
    acts = step.decide({"claim": "claim-alice", "pod": []}, FakeRemote())
    assert [a.label or a.command for a in acts] == [
        "kubectl apply pod jhub/inspect-alice",
        f"{KC} wait --for=condition=Ready pod/inspect-alice --namespace=jhub --timeout=300s",
        f"open a shell: ssh -F inventory/ssh_config head sudo {KC} exec --stdin --tty --namespace=jhub inspect-alice -- /bin/bash"]
    with pytest.raises(ops.OpsError, match="no home volume for 'carol'"):
        ops.InspectUser(settings, "carol", "jhub").decide({"claim": None, "pod": []}, FakeRemote())


def test_kill_stuck_pod(inv, monkeypatch):
    found = ops.find_user_pod("alice", pods())
    assert found is not None and found.name == "jupyter-alice"
    assert ops.find_user_pod("bob.smith", pods()).name == "jupyter-bob-2esmith"
    step = ops.KillStuckPod(inv, "jhub", username="alice")
    (a,) = step.decide(found, FakeRemote())
    assert a.label == f"{KC} delete pod jupyter-alice --namespace=jhub --force --grace-period=0"
    calls = {}
    monkeypatch.setattr(ops, "kill_on_node", lambda i, node, ids: calls.setdefault(node, ids) and [4127])
    r = FakeRemote([(r"delete pod jupyter-alice", "pod \"jupyter-alice\" force deleted")])
    a.run(r)
    assert calls == {"w1": ["c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789"]}
    assert "killed 1 process(es) left on w1" in r.kept[0]


def test_prepull_and_secret_plans(settings):
    p = ops.Prepull(settings, "quay.io/jupyter/scipy-notebook:2025-10-20", "jhub")
    assert p.ds == "prepull-scipy-notebook-2025-10-20"
    acts = p.decide(None, FakeRemote())
    assert acts[1].command == (f"{KC} rollout status daemonset/prepull-scipy-notebook-2025-10-20 --namespace=jhub "
                               "--timeout=1800s")
    s = ops.SharedSecret(settings, "ass-rsa-private", "jhub", {"ass_rsa.private": b"KEY"})
    (a,) = s.decide(False, FakeRemote())
    assert a.secret and a.why == "missing"
    r = FakeRemote([(r"apply --filename=-", "")])
    a.run(r)
    (line, data), = r.stdin_runs
    assert "S0VZ" in data and "S0VZ" not in line  # base64 of KEY only on stdin
