"""Prepare every host: packages, time, swap, disks, container runtime (and Kubernetes)."""

from invoke import task

from tasks._common import HOST_FLAGS, run_steps


@task(default=True, help=HOST_FLAGS)
def bootstrap(c, hosts="", role="", parallel=0, dry_run=False):
    """Bring every host in the inventory to the state vars.yml describes (idempotent).

    Preflight, proxy, packages, time sync, swap off, kernel settings, data disks and
    the container runtime, in that order. A second run changes nothing and restarts
    nothing; a host that failed or was unreachable is finished by running it again.
    """

    def build(s, inv):
        from coursehub.bootstrap import host_steps

        steps = host_steps(s, inv)
        # TODO(kubernetes): for s.topology == "cluster", append the Kubernetes phases here (another engineer).
        return steps

    run_steps("bootstrap", build, hosts, role, parallel, dry_run)
