"""The control plane on the head: kubeadm init (once), the admin's kubeconfig, node roles.

ControlPlane decides from the API, not from a marker file: `kubectl get --raw=/readyz`
with the admin kubeconfig answers `ok` once the head is initialised. Only when the API
does not answer *and* no static-pod manifest exists does it run `kubeadm init` from the
rendered configuration (/etc/coursehub/kubeadm-config.yaml, 0600). A head with manifests
but no answering API is reported, never re-initialised. `kubeadm init` always mints a
24-hour bootstrap token; CourseHub deletes it at once (workers get their own 15-minute
tokens when they join).

AdminKubeconfig copies /etc/kubernetes/admin.conf to the image user's ~/.kube/config
(0600, owned by the user), whenever the two differ.

NodeRoles keeps every node's z2jh label and taint as the inventory says: the head is
`hub.jupyter.org/node-purpose=core` (tainted `hub.jupyter.org/dedicated=core:NoSchedule`
when vars.yml asks for a dedicated control plane and there are workers), workers are
`...=user`; kubeadm's own control-plane taint is removed in favour of z2jh's names.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coursehub.kube import ADMIN_CONF, DEDICATED_TAINT, PURPOSE_LABEL, STATE_DIR, parse, render
from coursehub.kube import commands as k
from coursehub.steps import Action, FileSpec, Step, ensure_file, file_probe_command, parse_file_fact

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host, Inventory
    from coursehub.settings import Settings

CONFIG_PATH = f"{STATE_DIR}/kubeadm-config.yaml"
APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
KUBEADM_TAINT = "node-role.kubernetes.io/control-plane"


class ControlPlaneError(Exception):
    """The head is in a state CourseHub will not touch by itself; str() says what to do."""


@dataclass
class ControlFact:
    api_ready: bool
    manifests: bool
    config: Any  # FileFact
    tokens: list[parse.Token] = field(default_factory=list)


def probe_command() -> str:
    return "; ".join([
        f"{k.sh(k.readyz())} 2>/dev/null || echo not-ready",
        f"echo {parse.SECTION}",
        f"test -f {APISERVER_MANIFEST} && echo present || echo absent",
        f"echo {parse.SECTION}",
        file_probe_command(CONFIG_PATH),
        f"echo {parse.SECTION}",
        f"{k.sh(k.token_list())} 2>/dev/null || true",
    ])


def parse_probe(text: str) -> ControlFact:
    parts = parse.sections(text) + [""] * 4
    try:
        tokens = parse.parse_token_list(parts[3])
    except parse.ParseError:
        tokens = []
    return ControlFact(api_ready=parts[0].strip() == "ok", manifests=parts[1].strip() == "present",
                       config=parse_file_fact(parts[2].strip()), tokens=tokens)


class ControlPlane(Step):
    """kubeadm init on the head, only when its API does not answer yet."""

    name = "control-plane"

    def __init__(self, settings: Settings, head: Host, has_workers: bool):
        self.config = FileSpec(CONFIG_PATH, render.kubeadm_config(settings, head, has_workers), mode=0o600)

    def probe(self, remote: Remote) -> ControlFact:
        return parse_probe(remote.run(probe_command(), check=False).stdout)

    def decide(self, fact: ControlFact, remote: Remote) -> list[Action]:
        if fact.api_ready:
            acts = ensure_file(self.config, fact.config)
            for a in acts:  # record only: a running control plane keeps the settings it was made with
                a.why += " (recorded; the running control plane keeps its settings: kubeadm upgrade is manual)"
            return acts + token_cleanup(fact.tokens)
        if fact.manifests:
            raise ControlPlaneError(
                f"the head has a control plane ({APISERVER_MANIFEST} exists) but its API does not answer: "
                "check `systemctl status kubelet` and `crictl ps` on the head; CourseHub will not run kubeadm init again")
        return ensure_file(self.config, fact.config) + [
            Action(why="the API does not answer and no control plane exists", command=k.sh(k.kubeadm_init(CONFIG_PATH)),
                   label=f"kubeadm init --config={CONFIG_PATH}"),
            Action(why="kubeadm init's 24-hour bootstrap token is not needed", fn=delete_init_tokens,
                   label="kubeadm token delete <kubeadm init's default token>"),
        ]


def token_cleanup(tokens: list[parse.Token]) -> list[Action]:
    """Delete kubeadm init's long-lived default token if it is still there."""
    stale = [t for t in tokens if t.description == parse.KUBEADM_INIT_TOKEN]
    return [Action(why="kubeadm init's 24-hour bootstrap token", command=k.sh(k.token_delete(t.id)),
                   label=f"kubeadm token delete {t.id}") for t in stale]


def delete_init_tokens(remote: Remote) -> None:
    tokens = parse.parse_token_list(remote.run(k.sh(k.token_list())).stdout)
    for a in token_cleanup(tokens):
        a.run(remote)


