"""vars.yml -> typed, validated Settings.

`vars.yml` is the one file an admin edits. `load()` reads it once, rejects
unknown keys, fills defaults, checks every value and returns frozen
dataclasses (`s.instances.count`, `s.hub.chart_version`, ...). Any problem
raises `SettingsError`, whose text is one line:

    vars.yml: <key>: <problem> (got <value>; expected <what>)

Each dataclass below *is* the schema: the type hint is the type, the default
is the default (`REQUIRED` when there is none), and `metadata["check"]`
names the extra rule. The committed `vars.yml` documents every key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

__all__ = ["SettingsError", "Settings", "load", "vars_path", "inventory_dir", "REQUIRED"]


class SettingsError(Exception):
    """A bad vars.yml: str() is the single line shown to the admin."""

    def __init__(self, file: str, key: str, problem: str, got: Any = None, expected: str = ""):
        self.file, self.key, self.problem, self.got, self.expected = file, key, problem, got, expected
        tail = []
        if got is not None:
            tail.append(f"got {_show(got)}")
        if expected:
            tail.append(f"expected {expected}")
        where = f"{file}: {key}: " if key else f"{file}: "
        super().__init__(where + problem + (f" ({'; '.join(tail)})" if tail else ""))


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    if value is None or value == "":
        text = "nothing" if value is None else "''"
    return text if len(text) <= 60 else text[:57] + "..."


class _Required:
    """Marks a key with no default: vars.yml must set it."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


# ----------------------------------------------------------------------------- checks
# A check takes the value and returns None when it is fine, else what is expected.
Check = Callable[[Any], "str | None"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
_K8S_QTY = re.compile(r"^[0-9]+(\.[0-9]+)?(K|M|G|T|Ki|Mi|Gi|Ti)?$")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?$", re.I)
_VERSION = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.I)
_URL = re.compile(r"^https?://[^\s/:]+(:[0-9]{1,5})?(/\S*)?$")
_GIT_URL = re.compile(r"^(https?://|git@)\S+$")
_DNS = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.I)
_USER = re.compile(r"^[a-z_][a-z0-9_.@-]{0,63}$", re.I)
_IMAGE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9._-]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def slug(v: str) -> str | None:
    return None if _NAME.match(v) else "lower-case letters, digits and '-', 2-32 long, starting with a letter"


def optional(check: Check) -> Check:
    def inner(v: Any) -> str | None:
        return None if v in ("", None) else check(v)

    return inner


def nonempty(v: str) -> str | None:
    return None if v.strip() else "a non-empty text"


def span(lo: float, hi: float) -> Check:
    def inner(v: float) -> str | None:
        return None if lo <= v <= hi else f"a number from {lo:g} to {hi:g}"

    return inner


def cidr(v: str) -> str | None:
    try:
        ipaddress.ip_network(v, strict=True)
    except ValueError:
        return "an IPv4/IPv6 network such as 203.0.113.0/24 (host bits zero)"
    return None


def address_range(v: str) -> str | None:
    if cidr(v) is None:
        return None
    lo, sep, hi = v.partition("-")
    try:
        if sep and ipaddress.ip_address(lo.strip()) <= ipaddress.ip_address(hi.strip()):
            return None
    except ValueError:
        pass
    return "a CIDR or a range such as 10.0.0.200-10.0.0.220"


def regex(pattern: re.Pattern[str], what: str) -> Check:
    def inner(v: str) -> str | None:
        return None if pattern.match(v) else what

    return inner


k8s_quantity = regex(_K8S_QTY, "a Kubernetes quantity such as 512Mi, 4G or 10Gi")
size_str = regex(_SIZE, "a size such as 100M or 2G")
version_str = regex(_VERSION, "a version such as 1.33 or 4.4.0")
email_addr = regex(_EMAIL, "an e-mail address")
http_url = regex(_URL, "an http:// or https:// URL")
git_url = regex(_GIT_URL, "a git URL (https://... or git@...)")
dns_name = regex(_DNS, "a DNS name such as hub.example.edu")
username = regex(_USER, "a user name (letters, digits, _ . @ -)")
image_ref = regex(_IMAGE, "an image with a pinned tag, such as quay.io/jupyter/scipy-notebook:2025-10-20")
absolute_path = regex(re.compile(r"^/[^\0]*$"), "an absolute path")


