"""Runbook operations on the cluster, as steps run on the head (so --dry-run and reports work).

Each is probe -> decide -> apply -> verify like every CourseHub step; the planning is in
pure functions (`drain_plan`, `node_rows`, `pick_claim`, ...) tested on fixtures.

- Cordon / Uncordon a node.
- Drain: cordon, optionally stop the users' servers on the node through the hub API
  (the hub then forgets them cleanly, instead of seeing its pods evicted), then
  `kubectl drain --ignore-daemonsets --delete-emptydir-data --timeout`. Before that the
  PodDisruptionBudgets are read: pods whose budget allows no disruption (z2jh's proxy
  with one replica, z2jh #1934) are named up front instead of letting drain hang until
  its timeout; `ignore_pdb` deletes instead of evicting, only when the admin asks.
- Taint / Untaint (the runbook's `PreferNoSchedule` for a sick node).
- InspectUser: a pod mounting the user's home volume; KillStuckPod: force delete, then
  kill the container's process tree on its node if it survived; SharedSecret; Prepull.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coursehub.kube import commands as k
from coursehub.kube import parse, render
from coursehub.steps import Action, Step

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Inventory
    from coursehub.settings import Settings


class OpsError(Exception):
    """An operation that cannot go ahead as asked; str() is one line saying why and what to do."""


def _nodes(remote: Remote, name: str = "") -> list[parse.Node]:
    out = remote.run(k.sh(k.get_json("nodes" if not name else "node", name, ignore_not_found=bool(name))))
    return parse.parse_nodes(out.stdout)


def _node(remote: Remote, name: str) -> parse.Node:
    found = _nodes(remote, name)
    if not found:
        raise OpsError(f"no node {name!r} in the cluster (see `inv ops.nodes`)")
    return found[0]


# ----------------------------------------------------------------------------- cordon
class Cordon(Step):
    """Mark a node unschedulable (on=True) or schedulable again (on=False)."""

    def __init__(self, node: str, on: bool = True):
        self.node, self.on = node, on
        self.name = ("cordon " if on else "uncordon ") + node

    def probe(self, remote: Remote) -> parse.Node:
        return _node(remote, self.node)

    def decide(self, fact: parse.Node, remote: Remote) -> list[Action]:
        if fact.unschedulable == self.on:
            return []
        argv = k.cordon(self.node) if self.on else k.uncordon(self.node)
        return [Action(why="schedulable" if self.on else "cordoned", command=k.sh(argv))]


# ----------------------------------------------------------------------------- taint
class Taint(Step):
    """Add (or with remove=True take off) a taint, e.g. the runbook's PreferNoSchedule on a sick node."""

    def __init__(self, node: str, key: str, value: str = "", effect: str = "PreferNoSchedule", remove: bool = False):
        if effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise OpsError(f"--effect {effect!r}: expected NoSchedule, PreferNoSchedule or NoExecute")
        self.node, self.key, self.value, self.effect, self.remove = node, key, value, effect, remove
        self.name = ("untaint " if remove else "taint ") + node

    def probe(self, remote: Remote) -> parse.Node:
        return _node(remote, self.node)

    def decide(self, fact: parse.Node, remote: Remote) -> list[Action]:
        have = [t for t in fact.taints if t.key == self.key and t.effect == self.effect]
        if self.remove:
            return [Action(why=f"tainted {have[0].text()}", command=k.sh(k.untaint(self.node, self.key, self.effect)))] if have else []
        if have and have[0].value == self.value:
            return []
        return [Action(why=f"not tainted {self.key}:{self.effect}" if not have else f"value {have[0].value!r}",
                       command=k.sh(k.taint(self.node, self.key, self.value, self.effect)))]


# ----------------------------------------------------------------------------- drain
@dataclass
class DrainPlan:
    node: str
    users: list[str]  # hub users with a server on the node
    blockers: list[tuple[parse.Pod, parse.Pdb]]
    evictable: list[parse.Pod] = field(default_factory=list)

    def blocker_text(self) -> str:
        return "; ".join(f"{p.namespace}/{p.name} (PodDisruptionBudget {b.name}: {b.disruptions_allowed} disruptions allowed)"
                         for p, b in self.blockers)


def drain_plan(node: str, pods: Iterable[parse.Pod], pdbs: Iterable[parse.Pdb]) -> DrainPlan:
    """Who is on `node`, which user servers to stop, and which pods a budget would block (pure)."""
    on = [p for p in pods if p.node == node and not p.deleting and p.phase not in ("Succeeded", "Failed")]
    users = sorted({p.username or p.labels.get("hub.jupyter.org/username", "") for p in on if p.is_user_server} - {""})
    evictable = [p for p in on if not p.is_daemonset]
    blockers = [(p, b) for p, b in parse.pdb_blockers(evictable, pdbs) if not p.is_user_server]
    return DrainPlan(node, users, blockers, evictable)


