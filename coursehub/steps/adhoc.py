"""An ad hoc command on the selected hosts (`inv ops.exec -- CMD`), its exit code shown.

Like steps.Exec (always runs, output kept in the table and the run report), but a
non-zero exit code is shown after the output instead of failing the host, and the
plan shows the command as typed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coursehub.steps import Action, Exec

if TYPE_CHECKING:
    from coursehub.fleet import Remote


def wrap(command: str) -> str:
    """`command`, then its exit code on a line of its own when it is not 0."""
    return f"{command}\nrc=$?; [ $rc -eq 0 ] || echo \"(exit code $rc)\"; exit 0"


class AdHoc(Exec):
    name = "exec"

    def decide(self, fact: None, remote: Remote) -> list[Action]:
        line = wrap(self.command)
        return [Action(why="ad hoc command", fn=lambda r: r.run(line, check=False).keep(), label=self.command,
                       always=True)]
