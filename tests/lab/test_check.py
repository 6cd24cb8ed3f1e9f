"""`inv check` against real lab hosts, reached the way an admin does: lab.up, vars.lab.yml, provision.

    inv lab.up --backend hosts --nodes 2           (COURSEHUB_LAB_DIR: a temporary folder)
    COURSEHUB_VARS=vars.lab.yml inv provision bootstrap hub
    COURSEHUB_VARS=vars.lab.yml inv check          -> passes, changes nothing on the hosts
    break one host (a swap line in fstab, a CourseHub file chmod 666) -> fails naming that host and check
    inv bootstrap --hosts <it>                     -> repaired; inv check passes again
    stop sshd on a host (the lab's fault)          -> that host fails `ssh`, its other checks are skipped
    a wrong key in known_hosts                     -> the login is refused (strict host-key checking)

The lab's guests have no CAP_SYS_TIME (their clock is the machine's); systemd still starts
timesyncd there (it cannot set the clock, and its only server, the bridge, serves no time),
so the clock check sees a running daemon. Holds /tmp/coursehub-lab.lock for the whole
module (other engineers test on this machine); the lab is always taken down, and its and
the inventory's folders are temporary, so a developer's own lab and inventory are never
touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.lab.labkit import CAN_RUN_LAB, SKIP_REASON

pytestmark = [pytest.mark.lab, pytest.mark.skipif(not CAN_RUN_LAB, reason=SKIP_REASON)]

REPO = Path(__file__).resolve().parents[2]
INV = REPO / ".venv" / "bin" / "inv"
LOCK = "/tmp/coursehub-lab.lock"
UNCHANGED_DIRS = "/etc /opt /usr /srv /mnt/data /var/lib/coursehub"
TIMINGS: dict[str, float] = {}


@dataclass
class CheckLab:
    dir: Path
    env: dict[str, str]
    names: list[str] = field(default_factory=list)
    head: str = ""

    def inv(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """`inv ARGS` run from this lab's folder (vars.lab.yml lives there), with the repository's tasks."""
        t0 = time.monotonic()
        r = subprocess.run([str(INV), "--search-root", str(REPO), *args], cwd=self.dir, env=self.env,
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        TIMINGS[" ".join(args)] = time.monotonic() - t0
        print(f"\n$ inv {' '.join(args)}  ({TIMINGS[' '.join(args)]:.1f} s, exit {r.returncode})\n{r.stdout}{r.stderr}")
        return r

    @property
    def inventory(self) -> Path:
        return Path(self.env["COURSEHUB_INVENTORY"])

    def sh(self, name: str, command: str, timeout: float = 60) -> str:
        """`command` as root on host `name`, over OpenSSH with the inventory's ssh_config; must succeed."""
        argv = ["ssh", "-F", str(self.inventory / "ssh_config"), "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", name,
                "sudo -n sh -c " + shlex.quote(command)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"{name}: {command!r} exit {r.returncode}: {r.stdout}{r.stderr}"
        return r.stdout.strip()

    def fault(self, name: str, what: str) -> None:
        api = json.loads((Path(self.env["COURSEHUB_LAB_DIR"]) / "api.json").read_text())["url"]
        req = urllib.request.Request(f"{api}/_lab/hosts/{name}/{what}", data=b"", method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=60) as resp:
            assert resp.status in (200, 202, 204), resp.status


def table(stdout: str) -> dict[str, dict[str, str]]:
    """inv check's table -> host -> check -> cell."""
    lines = stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("host "))
    header = lines[start].split()[1:]
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = dict(zip(header, cells[1:], strict=True))
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def lab_lock() -> Iterator[None]:
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CheckLab]:
    """Two provisioned, bootstrapped lab hosts with the single-node hub on the head."""
    with lab_lock():
        d = tmp_path_factory.mktemp("checklab")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSEHUB_", "OS_"))}
        env.update(COURSEHUB_LAB_DIR=str(d / "lab"), COURSEHUB_INVENTORY=str(d / "inventory"),
                   COURSEHUB_VARS=str(REPO / "vars.yml"), NO_PROXY="127.0.0.1,localhost,10.77.0.0/16",
                   no_proxy="127.0.0.1,localhost,10.77.0.0/16")
        lab = CheckLab(d, env)
        try:
            up = lab.inv("lab.up", "--backend", "hosts", "--nodes", "2", "--port", str(free_port()), timeout=1200)
            assert up.returncode == 0 and (d / "vars.lab.yml").exists()
            env["COURSEHUB_VARS"] = str(d / "vars.lab.yml")
            assert lab.inv("provision", timeout=600).returncode == 0
            hosts = yaml.safe_load((lab.inventory / "hosts.yml").read_text())["hosts"]
            lab.names = [h["name"] for h in hosts]
            lab.head = next(h["name"] for h in hosts if "head" in h["roles"])
            boot = lab.inv("bootstrap", timeout=1200)
            assert boot.returncode == 0
            hub = lab.inv("hub", timeout=1500)
            assert hub.returncode == 0
            yield lab
        finally:
            from coursehub import fleet

            fleet.close_all()
            env["COURSEHUB_VARS"] = str(REPO / "vars.yml")
            down = lab.inv("lab.down", timeout=300)
            print("timings: " + ", ".join(f"{k}: {v:.1f} s" for k, v in TIMINGS.items()))
            assert down.returncode == 0, down.stdout + down.stderr