class Drain(Step):
    """Cordon, optionally stop the node's user servers through the hub API, then drain."""

    def __init__(self, node: str, timeout: int = 300, stop_servers: Callable[[list[str]], Any] | None = None,
                 ignore_pdb: bool = False, wait_servers: float = 120):
        self.node, self.timeout, self.stop_servers, self.ignore_pdb = node, timeout, stop_servers, ignore_pdb
        self.wait_servers = wait_servers
        self.name = "drain " + node

    def probe(self, remote: Remote) -> dict[str, Any]:
        node = _node(remote, self.node)
        pods = parse.parse_pods(remote.run(k.sh(k.get_json("pods", all_namespaces=True,
                                                           field_selector=f"spec.nodeName={self.node}"))).stdout)
        pdbs = parse.parse_pdbs(remote.run(k.sh(k.get_json("poddisruptionbudgets", all_namespaces=True))).stdout)
        return {"node": node, "plan": drain_plan(self.node, pods, pdbs)}

    def decide(self, fact: dict[str, Any], remote: Remote) -> list[Action]:
        node: parse.Node = fact["node"]
        plan: DrainPlan = fact["plan"]
        acts = []
        if not node.unschedulable:
            acts.append(Action(why="schedulable", command=k.sh(k.cordon(self.node))))
        if plan.users and self.stop_servers is not None:
            acts.append(Action(why=f"{len(plan.users)} user server(s) on the node", label="stop through the hub API: "
                               + ", ".join(plan.users), fn=lambda r, u=plan.users: self._stop(r, u)))
        if plan.blockers and not self.ignore_pdb:
            raise OpsError(f"{self.node}: eviction would be refused for {plan.blocker_text()}; scale that deployment "
                           "up or move the pod first, or pass --ignore-pdb to delete it anyway")
        if plan.evictable:
            acts.append(Action(why=f"{len(plan.evictable)} pod(s) to move", command=k.sh(
                k.drain(self.node, timeout=self.timeout, disable_eviction=self.ignore_pdb and bool(plan.blockers)))))
        return acts

    def _stop(self, remote: Remote, users: list[str]) -> None:
        assert self.stop_servers is not None
        self.stop_servers(users)
        deadline = time.monotonic() + self.wait_servers
        while time.monotonic() < deadline:  # let KubeSpawner delete its pods before drain looks
            pods = parse.parse_pods(remote.run(k.sh(k.get_json("pods", all_namespaces=True,
                                                               field_selector=f"spec.nodeName={self.node}"))).stdout)
            if not [p for p in pods if p.is_user_server and not p.deleting]:
                return
            time.sleep(3)


# ----------------------------------------------------------------------------- the nodes table
@dataclass
class NodeRow:
    name: str
    status: str
    purpose: str
    pods: int
    user_pods: int
    pressure: str
    taints: str
    version: str


def node_rows(nodes: Iterable[parse.Node], pods: Iterable[parse.Pod]) -> list[NodeRow]:
    pods = list(pods)
    rows = []
    for n in nodes:
        on = [p for p in pods if p.node == n.name and p.phase not in ("Succeeded", "Failed")]
        status = ("Ready" if n.ready else "NotReady") + (",SchedulingDisabled" if n.unschedulable else "")
        rows.append(NodeRow(
            name=n.name, status=status, purpose=n.labels.get("hub.jupyter.org/node-purpose", "-"), pods=len(on),
            user_pods=sum(1 for p in on if p.is_user_server), pressure=",".join(n.pressure) or "-",
            taints=",".join(t.text() for t in n.taints if not t.key.startswith("node.kubernetes.io/")) or "-",
            version=n.kubelet_version,
        ))
    return rows


def format_table(rows: list[NodeRow]) -> str:
    head = ("NODE", "STATUS", "PURPOSE", "PODS", "USERS", "PRESSURE", "TAINTS", "KUBELET")
    data = [head] + [(r.name, r.status, r.purpose, str(r.pods), str(r.user_pods), r.pressure, r.taints, r.version)
                     for r in rows]
    widths = [max(len(row[i]) for row in data) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in data) + "\n"


