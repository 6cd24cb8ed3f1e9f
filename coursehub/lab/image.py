"""The lab's base root filesystem: built once with mmdebstrap, cached, extracted once.

`ensure_base()` is all a caller needs: it returns a directory holding an extracted
Debian root filesystem that every lab host uses as its (read-only) overlay lowerdir.

- The tarball `base-<key>.tar.zst` is built by mmdebstrap from this machine's own apt
  sources (only the stanzas for this machine's Debian release), with the package list
  and the customize hook below. `<key>` hashes all of that, so changing the list, the
  hook or the sources builds a new image; old ones are left for `prune()`.
- The extracted tree `rootfs-<key>/` sits beside it and is shared by every lab on the
  machine (it must never be written to while a host uses it).
- Cache directory: `$COURSEHUB_LAB_CACHE` or `/var/cache/coursehub-lab`. A file lock
  makes concurrent callers wait for one build instead of running two.

`lab-cgroup-rw.service` (cgroup v1 controllers read-write, which `docker run` needs) is
pulled in by docker.service/containerd.service through .wants links made here, so it
costs nothing at boot and works once CourseHub installs docker through the proxy.

Per-host settings (hostname, keys, the image user, the bridge address for apt and NTP)
are written into each host's overlay at creation, not baked in here.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from coursehub.lab.aptsources import read_sources

DEFAULT_CACHE = Path("/var/cache/coursehub-lab")
FORMAT = "1"  # bump to force a rebuild when the build procedure itself changes

PACKAGES: tuple[str, ...] = (
    "systemd", "systemd-sysv", "dbus", "systemd-timesyncd", "libpam-systemd",
    "openssh-server", "sudo", "python3", "python3-venv",
    "iproute2", "iputils-ping", "procps", "less", "kmod", "netbase",
    "e2fsprogs", "xfsprogs", "util-linux", "ca-certificates", "curl",
)

DPKG_EXCLUDES: tuple[str, ...] = (
    "/usr/share/man/*", "/usr/share/doc/*", "/usr/share/info/*", "/usr/share/locale/*",
    "/usr/share/lintian/*", "/usr/share/linda/*",
)

# Units that cost boot time and do nothing useful in a lab host.
MASKED_UNITS: tuple[str, ...] = (
    "apt-daily.timer", "apt-daily-upgrade.timer", "man-db.timer", "fstrim.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "console-getty.service", "modprobe@.service",
    "sys-kernel-debug.mount", "sys-kernel-tracing.mount", "dev-hugepages.mount",
    "systemd-journal-flush.service",
)

# Generators for boot setups a lab host never has (encrypted/verity disks, hibernation,
# kernel command-line switches); each costs an exec at every boot.
MASKED_GENERATORS: tuple[str, ...] = (
    "systemd-cryptsetup-generator", "systemd-integritysetup-generator", "systemd-veritysetup-generator",
    "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator", "systemd-system-update-generator",
    "systemd-run-generator", "systemd-debug-generator",
)

# The gateway address baked in for the default subnet; hosts.py rewrites the two
# files that name it when a lab uses another subnet.
DEFAULT_GATEWAY = "10.77.0.1"
PROXY_PORT = 3142

CGROUP_RW_UNIT = """\
[Unit]
Description=Remount the cgroup v1 controllers read-write (docker/runc in a lab host)
DefaultDependencies=no
After=local-fs.target
Before=containerd.service docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for c in /sys/fs/cgroup/*; do mountpoint -q "$c" && mount -o remount,bind,rw "$c" || true; done'

[Install]
WantedBy=docker.service containerd.service
"""


def timesyncd_conf(gateway: str) -> str:
    """timesyncd settings: the bridge address only (it serves no NTP), no fallback."""
    return f"[Time]\nNTP={gateway}\nFallbackNTP=\n"


def apt_proxy_conf(gateway: str, port: int = PROXY_PORT) -> str:
    """apt settings sending every request through the lab's allow-listed proxy."""
    return f'Acquire::http::Proxy "http://{gateway}:{port}";\nAcquire::https::Proxy "http://{gateway}:{port}";\n'


def customize_hook() -> str:
    """The shell run by mmdebstrap on the finished tree ($1 is its root)."""
    masks = " ".join(MASKED_UNITS)
    return f"""set -e
R="$1"
rm -f "$R"/etc/ssh/ssh_host_*
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id" "$R/etc/resolv.conf"
: > "$R/etc/resolv.conf"
mkdir -p "$R/etc/ssh/sshd_config.d"
cat > "$R/etc/ssh/sshd_config.d/10-coursehub-lab.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
MaxStartups 100:30:200
EOF
for u in {masks}; do ln -sf /dev/null "$R/etc/systemd/system/$u"; done
mkdir -p "$R/etc/systemd/system-generators"
for g in {" ".join(MASKED_GENERATORS)}; do ln -sf /dev/null "$R/etc/systemd/system-generators/$g"; done
mkdir -p "$R/etc/systemd/system/systemd-timesyncd.service.d" "$R/etc/systemd/timesyncd.conf.d"
printf '[Unit]\\nConditionVirtualization=\\n' > "$R/etc/systemd/system/systemd-timesyncd.service.d/10-coursehub-lab.conf"
cat > "$R/etc/systemd/timesyncd.conf.d/10-coursehub-lab.conf" <<'EOF'
{timesyncd_conf(DEFAULT_GATEWAY)}EOF
cat > "$R/etc/apt/apt.conf.d/90coursehub-lab-proxy" <<'EOF'
{apt_proxy_conf(DEFAULT_GATEWAY)}EOF
cat > "$R/etc/systemd/system/lab-cgroup-rw.service" <<'EOF'
{CGROUP_RW_UNIT}EOF
for u in docker.service containerd.service; do
  mkdir -p "$R/etc/systemd/system/$u.wants"
  ln -sf /etc/systemd/system/lab-cgroup-rw.service "$R/etc/systemd/system/$u.wants/lab-cgroup-rw.service"
done
mkdir -p "$R/var/lib/docker" "$R/var/lib/containerd"
"""


# ---------------------------------------------------------------- apt sources


def _release_codename() -> str:
    text = Path("/etc/os-release").read_text()
    m = re.search(r"^VERSION_CODENAME=\"?([a-z]+)\"?$", text, re.M)
    if not m:
        raise RuntimeError("cannot tell this machine's Debian release from /etc/os-release")
    return m.group(1)


def debian_sources(codename: str | None = None, root: Path = Path("/")) -> str:
    """This machine's apt sources for its own Debian release, as one deb822 text.

    Third-party repositories (other suites) are left out: their keyrings are not in
    the image and hosts could not use them through the proxy anyway.
    """
    codename = codename or _release_codename()
    out = []
    for src in read_sources(root):
        suites = tuple(s for s in src.suites if s.split("-")[0] == codename)
        if "deb" in src.types and suites:
            out.append(replace(src, types=("deb",)).deb822(suites))
    if not out:
        raise RuntimeError(f"no apt source for Debian {codename} in /etc/apt/sources.list*")
    return "\n".join(out)


# ---------------------------------------------------------------- cache


def cache_dir(path: Path | None = None) -> Path:
    """The cache directory (argument, $COURSEHUB_LAB_CACHE, or the default)."""
    return Path(path or os.environ.get("COURSEHUB_LAB_CACHE") or DEFAULT_CACHE)


def image_key(codename: str | None = None) -> str:
    """A short hash of everything that decides the image's content."""
    codename = codename or _release_codename()
    h = hashlib.sha256()
    for part in (FORMAT, codename, " ".join(PACKAGES), " ".join(DPKG_EXCLUDES), customize_hook(),
                 debian_sources(codename)):
        h.update(part.encode() + b"\0")
    return h.hexdigest()[:16]


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_image(cache: Path | None = None, *, force: bool = False, log: Path | None = None) -> Path:
    """Build (or find) the cached base tarball; returns its path."""
    cache = cache_dir(cache)
    codename = _release_codename()
    key = image_key(codename)
    tarball = cache / f"base-{key}.tar.zst"
    with _locked(cache):
        if tarball.exists() and not force:
            return tarball
        sources = cache / f"base-{key}.sources"
        sources.write_text(debian_sources(codename))
        tmp = cache / f".base-{key}.tmp.tar.zst"
        tmp.unlink(missing_ok=True)
        cmd = [
            "mmdebstrap", "--variant=minbase", "--mode=root",
            "--include=" + ",".join(PACKAGES),
            *(f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES),
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            "--customize-hook=" + customize_hook(),
            codename, str(tmp), str(sources),
        ]
        t0 = time.monotonic()
        with open(log or cache / f"base-{key}.build.log", "w") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        if rc != 0 or not tmp.exists():
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"mmdebstrap failed (rc {rc}); see {log or cache / f'base-{key}.build.log'}")
        os.replace(tmp, tarball)
        (cache / f"base-{key}.seconds").write_text(f"{time.monotonic() - t0:.1f}\n")
        return tarball


def ensure_base(cache: Path | None = None) -> Path:
    """Return the extracted shared rootfs (building and extracting it if needed)."""
    cache = cache_dir(cache)
    key = image_key()
    root = cache / f"rootfs-{key}"
    if (root / ".coursehub-complete").exists():
        return root
    tarball = build_image(cache)
    with _locked(cache):
        if (root / ".coursehub-complete").exists():
            return root
        tmp = cache / f".rootfs-{key}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        subprocess.run(
            ["tar", "--zstd", "-xpf", str(tarball), "-C", str(tmp), "--numeric-owner",
             "--xattrs", "--xattrs-include=*"],
            check=True, stdin=subprocess.DEVNULL,
        )
        (tmp / ".coursehub-complete").write_text(key + "\n")
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    return root


def prune(cache: Path | None = None, keep: str | None = None) -> list[Path]:
    """Remove cached images other than `keep` (default: the current key); returns what went.

    Only call this when no lab is running on an older image (it is its lowerdir).
    """
    cache = cache_dir(cache)
    keep = keep or image_key()
    gone: list[Path] = []
    with _locked(cache):
        for p in cache.iterdir():
            if p.name.startswith((".", "base-", "rootfs-")) and keep not in p.name and p.name != ".lock":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                gone.append(p)
    return gone


if __name__ == "__main__":  # python -m coursehub.lab.image: build and extract, print the path
    t = time.monotonic()
    print(ensure_base(), f"{time.monotonic() - t:.1f} s")
