"""The single-node hub (topology `single`): JupyterHub 5 directly on the head host.

Layout on the host (TLJH's split of hub, user and system environments):

    /opt/coursehub/hub      venv: jupyterhub, systemdspawner, idle-culler (+ the authenticator)
    /opt/coursehub/user     venv: jupyterlab, ipykernel, nbgitpuller, jupyterhub-singleuser
    /opt/coursehub/proxy    npm prefix: configurable-http-proxy (run by Debian's nodejs)
    /etc/coursehub/hub/     jupyterhub_config.py (0644), hub.env and proxy.env (0600: the
                            tokens, never on a command line), tls/ (0600, hub.https manual)
    /var/lib/coursehub/hub  jupyterhub.sqlite, cookie secret (the hub's working directory)
    coursehub-proxy.service configurable-http-proxy on hub.port, as user coursehub-proxy
    coursehub-hub.service   JupyterHub as root (SystemdSpawner), API on 127.0.0.1:8081
    jupyter-<name>          one Unix user per hub user, made on first spawn (home 0700);
                            their servers run as transient units jupyter-<name>-singleuser

`steps(settings, inventory, secrets)` returns the ordered, idempotent steps: apt
packages, system users, the three environments (pinned, wheels only, constraints
from `locks/`), then the files and the two services, restarted only when one of
their own files changed (or a previous run changed a file but never restarted).
The culler runs as a JupyterHub-managed service; CourseHub's own API token (secret
`hub_api_token`) is a JupyterHub service with the scopes in OPS_SCOPES.
"""

from __future__ import annotations

import hashlib
import inspect
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coursehub.steps import Action, FileSpec, Step, ensure_file
from coursehub.steps.probe import (
    FileState,
    ProbeStep,
    Unit,
    files_command,
    parse_files,
    parse_sections,
    parse_units,
    sections,
    stale_since,
    units_command,
)

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host, Inventory
    from coursehub.settings import Settings

# ----------------------------------------------------------------------------- versions
JUPYTERHUB = "5.5.4"
HUB_PACKAGES = (f"jupyterhub=={JUPYTERHUB}", "jupyterhub-systemdspawner==1.0.2", "jupyterhub-idle-culler==1.4.0")
USER_PACKAGES = (f"jupyterhub=={JUPYTERHUB}", "jupyterlab==4.6.6", "ipykernel==7.4.0", "nbgitpuller==1.3.0")
# The same authenticators (and versions) as the z2jh 4.4.0 hub image.
AUTH_PACKAGES = {
    "ldap": ("jupyterhub-ldapauthenticator==2.0.2",),
    "native": ("jupyterhub-nativeauthenticator==1.3.0",),
    "dummy": (),
}
CUSTOM_PACKAGES = {
    "oauthenticator": "oauthenticator==17.4.0",
    "ltiauthenticator": "jupyterhub-ltiauthenticator==1.6.3",
    "firstuseauthenticator": "jupyterhub-firstuseauthenticator==1.1.1",
    "tmpauthenticator": "jupyterhub-tmpauthenticator==1.0.0",
    "ldapauthenticator": "jupyterhub-ldapauthenticator==2.0.2",
    "nativeauthenticator": "jupyterhub-nativeauthenticator==1.3.0",
    "jupyterhub": "",
}
SOURCE_ONLY = ("onetimepass",)  # nativeauthenticator's dependency publishes no wheel
CHP = "configurable-http-proxy"
CHP_VERSION = "4.6.3"
APT_PACKAGES = ("python3-venv", "nodejs", "npm", "git", "ca-certificates")
LOCKS = Path(__file__).resolve().parent / "locks"

