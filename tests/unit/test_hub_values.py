"""z2jh values: rendered from vars.yml profiles, checked against the chart 4.4.0 schema and policy.

Every profile starts from the committed vars.yml and changes a few keys. Good
profiles must give zero schema and zero policy errors and contain what their
keys ask for; broken ones must fail with one exact line naming the vars.yml key.
Settings cross-checks that would stop a broken profile early are bypassed with
dataclasses.replace, so the values-level rule itself is what is tested.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from coursehub.hub import validate as hv
from coursehub.hub import values as hval
from coursehub.hub.values import LE_STAGING, ValuesError, redact, render, to_yaml, write_values
from coursehub.settings import Settings, SettingsError, from_dict

REPO = Path(__file__).resolve().parents[2]
BASE: dict[str, Any] = yaml.safe_load((REPO / "vars.yml").read_text(encoding="utf-8"))
DUMMY = {"dummy_password": "lab-dummy-password-0123456789abcdef"}
CERT = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIUQ2h1YkNvdXJzZUh1YlRlc3RDZXJ0MAoGCCqGSM49BAMC\n"
    "-----END CERTIFICATE-----\n"
)
KEY_BODY = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgU2VjcmV0S2V5Qm9keQ"
KEY = f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"
STAFF_IMAGE = "quay.io/jupyter/datascience-notebook:2025-10-20"


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def profile(**groups: dict[str, Any]) -> Settings:
    """The committed vars.yml with some keys changed, validated by Settings."""
    return from_dict(merged(BASE, groups))


def bypass(s: Settings, **groups: dict[str, Any]) -> Settings:
    """Settings with fields changed after validation (to reach the values-level rules)."""
    return dataclasses.replace(s, **{g: dataclasses.replace(getattr(s, g), **kv) for g, kv in groups.items()})


def tls_files(d: Path, cert: str = CERT, key: str = KEY) -> dict[str, str]:
    (d / "hub.crt").write_text(cert)
    (d / "hub.key").write_text(key)
    os.chmod(d / "hub.key", 0o600)
    return {"tls_cert_file": str(d / "hub.crt"), "tls_key_file": str(d / "hub.key")}


def at(values: dict[str, Any], dotted: str) -> Any:
    cur: Any = values
    for part in dotted.split("."):
        cur = cur[part]
    return cur


def has(values: dict[str, Any], dotted: str) -> bool:
    try:
        at(values, dotted)
    except (KeyError, TypeError):
        return False
    return True


def problems(s: Settings, secrets: dict[str, str] | None = None) -> list[str]:
    """Every problem of a profile as its one-line message (render errors included)."""
    try:
        values = render(s, secrets)
    except ValuesError as e:
        return [str(e)]
    return [str(e) for e in hv.check(s, values)]


# ----------------------------------------------------------------------------- good profiles
LE = {"hosts": ["jupyter.example.edu"], "https": "letsencrypt", "letsencrypt_email": "admin@example.edu"}


def _ldap_letsencrypt(_: Path) -> Settings:
    return profile(hub={**LE, "letsencrypt_staging": True},
                   users={"admins": ["carol"], "allowed": ["alice", "bob"], "ldap_tls": "before", "ldap_port": 389})


def _ldap_manual(d: Path) -> Settings:
    return profile(hub={"hosts": ["jupyter.example.edu"], "https": "manual", **tls_files(d)},
                   users={"admins": ["carol"], "allowed": ["alice"]})


def _native(_: Path) -> Settings:
    return profile(users={"auth": "native", "admins": ["carol"], "allow_all": True},
                   hub={"hosts": ["jupyter.example.edu"], "https": "secret", "tls_secret": "hub-tls"})


def _dummy(_: Path) -> Settings:
    return profile(topology="cluster", users={"auth": "dummy", "allowed": ["student1", "student2"]},
                   hub={"db": "sqlite-memory"}, kubernetes={"load_balancer": "none"})


def _staff_image(_: Path) -> Settings:
    return profile(users={"allowed": ["alice", "Tutor1"], "staff": ["Tutor1", "tutor2"], "staff_image": STAFF_IMAGE},
                   content={"repo": "https://github.com/example/course.git", "branch": "2026s1", "target": "notes"})


def _no_shared_volume(_: Path) -> Settings:
    return profile(users={"allow_all": True, "storage_class": "cinder-csi", "storage": "5Gi", "cpu_limit": 2,
                          "cpu_guarantee": 0.5, "memory_limit": "8Gi", "memory_guarantee": "1Gi"},
                   content={"shared_volume": False}, hub={"db_size": "2Gi", "cull_timeout": 7200, "cull_every": 300})


def _custom_oauth(_: Path) -> Settings:
    return profile(users={"auth": "custom", "custom_class": "oauthenticator.GitHubOAuthenticator",
                          "custom_config": {"client_id": "abc", "client_secret": "gh-client-secret-42",
                                            "oauth_callback_url": "https://jupyter.example.edu/hub/oauth_callback",
                                            "allowed_organizations": ["example-course"],
                                            "OAuthenticator": {"enable_auth_state": False}}},
                   hub={**LE})


GOOD: dict[str, tuple[Callable[[Path], Settings], dict[str, str] | None, dict[str, Any], list[str]]] = {
    # name: (settings, secrets, {values path: exact value}, [values paths that must be absent])
    "ldap+letsencrypt": (_ldap_letsencrypt, None, {
        "hub.config.JupyterHub.authenticator_class": "ldapauthenticator.LDAPAuthenticator",
        "hub.config.Authenticator.allowed_users": ["alice", "bob"],
        "hub.config.Authenticator.admin_users": ["carol"],
        "hub.config.Authenticator.allow_all": False,
        "hub.config.LDAPAuthenticator": {"server_address": "ldap.example.edu", "server_port": 389,
                                         "tls_strategy": "before",
                                         "bind_dn_template": ["uid={username},ou=people,o=example"]},
        "proxy.https": {"enabled": True, "type": "letsencrypt", "hosts": ["jupyter.example.edu"],
                        "letsencrypt": {"contactEmail": "admin@example.edu", "acmeServer": LE_STAGING}},
        "singleuser.image": {"name": "quay.io/jupyter/scipy-notebook", "tag": "2025-10-20"},
        "singleuser.defaultUrl": "/lab",
        "singleuser.cpu": {"limit": 1.0, "guarantee": 0.75},
        "singleuser.memory": {"limit": "4G", "guarantee": "2G"},
        "singleuser.storage.capacity": "1Gi",
        "singleuser.storage.extraVolumes": [{"name": "shared", "persistentVolumeClaim": {"claimName": "coursehub-shared"}}],
        "singleuser.storage.extraVolumeMounts": [{"name": "shared", "mountPath": "/home/shared"}],
        "hub.db": {"type": "sqlite-pvc", "pvc": {"storage": "1Gi"}},
        "cull": {"enabled": True, "timeout": 3600, "every": 600},
        "prePuller.hook.enabled": True,
        "prePuller.continuous.enabled": True,
        "proxy.service.type": "LoadBalancer",
    }, ["singleuser.lifecycleHooks", "hub.extraConfig", "prePuller.extraImages", "singleuser.storage.dynamic"]),
    "ldap+manual": (_ldap_manual, None, {
        "proxy.https": {"enabled": True, "type": "manual", "hosts": ["jupyter.example.edu"],
                        "manual": {"cert": CERT, "key": KEY}},
        "hub.config.Authenticator.allowed_users": ["alice"],
    }, ["proxy.https.letsencrypt"]),
    "native": (_native, None, {
        "hub.config.JupyterHub.authenticator_class": "nativeauthenticator.NativeAuthenticator",
        "hub.config.Authenticator": {"admin_users": ["carol"], "allow_all": True},
        "proxy.https": {"enabled": True, "type": "secret", "hosts": ["jupyter.example.edu"],
                        "secret": {"name": "hub-tls"}},
    }, ["hub.config.LDAPAuthenticator"]),
    "dummy": (_dummy, DUMMY, {
        "hub.config.JupyterHub.authenticator_class": "jupyterhub.auth.DummyAuthenticator",
        "hub.config.DummyAuthenticator": {"password": DUMMY["dummy_password"]},
        "hub.config.Authenticator.allowed_users": ["student1", "student2"],
        "hub.db": {"type": "sqlite-memory"},
        "proxy.https": {"enabled": False},
        "proxy.service.type": "NodePort",
    }, ["hub.config.LDAPAuthenticator", "hub.db.pvc"]),
    "staff image": (_staff_image, None, {
        "prePuller.extraImages": {"coursehub-staff-image": {"name": "quay.io/jupyter/datascience-notebook",
                                                            "tag": "2025-10-20"}},
        "singleuser.lifecycleHooks": {"postStart": {"exec": {"command": [
            "gitpuller", "https://github.com/example/course.git", "2026s1", "notes"]}}},
    }, ["singleuser.profileList"]),
    "no shared volume": (_no_shared_volume, None, {
        "hub.config.Authenticator": {"admin_users": [], "allow_all": True},
        "singleuser.storage": {"type": "dynamic", "capacity": "5Gi", "dynamic": {"storageClass": "cinder-csi"}},
        "singleuser.cpu": {"limit": 2.0, "guarantee": 0.5},
        "singleuser.memory": {"limit": "8Gi", "guarantee": "1Gi"},
        "hub.db.pvc.storage": "2Gi",
        "cull": {"enabled": True, "timeout": 7200, "every": 300},
    }, ["singleuser.storage.extraVolumes", "singleuser.storage.extraVolumeMounts"]),
    "custom oauth": (_custom_oauth, None, {
        "hub.config.JupyterHub.authenticator_class": "oauthenticator.GitHubOAuthenticator",
        "hub.config.GitHubOAuthenticator": {"client_id": "abc", "client_secret": "gh-client-secret-42",
                                            "oauth_callback_url": "https://jupyter.example.edu/hub/oauth_callback",
                                            "allowed_organizations": ["example-course"]},
        "hub.config.OAuthenticator": {"enable_auth_state": False},
        "hub.config.Authenticator": {"admin_users": [], "allow_all": False},
    }, []),
}


@pytest.mark.parametrize("name", list(GOOD))
def test_good_profile_passes_schema_and_policy(name: str, tmp_path: Path) -> None:
    build, secrets, expected, absent = GOOD[name]
    s = build(tmp_path)
    values = render(s, secrets)
    assert [str(e) for e in hv.schema_errors(s, values)] == []
    assert [str(e) for e in hv.policy_errors(s, values)] == []
    for path, want in expected.items():
        assert at(values, path) == want, path
    for path in absent:
        assert not has(values, path), path
    hv.validate(s, values)  # does not raise
    assert hv.validated(s, secrets) == values


def test_six_or_more_good_profiles() -> None:
    assert len(GOOD) >= 6


def test_staff_hook_picks_the_staff_image_for_staff_only(tmp_path: Path) -> None:
    values = render(_staff_image(tmp_path))
    code = at(values, "hub.extraConfig.coursehub-staff-image")
    compile(code, "extraConfig", "exec")

    class Obj:
        def __init__(self, **kw: Any) -> None:
            self.__dict__.update(kw)

    c = Obj(KubeSpawner=Obj())
    exec(code, {"c": c})  # noqa: S102 - our own rendered hook, run against stand-ins
    hook = c.KubeSpawner.pre_spawn_hook
    for user, image in (("tutor1", STAFF_IMAGE), ("tutor2", STAFF_IMAGE), ("alice", "student-image")):
        spawner = Obj(user=Obj(name=user), image="student-image")
        hook(spawner)
        assert spawner.image == image, user


def test_user_input_cannot_break_the_yaml() -> None:
    branch = 'main"\nsingleuser: {image: {name: evil, tag: x}}\n# {{ oops }} {% if %}'
    dn = "uid={username},ou=\"q\",o='x'\n  allow_all: true"
    s = profile(users={"allowed": ["alice"]}, content={"repo": "https://github.com/example/c.git"})
    s = bypass(s, users={"ldap_bind_dn_template": [dn]}, content={"branch": branch})  # past Settings' checks
    values = render(s)
    assert at(values, "singleuser.lifecycleHooks.postStart.exec.command")[2] == branch
    assert at(values, "hub.config.LDAPAuthenticator.bind_dn_template") == [dn]
    assert at(values, "singleuser.image.name") == "quay.io/jupyter/scipy-notebook"
    assert at(values, "hub.config.Authenticator.allow_all") is False
    assert hv.check(s, values) == []


def test_python_literal_filter_is_safe() -> None:
    for text in ['a"b', "x'\\\n__import__('os')", "é\U0001f600", ""]:
        assert ast.literal_eval(hval.py_literal(text)) == text
        assert ast.literal_eval(hval.py_literal([text, "b"])) == [text, "b"]
    with pytest.raises(TypeError):
        hval.py_literal(True)


def test_image_split() -> None:
    assert hval.split_image("quay.io/jupyter/scipy-notebook:2025-10-20") == ("quay.io/jupyter/scipy-notebook", "2025-10-20")
    assert hval.split_image("registry.example.edu:5000/course/img:v1.2") == ("registry.example.edu:5000/course/img", "v1.2")
    assert hval.split_image("img:1") == ("img", "1")
    with pytest.raises(ValueError):
        hval.split_image("registry.example.edu:5000/course/img")


# ----------------------------------------------------------------------------- broken profiles
def _le(**kw: Any) -> Callable[[Path], Settings]:
    return lambda _: bypass(profile(users={"allow_all": True}), hub={**LE, **kw})


def _manual(**files: str) -> Callable[[Path], Settings]:
    def build(d: Path) -> Settings:  # paths relative to vars.yml's folder (the test's cwd)
        tls_files(d, cert=files.get("cert", CERT), key=files.get("key", KEY))
        paths = {"tls_cert_file": files.get("cert_path", "hub.crt"), "tls_key_file": "hub.key"}
        return profile(users={"allow_all": True}, hub={"hosts": ["jupyter.example.edu"], "https": "manual", **paths})

    return build


def _custom(cls: str, config: dict[str, Any]) -> Callable[[Path], Settings]:
    return lambda _: profile(users={"auth": "custom", "custom_class": cls, "custom_config": config, "allow_all": True})


S44 = "z2jh 4.4.0 schema"
BROKEN: dict[str, tuple[Callable[[Path], Settings], dict[str, str] | None, str]] = {
    "no allow-list": (
        lambda _: profile(), None,
        "vars.yml: users.allowed: JupyterHub 5 lets nobody log in without an allow-list "
        "(got []; expected user names in users.allowed, or users.allow_all: true)"),
    "letsencrypt without e-mail": (
        _le(letsencrypt_email=""), None,
        "vars.yml: hub.letsencrypt_email: Let's Encrypt needs a contact e-mail "
        "(got ''; expected the e-mail Let's Encrypt writes to about expiry)"),
    "letsencrypt without hosts": (
        _le(hosts=[]), None,
        "vars.yml: hub.hosts: HTTPS (letsencrypt) needs the hub's DNS names (got []; expected e.g. [jupyter.example.edu])"),
    "manual cert file missing": (
        _manual(cert_path="nowhere.crt"), None,
        "vars.yml: hub.tls_cert_file: file not found (got 'nowhere.crt'; "
        "expected a readable PEM certificate chain (-----BEGIN CERTIFICATE-----))"),
    "manual cert is a folder": (
        _manual(cert_path="."), None,
        "vars.yml: hub.tls_cert_file: a folder, not a file (got '.'; "
        "expected a readable PEM certificate chain (-----BEGIN CERTIFICATE-----))"),
    "manual key not PEM": (
        _manual(key="just some text\n"), None,
        "vars.yml: hub.tls_key_file: not a PEM private key (got 'hub.key'; "
        "expected a readable, unencrypted PEM private key (-----BEGIN PRIVATE KEY-----))"),
    "manual key encrypted": (
        _manual(key=f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{KEY_BODY}\n-----END ENCRYPTED PRIVATE KEY-----\n"), None,
        "vars.yml: hub.tls_key_file: the private key is encrypted (got 'hub.key'; "
        "expected a readable, unencrypted PEM private key (-----BEGIN PRIVATE KEY-----))"),
    "dummy on a public hub": (
        lambda _: profile(users={"auth": "dummy", "allow_all": True}, hub=LE), DUMMY,
        "vars.yml: users.auth: dummy login (one shared password) on a public hub "
        "(got 'dummy'; expected ldap, native or custom when hub.https is not none (dummy is for the lab))"),
    "dummy without its password": (
        lambda _: profile(users={"auth": "dummy", "allow_all": True}), None,
        "vars.yml: users.auth: dummy needs the generated secret dummy_password "
        "(got 'dummy'; expected inventory/secrets.yml to hold dummy_password)"),
    "custom_config: a class section that is not a mapping": (
        _custom("oauthenticator.GitHubOAuthenticator", {"client_id": "x", "KubeSpawner": 5}), None,
        f"vars.yml: users.custom_config: {S44} rejects hub.config.KubeSpawner (got 5; expected a mapping)"),
    "custom_class without a class name": (
        _custom("mymodule.myauth", {"server": "x"}), None,
        f"vars.yml: users.custom_class: {S44} has no key hub.config.myauth "
        "(got 'myauth'; expected one of JupyterHub, or a name matching ^[A-Z].*$)"),
    "custom_config overrides the allow-list": (
        _custom("oauthenticator.GitHubOAuthenticator", {"Authenticator": {"allow_all": True}}), None,
        "vars.yml: users.custom_config: sets hub.config.Authenticator, which CourseHub writes "
        "(got 'Authenticator'; expected users.admins, users.allowed and users.allow_all for those)"),
    "cpu limit as text": (
        lambda _: bypass(profile(users={"allow_all": True}), users={"cpu_limit": "lots"}), None,
        f"vars.yml: users.cpu_limit: {S44} rejects singleuser.cpu.limit (got 'lots'; expected a number or null)"),
    "storage as a number": (
        lambda _: bypass(profile(users={"allow_all": True}), users={"storage": 10}), None,
        f"vars.yml: users.storage: {S44} rejects singleuser.storage.capacity (got 10; expected text or null)"),
    "db type unknown to the chart": (
        lambda _: bypass(profile(users={"allow_all": True}), hub={"db": "sqlite"}), None,
        f"vars.yml: hub.db: {S44} rejects hub.db.type "
        "(got 'sqlite'; expected one of sqlite-pvc, sqlite-memory, mysql, postgres, other)"),
    "external db without a URL": (
        lambda _: profile(users={"allow_all": True}, hub={"db": "postgres"}), None,
        "vars.yml: hub.db: postgres needs a database URL, and vars.yml has no key for one yet "
        "(got 'postgres'; expected sqlite-pvc or sqlite-memory)"),
    "chart version without a schema": (
        lambda _: profile(users={"allow_all": True}, hub={"chart_version": "4.3.3"}), None,
        "vars.yml: hub.chart_version: no bundled chart schema for this version "
        "(got '4.3.3'; expected one of 4.4.0 (add its files to coursehub/hub/chart/))"),
    "shared volume over the home": (
        lambda _: profile(users={"allow_all": True}, content={"shared_mount": "/home/jovyan/"}), None,
        "vars.yml: content.shared_mount: would hide every user's home "
        "(got '/home/jovyan/'; expected a folder other than the home mount (/home/jovyan), such as /home/shared)"),
    "unpinned image": (
        lambda _: bypass(profile(users={"allow_all": True}), users={"image": "quay.io/jupyter/scipy-notebook:latest"}),
        None,
        "vars.yml: users.image: image tag not pinned "
        "(got 'quay.io/jupyter/scipy-notebook:latest'; expected a fixed tag such as 2025-10-20)"),
    "https secret without a name": (
        lambda _: bypass(profile(users={"allow_all": True}), hub={"https": "secret", "hosts": ["a.example.edu"]}), None,
        "vars.yml: hub.tls_secret: HTTPS from a Secret needs its name "
        "(got ''; expected the name of a kubernetes.io/tls Secret)"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_profile_fails_with_one_line_naming_the_key(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # vars.yml's folder: relative file names resolve here
    build, secrets, message = BROKEN[name]
    found = problems(build(tmp_path), secrets)
    assert found, "expected a problem"
    assert found[0] == message
    assert all("\n" not in p and p.startswith("vars.yml: ") for p in found)


def test_ten_or_more_broken_profiles() -> None:
    assert len(BROKEN) >= 10


def test_values_error_is_a_settings_error() -> None:
    e = ValuesError("users.allowed", "bad", got=[], expected="names")
    assert isinstance(e, SettingsError) and e.key == "users.allowed"
    assert str(e) == "vars.yml: users.allowed: bad (got []; expected names)"


def test_settings_cross_checks_still_come_first() -> None:
    with pytest.raises(SettingsError, match=r"^vars.yml: hub.letsencrypt_email: required when hub.https is letsencrypt"):
        profile(hub={"https": "letsencrypt", "hosts": ["a.example.edu"]})


# ----------------------------------------------------------------------------- the template can't drop things
def test_policy_catches_a_dropped_allow_list(tmp_path: Path) -> None:
    s = _ldap_letsencrypt(tmp_path)
    values = render(s)
    del values["hub"]["config"]["Authenticator"]["allowed_users"]
    assert [e.key for e in hv.check(s, values)] == ["users.allowed"]


def test_policy_catches_a_staff_image_missing_from_the_prepuller(tmp_path: Path) -> None:
    s = _staff_image(tmp_path)
    values = render(s)
    del values["prePuller"]["extraImages"]
    assert [str(e) for e in hv.check(s, values)] == [
        "vars.yml: users.staff_image: not in prePuller.extraImages (staff would wait for the pull) "
        f"(got '{STAFF_IMAGE}'; expected the staff image pre-pulled on every node)"]
    values = render(s)
    del values["hub"]["extraConfig"]
    assert [e.key for e in hv.check(s, values)] == ["users.staff"]


def test_policy_catches_a_dropped_shared_mount(tmp_path: Path) -> None:
    s = _ldap_letsencrypt(tmp_path)
    values = render(s)
    del values["singleuser"]["storage"]["extraVolumeMounts"]
    assert [e.key for e in hv.check(s, values)] == ["content.shared_volume"]


def test_policy_rechecks_pem_content_in_the_values(tmp_path: Path) -> None:
    s = _ldap_manual(tmp_path)
    values = render(s)
    values["proxy"]["https"]["manual"]["key"] = "oops"
    assert [e.key for e in hv.policy_errors(s, values)] == ["hub.tls_key_file"]


def test_schema_rejects_the_legacy_auth_block(tmp_path: Path) -> None:
    s = _ldap_letsencrypt(tmp_path)
    values = {**render(s), "auth": {"type": "ldap"}}
    found = [str(e) for e in hv.schema_errors(s, values)]
    assert found == ["vars.yml: z2jh 4.4.0 schema has no key auth (got 'auth'; expected a key the chart defines)"]


def test_schema_error_never_shows_a_secret(tmp_path: Path) -> None:
    s = _ldap_manual(tmp_path)
    values = render(s)
    values["proxy"]["https"]["manual"]["key"] = {"not": KEY}
    found = [str(e) for e in hv.schema_errors(s, values)]
    assert found == [f"vars.yml: hub.tls_key_file: {S44} rejects proxy.https.manual.key "
                     "(got a mapping; expected text or null)"]


def test_schema_errors_map_to_keys() -> None:
    s = profile(users={"allow_all": True})
    assert hv.values_key(["singleuser", "storage", "extraVolumeMounts", 0, "mountPath"], s) == "content.shared_mount"
    assert hv.values_key(["proxy", "https", "letsencrypt", "acmeServer"], s) == "hub.letsencrypt_staging"
    assert hv.values_key(["scheduling", "userScheduler"], s) == ""


def test_merge_is_helms() -> None:
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert hv.merge(base, {"a": {"c": [3]}, "e": None}) == {"a": {"b": 1, "c": [3]}, "d": 1, "e": None}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_chart_defaults_alone_pass_the_schema() -> None:
    import jsonschema

    assert list(jsonschema.Draft7Validator(hv.chart_schema()).iter_errors(hv.chart_defaults())) == []
    assert hv.chart_versions() == ["4.4.0"]


# ----------------------------------------------------------------------------- secrets
def test_redact_hides_every_secret(tmp_path: Path) -> None:
    s = _ldap_manual(tmp_path)
    values = render(s)
    values["proxy"]["secretToken"] = "proxy-token-value"
    values["hub"]["cookieSecret"] = "cookie-secret-value"
    values["hub"]["config"]["LDAPAuthenticator"]["lookup_dn_search_password"] = "ldap-bind-pw"
    before = copy.deepcopy(values)
    text = to_yaml(redact(values))
    for secret in (KEY_BODY, "proxy-token-value", "cookie-secret-value", "ldap-bind-pw"):
        assert secret not in text
    assert at(redact(values), "proxy.https.manual.key") == "***"
    assert at(redact(values), "proxy.https.manual.cert") == CERT  # public
    assert values == before
    merged_values = hv.merge(hv.chart_defaults(), {"hub": {"db": {"url": "postgresql://hub:pw@db/hub"}}})
    shown = redact(merged_values)
    assert at(shown, "hub.db.url") == "***"
    assert at(shown, "scheduling.corePods.tolerations")[0]["key"] == "hub.jupyter.org/dedicated"  # not a secret
    assert hval.is_secret(("hub", "config", "LDAPAuthenticator", "lookup_dn_search_password"))
    assert not hval.is_secret(("proxy", "https", "secret", "name"))


def test_redact_hides_generated_and_oauth_secrets(tmp_path: Path) -> None:
    dummy = render(_dummy(tmp_path), DUMMY)
    dummy["hub"]["extraConfig"] = {"x": f"c.X.y = '{DUMMY['dummy_password']}'"}
    text = to_yaml(redact(dummy, DUMMY))
    assert DUMMY["dummy_password"] not in text and "c.X.y = '***'" in text
    oauth = render(_custom_oauth(tmp_path))
    assert "gh-client-secret-42" not in to_yaml(redact(oauth))
    assert at(redact(oauth), "hub.config.GitHubOAuthenticator.client_id") == "abc"


def test_write_values_is_0600_and_atomic(tmp_path: Path) -> None:
    s = _ldap_manual(tmp_path)
    values = render(s)
    out = tmp_path / "deploy" / "z2jh-values.yaml"
    out.parent.mkdir()
    out.write_text("old\n")
    os.chmod(out, 0o644)
    old_umask = os.umask(0)
    try:
        write_values(out, values)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert yaml.safe_load(out.read_text()) == values
    assert sorted(p.name for p in out.parent.iterdir()) == ["z2jh-values.yaml"]


def test_to_yaml_round_trips_and_keeps_code_readable(tmp_path: Path) -> None:
    values = render(_staff_image(tmp_path))
    text = to_yaml(values)
    assert yaml.safe_load(text) == values
    assert "coursehub-staff-image: |" in text


# ----------------------------------------------------------------------------- template hygiene
def test_template_is_strict(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import jinja2

    real = hval.context

    def missing(*a: Any, **kw: Any) -> dict[str, Any]:
        ctx = real(*a, **kw)
        del ctx["shared_pvc"]
        return ctx

    monkeypatch.setattr(hval, "context", missing)
    with pytest.raises(jinja2.UndefinedError):
        render(_ldap_letsencrypt(tmp_path))


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        hval.parse("a: 1\na: 2\n")


def test_modules_import_without_heavy_libraries() -> None:
    code = ("import sys, coursehub.hub.values, coursehub.hub.validate, coursehub.hub.helm; "
            "print(sorted(m for m in ('jsonschema', 'jinja2', 'yaml') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
