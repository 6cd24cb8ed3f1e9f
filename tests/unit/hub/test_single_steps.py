"""Single hub steps: canned probe output -> actions; a second run plans nothing."""

from __future__ import annotations

from coursehub.hub import single
from coursehub.steps import FileFact
from coursehub.steps.probe import FileState, Unit
from tests.unit.hub.fakes import make_settings

SECRETS = {"hub_api_token": "a" * 64, "hub_proxy_token": "b" * 64, "dummy_password": "c" * 64}
S = make_settings(topology="single", network={"admin_cidr": "10.0.0.0/8", "proxy": "http://10.77.0.1:3142"})


def test_python_env_fresh_host_creates_and_installs_from_wheels_through_the_proxy() -> None:
    step = single.PythonEnv("hub-env", single.HUB_ENV, single.HUB_PACKAGES, "hub.txt", S)
    acts = step.decide(single.EnvFacts(False, {}, FileState(FileFact(None))), None)
    labels = [a.label for a in acts]
    assert labels[0].startswith("write /opt/coursehub/hub.constraints.txt")
    assert labels[1] == "python3 -m venv /opt/coursehub/hub"
    cmd = acts[2].command
    assert "--only-binary=:all:" in cmd and "--constraint /opt/coursehub/hub.constraints.txt" in cmd
    assert "https_proxy=http://10.77.0.1:3142" in cmd and "jupyterhub==5.5.4" in cmd


def test_python_env_converged_plans_nothing() -> None:
    step = single.PythonEnv("user-env", single.USER_ENV, single.USER_PACKAGES, "user.txt", S)
    installed = {single._normal(p.partition("==")[0]): p.partition("==")[2] for p in single.USER_PACKAGES}
    lock = FileState(FileFact(step.lock.sha256, "644", "root", "root"), 1)
    assert step.decide(single.EnvFacts(True, {**installed, "tornado": "6.5"}, lock), None) == []
    installed["jupyterlab"] = "4.0.0"
    acts = step.decide(single.EnvFacts(True, installed, lock), None)
    assert len(acts) == 1 and "jupyterlab==4.6.6" in acts[0].why


def test_native_auth_allows_onetimepass_from_source_only() -> None:
    s = make_settings(topology="single", users={"auth": "native"})
    step = single.PythonEnv("hub-env", single.HUB_ENV, single.hub_packages(s), "hub.txt", s)
    cmd = step.install_command()
    assert "--only-binary=:all:" in cmd and "--no-binary=onetimepass" in cmd


def test_npm_package() -> None:
    step = single.NpmPackage(S)
    assert step.decide(single.NpmFacts(single.CHP_VERSION), None) == []
    (act,) = step.decide(single.NpmFacts(""), None)
    assert "configurable-http-proxy@4.6.3" in act.command and "--https-proxy http://10.77.0.1:3142" in act.command
    assert "NODE_EXTRA_CA_CERTS=" in act.command
    assert step.parse("@@coursehub version\n4.6.3\n", None) == single.NpmFacts("4.6.3")


def _facts(step: single.HubServices, same: bool, running: bool = True, since: int = 2000, mtime: int = 1000):
    files = [FileState(FileFact(f.sha256 if same else "0" * 64, f"{f.mode:o}", f.owner, f.group), mtime)
             for f in step.files]
    unit = {"active": "active" if running else "inactive", "enabled": "enabled", "since": since if running else 0}
    units = {u: Unit(id=u, load="loaded", **unit) for u in (single.PROXY_UNIT, single.HUB_UNIT)}
    return single.ServiceFacts(files, units, True)


def test_services_converged_plan_nothing() -> None:
    step = single.HubServices(S, SECRETS)
    assert step.decide(_facts(step, same=True), None) == []


def test_hub_config_change_restarts_only_the_hub() -> None:
    step = single.HubServices(S, SECRETS)
    facts = _facts(step, same=True)
    i = [f.path for f in step.files].index(single.CONFIG)
    facts.files[i] = FileState(FileFact("0" * 64, "644", "root", "root"), 1000)
    labels = [a.label for a in step.decide(facts, None)]
    assert f"systemctl restart {single.HUB_UNIT}" in labels
    assert f"systemctl restart {single.PROXY_UNIT}" not in labels
    assert "systemctl daemon-reload" not in labels
    assert labels[-1] == "wait for the hub API"


def test_proxy_change_restarts_proxy_then_hub_and_reloads_units() -> None:
    step = single.HubServices(S, SECRETS)
    facts = _facts(step, same=True)
    i = [f.path for f in step.files].index(f"{single.UNIT_DIR}/{single.PROXY_UNIT}")
    facts.files[i] = FileState(FileFact(None))
    labels = [a.label for a in step.decide(facts, None)]
    assert labels.index("systemctl daemon-reload") < labels.index(f"systemctl restart {single.PROXY_UNIT}") \
        < labels.index(f"systemctl restart {single.HUB_UNIT}")


def test_interrupted_run_restarts_a_stale_service() -> None:
    step = single.HubServices(S, SECRETS)
    labels = [a.label for a in step.decide(_facts(step, same=True, since=1000, mtime=2000), None)]
    assert f"systemctl restart {single.HUB_UNIT}" in labels


def test_secret_files_are_not_shown_in_plans() -> None:
    step = single.HubServices(S, SECRETS)
    text = " ".join(a.describe() for a in step.decide(_facts(step, same=False, running=False), None))
    assert "a" * 64 not in text and "b" * 64 not in text


def test_upgrade_db_only_when_the_version_moved() -> None:
    step = single.UpgradeDB()
    assert step.decide({"db": "yes", "version": "5.5.4", "current": "5.5.4"}, None) == []
    (first,) = step.decide({"db": "", "version": "", "current": "5.5.4"}, None)
    assert "upgrade-db" not in first.command
    (up,) = step.decide({"db": "yes", "version": "5.4.0", "current": "5.5.4"}, None)
    assert "jupyterhub upgrade-db" in up.command and up.command.index("systemctl stop") < up.command.index("upgrade-db")


def test_accounts_step() -> None:
    step = single.SystemAccounts(S)
    fact = step.parse("@@coursehub users\n@@coursehub groups\n@@coursehub dirs\n", None)
    labels = [a.label for a in step.decide(fact, None)]
    assert "useradd --system coursehub-proxy" in labels and "groupadd jupyterhub-users" in labels
    ok = "\n".join(f"{p} {m} {o} {g}" for p, (m, o, g) in step.dirs.items())
    fact = step.parse("@@coursehub users\ncoursehub-proxy\n@@coursehub groups\njupyterhub-users\ncoursehub-staff\n"
                      f"@@coursehub dirs\n{ok}\n", None)
    assert step.decide(fact, None) == []


def test_certbot_command() -> None:
    s = make_settings(topology="single", users={"auth": "native"},
                      hub={"https": "letsencrypt", "hosts": ["hub.example.edu", "jupyter.example.edu"],
                           "letsencrypt_email": "a@example.edu", "letsencrypt_staging": True})
    argv = single.certbot_command(s)
    assert argv[:3] == ["certbot", "certonly", "--standalone"]
    assert argv[argv.index("--deploy-hook") + 1] == single.DEPLOY_HOOK
    assert argv[-5:-1] == ["--domain", "hub.example.edu", "--domain", "jupyter.example.edu"]
    assert argv[-1] == "--test-cert"
    assert any(isinstance(st, single.Certificate) for st in single.steps(s, None, SECRETS))
