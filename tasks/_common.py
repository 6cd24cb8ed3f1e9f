"""What every task shares: loading settings and the inventory, running steps, exit codes.

Tasks stay thin: parse flags, load Settings, call coursehub, print the summary.
Library errors become exit codes only here: 2 for bad input (vars.yml,
hosts.yml, flags), 1 when a host failed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from invoke import Exit

if TYPE_CHECKING:
    from coursehub.inventory import Inventory
    from coursehub.settings import Settings
    from coursehub.steps import Step

# help= texts shared by every task that touches hosts
HOST_FLAGS = {
    "hosts": "comma-separated host names to work on (default: all)",
    "role": "only hosts with this role: head, compute or storage",
    "parallel": "how many hosts at once (default: vars.yml `parallel`)",
    "dry_run": "probe every host and print what would change; change nothing",
}


def settings() -> Settings:
    """Load and validate vars.yml, or stop with its one-line error and exit code 2."""
    from coursehub.settings import SettingsError, load

    try:
        return load()
    except SettingsError as e:
        raise Exit(str(e), code=2) from None


def inventory() -> Inventory:
    """Load inventory/hosts.yml, or stop with its one-line error and exit code 2."""
    from coursehub import inventory as inv_mod
    from coursehub.settings import inventory_dir

    try:
        return inv_mod.load(inventory_dir())
    except inv_mod.InventoryError as e:
        raise Exit(str(e), code=2) from None


def selected(hosts: str = "", role: str = "") -> tuple[Settings, Inventory, list]:
    """Settings, inventory and the hosts chosen by --hosts/--role; exit 2 on any bad input."""
    from coursehub.inventory import InventoryError

    s = settings()
    inv = inventory()
    try:
        chosen = inv.select(hosts, role)
    except InventoryError as e:
        raise Exit(str(e), code=2) from None
    if not chosen:
        raise Exit(f"no hosts match --hosts={hosts!r} --role={role!r}", code=2)
    return s, inv, chosen


def run_steps(
    task: str,
    build: Callable[[Settings, Inventory], Sequence[Step]],
    hosts: str = "",
    role: str = "",
    parallel: int = 0,
    dry_run: bool = False,
    connect_wait: float = 0,
) -> None:
    """Validate everything, then run the steps on the selected hosts; exit 1 if any host failed."""
    from coursehub import fleet

    s, inv, chosen = selected(hosts, role)
    steps = build(s, inv)
    result = fleet.run(steps, inv, task=task, hosts=chosen, dry_run=dry_run, parallel=parallel or s.parallel,
                       connect_wait=connect_wait)
    code = fleet.finish(result, inv)
    if code:
        raise Exit(code=code)


def not_built(what: str, issue: str) -> None:
    """Stop honestly: this part of CourseHub does not exist yet."""
    raise Exit(f"{what} is not built yet (see {issue}); nothing was changed.", code=3)
