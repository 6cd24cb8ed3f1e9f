"""Attached data volumes: found by volume id, formatted only when blank, mounted by UUID.

The original took `lsblk | tail -1` as the data disk (W-R6), which depends on
attach order. Here each of a host's `data` volumes (inventory `volumes:`) is found as

1. /dev/disk/by-id/virtio-<first 20 characters of the volume id> (the serial Nova
   gives virtio disks; the scsi-0QEMU_QEMU_HARDDISK_ names for virtio-scsi), else
2. the attachment's device name (e.g. /dev/vdb), accepted only if the device is
   at least the volume's size,

and then:

- a filesystem (`volumes.filesystem`, xfs by default) is made only on a *blank*
  device: no signature at all (`blkid -p`) and an all-zero first MiB. A device
  with a partition table or any unknown data is refused, never formatted; one
  that already holds a filesystem is used as it is, whatever its type.
- it is mounted at `volumes.mount` (the second data volume at <mount>2, ...),
  with one fstab line by UUID and `nofail`, so a missing volume never stops a boot.
- a mount point that already holds files on the root disk is refused (mounting
  over them would hide them).

`GrowDisk` (`inv ops.grow-disk`) grows each mounted filesystem to its device
after the volume was extended in the cloud (xfs_growfs / resize2fs / btrfs).
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from coursehub.steps import Action, FileSpec, put_text
from coursehub.steps.probe import HostRefused, ProbeStep, human_size, parse_kv, parse_sections, q, sections

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host, Volume
    from coursehub.settings import Settings

FSTAB = "/etc/fstab"
KNOWN_FS = ("xfs", "ext4", "ext3", "btrfs")
MOUNT_OPTIONS = "defaults,nofail,x-systemd.device-timeout=30s"
LABEL = "coursehub"  # xfs labels hold at most 12 characters
# Checked again on the host right before mkfs. blkid -p exits 2 when it finds no signature, but also
# when it cannot read the device, so the first MiB must also read in full and be all zero.
BLANK_CHECK = ("blank() { blkid -p \"$1\" >/dev/null 2>&1; [ $? -eq 2 ] || return 1; "
               "n=$(head -c 1048576 \"$1\" | wc -c); z=$(head -c 1048576 \"$1\" | tr -d '\\000' | wc -c); "
               "[ \"$n\" -gt 0 ] && [ \"$z\" -eq 0 ]; }")


def by_id_candidates(volume_id: str) -> list[str]:
    """Where udev puts a volume's stable name (virtio serials are the id's first 20 characters)."""
    short = volume_id[:20]
    names = [f"virtio-{short}", f"scsi-0QEMU_QEMU_HARDDISK_{short}", f"scsi-0QEMU_QEMU_HARDDISK_{volume_id}"]
    return [f"/dev/disk/by-id/{n}" for n in dict.fromkeys(names)]


def data_volumes(host: Host, mount: str) -> list[tuple[Volume, str]]:
    """The host's data volumes with their mount points: mount, mount2, mount3 ..."""
    vols = [v for v in host.volumes if v.role == "data"]
    return [(v, mount if i == 0 else f"{mount}{i + 1}") for i, v in enumerate(vols)]


