"""Cluster chores on the head: cordon, drain, taint, nodes, inspect a user's home, stuck pods, secrets, pre-pull.

Each task runs kubectl on the head over the fleet's SSH connection (as root, with the
admin kubeconfig), plans first with --dry-run, and writes a run report like every task.
"""

from invoke import task

from tasks._common import inventory, settings

DRY = "probe the cluster and print what would change; change nothing"
NODE = "the node's name, as `inv ops.nodes` lists it"


def _run(name, steps, dry_run=False):
    """Run `steps` on the head; exit 1 if it failed, 2 for bad input."""
    from invoke import Exit

    from coursehub import fleet
    from coursehub.inventory import InventoryError

    s = settings()
    inv = inventory()
    try:
        head = inv.head()
    except InventoryError as e:
        raise Exit(str(e), code=2) from None
    built = steps(s, inv) if callable(steps) else steps
    result = fleet.run(built, inv, task=name, hosts=[head], dry_run=dry_run, parallel=1)
    code = fleet.finish(result, inv)
    if code:
        raise Exit(code=code)


def _ops(fn):
    from invoke import Exit

    from coursehub.kube.ops import OpsError

    try:
        return fn()
    except OpsError as e:
        raise Exit(str(e), code=2) from None


@task(help={"node": NODE, "dry_run": DRY})
def cordon(c, node, dry_run=False):
    """Stop new pods (and new user servers) from being placed on a node; running ones stay."""
    from coursehub.kube.ops import Cordon

    _run("ops.cordon", [Cordon(node, on=True)], dry_run)


@task(help={"node": NODE, "dry_run": DRY})
def uncordon(c, node, dry_run=False):
    """Let pods be placed on a node again (after ops.cordon or ops.drain)."""
    from coursehub.kube.ops import Cordon

    _run("ops.uncordon", [Cordon(node, on=False)], dry_run)


@task(auto_shortflags=False, help={
    "node": NODE,
    "stop_servers": "first stop the users' servers on the node through the hub API (CourseHub's service token)",
    "hub_url": "another hub API URL, e.g. https://jupyter.example.edu/hub/api, with a token in JUPYTERHUB_API_TOKEN",
    "timeout": "seconds kubectl drain may take before giving up (default 300)",
    "ignore_pdb": "delete pods whose PodDisruptionBudget allows no disruption (normally drain stops and names them)",
    "dry_run": DRY,
})
def drain(c, node, stop_servers=False, hub_url="", timeout=300, ignore_pdb=False, dry_run=False):
    """Empty a node for maintenance: cordon it, optionally stop its users' servers, then drain it.

    DaemonSet pods stay; everything else is evicted, honouring PodDisruptionBudgets. A pod
    whose budget allows no disruption (z2jh's proxy with one replica) is named before
    anything is evicted, instead of letting drain hang until its timeout.
    """
    from coursehub.kube.ops import Drain

    stopper = _hub_stopper(hub_url) if stop_servers else None
    _run("ops.drain", [Drain(node, timeout=int(timeout), stop_servers=stopper, ignore_pdb=ignore_pdb)], dry_run)


def _hub_stopper(hub_url):
    """stop(users): through the hub's REST API, with CourseHub's service token (or JUPYTERHUB_API_TOKEN and --hub-url)."""
    import os

    from coursehub import secrets
    from coursehub.hub.rest import HubAPI

    token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
    if hub_url and token:
        secrets.KNOWN.add([token])
        api = HubAPI(hub_url, token)
    else:
        from tasks.hub import hub_api

        api = hub_api(settings(), inventory())

    def stop(users):
        for u in users:
            api.stop_server(u)

    return stop


@task(help={
    "node": NODE,
    "key": "taint key (default hub.jupyter.org/unhealthy)",
    "value": "taint value (default: none)",
    "effect": "PreferNoSchedule (default: avoid the node if possible), NoSchedule or NoExecute",
    "dry_run": DRY,
})
def taint(c, node, key="hub.jupyter.org/unhealthy", value="", effect="PreferNoSchedule", dry_run=False):
    """Taint a node; by default PreferNoSchedule, so new user servers avoid a sick node but nothing is evicted."""
    from coursehub.kube.ops import Taint

    _ops(lambda: _run("ops.taint", [Taint(node, key, value, effect)], dry_run))


