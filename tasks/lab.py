"""The lab: an OpenStack-compatible API with real systemd hosts on this machine (root)."""

from invoke import task

from tasks._common import not_built


@task(help={"backend": "hosts (real hosts, root) or memory (API only)", "nodes": "hosts to make room for"})
def up(c, backend="hosts", nodes=3):
    """Start the lab's OpenStack API and write clouds.yaml and vars.lab.yml."""
    not_built("the lab", "the lab issue")
