"""Runbook chores on all hosts at once: swap, clocks, disks, logs, images, ad hoc commands."""

from invoke import task

from tasks._common import HOST_FLAGS, not_built, settings


@task(help=HOST_FLAGS)
def swapoff(c, hosts="", role="", parallel=0, dry_run=False):
    """Turn swap off on every host, now and after reboot."""
    settings()
    not_built("ops.swapoff", "the bootstrap and host ops issue")
