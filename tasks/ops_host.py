"""Host chores of the runbook, on all hosts at once (imported into the `ops` namespace).

Every task takes --hosts, --role, --parallel and --dry-run, prints one table row
per host (ok / changed / failed / unreachable), writes the run report to
inventory/runs/, and exits 1 if any host failed. Chained tasks share the SSH
connections: `inv ops.swapoff ops.resync-clocks`.
"""

from __future__ import annotations

import sys

from invoke import Exit, task

from tasks._common import HOST_FLAGS, run_steps

__all__ = ["swapoff", "resync_clocks", "truncate_logs", "disk_report", "purge_images", "exec_", "grow_disk",
           "move_docker_root", "move_kubelet_root"]


def _flags(**more: str) -> dict[str, str]:
    return {**HOST_FLAGS, **more}


def _size(text: str, flag: str) -> int:
    from coursehub.steps.probe import parse_size

    try:
        return parse_size(text)
    except ValueError as e:
        raise Exit(f"{flag}: {e}", code=2) from None


def _remainder() -> str:
    """The words after `--` on the command line (Invoke keeps them from tasks)."""
    argv = sys.argv
    return " ".join(argv[argv.index("--") + 1:]) if "--" in argv else ""


@task(help=_flags())
def swapoff(c, hosts="", role="", parallel=0, dry_run=False):
    """Turn swap off on every host, now and after reboot.

    swapoff -a where swap is active, swap entries in /etc/fstab commented out (the
    old file kept as /etc/fstab.coursehub-swap.bak), swap.target and swap units masked.
    """
    from coursehub.steps.swap import SwapOff

    run_steps("ops.swapoff", lambda s, inv: [SwapOff()], hosts, role, parallel, dry_run)


@task(help=_flags(force="restart the time daemon on every host, synchronised or not"))
def resync_clocks(c, hosts="", role="", parallel=0, dry_run=False, force=False):
    """Restart the time daemon where it is stopped or has not synchronised for 5 minutes.

    systemd-timesyncd or chrony (hosts.time_sync in vars.yml). A daemon that is
    synchronised, or started only a moment ago, is left alone.
    """
    from coursehub.steps.clock import ResyncClocks

    run_steps("ops.resync-clocks", lambda s, inv: [ResyncClocks(s, force=force)], hosts, role, parallel, dry_run)


@task(help=_flags(over="truncate files bigger than this, e.g. 100M or 2G (default 1G)"))
def truncate_logs(c, hosts="", role="", parallel=0, dry_run=False, over="1G"):
    """Truncate runaway logs in place and list them: /var/log and docker's container logs.

    The writing process keeps its file; journald's *.journal files are never touched.
    """
    from coursehub.steps.logs import TruncateLogs

    run_steps("ops.truncate-logs", lambda s, inv: [TruncateLogs(_size(over, "--over"))], hosts, role, parallel, dry_run)


@task(help=_flags(path="list the biggest directories under this path (default /var)",
                  top="how many of the biggest directories to list (default 5)",
                  user="report this user's home instead of --path",
                  warn_below="flag filesystems with less free space than this percent "
                             "(default: hosts.disk_free_percent in vars.yml)"))
def disk_report(c, hosts="", role="", parallel=0, dry_run=False, path="/var", top=5, user="", warn_below=0):
    """Disk usage per host: every filesystem with LOW below the threshold, and the biggest directories.

    Read-only. With --user NAME, that user's home (passwd, /home/NAME, /home/jupyter-NAME,
    or under the NFS export) takes the place of --path.
    """
    from coursehub.steps.report import DiskReport

    def build(s, inv):
        try:
            return [DiskReport(warn_below or s.hosts.disk_free_percent, path, int(top), user,
                               homes=(s.storage.nfs_export, s.storage.nfs_export.rstrip("/") + "/home"))]
        except ValueError as e:
            raise Exit(str(e), code=2) from None

    run_steps("ops.disk-report", build, hosts, role, parallel, dry_run)


