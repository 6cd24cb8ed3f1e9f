"""Cluster add-ons on the head: the CNI, the default StorageClass, the load balancer.

- Cni: the pinned Calico (or Flannel) manifest, sha256-checked on the admin's machine,
  kept at /var/lib/coursehub/manifests/ on the head and applied server-side; applied again
  only when that file or the CNI's DaemonSet is missing. Flannel's copy gets the pod CIDR.
- Storage (storage.backend): `cinder` -> the cloud-config Secret (from inventory/cloud.conf,
  through stdin), the pinned Cinder CSI chart and a default StorageClass with volume
  expansion; `nfs` -> an NFS export on the storage host (NfsExport) and the pinned
  nfs-subdir-external-provisioner chart, whose StorageClass is the default; `none` -> nothing.
  Rook/Ceph is not automated (off by default): choosing it stops with a clear message.
- Load balancer (kubernetes.load_balancer): `metallb` -> the pinned chart (CRDs included)
  and an IPAddressPool + L2Advertisement from kubernetes.lb_addresses; `octavia` -> the
  cloud-config Secret and the pinned OpenStack cloud controller manager chart; `none`.
"""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coursehub import pins
from coursehub.kube import CACHE_DIR, parse, render
from coursehub.kube import commands as k
from coursehub.steps import Action, FileSpec, Step, ensure_file, file_probe_command, parse_file_fact
from coursehub.steps.kube_common import cache_dir, head_remote, hide, put_bytes, run_stdin

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host, Inventory
    from coursehub.settings import Settings

CNI_DAEMONSETS = {"calico": ("kube-system", "calico-node"), "flannel": ("kube-flannel", "kube-flannel-ds")}


class AddonError(Exception):
    """An add-on that cannot be set up as vars.yml asks; str() is one line."""


class Cni(Step):
    """The pinned CNI manifest, verified, on the head and applied."""

    name = "cni"

    def __init__(self, settings: Settings, inv_dir: Path | None = None):
        self.cni = settings.kubernetes.cni
        self.pod_cidr = settings.kubernetes.pod_cidr
        self.artifact = pins.cni(self.cni)
        self.path = f"{CACHE_DIR}/manifests/{self.artifact.filename}"
        self.applied_path = self.path if self.cni == "calico" else self.path.replace(".yml", "-coursehub.yml")
        self.namespace, self.daemonset = CNI_DAEMONSETS[self.cni]
        self.inv_dir = inv_dir

    def probe(self, remote: Remote) -> dict[str, Any]:
        ds = k.get_json("daemonset", self.daemonset, namespace=self.namespace, ignore_not_found=True)
        out = remote.run(f"{file_probe_command(self.path)}; echo {parse.SECTION}; {k.sh(ds)} 2>/dev/null",
                         check=False).stdout
        parts = parse.sections(out) + [""]
        return {"file": parse_file_fact(parts[0].strip()), "daemonset": bool(parts[1].strip())}

    def decide(self, fact: dict[str, Any], remote: Remote) -> list[Action]:
        sha = pins.require(self.artifact)
        acts = []
        if fact["file"].sha256 != sha:
            acts.append(Action(why=f"{self.cni} {self.artifact.version} manifest not on the head", fn=self._upload,
                               label=f"upload verified {self.artifact.filename} (sha256 {sha[:12]}...)"))
        if acts or not fact["daemonset"]:
            acts.append(Action(why=f"DaemonSet {self.namespace}/{self.daemonset} missing" if not fact["daemonset"]
                               else "manifest changed", fn=self._apply, label=f"kubectl apply --server-side {self.applied_path}"))
            acts.append(Action(why="wait for the network on every node", command=k.sh(
                k.rollout_status(f"daemonset/{self.daemonset}", self.namespace, 600))))
        return acts

    def verify(self, remote: Remote) -> list[Action]:
        return [a for a in self.decide(self.probe(remote), remote) if a.command is None]

    def _upload(self, remote: Remote) -> None:
        data = pins.fetch(self.artifact.url, pins.require(self.artifact), cache_dir(self.inv_dir), self.artifact.filename)
        put_bytes(remote, self.path, data, mode=0o644)

    def _apply(self, remote: Remote) -> None:
        if self.cni == "flannel":
            text = remote.run(f"cat {shlex.quote(self.path)}").stdout
            if pins.sha256_hex(text.encode()) != pins.require(self.artifact):
                raise AddonError(f"{self.path} on the head does not match the pinned sha256; refusing to apply it")
            remote.put(FileSpec(self.applied_path, render.flannel_with_cidr(text, self.pod_cidr), mode=0o644))
        remote.run(k.sh(k.apply(self.applied_path)), timeout=600)


