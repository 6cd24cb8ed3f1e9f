"""Loop devices for lab volumes: a sparse file on this machine, a /dev/loopN, a node in the guest."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

_lock = threading.Lock()  # `losetup -f` picks a free device; one at a time per process


class LoopError(RuntimeError):
    """losetup failed; the message has its stderr."""


def _losetup(*args: str) -> str:
    r = subprocess.run(["losetup", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise LoopError(f"losetup {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout.strip()


def create_file(path: Path, size_gb: int) -> None:
    """A sparse backing file of `size_gb` GiB (never shrinks an existing one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = size_gb * 1024**3
    with open(path, "ab") as fh:
        if os.fstat(fh.fileno()).st_size < size:
            fh.truncate(size)


def attach(path: Path) -> str:
    """Attach `path` to a free loop device; returns /dev/loopN."""
    with _lock:
        return _losetup("-f", "--show", str(path))


def detach(loop: str) -> None:
    """Detach a loop device (idempotent; the kernel defers it while the device is in use)."""
    try:
        _losetup("-d", loop)
    except LoopError as e:
        if "No such device" not in str(e) and "No such device or address" not in str(e):
            raise


def refresh(loop: str) -> None:
    """Make the loop device pick up its backing file's new size."""
    _losetup("-c", loop)


def device_numbers(loop: str) -> tuple[int, int]:
    """(major, minor) of a block device."""
    st = os.stat(loop)
    return os.major(st.st_rdev), os.minor(st.st_rdev)


def loops_backed_under(directory: Path) -> dict[str, str]:
    """/dev/loopN -> backing file, for every loop device whose file lies under `directory`."""
    prefix = str(directory.resolve()).rstrip("/") + "/"
    out: dict[str, str] = {}
    for dev in Path("/sys/block").glob("loop*"):
        try:
            backing = (dev / "loop/backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(prefix):
            out[f"/dev/{dev.name}"] = backing
    return out
