"""The single-node hub on a real lab host: install, idempotent re-run, health, and the hub ops on real users.

One lab host (node1) is the head; the test writes a hand-made inventory for it and a
vars file (topology single, dummy login, the lab's package proxy), then drives the
same code `inv hub`, `inv hub.health` and `inv ops.*` run. The `lab` fixture holds
/tmp/coursehub-lab.lock for the whole module (other lab tests use the same machine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.lab.labkit import CAN_RUN_LAB, SKIP_REASON

pytestmark = [pytest.mark.lab, pytest.mark.skipif(not CAN_RUN_LAB, reason=SKIP_REASON)]

PROXY = "http://10.77.0.1:3142"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def hub_env(lab: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Inventory + vars file for node1 as a single-node hub; COURSEHUB_* point at them."""
    from coursehub import fleet, inventory
    from coursehub.settings import load

    d = tmp_path_factory.mktemp("hub")
    head = lab.hosts[0]
    inv = inventory.Inventory(dir=d / "inventory", identity_file=str(lab.key), hosts=[inventory.Host(
        name="head", address=head.spec.address, user=head.spec.user, roles=["head"],
        host_keys=[" ".join(line.split()[:2]) for line in head.keys.lines])])
    inventory.write(inv)
    vars_file = d / "vars.yml"
    vars_file.write_text(yaml.safe_dump({
        "deployment": "labhub", "topology": "single",
        "instances": {"flavor": "lab", "image": "debian-12"},
        "network": {"admin_cidr": "10.77.0.0/24", "proxy": PROXY},
        "users": {"auth": "dummy", "allowed": ["alice", "bob"], "admins": ["teacher"], "memory_limit": "1G",
                  "memory_guarantee": "512M"},
        "content": {"shared_volume": True},
    }))
    old = {k: os.environ.get(k) for k in ("COURSEHUB_VARS", "COURSEHUB_INVENTORY")}
    os.environ["COURSEHUB_VARS"], os.environ["COURSEHUB_INVENTORY"] = str(vars_file), str(inv.dir)
    try:
        yield {"inv": inventory.load(inv.dir), "settings": load(vars_file), "lab": lab, "head": head}
    finally:
        _journal(lab, head)
        fleet.close_all()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _journal(lab: Any, head: Any) -> None:
    r = lab.ssh(head, "sudo journalctl -u coursehub-hub -u coursehub-proxy --no-pager -n 40", timeout=30)
    print("\n--- journal of coursehub-hub / coursehub-proxy (last lines) ---\n" + r.stdout[-6000:])


def _run_hub(env: dict[str, Any]) -> Any:
    from coursehub import fleet, secrets
    from coursehub.hub import single

    s, inv = env["settings"], env["inv"]
    store = secrets.load(inv.dir)
    steps = single.steps(s, inv, single.secrets_for(s, store), single.read_tls(s))
    return fleet.run(steps, inv, task="hub", hosts=[inv.head()], timeout=1200)


def _api(env: dict[str, Any]) -> Any:
    from coursehub import secrets
    from coursehub.hub.rest import HubAPI, api_url
    from coursehub.hub.single import API_TOKEN

    return HubAPI(api_url(env["settings"], env["head"].spec.address), secrets.load(env["inv"].dir).get(API_TOKEN))


def test_install_single_hub(hub_env: dict[str, Any]) -> None:
    t0 = time.monotonic()
    result = _run_hub(hub_env)
    TIMINGS["install"] = time.monotonic() - t0
    r = result.hosts["head"]
    assert r.status == "changed", r.error
    print(f"install: {TIMINGS['install']:.1f} s; changed: {r.changed}")
    # answers through its proxy from this machine
    assert _api(hub_env).info()["version"].startswith("5.")


def test_rerun_changes_nothing(hub_env: dict[str, Any]) -> None:
    lab, head = hub_env["lab"], hub_env["head"]
    before = lab.run(head, "systemctl show -p ActiveEnterTimestampMonotonic coursehub-hub coursehub-proxy")
    t0 = time.monotonic()
    result = _run_hub(hub_env)
    r = result.hosts["head"]
    print(f"re-run: {time.monotonic() - t0:.1f} s")
    assert r.status == "ok" and not r.changed, (r.status, r.changed, r.error)
    assert lab.run(head, "systemctl show -p ActiveEnterTimestampMonotonic coursehub-hub coursehub-proxy") == before