def tcp_port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else "a TCP port from 1 to 65535"


def each(check: Check) -> Check:
    """Apply check to every item of a list (the key in errors gets [i])."""

    def inner(v: list[Any]) -> str | None:
        return None

    inner.item = check  # type: ignore[attr-defined]
    return inner


def unique(v: list[Any]) -> str | None:
    return None if len(set(map(str, v))) == len(v) else "no duplicates"


def _f(default: Any, check: Check | None = None) -> Any:
    meta = {"check": check, "required": default is REQUIRED}
    if default is REQUIRED:
        default = ""  # placeholder so Settings() can be built in code; load() insists
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


# ----------------------------------------------------------------------------- schema
@dataclass(frozen=True)
class Cloud:
    name: str = _f("")
    region: str = _f("")
    api_timeout: int = _f(60, span(1, 3600))
    parallel: int = _f(8, span(1, 64))
    build_timeout: int = _f(900, span(10, 7200))
    retries: int = _f(3, span(0, 10))


@dataclass(frozen=True)
class Instances:
    count: int = _f(3, span(1, 500))
    flavor: str = _f(REQUIRED, nonempty)
    image: str = _f(REQUIRED, nonempty)
    user: str = _f("ubuntu", username)
    availability_zone: str = _f("")
    network: str = _f("")
    keypair: str = _f("coursehub", nonempty)
    public_key_file: str = _f("~/.ssh/id_ed25519.pub")
    private_key_file: str = _f("~/.ssh/id_ed25519", nonempty)
    extra_security_groups: list[str] = _f([], unique)


@dataclass(frozen=True)
class Volumes:
    enabled: bool = _f(True)
    nodes: int = _f(0, span(0, 500))
    data_gb: int = _f(30, span(0, 16384))
    storage_gb: int = _f(0, span(0, 16384))
    availability_zone: str = _f("")
    filesystem: Literal["xfs", "ext4"] = _f("xfs")
    mount: str = _f("/mnt/data", absolute_path)


@dataclass(frozen=True)
class Network:
    admin_cidr: str = _f(REQUIRED, cidr)
    public_ports: list[int] = _f([80, 443], each(tcp_port))
    proxy: str = _f("", optional(http_url))
    no_proxy: list[str] = _f([])


@dataclass(frozen=True)
class Hosts:
    packages: list[str] = _f([])
    time_sync: Literal["timesyncd", "chrony"] = _f("timesyncd")
    ntp_servers: list[str] = _f([])
    runtime: Literal["containerd", "docker"] = _f("containerd")
    runtime_root: str = _f("", optional(absolute_path))
    log_max_size: str = _f("100M", size_str)
    disk_free_percent: int = _f(15, span(1, 90))


@dataclass(frozen=True)
class Storage:
    backend: Literal["cinder", "nfs", "rook", "none"] = _f("cinder")
    shared_size: str = _f("10Gi", k8s_quantity)
    nfs_export: str = _f("/srv/coursehub", absolute_path)


@dataclass(frozen=True)
class Kubernetes:
    version: str = _f("1.33.5", version_str)
    pod_cidr: str = _f("192.168.0.0/16", cidr)
    service_cidr: str = _f("10.96.0.0/12", cidr)
    cni: Literal["calico", "flannel"] = _f("calico")
    dedicated_control_plane: bool = _f(True)
    kubelet_root: str = _f("", optional(absolute_path))
    load_balancer: Literal["metallb", "octavia", "none"] = _f("metallb")
    lb_addresses: list[str] = _f([], each(address_range))
    helm_version: str = _f("3.19.0", version_str)


