"""Workers join the cluster: only nodes the API does not know, with a fresh 15-minute token.

Probe (read-only): the API on the head is asked whether a Node of this host's name
exists (through the head's own pooled connection); the worker is asked whether it
holds kubeadm state (/etc/kubernetes/kubelet.conf) from an earlier attempt.

Decide:
- registered -> nothing to do;
- not registered, clean -> join;
- not registered, but leftovers of a failed join -> `kubeadm reset --force`, then join.
  So a failed join is simply retried by the next run (the seed's marker file never did).

Apply: a token is created on the head at that moment (`kubeadm token create --ttl=15m
--print-join-command`), the worker runs `kubeadm join --config=/dev/stdin` with a
JoinConfiguration sent over SSH stdin (the token is in no file and no argv on the node,
and is registered with the redactor first), the token is deleted as soon as the join
returns, and the step waits until the API lists the node.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.kube import commands as k
from coursehub.kube import parse, render
from coursehub.steps import Action, Step
from coursehub.steps.kube_common import head_remote, hide, run_stdin

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Inventory
    from coursehub.settings import Settings

KUBELET_CONF = "/etc/kubernetes/kubelet.conf"
TOKEN_TTL = "15m"


class JoinError(Exception):
    """A join that cannot go ahead; str() is one line."""


@dataclass
class JoinFact:
    registered: bool | None  # None: the API could not be asked (no control plane yet)
    leftovers: bool
    api_error: str = ""


class Join(Step):
    """`kubeadm join` for a worker the API does not list yet."""

    name = "join"

    def __init__(self, settings: Settings, inv: Inventory):
        self.settings, self.inv = settings, inv

    def probe(self, remote: Remote) -> JoinFact:
        node = render.node_name(remote.host)
        leftovers = remote.run(f"test -f {KUBELET_CONF} && echo yes || echo no", check=False).stdout.strip() == "yes"
        try:
            head = head_remote(self.inv)
            out = head.run(k.sh(k.get_json("node", node, ignore_not_found=True)), check=False)
        except Exception as e:  # the head unreachable: plan a join, apply will fail clearly
            return JoinFact(None, leftovers, f"cannot reach the head: {e}")
        if not out.ok:
            return JoinFact(None, leftovers, (out.stderr.strip().splitlines() or ["the API does not answer"])[-1])
        return JoinFact(bool(parse.parse_nodes(out.stdout)), leftovers)

    def decide(self, fact: JoinFact, remote: Remote) -> list[Action]:
        return join_actions(fact, render.node_name(remote.host), self._join, render.cri_socket(self.settings))

    def _join(self, remote: Remote) -> None:
        node = render.node_name(remote.host)
        head = head_remote(self.inv)
        join = parse.parse_join_command(head.run(k.sh(k.token_create(TOKEN_TTL, f"coursehub join {node}"))).stdout)
        hide(join.token, join.token.split(".", 1)[1])
        try:
            config = render.join_config(self.settings, remote.host, join)
            run_stdin(remote, k.sh(k.kubeadm_join_stdin()), config, timeout=900)
        finally:
            head.run(k.sh(k.token_delete(join.token_id)), check=False)
        wait_registered(head, node)


def join_actions(fact: JoinFact, node: str, join_fn, cri_socket: str) -> list[Action]:
    """The plan for one worker, from what the API and the worker said (pure)."""
    if fact.registered:
        return []
    acts = []
    if fact.leftovers:
        acts.append(Action(why=f"{KUBELET_CONF} left by an earlier join, but the API has no node {node}",
                           command=k.sh(k.kubeadm_reset(cri_socket)), label="kubeadm reset --force"))
    why = (f"not registered ({fact.api_error})" if fact.registered is None and fact.api_error
           else f"the API has no node {node}")
    acts.append(Action(why=why, fn=join_fn, secret=True,
                       label=f"kubeadm join --config=/dev/stdin (fresh {TOKEN_TTL} token from the head)"))
    return acts


def wait_registered(head: Remote, node: str, timeout: float = 120, every: float = 3) -> None:
    """Until the API lists `node` (the kubelet registers it just after the join returns)."""
    deadline = time.monotonic() + timeout
    while True:
        out = head.run(k.sh(k.get_json("node", node, ignore_not_found=True)), check=False)
        if out.ok and parse.parse_nodes(out.stdout):
            return
        if time.monotonic() > deadline:
            raise JoinError(f"kubeadm join finished but the API has no node {node} after {timeout:g} s: "
                            f"check `journalctl -u kubelet` on {node}")
        time.sleep(every)
