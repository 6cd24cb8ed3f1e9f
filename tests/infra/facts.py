"""What the tests/infra checks read on every host, and the pure judges that turn it into problems.

Every check is one read-only command, `<what>_command(host, settings)` (built here, often
from the same probe text the bootstrap step reads, so `inv check` and `inv bootstrap`
agree on what "done" means), and a judge: a pure function from the command's output to
a list of problems, each one line naming what is wrong. An empty list means the check
passes; a judge may instead return Skip(reason) when the check does not apply.

`batch()` joins a host's commands into one round trip (each part under its own time
limit), and `split()` hands each check its part. The storage and head checks live in
roles.py, built the same way.

Unit tests feed the judges canned output (tests/unit/test_check.py); the checks in
this folder run them against real hosts through testinfra.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.hub import single
from coursehub.steps import clock, disks, kernel, moves, proxy, runtime, swap
from coursehub.steps.probe import (
    Unit,
    files_command,
    human_size,
    parse_files,
    parse_sections,
    parse_units,
    sections,
    stale_since,
    units_command,
)

if TYPE_CHECKING:
    from coursehub.inventory import Host
    from coursehub.settings import Settings

MAX_LISTED = 8  # paths named in one problem line; the rest are counted


@dataclass(frozen=True)
class Skip:
    """The check does not apply to this host; `reason` says why (shown as skip)."""

    reason: str


# ----------------------------------------------------------------------------- batching
BATCH_MARK = "@@coursehub-check "
PART_TIMEOUT = 30  # seconds for one check's command on the host


def batch(commands: dict[str, str], timeout: int = PART_TIMEOUT) -> str:
    """One shell command running each check's command under `timeout`, its output after a marker line.

    A part's stderr is dropped (a command that wants it says 2>&1); a part that times out
    leaves a line saying so, which its judge reports.
    """
    parts = [f"echo '{BATCH_MARK}{name}'; timeout {timeout} sh -c {shlex.quote(cmd)} 2>/dev/null"
             f" || {{ [ $? = 124 ] && echo '(timed out after {timeout} s)'; }}" for name, cmd in commands.items()]
    return "; ".join(parts) + "; true"


def split(text: str) -> dict[str, str]:
    """The inverse of batch(): check name -> its command's output."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(BATCH_MARK):
            current = out.setdefault(line[len(BATCH_MARK):].strip(), [])
        elif current is not None:
            current.append(line + "\n")
    return {k: "".join(v) for k, v in out.items()}


# ----------------------------------------------------------------------------- swap
def swap_command(host: Host, settings: Settings) -> str:
    return sections(swaps="cat /proc/swaps", fstab=f"cat {swap.FSTAB}", target="systemctl is-enabled swap.target")


def swap_problems(text: str) -> list[str]:
    """Swap is off now, not in fstab, and swap.target is masked (bootstrap's swap step)."""
    s = parse_sections(text)
    problems = []
    active = swap.parse_swaps(s.get("swaps", ""))
    if active:
        problems.append("swap is on now: " + " ".join(active))
    entries = [ln.strip() for ln in s.get("fstab", "").splitlines() if swap.is_swap(ln)]
    if entries:
        problems.append(f"swap in {swap.FSTAB}: " + " | ".join(entries))
    target = s.get("target", "").strip()
    if target != "masked":
        problems.append(f"swap.target is {target or 'unknown'}, not masked: a swap unit could start at boot")
    return problems


# ----------------------------------------------------------------------------- time sync
def time_unit(settings: Settings) -> str:
    return clock.TIMESYNCD if settings.hosts.time_sync == "timesyncd" else clock.CHRONY


def time_command(host: Host, settings: Settings) -> str:
    return sections(unit=units_command([time_unit(settings)]), virt="systemd-detect-virt --container")


BOOT_STATES = ("enabled", "static", "alias", "indirect", "generated", "enabled-runtime")


def time_problems(text: str, settings: Settings) -> list[str] | Skip:
    """The chosen time daemon (hosts.time_sync) is enabled and running.

    In a container whose systemd skips the daemon because a start condition fails (the lab's
    guests have no CAP_SYS_TIME: their clock is the machine's), the check does not apply;
    bootstrap's clock step leaves such a daemon alone for the same reason.
    """
    name = time_unit(settings)
    s = parse_sections(text)
    unit = parse_units(s.get("unit", ""), [name])[name]
    virt = s.get("virt", "").strip()
    if not unit.exists:
        return [f"{name} is not installed (hosts.time_sync: {settings.hosts.time_sync}): run `inv bootstrap`"]
    if unit.enabled == "masked":
        return [f"{name} is masked"]
    if not unit.running and not unit.condition_ok and virt not in ("", "none"):
        return Skip(f"systemd skips {name} in this {virt} container (a start condition is not met: "
                    "the clock is the machine's)")
    problems = []
    if not unit.running:
        problems.append(f"{name} is {unit.active}")
    if unit.enabled not in BOOT_STATES:
        problems.append(f"{name} is {unit.enabled or 'not enabled'}: it would not start at boot")
    return problems


