"""Every kubeadm, kubectl, helm, apt and crictl invocation, as an argv list.

Pure functions: no I/O, no shell. A Remote runs `sh(argv)` (shlex.join), so the
exact text is fixed here and checked word for word by tests/unit/kube/test_commands.py.
kubectl and helm always name the admin kubeconfig: they run as root on the head.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping, Sequence

from coursehub.kube import ADMIN_CONF

Argv = list[str]


def sh(argv: Sequence[str]) -> str:
    """The shell text of an argv, every word quoted as needed."""
    return shlex.join(argv)


def pipe(*argvs: Sequence[str]) -> str:
    return " | ".join(sh(a) for a in argvs)


# ----------------------------------------------------------------------------- kubectl
def kubectl(*args: str) -> Argv:
    return ["kubectl", f"--kubeconfig={ADMIN_CONF}", *args]


def readyz() -> Argv:
    """The API server's readiness endpoint: prints `ok` when it serves."""
    return kubectl("get", "--raw=/readyz", "--request-timeout=10s")


def get_json(kind: str, name: str = "", namespace: str = "", all_namespaces: bool = False,
             selector: str = "", field_selector: str = "", ignore_not_found: bool = False) -> Argv:
    argv = kubectl("get", kind)
    if name:
        argv.append(name)
    if all_namespaces:
        argv.append("--all-namespaces")
    elif namespace:
        argv.append(f"--namespace={namespace}")
    if selector:
        argv.append(f"--selector={selector}")
    if field_selector:
        argv.append(f"--field-selector={field_selector}")
    if ignore_not_found:
        argv.append("--ignore-not-found")
    return [*argv, "--output=json"]


def cordon(node: str) -> Argv:
    return kubectl("cordon", node)


def uncordon(node: str) -> Argv:
    return kubectl("uncordon", node)


def drain(node: str, timeout: int = 300, grace_period: int | None = None, disable_eviction: bool = False,
          pod_selector: str = "") -> Argv:
    """Evict everything but DaemonSet pods; emptyDir data is lost (as for any eviction).

    Eviction honours PodDisruptionBudgets: a pod whose budget allows no disruption
    blocks until `timeout`. `disable_eviction` deletes pods instead and so bypasses
    the budgets: only for an admin who asked for it.
    """
    argv = kubectl("drain", node, "--ignore-daemonsets", "--delete-emptydir-data", f"--timeout={timeout}s")
    if grace_period is not None:
        argv.append(f"--grace-period={grace_period}")
    if disable_eviction:
        argv.append("--disable-eviction")
    if pod_selector:
        argv.append(f"--pod-selector={pod_selector}")
    return argv


def taint(node: str, key: str, value: str, effect: str) -> Argv:
    return kubectl("taint", "nodes", node, f"{key}={value}:{effect}" if value else f"{key}:{effect}", "--overwrite")


def untaint(node: str, key: str, effect: str = "") -> Argv:
    return kubectl("taint", "nodes", node, f"{key}:{effect}-" if effect else f"{key}-")


def label(node: str, key: str, value: str | None) -> Argv:
    """Set (or with value None remove) a node label."""
    return kubectl("label", "nodes", node, f"{key}-" if value is None else f"{key}={value}", "--overwrite")


def apply(path: str = "-", server_side: bool = True) -> Argv:
    """Apply a manifest file (or stdin with path '-').

    Server-side apply: no last-applied annotation (which would copy a Secret's data
    into an annotation, and which Calico's large CRDs do not fit in).
    """
    argv = kubectl("apply", f"--filename={path}")
    if server_side:
        argv += ["--server-side", "--force-conflicts", "--field-manager=coursehub"]
    return argv


def get_file_names(path: str) -> Argv:
    """Which objects of a manifest file exist (`kind/name` lines; missing ones are skipped)."""
    return kubectl("get", f"--filename={path}", "--ignore-not-found", "--output=name")


def delete_pod_force(name: str, namespace: str) -> Argv:
    """Remove the pod object at once, without waiting for the kubelet to confirm."""
    return kubectl("delete", "pod", name, f"--namespace={namespace}", "--force", "--grace-period=0")


def delete_pod(name: str, namespace: str, wait: bool = False) -> Argv:
    return kubectl("delete", "pod", name, f"--namespace={namespace}", "--ignore-not-found", f"--wait={str(wait).lower()}")


