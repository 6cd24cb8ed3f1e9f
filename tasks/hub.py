"""Install, validate and look after JupyterHub (z2jh on the cluster, or the single-node hub)."""

from invoke import task

from tasks._common import not_built, settings


@task(default=True, help={"dry_run": "render and validate, print the plan; deploy nothing"})
def hub(c, dry_run=False):
    """Deploy JupyterHub as vars.yml describes, then check that it answers."""
    settings()
    not_built("hub deployment", "the hub issue")
