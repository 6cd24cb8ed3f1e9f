"""ops.swapoff + ops.resync-clocks on N lab hosts, next to ansible-playbook doing the same, and the floor.

    sudo .venv/bin/python bench/ops_vs_ansible.py                 # 5, 10, 20 and 40 hosts
    sudo .venv/bin/python bench/ops_vs_ansible.py --sizes 5,20 --repeat 5 --json out.json

For each size, on the same lab hosts (tests/lab/fleet_lab.py: real systemd hosts, reached as
`debian` with sudo, through inventory/ssh_config):

- floor:    one parallel round of `ssh -F inventory/ssh_config HOST true` (OpenSSH, a fresh
            connection each; what any tool pays at least once per host)
- coursehub `inv ops.swapoff ops.resync-clocks` (one process, one connection per host for both;
            "in fleet" is the part spent in fleet.run: connecting, probing, changing)
- ansible   `ansible-playbook` with the same work (active swap -> swapoff, fstab swap entries
            commented, swap.target masked, timesyncd running), forks = hosts, pipelining on,
            gathering off, and ansible's default ControlPersist connection reuse between runs

Two rounds per size: `steady` (hosts already fine: the re-run case) and `repair` (before every
timed run, a swap entry is put back into every host's fstab and swap.target unmasked, so
both tools must change every host). The median of --repeat runs is reported, then the ratios
and the targets: at 20 hosts coursehub >= 5x faster than ansible and <= 2x the floor; at 40
hosts <= 2x its own time at 5. Exit code 1 if a measured target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.lab import fleet_lab  # noqa: E402

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  become: true
  tasks:
    - name: active swap
      ansible.builtin.command: cat /proc/swaps
      register: swaps
      changed_when: false
    - name: swap off now
      ansible.builtin.command: swapoff -a
      when: swaps.stdout_lines | length > 1
    - name: swap off after reboot
      ansible.builtin.replace:
        path: /etc/fstab
        regexp: '^([^#\\s]\\S*\\s+\\S+\\s+swap\\s.*)$'
        replace: '# \\1'
    - name: swap units masked
      ansible.builtin.systemd_service:
        name: swap.target
        masked: true
    - name: time daemon running
      ansible.builtin.systemd_service:
        name: systemd-timesyncd
        state: started
"""
BREAK = "echo '/swapfile none swap sw 0 0' >> /etc/fstab && systemctl unmask swap.target >/dev/null 2>&1"