def test_check_passes_on_freshly_bootstrapped_hosts_and_changes_nothing(lab: CheckLab) -> None:
    marks = {n: lab.sh(n, "mktemp /run/checklab-mark.XXXXXX") for n in lab.names}
    time.sleep(1.1)  # mtimes have 1 s resolution on some filesystems: anything touched now is newer
    r = lab.inv("check")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = table(r.stdout)
    assert set(rows) == set(lab.names)
    other = next(n for n in lab.names if n != lab.head)
    assert rows[lab.head] == {"ssh": "ok", "swap": "ok", "clock": "ok", "disks": "ok", "free": "ok", "runtime": "ok",
                              "sshd": "ok", "perms": "ok", "hub": "ok", "port": "ok"}
    assert rows[other] == {**rows[lab.head], "hub": "-", "port": "-"}
    assert "2 hosts, 2 ok, 0 failed" in r.stdout
    for n, mark in marks.items():  # read-only: nothing under the configuration and data folders changed
        assert lab.sh(n, f"find {UNCHANGED_DIRS} -xdev -newer {mark} ! -name 'jupyterhub.sqlite*' -print 2>/dev/null | head -n 5; rm -f {mark}") == ""


def test_a_broken_host_fails_naming_the_host_and_the_checks(lab: CheckLab) -> None:
    other = next(n for n in lab.names if n != lab.head)
    lab.sh(other, "echo '/swapfile none swap sw 0 0' >> /etc/fstab && "
                  "chmod 666 /etc/systemd/timesyncd.conf.d/50-coursehub.conf")
    r = lab.inv("check")
    assert r.returncode == 1, r.stdout + r.stderr
    rows = table(r.stdout)
    assert rows[other]["swap"] == "FAIL" and rows[other]["perms"] == "FAIL"
    assert [c for c, v in rows[other].items() if v == "FAIL"] == ["swap", "perms"]
    assert "FAIL" not in rows[lab.head].values()
    assert f"{other}  FAIL  swap: swap in /etc/fstab: /swapfile none swap sw 0 0" in r.stdout
    assert f"{other}  FAIL  perms: world-writable: /etc/systemd/timesyncd.conf.d/50-coursehub.conf" in r.stdout
    assert "2 hosts, 1 ok, 1 failed, 2 failed checks" in r.stdout

    just_head = lab.inv("check", "--hosts", lab.head)
    assert just_head.returncode == 0 and set(table(just_head.stdout)) == {lab.head}


def test_bootstrap_repairs_and_check_passes_again(lab: CheckLab) -> None:
    other = next(n for n in lab.names if n != lab.head)
    assert lab.inv("bootstrap", "--hosts", other).returncode == 0
    assert lab.sh(other, "stat -c %a /etc/systemd/timesyncd.conf.d/50-coursehub.conf") == "644"
    r = lab.inv("check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 hosts, 2 ok, 0 failed" in r.stdout


def test_an_unreachable_host_fails_ssh_and_skips_the_rest(lab: CheckLab) -> None:
    other = next(n for n in lab.names if n != lab.head)
    lab.fault(other, "stop-sshd")
    try:
        t0 = time.monotonic()
        r = lab.inv("check")
        assert time.monotonic() - t0 < 60
        assert r.returncode == 1, r.stdout + r.stderr
        rows = table(r.stdout)
        assert rows[other]["ssh"] == "FAIL" and set(list(rows[other].values())[1:]) <= {"skip", "-"}
        assert f"{other}  FAIL  ssh: cannot log in: ssh: connect to host" in r.stdout and "Connection refused" in r.stdout
        assert f"{other}  skip  swap, clock, disks, free, runtime, sshd, perms: not checked: no login (see ssh)" in r.stdout
        assert "FAIL" not in rows[lab.head].values()
    finally:
        lab.fault(other, "start-sshd")


def test_a_changed_host_key_is_refused(lab: CheckLab) -> None:
    """Strict host-key checking holds: a known_hosts entry that does not match is a failed login, never a prompt."""
    known = lab.inventory / "known_hosts"
    original = known.read_text()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(lab.dir / "impostor")], check=True)
    impostor = (lab.dir / "impostor.pub").read_text().split()[:2]
    lines = [" ".join([ln.split()[0], *impostor]) if ln.split()[:1] and lab.head in ln.split()[0].split(",") else ln
             for ln in original.splitlines()]
    known.write_text("\n".join(lines) + "\n")  # newer than hosts.yml: inventory.load keeps it
    try:
        r = lab.inv("check", "--hosts", lab.head)
        assert r.returncode == 1, r.stdout + r.stderr
        assert table(r.stdout)[lab.head]["ssh"] == "FAIL"
        assert f"{lab.head}  FAIL  ssh: cannot log in:" in r.stdout and "Host key verification failed" in r.stdout
    finally:
        known.write_text(original)


def test_bad_input_exits_2(lab: CheckLab) -> None:
    r = lab.inv("check", "--hosts", "nosuch")
    assert r.returncode == 2 and "no host named 'nosuch'" in r.stderr
    r = lab.inv("check", "--role", "storage")  # the lab's vars have storage.backend none: no storage host
    assert r.returncode == 2 and "no hosts match" in r.stderr
    r = lab.inv("check", "--role", "boss")
    assert r.returncode == 2 and "unknown role 'boss'" in r.stderr
