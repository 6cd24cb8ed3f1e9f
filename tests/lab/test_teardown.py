"""Lab teardown leaves nothing behind, seen by `leftovers()` kind by kind, from a fresh process too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.labkit import CAN_RUN_LAB, SKIP_REASON, lab_lock, make_spec

pytestmark = [pytest.mark.lab, pytest.mark.skipif(not CAN_RUN_LAB, reason=SKIP_REASON)]
ROOT = Path(__file__).resolve().parents[2]


def _teardown_in_fresh_process(lab_dir: Path, deadline: float = 10.0) -> list[str]:
    code = "import json, sys; from coursehub.lab.hosts import teardown; print(json.dumps(teardown(sys.argv[1], %r)))"
    r = subprocess.run([sys.executable, "-c", code % deadline, str(lab_dir)], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def lab_dir() -> Iterator[Path]:
    from coursehub.lab.hosts import teardown

    d = Path(f"/var/tmp/coursehub-lab-teardown-{os.getpid()}")
    with lab_lock():
        try:
            yield d
        finally:
            teardown(d, 1.0)
            subprocess.run(["rm", "-rf", "--one-file-system", str(d)], check=False)


def test_each_kind_of_leftover_is_seen_and_removed(lab_dir: Path) -> None:
    """Fake what a crashed lab leaves (no hosts booted) and check leftovers() and teardown()."""
    from coursehub.lab import loopdev, net
    from coursehub.lab.hosts import STATE_FILE, SYSCTL_FILE, leftovers
    from coursehub.lab.machine import PROPAGATE_DIR, HostDir
    from coursehub.lab.supervisor import join_cgroups, write_pidfile

    assert leftovers(lab_dir) == [], "start from a clean machine"
    before = {k: net.read_sysctl(k) for k in net.SYSCTLS}
    lab_net = net.LabNet.from_subnet("10.77.0.0/24")
    lab_dir.mkdir(parents=True)
    (lab_dir / STATE_FILE).write_text(json.dumps({"subnet": "10.77.0.0/24"}))
    net.raise_sysctls(lab_dir / SYSCTL_FILE)
    net.bridge_up(lab_net)
    net.host_up(7, "10.77.0.17", "02:77:00:00:00:07", lab_net)
    hd = HostDir(lab_dir / "hosts/h7")
    hd.merged.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "lab-test", str(hd.merged)], check=True)
    (PROPAGATE_DIR / hd.machine).mkdir(parents=True, exist_ok=True)
    loopdev.create_file(lab_dir / "volumes/v.img", 1)
    loop = loopdev.attach(lab_dir / "volumes/v.img")
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    write_pidfile(hd.path / "supervisor.pid", proc.pid)
    join_cgroups(hd.cgroup, proc.pid)

    found = "\n".join(leftovers(lab_dir))
    for want in ("netns lab-h7", "link lv-h7", "link labbr0", "route unreachable 10.77.0.0/16",
                 f"mount {hd.merged}", f"dir {PROPAGATE_DIR / hd.machine}", f"loop {loop}",
                 "/lab/h7", f"process {proc.pid}", f"host dir {hd.path}", "sysctl"):
        assert want in found, f"{want!r} not reported in:\n{found}"

    problems = _teardown_in_fresh_process(lab_dir, deadline=1.0)
    proc.wait(timeout=10)  # killed by teardown through its record
    assert problems == []
    assert leftovers(lab_dir) == []
    assert {k: net.read_sysctl(k) for k in net.SYSCTLS} == before


def test_fresh_process_tears_down_running_hosts(lab_dir: Path, client_key: tuple[Path, str]) -> None:
    from coursehub.lab.hosts import HostsBackend, LabBusy, leftovers

    backend = HostsBackend(lab_dir)
    try:
        backend.wait_base(900)
        specs = [make_spec(i, client_key[1], 2, prefix="td") for i in (1, 2)]
        for s in specs:
            backend.create(s)
        assert all(backend.wait_ready([s.id for s in specs], 60).values())
        backend.attach(specs[0].id, "vol-t", 1, "/dev/vdb")
        with pytest.raises(LabBusy):
            HostsBackend(lab_dir)  # a second lab on a running one is refused
        with pytest.raises(LabBusy):
            HostsBackend(lab_dir.with_name(lab_dir.name + "-other"))  # the bridge is taken
        assert _teardown_in_fresh_process(lab_dir) == []
        # all that is left is this process's proxy thread: lab.down stops the API process first
        assert leftovers(lab_dir) == ["proxy still listening on 10.77.0.1:3142"]
        backend.proxy.stop()
        assert leftovers(lab_dir) == []
    finally:
        backend.close()
    assert leftovers(lab_dir) == []