# ----------------------------------------------------------------------------- layout
PREFIX = "/opt/coursehub"
HUB_ENV = f"{PREFIX}/hub"
USER_ENV = f"{PREFIX}/user"
PROXY_PREFIX = f"{PREFIX}/proxy"
CHP_JS = f"{PROXY_PREFIX}/lib/node_modules/{CHP}/bin/{CHP}"
CONF_DIR = "/etc/coursehub/hub"
CONFIG = f"{CONF_DIR}/jupyterhub_config.py"
HUB_ENV_FILE = f"{CONF_DIR}/hub.env"
PROXY_ENV_FILE = f"{CONF_DIR}/proxy.env"
TLS_CERT = f"{CONF_DIR}/tls/cert.pem"
TLS_KEY = f"{CONF_DIR}/tls/key.pem"
STATE_DIR = "/var/lib/coursehub/hub"
DB_FILE = f"{STATE_DIR}/jupyterhub.sqlite"
UNIT_DIR = "/etc/systemd/system"
HUB_UNIT = "coursehub-hub.service"
PROXY_UNIT = "coursehub-proxy.service"
PROXY_USER = "coursehub-proxy"
USERS_GROUP = "jupyterhub-users"
STAFF_GROUP = "coursehub-staff"
HUB_PORT = 8081
PROXY_API_PORT = 8001
HOME_ROOT = "/home"

# Secrets (inventory/secrets.yml) the single hub uses.
API_TOKEN = "hub_api_token"
PROXY_TOKEN = "hub_proxy_token"
DUMMY_PASSWORD = "dummy_password"

# What CourseHub's own service token may do: health check and hub ops.
OPS_SCOPES = ["admin:users", "admin:servers", "access:servers", "tokens", "list:users", "read:users",
              "read:users:activity", "read:servers", "read:hub", "admin:groups"]


class SingleHubError(Exception):
    """vars.yml asks for something the single-node hub cannot do; str() is one line."""


# ----------------------------------------------------------------------------- pure helpers
def unix_name(hub_name: str) -> str:
    """The Unix user of a hub user: jupyter-<name>; hashed when unsafe or longer than 32 characters."""
    base = "jupyter-" + hub_name
    safe = re.sub(r"[^a-z0-9_-]", "-", base.lower())
    if safe != base or len(safe) > 32:
        digest = hashlib.sha256(hub_name.encode("utf-8")).hexdigest()[:7]
        safe = safe[:24].rstrip("-") + "-" + digest
    return safe


def py_literal(value: Any) -> str:
    """A Python literal for plain data (text escaped with ascii(), so no input can become code)."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return ascii(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{py_literal(str(k))}: {py_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} into jupyterhub_config.py")


def hub_packages(settings: Settings) -> list[str]:
    """The hub environment's pinned packages for this authenticator."""
    u = settings.users
    if u.auth != "custom":
        return [*HUB_PACKAGES, *AUTH_PACKAGES[u.auth]]
    module = u.custom_class.split(".", 1)[0]
    if module not in CUSTOM_PACKAGES:
        raise SingleHubError(f"{settings.path}: users.custom_class: no known package provides {module!r} "
                             f"(got {u.custom_class!r}; expected a class from {', '.join(sorted(CUSTOM_PACKAGES))})")
    return [*HUB_PACKAGES, *([CUSTOM_PACKAGES[module]] if CUSTOM_PACKAGES[module] else [])]


def custom_sections(settings: Settings) -> dict[str, dict[str, Any]]:
    """users.custom_config as config sections: capitalised keys name a class, the rest are the class's traits."""
    u = settings.users
    section = u.custom_class.rpartition(".")[2]
    out: dict[str, dict[str, Any]] = {section: {}}
    for key, value in u.custom_config.items():
        if key[:1].isupper() and isinstance(value, Mapping):
            if key in ("JupyterHub", "Authenticator", "Spawner", "SystemdSpawner"):
                raise SingleHubError(f"{settings.path}: users.custom_config: sets {key}, which CourseHub writes "
                                     "(got that key; expected authenticator settings only)")
            out.setdefault(key, {}).update(value)
        else:
            out[section][key] = value
    return {k: v for k, v in out.items() if v}