def ansible_files(fl: fleet_lab.FleetLab, forks: int) -> tuple[Path, dict[str, str]]:
    d = fl.dir / "ansible"
    d.mkdir(exist_ok=True)
    (d / "hosts.ini").write_text("[lab]\n" + "\n".join(fl.names) + "\n")
    (d / "play.yml").write_text(PLAYBOOK)
    (d / "ansible.cfg").write_text(
        "[defaults]\n"
        f"inventory = {d / 'hosts.ini'}\nforks = {forks}\nhost_key_checking = True\n"
        "interpreter_python = /usr/bin/python3\ngathering = explicit\nretry_files_enabled = False\n"
        f"local_tmp = {d / 'tmp'}\n"
        "[ssh_connection]\npipelining = True\n"
        f"ssh_args = -F {fl.inventory.ssh_config} -o ControlMaster=auto -o ControlPersist=60s\n"
        f"control_path_dir = {d / 'cp'}\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(d / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    return d / "play.yml", env


def timed(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return dt


def fleet_seconds(fl: fleet_lab.FleetLab) -> float:
    """Seconds the last `inv ops.swapoff ops.resync-clocks` spent inside fleet.run (connect, probe, change)."""
    total = 0.0
    for task in ("ops.swapoff", "ops.resync-clocks"):
        newest = max((fl.inventory.dir / "runs").glob(f"*-{task}*.json"), key=lambda p: p.stat().st_mtime)
        total += json.loads(newest.read_text())["seconds"]
    return total


def floor(fl: fleet_lab.FleetLab) -> float:
    argv = ["ssh", "-F", str(fl.inventory.ssh_config), "-o", "BatchMode=yes", "-o", "ControlMaster=no"]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([*argv, n, "true"], stdin=subprocess.DEVNULL) for n in fl.names]
    codes = [p.wait() for p in procs]
    dt = time.perf_counter() - t0
    assert codes == [0] * len(codes), codes
    return dt


def break_all(fl: fleet_lab.FleetLab) -> None:
    with ThreadPoolExecutor(len(fl.names)) as pool:
        list(pool.map(lambda n: fl.sh(n, BREAK), fl.names))


def measure(n: int, repeat: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with fleet_lab.running(n, volume_gb=0, vars_overrides={"parallel": n}, lock=False) as fl:
        play, aenv = ansible_files(fl, n)
        ours = fl.inv_argv("ops.swapoff", "ops.resync-clocks")
        ansible = [shutil.which("ansible-playbook") or "ansible-playbook", str(play)]
        timed(ours, fl.env())  # converge once: both rounds then start from the same state
        timed(ansible, aenv)
        for mode in ("steady", "repair"):
            samples: dict[str, list[float]] = {"floor": [], "coursehub": [], "in fleet": [], "ansible": []}
            for _ in range(repeat):
                samples["floor"].append(floor(fl))
                if mode == "repair":
                    break_all(fl)
                samples["coursehub"].append(timed(ours, fl.env()))
                samples["in fleet"].append(fleet_seconds(fl))
                if mode == "repair":
                    break_all(fl)
                samples["ansible"].append(timed(ansible, aenv))
            out[mode] = {k: statistics.median(v) for k, v in samples.items()}
            if mode == "repair":  # the last repair really repaired every host
                swaps = fl.on_all("grep -c '^/swapfile' /etc/fstab || true")
                assert set(swaps.values()) == {"0"}, swaps
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5,10,20,40", help="host counts, comma-separated (default 5,10,20,40)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per tool and size; the median counts")
    ap.add_argument("--json", default="", help="also write the numbers to this file")
    args = ap.parse_args()
    if os.geteuid() != 0 or not shutil.which("ansible-playbook"):
        print("needs root (the lab) and ansible-playbook", file=sys.stderr)
        return 2
    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    results: dict[int, dict[str, dict[str, float]]] = {}
    print(f"load average before: {os.getloadavg()[0]:.2f} (the machine's 2 cores are shared)")
    print(f"{'hosts':>5} {'mode':<7} {'floor':>7} {'coursehub':>10} {'(in fleet)':>10} {'ansible':>8} "
          f"{'ansible/ours':>13} {'ours/floor':>11}")
    with fleet_lab.locked():  # one lab at a time on this machine, held across all sizes
        for n in sizes:
            results[n] = measure(n, args.repeat)
            for mode, r in results[n].items():
                print(f"{n:>5} {mode:<7} {r['floor']:>6.2f}s {r['coursehub']:>9.2f}s {r['in fleet']:>9.2f}s "
                      f"{r['ansible']:>7.2f}s "
                      f"{r['ansible'] / r['coursehub']:>12.1f}x {r['coursehub'] / r['floor']:>10.2f}x", flush=True)
    missed = []
    if 20 in results:
        for mode, r in results[20].items():
            if r["ansible"] / r["coursehub"] < 5:
                missed.append(f"20 hosts {mode}: only {r['ansible'] / r['coursehub']:.1f}x faster than ansible (target 5x)")
            if r["coursehub"] / r["floor"] > 2:
                missed.append(f"20 hosts {mode}: {r['coursehub'] / r['floor']:.2f}x the floor (target 2x)")
    if 40 in results and 5 in results:
        for mode in results[40]:
            ratio = results[40][mode]["coursehub"] / results[5][mode]["coursehub"]
            print(f"40 vs 5 hosts ({mode}): {ratio:.2f}x")
            if ratio > 2:
                missed.append(f"{mode}: 40 hosts took {ratio:.2f}x the time at 5 (target 2x)")
    if args.json:
        Path(args.json).write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2) + "\n")
    for m in missed:
        print("target missed:", m)
    print("all measured targets met" if not missed else f"{len(missed)} target(s) missed")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