# ----------------------------------------------------------------------------- data disks
def disks_command(host: Host, settings: Settings) -> str:
    return disks.disk_command(host, settings.volumes.mount)


def fstab_entries(fstab: str, mount: str) -> list[list[str]]:
    """The active fstab lines (as fields) that mount something at `mount`."""
    out = []
    for line in fstab.splitlines():
        f = line.split()
        if len(f) >= 4 and not f[0].startswith("#") and f[1] == mount:
            out.append(f)
    return out


def disk_problems(text: str, host: Host, settings: Settings) -> list[str] | Skip:
    """Each data volume of the host is mounted at its mount point, by UUID in fstab, with nofail."""
    fact = disks.parse_disks(text, host, settings.volumes.mount)
    if not fact.volumes:
        return Skip("the inventory lists no data volume for this host")
    problems = []
    for v in fact.volumes:
        label = v.volume.name or v.volume.id
        if not v.dev:
            hint = f" or {v.volume.device}" if v.volume.device else ""
            problems.append(f"volume {label} is not attached (no {disks.by_id_candidates(v.volume.id)[0]}{hint})")
            continue
        if not v.uuid:
            problems.append(f"{v.dev} (volume {label}) has no filesystem")
            continue
        here = disks.mounted_at(fact.mounts, v.mount)
        if here is None:
            problems.append(f"{v.mount} is not mounted (volume {label}, {v.dev})")
        elif here.majmin != v.majmin:
            problems.append(f"{v.mount} has {here.source} mounted, not {v.dev} (volume {label})")
        lines = fstab_entries(fact.fstab, v.mount)
        if not lines:
            problems.append(f"no {disks.FSTAB} line mounts {v.mount}: it would not come back after a reboot")
            continue
        line = lines[-1]
        if line[0] != f"UUID={v.uuid}":
            problems.append(f"{disks.FSTAB} mounts {v.mount} by {line[0]}, not UUID={v.uuid}")
        if "nofail" not in line[3].split(","):
            problems.append(f"{disks.FSTAB} line for {v.mount} lacks nofail: a missing volume would stop the boot")
    return problems


# ----------------------------------------------------------------------------- free space
def data_mounts(host: Host, settings: Settings) -> list[str]:
    return [m for _, m in disks.data_volumes(host, settings.volumes.mount)]


def watched_paths(host: Host, settings: Settings) -> list[str]:
    """Where CourseHub keeps data on a host: the free space of each one's filesystem is checked."""
    paths = ["/", "/var", "/home", *data_mounts(host, settings), runtime_root(settings)]
    if settings.topology == "cluster":
        paths.append(settings.kubernetes.kubelet_root or moves.KINDS["kubelet"].default)
    if host.has("storage") and settings.storage.backend == "nfs":
        paths.append(settings.storage.nfs_export)
    return list(dict.fromkeys(paths))


def free_command(host: Host, settings: Settings) -> str:
    paths = " ".join(shlex.quote(p) for p in watched_paths(host, settings))
    return f"for p in {paths}; do [ -e \"$p\" ] && echo \"$p\"; done | xargs -r df -B1 --output=source,fstype,size,avail,target"


def free_problems(text: str, settings: Settings) -> list[str]:
    """Each filesystem holding CourseHub's data has more than hosts.disk_free_percent free."""
    from coursehub.steps.report import parse_df

    want = settings.hosts.disk_free_percent
    rows = parse_df(text)
    if not rows:
        return ["df printed nothing for / and the data paths"]
    seen: set[str] = set()
    problems = []
    for fs in rows:
        if fs.target in seen:
            continue
        seen.add(fs.target)
        if fs.free_percent < want:
            problems.append(f"{fs.target}: {fs.free_percent:.0f}% free ({human_size(fs.avail)} of "
                            f"{human_size(fs.size)}; hosts.disk_free_percent is {want})")
    return problems


# ----------------------------------------------------------------------------- container runtime
def runtime_root(settings: Settings) -> str:
    """Where vars.yml wants the runtime's data: hosts.runtime_root, else the runtime's default."""
    return moves.normalize(settings.hosts.runtime_root or moves.KINDS[settings.hosts.runtime].default)


def runtime_command(host: Host, settings: Settings) -> str:
    kind = moves.KINDS[settings.hosts.runtime]
    unit = runtime.UNITS[settings.hosts.runtime]
    root = shlex.quote(runtime_root(settings))
    live = kind.check if settings.hosts.runtime == "docker" else (
        f"test -e {root}/io.containerd.metadata.v1.bolt/meta.db && echo {root}")
    return sections(config=f"cat {kind.config}", files=files_command([kind.config]),
                    unit=units_command([unit]), live=live)