# ----------------------------------------------------------------------------- probe
def volume_command(volume: Volume, mount: str, sizes: bool = False) -> str:
    """Shell printing key=value facts about one volume's device (read-only)."""
    cands = " ".join(q(p) for p in by_id_candidates(volume.id))
    hint = q(volume.device) if volume.device else "''"
    lines = [
        'dev=""; src=none',
        f'for p in {cands}; do if [ -b "$p" ]; then dev=$(readlink -f "$p"); src="$p"; break; fi; done',
        f'if [ -z "$dev" ] && [ -n {hint} ] && [ -b {hint} ]; then dev={hint}; src=device; fi',
        'echo "source=$src"; echo "dev=$dev"',
        'if [ -n "$dev" ]; then '
        'echo "majmin=$(stat -Lc %t:%T "$dev")"; '
        'echo "size=$(blockdev --getsize64 "$dev")"; '
        'echo "read=$(head -c 1048576 "$dev" | wc -c)"; '
        "echo \"nonzero=$(head -c 1048576 \"$dev\" | tr -d '\\000' | wc -c)\"; "
        "blkid -p -o export \"$dev\" | sed 's/^/blkid_/'; "
        + ('xfs_info ' + q(mount) + " 2>/dev/null | sed -n 's/^data *= *bsize=\\([0-9]*\\) *blocks=\\([0-9]*\\).*/xfs=\\1 \\2/p'; "
           "dumpe2fs -h \"$dev\" 2>/dev/null | sed -n 's/^Block count: *\\([0-9]*\\)/ext_blocks=\\1/p; "
           "s/^Block size: *\\([0-9]*\\)/ext_bsize=\\1/p'; "
           + "btrfs filesystem show --raw " + q(mount) + " 2>/dev/null | sed -n 's/.*devid.* size \\([0-9]*\\) .*/btrfs=\\1/p'; "
           if sizes else "")
        + "fi",
        f"echo \"listing=$(ls -A {q(mount)} 2>/dev/null | head -n 3 | tr '\\n' ' ')\"",
    ]
    return "; ".join(lines)


@dataclass(frozen=True)
class VolumeFacts:
    volume: Volume
    mount: str
    source: str = "none"  # the by-id path it was found by, "device" (the hint) or "none"
    dev: str = ""
    majmin: str = ""  # decimal, as in mountinfo
    size: int = 0
    read: int = 0  # bytes of the first MiB that could be read (fewer: unreadable, never "blank")
    nonzero: int = 0  # non-zero bytes in the first MiB
    blkid: dict[str, str] = field(default_factory=dict)
    listing: str = ""  # first entries of the mount point directory
    fs_size: int = 0  # bytes the filesystem spans (GrowDisk only)

    @property
    def fstype(self) -> str:
        return self.blkid.get("TYPE", "")

    @property
    def uuid(self) -> str:
        return self.blkid.get("UUID", "")


@dataclass(frozen=True)
class Mount:
    majmin: str
    target: str
    fstype: str
    source: str


@dataclass(frozen=True)
class DiskFacts:
    volumes: list[VolumeFacts]
    fstab: str
    mounts: list[Mount]


def parse_mountinfo(text: str) -> list[Mount]:
    out = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        f, r = left.split(), right.split()
        if sep and len(f) >= 5 and len(r) >= 2:
            out.append(Mount(f[2], _unescape(f[4]), r[0], r[1]))
    return out


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _hex_majmin(text: str) -> str:
    major, _, minor = text.strip().partition(":")
    try:
        return f"{int(major, 16)}:{int(minor, 16)}"
    except ValueError:
        return ""


def parse_volume(text: str, volume: Volume, mount: str) -> VolumeFacts:
    kv = parse_kv(text)
    blk = {k[len("blkid_"):]: v for k, v in kv.items() if k.startswith("blkid_")}
    fs_size = 0
    if kv.get("xfs"):
        bsize, blocks = (int(x) for x in kv["xfs"].split())
        fs_size = bsize * blocks
    elif kv.get("ext_blocks", "").isdigit() and kv.get("ext_bsize", "").isdigit():
        fs_size = int(kv["ext_blocks"]) * int(kv["ext_bsize"])
    elif kv.get("btrfs", "").isdigit():
        fs_size = int(kv["btrfs"])
    return VolumeFacts(
        volume=volume, mount=mount, source=kv.get("source", "none"), dev=kv.get("dev", ""),
        majmin=_hex_majmin(kv.get("majmin", "")), size=int(kv["size"]) if kv.get("size", "").isdigit() else 0,
        read=int(kv["read"]) if kv.get("read", "").strip().isdigit() else 0,
        nonzero=int(kv["nonzero"]) if kv.get("nonzero", "").strip().isdigit() else 0,
        blkid=blk, listing=kv.get("listing", "").strip(), fs_size=fs_size,
    )


