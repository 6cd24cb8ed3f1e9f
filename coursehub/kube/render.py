"""kubeadm configuration and Kubernetes manifests from templates/, checked before use.

Every value from vars.yml or the inventory passes through the `yaml` filter (one
line of JSON, which YAML reads as the same scalar), so no setting can add keys.
Each rendered document is then checked:

- kubeadm.k8s.io/v1beta4 and kubelet.config.k8s.io/v1beta1 against the JSON
  schemas in coursehub/kube/schemas/ (written by hand from the API reference:
  kubeadm's configuration is not an API object, so no published schema covers it);
- metallb.io/v1beta1 against schemas written from MetalLB's Go types;
- core Kubernetes objects against the official OpenAPI-derived schemas of the
  target version through `kubernetes-validate`, when it is installed (the tests
  always install it; hosts never need it).

A failure raises RenderError naming the document and the field.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coursehub.kube import DEDICATED_TAINT, PURPOSE_LABEL

if TYPE_CHECKING:
    from coursehub.inventory import Host
    from coursehub.kube.parse import JoinInfo
    from coursehub.settings import Settings

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
CRI_SOCKETS = {
    "containerd": "unix:///run/containerd/containerd.sock",
    "docker": "unix:///run/cri-dockerd.sock",  # Docker needs cri-dockerd since dockershim left (1.24)
}
_NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class RenderError(ValueError):
    """A rendered document is not valid; str() is one line naming it and the field."""


# ----------------------------------------------------------------------------- jinja
@functools.cache
def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )
    env.filters["yaml"] = lambda v: json.dumps(v, ensure_ascii=False)
    return env


def render(template: str, **ctx: Any) -> str:
    return _env().get_template(template).render(**ctx)


def documents(text: str) -> list[dict[str, Any]]:
    """The YAML documents of `text` (empty ones dropped); RenderError on bad YAML."""
    import yaml

    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise RenderError(f"rendered YAML does not parse: {str(e).splitlines()[0]}") from None


# ----------------------------------------------------------------------------- validation
@functools.cache
def _schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / name).read_text(encoding="utf-8"))


OWN_SCHEMAS = {
    "kubeadm.k8s.io/v1beta4": "kubeadm.k8s.io-v1beta4.json",
    "kubelet.config.k8s.io/v1beta1": "kubelet.config.k8s.io-v1beta1.json",
    "metallb.io/v1beta1": "metallb.io-v1beta1.json",
}


def _where(doc: Mapping[str, Any]) -> str:
    name = (doc.get("metadata") or {}).get("name", "")
    return f"{doc.get('kind', '?')}{'/' + name if name else ''}"


def validate(doc: Mapping[str, Any], kube_version: str = "1.33.5", strict_core: bool = False) -> None:
    """Check one document against its schema; RenderError on the first problem."""
    import jsonschema

    api = str(doc.get("apiVersion", ""))
    if not api or not doc.get("kind"):
        raise RenderError(f"{_where(doc)}: apiVersion and kind are required")
    if api in OWN_SCHEMAS:
        errors = sorted(jsonschema.Draft202012Validator(_schema(OWN_SCHEMAS[api])).iter_errors(doc),
                        key=lambda e: list(e.absolute_path))
        if errors:
            # oneOf hides the useful message; ask the branch of this kind directly.
            branch = _schema(OWN_SCHEMAS[api]).get("$defs", {}).get(str(doc["kind"]))
            if branch is not None:
                sub = dict(branch, **{"$defs": _schema(OWN_SCHEMAS[api])["$defs"]})
                errors = list(jsonschema.Draft202012Validator(sub).iter_errors(doc)) or errors
            e = errors[0]
            path = ".".join(str(p) for p in e.absolute_path) or "(top)"
            raise RenderError(f"{_where(doc)} ({api}): {path}: {e.message}")
        return
    try:
        import kubernetes_validate
    except ImportError:
        if not (doc.get("metadata") or {}).get("name"):
            raise RenderError(f"{_where(doc)}: metadata.name is required") from None
        return
    try:
        kubernetes_validate.validate(dict(doc), kube_version, strict=strict_core)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(top)"
        raise RenderError(f"{_where(doc)} ({api}): {path}: {e.message}") from None
    except kubernetes_validate.SchemaNotFoundError:
        raise RenderError(f"{_where(doc)}: no schema for {api} {doc['kind']} in Kubernetes {kube_version}") from None


def checked(text: str, kube_version: str = "1.33.5", strict_core: bool = True) -> str:
    """`text` unchanged, after every document in it passed `validate`."""
    docs = documents(text)
    if not docs:
        raise RenderError("nothing was rendered")
    for d in docs:
        validate(d, kube_version, strict_core)
    return text


# ----------------------------------------------------------------------------- kubeadm
def cri_socket(settings: Settings) -> str:
    return CRI_SOCKETS[settings.hosts.runtime]


def node_name(host: Host) -> str:
    """The Node name of an inventory host: its name, lower-cased; it must be a DNS subdomain."""
    name = host.name.lower()
    if not _NODE_NAME.match(name) or len(name) > 253:
        raise RenderError(f"host {host.name!r}: not usable as a Kubernetes node name "
                          "(lower-case letters, digits, '-' and '.'): rename it in hosts.yml")
    return name


def control_plane_taints(settings: Settings, has_workers: bool) -> list[dict[str, str]]:
    """The head's taints: z2jh's `dedicated=core`, so only core pods (hub, proxy) run there.

    Without workers (a one-node cluster) the head must take every pod: no taint.
    """
    if settings.kubernetes.dedicated_control_plane and has_workers:
        return [{"key": DEDICATED_TAINT, "value": "core", "effect": "NoSchedule"}]
    return []


def kubeadm_config(settings: Settings, head: Host, has_workers: bool) -> str:
    """InitConfiguration + ClusterConfiguration + KubeletConfiguration for the head."""
    sans = list(dict.fromkeys([head.address, node_name(head)]))
    text = render(
        "kubeadm-config.yaml.j2", s=settings, node_name=node_name(head), cri_socket=cri_socket(settings),
        taints=control_plane_taints(settings, has_workers), node_labels=f"{PURPOSE_LABEL}=core",
        cert_sans=sans, log_max_size=kubelet_quantity(settings.hosts.log_max_size),
    )
    return checked(text, settings.kubernetes.version)


def join_config(settings: Settings, host: Host, join: JoinInfo) -> str:
    """The JoinConfiguration of one worker, holding the fresh token (send it through stdin only)."""
    text = render("kubeadm-join.yaml.j2", s=settings, node_name=node_name(host), cri_socket=cri_socket(settings),
                  node_labels=f"{PURPOSE_LABEL}=user", join=join)
    return checked(text, settings.kubernetes.version)


def kubelet_quantity(size: str) -> str:
    """vars.yml's log size ('100M', '1.5G', '500') as a kubelet quantity ('' when not expressible)."""
    m = re.match(r"^([0-9]+(?:\.[0-9]+)?)([KMGT]?)$", size.strip(), re.I)
    if not m:
        return ""
    number, unit = m.groups()
    return f"{number}{unit.upper()}" if unit else f"{int(float(number) // 1024) or 1}Ki"


