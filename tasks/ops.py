"""Runbook chores on all hosts at once: swap, clocks, disks, logs, images, ad hoc commands."""

from tasks.ops_host import *  # noqa: F401,F403
