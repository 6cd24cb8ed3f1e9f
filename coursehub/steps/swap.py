"""Swap off, now and after reboot (the original's swapoff.yml forgot the reboot: W-R5).

Three separate facts, each fixed on its own:
- now:     /proc/swaps lists an active swap -> `swapoff -a`
- fstab:   an uncommented swap entry -> commented out (a copy of the old file is kept)
- systemd: swap.target and every known *.swap unit masked, so a zram generator or a
           hand-written swap unit cannot bring swap back at boot either. Masks are judged on
           disk (a /dev/null link in /etc/systemd/system) and made with --no-reload: what
           counts is the next boot, and a reload costs ~0.15 s of CPU per host (20 hosts at
           once on two cores: over a second), while the running systemd's view changes nothing.

`swapoff -a` is only sent when swap is active: the lab's hosts share this
machine's kernel, where it would act on the machine's own swap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action, FileSpec, put_text
from coursehub.steps.probe import ProbeStep, parse_sections, q, sections

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host

FSTAB = "/etc/fstab"
COMMENT = "# swap off for Kubernetes (CourseHub): "


def is_swap(line: str) -> bool:
    """An active fstab swap entry (pure; the third field is the type)."""
    f = line.split()
    return len(f) > 2 and not f[0].startswith("#") and f[2] == "swap"


def fstab_without_swap(text: str) -> str:
    return "".join((COMMENT + ln if is_swap(ln) else ln) + "\n" for ln in text.splitlines())


@dataclass(frozen=True)
class SwapFacts:
    active: list[str]  # /proc/swaps names
    fstab: str
    units: dict[str, str]  # swap unit -> load/file state ("masked" when done)
    target: str  # `systemctl is-enabled swap.target`


def parse_swaps(text: str) -> list[str]:
    return [ln.split()[0] for ln in text.splitlines()[1:] if ln.strip()]


def parse_unit_states(listed: str) -> dict[str, str]:
    """`list-units --type=swap --all` -> unit -> load state (loaded / masked / not-found)."""
    out: dict[str, str] = {}
    for line in listed.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0].endswith(".swap"):
            out[f[0]] = f[1]
    return out


class SwapOff(ProbeStep):
    name = "swap"

    def command(self, host: Host) -> str:
        return sections(
            swaps="cat /proc/swaps",
            fstab=f"cat {FSTAB}",
            # Every swap unit systemd has loaded (from fstab, generators or unit files), "masked" when its
            # /etc/systemd/system entry links to /dev/null. (Not list-unit-files: it reads every unit file
            # on the host, ~0.35 s of a 0.42 s probe in the lab.)
            units="systemctl list-units --type=swap --all --no-legend --plain | while read -r u rest; do "
                  "if [ \"$(readlink \"/etc/systemd/system/$u\")\" = /dev/null ]; then echo \"$u masked\"; "
                  "else echo \"$u $rest\"; fi; done",
            target="systemctl is-enabled swap.target",
        )

    def parse(self, text: str, host: Host) -> SwapFacts:
        s = parse_sections(text)
        return SwapFacts(
            active=parse_swaps(s.get("swaps", "")),
            fstab=s.get("fstab", ""),
            units=parse_unit_states(s.get("units", "")),
            target=s.get("target", "").strip(),
        )

    def decide(self, fact: SwapFacts, remote: Remote) -> list[Action]:
        actions: list[Action] = []
        entries = [ln.split()[0] for ln in fact.fstab.splitlines() if is_swap(ln)]
        if entries:
            actions.append(Action(why="keep the old fstab", command=f"cp -p {FSTAB} {FSTAB}.coursehub-swap.bak",
                                  label=f"copy {FSTAB} to {FSTAB}.coursehub-swap.bak"))
            actions.append(put_text(FileSpec(FSTAB, fstab_without_swap(fact.fstab)),
                                    "swap in fstab: " + " ".join(entries)))
        if fact.active:
            actions.append(Action(why="active: " + " ".join(fact.active), command="swapoff -a"))
        to_mask = sorted(u for u, state in fact.units.items() if state != "masked")
        if fact.target != "masked":
            to_mask.append("swap.target")
        if to_mask:
            actions.append(Action(why="swap units could start at boot", command="systemctl mask --no-reload "
                                  + " ".join(q(u) for u in to_mask)))
        return actions
