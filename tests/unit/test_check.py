"""`inv check`: junit parsing, the host x check table, the per-host runner, and the judges of tests/infra.

No host is needed: the judges get canned probe output, the runner runs real pytest
processes on a small stand-in check folder, and batch()/find_world_writable() run in
real sh on temporary files.
"""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from coursehub import check
from coursehub.check import ERROR, FAILED, OK, SKIPPED, HostReport, Outcome
from coursehub.inventory import Host, Inventory, Volume
from coursehub.settings import Settings, from_dict
from tests.infra import facts, roles

REPO = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- junit
JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="2" skipped="1" tests="6">
<testcase classname="tests.infra.test_all_hosts" name="test_ssh[ssh://node1]" time="0.3"/>
<testcase classname="tests.infra.test_all_hosts" name="test_swap[ssh://node1]" time="0.1">
  <failure message="AssertionError: swap in /etc/fstab: /swapfile none swap sw 0 0; swap.target is static&#10;  and more&#10;assert not ['swap in /etc/fstab']">traceback</failure>
</testcase>
<testcase classname="tests.infra.test_all_hosts" name="test_clock[ssh://node1]" time="0.0">
  <skipped type="pytest.skip" message="systemd skips it here">/x.py:3: systemd skips it here</skipped>
</testcase>
<testcase classname="tests.infra.test_head" name="test_hub[ssh://node1]" time="0.0">
  <error message="failed on setup with &quot;RuntimeError: boom&quot;">trace</error>
</testcase>
<testcase classname="tests.infra.test_head" name="test_port[ssh://node1]" time="0.0">
  <failure message="Failed: port 80 does not answer">trace</failure>
  <error message="failed on teardown with &quot;OSError&quot;">trace</error>
