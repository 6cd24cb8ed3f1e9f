"""The probe parsers on hand-written fixtures of the pinned versions' documented output (see fixtures/README.md)."""

import pytest

from coursehub.kube import parse
from tests.unit.kube.conftest import fixture


def test_nodes():
    nodes = parse.parse_nodes(fixture("nodes.json"))
    assert [n.name for n in nodes] == ["head", "w1", "w2"]
    head, w1, w2 = nodes
    assert head.ready and not head.unschedulable and head.roles == ["control-plane"]
    assert [t.text() for t in head.taints] == ["hub.jupyter.org/dedicated=core:NoSchedule",
                                               "node-role.kubernetes.io/control-plane:NoSchedule"]
    assert head.internal_ip == "10.0.0.5" and head.kubelet_version == "v1.33.5"
    assert w1.ready and w1.pressure == ["DiskPressure"]
    assert not w2.ready and w2.unschedulable and w2.pressure == []  # Unknown is not True
    assert w2.conditions["Ready"] == "Unknown"


def test_one_node_and_empty():
    assert [n.name for n in parse.parse_nodes(fixture("node-w1.json"))] == ["w1"]
    assert parse.parse_nodes("") == []  # --ignore-not-found prints nothing
    with pytest.raises(parse.ParseError, match="not JSON"):
        parse.parse_nodes("error: the server doesn't have a resource type")


def test_pods():
    pods = parse.parse_pods(fixture("pods.json"))
    by = {p.name: p for p in pods}
    assert by["calico-node-7xk2p"].is_daemonset and by["calico-node-7xk2p"].node == "w1"
    alice = by["jupyter-alice"]
    assert alice.is_user_server and alice.username == "alice" and alice.claims == ["claim-alice", "coursehub-shared"]
    assert parse.container_id(alice.container_ids[0]) == "c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
    assert by["jupyter-bob-2esmith"].deleting and by["jupyter-bob-2esmith"].username == "bob.smith"
    assert by["coredns-674b8bbfcf-x7k2m"].node == ""  # Pending, not scheduled
    assert by["hub-6d9f8b7c5d-q2w3e"].claims == ["hub-db-dir"]


def test_pdbs_and_blockers():
    pdbs = parse.parse_pdbs(fixture("pdbs.json"))
    assert [(b.name, b.disruptions_allowed) for b in pdbs] == [
        ("hub", 1), ("proxy", 0), ("user-scheduler", 1), ("calico-kube-controllers", 1)]
    assert pdbs[2].selector.matches({"component": "user-scheduler"})
    assert not pdbs[2].selector.matches({"component": "hub"})
    pods = parse.parse_pods(fixture("pods.json"))
    blockers = parse.pdb_blockers([p for p in pods if p.node == "w1"], pdbs)
    assert [(p.name, b.name) for p, b in blockers] == [("proxy-5b8c9d7f6-abcde", "proxy")]


def test_selector_expressions():
    s = parse.Selector({}, [{"key": "a", "operator": "NotIn", "values": ["x"]}, {"key": "b", "operator": "Exists"},
                            {"key": "c", "operator": "DoesNotExist"}])
    assert s.matches({"a": "y", "b": "1"})
    assert not s.matches({"a": "x", "b": "1"})
    assert not s.matches({"b": "1", "c": "2"})
    assert parse.Selector().matches({"anything": "1"})  # an empty selector selects all


def test_join_command():
    j = parse.parse_join_command(fixture("join-command.txt"))
    assert j.endpoint == "10.0.0.5:6443"
    assert j.token == "k3x9qz.7f2m1p0w8e4r6t5y" and j.token_id == "k3x9qz"
    assert j.ca_hashes == ("sha256:4b7c1d9e2f3a0b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c",)
    eq = parse.parse_join_command("kubeadm join h:6443 --token=abcdef.0123456789abcdef "
                                  "--discovery-token-ca-cert-hash=sha256:" + "1" * 64)
    assert eq.token == "abcdef.0123456789abcdef"
    for bad in ("", "kubeadm join h:6443 --token nope --discovery-token-ca-cert-hash sha256:" + "1" * 64,
                "kubeadm join h:6443 --token abcdef.0123456789abcdef",
                "kubeadm join h --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:" + "1" * 64):
        with pytest.raises(parse.ParseError):
            parse.parse_join_command(bad)