class Nodes(Step):
    """Read-only: the node table (kept as the host's output)."""

    name = "nodes"

    def probe(self, remote: Remote) -> str:
        nodes = _nodes(remote)
        pods = parse.parse_pods(remote.run(k.sh(k.get_json("pods", all_namespaces=True))).stdout)
        return format_table(node_rows(nodes, pods))

    def decide(self, fact: str, remote: Remote) -> list[Action]:
        return [Action(why="report", always=True, label="node table", fn=lambda r, t=fact: r.kept.append(t))]

    def verify(self, remote: Remote) -> list[Action]:
        return []


# ----------------------------------------------------------------------------- inspect a user's home
def pick_claim(username: str, pvcs: list[dict[str, Any]]) -> str | None:
    """The user's home PVC: one annotated with the username, else KubeSpawner 7's name, else the legacy one."""
    names = {(p.get("metadata") or {}).get("name", ""): p for p in pvcs}
    for name, p in names.items():
        if ((p.get("metadata") or {}).get("annotations") or {}).get("hub.jupyter.org/username") == username:
            return name
    for name in parse.claim_names(username):
        if name in names:
            return name
    return None


def inspect_pod_name(username: str) -> str:
    return f"inspect-{parse.safe_slug(username, 40)}"


class InspectUser(Step):
    """A pod mounting `username`'s home volume; prints the command that opens a shell in it."""

    def __init__(self, settings: Settings, username: str, namespace: str, ssh_hint: str = ""):
        self.settings, self.username, self.namespace, self.ssh_hint = settings, username, namespace, ssh_hint
        self.pod = inspect_pod_name(username)
        self.name = "inspect " + username

    def probe(self, remote: Remote) -> dict[str, Any]:
        import json

        pvcs = json.loads(remote.run(k.sh(k.get_json("persistentvolumeclaims", namespace=self.namespace))).stdout or "{}")
        pod = remote.run(k.sh(k.get_json("pod", self.pod, namespace=self.namespace, ignore_not_found=True))).stdout
        return {"claim": pick_claim(self.username, pvcs.get("items", [])), "pod": parse.parse_pods(pod)}

    def decide(self, fact: dict[str, Any], remote: Remote) -> list[Action]:
        if fact["claim"] is None:
            raise OpsError(f"no home volume for {self.username!r} in namespace {self.namespace} "
                           f"(looked for {', '.join(parse.claim_names(self.username))} and the username annotation)")
        shell = k.sh(k.exec_shell(self.pod, self.namespace, "/bin/bash"))
        hint = [Action(why="how to get in", always=True, label=f"open a shell: {self.ssh_hint}sudo {shell}",
                       fn=lambda r: r.kept.append(f"claim {fact['claim']} mounted at /home/jovyan in pod "
                                                  f"{self.namespace}/{self.pod} (deleted after an hour)\n"
                                                  f"open a shell:  {self.ssh_hint}sudo {shell}\n"))]
        if fact["pod"]:
            return hint
        text = render.inspect_pod(self.settings, self.pod, self.namespace, self.username, fact["claim"])
        from coursehub.steps.kube_common import run_stdin

        return [Action(why=f"mount {fact['claim']}", label=f"kubectl apply pod {self.namespace}/{self.pod}",
                       fn=lambda r: run_stdin(r, k.sh(k.apply("-")), text)),
                Action(why="wait until it runs", command=k.sh(k.kubectl(
                    "wait", "--for=condition=Ready", f"pod/{self.pod}", f"--namespace={self.namespace}", "--timeout=300s")))] + hint

    def verify(self, remote: Remote) -> list[Action]:
        return []


# ----------------------------------------------------------------------------- stuck pods
def find_user_pod(username: str, pods: Iterable[parse.Pod]) -> parse.Pod | None:
    pods = list(pods)
    for p in pods:
        if p.is_user_server and p.username == username:
            return p
    names = parse.user_pod_names(username)
    return next((p for p in pods if p.name in names), None)