@dataclass(frozen=True)
class Hub:
    chart_version: str = _f("4.4.0", version_str)
    namespace: str = _f("jhub", slug)
    release: str = _f("jupyterhub", slug)
    hosts: list[str] = _f([], each(dns_name))
    https: Literal["none", "letsencrypt", "manual", "secret"] = _f("none")
    letsencrypt_email: str = _f("", optional(email_addr))
    letsencrypt_staging: bool = _f(False)
    tls_cert_file: str = _f("")
    tls_key_file: str = _f("")
    tls_secret: str = _f("")
    db: Literal["sqlite-pvc", "sqlite-memory", "mysql", "postgres", "other"] = _f("sqlite-pvc")
    db_size: str = _f("1Gi", k8s_quantity)
    cull_timeout: int = _f(3600, span(60, 31 * 86400))
    cull_every: int = _f(600, span(30, 86400))
    port: int = _f(80, tcp_port)


@dataclass(frozen=True)
class Users:
    auth: Literal["ldap", "native", "dummy", "custom"] = _f("ldap")
    admins: list[str] = _f([], each(username))
    allowed: list[str] = _f([], each(username))
    allow_all: bool = _f(False)
    ldap_server: str = _f("")
    ldap_port: int = _f(636, tcp_port)
    ldap_tls: Literal["on_connect", "before", "insecure"] = _f("on_connect")
    ldap_bind_dn_template: list[str] = _f(["uid={username},ou=people,o=unimelb"])
    custom_class: str = _f("")
    custom_config: dict[str, Any] = _f({})
    image: str = _f("quay.io/jupyter/scipy-notebook:2025-10-20", image_ref)
    staff_image: str = _f("", optional(image_ref))
    staff: list[str] = _f([], each(username))
    cpu_limit: float = _f(1.0, span(0.1, 256))
    cpu_guarantee: float = _f(0.75, span(0.0, 256))
    memory_limit: str = _f("4G", k8s_quantity)
    memory_guarantee: str = _f("2G", k8s_quantity)
    storage: str = _f("1Gi", k8s_quantity)
    storage_class: str = _f("")
    default_url: str = _f("/lab", absolute_path)


@dataclass(frozen=True)
class Content:
    repo: str = _f("", optional(git_url))
    branch: str = _f("main", nonempty)
    target: str = _f("workshops", regex(re.compile(r"^[A-Za-z0-9_.-]+$"), "a folder name"))
    shared_volume: bool = _f(True)
    shared_mount: str = _f("/home/shared", absolute_path)


@dataclass(frozen=True)
class Lab:
    backend: Literal["hosts", "memory"] = _f("hosts")
    nodes: int = _f(3, span(1, 40))
    subnet: str = _f("10.77.0.0/24", cidr)
    api_port: int = _f(8780, tcp_port)