def mem_limit(text: str) -> str:
    """A Kubernetes quantity (4G, 512Mi) as systemd's MemoryMax (4G, 512M)."""
    m = re.fullmatch(r"([0-9.]+)([KMGT]?)(i?)", text)
    if not m:
        raise SingleHubError(f"users.memory_limit: {text!r} is not a size such as 4G")
    number, unit, _ = m.groups()
    if "." in number:
        factor = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
        return str(int(float(number) * factor))
    return number + unit


def proxy_args(settings: Settings) -> list[str]:
    """configurable-http-proxy's arguments (no secret: its token comes from the environment)."""
    h = settings.hub
    args = ["--api-ip=127.0.0.1", f"--api-port={PROXY_API_PORT}",
            f"--default-target=http://127.0.0.1:{HUB_PORT}", f"--error-target=http://127.0.0.1:{HUB_PORT}/hub/error"]
    if h.https == "none":
        return [f"--port={h.port}", *args]
    port = public_port(settings)
    cert, key = tls_paths(settings)
    args = [f"--port={port}", *args, f"--ssl-cert={cert}", f"--ssl-key={key}"]
    if port == 443 and h.https == "manual":  # with letsencrypt, port 80 stays free for certbot
        args += ["--redirect-port=80", "--redirect-to=443"]
    return args


def public_port(settings: Settings) -> int:
    """The port students use: hub.port, or 443 when HTTPS is on and hub.port is the default 80."""
    h = settings.hub
    return h.port if h.https == "none" or h.port != 80 else 443


def tls_paths(settings: Settings) -> tuple[str, str]:
    """(certificate, key) the proxy reads: uploaded (manual) or copied there by certbot's deploy hook."""
    return TLS_CERT, TLS_KEY


def config_context(settings: Settings) -> dict[str, Any]:
    """The variables of templates/jupyterhub_config.py.j2."""
    from coursehub.hub.values import AUTH_CLASSES

    u, h, content = settings.users, settings.hub, settings.content
    return {
        "hub_bind_url": f"http://127.0.0.1:{HUB_PORT}",
        "db_url": f"sqlite:///{DB_FILE}",
        "cookie_secret_file": f"{STATE_DIR}/jupyterhub_cookie_secret",
        "proxy_api_url": f"http://127.0.0.1:{PROXY_API_PORT}",
        "auth": u.auth,
        "auth_class": u.custom_class if u.auth == "custom" else AUTH_CLASSES[u.auth],
        "admins": sorted(u.admins),
        "allowed": sorted(u.allowed),
        "allow_all": u.allow_all,
        "ldap_server": u.ldap_server,
        "ldap_port": u.ldap_port,
        "ldap_tls": u.ldap_tls,
        "ldap_bind_dn_template": list(u.ldap_bind_dn_template),
        "custom_sections": custom_sections(settings) if u.auth == "custom" else {},
        "singleuser": f"{USER_ENV}/bin/jupyterhub-singleuser",
        "user_bin": f"{USER_ENV}/bin",
        "gitpuller": f"{USER_ENV}/bin/gitpuller",
        "default_url": u.default_url,
        "mem_limit": mem_limit(u.memory_limit),
        "cpu_limit": float(u.cpu_limit),
        "users_group": USERS_GROUP,
        "staff_group": STAFF_GROUP,
        "staff": sorted({n.lower() for n in u.staff}),
        "content": [content.repo, content.branch, content.target] if content.repo else None,
        "cull_timeout": int(h.cull_timeout),
        "cull_every": int(h.cull_every),
        "ops_scopes": OPS_SCOPES,
        "unix_name_source": inspect.getsource(unix_name),
    }


def _env() -> Any:
    import jinja2

    from coursehub.templates import TEMPLATES

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["py"] = py_literal
    return env


def render_config(settings: Settings) -> str:
    """jupyterhub_config.py for these settings (no secrets in it)."""
    check(settings)
    return _env().get_template("jupyterhub_config.py.j2").render(**config_context(settings))