# ----------------------------------------------------------------------------- add-ons
def metallb_pool(settings: Settings, name: str = "coursehub", namespace: str = "metallb-system") -> str:
    if not settings.kubernetes.lb_addresses:
        raise RenderError("kubernetes.lb_addresses is empty: MetalLB needs addresses to hand out "
                          "(CIDRs or a.b.c.d-a.b.c.e ranges the cloud lets the nodes use)")
    return checked(render("k8s/metallb-pool.yaml.j2", s=settings, name=name, namespace=namespace),
                   settings.kubernetes.version)


def cinder_storageclass(settings: Settings, name: str = "cinder") -> str:
    return checked(render("k8s/storageclass.yaml.j2", name=name, provisioner="cinder.csi.openstack.org"),
                   settings.kubernetes.version)


def chart_values(template: str, **ctx: Any) -> str:
    """Chart values (not a Kubernetes object): rendered and parsed, so they are at least well-formed YAML."""
    text = render(template, **ctx)
    docs = documents(text)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise RenderError(f"{template}: expected one mapping of chart values")
    return text


def nfs_values(settings: Settings, server: str, class_name: str = "nfs") -> str:
    return chart_values("k8s/nfs-provisioner-values.yaml.j2", server=server, path=settings.storage.nfs_export,
                        class_name=class_name)


def cloud_config_secret(settings: Settings, cloud_conf: str) -> str:
    import hashlib

    return checked(render("k8s/cloud-config-secret.yaml.j2", cloud_conf=cloud_conf,
                          sha256=hashlib.sha256(cloud_conf.encode()).hexdigest()), settings.kubernetes.version)


def inspect_pod(settings: Settings, name: str, namespace: str, username: str, claim: str, deadline: int = 3600) -> str:
    return checked(render("k8s/inspect-user-pod.yaml.j2", name=name, namespace=namespace, username=username,
                          claim=claim, image=settings.users.image, deadline=deadline), settings.kubernetes.version)


def prepull_daemonset(settings: Settings, name: str, namespace: str, image: str) -> str:
    return checked(render("k8s/prepull-daemonset.yaml.j2", name=name, namespace=namespace, image=image,
                          pause_image=PAUSE_IMAGE), settings.kubernetes.version)


def shared_secret(settings: Settings, name: str, namespace: str, files: Mapping[str, bytes]) -> str:
    """A generic Secret whose keys are file names (kubectl's --from-file rules)."""
    key = re.compile(r"^[-._a-zA-Z0-9]+$")
    for k in files:
        if not key.match(k):
            raise RenderError(f"secret key {k!r}: only letters, digits, '-', '_' and '.' are allowed")
    data = {k: base64.b64encode(v).decode() for k, v in sorted(files.items())}
    return checked(render("k8s/shared-secret.yaml.j2", name=name, namespace=namespace, data=data),
                   settings.kubernetes.version)


def flannel_with_cidr(manifest: str, pod_cidr: str) -> str:
    """The verified Flannel manifest with net-conf.json's Network set to the cluster's pod CIDR."""
    import yaml

    docs = documents(manifest)
    found = False
    for d in docs:
        if d.get("kind") == "ConfigMap" and (d.get("metadata") or {}).get("name") == "kube-flannel-cfg":
            conf = json.loads(d["data"]["net-conf.json"])
            conf["Network"] = pod_cidr
            d["data"]["net-conf.json"] = json.dumps(conf, indent=2) + "\n"
            found = True
    if not found:
        raise RenderError("flannel manifest: no ConfigMap kube-flannel-cfg with net-conf.json")
    return yaml.safe_dump_all(docs, sort_keys=False)
