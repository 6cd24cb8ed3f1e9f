"""The Kubernetes steps' decisions on canned probe output, and their apply paths on fake Remotes.

A FakeRemote answers only the commands a test scripts; any other command fails the
test, so a plan that would touch something unexpected is caught.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from coursehub import pins, secrets
from coursehub.inventory import Host
from coursehub.kube import parse, pgp
from coursehub.kube.phases import bootstrap_phases
from coursehub.steps import FileFact, FileSpec, kube_addons, kube_common, kube_control, kube_join, kube_packages
from tests.unit.kube.conftest import FakeRemote, fixture, with_

KEY_A = "AC07CB2B87886C213B96C22FD8AD3DDF29A68862"
S = parse.SECTION


def packages_probe(key: str = "missing", sources: str = "missing", dpkg: str = "", holds: str = "") -> str:
    return f"{key}\n{S}\n{sources}\n{S}\n{dpkg}\n{S}\n{holds}\n"


# ----------------------------------------------------------------------------- packages
def test_fresh_host_plans_key_source_install_hold(settings):
    step = kube_packages.KubePackages(settings)
    fact = kube_packages.parse_probe(packages_probe())
    acts = step.decide(fact, FakeRemote())
    assert [a.why for a in acts] == [
        "no signing key", "missing",
        "kubeadm missing, kubelet missing, kubectl missing; want 1.33.5",
        "not held: kubeadm kubelet kubectl"]
    assert acts[1].label.startswith("write /etc/apt/sources.list.d/kubernetes.list (0644")
    assert acts[3].command == "apt-mark hold kubeadm kubelet kubectl"


def test_converged_host_plans_nothing(settings):
    step = kube_packages.KubePackages(settings)
    keyring = base64.b64encode(pgp.dearmor(fixture("test-key-a.asc"))).decode()
    step.repo = pins.AptRepo(minor="1.33", fingerprint=KEY_A)
    spec = step.sources
    probe = packages_probe(keyring, f"{spec.sha256} 644 root root",
                           "kubeadm\t1.33.5-1.1\tii \nkubelet\t1.33.5-1.1\tii \nkubectl\t1.33.5-1.1\tii \n",
                           "kubeadm\nkubelet\nkubectl\n")
    assert step.decide(kube_packages.parse_probe(probe), FakeRemote()) == []


def test_wrong_key_patch_upgrade_and_unheld(settings):
    step = kube_packages.KubePackages(settings)
    keyring = base64.b64encode(pgp.dearmor(fixture("test-keys-a-and-b.asc"))).decode()
    fact = kube_packages.parse_probe(packages_probe(keyring, f"{step.sources.sha256} 644 root root",
                                                    fixture("dpkg-query.txt"), fixture("showhold.txt")))
    whys = [a.why for a in step.decide(fact, FakeRemote())]
    assert whys[0].startswith(f"keyring holds {KEY_A}, 44B3DA12") and whys[0].endswith("want DE15B14486CD377B9E876E1A234654DA9A296436")
    assert whys[1] == "kubeadm 1.33.4, kubelet missing; want 1.33.5"  # kubelet is only 'rc' (removed)
    assert whys[2] == "not held: kubelet"


def test_minor_change_is_refused(settings):
    step = kube_packages.KubePackages(settings)
    fact = kube_packages.parse_probe(packages_probe(dpkg="kubeadm\t1.32.9-1.1\tii \n"))
    with pytest.raises(kube_packages.PackagesUnavailable, match="minor-version change is a cluster upgrade"):
        step.decide(fact, FakeRemote())


def test_a_foreign_kubectl_is_replaced_not_refused(settings):
    # found by the dry run over SSH: this machine has Google Cloud SDK's `kubectl` package, version 528.0.0
    step = kube_packages.KubePackages(settings)
    fact = kube_packages.parse_probe(packages_probe(dpkg="kubectl\t1:528.0.0-0\tii \n"))
    whys = [a.why for a in step.decide(fact, FakeRemote())]
    assert "kubeadm missing, kubelet missing, kubectl 528.0.0; want 1.33.5" in whys
    assert kube_packages.is_minor_change("kubelet", "1.32.1-1.1", "1.33.5")
    assert not kube_packages.is_minor_change("kubectl", "1.32.1-1.1", "1.33.5")


def test_install_selects_the_pinned_version(settings):
    step = kube_packages.KubePackages(settings)
    r = FakeRemote([(r"apt-get -y -q .* update -o", "Hit:1 https://pkgs.k8s.io/core:/stable:/v1.33/deb  InRelease\n"),
                    (r"^apt-cache madison", fixture("madison.txt")),
                    (r"apt-get -y -q .* install", "Setting up kubeadm (1.33.5-1.1) ...\n")])
    step._install_packages(r)
    install = r.commands[-1]
    assert "install --no-install-recommends --allow-change-held-packages --allow-downgrades kubeadm=1.33.5-1.1 kubelet=1.33.5-1.1 kubectl=1.33.5-1.1" in install
    assert "DEBIAN_FRONTEND=noninteractive" in install  # through the shared apt helper


def test_offline_install_fails_with_one_clear_line(settings):
    step = kube_packages.KubePackages(settings)
    r = FakeRemote([(r"update -o", fixture("apt-update-offline.txt")), (r"^apt-cache madison", "")])
    with pytest.raises(kube_packages.PackagesUnavailable) as e:
        step._install_packages(r)
    msg = str(e.value)
    assert msg == ("kubeadm, kubelet, kubectl 1.33.5 not available from https://pkgs.k8s.io/core:/stable:/v1.33/deb/: "
                   "apt could not download the repository index (Err:1 https://pkgs.k8s.io/core:/stable:/v1.33/deb  InRelease)")
    assert not any("install" in c for c in r.commands)


def test_version_not_offered(settings):
    msg = kube_packages.unavailable_message(["kubeadm"], "1.33.99", pins.kubernetes_repo("1.33.99"), "Hit:1 x\n", 0)
    assert msg.endswith("the repository does not offer 1.33.99 (check kubernetes.version in vars.yml)")


def test_helm_step(settings):
    step = kube_packages.Helm(settings)
    assert step.decide("v3.19.0", FakeRemote()) == []
    (a,) = step.decide("v3.12.0", FakeRemote())
    assert a.why == "v3.12.0, want v3.19.0" and "a7f81ce08007" in a.label
    unknown = kube_packages.Helm(with_(settings, kubernetes={"helm_version": "3.99.1"}))
    with pytest.raises(pins.PinError, match="helm 3.99.1: no sha256 is pinned"):
        unknown.decide("", FakeRemote())


# ----------------------------------------------------------------------------- control plane
HEAD = Host(name="head", address="10.0.0.5", user="ubuntu", roles=["head"])


def control_probe(ready="not-ready", manifests="absent", config="missing", tokens=""):
    return f"{ready}\n{S}\n{manifests}\n{S}\n{config}\n{S}\n{tokens}\n"


def test_init_only_when_the_api_is_silent_and_nothing_exists(settings):
    step = kube_control.ControlPlane(settings, HEAD, True)
    acts = step.decide(kube_control.parse_probe(control_probe()), FakeRemote())
    assert [a.label or a.command for a in acts][1:] == [
        "kubeadm init --config=/etc/coursehub/kubeadm-config.yaml",
        "kubeadm token delete <kubeadm init's default token>"]
    assert acts[0].label.startswith("write /etc/coursehub/kubeadm-config.yaml (0600")
    assert acts[1].command == "kubeadm init --config=/etc/coursehub/kubeadm-config.yaml"


def test_initialised_head_is_never_reinitialised(settings):
    step = kube_control.ControlPlane(settings, HEAD, True)
    cfg = f"{step.config.sha256} 600 root root"
    assert step.decide(kube_control.parse_probe(control_probe("ok", "present", cfg)), FakeRemote()) == []
    # the init token still there: delete it; a config drift is only recorded
    acts = step.decide(kube_control.parse_probe(control_probe("ok", "present", "0" * 64 + " 600 root root",
                                                              fixture("token-list.json"))), FakeRemote())
    assert "recorded" in acts[0].why
    assert [a.command for a in acts[1:]] == ["kubeadm token delete abcdef"]


def test_manifests_without_api_is_reported_not_touched(settings):
    step = kube_control.ControlPlane(settings, HEAD, True)
    with pytest.raises(kube_control.ControlPlaneError, match="will not run kubeadm init again"):
        step.decide(kube_control.parse_probe(control_probe("not-ready", "present")), FakeRemote())


def test_admin_kubeconfig():
    step = kube_control.AdminKubeconfig("ubuntu")
    same = kube_control.KubeconfigFact("/home/ubuntu", "ab" * 32, FileFact("ab" * 32, "600", "ubuntu", "ubuntu"))
    assert step.decide(same, FakeRemote()) == []
    (a,) = step.decide(kube_control.KubeconfigFact("/home/ubuntu", "ab" * 32, FileFact(None)), FakeRemote())
    assert a.command == ("install -d -m 0700 -o ubuntu -g $(id -gn ubuntu) /home/ubuntu/.kube && "
                         "install -m 0600 -o ubuntu -g $(id -gn ubuntu) /etc/kubernetes/admin.conf /home/ubuntu/.kube/config")
    (b,) = step.decide(kube_control.KubeconfigFact("/home/ubuntu", "ab" * 32, FileFact("ab" * 32, "644", "root", "root")),
                       FakeRemote())
    assert b.why == "mode 644 owner root"
    assert step.decide(kube_control.KubeconfigFact("/home/ubuntu", None, FileFact(None)), FakeRemote()) == []


def test_node_roles(settings, inv):
    wanted = kube_control.wanted_roles(settings, inv)
    acts = kube_control.role_actions(parse.parse_nodes(fixture("nodes.json")), wanted)
    assert [a.command for a in acts] == [
        "kubectl --kubeconfig=/etc/kubernetes/admin.conf taint nodes head node-role.kubernetes.io/control-plane:NoSchedule-",
        "kubectl --kubeconfig=/etc/kubernetes/admin.conf label nodes w2 hub.jupyter.org/node-purpose=user --overwrite"]
    s = with_(settings, kubernetes={"dedicated_control_plane": False})
    acts = kube_control.role_actions(parse.parse_nodes(fixture("nodes.json")), kube_control.wanted_roles(s, inv))
    assert acts[0].command.endswith("taint nodes head hub.jupyter.org/dedicated:NoSchedule-")


# ----------------------------------------------------------------------------- join
def test_join_decisions():
    def fn(r):
        return None

    sock = "unix:///run/containerd/containerd.sock"
    assert kube_join.join_actions(kube_join.JoinFact(True, True), "w1", fn, sock) == []
    (j,) = kube_join.join_actions(kube_join.JoinFact(False, False), "w1", fn, sock)
    assert j.why == "the API has no node w1" and j.secret and "fresh 15m token" in j.label
    reset, j2 = kube_join.join_actions(kube_join.JoinFact(False, True), "w1", fn, sock)
    assert reset.command == "kubeadm reset --force --cri-socket=unix:///run/containerd/containerd.sock"
    assert "left by an earlier join" in reset.why
    (pending,) = kube_join.join_actions(kube_join.JoinFact(None, False, "cannot reach the head: down"), "w1", fn, sock)
    assert pending.why == "not registered (cannot reach the head: down)"


def test_join_sends_the_token_through_stdin_only(settings, inv, monkeypatch):
    head = FakeRemote([(r"kubeadm token create --ttl=15m '--description=coursehub join w1' --print-join-command",
                        fixture("join-command.txt")),
                       (r"^kubeadm token delete k3x9qz$", ""),
                       (r"get node w1", fixture("node-w1.json"))])
    worker = FakeRemote([(r"^kubeadm join --config=/dev/stdin$", "This node has joined the cluster")],
                        host=inv.get("w1"))
    monkeypatch.setattr(kube_join, "head_remote", lambda i: head)
    kube_join.Join(settings, inv)._join(worker)
    (line, data), = worker.stdin_runs
    token = "k3x9qz.7f2m1p0w8e4r6t5y"
    assert line == "kubeadm join --config=/dev/stdin" and token in data
    assert all(token not in c for c in worker.commands + head.commands[1:])
    assert head.commands[-2] == "kubeadm token delete k3x9qz"  # deleted right after the join
    assert secrets.KNOWN(f"token {token}") == "token ***"  # and hidden from every report


def test_failed_join_still_deletes_the_token(settings, inv, monkeypatch):
    from coursehub.fleet import CommandFailed

    head = FakeRemote([(r"token create", fixture("join-command.txt")), (r"token delete k3x9qz", "")])
    worker = FakeRemote([(r"kubeadm join", "[preflight] error", 1)], host=inv.get("w1"))
    monkeypatch.setattr(kube_join, "head_remote", lambda i: head)
    with pytest.raises(CommandFailed):
        kube_join.Join(settings, inv)._join(worker)
    assert head.commands[-1] == "kubeadm token delete k3x9qz"


def test_join_probe_asks_the_api(settings, inv, monkeypatch):
    head = FakeRemote([(r"get node w1 --ignore-not-found", "")])
    monkeypatch.setattr(kube_join, "head_remote", lambda i: head)
    worker = FakeRemote([(r"test -f /etc/kubernetes/kubelet.conf", "yes\n")], host=inv.get("w1"))
    fact = kube_join.Join(settings, inv).probe(worker)
    assert fact.registered is False and fact.leftovers is True


# ----------------------------------------------------------------------------- manifests and charts
def test_manifest_step(settings):
    text = render_pool(settings)
    step = kube_common.Manifest("metallb-pool", text)
    assert step.expected == ["ipaddresspool/coursehub", "l2advertisement/coursehub"]
    ok = {"file": FileFact(step.spec.sha256, "600", "root", "root"),
          "existing": "ipaddresspool.metallb.io/coursehub\nl2advertisement.metallb.io/coursehub\n"}
    assert step.decide(ok, FakeRemote()) == []
    gone = dict(ok, existing="ipaddresspool.metallb.io/coursehub\n")
    (a,) = step.decide(gone, FakeRemote())
    assert a.why == "missing: l2advertisement/coursehub" and "--server-side" in a.command


def render_pool(settings):
    from coursehub.kube import render

    return render.metallb_pool(with_(settings, kubernetes={"lb_addresses": ["10.0.0.100-10.0.0.110"]}))


def test_helm_release_step(settings, tmp_path):
    chart = pins.chart("metallb-chart", {})
    step = kube_common.HelmRelease("metallb", "metallb-system", chart, "crds:\n  enabled: true\n", tmp_path)
    rels = parse.parse_helm_list(fixture("helm-list.json"))
    ok = {"values": FileFact(step.values.sha256, "600", "root", "root"), "chart": FileFact(chart.sha256), "releases": rels}
    assert step.decide(ok, FakeRemote()) == []
    acts = step.decide(dict(ok, chart=FileFact(None), values=FileFact(None)), FakeRemote())
    assert [a.why for a in acts] == ["chart metallb 0.15.2 not on the head", "missing", "values changed"]
    assert acts[-1].command.startswith("helm --kubeconfig=/etc/kubernetes/admin.conf upgrade --install metallb "
                                       "/var/lib/coursehub/charts/metallb-0.15.2.tgz")
    failed = kube_common.HelmRelease("nfs-provisioner", "kube-system", pins.chart("nfs-subdir-chart", {"nfs-subdir-chart": "1" * 64}),
                                     "x: 1\n", tmp_path)
    acts = failed.decide({"values": FileFact(failed.values.sha256, "600", "root", "root"), "chart": FileFact("1" * 64),
                          "releases": rels}, FakeRemote())
    assert [a.why for a in acts] == ["status failed"]
    with pytest.raises(pins.PinError, match="nfs-subdir-chart"):
        kube_common.HelmRelease("n", "kube-system", pins.chart("nfs-subdir-chart", {}), "x: 1\n").decide(ok, FakeRemote())


def test_cni_step(settings, tmp_path):
    step = kube_addons.Cni(settings, tmp_path)
    sha = pins.CNI["calico"].sha256
    assert step.decide({"file": FileFact(sha), "daemonset": True}, FakeRemote()) == []
    acts = step.decide({"file": FileFact(None), "daemonset": False}, FakeRemote())
    assert [a.label or a.command for a in acts] == [
        "upload verified calico-v3.30.3.yaml (sha256 9382d2b27a76...)",
        "kubectl apply --server-side /var/lib/coursehub/manifests/calico-v3.30.3.yaml",
        "kubectl --kubeconfig=/etc/kubernetes/admin.conf rollout status daemonset/calico-node --namespace=kube-system --timeout=600s"]


def test_cloud_config_needs_the_credentials_file(settings, tmp_path):
    step = kube_addons.CloudConfig(settings, tmp_path)
    with pytest.raises(kube_addons.AddonError, match="cloud.conf is missing"):
        step.decide("", FakeRemote())
    text = "[Global]\nauth-url = https://keystone.example:5000/v3\napplication-credential-secret = v3ry-s3cret\n"
    (tmp_path / "cloud.conf").write_text(text)
    (a,) = step.decide("", FakeRemote())
    assert a.secret and "stdin" in a.label
    assert step.decide(hashlib.sha256(text.encode()).hexdigest(), FakeRemote()) == []
    assert secrets.KNOWN("x v3ry-s3cret y") == "x *** y"
    r = FakeRemote([(r"apply --filename=-", "secret/cloud-config serverside-applied")])
    a.run(r)
    (line, data), = r.stdin_runs
    assert "v3ry-s3cret" in data and "v3ry-s3cret" not in line


def test_nfs_export(settings, inv, monkeypatch):
    monkeypatch.setattr(kube_addons, "head_remote", lambda i: FakeRemote([(r"get nodes", fixture("nodes.json"))]))
    step = kube_addons.NfsExport(settings, inv)
    text = step.exports_text(step.clients())
    assert text.splitlines()[1] == ("/srv/coursehub 10.0.0.5(rw,sync,no_subtree_check,no_root_squash) "
                                    "10.0.0.6(rw,sync,no_subtree_check,no_root_squash) 10.0.0.7(rw,sync,no_subtree_check,no_root_squash)")
    assert "*" not in text and "777" not in text


# ----------------------------------------------------------------------------- phases
def test_phases_default_cinder_metallb(settings, inv):
    s = with_(settings, kubernetes={"lb_addresses": ["10.0.0.100-10.0.0.110"]})
    phases = bootstrap_phases(s, inv)
    assert [(n, [h.name for h in hs], [st.name for st in steps]) for n, hs, steps in phases] == [
        ("kube-packages", ["head", "w1", "w2"], ["kube-packages"]),
        ("control-plane", ["head"], ["helm", "control-plane", "admin-kubeconfig", "cni"]),
        ("join", ["w1", "w2"], ["join"]),
        ("cluster-addons", ["head"], ["node-roles", "cloud-config", "helm cinder-csi", "manifest storageclass-cinder",
                                      "helm metallb", "manifest metallb-pool"]),
    ]


def test_phases_nfs_octavia_single_node(settings, tmp_path):
    from coursehub.inventory import Inventory

    one = Inventory(dir=tmp_path, hosts=[Host(name="solo", address="10.0.0.9", roles=["head"])])
    s = with_(settings, storage={"backend": "nfs"}, kubernetes={"load_balancer": "octavia"})
    phases = bootstrap_phases(s, one)
    assert [n for n, _, _ in phases] == ["kube-packages", "control-plane", "storage-solo", "cluster-addons"]
    assert [st.name for st in phases[0][2]] == ["kube-packages", "nfs-client"]
    assert [st.name for st in phases[-1][2]] == ["node-roles", "helm nfs-provisioner", "cloud-config", "helm openstack-ccm"]


def test_rook_is_refused_clearly(settings, inv):
    with pytest.raises(kube_addons.AddonError, match="Rook/Ceph is optional and not automated"):
        bootstrap_phases(with_(settings, storage={"backend": "rook"}), inv)


def test_put_bytes_goes_through_a_private_temp_file():
    class Sftp:
        def __init__(self):
            self.files = {}

        def open(self, path, mode):
            outer = self

            class F:
                def __enter__(self):
                    return self

                def __exit__(self, *a):
                    pass

                def chmod(self, m):
                    outer.mode = m

                def write(self, d):
                    outer.files[path] = d

            return F()

    r = FakeRemote([(r"^mkdir -p", "")])
    sftp = Sftp()
    r.conn.sftp = lambda: sftp
    kube_common.put_bytes(r, "/etc/apt/keyrings/kubernetes-apt-keyring.gpg", b"\x99\x01", 0o644)
    (path, data), = sftp.files.items()
    assert path.startswith("/tmp/.coursehub-") and data == b"\x99\x01" and sftp.mode == 0o600
    assert "chmod 644" in r.commands[0] and r.commands[0].endswith("/etc/apt/keyrings/kubernetes-apt-keyring.gpg")


def test_file_spec_sanity():
    assert FileSpec("/x", "a").differences(FileFact(None)) == ["missing"]