@dataclass(frozen=True)
class Settings:
    deployment: str = _f("coursehub", slug)
    topology: Literal["cluster", "single"] = _f("cluster")
    parallel: int = _f(20, span(1, 256))
    cloud: Cloud = field(default_factory=Cloud)
    instances: Instances = field(default_factory=Instances)
    volumes: Volumes = field(default_factory=Volumes)
    network: Network = field(default_factory=Network)
    hosts: Hosts = field(default_factory=Hosts)
    storage: Storage = field(default_factory=Storage)
    kubernetes: Kubernetes = field(default_factory=Kubernetes)
    hub: Hub = field(default_factory=Hub)
    users: Users = field(default_factory=Users)
    content: Content = field(default_factory=Content)
    lab: Lab = field(default_factory=Lab)
    path: str = field(default="vars.yml", metadata={"internal": True})

    @property
    def base_dir(self) -> Path:
        """The folder vars.yml lives in: relative paths in it are read from here."""
        return Path(self.path).resolve().parent

    def resolve(self, path: str) -> Path:
        """A path from vars.yml: `~` expanded, relative to the vars file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


# ----------------------------------------------------------------------------- loading
def vars_path() -> Path:
    """`$COURSEHUB_VARS`, or ./vars.yml."""
    return Path(os.environ.get("COURSEHUB_VARS") or "vars.yml")


def inventory_dir() -> Path:
    """`$COURSEHUB_INVENTORY`, or ./inventory."""
    return Path(os.environ.get("COURSEHUB_INVENTORY") or "inventory")


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read and validate vars.yml; raise SettingsError with one line on any problem."""
    import yaml

    p = Path(path) if path is not None else vars_path()
    label = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(label, "", "file not found", expected="a vars.yml (copy the one in the repository)") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as e:
        raise SettingsError(label, "", f"cannot read the file: {type(e).__name__}", expected="a readable UTF-8 YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(e, "problem", None) or "not valid YAML"
        raise SettingsError(label, where, f"YAML syntax error: {problem}", expected="valid YAML") from None
    if data is None:
        data = {}
    return from_dict(data, label)


def from_dict(data: Any, label: str = "vars.yml") -> Settings:
    """Validate a parsed vars.yml mapping into Settings (see load)."""
    values = _build(Settings, data, "", label)
    settings = Settings(**values, path=label)
    _cross_checks(settings, label)
    return settings


_PY_TYPE_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


def _build(cls: type, data: Any, prefix: str, label: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SettingsError(label, prefix.rstrip(".") or "top level", "not a mapping", got=_kind(data), expected="key: value pairs")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in known:
            close = _closest(str(key), list(known))
            hint = f"; did you mean '{prefix}{close}'?" if close else ""
            raise SettingsError(label, f"{prefix}{key}", "unknown key" + hint, expected="one of " + ", ".join(known))
    out: dict[str, Any] = {}
    for fname, f in known.items():
        key = f"{prefix}{fname}"
        typ = hints[fname]
        if dataclasses.is_dataclass(typ):
            out[fname] = typ(**_build(typ, data.get(fname, {}) if data.get(fname) is not None else {}, key + ".", label))
            continue
        if fname not in data:
            if f.metadata.get("required"):
                check = f.metadata.get("check")
                raise SettingsError(label, key, "required key is missing", expected=(check and check("")) or _describe(typ))
            continue  # the dataclass default applies
        out[fname] = _coerce(data[fname], typ, key, label, f.metadata.get("check"))
    return out


def _coerce(value: Any, typ: Any, key: str, label: str, check: Check | None) -> Any:
    origin = typing.get_origin(typ)
    shown = value
    if origin is Literal:
        allowed = typing.get_args(typ)
        if value not in allowed:
            raise SettingsError(label, key, "not an allowed value", got=shown, expected="one of " + ", ".join(map(str, allowed)))
        return value
    if origin is list:
        (item_type,) = typing.get_args(typ)
        if value is None:
            value = []
        if not isinstance(value, list):
            raise SettingsError(label, key, "wrong type", got=shown, expected=f"a list of {_describe(item_type)}")
        item_check = getattr(check, "item", None)
        items = [_coerce(v, item_type, f"{key}[{i}]", label, item_check) for i, v in enumerate(value)]
        _run_check(check, items, key, label, shown)
        return items
    if origin is dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise SettingsError(label, key, "wrong type", got=shown, expected="a mapping")
        return dict(value)
    if typ is bool:
        if not isinstance(value, bool):
            raise SettingsError(label, key, "wrong type", got=shown, expected="true or false")
    elif typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(label, key, "wrong type", got=shown, expected="a whole number")
    elif typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(label, key, "wrong type", got=shown, expected="a number")
        value = float(value)
    elif typ is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and check in (version_str, size_str, k8s_quantity):
            value = str(value)  # `version: 1.33` and `memory_limit: 4` read as numbers
        if not isinstance(value, str):
            raise SettingsError(label, key, "wrong type", got=shown, expected="text")
    _run_check(check, value, key, label, shown)
    return value


def _run_check(check: Check | None, value: Any, key: str, label: str, shown: Any) -> None:
    if check is None:
        return
    expected = check(value)
    if expected:
        raise SettingsError(label, key, "invalid value", got=shown, expected=expected)


def _describe(typ: Any) -> str:
    if typing.get_origin(typ) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(typ)))
    if typing.get_origin(typ) is list:
        return "a list"
    return _PY_TYPE_NAMES.get(typ, "a value")


