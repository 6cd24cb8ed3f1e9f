"""The cluster path as ordered phases: (name, hosts, steps), run one phase after another.

    phases = bootstrap_phases(settings, inventory)
    results = run_phases(phases, inventory, task="bootstrap")

Within a phase the fleet works on all its hosts in parallel; a phase starts only when
the one before succeeded on every host (workers cannot join a head that failed).
Scale-out is the same call: new hosts in the inventory get packages and join; the
others report ok. The head is `inventory.head()`, recorded at provision time, so
adding nodes never moves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coursehub.fleet import RunResult
    from coursehub.inventory import Host, Inventory
    from coursehub.settings import Settings
    from coursehub.steps import Step

Phase = tuple[str, list["Host"], list["Step"]]


def bootstrap_phases(settings: Settings, inv: Inventory) -> list[Phase]:
    """Every phase that builds (or grows) the cluster, in order; pure apart from reading inventory/."""
    from coursehub.steps.apt import Packages
    from coursehub.steps.kube_addons import Cni, lb_steps, storage_steps
    from coursehub.steps.kube_control import AdminKubeconfig, ControlPlane, NodeRoles
    from coursehub.steps.kube_join import Join
    from coursehub.steps.kube_packages import Helm, KubePackages

    head = inv.head()
    workers = [h for h in inv.hosts if h is not head]
    everywhere: list[Step] = [KubePackages(settings)]
    if settings.storage.backend == "nfs":
        everywhere.append(Packages(["nfs-common"], name="nfs-client"))
    storage_host_steps, storage_head_steps = storage_steps(settings, inv)
    addons = [NodeRoles(settings, inv), *storage_head_steps, *lb_steps(settings, inv)]
    seen: set[str] = set()
    addons = [s for s in addons if not (s.name in seen or seen.add(s.name))]  # cloud-config once

    phases: list[Phase] = [
        ("kube-packages", list(inv.hosts), everywhere),
        ("control-plane", [head], [Helm(settings, inv.dir), ControlPlane(settings, head, bool(workers)),
                                   AdminKubeconfig(head.user), Cni(settings, inv.dir)]),
    ]
    if workers:
        phases.append(("join", workers, [Join(settings, inv)]))
    for host, step in storage_host_steps:
        phases.append((f"storage-{host.name}", [host], [step]))
    phases.append(("cluster-addons", [head], addons))
    return phases


def run_phases(phases: list[Phase], inv: Inventory, *, task: str, dry_run: bool = False, parallel: int = 20,
               stop_on_failure: bool = True) -> list[tuple[str, RunResult]]:
    """Run each phase through the fleet; stop after a phase in which any host failed.

    Under dry_run every phase is planned (later phases then probe a cluster that
    earlier phases have not built yet, and plan accordingly).
    """
    from coursehub import fleet

    out = []
    for name, hosts, steps in phases:
        result = fleet.run(steps, inv, task=f"{task}:{name}", hosts=hosts, dry_run=dry_run, parallel=parallel)
        out.append((name, result))
        if result.failed and stop_on_failure and not dry_run:
            break
    return out


def finish_phases(results: list[tuple[str, RunResult]], inv: Inventory, phases: list[Phase] | None = None) -> int:
    """Print each phase's summary and write its run report; 1 if any host failed, else 0.

    Phases after a failed one did not run; they are named, so the admin knows a re-run finishes them.
    """
    from coursehub import fleet

    code = 0
    for _name, result in results:
        code = max(code, fleet.finish(result, inv))
    if phases is not None and len(results) < len(phases):
        skipped = ", ".join(name for name, _, _ in phases[len(results):])
        print(f"not run because a phase failed: {skipped} (run the same command again to finish)")
    return code