def runtime_problems(text: str, settings: Settings) -> list[str]:
    """The runtime runs with its root where vars.yml says (hosts.runtime_root or its default)."""
    name = settings.hosts.runtime
    kind, unit_name, want = moves.KINDS[name], runtime.UNITS[name], runtime_root(settings)
    s = parse_sections(text)
    unit: Unit = parse_units(s.get("unit", ""), [unit_name])[unit_name]
    if not unit.exists:
        return [f"{unit_name} is not installed (hosts.runtime: {name}): run `inv bootstrap`"]
    problems = []
    configured = moves.normalize(moves.current_root(kind, s.get("config") or None))
    if configured != want:
        hint = ("; set hosts.runtime_root in vars.yml if it was moved on purpose" if not settings.hosts.runtime_root
                else "; run `inv bootstrap`")
        problems.append(f"{kind.config} puts the root at {configured}, vars.yml wants {want}{hint}")
    if not unit.running:
        problems.append(f"{unit_name} is {unit.active}")
        return problems
    config_file = parse_files(s.get("files", ""), 1)[0]
    if stale_since(unit, [config_file.mtime]):
        problems.append(f"{unit_name} runs with an older {kind.config} (changed after its start; restart pending)")
    live = s.get("live", "").strip()
    if live != want:
        problems.append(f"{name} uses {live} as its root, not {want}" if live and name == "docker"
                        else f"{want} is not in use by {name} (no metadata database there)")
    return problems


# ----------------------------------------------------------------------------- sshd
def sshd_command(host: Host, settings: Settings) -> str:
    return "sshd -T 2>&1 || /usr/sbin/sshd -T 2>&1"


def sshd_problems(text: str) -> list[str]:
    """`sshd -T` (the effective configuration): no password or keyboard-interactive login, no empty passwords."""
    conf: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            conf.setdefault(key.lower(), value.strip().lower())
    if "passwordauthentication" not in conf:
        return ["`sshd -T` did not print its configuration: " + (" ".join(text.split())[:200] or "no output")]
    problems = []
    if conf["passwordauthentication"] != "no":
        problems.append(f"sshd allows password login (PasswordAuthentication {conf['passwordauthentication']})")
    kbd = conf.get("kbdinteractiveauthentication", conf.get("challengeresponseauthentication", "no"))
    if kbd != "no":
        problems.append(f"sshd allows keyboard-interactive login, which can ask for a password "
                        f"(KbdInteractiveAuthentication {kbd})")
    if conf.get("permitemptypasswords", "no") != "no":
        problems.append("sshd permits empty passwords")
    return problems


# ----------------------------------------------------------------------------- world-writable
def written_paths(host: Host, settings: Settings) -> tuple[list[str], list[str]]:
    """(files and trees CourseHub writes, directories it makes whose contents are not its own)."""
    kinds = moves.KINDS.values()
    trees = [
        "/etc/coursehub", single.PREFIX, "/var/lib/coursehub", "/var/backups/coursehub",
        swap.FSTAB, proxy.ENV_FILE, proxy.APT_FILE, proxy.PIP_FILE,
        clock.TIMESYNCD_FILE, clock.CHRONY_CONF, clock.CHRONY_SOURCES,
        kernel.MODULES_FILE, kernel.SYSCTL_FILE,
        *(k.config for k in kinds), *(f"/etc/systemd/system/{k.main}.d" for k in kinds),
        f"{single.UNIT_DIR}/{single.HUB_UNIT}", f"{single.UNIT_DIR}/{single.PROXY_UNIT}",
        "/etc/exports.d/coursehub.exports", "/etc/apt/sources.list.d/kubernetes.list",
        "/etc/apt/keyrings/kubernetes-apt-keyring.gpg", "/usr/local/bin/helm",
    ]
    tops = [*data_mounts(host, settings), runtime_root(settings), settings.storage.nfs_export]
    if settings.topology == "cluster":
        tops.append(settings.kubernetes.kubelet_root or moves.KINDS["kubelet"].default)
    if settings.content.shared_volume:
        tops.append(settings.content.shared_mount)
    return list(dict.fromkeys(trees)), list(dict.fromkeys(tops))


def world_writable_command(host: Host, settings: Settings) -> str:
    trees, tops = written_paths(host, settings)
    # The login user's ~/.kube (the admin kubeconfig CourseHub copies there), named by ~user.
    kube = f"~{host.user}/.kube" if host.user != "root" else "/root/.kube"
    return find_world_writable([shlex.quote(p) for p in trees] + [kube], [shlex.quote(p) for p in tops])


def find_world_writable(trees: list[str], tops: list[str]) -> str:
    """Shell listing what is writable by others: anywhere in `trees`, and `tops` themselves (words, quoted)."""
    return (f'for p in {" ".join(trees)}; do [ -e "$p" ] && find "$p" -xdev ! -type l -perm -0002 -print; done; '
            f'for p in {" ".join(tops)}; do [ -e "$p" ] && find "$p" -maxdepth 0 ! -type l -perm -0002 -print; done; true')


def world_writable_problems(text: str) -> list[str]:
    """No file or directory CourseHub wrote is writable by everyone."""
    found = list(dict.fromkeys(line for line in text.splitlines() if line.strip()))
    if not found:
        return []
    more = f" (and {len(found) - MAX_LISTED} more)" if len(found) > MAX_LISTED else ""
    return ["world-writable: " + " ".join(found[:MAX_LISTED]) + more]