# ----------------------------------------------------------------------------- the admin's kubeconfig
@dataclass
class KubeconfigFact:
    home: str
    admin_sha256: str | None
    user_file: Any  # FileFact


class AdminKubeconfig(Step):
    """The image user's ~/.kube/config: a copy of admin.conf, 0600, owned by the user."""

    name = "admin-kubeconfig"

    def __init__(self, user: str):
        self.user = user

    def probe(self, remote: Remote) -> KubeconfigFact:
        u = shlex.quote(self.user)
        home_out = remote.run(f"getent passwd {u} | cut -d: -f6", check=False).stdout.strip()
        home = home_out or ("/root" if self.user == "root" else f"/home/{self.user}")
        out = remote.run(f"{file_probe_command(ADMIN_CONF)}; echo {parse.SECTION}; "
                         f"{file_probe_command(home + '/.kube/config')}", check=False).stdout
        parts = parse.sections(out) + [""]
        return KubeconfigFact(home, parse_file_fact(parts[0].strip()).sha256, parse_file_fact(parts[1].strip()))

    def decide(self, fact: KubeconfigFact, remote: Remote) -> list[Action]:
        if fact.admin_sha256 is None:
            return []  # no control plane yet (dry run before init): nothing to copy
        f = fact.user_file
        group = f.group or self.user
        diffs = []
        if f.sha256 != fact.admin_sha256:
            diffs.append("missing" if f.sha256 is None else "differs from admin.conf")
        if f.sha256 is not None and (f.mode.lstrip("0") != "600" or f.owner != self.user):
            diffs.append(f"mode {f.mode} owner {f.owner}")
        if not diffs:
            return []
        dest = shlex.quote(fact.home + "/.kube/config")
        d = shlex.quote(fact.home + "/.kube")
        u = shlex.quote(self.user)
        g = f"$(id -gn {u})" if f.sha256 is None else shlex.quote(group)
        return [Action(why=", ".join(diffs), label=f"install -m 0600 admin.conf {fact.home}/.kube/config",
                       command=f"install -d -m 0700 -o {u} -g {g} {d} && "
                               f"install -m 0600 -o {u} -g {g} {ADMIN_CONF} {dest}")]


# ----------------------------------------------------------------------------- node roles
def wanted_roles(settings: Settings, inv: Inventory) -> dict[str, tuple[str, list[parse.Taint]]]:
    """node name -> (purpose label value, z2jh taints) as the inventory and vars.yml say."""
    head = inv.head()
    workers = [h for h in inv.hosts if h is not head]
    out = {render.node_name(head): ("core", [parse.Taint(**t) for t in render.control_plane_taints(settings, bool(workers))])}
    for h in workers:
        out[render.node_name(h)] = ("user", [])
    return out


def role_actions(nodes: list[parse.Node], wanted: dict[str, tuple[str, list[parse.Taint]]]) -> list[Action]:
    """kubectl label/taint commands that bring registered nodes to their wanted purpose and taints."""
    acts: list[Action] = []
    for n in nodes:
        if n.name not in wanted:
            continue
        purpose, taints = wanted[n.name]
        if n.labels.get(PURPOSE_LABEL) != purpose:
            acts.append(Action(why=f"{n.name}: {PURPOSE_LABEL}={n.labels.get(PURPOSE_LABEL, '(none)')}, want {purpose}",
                               command=k.sh(k.label(n.name, PURPOSE_LABEL, purpose))))
        have = {(t.key, t.value, t.effect) for t in n.taints if t.key == DEDICATED_TAINT}
        want = {(t.key, t.value, t.effect) for t in taints}
        for key, value, effect in sorted(want - have):
            acts.append(Action(why=f"{n.name}: not tainted {key}={value}:{effect}",
                               command=k.sh(k.taint(n.name, key, value, effect))))
        for key, _value, effect in sorted(have - want):
            acts.append(Action(why=f"{n.name}: tainted {key}:{effect}, not wanted",
                               command=k.sh(k.untaint(n.name, key, effect))))
        for t in n.taints:
            if t.key == KUBEADM_TAINT:
                acts.append(Action(why=f"{n.name}: kubeadm's control-plane taint (CourseHub uses z2jh's)",
                                   command=k.sh(k.untaint(n.name, KUBEADM_TAINT, t.effect))))
    return acts


class NodeRoles(Step):
    """Every registered node's z2jh purpose label and dedicated taint, from the inventory."""

    name = "node-roles"

    def __init__(self, settings: Settings, inv: Inventory):
        self.wanted = wanted_roles(settings, inv)

    def probe(self, remote: Remote) -> list[parse.Node]:
        out = remote.run(f"{k.sh(k.get_json('nodes'))} 2>/dev/null", check=False)
        return parse.parse_nodes(out.stdout) if out.ok else []

    def decide(self, fact: list[parse.Node], remote: Remote) -> list[Action]:
        return role_actions(fact, self.wanted)
