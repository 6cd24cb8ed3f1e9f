"""Pinned artifacts: every download CourseHub makes, by version and sha256.

Nothing is downloaded without a pinned version and a checksum to compare it
with. This table is the only place they live; `fetch()` downloads once per
process onto the admin's machine (cached in `inventory/cache/`, re-checked on
every use), compares the sha256 and refuses on any mismatch or unknown pin.
Hosts get the verified bytes over SSH: they need no network of their own for
these files (apt packages are the exception: apt verifies them against the
repository's signed index, whose signing key *is* pinned here by fingerprint).

How each checksum was obtained is recorded next to it (`source`). Where no
checksum could be confirmed, `sha256` is None and CourseHub refuses to install
the artifact until an admin records one: check the digest on a machine you
trust (the chart repository's index.yaml `digest:` for a chart, the release
page for a binary), then add it to `pins.yml` beside vars.yml
(or `$COURSEHUB_PINS`):

    # pins.yml: sha256 of artifacts CourseHub does not know yet
    nfs-subdir-chart: 0123...cdef

A wrong checksum fails closed: the download is refused, nothing is installed.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = [
    "Artifact", "Chart", "AptRepo", "PinError", "HELM_SHA256", "CNI", "CHARTS", "KUBERNETES_KEY_FINGERPRINT",
    "helm", "cni", "chart", "kubernetes_repo", "overrides", "require", "fetch", "sha256_hex",
]

# ----------------------------------------------------------------------------- the table
# pkgs.k8s.io signs every core:/stable:/v1.xx repository with one OBS key; its
# expiry is extended from time to time, which changes Release.key's bytes but not
# the fingerprint. So the key is pinned by fingerprint, not by file checksum.
# Source: `gpg --show-keys` of Release.key as quoted in kubernetes/kubernetes#128609
# and used unchanged by many independent installers (puppetlabs-kubernetes, cloud-init
# configurations, Terraform modules) for v1.27 to v1.36.
KUBERNETES_KEY_FINGERPRINT = "DE15B14486CD377B9E876E1A234654DA9A296436"


@dataclass(frozen=True)
class Artifact:
    """One file to download: where from, which version, and its sha256 (None: unknown)."""

    name: str
    version: str
    url: str
    sha256: str | None
    source: str
    filename: str


@dataclass(frozen=True)
class Chart:
    """A Helm chart from a chart repository, pinned by version and the sha256 of its .tgz."""

    name: str  # key in this table and in pins.yml
    chart: str  # the chart's name in its repository
    repo: str  # the chart repository (index.yaml lives there)
    version: str
    sha256: str | None
    source: str

    @property
    def filename(self) -> str:
        return f"{self.chart}-{self.version}.tgz"


@dataclass(frozen=True)
class AptRepo:
    """The pkgs.k8s.io repository of one Kubernetes minor version."""

    minor: str  # "1.33"
    keyring: str = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg"
    sources: str = "/etc/apt/sources.list.d/kubernetes.list"
    base: str = "https://pkgs.k8s.io/core:/stable:"
    fingerprint: str = KUBERNETES_KEY_FINGERPRINT

    @property
    def url(self) -> str:
        return f"{self.base}/v{self.minor}/deb/"

    @property
    def key_url(self) -> str:
        return self.url + "Release.key"

    @property
    def line(self) -> str:
        return f"deb [signed-by={self.keyring}] {self.url} /"


# Helm for linux-amd64, by version. Source: the "Installation and Upgrading"
# section of https://github.com/helm/helm/releases/tag/v3.19.0 (published
# 2025-09-11), which lists each tarball with its sha256; the same value is
# pinned by independent scripts that verify the download.
HELM_SHA256 = {
    "3.19.0": "a7f81ce08007091b86d8bd696eb4d86b8d0f2e1b9f6c714be62f82f96a594496",
}

# CNI manifests, applied unmodified (Calico) or with only the pod CIDR changed (Flannel).
CNI = {
    # Calico v3.30 is tested by Tigera on Kubernetes 1.30-1.33 (our default is 1.33).
    # sha256 of raw.githubusercontent.com/projectcalico/calico/v3.30.3/manifests/calico.yaml:
    # the same digest is pinned and checked (sha256sum -c) by at least six unrelated
    # public projects that download this exact URL; none computed here (no network).
    "calico": Artifact(
        name="calico-manifest", version="3.30.3",
        url="https://raw.githubusercontent.com/projectcalico/calico/v3.30.3/manifests/calico.yaml",
        sha256="9382d2b27a76f40c170454b408653e6d71e2205ef0aef069e942bb690e7381d0",
        source="pinned and checked by several independent public projects for this URL",
        filename="calico-v3.30.3.yaml",
    ),
    # sha256 of the v0.27.4 release asset kube-flannel.yml, as pinned by one public
    # project ("digest of the upstream v0.27.4 release asset"). Only one source: a
    # mistake here fails closed (the download is refused), it cannot install a wrong file.
    "flannel": Artifact(
        name="flannel-manifest", version="0.27.4",
        url="https://github.com/flannel-io/flannel/releases/download/v0.27.4/kube-flannel.yml",
        sha256="f17c57f82ffef1d53dbf558ac30755241980563044622778a15df339e4346c57",
        source="one public project's pin of the release asset; confirm before relying on it",
        filename="kube-flannel-v0.27.4.yml",
    ),
}

CHARTS = {
    # MetalLB 0.15.2: digest as logged by one public installer that verifies chart
    # pulls ("Helm chart pulled and verified ... checksum=..."). Single source: fails closed.
    "metallb-chart": Chart(
        name="metallb-chart", chart="metallb", repo="https://metallb.github.io/metallb", version="0.15.2",
        sha256="4f0fc313cd97819a1c78fff0a389dfe1c9f98bc490f33f521317475df1d7b873",
        source="one public installer's verified-pull log; confirm against the repository's index.yaml digest",
    ),
    # No digest found for these here: record one in pins.yml to use them.
    "nfs-subdir-chart": Chart(
        name="nfs-subdir-chart", chart="nfs-subdir-external-provisioner",
        repo="https://kubernetes-sigs.github.io/nfs-subdir-external-provisioner", version="4.0.18",
        sha256=None, source="unknown: take `digest:` for 4.0.18 from the repository's index.yaml",
    ),
    "cinder-csi-chart": Chart(
        name="cinder-csi-chart", chart="openstack-cinder-csi",
        repo="https://kubernetes.github.io/cloud-provider-openstack", version="2.33.0",
        sha256=None, source="unknown: take `digest:` for 2.33.0 from the repository's index.yaml",
    ),
    "occm-chart": Chart(
        name="occm-chart", chart="openstack-cloud-controller-manager",
        repo="https://kubernetes.github.io/cloud-provider-openstack", version="2.33.0",
        sha256=None, source="unknown: take `digest:` for 2.33.0 from the repository's index.yaml",
    ),
}


class PinError(Exception):
    """An artifact cannot be used: unknown checksum, download failed, or checksum mismatch.

    str() is one line that says what and how to fix it.
    """


# ----------------------------------------------------------------------------- lookups
def overrides_path() -> Path:
    """`$COURSEHUB_PINS`, or pins.yml beside vars.yml."""
    from coursehub.settings import vars_path

    return Path(os.environ.get("COURSEHUB_PINS") or vars_path().with_name("pins.yml"))


def overrides(path: Path | None = None) -> dict[str, str]:
    """The admin's recorded checksums (name -> sha256); {} without a pins.yml."""
    import yaml

    p = path or overrides_path()
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise PinError(f"{p}: expected lines `name: sha256`")
    out = {}
    for k, v in data.items():
        v = str(v).strip().lower()
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise PinError(f"{p}: {k}: not a sha256 (64 hex digits): {v!r}")
        out[str(k)] = v
    return out


