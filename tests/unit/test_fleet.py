"""The fleet runner against real SSH: one OpenSSH server per fake host on loopback.

Nothing is mocked: each host is a real sshd (tests/support/sshd.py) with its own
host key, reached through Fabric with the inventory's ssh_config and known_hosts.
The hosts are all this machine, so every step here only touches files under the
test's temporary folder, named per host.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from coursehub import fleet, inventory, secrets
from coursehub.steps import Action, Exec, Files, FileSpec, Step
from tests.support import sshd

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not Path(sshd.SSHD).exists(), reason="needs root and sshd")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """Three reachable hosts and one address where nothing listens."""
    root = tmp_path_factory.mktemp("fleet")
    client = root / "id_ed25519"
    client_pub = sshd.keygen(client, "coursehub-test")
    servers = [sshd.start(root / "sshd", f"h{i}", f"127.0.0.{i + 1}", client_pub) for i in (1, 2, 3)]
    yield root, client, servers
    fleet.close_all()
    for s in servers:
        s.stop()


@pytest.fixture
def inv(lab, tmp_path):
    root, client, servers = lab
    fleet.close_all()
    hosts = [inventory.Host(name=s.name, address=s.address, port=s.port, user="root",
                            roles=["head"] if s.name == "h1" else ["compute"], host_keys=[s.host_key_pub])
             for s in servers]
    down_port = sshd.free_port("127.0.0.9")
    hosts.append(inventory.Host(name="down", address="127.0.0.9", port=down_port, user="root",
                                host_keys=[servers[0].host_key_pub]))
    i = inventory.Inventory(dir=tmp_path / "inventory", hosts=hosts, identity_file=str(client))
    inventory.write(i)
    yield i
    fleet.close_all()


class Marker(Step):
    """Wants the file <dir>/<host>.marker to exist (idempotent)."""

    name = "marker"

    def __init__(self, d: Path):
        self.d = d

    def path(self, remote) -> str:
        return shlex.quote(str(self.d / f"{remote.host.name}.marker"))

    def probe(self, remote):
        return remote.run(f"test -e {self.path(remote)} && echo yes || echo no").stdout.strip() == "yes"

    def decide(self, fact, remote):
        return [] if fact else [Action(why="marker missing", command=f"mkdir -p {self.d} && touch {self.path(remote)}")]


def run_on(inv, steps, names="h1,h2,h3", **kw):
    out = io.StringIO()
    result = fleet.run(steps, inv, task=kw.pop("task", "test"), hosts=inv.select(names), progress=out, **kw)
    table = io.StringIO()
    code = fleet.finish(result, inv, out=table)
    return result, code, out.getvalue() + table.getvalue()


def test_first_run_changes_second_run_changes_nothing(inv, tmp_path):
    step = Marker(tmp_path / "m")
    result, code, text = run_on(inv, [step])
    assert code == 0
    assert {n: r.status for n, r in result.hosts.items()} == {"h1": "changed", "h2": "changed", "h3": "changed"}
    assert all(r.changed == ["marker"] for r in result.hosts.values())
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["h1.marker", "h2.marker", "h3.marker"]
    again, code, _ = run_on(inv, [step])
    assert code == 0 and {r.status for r in again.hosts.values()} == {"ok"}
    assert all(r.changed == [] for r in again.hosts.values())


def test_hosts_run_in_parallel(inv, tmp_path):
    """Every host's action overlaps the others in time (each sleeps while holding an interval)."""
    d = tmp_path / "spans"
    d.mkdir()

    class Span(Step):
        name = "span"

        def probe(self, remote):
            return None

        def decide(self, fact, remote):
            f = d / remote.host.name
            return [Action(why="t", command=f"date +%s.%N > {f}; sleep 1; date +%s.%N >> {f}", always=True)]

    result, code, _ = run_on(inv, [Span()])
    assert code == 0
    spans = [tuple(map(float, (d / n).read_text().split())) for n in ("h1", "h2", "h3")]
    assert max(s[0] for s in spans) < min(s[1] for s in spans), spans


def test_unreachable_host_does_not_stop_the_others(inv, tmp_path):
    result, code, text = run_on(inv, [Marker(tmp_path / "m")], names="h1,down,h3")
    assert code == 1
    assert result.hosts["down"].status == "unreachable"
    assert "127.0.0.9" in result.hosts["down"].error
    assert result.hosts["h1"].status == result.hosts["h3"].status == "changed"
    assert "1 unreachable" in text and "2 changed" in text


def test_changed_host_key_is_refused(inv, tmp_path, lab):
    _, _, servers = lab
    h2 = inv.get("h2")
    h2.host_keys = [servers[0].host_key_pub]  # h1's key claimed for h2: a man in the middle
    inventory.write(inv)
    result, code, _ = run_on(inv, [Marker(tmp_path / "m")])
    assert code == 1
    assert result.hosts["h2"].status == "failed"
    assert "host key CHANGED" in result.hosts["h2"].error
    assert not (tmp_path / "m" / "h2.marker").exists()
    assert result.hosts["h1"].status == "changed"
    # OpenSSH with the same files refuses too.
    ssh = subprocess.run(["ssh", "-F", str(inv.ssh_config), "-o", "BatchMode=yes", "h2", "true"],
                         capture_output=True, text=True, timeout=20)
    assert ssh.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in ssh.stderr


def test_unknown_host_key_is_refused(inv, tmp_path):
    inv.get("h3").host_keys = []
    inventory.write(inv)
    result, code, _ = run_on(inv, [Marker(tmp_path / "m")], names="h3")
    assert code == 1 and result.hosts["h3"].status == "failed"
    assert "not in" in result.hosts["h3"].error and "known_hosts" in result.hosts["h3"].error