def test_token_list_stream_of_objects():
    toks = parse.parse_token_list(fixture("token-list.json"))
    assert [(t.id, t.description) for t in toks] == [("abcdef", parse.KUBEADM_INIT_TOKEN), ("k3x9qz", "coursehub join w2")]
    assert toks[0].expires == "2026-11-27T09:14:05Z" and toks[0].usages == ("authentication", "signing")
    assert parse.parse_token_list("") == []


def test_madison_and_pick():
    m = parse.parse_madison(fixture("madison.txt"))
    assert m["kubeadm"] == ["1.33.5-1.1", "1.33.4-1.1", "1.33.0-1.1"]
    assert parse.pick_version(m["kubeadm"], "1.33.5") == "1.33.5-1.1"
    assert parse.pick_version(m["kubeadm"], "1.33.6") is None
    assert parse.pick_version(["1.33.5-1.1", "1.33.5-1.10", "1.33.5-1.2"], "1.33.5") == "1.33.5-1.10"
    assert parse.upstream("1:1.33.5-1.1") == "1.33.5" and parse.upstream("1.33.5") == "1.33.5"


def test_dpkg_and_holds():
    d = parse.parse_dpkg(fixture("dpkg-query.txt"))
    assert d["kubeadm"].version == "1.33.4-1.1" and d["kubeadm"].ok
    assert not d["kubelet"].ok  # rc: removed, config left
    # found on the lab's hosts: a held package reads "hi", and is installed
    assert parse.Installed("1.33.5-1.1", "hi").ok and not parse.Installed("", "un").ok
    assert parse.parse_holds(fixture("showhold.txt")) == {"kubeadm", "kubectl"}


def test_helm_list_and_index():
    rels = parse.parse_helm_list(fixture("helm-list.json"))
    assert [(r.name, r.namespace, r.chart, r.status) for r in rels] == [
        ("metallb", "metallb-system", "metallb-0.15.2", "deployed"),
        ("nfs-provisioner", "kube-system", "nfs-subdir-external-provisioner-4.0.18", "failed")]
    assert parse.parse_helm_list("") == []
    url, digest = parse.chart_url(fixture("helm-index.yaml"), "metallb", "0.15.2", "https://metallb.github.io/metallb")
    assert url == "https://github.com/metallb/metallb/releases/download/metallb-chart-0.15.2/metallb-0.15.2.tgz"
    assert digest.startswith("4f0fc313")
    rel, _ = parse.chart_url(fixture("helm-index.yaml"), "metallb", "0.15.0", "https://metallb.github.io/metallb")
    assert rel == "https://metallb.github.io/metallb/metallb-0.15.0.tgz"  # relative URLs resolve against the repo
    with pytest.raises(parse.ParseError, match="no metallb 9.9.9"):
        parse.chart_url(fixture("helm-index.yaml"), "metallb", "9.9.9", "https://metallb.github.io/metallb")


def test_sections_and_process_tree():
    assert parse.sections(f"a\n{parse.SECTION}\nb\nc\n{parse.SECTION}\n") == ["a", "b\nc", ""]
    assert parse.process_tree(fixture("ps.txt"), 4127) == [4230, 4190, 4191, 4127]
    assert parse.process_tree(fixture("ps.txt"), 9999) == [9999]


@pytest.mark.parametrize("name,safe,legacy", [
    ("alice", "alice", "alice"),
    ("bob.smith", "bob-smith---", "bob-2esmith"),
    ("Ünï", "n---", "-c3-9cn-c3-af"),
    ("a--b", "a-b---", "a-2d-2db"),
])
def test_kubespawner_slugs(name, safe, legacy):
    assert parse.escape_slug(name) == legacy
    got = parse.safe_slug(name)
    assert got == safe if not safe.endswith("---") else (got.startswith(safe) and len(got) == len(safe) + 8)


def test_slugs_agree_with_the_hub_archive_module():
    from coursehub.hub import archive

    assert archive.safe_slug is parse.safe_slug and archive.escape_slug is parse.escape_slug  # one implementation
    for name in ("alice", "bob.smith", "Ünï", "a--b", "x" * 40, "1abc", "Alice", "a_b", "x" * 70):
        assert parse.safe_slug(name) == archive.safe_slug(name), name
        assert parse.escape_slug(name) == archive.escape_slug(name), name
    assert parse.safe_slug("x" * 40) == "x" * 40  # a valid name up to 63 characters is kept as is


def test_claim_names_both_schemes():
    assert parse.claim_names("alice") == ["claim-alice"]
    new, old = parse.claim_names("bob.smith")
    assert new.startswith("claim-bob-smith---") and old == "claim-bob-2esmith"
    assert parse.user_pod_names("bob.smith")[1] == "jupyter-bob-2esmith"
