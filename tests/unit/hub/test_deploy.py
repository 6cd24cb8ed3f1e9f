"""The cluster deploy's exact command sequence, run against a thin fake Remote (no cluster exists here)."""

from __future__ import annotations

import datetime as dt
import shlex

import pytest

from coursehub.hub import deploy, helm
from coursehub.hub.validate import check
from tests.unit.hub.fakes import FakeRemote, make_settings

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
S = make_settings(hub={"namespace": "course", "release": "hub2026"})
SECRETS = {"hub_api_token": "t" * 64, "hub_proxy_token": "p" * 64, "dummy_password": "d" * 64}


def _plan() -> deploy.Plan:
    return deploy.cluster_plan(S, deploy.cluster_values(S, SECRETS), NOW)


def test_values_carry_the_service_token_and_still_validate() -> None:
    values = deploy.cluster_values(S, SECRETS)
    assert values["hub"]["services"]["coursehub"]["apiToken"] == "t" * 64
    assert values["hub"]["loadRoles"]["coursehub-ops"]["services"] == ["coursehub"]
    assert check(S, values) == []


def test_upgrade_with_a_running_hub_backs_the_database_up_first() -> None:
    remote = FakeRemote(replies=[("component=hub", "hub-7d9f-abcde\n")])
    done = deploy.run_cluster(remote, S, _plan())
    ns = "course"
    expected = [
        "put /etc/coursehub/hub/z2jh-values.yaml 0600",
        "helm repo add --force-update jupyterhub https://hub.jupyter.org/helm-chart/",
        "helm repo update jupyterhub",
        shlex.join(helm.hub_pod(S)),
        "mkdir -p -m 0700 /var/backups/coursehub/hub-db",
        *[shlex.join(a) for a in helm.db_backup(S, "hub-7d9f-abcde", deploy.BACKUP_DIR, "20260301T120000Z")],
        "helm upgrade --install --cleanup-on-fail --version 4.4.0 --namespace course --create-namespace "
        "--values /etc/coursehub/hub/z2jh-values.yaml --wait --timeout 20m hub2026 jupyterhub/jupyterhub",
        f"kubectl rollout status deployment/hub --namespace {ns} --timeout=300s",
        f"kubectl rollout status deployment/proxy --namespace {ns} --timeout=300s",
    ]
    assert remote.commands == expected
    assert done[0] == "upload /etc/coursehub/hub/z2jh-values.yaml" and len(done) == len(expected)
    assert "kubectl cp" in remote.commands[6] and "/var/backups/coursehub/hub-db/hub2026-hub-db-20260301T120000Z.sqlite" \
        in remote.commands[6]


def test_first_install_has_nothing_to_back_up() -> None:
    remote = FakeRemote()
    deploy.run_cluster(remote, S, _plan())
    assert not any("kubectl exec" in c or "kubectl cp" in c for c in remote.commands)
    assert remote.commands[4].startswith("helm upgrade --install")


def test_values_file_is_0600_and_no_secret_on_any_command_line() -> None:
    remote = FakeRemote(replies=[("component=hub", "hub-1\n")])
    deploy.run_cluster(remote, S, _plan())
    (spec,) = remote.puts
    assert spec.mode == 0o600 and spec.secret and "t" * 64 in spec.text
    assert all("t" * 64 not in c and "d" * 64 not in c for c in remote.commands)


def test_a_failing_backup_stops_before_helm() -> None:
    remote = FakeRemote(replies=[("component=hub", "hub-1\n")], fail=lambda c: c.startswith("kubectl exec"))
    with pytest.raises(deploy.DeployError, match="kubectl exec"):
        deploy.run_cluster(remote, S, _plan())
    assert not any(c.startswith("helm upgrade") for c in remote.commands)


def test_dry_run_plan_names_everything_and_shows_no_secret() -> None:
    lines = _plan().describe(S)
    assert lines[0] == "upload /etc/coursehub/hub/z2jh-values.yaml (0600)"
    assert any(line.startswith("helm upgrade --install --cleanup-on-fail --version 4.4.0") for line in lines)
    assert all("t" * 64 not in line for line in lines)