def render_units(settings: Settings) -> dict[str, str]:
    """unit name -> text of the two systemd units."""
    env = _env()
    hub = env.get_template("systemd/coursehub-hub.service.j2").render(
        state_dir=STATE_DIR, hub_env=HUB_ENV_FILE, hub_bin=f"{HUB_ENV}/bin", config=CONFIG)
    proxy = env.get_template("systemd/coursehub-proxy.service.j2").render(
        proxy_user=PROXY_USER, proxy_env=PROXY_ENV_FILE, chp=CHP_JS,
        args=" ".join(shlex.quote(a) for a in proxy_args(settings)))
    return {HUB_UNIT: hub, PROXY_UNIT: proxy}


def env_file(values: Mapping[str, str]) -> str:
    """A systemd EnvironmentFile (values double-quoted, escaped)."""
    lines = ["# Generated by CourseHub; secrets (mode 0600). Do not edit: `inv hub` rewrites it."]
    for key, value in values.items():
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{escaped}"')
    return "\n".join(lines) + "\n"


def check(settings: Settings) -> None:
    """Refuse settings the single hub cannot honour, one line each."""
    h = settings.hub
    if h.https == "secret":
        raise SingleHubError(f"{settings.path}: hub.https: a Kubernetes Secret needs topology cluster "
                             "(got 'secret'; expected none, manual or letsencrypt)")
    if h.https == "letsencrypt" and h.port not in (80,):
        raise SingleHubError(f"{settings.path}: hub.port: Let's Encrypt's HTTP check needs port 80 free for certbot "
                             f"(got {h.port}; expected 80, and HTTPS is then served on 443)")
    hub_packages(settings)


# ----------------------------------------------------------------------------- files
def hub_files(settings: Settings, secrets: Mapping[str, str], tls: tuple[str, str] | None = None) -> list[FileSpec]:
    """Files the hub service depends on (a change restarts the hub)."""
    env = {"CONFIGPROXY_AUTH_TOKEN": secrets[PROXY_TOKEN], "COURSEHUB_API_TOKEN": secrets[API_TOKEN]}
    if settings.users.auth == "dummy":
        env["COURSEHUB_DUMMY_PASSWORD"] = secrets[DUMMY_PASSWORD]
    units = render_units(settings)
    return [
        FileSpec(CONFIG, render_config(settings), mode=0o644),
        FileSpec(HUB_ENV_FILE, env_file(env), mode=0o600, secret=True),
        FileSpec(f"{UNIT_DIR}/{HUB_UNIT}", units[HUB_UNIT]),
    ]


def proxy_files(settings: Settings, secrets: Mapping[str, str], tls: tuple[str, str] | None = None) -> list[FileSpec]:
    """Files the proxy service depends on (a change restarts the proxy, then the hub)."""
    units = render_units(settings)
    files = [
        FileSpec(PROXY_ENV_FILE, env_file({"CONFIGPROXY_AUTH_TOKEN": secrets[PROXY_TOKEN]}), mode=0o600, secret=True),
        FileSpec(f"{UNIT_DIR}/{PROXY_UNIT}", units[PROXY_UNIT]),
    ]
    if settings.hub.https == "manual":
        if tls is None:
            raise SingleHubError("hub.https is manual but the certificate files were not read")
        cert, key = tls
        files += [FileSpec(TLS_CERT, cert, mode=0o644),
                  FileSpec(TLS_KEY, key, mode=0o600, owner=PROXY_USER, group=PROXY_USER, secret=True)]
    return files


def read_tls(settings: Settings) -> tuple[str, str] | None:
    """The manual certificate and key, read on the admin machine (None unless hub.https is manual)."""
    if settings.hub.https != "manual":
        return None
    from coursehub.hub.values import read_pem

    return read_pem(settings, "hub.tls_cert_file"), read_pem(settings, "hub.tls_key_file")


# ----------------------------------------------------------------------------- steps: system
@dataclass(frozen=True)
class SystemFacts:
    users: set[str]
    groups: set[str]
    dirs: dict[str, str]  # path -> "mode owner group"