def disk_command(host: Host, mount: str, sizes: bool = False) -> str:
    parts = {f"v{i}": volume_command(v, m, sizes) for i, (v, m) in enumerate(data_volumes(host, mount))}
    return sections(fstab=f"cat {FSTAB}", mountinfo="cat /proc/self/mountinfo", **parts)


def parse_disks(text: str, host: Host, mount: str) -> DiskFacts:
    s = parse_sections(text)
    vols = [parse_volume(s.get(f"v{i}", ""), v, m) for i, (v, m) in enumerate(data_volumes(host, mount))]
    return DiskFacts(vols, s.get("fstab", ""), parse_mountinfo(s.get("mountinfo", "")))


# ----------------------------------------------------------------------------- fstab
def fstab_line(uuid: str, mount: str, fstype: str) -> str:
    return f"UUID={uuid} {mount} {fstype} {MOUNT_OPTIONS} 0 {2 if fstype.startswith('ext') else 0}"


def fstab_with(text: str, line: str, aliases: set[str]) -> str:
    """fstab with `line` as the only active entry for its mount point (or any of `aliases` as source)."""
    want = line.split()
    out, placed = [], False
    for ln in text.splitlines():
        f = ln.split()
        ours = len(f) >= 2 and not f[0].startswith("#") and (f[1] == want[1] or f[0] in aliases | {want[0]})
        if not ours:
            out.append(ln)
        elif not placed:
            out.append(line)
            placed = True
    if not placed:
        out.append(line)
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- decide
def locate(v: VolumeFacts) -> None:
    """Raise HostRefused unless the volume's device was found and is plausibly it."""
    vol = v.volume
    if not v.dev:
        where = ", ".join(by_id_candidates(vol.id)[:1] + ([vol.device] if vol.device else []))
        raise HostRefused(f"volume {vol.name or vol.id} is not attached here: no block device at {where}.")
    if v.source == "device" and vol.size_gb and v.size < vol.size_gb * 1024**3 * 0.95:
        raise HostRefused(f"{v.dev} is {human_size(v.size)}, smaller than volume {vol.name or vol.id} "
                          f"({vol.size_gb} GB) and it has no by-id name: not touching it.")


def mounted_at(mounts: list[Mount], target: str) -> Mount | None:
    found = [m for m in mounts if m.target == target]
    return found[-1] if found else None  # the top of any stack of mounts


