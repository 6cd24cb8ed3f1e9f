"""CourseHub: a course's JupyterHub on OpenStack, and every chore of the term.

    inv provision bootstrap hub     cloud -> hosts -> JupyterHub (idempotent; re-run to finish)
    inv check                       is every host as it should be?
    inv ops.swapoff                 ...and every other runbook chore, on all hosts at once
    inv lab.up                      an OpenStack-in-a-box on this machine (no cloud needed)

Settings come from ./vars.yml (or $COURSEHUB_VARS); generated files go to
./inventory (or $COURSEHUB_INVENTORY). `inv --help <task>` explains each task.

Layout: this module builds the root collection; the namespaces live in tasks/,
one module each. tasks/ has no __init__.py: the line below makes this module
its package, so `from tasks import ops` finds tasks/ops.py.
"""

from pathlib import Path

from invoke import Collection

__path__ = [str(Path(__file__).with_name("tasks"))]  # tasks/*.py are this module's submodules

from tasks import bootstrap, check, hub, lab, ops, provision  # noqa: E402

ns = Collection(provision, bootstrap, hub, ops, check, lab)
ns.configure({"run": {"echo": False}})
