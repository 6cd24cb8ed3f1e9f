"""Provisioning against the lab's OpenStack API (memory backend) over real HTTP.

openstacksdk talks to `coursehub.lab.api.LabAPI` on 127.0.0.1; faults are
injected through the lab's own fault rules. Nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from coursehub import cloud, inventory, settings
from coursehub.cloud import CloudError, PlanError
from coursehub.lab.api import LabAPI
from coursehub.lab.memory import MemoryBackend

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api():
    lab = LabAPI(MemoryBackend(), password="lab-secret-password-123").start()
    yield lab
    lab.stop()


@pytest.fixture
def env(api, tmp_path):
    """A clean lab and a vars dict + paths pointing at it."""
    api.reset()
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(yaml.safe_dump(api.clouds_yaml()))
    clouds.chmod(0o600)
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    data = {
        "deployment": "tc",
        "topology": "single",
        "cloud": {"name": "coursehub-lab", "clouds_yaml": str(clouds), "build_timeout": 60, "retries": 3,
                  "api_timeout": 5},
        "instances": {"count": 3, "flavor": "m3.small", "image": "Debian 12 (Bookworm)", "user": "debian",
                      "keypair": "tc-key", "public_key_file": f"{key}.pub", "private_key_file": str(key)},
        "volumes": {"data_gb": 2},
        "network": {"admin_cidr": "10.77.0.1/32"},
        "users": {"auth": "dummy", "allowed": ["a1"]},
    }
    return {"data": data, "inv": tmp_path / "inventory", "clouds": clouds, "tmp": tmp_path}


def cfg(env, **over):
    data = yaml.safe_load(yaml.safe_dump(env["data"]))
    for key, value in over.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    return settings.from_dict(data)


def run(env, log=None, **over):
    s = cfg(env, **over)
    lines: list[str] = []
    report = cloud.provision(s, env["inv"], clouds_yaml=s.cloud.clouds_yaml, interactive=False,
                             console_timeout=5, log=(log or lines.append))
    report.lines = lines
    return report


def posts(api, path):
    return [e for e in api.journal.entries() if e["method"] == "POST" and e["path"].split("?")[0].endswith(path)]


def changes(api):
    """Requests that change the cloud (logging in does not)."""
    return [e for e in api.journal.entries() if e["method"] in ("POST", "PUT", "DELETE")
            and not e["path"].startswith("/identity")]


def test_first_run_then_rerun_creates_nothing(api, env):
    first = run(env)
    inv = inventory.load(env["inv"])
    assert [h.name for h in inv.hosts] == ["tc-1", "tc-2", "tc-3"]
    assert inv.head().name == "tc-1" and inv.head().address.startswith("10.77.0.")
    assert all(h.host_keys and h.user == "debian" for h in inv.hosts)
    assert [v.name for v in inv.get("tc-2").volumes] == ["tc-2-data"]
    assert len(posts(api, "/servers")) == 3
    assert len(first.plan.create) == 1 + 1 + 4 + 3 + 3  # keypair, group, rules, servers, volumes
    api.journal.clear()
    again = run(env)
    assert again.plan.create == [] and again.plan.remove == []
    assert changes(api) == []


def test_dry_run_changes_nothing(api, env):
    report = cloud.provision(cfg(env), env["inv"], dry_run=True, clouds_yaml=str(env["clouds"]), interactive=False,
                             log=lambda m: None)
    assert "server tc-1 (head, m3.small)" in report.plan.create
    assert changes(api) == []
    assert not (env["inv"] / "hosts.yml").exists()


def test_scale_up_keeps_the_head_and_scale_down_needs_remove(api, env):
    run(env)
    run(env, instances__count=5)
    inv = inventory.load(env["inv"])
    assert [h.name for h in inv.hosts] == ["tc-1", "tc-2", "tc-3", "tc-4", "tc-5"]
    assert inv.head().name == "tc-1"
    with pytest.raises(PlanError, match="removing tc-5, tc-4 needs --remove"):
        run(env, instances__count=3)
    s = cfg(env, instances__count=2)
    cloud.provision(s, env["inv"], allow_remove=True, clouds_yaml=str(env["clouds"]), interactive=False,
                    log=lambda m: None)
    inv = inventory.load(env["inv"])
    assert [h.name for h in inv.hosts] == ["tc-1", "tc-2"] and inv.head().name == "tc-1"
    names = sorted(getattr(v, "name", "") for v in api.state.volumes.values())
    assert names == ["tc-1-data", "tc-2-data"]


def test_destroy_removes_exactly_this_deployment(api, env):
    run(env)
    other = cfg(env, deployment="other", instances__count=1)
    cloud.provision(other, env["tmp"] / "other-inv", clouds_yaml=str(env["clouds"]), interactive=False,
                    log=lambda m: None)
    removed = cloud.destroy(cfg(env), env["inv"], clouds_yaml=str(env["clouds"]), interactive=False,
                            log=lambda m: None)
    assert sorted(removed) == sorted([f"server tc-{i}" for i in (1, 2, 3)] + [f"volume tc-{i}-data" for i in (1, 2, 3)]
                                     + ["security group tc-sg"])
    left = sorted(getattr(x, "name", "") for x in api.state.servers.values())
    assert left == ["other-1"]
    assert not (env["inv"] / "hosts.yml").exists()


@pytest.mark.parametrize("rule", [
    {"method": "POST", "path": r"/compute/v2\.1/servers$", "status": 500, "times": 2},
    {"method": "GET", "path": r"/compute/v2\.1/servers/detail", "status": 503, "times": 2},
    {"method": "POST", "path": r"/volume/v3/.*/volumes$", "drop": True, "times": 1},
    {"method": "GET", "path": r"/volume/v3/.*/volumes/detail", "delay": 3, "times": 1},
    {"method": "POST", "path": r"/compute/v2\.1/servers/.*/action", "status": 502, "times": 2},
], ids=["500-on-create", "503-on-list", "dropped-volume-create", "timeout-on-list", "502-on-console"])
def test_transient_faults_are_retried_and_converge(api, env, rule):
    api.set_faults([rule])
    report = run(env, cloud__api_timeout=2)
    inv = inventory.load(env["inv"])
    assert len(inv.hosts) == 3 and all(h.host_keys for h in inv.hosts)
    assert len([x for x in api.state.servers.values()]) == 3, "no twins"
    assert len(api.state.volumes) == 3
    assert report.retried > 0 or any("will look again" in line for line in report.lines)


def test_error_build_is_rebuilt(api, env):
    api.configure(error_builds=2)
    report = run(env)
    assert sum("ended in ERROR" in line for line in report.lines) == 2
    assert len(api.state.servers) == 3
    assert {getattr(x, "status", "ACTIVE") for x in api.state.servers.values()} <= {"ACTIVE"}


def test_server_that_always_fails_gives_up_with_a_clear_error(api, env):
    api.configure(error_names="tc-2")
    with pytest.raises(CloudError, match="server tc-2: could not be built after 3 attempts"):
        run(env, cloud__retries=2)


def test_quota_is_checked_before_anything_is_created(api, env):
    api.configure(quotas={"instances": 2})
    with pytest.raises(CloudError, match=r"quota: .*instances: need 3 more, 2 left \(used 0 of 2\)") as e:
        run(env)
    assert e.value.code == 2
    assert posts(api, "/servers") == [] and posts(api, "/volumes") == []


def test_volume_quota_in_gigabytes(api, env):
    api.configure(quotas={"gigabytes": 5})
    with pytest.raises(CloudError, match=r"volume gigabytes: need 6 more, 5 left"):
        run(env)


@pytest.mark.parametrize("key, value, message", [
    ("instances__flavor", "m3.smal", "vars.yml: instances.flavor: no flavor named 'm3.smal'; did you mean m3.small"),
    ("instances__image", "Debian 12", "vars.yml: instances.image: no image named 'Debian 12'; did you mean Debian 12 (Bookworm)"),
    ("instances__network", "labb", "vars.yml: instances.network: no network named 'labb'; did you mean lab?"),
])
def test_name_typos_get_suggestions(api, env, key, value, message):
    with pytest.raises(CloudError) as e:
        run(env, **{key: value})
    assert str(e.value).startswith(message) and e.value.code == 2
    assert posts(api, "/servers") == []


def test_bad_credentials(api, env):
    data = yaml.safe_load(env["clouds"].read_text())
    data["clouds"]["coursehub-lab"]["auth"]["password"] = "wrong-password"
    env["clouds"].write_text(yaml.safe_dump(data))
    with pytest.raises(CloudError, match=r"cloud: authentication failed for admin in project coursehub .*HTTP 401") as e:
        run(env)
    assert e.value.code == 2


def test_unreachable_endpoint(api, env):
    data = yaml.safe_load(env["clouds"].read_text())
    data["clouds"]["coursehub-lab"]["auth"]["auth_url"] = "http://127.0.0.1:9/identity/v3"
    env["clouds"].write_text(yaml.safe_dump(data))
    with pytest.raises(CloudError, match="cloud: cannot reach http://127.0.0.1:9/identity/v3"):
        run(env)


def test_crash_mid_run_then_rerun_converges(api, env):
    """A real `inv provision` process is killed while servers build; the next run finishes the job."""
    api.configure(build_seconds=3)
    vars_file = env["tmp"] / "vars.yml"
    vars_file.write_text(yaml.safe_dump(env["data"]))
    environ = dict(os.environ, COURSEHUB_VARS=str(vars_file), COURSEHUB_INVENTORY=str(env["inv"]),
                   NO_PROXY="127.0.0.1")
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "provision"], cwd=ROOT, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(posts(api, "/servers")) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(posts(api, "/servers")) == 3 and not (env["inv"] / "hosts.yml").exists()
    api.configure(build_seconds=0)
    report = run(env)
    assert len(api.state.servers) == 3 and len(api.state.volumes) == 3, "nothing duplicated"
    assert len(posts(api, "/servers")) == 3, "nothing created twice"
    assert [h.name for h in inventory.load(env["inv"]).hosts] == ["tc-1", "tc-2", "tc-3"]
    assert report.plan.servers == []


def test_no_secret_in_any_output_or_file(api, env, capfd):
    password = api.clouds_yaml()["clouds"]["coursehub-lab"]["auth"]["password"]
    report = run(env)
    inv_texts = [p.read_text() for p in env["inv"].rglob("*") if p.is_file()]
    assert all(password not in t for t in inv_texts)
    assert all(password not in line for line in report.lines)
    out = capfd.readouterr()
    assert password not in out.out + out.err
    assert not any(password in str(e) for e in api.journal.entries())