def volume_actions(v: VolumeFacts, fstab: str, mounts: list[Mount], filesystem: str,
                   new_uuid: str | None = None) -> tuple[list[Action], str]:
    """The actions for one data volume, and the fstab text after them."""
    locate(v)
    dev, mount, actions = v.dev, v.mount, []
    here = mounted_at(mounts, mount)
    elsewhere = [m.target for m in mounts if m.majmin == v.majmin and m.target != mount]
    if here is not None and here.majmin != v.majmin:
        raise HostRefused(f"{mount} already has {here.source} mounted on it, not {dev}.")
    if here is None and elsewhere:
        raise HostRefused(f"{dev} is mounted at {elsewhere[0]}, not {mount}: unmount it or set volumes.mount.")
    fstype, uuid = v.fstype, v.uuid
    if v.blkid.get("PTTYPE"):
        raise HostRefused(f"{dev} has a {v.blkid['PTTYPE']} partition table: CourseHub never reformats a "
                          "device with data; wipe it yourself if it is really unused.")
    if fstype and fstype not in KNOWN_FS:
        raise HostRefused(f"{dev} holds {fstype} data: CourseHub never reformats a device with data.")
    if not fstype:
        if v.size <= 0 or v.read < min(v.size, 1024**2):
            raise HostRefused(f"cannot read {dev} (size {v.size}, read {v.read} bytes): not formatting what "
                              "cannot be checked for data.")
        if v.nonzero:
            raise HostRefused(f"{dev} is not blank ({v.nonzero} non-zero bytes in its first MiB, no known "
                              "filesystem): CourseHub never reformats a device with data.")
        fstype, uuid = filesystem, new_uuid or str(uuidlib.uuid4())
        mkfs = f"mkfs.xfs -q -L {LABEL} -m uuid={uuid}" if fstype == "xfs" else f"mkfs.{fstype} -q -F -L {LABEL} -U {uuid}"
        actions.append(Action(why=f"blank device (found by {v.source})", label=f"{mkfs} {dev}",
                              command=f"{BLANK_CHECK}; blank {q(dev)} || {{ echo '{dev} is not blank: "
                                      f"not formatting it' >&2; exit 1; }}; {mkfs} {q(dev)}"))
    line = fstab_line(uuid, mount, fstype)
    aliases = {dev, v.source, f"UUID={uuid}"} - {"device", "none"}
    new_fstab = fstab_with(fstab, line, aliases)
    if new_fstab != fstab:
        actions.append(put_text(FileSpec(FSTAB, new_fstab), f"mount {mount} by UUID after reboot"))
    if here is None:
        if v.listing:
            raise HostRefused(f"{mount} is not empty on the root disk ({v.listing}...): mounting {dev} over it "
                              "would hide those files; move them away first.")
        actions.append(Action(why=f"{dev} not mounted", label=f"mount {dev} at {mount}",
                              command=f"mkdir -p {q(mount)} && (mount {q(mount)} 2>/dev/null || "
                                      f"mount -t {fstype} -o defaults {q(dev)} {q(mount)})"))
    return actions, new_fstab


class Disks(ProbeStep):
    """Every data volume of the host formatted (only if blank) and mounted by UUID."""

    name = "disks"

    def __init__(self, settings: Settings):
        self.mount = settings.volumes.mount
        self.filesystem = settings.volumes.filesystem

    def command(self, host: Host) -> str:
        return disk_command(host, self.mount)

    def parse(self, text: str, host: Host) -> DiskFacts:
        return parse_disks(text, host, self.mount)

    def decide(self, fact: DiskFacts, remote: Remote) -> list[Action]:
        actions: list[Action] = []
        fstab = fact.fstab
        for v in fact.volumes:
            more, fstab = volume_actions(v, fstab, fact.mounts, self.filesystem)
            actions += more
        # Several fstab edits collapse into one write of the final text.
        writes = [a for a in actions if a.label.startswith(f"write {FSTAB}")]
        if len(writes) > 1:
            actions = [a for a in actions if a not in writes[:-1]]
        return actions


class GrowDisk(ProbeStep):
    """Grow each mounted data filesystem to the size of its (extended) volume."""

    name = "grow-disk"
    SLACK = 64 * 1024**2

    def __init__(self, settings: Settings):
        self.mount = settings.volumes.mount

    def command(self, host: Host) -> str:
        return disk_command(host, self.mount, sizes=True)

    def parse(self, text: str, host: Host) -> DiskFacts:
        return parse_disks(text, host, self.mount)

    def decide(self, fact: DiskFacts, remote: Remote) -> list[Action]:
        actions = []
        for v in fact.volumes:
            locate(v)
            here = mounted_at(fact.mounts, v.mount)
            if here is None or here.majmin != v.majmin:
                raise HostRefused(f"{v.dev} is not mounted at {v.mount}: run `inv bootstrap` first.")
            if not v.fs_size:
                raise HostRefused(f"cannot tell the size of the {v.fstype or 'unknown'} filesystem on {v.dev}.")
            if v.size - v.fs_size <= max(self.SLACK, v.size // 100):
                continue
            grow = {"xfs": f"xfs_growfs {q(v.mount)}", "btrfs": f"btrfs filesystem resize max {q(v.mount)}"}.get(
                v.fstype, f"resize2fs {q(v.dev)}")
            actions.append(Action(why=f"filesystem {human_size(v.fs_size)}, volume {human_size(v.size)}",
                                  command=grow + " >/dev/null"))
        return actions
