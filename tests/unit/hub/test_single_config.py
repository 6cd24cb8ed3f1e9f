"""The single-node hub's rendered files: jupyterhub_config.py, units, env files, proxy arguments."""

from __future__ import annotations

import ast

import pytest

from coursehub.hub import single
from tests.unit.hub.fakes import make_settings

SECRETS = {"hub_api_token": "a" * 64, "hub_proxy_token": "b" * 64, "dummy_password": "c" * 64}


def run_config(text: str) -> dict:
    """Execute a rendered config with a stand-in `c` (traitlets-like nested dicts)."""

    class Section(dict):
        def __getattr__(self, name):
            return self.setdefault(name, Section())

        def __setattr__(self, name, value):
            self[name] = value

        def __missing__(self, name):  # traitlets' Config creates sections on item access too
            return self.setdefault(name, Section())

    c = Section()
    ns = {"get_config": lambda: c}
    import os

    env = {"COURSEHUB_API_TOKEN": "tok", "COURSEHUB_DUMMY_PASSWORD": "pw"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        exec(compile(text, "jupyterhub_config.py", "exec"), ns)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v
    ns["c"] = c
    return ns


def test_config_is_valid_python_and_carries_the_settings() -> None:
    s = make_settings(topology="single", users={"memory_limit": "2Gi", "cpu_limit": 0.5, "cpu_guarantee": 0.25,
                                                "memory_guarantee": "1G"})
    ns = run_config(single.render_config(s))
    c = ns["c"]
    assert c["JupyterHub"]["authenticator_class"] == "jupyterhub.auth.DummyAuthenticator"
    assert c["Authenticator"]["allowed_users"] == {"alice", "bob"}
    assert c["Authenticator"]["admin_users"] == {"teacher"}
    assert c["Authenticator"]["allow_all"] is False
    assert c["DummyAuthenticator"]["password"] == "pw"
    assert c["JupyterHub"]["spawner_class"] == "systemdspawner.SystemdSpawner"
    assert c["SystemdSpawner"]["mem_limit"] == "2G"
    assert c["SystemdSpawner"]["cpu_limit"] == 0.5
    assert c["ConfigurableHTTPProxy"]["should_start"] is False
    assert c["JupyterHub"]["cleanup_servers"] is False
    services = {svc["name"]: svc for svc in c["JupyterHub"]["services"]}
    assert services["coursehub"]["api_token"] == "tok"
    assert "--timeout=3600" in services["idle-culler"]["command"]
    roles = {r["name"]: r for r in c["JupyterHub"]["load_roles"]}
    assert roles["coursehub-ops"]["scopes"] == single.OPS_SCOPES
    assert c["Spawner"]["pre_spawn_hook"].__name__ == "coursehub_pre_spawn"


def test_no_secret_in_config_or_units() -> None:
    s = make_settings(topology="single")
    text = single.render_config(s) + "".join(single.render_units(s).values())
    for value in SECRETS.values():
        assert value not in text


def test_env_files_hold_the_secrets_with_mode_0600() -> None:
    s = make_settings(topology="single")
    files = {f.path: f for f in single.hub_files(s, SECRETS) + single.proxy_files(s, SECRETS)}
    hub_env, proxy_env = files[single.HUB_ENV_FILE], files[single.PROXY_ENV_FILE]
    assert hub_env.mode == proxy_env.mode == 0o600 and hub_env.secret and proxy_env.secret
    assert f'CONFIGPROXY_AUTH_TOKEN="{"b" * 64}"' in proxy_env.text
    assert f'COURSEHUB_API_TOKEN="{"a" * 64}"' in hub_env.text
    assert f'COURSEHUB_DUMMY_PASSWORD="{"c" * 64}"' in hub_env.text
    assert "a" * 64 not in proxy_env.text  # the proxy gets only its own token


def test_hostile_values_stay_literals() -> None:
    evil = "x'); import os; os.system('id') #"
    s = make_settings(topology="single", users={"auth": "ldap", "ldap_server": "ldap.example.edu",
                                                "ldap_bind_dn_template": [f"uid={{username}},o={evil}"]})
    text = single.render_config(s)
    ast.parse(text)
    ns = run_config(text)
    assert ns["c"]["LDAPAuthenticator"]["bind_dn_template"] == [f"uid={{username}},o={evil}"]


def test_unix_name_in_config_is_the_library_function() -> None:
    ns = run_config(single.render_config(make_settings(topology="single")))
    for name in ("alice", "Alice", "a.b@example.edu", "x" * 40, "coursehub-health-check"):
        assert ns["unix_name"](name) == single.unix_name(name)


@pytest.mark.parametrize(("name", "expected"), [
    ("alice", "jupyter-alice"),
    ("bob_2", "jupyter-bob_2"),
])
def test_unix_name_plain(name: str, expected: str) -> None:
    assert single.unix_name(name) == expected


def test_unix_name_unsafe_or_long_is_hashed_and_short() -> None:
    for name in ("a.b@example.edu", "Alice", "x" * 40):
        u = single.unix_name(name)
        assert len(u) <= 32 and u.startswith("jupyter-") and all(ch.isalnum() or ch in "-_" for ch in u)
    assert single.unix_name("Alice") != single.unix_name("alice")


def test_proxy_arguments_by_https_mode() -> None:
    plain = single.proxy_args(make_settings(topology="single", hub={"port": 8080}))
    assert plain[0] == "--port=8080" and not any(a.startswith("--ssl") for a in plain)
    assert "--api-ip=127.0.0.1" in plain and "--default-target=http://127.0.0.1:8081" in plain
    manual = single.proxy_args(make_settings(topology="single", users={"auth": "native"},
                                             hub={"https": "manual", "hosts": ["hub.example.edu"],
                                                  "tls_cert_file": "c.pem", "tls_key_file": "k.pem"}))
    assert manual[0] == "--port=443"
    assert f"--ssl-key={single.TLS_KEY}" in manual and "--redirect-port=80" in manual
    le = single.proxy_args(make_settings(topology="single", users={"auth": "native"},
                                         hub={"https": "letsencrypt", "hosts": ["hub.example.edu"],
                                              "letsencrypt_email": "a@example.edu"}))
    assert le[0] == "--port=443" and "--redirect-port=80" not in le  # port 80 stays free for certbot


def test_unit_files_keep_tokens_off_the_command_line() -> None:
    units = single.render_units(make_settings(topology="single"))
    proxy = units[single.PROXY_UNIT]
    assert f"EnvironmentFile={single.PROXY_ENV_FILE}" in proxy
    assert "auth-token" not in proxy and "User=coursehub-proxy" in proxy
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE" in proxy
    hub = units[single.HUB_UNIT]
    assert f"--config {single.CONFIG}" in hub and f"EnvironmentFile={single.HUB_ENV_FILE}" in hub


def test_packages_by_authenticator() -> None:
    assert "jupyterhub-ldapauthenticator==2.0.2" in single.hub_packages(
        make_settings(topology="single", users={"auth": "ldap", "ldap_server": "l.example.edu",
                                                "ldap_bind_dn_template": ["uid={username}"]}))
    assert single.hub_packages(make_settings(topology="single")) == list(single.HUB_PACKAGES)
    custom = make_settings(topology="single", users={"auth": "custom", "custom_class": "oauthenticator.GitHubOAuthenticator",
                                                     "allow_all": True})
    assert "oauthenticator==17.4.0" in single.hub_packages(custom)
    with pytest.raises(single.SingleHubError, match="users.custom_class"):
        single.hub_packages(make_settings(topology="single", users={"auth": "custom", "custom_class": "mine.Auth"}))


def test_pins_are_exact_and_in_the_locks() -> None:
    for lock, pins in (("hub.txt", single.HUB_PACKAGES), ("user.txt", single.USER_PACKAGES)):
        locked = single.parse_freeze((single.LOCKS / lock).read_text())
        for pin in pins:
            name, _, version = pin.partition("==")
            assert version and locked[single._normal(name)] == version, (lock, pin)
    assert single.JUPYTERHUB.startswith("5.")


def test_secret_https_is_refused_on_a_single_hub() -> None:
    s = make_settings(topology="single", users={"auth": "native"}, hub={"https": "secret", "tls_secret": "tls"})
    with pytest.raises(single.SingleHubError, match="hub.https"):
        single.check(s)


def test_mem_limit() -> None:
    assert single.mem_limit("4G") == "4G"
    assert single.mem_limit("512Mi") == "512M"
    assert single.mem_limit("1.5G") == str(int(1.5 * 2**30))


def test_custom_sections() -> None:
    s = make_settings(topology="single", users={"auth": "custom", "custom_class": "oauthenticator.GitHubOAuthenticator",
                                                "allow_all": True,
                                                "custom_config": {"client_id": "x", "OAuthenticator": {"scope": ["a"]}}})
    assert single.custom_sections(s) == {"GitHubOAuthenticator": {"client_id": "x"}, "OAuthenticator": {"scope": ["a"]}}
    ns = run_config(single.render_config(s))
    assert ns["c"]["GitHubOAuthenticator"]["client_id"] == "x"
