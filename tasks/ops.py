"""Runbook chores: host upkeep on all hosts at once, cluster nodes, and the hub's users.

Host chores (swap, clocks, disks, logs, images, ad hoc commands) live in
tasks/ops_host.py, cluster chores (nodes, drain, taints, stuck pods) in
tasks/ops_kube.py and hub chores (users, servers, archive) in tasks/ops_hub.py;
this module gathers them into the one `ops` namespace.
"""

from tasks.ops_host import *  # noqa: F401,F403
from tasks.ops_hub import *  # noqa: F401,F403
from tasks.ops_kube import *  # noqa: F401,F403
