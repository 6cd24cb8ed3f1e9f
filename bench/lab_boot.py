"""How fast lab hosts become SSH-ready from the cached base image, and how fast they go away.

    sudo .venv/bin/python bench/lab_boot.py [--counts 1,10,20] [--running] [--lab-dir DIR]

For each count N: start a HostsBackend, create N servers at once, and time until every
sshd greets with its banner ("ssh-ready"); with --running also until every host's
`systemctl is-system-running --wait` says running (over SSH, strict host keys). Then
close() is timed ("teardown") and `leftovers()` must be empty. "lab cpu" is the CPU time
the hosts used until ssh-ready, "others cpu" what the rest of the machine used meanwhile
(anything above ~0.5 s means the numbers are disturbed by other work). The base image is built
(or extracted) before the clock starts. Target on a 2-core machine: 20 hosts < 10 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coursehub.lab import image  # noqa: E402
from coursehub.lab.backend import ServerSpec  # noqa: E402
from coursehub.lab.hosts import HostsBackend, leftovers  # noqa: E402
from tests.lab.labkit import lab_lock  # noqa: E402


def specs(n: int, public_key: str) -> list[ServerSpec]:
    peers = {f"b{i}": f"10.77.0.{10 + i}" for i in range(1, n + 1)}
    return [ServerSpec(id=str(uuid.uuid4()), name=f"b{i}", index=i, address=f"10.77.0.{10 + i}",
                       mac=f"02:77:00:00:00:{i:02x}", user="debian", public_key=public_key, peers=peers)
            for i in range(1, n + 1)]


def all_running(addresses: list[str], key: Path, known_hosts: Path) -> bool:
    def one(addr: str) -> str:
        r = subprocess.run(["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known_hosts}",
                            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"debian@{addr}",
                            "systemctl is-system-running --wait"], capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        return r.stdout.strip()

    with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
        return all(s == "running" for s in pool.map(one, addresses))


def busy_cpu() -> float:
    """CPU seconds this machine has been busy (all processes), from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


def lab_cpu() -> float:
    """CPU seconds used by the lab's hosts (supervisors, nspawn, guests)."""
    f = Path("/sys/fs/cgroup/cpuacct/lab/cpuacct.usage")
    return int(f.read_text()) / 1e9 if f.exists() else 0.0


def own_cpu() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def run(n: int, lab_dir: Path, key: Path, public_key: str, running: bool) -> dict[str, float]:
    t = time.monotonic()
    backend = HostsBackend(lab_dir)
    backend.wait_base()
    out = {"lab up": time.monotonic() - t}
    try:
        todo = specs(n, public_key)
        busy0, own0 = busy_cpu(), own_cpu()
        t = time.monotonic()
        keys = {s.id: backend.create(s) for s in todo}
        states = backend.wait_ready(keys, timeout=120)
        out["ssh-ready"] = time.monotonic() - t
        out["lab cpu"] = lab_cpu()
        out["other cpu"] = max(0.0, busy_cpu() - busy0 - out["lab cpu"] - (own_cpu() - own0))
        bad = [backend.error(i) for i, ok in states.items() if not ok]
        if bad:
            raise SystemExit(f"{len(bad)} of {n} hosts failed: {bad[0]}")
        if running:
            kh = lab_dir / "known_hosts"
            kh.write_text("".join(f"{s.address} {keys[s.id].lines[0]}\n" for s in todo))
            if not all_running([s.address for s in todo], key, kh):
                raise SystemExit("not every host reached 'running'")
            out["all running"] = time.monotonic() - t
    finally:
        t = time.monotonic()
        backend.close()
        out["teardown"] = time.monotonic() - t
    left = leftovers(lab_dir)
    if left:
        raise SystemExit(f"left behind: {left}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", default="1,10,20")
    ap.add_argument("--running", action="store_true", help="also wait for systemd 'running' on every host")
    ap.add_argument("--lab-dir", type=Path, default=Path(f"/var/tmp/coursehub-lab-bench-{os.getpid()}"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("the lab needs root")
    t = time.monotonic()
    base = image.ensure_base()
    build = image.cache_dir() / f"base-{image.image_key()}.seconds"
    print(f"base image: {base} ready in {time.monotonic() - t:.1f} s"
          + (f" (built once in {build.read_text().strip()} s)" if build.exists() else ""))
    with tempfile.TemporaryDirectory() as tmp, lab_lock():
        key = Path(tmp) / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        public_key = key.with_suffix(".pub").read_text().strip()
        print(f"{'hosts':>5} {'lab up':>8} {'ssh-ready':>10} {'all running':>12} {'teardown':>9}"
              f" {'lab cpu':>9} {'others cpu':>11}")
        for n in (int(c) for c in args.counts.split(",")):
            r = run(n, args.lab_dir, key, public_key, args.running)
            running = f"{r['all running']:.2f} s" if "all running" in r else "-"
            print(f"{n:>5} {r['lab up']:>6.2f} s {r['ssh-ready']:>8.2f} s {running:>12} {r['teardown']:>7.2f} s"
                  f" {r['lab cpu']:>7.2f} s {r['other cpu']:>9.2f} s", flush=True)
    subprocess.run(["rm", "-rf", "--one-file-system", str(args.lab_dir)], check=False)


if __name__ == "__main__":
    main()