def test_secrets_are_private_on_the_host(hub_env: dict[str, Any]) -> None:
    lab, head = hub_env["lab"], hub_env["head"]
    modes = lab.run(head, "sudo stat -c '%n %a %U' /etc/coursehub/hub/hub.env /etc/coursehub/hub/proxy.env")
    assert modes.splitlines() == ["/etc/coursehub/hub/hub.env 600 root", "/etc/coursehub/hub/proxy.env 600 root"]
    token = lab.run(head, "sudo sed -n 's/^CONFIGPROXY_AUTH_TOKEN=\"\\(.*\\)\"/\\1/p' /etc/coursehub/hub/proxy.env")
    assert len(token) == 64
    assert token not in lab.run(head, "ps -eo args")  # never on a command line


def test_health(hub_env: dict[str, Any]) -> None:
    from invoke import Context

    from tasks import hub

    t0 = time.monotonic()
    hub.health(Context(), attempts=2, timeout=120)
    print(f"health: {time.monotonic() - t0:.1f} s")
    lab, head = hub_env["lab"], hub_env["head"]
    assert lab.ssh(head, "getent passwd jupyter-coursehub-health-check").returncode != 0  # cleaned up on the host too


def test_ops_on_real_users(hub_env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    from invoke import Context

    from tasks import ops_hub

    api, lab, head = _api(hub_env), hub_env["lab"], hub_env["head"]
    c = Context()
    for name in ("alice", "bob"):
        if api.user(name) is None:
            api.create_user(name)
        api.start_server(name)
        api.wait_server(name, ready=True, timeout=120)
    # homes are private
    assert lab.run(head, "stat -c %a /home/jupyter-alice") == "700"

    ops_hub.users(c)
    out = capsys.readouterr().out
    print(out)
    assert "alice" in out and "default (ready)" in out and "teacher" in out

    ops_hub.stop_server(c, user="alice", timeout=60)
    assert not api.user("alice").running
    assert lab.ssh(head, "systemctl is-active jupyter-alice-singleuser").stdout.strip() != "active"

    ops_hub.admins(c, add="alice")
    assert api.user("alice").admin
    ops_hub.admins(c, remove="alice")
    assert not api.user("alice").admin

    lab.run(head, "sudo -u jupyter-alice sh -c 'mkdir -p ~/workshops/.git && echo mine > ~/workshops/notes.txt'")
    ops_hub.gitpull_fix(c, user="alice", timeout=120)
    moved = lab.run(head, "sudo sh -c 'ls -d /home/jupyter-alice/workshops.before-fix-*'")
    assert lab.run(head, f"sudo cat {moved}/notes.txt") == "mine"
    assert api.user("alice").running  # restarted

    capsys.readouterr()
    ops_hub.archive_users(c, users="bob", to="/var/backups/coursehub/lab-archive", dry_run=True)
    plan = capsys.readouterr().out
    print(plan)
    assert "bob running: /home/jupyter-bob" in plan and api.user("bob") is not None
    ops_hub.archive_users(c, users="bob", to="/var/backups/coursehub/lab-archive", yes=True, timeout=60)
    print(capsys.readouterr().out)
    assert api.user("bob") is None
    assert lab.ssh(head, "getent passwd jupyter-bob").returncode != 0
    listing = lab.run(head, "sudo sh -c 'cd /var/backups/coursehub/lab-archive && sha256sum -c bob-*.tar.gz.sha256'")
    assert listing.endswith(": OK")
    ops_hub.stop_server(c, user="alice", timeout=60)


def test_rerun_after_ops_still_changes_nothing(hub_env: dict[str, Any]) -> None:
    r = _run_hub(hub_env).hosts["head"]
    assert r.status == "ok" and not r.changed, (r.status, r.changed, r.error)


def test_hub_reachable_from_this_machine_by_plain_http(hub_env: dict[str, Any]) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{hub_env['head'].spec.address}/hub/login", timeout=10) as resp:
        assert resp.status == 200 and b"Sign in" in resp.read()
