"""Every manifest and configuration CourseHub renders, validated offline.

Core Kubernetes objects: kubernetes-validate (the official OpenAPI-derived schemas) for
the pinned Kubernetes minor, strict (unknown fields rejected). kubeadm's configuration,
the KubeletConfiguration and MetalLB's custom resources: the JSON schemas in
coursehub/kube/schemas/, written from the API references.
"""

from __future__ import annotations

import copy

import pytest
import yaml

from coursehub.inventory import Host
from coursehub.kube import parse, render
from tests.unit.kube.conftest import with_

kubernetes_validate = pytest.importorskip("kubernetes_validate")

HEAD = Host(name="head", address="203.0.113.10", user="ubuntu", roles=["head"])
JOIN = parse.JoinInfo("10.0.0.5:6443", "abcdef.0123456789abcdef", ("sha256:" + "a" * 64,))


def docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def strictly_valid(doc, version="1.33.5"):
    kubernetes_validate.validate(doc, version, strict=True)


# ----------------------------------------------------------------------------- kubeadm
def test_kubeadm_config(settings):
    d = docs(render.kubeadm_config(settings, HEAD, has_workers=True))
    assert [x["kind"] for x in d] == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]
    init, cluster, kubelet = d
    assert init["nodeRegistration"]["name"] == "head"
    assert init["nodeRegistration"]["criSocket"] == "unix:///run/containerd/containerd.sock"
    assert init["nodeRegistration"]["taints"] == [{"key": "hub.jupyter.org/dedicated", "value": "core", "effect": "NoSchedule"}]
    assert {"name": "node-labels", "value": "hub.jupyter.org/node-purpose=core"} in init["nodeRegistration"]["kubeletExtraArgs"]
    assert cluster["kubernetesVersion"] == "v1.33.5"
    assert cluster["networking"] == {"podSubnet": "192.168.0.0/16", "serviceSubnet": "10.96.0.0/12", "dnsDomain": "cluster.local"}
    assert cluster["apiServer"]["certSANs"] == ["203.0.113.10", "head"]
    assert kubelet["cgroupDriver"] == "systemd" and kubelet["containerLogMaxSize"] == "100M"
    for x in d:
        render.validate(x)


def test_kubeadm_config_variants(settings):
    s = with_(settings, kubernetes={"kubelet_root": "/mnt/data/kubelet", "dedicated_control_plane": False},
              hosts={"runtime": "docker", "log_max_size": "500"})
    init, _cluster, kubelet = docs(render.kubeadm_config(s, HEAD, has_workers=True))
    assert init["nodeRegistration"]["taints"] == []  # empty list: also no kubeadm control-plane taint
    assert {"name": "root-dir", "value": "/mnt/data/kubelet"} in init["nodeRegistration"]["kubeletExtraArgs"]
    assert init["nodeRegistration"]["criSocket"] == "unix:///run/cri-dockerd.sock"
    assert kubelet["containerLogMaxSize"] == "1Ki"
    # a single-node cluster never taints its only node
    init1 = docs(render.kubeadm_config(settings, HEAD, has_workers=False))[0]
    assert init1["nodeRegistration"]["taints"] == []


def test_join_config_holds_the_token_and_validates(settings):
    text = render.join_config(settings, Host(name="W1", address="10.0.0.6"), JOIN)
    (join,) = docs(text)
    assert join["discovery"]["bootstrapToken"] == {"apiServerEndpoint": "10.0.0.5:6443", "token": JOIN.token,
                                                   "caCertHashes": list(JOIN.ca_hashes)}
    assert join["nodeRegistration"]["name"] == "w1"
    assert {"name": "node-labels", "value": "hub.jupyter.org/node-purpose=user"} in join["nodeRegistration"]["kubeletExtraArgs"]


@pytest.mark.parametrize("path,value,message", [
    (("nodeRegistration", "kubeletExtraArgs"), {"root-dir": "/x"}, "is not of type 'array'"),  # v1beta3 map form
    (("nodeRegistration", "criSoket"), "unix:///x", "Additional properties"),
    (("nodeRegistration", "taints"), [{"key": "a", "effect": "Sometimes"}], "is not one of"),
    (("timeouts", "kubeletHealthCheck"), "four minutes", "does not match"),
])
def test_kubeadm_schema_rejects(settings, path, value, message):
    init = docs(render.kubeadm_config(settings, HEAD, True))[0]
    bad = copy.deepcopy(init)
    node = bad
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    with pytest.raises(render.RenderError, match=message):
        render.validate(bad)


def test_kubeadm_schema_rejects_old_api_and_bad_tokens(settings):
    cluster = docs(render.kubeadm_config(settings, HEAD, True))[1]
    old = dict(cluster, apiVersion="kubeadm.k8s.io/v1beta3")
    with pytest.raises(render.RenderError, match="no schema for kubeadm.k8s.io/v1beta3"):
        render.validate(old)
    (join,) = docs(render.join_config(settings, Host(name="w1", address="10.0.0.6"), JOIN))
    join["discovery"]["bootstrapToken"]["token"] = "not-a-token"
    with pytest.raises(render.RenderError, match="discovery.bootstrapToken.token"):
        render.validate(join)
    kubelet = docs(render.kubeadm_config(settings, HEAD, True))[2]
    kubelet["cgroupDriver"] = "systemd-ish"
    with pytest.raises(render.RenderError, match="cgroupDriver"):
        render.validate(kubelet)


