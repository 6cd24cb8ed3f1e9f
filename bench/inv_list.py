"""How fast `inv --list` answers (heavy libraries must load only inside the tasks that use them).

    .venv/bin/python bench/inv_list.py [--runs 10]

Prints the median and worst wall time of `inv --list` over N runs, next to the floor
(`python -c pass` in the same interpreter) and the ratio. Target: well under 0.5 s.
Also lists which heavy modules got imported by `import tasks` (should be none).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("openstack", "keystoneauth1", "jsonschema", "paramiko", "fabric", "jinja2", "yaml", "cryptography")


def timed(argv: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    inv = timed([sys.executable, "-m", "invoke", "--list"], args.runs)
    floor = timed([sys.executable, "-c", "pass"], args.runs)
    code = ("import sys, invoke.util; base = set(sys.modules); import tasks; "
            f"print(' '.join(sorted(m for m in {HEAVY!r} if m in sys.modules and m not in base)))")
    probe = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                           text=True).stdout.strip()
    med, flo = statistics.median(inv), statistics.median(floor)
    print(f"inv --list: median {med:.3f} s, worst {max(inv):.3f} s over {args.runs} runs (target < 0.5 s)")
    print(f"python -c pass (floor): median {flo:.3f} s; ratio {med / flo:.1f}x the floor")
    print(f"heavy modules imported by `import tasks` (beyond what Invoke itself loads): {probe or 'none'}")


if __name__ == "__main__":
    main()
