"""Create the cloud resources (key pair, security group, volumes, servers) and write inventory/."""

from invoke import task

from tasks._common import not_built, settings


@task(default=True, help={"dry_run": "print the plan; create nothing"})
def provision(c, dry_run=False):
    """Create or converge this deployment's servers and volumes, then write inventory/."""
    settings()
    not_built("provisioning", "the provision issue")