</testcase>
<testcase classname="tests.infra.test_all_hosts" name="test_ssh[ssh://node2?sudo=true]" time="0.3"/>
</testsuite></testsuites>
"""


def test_parse_junit_gives_one_outcome_per_host_and_check_in_order() -> None:
    got = check.parse_junit(JUNIT)
    assert list(got) == ["node1", "node2"]
    assert list(got["node1"]) == ["ssh", "swap", "clock", "hub", "port"]
    assert got["node1"]["ssh"] == Outcome(OK)
    assert got["node1"]["swap"] == Outcome(FAILED, "swap in /etc/fstab: /swapfile none swap sw 0 0; "
                                                   "swap.target is static and more")
    assert got["node1"]["clock"] == Outcome(SKIPPED, "systemd skips it here")
    assert got["node1"]["hub"] == Outcome(ERROR, 'failed on setup with "RuntimeError: boom"')
    assert got["node1"]["port"].status == ERROR  # the worst of a test's records wins
    assert got["node2"] == {"ssh": Outcome(OK)}


@pytest.mark.parametrize(("raw", "clean"), [
    ("AssertionError: a; b\nassert not ['a', 'b']", "a; b"),
    ("Failed: cannot log in: Host key verification failed.", "cannot log in: Host key verification failed."),
    ("AssertionError: line one\n  line two\nassert False", "line one line two"),
    ("plain", "plain"),
    ("", ""),
])
def test_clean_message(raw: str, clean: str) -> None:
    assert check.clean_message(raw) == clean


def test_split_name() -> None:
    assert check.split_name("test_swap[ssh://node1]") == ("swap", "node1")
    assert check.split_name("test_volume_fs[ssh://st-1?sudo=true]") == ("volume_fs", "st-1")
    assert check.split_name("test_x") == ("x", "")


# ----------------------------------------------------------------------------- table
def reports() -> list[HostReport]:
    return [
        HostReport("head", {"ssh": Outcome(OK), "swap": Outcome(OK), "hub": Outcome(OK)}),
        HostReport("node2", {"ssh": Outcome(OK), "swap": Outcome(FAILED, "swap in /etc/fstab: /swapfile"),
                             "clock": Outcome(SKIPPED, "container")}),
        HostReport("node3-long-name", error="the checks did not finish in 300 s"),
    ]


def test_table_has_a_row_per_host_and_a_column_per_check() -> None:
    text = check.render_table(reports())
    lines = text.splitlines()
    assert lines[0].split() == ["host", "ssh", "swap", "hub", "clock"]
    assert lines[1].split() == ["head", "ok", "ok", "ok", "-"]
    assert lines[2].split() == ["node2", "ok", "FAIL", "-", "skip"]
    assert lines[3].split() == ["node3-long-name", "ERR", "ERR", "ERR", "ERR"]
    # columns line up: each cell starts where its header does
    starts = [lines[0].index(h) for h in ("ssh", "swap", "hub", "clock")]
    for row in lines[1:4]:
        assert all(row[s - 2:s] == "  " and row[s] != " " for s in starts), row


def test_details_list_errors_then_failures_then_skips() -> None:
    lines = check.details(reports())
    assert lines == [
        "node3-long-name  ERR   the checks did not finish in 300 s",
        "node2            FAIL  swap: swap in /etc/fstab: /swapfile",
        "node2            skip  clock: container",
    ]
    assert check.render_table(reports()).endswith("\n".join(lines))


def test_details_group_a_hosts_skips_that_share_a_reason() -> None:
    unreachable = HostReport("node2", {"ssh": Outcome(FAILED, "cannot log in: Connection refused"),
                                       "swap": Outcome(SKIPPED, "not checked: no login (see ssh)"),
                                       "clock": Outcome(SKIPPED, "not checked: no login (see ssh)")})
    assert check.details([unreachable]) == ["node2  FAIL  ssh: cannot log in: Connection refused",
                                            "node2  skip  swap, clock: not checked: no login (see ssh)"]


def test_ssh_error_keeps_what_ssh_says_not_its_banner() -> None:
    from tests.infra.targets import ssh_error

    changed = ("@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
               "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
               "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
               "IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n"
               "Offending ED25519 key in /inv/known_hosts:2\n"
               "Host key for lab-1 has changed and you have requested strict checking.\n"
               "Host key verification failed.\n")
    assert ssh_error(changed) == ("Host key for lab-1 has changed and you have requested strict checking. "
                                  "Host key verification failed.")
    assert ssh_error("ssh: connect to host 10.77.0.11 port 22: Connection refused\r\n") == (
        "ssh: connect to host 10.77.0.11 port 22: Connection refused")
    assert ssh_error("") == "ssh exited 255"


class FakeResult:
    def __init__(self, rc: int = 0, stdout: str = "", stderr: str = ""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


class FakeHost:
    """A testinfra host as Targets uses it: .backend.hostname and .run()."""

    def __init__(self, name: str, script: dict[str, Any]):
        self.backend = type("B", (), {"hostname": name})()
        self.script = script
        self.ran: list[str] = []

    def run(self, command: str) -> FakeResult:
        self.ran.append(command)
        step = self.script["login" if command == "id -u" else "probe"]
        if isinstance(step, Exception):
            raise step
        time.sleep(0.05)
        return step


def test_prefetch_reads_every_host_once_and_records_why_a_host_could_not_be_read() -> None:
    from tests.infra.targets import Targets

    refused = RuntimeError(FakeResult(255, "", "ssh: connect to host 10.0.0.3 port 22: Connection refused"))
    scripts = {
        "ok": {"login": FakeResult(0, "0\n"), "probe": FakeResult(0, "@@coursehub-check swap\nfine\n")},
        "down": {"login": refused, "probe": FakeResult()},
        "lost": {"login": FakeResult(0, "0\n"), "probe": RuntimeError(FakeResult(255, "", "Broken pipe"))},
        "nosudo": {"login": FakeResult(1, "", "sudo: a password is required"), "probe": FakeResult()},
    }
    t = Targets(Settings(), Inventory(dir=Path("."), hosts=[]), Path("/dev/null"))
    t.hosts = {n: FakeHost(n, s) for n, s in scripts.items()}  # type: ignore[misc]
    t0 = time.monotonic()
    t.prefetch({n: {"swap": "cat /proc/swaps"} for n in scripts}, threads=4)
    assert time.monotonic() - t0 < 0.18  # all at once, not one after the other
    assert t.outputs == {"ok": {"swap": "fine\n"}}
    assert t.logins == {
        "ok": "", "down": "cannot log in: ssh: connect to host 10.0.0.3 port 22: Connection refused",
        "lost": "lost while reading the host: Broken pipe",
        "nosudo": "logged in, but cannot act as root: sudo: a password is required"}
    assert [len(h.ran) for h in t.hosts.values()] == [2, 1, 2, 1]


def test_exit_code_and_summary() -> None:
    assert check.exit_code(reports()) == 1
    assert check.exit_code(reports()[:1]) == 0
    assert check.exit_code([HostReport("a", {"x": Outcome(SKIPPED, "n/a")})]) == 0
    assert check.exit_code([HostReport("a", {"x": Outcome(ERROR, "broke")})]) == 1
    assert check.summary(reports(), 1.25) == "check: 3 hosts, 1 ok, 2 failed, 1 failed check in 1.2 s"


def test_table_of_hosts_that_all_broke() -> None:
    text = check.render_table([HostReport("a", error="pytest usage error: no such host")])
    assert text.splitlines()[:2] == ["host  checks", "a     ERR"]


def test_report_is_written_under_runs(tmp_path: Path) -> None:
    inv = Inventory(dir=tmp_path, hosts=[])
    path = check.write_report(reports(), inv, check.now(), 1.0)
    assert path.parent == tmp_path / "runs" and path.name.endswith("-check.json")
    assert '"swap in /etc/fstab: /swapfile"' in path.read_text()


# ----------------------------------------------------------------------------- runner
def test_plan_deals_hosts_to_at_most_one_process_per_cpu() -> None:
    names = [f"h{i}" for i in range(5)]
    assert check.plan(names, parallel=20, cpus=2) == [["h0", "h2", "h4"], ["h1", "h3"]]
    assert check.plan(names, parallel=1, cpus=8) == [names]
    assert check.plan(names[:1], parallel=20, cpus=8) == [["h0"]]
    assert check.plan([], parallel=20, cpus=2) == []


def test_run_keeps_host_order_bounds_parallelism_and_reports_progress() -> None:
    hosts = [Host(name=f"h{i}", address=f"10.0.0.{i}") for i in range(6)]
    running, peak, calls, lock = [0], [0], [], threading.Lock()

    def runner(names: list[str], threads: int) -> list[HostReport]:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            calls.append((names, threads))
        time.sleep(0.05 if "h0" not in names else 0.3)
        with lock:
            running[0] -= 1
        return [HostReport(n, {"ssh": Outcome(FAILED if n == "h3" else OK, "no")}) for n in names]

    progress = io.StringIO()
    out = check.run(Inventory(dir=Path("."), hosts=hosts), hosts, Path("vars.yml"), parallel=4, progress=progress,
                    runner=runner, cpus=2)
    assert [r.host for r in out] == [h.name for h in hosts]
    assert peak[0] == 2 and sorted(calls) == [(["h0", "h2", "h4"], 2), (["h1", "h3", "h5"], 2)]
    lines = progress.getvalue().splitlines()
    assert [ln.split()[1] for ln in lines] == ["h1", "h3", "h5", "h0", "h2", "h4"]  # the slow process last
    assert any("h3" in ln and "failed" in ln and "ssh" in ln for ln in lines)


STAND_IN = '''
import pytest

def pytest_addoption(parser):
    parser.addoption("--check-threads", type=int, default=20)

def pytest_generate_tests(metafunc):
    if "host" in metafunc.fixturenames:
        names = [h.removeprefix("ssh://") for h in metafunc.config.getoption("hosts").split(",")]
        metafunc.parametrize("host", names, ids=[f"ssh://{n}" for n in names], indirect=True, scope="module")

@pytest.fixture(scope="module")
def host(request):  # like tests/infra: replaces testinfra's own `host`
    return request.param
'''
STAND_IN_TESTS = '''
import time, pytest

def test_ssh(host):
    pass

def test_swap(host):
    assert host != "bad", "swap in /etc/fstab: /swapfile"

def test_clock(host):
    if host == "slow":
        time.sleep(30)
    pytest.skip("container")
'''


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    """A check folder that behaves like tests/infra for host names good, bad and slow."""
    d = tmp_path / "infra"
    d.mkdir()
    (d / "conftest.py").write_text(STAND_IN)
    (d / "test_stand_in.py").write_text(STAND_IN_TESTS)
    return d


def run_stand_in(stand_in: Path, *hosts: str, timeout: float = 60) -> list[HostReport]:
    env = check.check_env(Path("vars.yml"), Path("inventory"))
    env["PYTHONPATH"] = str(REPO)
    return check.run_hosts(list(hosts), Path("/dev/null"), env, timeout=timeout, infra=stand_in)


def test_run_hosts_parses_a_real_pytest_run(stand_in: Path) -> None:
    good, bad = run_stand_in(stand_in, "good", "bad")
    assert good.error == "" and good.checks == {"ssh": Outcome(OK), "swap": Outcome(OK),
                                                 "clock": Outcome(SKIPPED, "container")}
    assert bad.error == "" and bad.checks["swap"] == Outcome(FAILED, "swap in /etc/fstab: /swapfile")
    assert bad.failed and not good.failed


def test_run_hosts_stops_at_its_deadline(stand_in: Path) -> None:
    t0 = time.monotonic()
    (slow,) = run_stand_in(stand_in, "slow", timeout=1.5)
    assert time.monotonic() - t0 < 15
    assert slow.error == "the checks did not finish in 1.5 s" and slow.failed


def test_run_hosts_reports_a_broken_check_folder(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text("raise RuntimeError('the conftest is broken')\n")
    a, b = run_stand_in(tmp_path, "a", "b")
    assert a.failed and a.error.startswith("pytest ") and "the conftest is broken" in a.error, a.error
    assert b.error == a.error


def test_process_error_names_pytest_exit_codes(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text("<testsuites/>")
    assert check._process_error(1, "", junit) == ""
    assert check._process_error(5, "no tests ran", junit) == "pytest no checks collected: no tests ran"
    assert check._process_error(4, "ERROR: usage: bad\nE   UsageError: no host x", junit).startswith("pytest usage error:")


def test_pytest_argv_checks_the_hosts_read_only_without_cache() -> None:
    argv = check.pytest_argv(["node1", "node2"], Path("/tmp/j.xml"), Path("/inv/ssh_config"), 5)
    assert argv[:4] == [sys.executable, "-m", "pytest", str(check.INFRA)]
    assert "no:cacheprovider" in argv and "--hosts=ssh://node1,ssh://node2" in argv
    assert "--ssh-config=/inv/ssh_config" in argv and "--junitxml=/tmp/j.xml" in argv and "--check-threads=5" in argv


def test_project_pytest_never_collects_tests_infra() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "tests/infra" not in config["testpaths"] and config["testpaths"]
    assert (REPO / "tests" / "infra" / "conftest.py").exists()


# ----------------------------------------------------------------------------- batching (real sh)
def sh(command: str, timeout: float = 30) -> str:
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=timeout, check=True).stdout


def test_batch_splits_back_into_each_checks_output_and_bounds_each_part() -> None:
    text = sh(facts.batch({"a": "echo one; echo two", "b": "echo err >&2; false", "c": "sleep 5; echo late",
                           "d": "echo 'it''s'"}, timeout=1))
    assert facts.split(text) == {"a": "one\ntwo\n", "b": "", "c": "(timed out after 1 s)\n", "d": "its\n"}


def test_world_writable_finds_only_others_writable_files(tmp_path: Path) -> None:
    tree = tmp_path / "opt"
    (tree / "sub").mkdir(parents=True)
    (tree / "ok.txt").write_text("x")
    bad = tree / "sub" / "open.txt"
    bad.write_text("x")
    bad.chmod(0o666)
    (tree / "link").symlink_to("ok.txt")  # links are always 777: never reported
    mount = tmp_path / "mnt"
    (mount / "data").mkdir(parents=True)
    (mount / "data").chmod(0o777)  # inside a top: not ours
    mount.chmod(0o777)
    cmd = facts.find_world_writable([str(tree), str(tmp_path / "missing")], [str(mount)])
    found = sh(cmd).split()
    assert found == [str(bad), str(mount)]
    assert facts.world_writable_problems("\n".join(found)) == [f"world-writable: {bad} {mount}"]
    many = "\n".join(f"/etc/coursehub/f{i}" for i in range(12))
    assert facts.world_writable_problems(many)[0].endswith("/etc/coursehub/f7 (and 4 more)")
    assert facts.world_writable_problems("\n") == []


# ----------------------------------------------------------------------------- judges
@pytest.fixture
def settings(vars_dict: dict[str, Any]) -> Settings:
    return from_dict(vars_dict)


def make(vars_dict: dict[str, Any], **sections: dict[str, Any]) -> Settings:
    for name, values in sections.items():
        if isinstance(values, dict):
            vars_dict.setdefault(name, {}).update(values)
        else:
            vars_dict[name] = values
    return from_dict(vars_dict)


def sections(**parts: str) -> str:
    """Canned probe output in coursehub.steps.probe.sections() form."""
    return "".join(f"@@coursehub {k}\n{v}" + ("" if v.endswith("\n") or not v else "\n") for k, v in parts.items())


def test_swap_judge() -> None:
    clean = sections(swaps="Filename\tType\tSize\tUsed\tPriority\n", fstab="# /swapfile none swap sw 0 0\n", target="masked\n")
    assert facts.swap_problems(clean) == []
    dirty = sections(swaps="Filename Type Size Used Priority\n/dev/vda2 partition 1 0 -2\n",
                     fstab="UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n", target="static\n")
    assert facts.swap_problems(dirty) == [
        "swap is on now: /dev/vda2", "swap in /etc/fstab: /swapfile none swap sw 0 0",
        "swap.target is static, not masked: a swap unit could start at boot"]


def unit_block(id: str, load: str = "loaded", active: str = "active", enabled: str = "enabled",
               condition: str = "yes", since: int = 1700000000) -> str:
    return (f"Id={id}\nLoadState={load}\nActiveState={active}\nSubState=x\nUnitFileState={enabled}\n"
            f"ActiveEnterTimestamp=@{since}\nConditionResult={condition}\nConditionTimestamp=@{since}\n")


def test_time_judge(settings: Settings) -> None:
    name = "systemd-timesyncd.service"
    assert facts.time_problems(sections(unit=unit_block(name), virt="none\n"), settings) == []
    assert facts.time_problems(sections(unit=unit_block(name, active="failed", enabled="disabled"), virt="none\n"),
                               settings) == [f"{name} is failed", f"{name} is disabled: it would not start at boot"]
    skipped = facts.time_problems(sections(unit=unit_block(name, active="inactive", condition="no"),
                                           virt="systemd-nspawn\n"), settings)
    assert isinstance(skipped, facts.Skip) and "systemd-nspawn container" in skipped.reason
    # on a VM a failed condition is a failure, not a skip
    assert facts.time_problems(sections(unit=unit_block(name, active="inactive", condition="no"), virt="none\n"),
                               settings) == [f"{name} is inactive"]
    missing = facts.time_problems(sections(unit=f"Id={name}\nLoadState=not-found\n", virt=""), settings)
    assert missing == [f"{name} is not installed (hosts.time_sync: timesyncd): run `inv bootstrap`"]


def test_time_judge_follows_hosts_time_sync(vars_dict: dict[str, Any]) -> None:
    s = make(vars_dict, hosts={"time_sync": "chrony"})
    assert "chrony.service" in facts.time_command(Host("a", "10.0.0.1"), s)
    assert facts.time_problems(sections(unit=unit_block("chrony.service"), virt="none\n"), s) == []


DATA = Volume(id="0123456789abcdef0123-4567", name="c-1-data", size_gb=30, device="/dev/vdb")


def disk_text(fstab: str, target: str = "/mnt/data", majmin: str = "254:16", uuid: str = "u-1") -> str:
    mountinfo = f"30 1 {majmin} / {target} rw,relatime - xfs /dev/vdb rw\n" if target else ""
    vol = f"source=device\ndev=/dev/vdb\nmajmin=fe:10\nsize=32212254720\nblkid_UUID={uuid}\nblkid_TYPE=xfs\nlisting=\n"
    return sections(fstab=fstab, mountinfo=mountinfo, v0=vol)


def test_disk_judge(settings: Settings) -> None:
    host = Host("c-1", "10.0.0.1", volumes=[DATA])
    good = "UUID=u-1 /mnt/data xfs defaults,nofail,x-systemd.device-timeout=30s 0 0\n"
    assert facts.disk_problems(disk_text(good), host, settings) == []
    assert facts.disk_problems(disk_text("/dev/vdb /mnt/data xfs defaults 0 0\n"), host, settings) == [
        "/etc/fstab mounts /mnt/data by /dev/vdb, not UUID=u-1",
        "/etc/fstab line for /mnt/data lacks nofail: a missing volume would stop the boot"]
    assert facts.disk_problems(disk_text(good, target=""), host, settings) == [
        "/mnt/data is not mounted (volume c-1-data, /dev/vdb)"]
    assert facts.disk_problems(disk_text("", majmin="8:1"), host, settings) == [
        "/mnt/data has /dev/vdb mounted, not /dev/vdb (volume c-1-data)",
        "no /etc/fstab line mounts /mnt/data: it would not come back after a reboot"]
    assert facts.disk_problems(sections(fstab="", mountinfo="", v0="source=none\ndev=\n"), host, settings) == [
        "volume c-1-data is not attached (no /dev/disk/by-id/virtio-0123456789abcdef0123 or /dev/vdb)"]
    skip = facts.disk_problems(sections(fstab="", mountinfo=""), Host("c-2", "10.0.0.2"), settings)
    assert isinstance(skip, facts.Skip)


def test_free_judge(settings: Settings) -> None:
    df = ("Filesystem Type 1B-blocks Avail Mounted on\n"
          "/dev/vda1 ext4 1000 500 /\n/dev/vda1 ext4 1000 500 /\n/dev/vdb xfs 1000 100 /mnt/data\n")
    assert facts.free_problems(df, settings) == ["/mnt/data: 10% free (100 of 1000; hosts.disk_free_percent is 15)"]
    assert facts.free_problems("", settings) == ["df printed nothing for / and the data paths"]
    paths = facts.watched_paths(Host("c-1", "10.0.0.1", volumes=[DATA]), settings)
    assert paths == ["/", "/var", "/home", "/mnt/data", "/var/lib/containerd", "/var/lib/kubelet"]


def runtime_text(config: str | None, active: str = "active", live: str = "/var/lib/containerd",
                 mtime: int = 1600000000) -> str:
    files = "missing\n" if config is None else f"{'0' * 64} 644 root root {mtime}\n"
    return sections(config=config or "", files=files, unit=unit_block("containerd.service", active=active), live=live)


def test_runtime_judge(settings: Settings, vars_dict: dict[str, Any]) -> None:
    assert facts.runtime_problems(runtime_text('version = 2\nroot = "/var/lib/containerd"\n'), settings) == []
    assert facts.runtime_problems(runtime_text(None), settings) == []  # no config: the default root
    moved = facts.runtime_problems(runtime_text('root = "/mnt/data/containerd"\n', live=""), settings)
    assert moved == ["/etc/containerd/config.toml puts the root at /mnt/data/containerd, vars.yml wants "
                     "/var/lib/containerd; set hosts.runtime_root in vars.yml if it was moved on purpose",
                     "/var/lib/containerd is not in use by containerd (no metadata database there)"]
    stale = facts.runtime_problems(runtime_text("", mtime=1800000000), settings)
    assert stale == ["containerd.service runs with an older /etc/containerd/config.toml (changed after its start; "
                     "restart pending)"]
    assert facts.runtime_problems(runtime_text("", active="failed"), settings) == ["containerd.service is failed"]
    docker = make(vars_dict, hosts={"runtime": "docker", "runtime_root": "/mnt/data/docker"})
    text = sections(config='{"data-root": "/mnt/data/docker"}', files=f"{'0' * 64} 644 root root 1\n",
                    unit=unit_block("docker.service"), live="/var/lib/docker\n")
    assert facts.runtime_problems(text, docker) == ["docker uses /var/lib/docker as its root, not /mnt/data/docker"]
    assert "docker info" in facts.runtime_command(Host("a", "10.0.0.1"), docker)


def test_sshd_judge() -> None:
    good = "port 22\npasswordauthentication no\nkbdinteractiveauthentication no\npermitemptypasswords no\n"
    assert facts.sshd_problems(good) == []
    bad = "PasswordAuthentication yes\nkbdinteractiveauthentication yes\npermitemptypasswords yes\n"
    assert facts.sshd_problems(bad) == [
        "sshd allows password login (PasswordAuthentication yes)",
        "sshd allows keyboard-interactive login, which can ask for a password (KbdInteractiveAuthentication yes)",
        "sshd permits empty passwords"]
    assert facts.sshd_problems("sshd: no hostkeys available -- exiting.\n") == [
        "`sshd -T` did not print its configuration: sshd: no hostkeys available -- exiting."]


def test_written_paths_cover_what_the_steps_write(settings: Settings) -> None:
    from coursehub.hub import single
    from coursehub.steps import clock, kernel, proxy, swap

    trees, tops = facts.written_paths(Host("c-1", "10.0.0.1", volumes=[DATA]), settings)
    for path in (swap.FSTAB, proxy.APT_FILE, clock.TIMESYNCD_FILE, kernel.SYSCTL_FILE, "/etc/containerd/config.toml",
                 "/etc/systemd/system/containerd.service.d", single.PREFIX, "/etc/coursehub", "/var/lib/coursehub"):
        assert path in trees
    assert tops == ["/mnt/data", "/var/lib/containerd", "/srv/coursehub", "/var/lib/kubelet", "/home/shared"]
    cmd = facts.world_writable_command(Host("c-1", "10.0.0.1", user="ubuntu"), settings)
    assert "~ubuntu/.kube" in cmd


STORAGE = Volume(id="fedcba9876543210fedc-0000", name="c-1-storage", size_gb=55, role="storage", device="/dev/vdc")


def test_volume_fs_judge(settings: Settings) -> None:
    host = Host("c-1", "10.0.0.1", roles=["head", "storage"], volumes=[DATA, STORAGE])
    d0 = "source=device\ndev=/dev/vdb\nmajmin=fe:10\nblkid_TYPE=xfs\nblkid_UUID=u\n"
    s0 = "source=device\ndev=/dev/vdc\nmajmin=fe:20\n"
    good = sections(mounts="254:16 /mnt/data xfs rw,relatime\n", d0=d0, s0=s0)
    assert roles.volume_fs_problems(good, host, settings) == []
    bad = sections(mounts="254:16 /mnt/data xfs ro,relatime\n254:32 /mnt/ceph ext4 rw\n", d0=d0, s0=s0)
    assert roles.volume_fs_problems(bad, host, settings) == [
        "/mnt/data (xfs on /dev/vdb) is mounted read-only",
        "storage volume c-1-storage (/dev/vdc) is mounted at /mnt/ceph: Ceph needs it raw"]
    blank = sections(mounts="", d0="source=device\ndev=/dev/vdb\nmajmin=fe:10\n", s0="source=none\ndev=\n")
    assert roles.volume_fs_problems(blank, host, settings) == [
        "/dev/vdb (data volume c-1-data) holds no filesystem, not xfs", "storage volume c-1-storage is not attached"]
    assert isinstance(roles.volume_fs_problems("", Host("s", "10.0.0.3", roles=["storage"]), settings), facts.Skip)


def test_exports_judge(settings: Settings, vars_dict: dict[str, Any]) -> None:
    assert isinstance(roles.exports_problems("", settings), facts.Skip)  # storage.backend cinder
    nfs = make(vars_dict, storage={"backend": "nfs"})
    good = sections(file="# CourseHub\n/srv/coursehub 10.0.0.1(rw,sync) 10.0.0.2(rw,sync)\n", dir="755 root\n",
                    active="active\n", live="/srv/coursehub\n\t\t10.0.0.1(rw,sync)\n")
    assert roles.exports_problems(good, nfs) == []
    bad = sections(file="/srv/coursehub *(rw) 10.0.0.1(rw)\n", dir="777 nobody\n", active="failed\n", live="")
    assert roles.exports_problems(bad, nfs) == [
        "/srv/coursehub is exported to anyone: *(rw)", "/srv/coursehub is mode 777 owned by nobody (want 755 root)",
        "nfs-server is failed", "`exportfs -v` does not list /srv/coursehub: the export is not live"]
    assert roles.exports_problems(sections(file="", dir="", active="", live=""), nfs)[:2] == [
        "/etc/exports.d/coursehub.exports does not export /srv/coursehub", "/srv/coursehub does not exist"]


def test_cluster_head_judges() -> None:
    assert roles.kubelet_problems(sections(unit=unit_block("kubelet.service"), healthz="ok")) == []
    assert roles.kubelet_problems(sections(unit=unit_block("kubelet.service", active="activating", enabled="disabled"),
                                           healthz="curl: (7) Failed to connect")) == [
        "kubelet.service is disabled: it would not start at boot",
        "http://127.0.0.1:10248/healthz answers curl: (7) Failed to connect"]
    assert roles.api_problems("ok\n") == []
    assert roles.api_problems("The connection to the server 10.0.0.1:6443 was refused\n") == [
        "kubectl get --raw=/readyz: The connection to the server 10.0.0.1:6443 was refused"]
    assert "--raw=/readyz" in roles.api_command(Host("a", "10.0.0.1"), Settings())


def test_single_head_judges(vars_dict: dict[str, Any]) -> None:
    s = make(vars_dict, topology="single", users={"auth": "dummy"})
    hub_files, proxy_files = roles.hub_file_paths(s)
    files = "".join(f"{'0' * 64} 644 root root 1600000000\n" for _ in hub_files + proxy_files)
    units = unit_block("coursehub-proxy.service") + "\n" + unit_block("coursehub-hub.service")
    assert roles.hub_problems(sections(units=units, files=files), s) == []
    lines = files.splitlines(keepends=True)
    lines[len(hub_files)] = lines[len(hub_files)].replace("1600000000", "1800000000")  # a proxy file, after its start
    assert roles.hub_problems(sections(units=units, files="".join(lines)), s) == [
        "coursehub-proxy.service runs with older configuration (a file changed after its start; restart pending)"]
    down = unit_block("coursehub-proxy.service", active="failed") + "\n" + "Id=coursehub-hub.service\nLoadState=not-found\n"
    assert roles.hub_problems(sections(units=down, files=files), s) == [
        "coursehub-proxy.service is failed", "coursehub-hub.service is not installed: run `inv hub`"]
    ok = sections(listen="LISTEN 0 511 0.0.0.0:80 0.0.0.0:*\n", http="200")
    assert roles.port_problems(ok, s, "") == []
    refused = sections(listen="", http="curl: (7) Failed to connect to 127.0.0.1 port 80: Connection refused000")
    assert roles.port_problems(refused, s, "[Errno 111] Connection refused") == [
        "nothing listens on port 80",
        "GET http://127.0.0.1:80/hub/api/ on the head: curl: (7) Failed to connect to 127.0.0.1 port 80: "
        "Connection refused",
        "port 80 does not answer from this machine: [Errno 111] Connection refused"]
    assert roles.port_problems(sections(listen="x", http="502"), s, "") == [
        "GET http://127.0.0.1:80/hub/api/ on the head: HTTP 502"]


def test_every_command_only_reads() -> None:
    """No check command contains a verb that changes a host."""
    import re

    s = Settings()
    host = Host("c-1", "10.0.0.1", roles=["head", "storage"], volumes=[DATA, STORAGE])
    commands = [getattr(mod, n)(host, s) for mod in (facts, roles) for n in dir(mod)
                if n.endswith("_command") and n not in ("units_command", "files_command")]
    assert len(commands) >= 12
    verbs = re.compile(r"\b(rm|mv|cp|chmod|chown|mkfs[.\w]*|mount|umount|swapoff|swapon|sed -i|tee|systemctl "
                       r"(start|stop|restart|enable|disable|mask|daemon-reload)|exportfs -r|kubectl (apply|delete)|"
                       r"apt-get|useradd|truncate|touch|mkdir|install)\b")
    for cmd in commands:
        assert not verbs.search(cmd.replace("findmnt", "")), cmd
        assert ">" not in cmd.replace("2>/dev/null", "").replace("2>&1", "").replace(">/dev/null", ""), cmd


def test_env_points_the_checks_at_the_same_files(tmp_path: Path) -> None:
    env = check.check_env(Path("vars.lab.yml"), Path("inv"), base={"PATH": "/bin"})
    assert env["COURSEHUB_VARS"] == str(Path("vars.lab.yml").resolve())
    assert env["COURSEHUB_INVENTORY"] == str(Path("inv").resolve()) and env["PATH"] == "/bin"