# ----------------------------------------------------------------------------- secrets from inventory/
class CloudConfig(Step):
    """The Secret kube-system/cloud-config from inventory/cloud.conf (an application credential)."""

    name = "cloud-config"

    def __init__(self, settings: Settings, inv_dir: Path):
        self.settings = settings
        self.path = inv_dir / "cloud.conf"

    def _text(self) -> str:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise AddonError(f"{self.path} is missing: Cinder CSI and Octavia need OpenStack credentials "
                             "(an application credential in cloud.conf form, written by `inv provision`); "
                             "or choose storage.backend: nfs and kubernetes.load_balancer: metallb") from None
        hide(*[ln.split("=", 1)[1].strip() for ln in text.splitlines()
               if "=" in ln and any(w in ln.lower() for w in ("secret", "password", "token"))])
        return text

    def probe(self, remote: Remote) -> str:
        out = remote.run(k.sh(k.kubectl("get", "secret", "cloud-config", "--namespace=kube-system", "--ignore-not-found",
                                        "--output=jsonpath={.metadata.annotations.coursehub/sha256}")) + " 2>/dev/null",
                         check=False)
        return out.stdout.strip()

    def decide(self, fact: str, remote: Remote) -> list[Action]:
        want = hashlib.sha256(self._text().encode()).hexdigest()
        if fact == want:
            return []
        return [Action(why="missing" if not fact else "inventory/cloud.conf changed", fn=self._apply, secret=True,
                       label="kubectl apply (Secret kube-system/cloud-config, through stdin)")]

    def _apply(self, remote: Remote) -> None:
        run_stdin(remote, k.sh(k.apply("-")), render.cloud_config_secret(self.settings, self._text()))


# ----------------------------------------------------------------------------- NFS on the storage host
class NfsExport(Step):
    """nfs-kernel-server exporting storage.nfs_export to the cluster's nodes only (no 0777 anywhere)."""

    name = "nfs-export"
    EXPORTS = "/etc/exports.d/coursehub.exports"

    def __init__(self, settings: Settings, inv: Inventory):
        self.export = settings.storage.nfs_export
        self.inv = inv

    def clients(self) -> list[str]:
        """Inventory addresses plus the InternalIPs the API reports (nodes may sit behind floating IPs)."""
        addrs = [h.address for h in self.inv.hosts]
        try:
            out = head_remote(self.inv).run(k.sh(k.get_json("nodes")), check=False)
            addrs += [n.internal_ip for n in parse.parse_nodes(out.stdout) if n.internal_ip] if out.ok else []
        except Exception:
            pass
        return sorted(set(addrs))

    def exports_text(self, clients: list[str]) -> str:
        opts = "rw,sync,no_subtree_check,no_root_squash"
        return ("# CourseHub: the shared volume of the users' homes, for the cluster's nodes only.\n"
                + f"{self.export} " + " ".join(f"{c}({opts})" for c in clients) + "\n")

    def probe(self, remote: Remote) -> dict[str, Any]:
        out = remote.run(f"{file_probe_command(self.EXPORTS)}; echo {parse.SECTION}; "
                         f"stat -c '%a %U' {shlex.quote(self.export)} 2>/dev/null; echo {parse.SECTION}; "
                         "systemctl is-active nfs-server 2>/dev/null", check=False).stdout
        parts = parse.sections(out) + ["", ""]
        return {"exports": parse_file_fact(parts[0].strip()), "dir": parts[1].strip(), "active": parts[2].strip(),
                "clients": self.clients()}

    def decide(self, fact: dict[str, Any], remote: Remote) -> list[Action]:
        from coursehub.steps.apt import Packages

        spec = FileSpec(self.EXPORTS, self.exports_text(fact["clients"]), mode=0o644)
        acts = Packages(["nfs-kernel-server"]).decide(Packages(["nfs-kernel-server"]).probe(remote), remote)
        if fact["dir"] != "755 root":
            acts.append(Action(why=f"export directory: {fact['dir'] or 'missing'}",
                               command=f"install -d -m 0755 -o root -g root {shlex.quote(self.export)}"))
        files = ensure_file(spec, fact["exports"])
        acts += files
        if files:
            acts.append(Action(why="exports changed", command="exportfs -ra"))
        if fact["active"] != "active":
            acts.append(Action(why=f"nfs-server {fact['active'] or 'inactive'}", command="systemctl enable --now nfs-server"))
        return acts


# ----------------------------------------------------------------------------- choosing
def storage_steps(settings: Settings, inv: Inventory) -> tuple[list[tuple[Host, Step]], list[Step]]:
    """(steps on the storage host, steps on the head) for storage.backend."""
    from coursehub.steps.kube_common import HelmRelease, Manifest

    backend = settings.storage.backend
    if backend == "none":
        return [], []
    if backend == "rook":
        raise AddonError("storage.backend rook: Rook/Ceph is optional and not automated by CourseHub; "
                         "use cinder (Cinder CSI) or nfs")
    if backend == "cinder":
        return [], [CloudConfig(settings, inv.dir),
                    HelmRelease("cinder-csi", "kube-system", pins.chart("cinder-csi-chart"),
                                render.chart_values("k8s/cinder-csi-values.yaml.j2"), inv.dir),
                    Manifest("storageclass-cinder", render.cinder_storageclass(settings))]
    storage = [h for h in inv.hosts if h.has("storage")] or [inv.head()]
    server = storage[0]
    return [(server, NfsExport(settings, inv))], [
        HelmRelease("nfs-provisioner", "kube-system", pins.chart("nfs-subdir-chart"),
                    render.nfs_values(settings, server.address), inv.dir)]


def lb_steps(settings: Settings, inv: Inventory) -> list[Step]:
    from coursehub.steps.kube_common import HelmRelease, Manifest

    lb = settings.kubernetes.load_balancer
    if lb == "metallb":
        return [HelmRelease("metallb", "metallb-system", pins.chart("metallb-chart"),
                            render.chart_values("k8s/metallb-values.yaml.j2"), inv.dir),
                Manifest("metallb-pool", render.metallb_pool(settings))]
    if lb == "octavia":
        return [CloudConfig(settings, inv.dir),
                HelmRelease("openstack-ccm", "kube-system", pins.chart("occm-chart"),
                            render.chart_values("k8s/occm-values.yaml.j2"), inv.dir)]
    return []
