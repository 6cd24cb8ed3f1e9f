"""Prepare every host: packages, time, swap, disks, container runtime (and Kubernetes)."""

from invoke import Exit, task

from tasks._common import HOST_FLAGS, inventory, run_steps, settings


@task(default=True, help={**HOST_FLAGS, "wait": "seconds to wait for a host to answer SSH (new servers are still "
                                                "booting); default 300",
                          "only_hosts": "topology cluster: do the host steps only, not the Kubernetes phases"})
def bootstrap(c, hosts="", role="", parallel=0, dry_run=False, wait=300, only_hosts=False):
    """Bring every host in the inventory to the state vars.yml describes (idempotent).

    First waits until every host answers SSH (a per-host report says which did not),
    then: preflight, proxy, packages, time sync, swap off, kernel settings, data disks
    and the container runtime, in that order. With topology `cluster` the Kubernetes
    phases follow: packages, control plane, workers joining, storage and load balancer.
    A second run changes nothing and restarts nothing; a host that failed or was
    unreachable is finished by running it again.
    """

    def build(s, inv):
        from coursehub.bootstrap import host_steps

        return host_steps(s, inv)

    s = settings()
    phases = _cluster_phases(s, hosts, role) if s.topology == "cluster" and not only_hosts else []
    run_steps("bootstrap", build, hosts, role, parallel, dry_run, connect_wait=float(wait))
    if phases:
        _run_cluster(s, phases, parallel, dry_run)


def _cluster_phases(s, hosts: str, role: str) -> list:
    """The Kubernetes phases for the selected hosts, built (and their configs rendered and
    validated) before any host is touched: a bad setting stops here with exit code 2."""
    from coursehub.kube.phases import bootstrap_phases
    from coursehub.kube.render import RenderError
    from coursehub.pins import PinError

    inv = inventory()
    chosen = {h.name for h in inv.select(hosts, role)}
    try:
        phases = bootstrap_phases(s, inv)
    except (RenderError, PinError) as e:
        raise Exit(f"bootstrap: {e}", code=2) from None
    phases = [(name, [h for h in on if h.name in chosen], steps) for name, on, steps in phases]
    return [p for p in phases if p[1]]


def _run_cluster(s, phases: list, parallel: int, dry_run: bool) -> None:
    """The Kubernetes phases, one after another; exit 1 if a host failed."""
    from coursehub.kube.phases import finish_phases, run_phases

    inv = inventory()
    results = run_phases(phases, inv, task="bootstrap", dry_run=dry_run, parallel=parallel or s.parallel)
    code = finish_phases(results, inv, phases)
    if code:
        raise Exit(code=code)
