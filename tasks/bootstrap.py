"""Prepare every host: packages, time, swap, disks, container runtime (and Kubernetes)."""

from invoke import task

from tasks._common import HOST_FLAGS, not_built, settings


@task(default=True, help=HOST_FLAGS)
def bootstrap(c, hosts="", role="", parallel=0, dry_run=False):
    """Bring every host in the inventory to the state vars.yml describes (idempotent)."""
    settings()
    not_built("bootstrap", "the bootstrap issue")
