"""Probe output -> typed facts. Pure functions; each is tested on a fixture file.

The fixtures in tests/unit/kube/fixtures/ were written by hand from the upstream
documentation and API reference of the pinned versions (no cluster can run here);
their README says where each shape comes from.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class ParseError(ValueError):
    """Output that does not have the documented shape; str() names what."""


def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(f"{what}: not JSON ({e.msg} at line {e.lineno})") from None


def _items(text: str, what: str) -> list[dict[str, Any]]:
    """The items of a `kubectl get -o json` List (or one object); empty text means none."""
    if not text.strip():
        return []
    data = _json(text, what)
    if isinstance(data, dict) and isinstance(data.get("items"), list):
        return data["items"]
    if isinstance(data, dict) and "kind" in data:
        return [data]
    raise ParseError(f"{what}: expected a List with items")


# ----------------------------------------------------------------------------- nodes
@dataclass
class Taint:
    key: str
    value: str
    effect: str

    def text(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"


@dataclass
class Node:
    name: str
    ready: bool
    unschedulable: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[Taint] = field(default_factory=list)
    conditions: dict[str, str] = field(default_factory=dict)  # type -> "True"/"False"/"Unknown"
    kubelet_version: str = ""
    internal_ip: str = ""

    @property
    def pressure(self) -> list[str]:
        """Which of DiskPressure, MemoryPressure, PIDPressure are True."""
        return [c for c in ("DiskPressure", "MemoryPressure", "PIDPressure") if self.conditions.get(c) == "True"]

    @property
    def roles(self) -> list[str]:
        return sorted(k.split("/", 1)[1] for k in self.labels if k.startswith("node-role.kubernetes.io/"))


def node_from(obj: Mapping[str, Any]) -> Node:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
    conditions = {c.get("type", ""): c.get("status", "Unknown") for c in status.get("conditions") or []}
    addresses = {a.get("type"): a.get("address", "") for a in status.get("addresses") or []}
    return Node(
        name=meta.get("name", ""),
        ready=conditions.get("Ready") == "True",
        unschedulable=bool(spec.get("unschedulable", False)),
        labels=dict(meta.get("labels") or {}),
        taints=[Taint(t.get("key", ""), t.get("value", "") or "", t.get("effect", "")) for t in spec.get("taints") or []],
        conditions=conditions,
        kubelet_version=(status.get("nodeInfo") or {}).get("kubeletVersion", ""),
        internal_ip=addresses.get("InternalIP", ""),
    )


def parse_nodes(text: str) -> list[Node]:
    """`kubectl get nodes -o json` (or one node's JSON) -> nodes."""
    return [node_from(o) for o in _items(text, "kubectl get nodes")]


# ----------------------------------------------------------------------------- pods
@dataclass
class Pod:
    namespace: str
    name: str
    node: str = ""
    phase: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    owners: list[str] = field(default_factory=list)  # owner kinds
    container_ids: list[str] = field(default_factory=list)  # "containerd://<id>" as reported
    claims: list[str] = field(default_factory=list)  # PVC names mounted
    deleting: bool = False

    @property
    def is_daemonset(self) -> bool:
        return "DaemonSet" in self.owners

    @property
    def is_user_server(self) -> bool:
        """A JupyterHub user server started by KubeSpawner (z2jh labels it so)."""
        return self.labels.get("component") == "singleuser-server"

    @property
    def username(self) -> str:
        return self.annotations.get("hub.jupyter.org/username", "")


def pod_from(obj: Mapping[str, Any]) -> Pod:
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
    statuses = list(status.get("containerStatuses") or []) + list(status.get("initContainerStatuses") or [])
    return Pod(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        node=spec.get("nodeName", "") or "",
        phase=status.get("phase", ""),
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        owners=[o.get("kind", "") for o in meta.get("ownerReferences") or []],
        container_ids=[s["containerID"] for s in statuses if s.get("containerID")],
        claims=[v["persistentVolumeClaim"]["claimName"] for v in spec.get("volumes") or []
                if (v.get("persistentVolumeClaim") or {}).get("claimName")],
        deleting=bool(meta.get("deletionTimestamp")),
    )


def parse_pods(text: str) -> list[Pod]:
    """`kubectl get pods -A -o json` -> pods."""
    return [pod_from(o) for o in _items(text, "kubectl get pods")]


def container_id(reported: str) -> str:
    """'containerd://abc' -> 'abc' (the id crictl takes)."""
    return reported.split("://", 1)[-1]


# ----------------------------------------------------------------------------- PDBs
@dataclass
class Selector:
    match_labels: dict[str, str] = field(default_factory=dict)
    expressions: list[dict[str, Any]] = field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for e in self.expressions:
            key, op, values = e.get("key", ""), e.get("operator", ""), e.get("values") or []
            if op == "In" and labels.get(key) not in values:
                return False
            if op == "NotIn" and key in labels and labels[key] in values:
                return False
            if op == "Exists" and key not in labels:
                return False
            if op == "DoesNotExist" and key in labels:
                return False
        return True


@dataclass
class Pdb:
    namespace: str
    name: str
    selector: Selector
    disruptions_allowed: int
    spec: dict[str, Any] = field(default_factory=dict)

    def covers(self, pod: Pod) -> bool:
        # An empty selector selects every pod of the namespace (policy/v1).
        return pod.namespace == self.namespace and self.selector.matches(pod.labels)


def parse_pdbs(text: str) -> list[Pdb]:
    """`kubectl get poddisruptionbudgets -A -o json` -> budgets."""
    out = []
    for o in _items(text, "kubectl get poddisruptionbudgets"):
        meta, spec, status = o.get("metadata", {}), o.get("spec", {}), o.get("status", {})
        sel = spec.get("selector") or {}
        out.append(Pdb(
            namespace=meta.get("namespace", ""), name=meta.get("name", ""),
            selector=Selector(dict(sel.get("matchLabels") or {}), list(sel.get("matchExpressions") or [])),
            disruptions_allowed=int(status.get("disruptionsAllowed", 0)),
            spec={k: spec[k] for k in ("minAvailable", "maxUnavailable") if k in spec},
        ))
    return out


def pdb_blockers(pods: Iterable[Pod], pdbs: Iterable[Pdb]) -> list[tuple[Pod, Pdb]]:
    """Pods an eviction would refuse now: covered by a budget that allows no disruption."""
    pdbs = list(pdbs)
    return [(p, b) for p in pods if not p.is_daemonset and not p.deleting
            for b in pdbs if b.covers(p) and b.disruptions_allowed < 1]


# ----------------------------------------------------------------------------- kubeadm
@dataclass(frozen=True)
class JoinInfo:
    endpoint: str  # host:port of the API server
    token: str  # id.secret
    ca_hashes: tuple[str, ...]

    @property
    def token_id(self) -> str:
        return self.token.split(".", 1)[0]


_TOKEN = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
_CA_HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def parse_join_command(text: str) -> JoinInfo:
    """The output of `kubeadm token create --print-join-command`.

    One line: `kubeadm join <host:port> --token <id.secret> --discovery-token-ca-cert-hash sha256:<hex>`.
    """
    line = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("kubeadm join ")), "")
    words = line.split()
    if len(words) < 3:
        raise ParseError("kubeadm token create: no `kubeadm join` line in its output")
    endpoint, token, hashes = words[2], "", []
    flags = words[3:]
    for i, w in enumerate(flags):
        name, eq, val = w.partition("=")
        if not eq and i + 1 < len(flags):
            val = flags[i + 1]
        if name == "--token":
            token = val
        elif name == "--discovery-token-ca-cert-hash":
            hashes.append(val)
    if not _TOKEN.match(token):
        raise ParseError("kubeadm token create: the join line has no valid --token")
    if not hashes or not all(_CA_HASH.match(h) for h in hashes):
        raise ParseError("kubeadm token create: the join line has no sha256 --discovery-token-ca-cert-hash")
    if ":" not in endpoint:
        raise ParseError(f"kubeadm token create: endpoint {endpoint!r} has no port")
    return JoinInfo(endpoint, token, tuple(hashes))