def test_node_names(settings):
    assert render.node_name(Host(name="Worker-1", address="x")) == "worker-1"
    with pytest.raises(render.RenderError, match="rename it in hosts.yml"):
        render.node_name(Host(name="bad_name", address="x"))


# ----------------------------------------------------------------------------- manifests
def test_metallb_pool(settings):
    s = with_(settings, kubernetes={"lb_addresses": ["10.0.0.100-10.0.0.110", "192.0.2.0/28"]})
    pool, l2 = docs(render.metallb_pool(s))
    assert pool["spec"]["addresses"] == ["10.0.0.100-10.0.0.110", "192.0.2.0/28"]
    assert l2["spec"]["ipAddressPools"] == ["coursehub"]
    with pytest.raises(render.RenderError, match="lb_addresses is empty"):
        render.metallb_pool(settings)
    bad = dict(pool, spec={"addresses": ["10.0.0.1"]})  # neither a CIDR nor a range
    with pytest.raises(render.RenderError, match="spec.addresses.0"):
        render.validate(bad)
    with pytest.raises(render.RenderError, match="Additional properties"):
        render.validate(dict(l2, spec={"ipAddressPool": ["x"]}))


def test_storageclass(settings):
    (sc,) = docs(render.cinder_storageclass(settings))
    strictly_valid(sc)
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["allowVolumeExpansion"] is True and sc["provisioner"] == "cinder.csi.openstack.org"


def test_inspect_pod_prepull_secrets(settings):
    for text in (render.inspect_pod(settings, "inspect-alice", "jhub", "alice", "claim-alice"),
                 render.prepull_daemonset(settings, "prepull-x", "jhub", "quay.io/jupyter/scipy-notebook:2025-10-20"),
                 render.shared_secret(settings, "keys", "jhub", {"ass_rsa.private": b"-----BEGIN-----\n"}),
                 render.cloud_config_secret(settings, "[Global]\napplication-credential-secret = s3cr3t\n")):
        for d in docs(text):
            strictly_valid(d)
    (pod,) = docs(render.inspect_pod(settings, "inspect-alice", "jhub", "alice", "claim-alice"))
    assert pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "claim-alice"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    with pytest.raises(render.RenderError, match="secret key"):
        render.shared_secret(settings, "keys", "jhub", {"../etc/passwd": b""})


def test_strict_validation_catches_a_typo(settings):
    (pod,) = docs(render.inspect_pod(settings, "inspect-alice", "jhub", "alice", "claim-alice"))
    pod["spec"]["restartPolicey"] = "Never"
    with pytest.raises(render.RenderError, match="restartPolicey"):
        render.validate(pod, strict_core=True)
    pod = docs(render.inspect_pod(settings, "inspect-alice", "jhub", "alice", "claim-alice"))[0]
    pod["spec"]["activeDeadlineSeconds"] = "an hour"
    with pytest.raises(render.RenderError, match="activeDeadlineSeconds"):
        render.validate(pod)


def test_input_cannot_inject_keys(settings):
    s = with_(settings, users={"image": 'x:1"\n  evil: true'})
    (pod,) = docs(render.inspect_pod(s, "inspect-a", "jhub", "a", "claim-a"))
    assert pod["spec"]["containers"][0]["image"] == 'x:1"\n  evil: true' and "evil" not in pod["spec"]["containers"][0]


def test_chart_values_are_mappings(settings):
    for t in ("k8s/metallb-values.yaml.j2", "k8s/cinder-csi-values.yaml.j2", "k8s/occm-values.yaml.j2"):
        assert isinstance(docs(render.chart_values(t))[0], dict)
    v = docs(render.nfs_values(settings, "10.0.0.5"))[0]
    assert v["nfs"] == {"server": "10.0.0.5", "path": "/srv/coursehub", "mountOptions": ["nfsvers=4.1", "hard"]}
    assert v["storageClass"]["defaultClass"] is True


def test_flannel_cidr():
    manifest = ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kube-flannel-cfg\n  namespace: kube-flannel\n"
                "data:\n  net-conf.json: |\n    {\n      \"Network\": \"10.244.0.0/16\",\n"
                "      \"Backend\": {\"Type\": \"vxlan\"}\n    }\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n"
                "  name: kube-flannel\n")
    out = docs(render.flannel_with_cidr(manifest, "192.168.0.0/16"))
    import json

    assert json.loads(out[0]["data"]["net-conf.json"]) == {"Network": "192.168.0.0/16", "Backend": {"Type": "vxlan"}}
    with pytest.raises(render.RenderError):
        render.flannel_with_cidr("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n", "10.0.0.0/8")