class KillStuckPod(Step):
    """Force-delete a pod; if its containers still run on the node, kill their process trees there."""

    def __init__(self, inv: Inventory, namespace: str, pod: str = "", username: str = ""):
        self.inv, self.namespace, self.pod_name, self.username = inv, namespace, pod, username
        self.name = "kill-stuck-pod " + (pod or username)

    def probe(self, remote: Remote) -> parse.Pod | None:
        pods = parse.parse_pods(remote.run(k.sh(k.get_json("pods", namespace=self.namespace))).stdout)
        if self.pod_name:
            return next((p for p in pods if p.name == self.pod_name), None)
        return find_user_pod(self.username, pods)

    def decide(self, fact: parse.Pod | None, remote: Remote) -> list[Action]:
        if fact is None:
            raise OpsError(f"no pod {self.pod_name or 'of user ' + repr(self.username)} in namespace {self.namespace}")
        return [Action(why=f"stuck on {fact.node or 'no node'}" + (" (already deleting)" if fact.deleting else ""),
                       always=True, label=k.sh(k.delete_pod_force(fact.name, fact.namespace)),
                       fn=lambda r, p=fact: self._kill(r, p))]

    def _kill(self, remote: Remote, pod: parse.Pod) -> None:
        remote.run(k.sh(k.delete_pod_force(pod.name, pod.namespace)), check=False)
        if not pod.node or not pod.container_ids:
            return
        killed = kill_on_node(self.inv, pod.node, [parse.container_id(c) for c in pod.container_ids])
        remote.kept.append(f"{pod.namespace}/{pod.name}: force-deleted; "
                           + (f"killed {len(killed)} process(es) left on {pod.node}" if killed else f"nothing left running on {pod.node}"))

    def verify(self, remote: Remote) -> list[Action]:
        return []


def kill_on_node(inv: Inventory, node: str, container_ids: list[str]) -> list[int]:
    """Kill the process trees of containers still running on `node` (found by inventory name)."""
    from coursehub import fleet, secrets

    host = next((h for h in inv.hosts if render.node_name(h) == node), None)
    if host is None:
        raise OpsError(f"node {node} is not in the inventory: kill its containers by hand (crictl inspect, kill)")
    remote = fleet.Remote(host, fleet.connect(inv, host), secrets.redactor())
    pids = []
    for cid in container_ids:
        pid = remote.run(k.sh(k.crictl_pid(cid)) + " 2>/dev/null", check=False).stdout.strip()
        if pid.isdigit() and int(pid) > 1:
            pids += parse.process_tree(remote.run(k.sh(k.ps_tree())).stdout, int(pid))
    if pids:
        remote.run(k.sh(k.kill(pids)), check=False)
    return pids


# ----------------------------------------------------------------------------- shared secret, prepull
class SharedSecret(Step):
    """A generic Secret from local files, applied through stdin (the values never touch a host's disk)."""

    def __init__(self, settings: Settings, name: str, namespace: str, files: dict[str, bytes]):
        import hashlib

        self.text = render.shared_secret(settings, name, namespace, files)
        self.digest = hashlib.sha256(self.text.encode()).hexdigest()
        self.secret, self.namespace = name, namespace
        self.name = f"secret {namespace}/{name}"

    def probe(self, remote: Remote) -> bool:
        out = remote.run(k.sh(k.get_json("secret", self.secret, namespace=self.namespace, ignore_not_found=True)))
        return bool(out.stdout.strip())

    def decide(self, fact: bool, remote: Remote) -> list[Action]:
        from coursehub.steps.kube_common import run_stdin

        return [Action(why="update" if fact else "missing", always=True, secret=True,
                       label=f"kubectl apply --server-side (Secret {self.namespace}/{self.secret}, through stdin)",
                       fn=lambda r: run_stdin(r, k.sh(k.apply("-")), self.text))]

    def verify(self, remote: Remote) -> list[Action]:
        return [] if self.probe(remote) else [Action(why="still missing", command="true")]


def prepull_name(image: str) -> str:
    return "prepull-" + parse.safe_slug(image.rsplit("/", 1)[-1].replace(":", "-").replace("@", "-"), 40)


class Prepull(Step):
    """Pull `image` on every node (a DaemonSet whose init container uses it), then remove the DaemonSet."""

    def __init__(self, settings: Settings, image: str, namespace: str, timeout: int = 1800):
        self.image, self.namespace, self.timeout = image, namespace, timeout
        self.ds = prepull_name(image)
        self.text = render.prepull_daemonset(settings, self.ds, namespace, image)
        self.name = "prepull " + image

    def probe(self, remote: Remote) -> None:
        return None

    def decide(self, fact: None, remote: Remote) -> list[Action]:
        from coursehub.steps.kube_common import run_stdin

        return [
            Action(why="pull on every node", always=True, label=f"kubectl apply daemonset/{self.ds}",
                   fn=lambda r: run_stdin(r, k.sh(k.apply("-")), self.text)),
            Action(why="until every node has it", always=True,
                   command=k.sh(k.rollout_status(f"daemonset/{self.ds}", self.namespace, self.timeout))),
            Action(why="done: the image stays in each node's cache", always=True,
                   command=k.sh(k.kubectl("delete", f"daemonset/{self.ds}", f"--namespace={self.namespace}",
                                          "--ignore-not-found", "--wait=false"))),
        ]

    def verify(self, remote: Remote) -> list[Action]:
        return []
