"""Archive planning, PVC name schemes, commands, and "nothing deleted before its archive verifies"."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from coursehub.hub import archive
from coursehub.hub.rest import User
from tests.unit.hub.fakes import FakeRemote, make_settings

SINGLE = make_settings(topology="single")
CLUSTER = make_settings(hub={"namespace": "jhub"})


@pytest.mark.parametrize(("name", "legacy", "safe"), [
    ("alice", "claim-alice", "claim-alice"),
    ("jupyter-Alex", "claim-jupyter-2d-41lex", "claim-jupyter-alex---3a1c285c"),
    ("user@email.com", "claim-user-40email-2ecom", "claim-user-email-com---0925f997"),
    ("-start", "claim--2dstart", "claim-start---f587e2dc"),
])
def test_both_kubespawner_name_schemes(name: str, legacy: str, safe: str) -> None:
    assert archive.pvc_candidates(name) == list(dict.fromkeys([legacy, safe]))


def test_user_pvcs_by_name_or_annotation() -> None:
    pvcs = {"items": [
        {"metadata": {"name": "claim-user-40email-2ecom"}},
        {"metadata": {"name": "claim-user-email-com---0925f997"}},
        {"metadata": {"name": "odd-name", "annotations": {"hub.jupyter.org/username": "user@email.com"}}},
        {"metadata": {"name": "claim-other"}},
        {"metadata": {"name": "hub-db-dir"}},
    ]}
    assert archive.user_pvcs(pvcs, "user@email.com") == [
        "claim-user-40email-2ecom", "claim-user-email-com---0925f997", "odd-name"]


def test_select_users() -> None:
    users = [User("a", True, None), User("b", False, None), User("coursehub-health-check", False, None)]
    assert [u.name for u in archive.select_users(users, True, ["coursehub-health-check"])] == ["b"]
    assert [u.name for u in archive.select_users(users, False)] == ["a", "b", "coursehub-health-check"]


def test_single_plan_reads_homes_and_refuses_odd_ones() -> None:
    remote = FakeRemote(replies=[("getent", "jupyter-alice /home/jupyter-alice 4096\njupyter-bob /srv/bob 10\n")])
    entries = archive.plan(remote, SINGLE, [User("alice", False, None), User("bob", False, None),
                                            User("carol", False, None)], "/var/backups/x", "20260301T120000Z")
    a, b, c = entries
    assert (a.home, a.size, a.problem, a.archive) == ("/home/jupyter-alice", 4096, "",
                                                      "/var/backups/x/alice-20260301T120000Z.tar.gz")
    assert "not under /home" in b.problem and "no Unix user" in c.problem
    assert all(cmd.startswith("h=$(getent") for cmd in remote.commands)


def test_cluster_plan_lists_pvcs() -> None:
    data = {"items": [{"metadata": {"name": "claim-alice"}}]}
    remote = FakeRemote(replies=[("kubectl get pvc", json.dumps(data))])
    (e,) = archive.plan(remote, CLUSTER, [User("alice", False, None)], "/a", "s")
    assert e.pvcs == ["claim-alice"] and not e.problem


class API:
    def __init__(self):
        self.calls = []

    def stop_server(self, name):
        self.calls.append(f"stop {name}")
        return 204

    def wait_server(self, *a, **k):
        self.calls.append("wait")

    def delete_user(self, name):
        self.calls.append(f"delete {name}")
        return True


def test_single_archive_order_and_failed_verify_deletes_nothing() -> None:
    e = archive.Entry("alice", False, True, "/a/alice-s.tar.gz", home="/home/jupyter-alice", size=1,
                      unix_user="jupyter-alice")
    remote, api = FakeRemote(), API()
    archive.archive_one(remote, api, SINGLE, e, log=lambda s: None)
    assert [c.split()[0] for c in remote.commands] == ["mkdir", "cd", "userdel"]
    assert api.calls == ["stop alice", "delete alice"]
    remote, api = FakeRemote(fail=lambda c: "sha256sum --check" in c), API()
    with pytest.raises(archive.ArchiveError, match="nothing of this user was deleted"):
        archive.archive_one(remote, api, SINGLE, e, log=lambda s: None)
    assert api.calls == ["stop alice"] and not any("userdel" in c for c in remote.commands)


def test_cluster_archive_deletes_pvcs_only_after_verify_and_always_removes_the_pod() -> None:
    e = archive.Entry("alice", False, False, "/a/alice-s.tar.gz", home="claim-alice", pvcs=["claim-alice"])
    remote, api = FakeRemote(), API()
    archive.archive_one(remote, api, CLUSTER, e, log=lambda s: None)
    kinds = [" ".join(c.split()[:3]) if c.startswith("kubectl") else c.split()[0] for c in remote.commands]
    assert kinds == ["kubectl run coursehub-archive-alice", "kubectl wait --namespace", "mkdir", "cd",
                     "kubectl delete pod", "kubectl delete pvc"]
    remote, api = FakeRemote(fail=lambda c: "sha256sum --check" in c), API()
    with pytest.raises(archive.ArchiveError):
        archive.archive_one(remote, api, CLUSTER, e, log=lambda s: None)
    assert any(c.startswith("kubectl delete pod") for c in remote.commands)
    assert not any("delete pvc" in c for c in remote.commands) and "delete alice" not in api.calls


def test_write_and_verify_commands_really_work(tmp_path: Path) -> None:
    home = tmp_path / "home" / "jupyter-alice"
    (home / "work").mkdir(parents=True)
    (home / "work" / "a.ipynb").write_text("{}")
    (home / ".hidden").write_text("x")
    out = tmp_path / "archive" / "alice-s.tar.gz"
    subprocess.run(["sh", "-c", archive.write_commands(str(home.parent), home.name, str(out))], check=True)
    assert out.exists() and (tmp_path / "archive" / "alice-s.tar.gz.sha256").exists()
    assert subprocess.run(["sh", "-c", archive.verify_command(str(out), str(home))]).returncode == 0
    (home / "new-file").write_text("y")  # home changed since: counts differ
    assert subprocess.run(["sh", "-c", archive.verify_command(str(out), str(home))], capture_output=True).returncode != 0
    (home / "new-file").unlink()
    out.write_bytes(out.read_bytes()[:-3] + b"xyz")  # corrupted archive: checksum fails
    assert subprocess.run(["sh", "-c", archive.verify_command(str(out), str(home))], capture_output=True).returncode != 0