@task(help={"node": NODE, "key": "taint key (default hub.jupyter.org/unhealthy)",
            "effect": "the taint's effect (default PreferNoSchedule)", "dry_run": DRY})
def untaint(c, node, key="hub.jupyter.org/unhealthy", effect="PreferNoSchedule", dry_run=False):
    """Remove a taint set with ops.taint."""
    from coursehub.kube.ops import Taint

    _ops(lambda: _run("ops.untaint", [Taint(node, key, "", effect, remove=True)], dry_run))


@task
def nodes(c):
    """The cluster's nodes: status, purpose, pods and user servers per node, disk/memory pressure, taints."""
    from coursehub.kube.ops import Nodes

    _run("ops.nodes", [Nodes()])


@task(help={"user": "the hub user name", "namespace": "the hub's namespace (default: vars.yml hub.namespace)",
            "dry_run": DRY})
def inspect_user(c, user, namespace="", dry_run=False):
    """Mount a user's home volume in a pod (found under both KubeSpawner naming schemes) and print how to get a shell in it."""
    from coursehub.kube.ops import InspectUser

    def steps(s, inv):
        hint = f"ssh -F {inv.ssh_config} {inv.head().name} "
        return [InspectUser(s, user, namespace or s.hub.namespace, hint)]

    _run("ops.inspect-user", steps, dry_run)


@task(help={"user": "the hub user whose server pod is stuck", "pod": "or: the pod's name",
            "namespace": "the pod's namespace (default: vars.yml hub.namespace)", "dry_run": DRY})
def kill_stuck_pod(c, user="", pod="", namespace="", dry_run=False):
    """Force-delete a stuck pod; if its container survives, kill its process tree on its node."""
    from invoke import Exit

    from coursehub.kube.ops import KillStuckPod

    settings()  # vars.yml first: bad input is reported before anything else
    if bool(user) == bool(pod):
        raise Exit("give exactly one of --user or --pod", code=2)
    _run("ops.kill-stuck-pod", lambda s, inv: [KillStuckPod(inv, namespace or s.hub.namespace, pod, user)], dry_run)


@task(iterable=["from_file"], help={
    "name": "the Secret's name",
    "from_file": "a file to include (repeatable); the key is the file's name, or KEY=PATH",
    "namespace": "where (default: vars.yml hub.namespace)",
    "dry_run": DRY,
})
def shared_secret(c, name, from_file=None, namespace="", dry_run=False):
    """Create or update a Kubernetes Secret from files (e.g. a course's signing keys), sent through stdin only."""
    from pathlib import Path

    from invoke import Exit

    from coursehub.kube.ops import SharedSecret

    settings()  # vars.yml first: bad input is reported before anything else
    files = {}
    for item in from_file or []:
        key, eq, path = item.partition("=")
        p = Path(path if eq else key)
        try:
            files[key if eq else p.name] = p.read_bytes()
        except OSError as e:
            raise Exit(f"--from-file {item}: {e.strerror}", code=2) from None
    if not files:
        raise Exit("give at least one --from-file", code=2)
    _run("ops.shared-secret", lambda s, inv: [SharedSecret(s, name, namespace or s.hub.namespace, files)], dry_run)


@task(help={"image": "the image to pull, with its tag, e.g. quay.io/jupyter/scipy-notebook:2025-10-20",
            "namespace": "where the short-lived DaemonSet runs (default: vars.yml hub.namespace)",
            "timeout": "seconds to wait for every node (default 1800)", "dry_run": DRY})
def prepull(c, image, namespace="", timeout=1800, dry_run=False):
    """Pull an image onto every node before a class, so the first spawn does not wait for it."""
    from coursehub.kube.ops import Prepull

    _run("ops.prepull", lambda s, inv: [Prepull(s, image, namespace or s.hub.namespace, int(timeout))], dry_run)