@dataclass(frozen=True)
class Token:
    id: str
    description: str
    expires: str  # RFC 3339, "" for tokens that never expire
    usages: tuple[str, ...] = ()


KUBEADM_INIT_TOKEN = "The default bootstrap token generated by 'kubeadm init'."


def parse_token_list(text: str) -> list[Token]:
    """`kubeadm token list -o json`: one JSON object per token, one after another."""
    dec = json.JSONDecoder()
    out, i, text = [], 0, text.strip()
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise ParseError(f"kubeadm token list: not JSON ({e.msg})") from None
        for o in obj if isinstance(obj, list) else [obj]:
            tok = str(o.get("token", ""))
            out.append(Token(tok.split(".", 1)[0], str(o.get("description", "")), str(o.get("expires") or ""),
                             tuple(o.get("usages") or ())))
    return out


# ----------------------------------------------------------------------------- apt
def parse_madison(text: str) -> dict[str, list[str]]:
    """`apt-cache madison a b` -> {package: [versions, as listed]}."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) >= 3 and parts[0] and parts[1]:
            out.setdefault(parts[0], [])
            if parts[1] not in out[parts[0]]:
                out[parts[0]].append(parts[1])
    return out


def upstream(deb_version: str) -> str:
    """'1.33.5-1.1' -> '1.33.5' (drop the epoch and the Debian revision)."""
    v = deb_version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def _revision_key(deb_version: str) -> tuple[int, ...]:
    rev = deb_version.rsplit("-", 1)[-1] if "-" in deb_version else "0"
    return tuple(int(x) for x in re.findall(r"\d+", rev))


def pick_version(available: Iterable[str], want: str) -> str | None:
    """The Debian version of upstream `want` (the newest packaging revision), or None."""
    matching = [v for v in available if upstream(v) == want]
    return max(matching, key=_revision_key) if matching else None


@dataclass(frozen=True)
class Installed:
    version: str
    status: str  # dpkg's abbreviation: wanted state, then status ("ii" installed, "hi" installed and held)

    @property
    def ok(self) -> bool:
        """Installed, whatever the selection: 'ii' and 'hi' (held) both count; 'rc', 'un' do not."""
        return len(self.status) >= 2 and self.status[1] == "i"


def parse_dpkg(text: str) -> dict[str, Installed]:
    """`dpkg-query --show --showformat='${Package}\\t${Version}\\t${db:Status-Abbrev}\\n'`."""
    out = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0]:
            out[parts[0]] = Installed(parts[1], parts[2].strip())
    return out


def parse_holds(text: str) -> set[str]:
    """`apt-mark showhold`: one package per line."""
    return {ln.strip() for ln in text.splitlines() if ln.strip()}


# ----------------------------------------------------------------------------- helm
@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: str  # "<chart>-<version>"
    status: str
    app_version: str = ""


def parse_helm_list(text: str) -> list[Release]:
    """`helm list --all-namespaces --output=json`."""
    if not text.strip():
        return []
    data = _json(text, "helm list")
    if not isinstance(data, list):
        raise ParseError("helm list: expected a JSON list")
    return [Release(str(r.get("name", "")), str(r.get("namespace", "")), str(r.get("chart", "")),
                    str(r.get("status", "")), str(r.get("app_version", ""))) for r in data]


def chart_url(index_text: str, chart: str, version: str, repo: str) -> tuple[str, str]:
    """(download URL, index digest) of `chart` `version` in a repository's index.yaml."""
    import urllib.parse

    import yaml

    try:
        index = yaml.safe_load(index_text) or {}
    except yaml.YAMLError:
        raise ParseError(f"{repo}/index.yaml: not YAML") from None
    for entry in (index.get("entries") or {}).get(chart) or []:
        if str(entry.get("version")) == version:
            urls = entry.get("urls") or []
            if not urls:
                break
            return urllib.parse.urljoin(repo.rstrip("/") + "/", urls[0]), str(entry.get("digest", ""))
    raise ParseError(f"{repo}/index.yaml: no {chart} {version}")


