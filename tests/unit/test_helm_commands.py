"""helm and kubectl argv for the z2jh release: exact arguments (no cluster exists here)."""

from __future__ import annotations

import datetime as dt
import shlex
from typing import Any

import pytest

from coursehub.hub import helm
from coursehub.settings import Settings, from_dict


def settings(**hub: Any) -> Settings:
    data: dict[str, Any] = {"instances": {"flavor": "m3.large", "image": "ubuntu"}, "network": {"admin_cidr": "10.0.0.0/8"},
                            "users": {"ldap_server": "ldap.example.edu",
                                      "ldap_bind_dn_template": ["uid={username},ou=people,o=example"]}}
    if hub:
        data["hub"] = hub
    return from_dict(data)


S = settings(namespace="course", release="hub2026", chart_version="4.4.0")


def test_repo_commands() -> None:
    assert helm.repo_add() == ["helm", "repo", "add", "--force-update", "jupyterhub", "https://hub.jupyter.org/helm-chart/"]
    assert helm.repo_update() == ["helm", "repo", "update", "jupyterhub"]


def test_upgrade_install_is_exact() -> None:
    assert helm.upgrade_install(S, "/home/ubuntu/coursehub/z2jh-values.yaml") == [
        "helm", "upgrade", "--install", "--cleanup-on-fail",
        "--version", "4.4.0",
        "--namespace", "course", "--create-namespace",
        "--values", "/home/ubuntu/coursehub/z2jh-values.yaml",
        "--wait", "--timeout", "20m",
        "hub2026", "jupyterhub/jupyterhub",
    ]


def test_upgrade_install_defaults_and_timeout() -> None:
    argv = helm.upgrade_install(settings(), "values.yaml", timeout="45m")
    assert argv[argv.index("--version") + 1] == "4.4.0"
    assert argv[argv.index("--namespace") + 1] == "jhub"
    assert argv[argv.index("--timeout") + 1] == "45m"
    assert argv[-2:] == ["jupyterhub", "jupyterhub/jupyterhub"]


def test_status_history_rollback() -> None:
    assert helm.status(S) == ["helm", "status", "hub2026", "--namespace", "course", "--output", "json"]
    assert helm.history(S) == ["helm", "history", "hub2026", "--namespace", "course", "--max", "10", "--output", "json"]
    assert helm.rollback(S) == ["helm", "rollback", "hub2026", "--namespace", "course", "--cleanup-on-fail",
                                "--wait", "--timeout", "20m"]
    assert helm.rollback(S, 7, timeout="5m") == ["helm", "rollback", "hub2026", "7", "--namespace", "course",
                                                 "--cleanup-on-fail", "--wait", "--timeout", "5m"]
    with pytest.raises(ValueError):
        helm.rollback(S, 0)


def test_rollout_status() -> None:
    assert helm.rollout_status(S) == ["kubectl", "rollout", "status", "deployment/hub", "--namespace", "course",
                                      "--timeout=300s"]
    assert helm.rollout_status(S, "proxy", "60s") == ["kubectl", "rollout", "status", "deployment/proxy",
                                                      "--namespace", "course", "--timeout=60s"]


def test_hub_pod_lookup() -> None:
    assert helm.hub_pod(S) == ["kubectl", "get", "pods", "--namespace", "course", "--selector", "component=hub",
                               "--field-selector", "status.phase=Running",
                               "--output", "jsonpath={.items[0].metadata.name}"]


def test_stamp_is_utc() -> None:
    aest = dt.timezone(dt.timedelta(hours=10))
    assert helm.stamp(dt.datetime(2026, 3, 1, 22, 30, 5, tzinfo=aest)) == "20260301T123005Z"
    with pytest.raises(ValueError):
        helm.stamp(dt.datetime(2026, 3, 1))


def test_db_backup_is_exact() -> None:
    cmds = helm.db_backup(S, "hub-7d9f8c-abcde", "/var/backups/coursehub/", "20260301T123005Z")
    assert cmds == [
        ["kubectl", "exec", "--namespace", "course", "hub-7d9f8c-abcde", "--container", "hub", "--",
         "python3", "-c",
         "import sqlite3, sys; src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2]); "
         "src.backup(dst); dst.close(); src.close()",
         "/srv/jupyterhub/jupyterhub.sqlite", "/tmp/jupyterhub-backup-20260301T123005Z.sqlite"],
        ["kubectl", "cp", "--namespace", "course", "--container", "hub",
         "hub-7d9f8c-abcde:/tmp/jupyterhub-backup-20260301T123005Z.sqlite",
         "/var/backups/coursehub/hub2026-hub-db-20260301T123005Z.sqlite"],
        ["kubectl", "exec", "--namespace", "course", "hub-7d9f8c-abcde", "--container", "hub", "--",
         "rm", "-f", "/tmp/jupyterhub-backup-20260301T123005Z.sqlite"],
    ]
    assert helm.db_backup_path(S, "backups", "X") == "backups/hub2026-hub-db-X.sqlite"


def test_backup_script_really_backs_up(tmp_path: Any) -> None:
    import sqlite3
    import subprocess
    import sys

    src, dst = tmp_path / "jupyterhub.sqlite", tmp_path / "copy.sqlite"
    with sqlite3.connect(src) as db:
        db.execute("create table users (name text)")
        db.execute("insert into users values ('alice')")
    exec_argv = helm.db_backup(S, "hub-1", "/b", "T")[0]
    script = exec_argv[exec_argv.index("-c") + 1]
    subprocess.run([sys.executable, "-c", script, str(src), str(dst)], check=True)
    with sqlite3.connect(dst) as db:
        assert db.execute("select name from users").fetchall() == [("alice",)]


def test_db_backup_only_for_sqlite_on_a_pvc() -> None:
    assert helm.db_backup(settings(db="sqlite-memory"), "hub-1", "/b", "T") == []
    for bad in ("", "-n", "a/b"):
        with pytest.raises(ValueError):
            helm.db_backup(S, bad, "/b", "T")


def test_all_argv_are_plain_strings_and_quote_safely() -> None:
    every = [helm.repo_add(), helm.repo_update(), helm.upgrade_install(S, "v w.yaml"), helm.status(S), helm.history(S),
             helm.rollback(S, 2), helm.rollout_status(S), helm.hub_pod(S),
             *helm.db_backup(S, "hub-1", "/b", "T")]
    for argv in every:
        assert argv and all(isinstance(a, str) and a for a in argv)
        assert shlex.split(helm.shell(argv)) == argv
