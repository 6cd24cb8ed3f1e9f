"""Every kubeadm, kubectl, helm, apt and crictl invocation, word for word."""

from coursehub.kube import commands as k

KC = "--kubeconfig=/etc/kubernetes/admin.conf"


def test_kubectl_always_names_the_admin_kubeconfig():
    assert k.kubectl("get", "nodes") == ["kubectl", KC, "get", "nodes"]
    assert k.readyz() == ["kubectl", KC, "get", "--raw=/readyz", "--request-timeout=10s"]


def test_get_json():
    assert k.get_json("nodes") == ["kubectl", KC, "get", "nodes", "--output=json"]
    assert k.get_json("node", "w1", ignore_not_found=True) == [
        "kubectl", KC, "get", "node", "w1", "--ignore-not-found", "--output=json"]
    assert k.get_json("pods", all_namespaces=True, field_selector="spec.nodeName=w1") == [
        "kubectl", KC, "get", "pods", "--all-namespaces", "--field-selector=spec.nodeName=w1", "--output=json"]
    assert k.get_json("pods", namespace="jhub", selector="component=singleuser-server") == [
        "kubectl", KC, "get", "pods", "--namespace=jhub", "--selector=component=singleuser-server", "--output=json"]


def test_cordon_uncordon():
    assert k.cordon("w1") == ["kubectl", KC, "cordon", "w1"]
    assert k.uncordon("w1") == ["kubectl", KC, "uncordon", "w1"]


def test_drain_flags():
    assert k.drain("w1") == ["kubectl", KC, "drain", "w1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s"]
    assert k.drain("w1", timeout=60, grace_period=30, disable_eviction=True, pod_selector="component=singleuser-server") == [
        "kubectl", KC, "drain", "w1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s",
        "--grace-period=30", "--disable-eviction", "--pod-selector=component=singleuser-server"]


def test_taint_label():
    assert k.taint("w1", "hub.jupyter.org/unhealthy", "", "PreferNoSchedule") == [
        "kubectl", KC, "taint", "nodes", "w1", "hub.jupyter.org/unhealthy:PreferNoSchedule", "--overwrite"]
    assert k.taint("head", "hub.jupyter.org/dedicated", "core", "NoSchedule") == [
        "kubectl", KC, "taint", "nodes", "head", "hub.jupyter.org/dedicated=core:NoSchedule", "--overwrite"]
    assert k.untaint("w1", "hub.jupyter.org/unhealthy", "PreferNoSchedule") == [
        "kubectl", KC, "taint", "nodes", "w1", "hub.jupyter.org/unhealthy:PreferNoSchedule-"]
    assert k.untaint("w1", "k") == ["kubectl", KC, "taint", "nodes", "w1", "k-"]
    assert k.label("w1", "hub.jupyter.org/node-purpose", "user") == [
        "kubectl", KC, "label", "nodes", "w1", "hub.jupyter.org/node-purpose=user", "--overwrite"]
    assert k.label("w1", "x", None) == ["kubectl", KC, "label", "nodes", "w1", "x-", "--overwrite"]


def test_apply_is_server_side():
    assert k.apply("/etc/coursehub/k8s/a.yaml") == [
        "kubectl", KC, "apply", "--filename=/etc/coursehub/k8s/a.yaml", "--server-side", "--force-conflicts",
        "--field-manager=coursehub"]
    assert k.apply() [3] == "--filename=-"
    assert k.apply("x", server_side=False) == ["kubectl", KC, "apply", "--filename=x"]
    assert k.get_file_names("/f.yaml") == ["kubectl", KC, "get", "--filename=/f.yaml", "--ignore-not-found", "--output=name"]


def test_delete_force():
    assert k.delete_pod_force("jupyter-alice", "jhub") == [
        "kubectl", KC, "delete", "pod", "jupyter-alice", "--namespace=jhub", "--force", "--grace-period=0"]


