"""Provisioning 1 server versus 20 on the lab's API (memory backend), servers in BUILD for 3 s.

    .venv/bin/python bench/provision.py [--build-seconds 3] [--counts 1,20] [--volumes]

Each count is a fresh deployment from nothing: key pair, security group and rules,
(volumes,) servers, waiting for ACTIVE, host keys from the console logs, inventory.
Prints each time and the ratio to the first; target: 20 servers in at most 1.5x
the time of one. Only loopback traffic.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


def main() -> None:
    import subprocess

    import yaml

    from coursehub import cloud, settings
    from coursehub.lab.api import LabAPI
    from coursehub.lab.memory import MemoryBackend

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build-seconds", type=float, default=3.0)
    ap.add_argument("--counts", default="1,20")
    ap.add_argument("--volumes", action="store_true", help="give every server a data volume too")
    args = ap.parse_args()
    api = LabAPI(MemoryBackend(), build_seconds=args.build_seconds, password="bench-password-123").start()
    times: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "clouds.yaml").write_text(yaml.safe_dump(api.clouds_yaml()))
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "key")], check=True)
        for n in (int(x) for x in args.counts.split(",")):
            api.reset()
            api.configure(build_seconds=args.build_seconds)
            s = settings.from_dict({
                "deployment": f"bench{n}",
                "cloud": {"name": "coursehub-lab", "clouds_yaml": str(d / "clouds.yaml"), "parallel": 8},
                "instances": {"count": n, "flavor": "m3.small", "image": "Debian 12 (Bookworm)", "user": "debian",
                              "keypair": "bench", "public_key_file": str(d / "key.pub"),
                              "private_key_file": str(d / "key")},
                "volumes": {"enabled": args.volumes, "data_gb": 1},
                "network": {"admin_cidr": "10.77.0.1/32"},
                "users": {"auth": "dummy", "allow_all": True},
            })
            t0 = time.perf_counter()
            cloud.provision(s, d / f"inv{n}", clouds_yaml=str(d / "clouds.yaml"), interactive=False,
                            log=lambda m: None)
            times.append((n, time.perf_counter() - t0))
    api.stop()
    base = times[0][1]
    for n, t in times:
        print(f"{n:>3} servers: {t:6.2f} s   ratio {t / base:4.2f}x the first")
    n, t = times[-1]
    print(f"target: {n} servers in at most 1.5x the time of {times[0][0]}: {'met' if t / base <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
