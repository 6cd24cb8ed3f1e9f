"""Verify every host with testinfra and print a host x check table (changes nothing)."""

from invoke import task

from tasks._common import not_built, settings


@task(default=True, help={"hosts": "comma-separated host names (default: all)", "role": "only hosts with this role"})
def check(c, hosts="", role=""):
    """Run the testinfra checks in tests/infra against every host; exit 1 on any failure."""
    settings()
    not_built("inv check", "the verification issue")