@task(help=_flags())
def purge_images(c, hosts="", role="", parallel=0, dry_run=False):
    """Remove container images that no container uses (docker, crictl or ctr), on every host.

    Images pinned by the runtime (the Kubernetes pause image) stay.
    """
    from coursehub.steps.images import PurgeImages

    run_steps("ops.purge-images", lambda s, inv: [PurgeImages(s.hosts.runtime)], hosts, role, parallel, dry_run)


@task(name="exec", help=_flags(command="the command (or give it after --: inv ops.exec -- df -h /)"))
def exec_(c, hosts="", role="", parallel=0, dry_run=False, command=""):
    """Run an ad hoc command as root on the selected hosts; show each host's output.

    inv ops.exec --role compute -- systemctl is-active containerd
    A host whose command exits non-zero shows its exit code in the output.
    """
    from coursehub.steps.adhoc import AdHoc

    def build(s, inv):
        cmd = command or _remainder()
        if not cmd.strip():
            raise Exit("ops.exec: no command given (inv ops.exec -- CMD, or --command CMD)", code=2)
        return [AdHoc(cmd)]

    run_steps("ops.exec", build, hosts, role, parallel, dry_run)


@task(help=_flags())
def grow_disk(c, hosts="", role="", parallel=0, dry_run=False):
    """Grow each data volume's filesystem to the volume's size, after it was extended in the cloud.

    xfs_growfs, resize2fs or btrfs resize, on the mounted filesystem; nothing when it already fills its volume.
    """
    from coursehub.steps.disks import GrowDisk

    run_steps("ops.grow-disk", lambda s, inv: [GrowDisk(s)], hosts, role, parallel, dry_run)


def _move(kind: str, to: str, drop_old: bool, stop_containers: bool = False):
    from coursehub.steps.moves import MoveRoot

    if not to:
        raise Exit("--to PATH is required", code=2)
    try:
        return MoveRoot(kind, to, drop_old=drop_old, stop_containers=stop_containers)
    except ValueError as e:
        raise Exit(str(e), code=2) from None


def _warn_vars(configured: str, to: str, key: str) -> None:
    if configured and configured.rstrip("/") != to.rstrip("/"):
        print(f"note: vars.yml {key} is {configured}: the next `inv bootstrap` would move it back; "
              f"set it to {to}.", file=sys.stderr)


@task(help=_flags(to="the new root directory, e.g. /mnt/data/docker",
                  runtime="docker or containerd (default: hosts.runtime in vars.yml)",
                  drop_old="remove the old copy kept by an earlier move (or by this one)",
                  stop_containers="docker: stop running containers first (else a host with live-restore "
                                  "containers is refused)"))
def move_docker_root(c, to="", hosts="", role="", parallel=0, dry_run=False, runtime="", drop_old=False,
                     stop_containers=False):
    """Move the container runtime's data root, with its data, to another disk.

    Stops the runtime, copies everything (cp -a), checks the copy, switches the
    configuration, starts it again and checks the root in use. The old copy stays
    until --drop-old. Running it again with the same --to changes nothing.
    """

    def build(s, inv):
        kind = runtime or s.hosts.runtime
        if kind not in ("docker", "containerd"):
            raise Exit(f"--runtime: expected docker or containerd, got {kind!r}", code=2)
        _warn_vars(s.hosts.runtime_root, to, "hosts.runtime_root")
        return [_move(kind, to, drop_old, stop_containers)]

    run_steps("ops.move-docker-root", build, hosts, role, parallel, dry_run)


@task(help=_flags(to="the new kubelet directory, e.g. /mnt/data/kubelet",
                  drop_old="remove the old copy (but config.yaml, kubeadm-flags.env; pki/ becomes a link)"))
def move_kubelet_root(c, to="", hosts="", role="", parallel=0, dry_run=False, drop_old=False):
    """Move the kubelet's directory, with its data, and point KUBELET_EXTRA_ARGS=--root-dir at it.

    Drain the node first: the move is refused while pod volumes are mounted under the old directory.
    """

    def build(s, inv):
        _warn_vars(s.kubernetes.kubelet_root, to, "kubernetes.kubelet_root")
        return [_move("kubelet", to, drop_old)]

    run_steps("ops.move-kubelet-root", build, hosts, role, parallel, dry_run)