def rollout_status(kind_name: str, namespace: str, timeout: int = 300) -> Argv:
    return kubectl("rollout", "status", kind_name, f"--namespace={namespace}", f"--timeout={timeout}s")


def wait_established(crd: str, timeout: int = 120) -> Argv:
    return kubectl("wait", "--for=condition=Established", f"crd/{crd}", f"--timeout={timeout}s")


def exec_shell(pod: str, namespace: str, shell: str = "/bin/sh") -> Argv:
    """What an admin types on the head to get a shell in `pod`."""
    return kubectl("exec", "--stdin", "--tty", f"--namespace={namespace}", pod, "--", shell)


# ----------------------------------------------------------------------------- kubeadm
def kubeadm_init(config_path: str) -> Argv:
    return ["kubeadm", "init", f"--config={config_path}"]


def kubeadm_join_stdin() -> Argv:
    """Join with a JoinConfiguration read from stdin: the token never touches the node's disk or argv."""
    return ["kubeadm", "join", "--config=/dev/stdin"]


def kubeadm_reset(cri_socket: str) -> Argv:
    return ["kubeadm", "reset", "--force", f"--cri-socket={cri_socket}"]


def token_create(ttl: str = "15m", description: str = "coursehub join") -> Argv:
    """A fresh bootstrap token with a short life; prints the full join command."""
    return ["kubeadm", "token", "create", f"--ttl={ttl}", f"--description={description}", "--print-join-command"]


def token_delete(token_id: str) -> Argv:
    return ["kubeadm", "token", "delete", token_id]


def token_list() -> Argv:
    return ["kubeadm", "token", "list", "--output=json"]


# ----------------------------------------------------------------------------- helm
def helm(*args: str) -> Argv:
    return ["helm", f"--kubeconfig={ADMIN_CONF}", *args]


def helm_version(binary: str = "/usr/local/bin/helm") -> Argv:
    return [binary, "version", "--template={{.Version}}"]


def helm_list() -> Argv:
    return helm("list", "--all-namespaces", "--output=json")


def helm_upgrade(release: str, chart_path: str, namespace: str, values_path: str, timeout: int = 600) -> Argv:
    """Install or upgrade `release` from a verified local chart file; wait until it is ready."""
    return helm("upgrade", "--install", release, chart_path, f"--namespace={namespace}", "--create-namespace",
                f"--values={values_path}", "--wait", f"--timeout={timeout}s")


# ----------------------------------------------------------------------------- apt, dpkg
def apt_update_source_args(sources_path: str) -> Argv:
    """apt-get words refreshing only one source list (fast; other repositories' hiccups do not count).

    Run through coursehub.steps.apt.apt_get, which adds the noninteractive options and lock retries.
    """
    return ["update", "-o", f"Dir::Etc::sourcelist={sources_path}", "-o", "Dir::Etc::sourceparts=-",
            "-o", "APT::Get::List-Cleanup=0"]


def apt_madison(packages: Iterable[str]) -> Argv:
    return ["apt-cache", "madison", *packages]


def apt_install_args(versions: Mapping[str, str]) -> Argv:
    """apt-get words installing exact versions (name=version), up or down; held packages may change."""
    return ["install", "--no-install-recommends", "--allow-change-held-packages", "--allow-downgrades",
            *[f"{k}={v}" for k, v in versions.items()]]


def apt_mark_hold(packages: Iterable[str]) -> Argv:
    return ["apt-mark", "hold", *packages]


def dpkg_query(packages: Iterable[str]) -> Argv:
    return ["dpkg-query", "--show", "--showformat=${Package}\\t${Version}\\t${db:Status-Abbrev}\\n", *packages]


# ----------------------------------------------------------------------------- runtime
def crictl_pid(container_id: str) -> Argv:
    """The host PID of a running container's init process (prints nothing if it is gone)."""
    return ["crictl", "inspect", "--output=go-template", "--template={{.info.pid}}", container_id]


def ps_tree() -> Argv:
    return ["ps", "-e", "--no-headers", "-o", "pid=,ppid="]


def kill(pids: Iterable[int]) -> Argv:
    return ["kill", "-KILL", *[str(p) for p in pids]]