def test_waits_and_exec():
    assert k.rollout_status("daemonset/calico-node", "kube-system", 600) == [
        "kubectl", KC, "rollout", "status", "daemonset/calico-node", "--namespace=kube-system", "--timeout=600s"]
    assert k.wait_established("ipaddresspools.metallb.io") == [
        "kubectl", KC, "wait", "--for=condition=Established", "crd/ipaddresspools.metallb.io", "--timeout=120s"]
    assert k.exec_shell("inspect-alice", "jhub", "/bin/bash") == [
        "kubectl", KC, "exec", "--stdin", "--tty", "--namespace=jhub", "inspect-alice", "--", "/bin/bash"]


def test_kubeadm():
    assert k.kubeadm_init("/etc/coursehub/kubeadm-config.yaml") == ["kubeadm", "init", "--config=/etc/coursehub/kubeadm-config.yaml"]
    assert k.kubeadm_join_stdin() == ["kubeadm", "join", "--config=/dev/stdin"]
    assert k.kubeadm_reset("unix:///run/containerd/containerd.sock") == [
        "kubeadm", "reset", "--force", "--cri-socket=unix:///run/containerd/containerd.sock"]
    assert k.token_create() == ["kubeadm", "token", "create", "--ttl=15m", "--description=coursehub join",
                                "--print-join-command"]
    assert k.token_create("10m", "coursehub join w1")[3:5] == ["--ttl=10m", "--description=coursehub join w1"]
    assert k.token_delete("abcdef") == ["kubeadm", "token", "delete", "abcdef"]
    assert k.token_list() == ["kubeadm", "token", "list", "--output=json"]


def test_helm():
    assert k.helm_version() == ["/usr/local/bin/helm", "version", "--template={{.Version}}"]
    assert k.helm_list() == ["helm", KC, "list", "--all-namespaces", "--output=json"]
    assert k.helm_upgrade("metallb", "/var/lib/coursehub/charts/metallb-0.15.2.tgz", "metallb-system",
                          "/etc/coursehub/values/metallb.yaml") == [
        "helm", KC, "upgrade", "--install", "metallb", "/var/lib/coursehub/charts/metallb-0.15.2.tgz",
        "--namespace=metallb-system", "--create-namespace", "--values=/etc/coursehub/values/metallb.yaml",
        "--wait", "--timeout=600s"]


def test_apt():
    assert k.apt_update_source_args("/etc/apt/sources.list.d/kubernetes.list") == [
        "update", "-o", "Dir::Etc::sourcelist=/etc/apt/sources.list.d/kubernetes.list", "-o", "Dir::Etc::sourceparts=-",
        "-o", "APT::Get::List-Cleanup=0"]
    assert k.apt_madison(["kubeadm", "kubelet"]) == ["apt-cache", "madison", "kubeadm", "kubelet"]
    assert k.apt_install_args({"kubeadm": "1.33.5-1.1", "kubelet": "1.33.5-1.1"}) == [
        "install", "--no-install-recommends", "--allow-change-held-packages", "--allow-downgrades", "kubeadm=1.33.5-1.1",
        "kubelet=1.33.5-1.1"]
    assert k.apt_mark_hold(["kubeadm", "kubelet", "kubectl"]) == ["apt-mark", "hold", "kubeadm", "kubelet", "kubectl"]
    assert k.dpkg_query(["kubeadm"]) == ["dpkg-query", "--show",
                                         "--showformat=${Package}\\t${Version}\\t${db:Status-Abbrev}\\n", "kubeadm"]


def test_runtime():
    assert k.crictl_pid("abc") == ["crictl", "inspect", "--output=go-template", "--template={{.info.pid}}", "abc"]
    assert k.ps_tree() == ["ps", "-e", "--no-headers", "-o", "pid=,ppid="]
    assert k.kill([4230, 4190]) == ["kill", "-KILL", "4230", "4190"]


def test_sh_quotes_exactly():
    assert k.sh(k.helm_version()) == "/usr/local/bin/helm version '--template={{.Version}}'"
    assert k.sh(k.dpkg_query(["kubeadm"])) == (
        "dpkg-query --show '--showformat=${Package}\\t${Version}\\t${db:Status-Abbrev}\\n' kubeadm")
    assert k.pipe(["a", "b c"], ["d"]) == "a 'b c' | d"