def _kind(value: Any) -> str:
    return {list: "a list", str: "text", int: "a number", float: "a number", bool: "a boolean"}.get(type(value), type(value).__name__)


def _closest(word: str, choices: list[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    return found[0] if found else None


def _cross_checks(s: Settings, label: str) -> None:
    """Rules between keys, each a one-line SettingsError."""
    if s.volumes.nodes > s.instances.count:
        raise SettingsError(label, "volumes.nodes", "more volume nodes than instances", got=s.volumes.nodes,
                            expected=f"at most instances.count ({s.instances.count}); 0 means all")
    if s.users.cpu_guarantee > s.users.cpu_limit:
        raise SettingsError(label, "users.cpu_guarantee", "guarantee above the limit", got=s.users.cpu_guarantee,
                            expected=f"at most users.cpu_limit ({s.users.cpu_limit:g})")
    if _bytes(s.users.memory_guarantee) > _bytes(s.users.memory_limit):
        raise SettingsError(label, "users.memory_guarantee", "guarantee above the limit", got=s.users.memory_guarantee,
                            expected=f"at most users.memory_limit ({s.users.memory_limit})")
    if s.users.auth == "ldap" and not s.users.ldap_server:
        raise SettingsError(label, "users.ldap_server", "required when users.auth is ldap", got="",
                            expected="the LDAP server's host name")
    if s.users.auth == "custom" and not s.users.custom_class:
        raise SettingsError(label, "users.custom_class", "required when users.auth is custom", got="",
                            expected="an authenticator class such as oauthenticator.GitHubOAuthenticator")
    if s.users.staff and not s.users.staff_image:
        raise SettingsError(label, "users.staff_image", "required when users.staff names anyone", got="",
                            expected="an image with a pinned tag")
    if ipaddress.ip_network(s.kubernetes.pod_cidr).overlaps(ipaddress.ip_network(s.kubernetes.service_cidr)):
        raise SettingsError(label, "kubernetes.service_cidr", "overlaps kubernetes.pod_cidr", got=s.kubernetes.service_cidr,
                            expected=f"a network apart from {s.kubernetes.pod_cidr}")
    if s.hub.https == "letsencrypt" and s.hub.letsencrypt_email == "":
        raise SettingsError(label, "hub.letsencrypt_email", "required when hub.https is letsencrypt", got="",
                            expected="the e-mail Let's Encrypt writes to about expiry")
    if s.hub.https in ("letsencrypt", "manual") and not s.hub.hosts:
        raise SettingsError(label, "hub.hosts", f"required when hub.https is {s.hub.https}", got=[],
                            expected="the hub's DNS names")
    if s.hub.https == "manual":
        for key in ("tls_cert_file", "tls_key_file"):
            if not getattr(s.hub, key):
                raise SettingsError(label, f"hub.{key}", "required when hub.https is manual", got="", expected="a file path")
    if s.hub.https == "secret" and not s.hub.tls_secret:
        raise SettingsError(label, "hub.tls_secret", "required when hub.https is secret", got="",
                            expected="the name of a kubernetes.io/tls Secret")
    if s.hub.cull_every > s.hub.cull_timeout:
        raise SettingsError(label, "hub.cull_every", "checks less often than the idle timeout", got=s.hub.cull_every,
                            expected=f"at most hub.cull_timeout ({s.hub.cull_timeout})")


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _bytes(qty: str) -> float:
    m = re.match(r"^([0-9.]+)([A-Za-z]*)$", qty)
    assert m, qty
    return float(m.group(1)) * _UNITS[m.group(2)]