def test_failing_step_stops_that_host_only(inv, tmp_path):
    class Breaks(Step):
        name = "breaks"

        def probe(self, remote):
            return remote.host.name

        def decide(self, fact, remote):
            return [Action(why="x", command="echo boom >&2; exit 3")] if fact == "h2" else []

    after = Marker(tmp_path / "after")
    result, code, text = run_on(inv, [Breaks(), after])
    assert code == 1
    assert result.hosts["h2"].status == "failed"
    assert "breaks:" in result.hosts["h2"].error and "exited 3" in result.hosts["h2"].error
    assert "boom" in result.hosts["h2"].error
    assert not (tmp_path / "after" / "h2.marker").exists()
    assert (tmp_path / "after" / "h1.marker").exists() and (tmp_path / "after" / "h3.marker").exists()


def test_step_that_does_not_converge_fails(inv, tmp_path):
    class Liar(Step):
        name = "liar"

        def probe(self, remote):
            return False

        def decide(self, fact, remote):
            return [Action(why="never true", command="true")]

    result, code, _ = run_on(inv, [Liar()], names="h1")
    assert code == 1 and "still to do after apply" in result.hosts["h1"].error


def test_dry_run_plans_and_changes_nothing(inv, tmp_path):
    target = tmp_path / "f" / "conf"
    step = Files("conf", [FileSpec(str(target), "hello\n", mode=0o640)], on_change="echo restarted",
                 on_change_why="conf changed")
    result, code, text = run_on(inv, [step], names="h1", dry_run=True)
    assert code == 0 and not target.exists()
    assert result.dry_run and result.hosts["h1"].plan["conf"][0].startswith(f"write {target} (0640 root:root)  # missing")
    assert "echo restarted  # conf changed" in text and "dry run: nothing changed" in text
    result, code, _ = run_on(inv, [step], names="h1")
    assert code == 0 and target.read_text() == "hello\n" and oct(target.stat().st_mode & 0o777) == "0o640"
    assert result.hosts["h1"].changed == ["conf"]
    again, _, _ = run_on(inv, [step], names="h1")
    assert again.hosts["h1"].status == "ok"
    target.chmod(0o666)
    plan, _, _ = run_on(inv, [step], names="h1", dry_run=True)
    assert "mode 666 (want 640)" in plan.hosts["h1"].plan["conf"][0]


def test_secrets_are_redacted_everywhere(inv, tmp_path):
    s = secrets.load(inv.dir)
    token = s.get("test_token")
    assert oct(os.stat(s.path).st_mode & 0o777) == "0o600"
    result, code, text = run_on(inv, [Exec(f"echo the token is {token}; echo {token} >&2; exit 4")],
                                names="h1,h2", task="ops.exec")
    assert token not in text and "the token is ***" in text
    report = (inv.dir / "runs" / "last.json").read_text()
    assert token not in report and "***" in report


def test_run_report_shape(inv, tmp_path):
    result, code, _ = run_on(inv, [Marker(tmp_path / "m")], names="h1,down", task="ops.swapoff")
    files = sorted((inv.dir / "runs").glob("*-ops.swapoff.json"))
    assert len(files) == 1
    data = json.loads(files[0].read_text())
    assert data == json.loads((inv.dir / "runs" / "last.json").read_text())
    assert set(data) >= {"task", "started", "finished", "dry_run", "hosts"}
    assert data["task"] == "ops.swapoff" and data["dry_run"] is False
    assert data["hosts"]["h1"]["status"] == "changed" and data["hosts"]["h1"]["changed"] == ["marker"]
    assert data["hosts"]["down"]["status"] == "unreachable" and data["hosts"]["down"]["error"]
    assert data["started"].endswith("Z") and data["finished"] >= data["started"]


def test_connections_are_reused_across_runs(inv, tmp_path):
    run_on(inv, [Marker(tmp_path / "m")], names="h1")
    first = fleet.connect(inv, inv.get("h1"))
    run_on(inv, [Marker(tmp_path / "m")], names="h1")
    assert fleet.connect(inv, inv.get("h1")) is first


def test_openssh_uses_the_inventory_strictly(inv):
    out = subprocess.run(["ssh", "-F", str(inv.ssh_config), "-o", "BatchMode=yes", "h1", "hostname"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr


def test_connect_wait_reports_how_long_it_waited(inv, tmp_path):
    result, code, _ = run_on(inv, [Marker(tmp_path / "m")], names="down", connect_wait=1.5)
    assert code == 1 and result.hosts["down"].status == "unreachable"
    assert "(waited 1.5 s)" in result.hosts["down"].error
    assert result.hosts["down"].seconds >= 1.0


def test_connect_wait_catches_a_host_that_comes_up(inv, tmp_path, lab):
    """A server still booting: its sshd is down when the run starts and up a second later."""
    import threading

    root, client, _ = lab
    late = sshd.start(root / "late", "late", "127.0.0.9", client.with_suffix(".pub").read_text().strip())
    host = inv.get("down")
    host.port, host.host_keys = late.port, [late.host_key_pub]
    inventory.write(inv)
    late.stop()
    boot = threading.Timer(1.0, _restart, [late])
    boot.start()
    try:
        result, code, _ = run_on(inv, [Marker(tmp_path / "m")], names="down", connect_wait=20)
        assert code == 0 and result.hosts["down"].status == "changed"
        assert result.hosts["down"].seconds >= 0.5
    finally:
        boot.join()
        late.stop()


def _restart(host):
    """Start the same sshd (same port, same host key) again."""
    cfg = Path(host.proc.args[-1])
    with open(cfg.parent / "sshd2.log", "wb") as log:
        host.proc = subprocess.Popen([sshd.SSHD, "-D", "-e", "-f", str(cfg)], stderr=log)