class SystemAccounts(ProbeStep):
    """The proxy's system user, the hub's groups, and the directories with their modes."""

    name = "hub-accounts"

    def __init__(self, settings: Settings):
        self.shared = settings.content.shared_mount if settings.content.shared_volume else ""
        self.dirs = {
            CONF_DIR: ("755", "root", "root"),
            f"{CONF_DIR}/tls": ("750", "root", PROXY_USER),
            STATE_DIR: ("700", "root", "root"),
            PREFIX: ("755", "root", "root"),
        }
        if self.shared:  # staff write, everyone reads (setgid: new files stay in the group)
            self.dirs[self.shared] = ("2775", "root", STAFF_GROUP)

    def command(self, host: Host) -> str:
        paths = " ".join(shlex.quote(p) for p in self.dirs)
        return sections(
            users=f"getent passwd {PROXY_USER} | cut -d: -f1",
            groups=f"getent group {USERS_GROUP} {STAFF_GROUP} {PROXY_USER} | cut -d: -f1",
            dirs=f"for d in {paths}; do [ -d \"$d\" ] && stat -c '%n %a %U %G' \"$d\"; done",
        )

    def parse(self, text: str, host: Host) -> SystemFacts:
        s = parse_sections(text)
        dirs = {}
        for line in s.get("dirs", "").splitlines():
            parts = line.rsplit(" ", 3)
            if len(parts) == 4:
                dirs[parts[0]] = " ".join(parts[1:])
        return SystemFacts(set(s.get("users", "").split()), set(s.get("groups", "").split()), dirs)

    def decide(self, fact: SystemFacts, remote: Remote) -> list[Action]:
        acts: list[Action] = []
        if PROXY_USER not in fact.users:
            acts.append(Action(why="the proxy runs unprivileged", label=f"useradd --system {PROXY_USER}",
                               command=f"useradd --system --user-group --no-create-home --home-dir /nonexistent "
                                       f"--shell /usr/sbin/nologin {PROXY_USER}"))
        for group in (USERS_GROUP, STAFF_GROUP):
            if group not in fact.groups:
                acts.append(Action(why="group for hub users", command=f"groupadd --system {group}",
                                   label=f"groupadd {group}"))
        for path, (mode, owner, group) in self.dirs.items():
            have = fact.dirs.get(path)
            if have != f"{mode} {owner} {group}":
                q = shlex.quote(path)
                acts.append(Action(why=f"{path}: {have or 'missing'} (want {mode} {owner}:{group})",
                                   command=f"mkdir -p {q} && chown {owner}:{group} {q} && chmod {mode} {q}",
                                   label=f"directory {path}"))
        return acts


# ----------------------------------------------------------------------------- steps: environments
def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_freeze(text: str) -> dict[str, str]:
    """`pip freeze` output -> normalised name -> version."""
    out = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            out[_normal(name)] = version.strip()
    return out


def pinned_missing(pins: Sequence[str], installed: Mapping[str, str]) -> list[str]:
    """The `name==version` pins that are not installed at that version."""
    out = []
    for pin in pins:
        name, _, version = pin.partition("==")
        if installed.get(_normal(name)) != version:
            out.append(pin)
    return out


def proxy_env(settings: Settings) -> dict[str, str]:
    """Proxy variables for pip/npm on the host (network.proxy), passed explicitly on each install."""
    url = settings.network.proxy
    if not url:
        return {}
    return {"http_proxy": url, "https_proxy": url, "HTTP_PROXY": url, "HTTPS_PROXY": url,
            "no_proxy": "localhost,127.0.0.1", "NO_PROXY": "localhost,127.0.0.1"}


def env_prefix(values: Mapping[str, str]) -> str:
    return " ".join(f"{k}={shlex.quote(v)}" for k, v in values.items())


@dataclass(frozen=True)
class EnvFacts:
    python: bool
    installed: dict[str, str]
    lock: FileState