def _with_override(item, extra: dict[str, str] | None):
    extra = overrides() if extra is None else extra
    return replace(item, sha256=extra[item.name]) if item.name in extra else item


def helm(version: str, extra: dict[str, str] | None = None) -> Artifact:
    """The helm tarball for linux-amd64 at `version` (vars.yml kubernetes.helm_version)."""
    art = Artifact(
        name="helm", version=version, url=f"https://get.helm.sh/helm-v{version}-linux-amd64.tar.gz",
        sha256=HELM_SHA256.get(version), filename=f"helm-v{version}-linux-amd64.tar.gz",
        source="helm release notes" if version in HELM_SHA256 else
        f"unknown: copy the Linux amd64 sha256 from https://github.com/helm/helm/releases/tag/v{version}",
    )
    return _with_override(art, extra)


def cni(name: str, extra: dict[str, str] | None = None) -> Artifact:
    """The pinned manifest of CNI `name` (calico or flannel)."""
    if name not in CNI:
        raise PinError(f"kubernetes.cni: no pinned manifest for {name!r} (pinned: {', '.join(CNI)})")
    return _with_override(CNI[name], extra)


def chart(name: str, extra: dict[str, str] | None = None) -> Chart:
    return _with_override(CHARTS[name], extra)


def kubernetes_repo(version: str) -> AptRepo:
    """The pkgs.k8s.io repository for Kubernetes `version` (1.33.5 -> v1.33)."""
    parts = version.split(".")
    return AptRepo(minor=".".join(parts[:2]))


def require(item: Artifact | Chart) -> str:
    """The pinned sha256 of `item`, or PinError saying how to obtain one."""
    if not item.sha256:
        what = f"{item.name} {item.version}"
        raise PinError(f"{what}: no sha256 is pinned, so CourseHub will not install it ({item.source}); "
                       f"record it as `{item.name}: <sha256>` in {overrides_path()}")
    return item.sha256


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- downloads
_FETCH_LOCK = threading.Lock()
_FETCHED: dict[str, bytes | PinError] = {}


def download(url: str, timeout: float = 60, limit: int = 200 << 20) -> bytes:
    """GET `url` (honouring the usual proxy variables); PinError on any failure."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "coursehub"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read(limit + 1)
    except urllib.error.HTTPError as e:
        raise PinError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise PinError(f"cannot download {url}: {reason}") from None
    if len(data) > limit:
        raise PinError(f"cannot download {url}: larger than {limit >> 20} MiB")
    return data


def fetch(url: str, sha256: str, cache: Path | None, filename: str, timeout: float = 60) -> bytes:
    """The bytes at `url`, which must hash to `sha256`; cached under `cache/filename`.

    Downloads at most once per process (a failure is remembered too, so twenty
    hosts get one download attempt and the same one-line message). A cached file
    is used only while its sha256 still matches.
    """
    with _FETCH_LOCK:
        known = _FETCHED.get(url)
        if isinstance(known, PinError):
            raise known
        if known is not None:
            return known
        path = cache / filename if cache else None
        if path is not None and path.is_file():
            data = path.read_bytes()
            if sha256_hex(data) == sha256:
                _FETCHED[url] = data
                return data
        try:
            data = download(url, timeout=timeout)
            got = sha256_hex(data)
            if got != sha256:
                raise PinError(f"{url}: sha256 mismatch (got {got}, pinned {sha256}); refusing to use it")
        except PinError as e:
            _FETCHED[url] = e
            raise
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        _FETCHED[url] = data
        return data


def forget() -> None:
    """Drop the per-process download memory (tests)."""
    with _FETCH_LOCK:
        _FETCHED.clear()
