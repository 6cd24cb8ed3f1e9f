"""What every task shares: loading settings, host selection flags, exit codes.

Tasks stay thin: parse flags, load Settings, call coursehub, print the summary.
Library errors become exit codes only here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invoke import Exit

if TYPE_CHECKING:
    from coursehub.settings import Settings

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


def not_built(what: str, issue: str) -> None:
    """Stop honestly: this part of CourseHub does not exist yet."""
    raise Exit(f"{what} is not built yet (see {issue}); nothing was changed.", code=3)