class PythonEnv(ProbeStep):
    """A venv at `path` with `pins` installed exactly, from wheels, within the lock's constraints."""

    def __init__(self, name: str, path: str, pins: Sequence[str], lock: str, settings: Settings):
        self.name, self.path, self.pins = name, path, list(pins)
        self.lock = FileSpec(f"{path}.constraints.txt", (LOCKS / lock).read_text(encoding="utf-8"))
        self.env = {**proxy_env(settings), "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}

    def command(self, host: Host) -> str:
        py = shlex.quote(f"{self.path}/bin/python")
        return sections(python=f"test -x {py} && echo yes", freeze=f"{py} -m pip freeze --all",
                        lock=files_command([self.lock]))

    def parse(self, text: str, host: Host) -> EnvFacts:
        s = parse_sections(text)
        return EnvFacts(s.get("python", "").strip() == "yes", parse_freeze(s.get("freeze", "")),
                        parse_files(s.get("lock", ""), 1)[0])

    def install_command(self) -> str:
        source = [p for p in SOURCE_ONLY if any(pin.startswith("jupyterhub-nativeauthenticator") for pin in self.pins)]
        words = [f"{self.path}/bin/python", "-m", "pip", "install", "--no-cache-dir", "--only-binary=:all:",
                 *(["--no-binary=" + ",".join(source), "--use-pep517"] if source else []),
                 "--constraint", self.lock.path, *self.pins]
        return f"{env_prefix(self.env)} {shlex.join(words)}"

    def decide(self, fact: EnvFacts, remote: Remote) -> list[Action]:
        acts = ensure_file(self.lock, fact.lock.fact)
        if not fact.python:
            acts.append(Action(why="no environment yet", command=f"python3 -m venv {shlex.quote(self.path)}",
                               label=f"python3 -m venv {self.path}"))
        todo = self.pins if not fact.python else pinned_missing(self.pins, fact.installed)
        if todo:
            acts.append(Action(why="not installed at the pinned version: " + ", ".join(todo),
                               command=self.install_command(), label=f"pip install {' '.join(todo)}"))
        return acts


@dataclass(frozen=True)
class NpmFacts:
    version: str


class NpmPackage(ProbeStep):
    """configurable-http-proxy at its pinned version in its own npm prefix."""

    name = "hub-proxy-package"

    def __init__(self, settings: Settings):
        self.env = {**proxy_env(settings), "NODE_EXTRA_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt"}
        self.proxy = settings.network.proxy

    def command(self, host: Host) -> str:
        pkg = f"{PROXY_PREFIX}/lib/node_modules/{CHP}/package.json"
        return sections(version=f"sed -n 's/^ *\"version\": *\"\\([^\"]*\\)\".*/\\1/p' {pkg} | head -n1")

    def parse(self, text: str, host: Host) -> NpmFacts:
        return NpmFacts(parse_sections(text).get("version", "").strip())

    def install_command(self) -> str:
        words = ["npm", "install", "--global", "--prefix", PROXY_PREFIX, "--no-fund", "--no-audit",
                 "--no-update-notifier", "--omit=dev"]
        if self.proxy:
            words += ["--proxy", self.proxy, "--https-proxy", self.proxy]
        return f"{env_prefix(self.env)} {shlex.join([*words, f'{CHP}@{CHP_VERSION}'])}".strip()

    def decide(self, fact: NpmFacts, remote: Remote) -> list[Action]:
        if fact.version == CHP_VERSION:
            return []
        return [Action(why=f"{CHP} {fact.version or 'missing'} (want {CHP_VERSION})", command=self.install_command(),
                       label=f"npm install {CHP}@{CHP_VERSION}")]


# ----------------------------------------------------------------------------- steps: services
@dataclass(frozen=True)
class ServiceFacts:
    files: list[FileState]
    units: dict[str, Unit]
    db: bool


WAIT_HUB = (f"{HUB_ENV}/bin/python -c 'import sys, time, urllib.request as u\n"
            f"o = u.build_opener(u.ProxyHandler({{}}))\n"
            "for i in range(90):\n"
            "    try:\n"
            f"        o.open(\"http://127.0.0.1:{HUB_PORT}/hub/api/\", timeout=2).read(); sys.exit(0)\n"
            "    except Exception as e:\n"
            "        err = e; time.sleep(1)\n"
            "sys.exit(f\"hub did not answer in 90 s: {{err}}\")'")


class HubServices(ProbeStep):
    """Config, env files, TLS and units; restart each service only when its own files changed."""

    name = "hub-services"

    def __init__(self, settings: Settings, secrets: Mapping[str, str], tls: tuple[str, str] | None = None):
        self.hub = hub_files(settings, secrets, tls)
        self.proxy = proxy_files(settings, secrets, tls)
        self.files = self.proxy + self.hub
        self.units = [f.path for f in self.files if f.path.startswith(UNIT_DIR)]

    def command(self, host: Host) -> str:
        return sections(files=files_command(self.files), units=units_command([PROXY_UNIT, HUB_UNIT]),
                        db=f"test -f {DB_FILE} && echo yes")

    def parse(self, text: str, host: Host) -> ServiceFacts:
        s = parse_sections(text)
        return ServiceFacts(parse_files(s.get("files", ""), len(self.files)),
                            parse_units(s.get("units", ""), [PROXY_UNIT, HUB_UNIT]), s.get("db", "").strip() == "yes")

    def decide(self, fact: ServiceFacts, remote: Remote) -> list[Action]:
        state = dict(zip([f.path for f in self.files], fact.files, strict=True))
        acts: list[Action] = []
        changed: set[str] = set()
        for spec in self.files:
            new = ensure_file(spec, state[spec.path].fact)
            if new:
                acts += new
                changed.add(spec.path)
        if changed & set(self.units):
            acts.append(Action(why="unit files changed", command="systemctl daemon-reload", label="systemctl daemon-reload"))
        proxy_unit, hub_unit = fact.units[PROXY_UNIT], fact.units[HUB_UNIT]
        proxy_mtimes = [state[f.path].mtime for f in self.proxy]
        hub_mtimes = [state[f.path].mtime for f in self.hub]
        restart_proxy = bool(changed & {f.path for f in self.proxy}) or stale_since(proxy_unit, proxy_mtimes) \
            or not proxy_unit.running
        restart_hub = restart_proxy or bool(changed & {f.path for f in self.hub}) or stale_since(hub_unit, hub_mtimes) \
            or not hub_unit.running
        for unit, restart in ((proxy_unit, restart_proxy), (hub_unit, restart_hub)):
            if unit.enabled != "enabled":
                acts.append(Action(why=f"{unit.id} not enabled at boot", command=f"systemctl enable {unit.id}",
                                   label=f"systemctl enable {unit.id}"))
            if restart:
                why = "its configuration changed" if unit.running else f"{unit.id} is {unit.active}"
                acts.append(Action(why=why, command=f"systemctl restart {unit.id}", label=f"systemctl restart {unit.id}"))
        if restart_hub:
            acts.append(Action(why="wait until the hub answers", command=WAIT_HUB, label="wait for the hub API"))
        return acts


class UpgradeDB(Step):
    """`jupyterhub upgrade-db` (it backs the sqlite file up first) when the hub's version moved."""

    name = "hub-db"

    def probe(self, remote: Remote) -> dict[str, str]:
        out = remote.run(sections(
            db=f"test -f {DB_FILE} && echo yes",
            version=f"cat {STATE_DIR}/.coursehub-jupyterhub-version",
            current=f"{HUB_ENV}/bin/python -c 'import jupyterhub; print(jupyterhub.__version__)'")).stdout
        s = parse_sections(out)
        return {k: v.strip() for k, v in s.items()}

    def decide(self, fact: dict[str, str], remote: Remote) -> list[Action]:
        current = fact.get("current", "")
        if not current or fact.get("version") == current:
            return []
        record = f"echo {shlex.quote(current)} > {STATE_DIR}/.coursehub-jupyterhub-version"
        if fact.get("db") != "yes":
            return [Action(why="record the hub version (new hub, no database yet)", command=record,
                           label=f"record jupyterhub {current}")]
        cmd = (f"cd {STATE_DIR} && systemctl stop {HUB_UNIT} && "
               f"{HUB_ENV}/bin/jupyterhub upgrade-db --db=sqlite:///{DB_FILE} && {record}")
        return [Action(why=f"jupyterhub {fact.get('version') or 'unknown'} -> {current}: back up and upgrade the database",
                       command=cmd, label="jupyterhub upgrade-db (backs up jupyterhub.sqlite)")]


# ----------------------------------------------------------------------------- steps: Let's Encrypt
DEPLOY_HOOK = f"{CONF_DIR}/certbot-deploy-hook"


def deploy_hook_text() -> str:
    """certbot's deploy hook: copy the renewed pair where the proxy user can read it, restart the proxy."""
    return (
        "#!/bin/sh\n# Generated by CourseHub: certbot runs this after issuing or renewing the hub's certificate.\n"
        "set -e\n"
        f'install -m 0644 -o root -g root "$RENEWED_LINEAGE/fullchain.pem" {TLS_CERT}\n'
        f'install -m 0600 -o {PROXY_USER} -g {PROXY_USER} "$RENEWED_LINEAGE/privkey.pem" {TLS_KEY}\n'
        f"systemctl try-restart {PROXY_UNIT} {HUB_UNIT}\n"
    )


def certbot_command(settings: Settings) -> list[str]:
    """certbot's first issuance: standalone HTTP check on port 80 (the proxy serves HTTPS on 443 only)."""
    h = settings.hub
    argv = ["certbot", "certonly", "--standalone", "--non-interactive", "--agree-tos", "--no-eff-email",
            "--email", h.letsencrypt_email, "--cert-name", h.hosts[0], "--deploy-hook", DEPLOY_HOOK]
    for name in h.hosts:
        argv += ["--domain", name]
    return argv + (["--test-cert"] if h.letsencrypt_staging else [])


class Certificate(ProbeStep):
    """A Let's Encrypt certificate for hub.hosts (certbot from apt; its timer renews it)."""

    name = "hub-certificate"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.hook = FileSpec(DEPLOY_HOOK, deploy_hook_text(), mode=0o755)

    def command(self, host: Host) -> str:
        live = f"/etc/letsencrypt/live/{self.settings.hub.hosts[0]}"
        return sections(hook=files_command([self.hook]), cert=f"test -f {live}/fullchain.pem && test -f {TLS_KEY} && echo yes")

    def parse(self, text: str, host: Host) -> tuple[FileState, bool]:
        s = parse_sections(text)
        return parse_files(s.get("hook", ""), 1)[0], s.get("cert", "").strip() == "yes"

    def decide(self, fact: tuple[FileState, bool], remote: Remote) -> list[Action]:
        acts = ensure_file(self.hook, fact[0].fact)
        if not fact[1]:
            acts.append(Action(why="no certificate for " + ", ".join(self.settings.hub.hosts) + " yet",
                               command=shlex.join(certbot_command(self.settings)), label="certbot certonly --standalone"))
        return acts


def steps(settings: Settings, inv: Inventory, secrets: Mapping[str, str],
          tls: tuple[str, str] | None = None) -> list[Step]:
    """The single hub's steps, in order, for the head host."""
    from coursehub.steps.apt import Packages

    check(settings)
    apt = list(APT_PACKAGES) + (["certbot"] if settings.hub.https == "letsencrypt" else [])
    out: list[Step] = [
        Packages(apt, name="hub-packages"),
        SystemAccounts(settings),
        PythonEnv("hub-env", HUB_ENV, hub_packages(settings), "hub.txt", settings),
        PythonEnv("user-env", USER_ENV, USER_PACKAGES, "user.txt", settings),
        NpmPackage(settings),
        UpgradeDB(),
    ]
    if settings.hub.https == "letsencrypt":
        out.append(Certificate(settings))
    out.append(HubServices(settings, secrets, tls))
    return out


def secrets_for(settings: Settings, store: Any) -> dict[str, str]:
    """The generated secrets the single hub needs (created on first use)."""
    names = [API_TOKEN, PROXY_TOKEN] + ([DUMMY_PASSWORD] if settings.users.auth == "dummy" else [])
    return {n: store.get(n) for n in names}