# ----------------------------------------------------------------------------- probes in one round trip
SECTION = "--coursehub-section--"


def sections(text: str) -> list[str]:
    """Split the output of a batched probe at the SECTION marker lines."""
    parts, cur = [], []
    for line in text.splitlines():
        if line.strip() == SECTION:
            parts.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    parts.append("\n".join(cur))
    return parts


# ----------------------------------------------------------------------------- processes
def process_tree(ps_text: str, root: int) -> list[int]:
    """`root` and all its descendants from `ps -e -o pid=,ppid=`, children before parents."""
    children: dict[int, list[int]] = {}
    for line in ps_text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            children.setdefault(int(parts[1]), []).append(int(parts[0]))
    out: list[int] = []

    def walk(pid: int, depth: int = 0) -> None:
        if depth > 256:
            return
        for c in children.get(pid, []):
            walk(c, depth + 1)
        out.append(pid)

    walk(root)
    return out


# ----------------------------------------------------------------------------- KubeSpawner names
_SAFE_ESCAPE = set(string.ascii_lowercase + string.digits)


def escape_slug(name: str) -> str:
    """KubeSpawner's legacy ("escape") slug: unsafe characters become -XX per UTF-8 byte, lowercased."""
    out = []
    for ch in name:
        if ch in _SAFE_ESCAPE:
            out.append(ch)
        else:
            out.extend(f"-{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out).lower()


_OBJECT = re.compile(r"^[a-z0-9-]+$")


def _valid_object_name(s: str) -> bool:
    return (0 < len(s) <= 63 and s[0] in string.ascii_lowercase and s[-1] in _SAFE_ESCAPE
            and bool(_OBJECT.match(s)))


def _safe_part(name: str, max_length: int) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", name.lower()).lstrip("-")[:max_length].rstrip("-")
    if s and s[0] not in string.ascii_lowercase:
        s = "x-" + s[: max_length - 2]
    return s or "x"


def safe_slug(name: str, max_length: int | None = None) -> str:
    """KubeSpawner 7's "safe" slug: the name itself when it is a valid object name (and fits
    `max_length`), else `part---hash8` in at most `max_length` (default 32) characters."""
    if "--" not in name and _valid_object_name(name) and (max_length is None or len(name) <= max_length):
        return name
    length = max_length or 32
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
    return f"{_safe_part(name, length - 11)}---{digest}"


def claim_names(username: str) -> list[str]:
    """The default server's PVC under both schemes: KubeSpawner 7 (`safe`) first, then legacy (`escape`)."""
    names = [f"claim-{safe_slug(username)}", f"claim-{escape_slug(username)}"]
    return list(dict.fromkeys(names))


def user_pod_names(username: str) -> list[str]:
    names = [f"jupyter-{safe_slug(username)}", f"jupyter-{escape_slug(username)}"]
    return list(dict.fromkeys(names))
