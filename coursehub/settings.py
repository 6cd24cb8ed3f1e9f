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
import datetime
import functools
import ipaddress
import os
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["SettingsError", "Settings", "load", "vars_path", "inventory_dir", "REQUIRED"]


_NULL: Any = object()  # got=_NULL: the admin wrote no value (`key:` alone); shown as "got nothing", .got is None


class SettingsError(Exception):
    """A bad vars.yml: str() is the single line shown to the admin (got=None: no "got" part)."""

    def __init__(self, file: str, key: str, problem: str, got: Any = None, expected: str = ""):
        self.file, self.key, self.problem, self.expected = file, key, problem, expected
        self.got = None if got is _NULL else got
        tail = [] if got is None else [f"got {_show(self.got)}"]
        if expected:
            tail.append(f"expected {expected}")
        where = f"{file}: {key}: " if key else f"{file}: "
        line = where + problem + (f" ({'; '.join(tail)})" if tail else "")
        super().__init__(line.replace("\r", "\\r").replace("\n", "\\n"))  # always one line


def _show(value: Any) -> str:
    """A value as the admin wrote it, compactly: 'text', 3, true, nothing."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = getattr(value, "text", None) or (repr(value) if isinstance(value, str) else str(value))
    return text if len(text) <= 60 else text[:57] + "..."


class _Required:
    """Marks a key with no default: vars.yml must set it."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


# ----------------------------------------------------------------------------- checks
# A check takes the value and returns None when it is fine, else what is expected.
# A check may carry .problem (shown instead of "invalid value") and, for lists, .item.
Check = Callable[[Any], "str | None"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
_K8S_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?(K|M|G|T|Ki|Mi|Gi|Ti)$")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?$", re.I)
_VERSION = re.compile(r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$", re.I)
_URL = re.compile(r"^https?://[^\s/:@]+(?::([0-9]{1,5}))?(/\S*)?$")
_GIT_URL = re.compile(r"^(https?://|git@)\S+$")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_DNS = re.compile(rf"^(?=.{{1,253}}$)({_LABEL}\.)+[a-z]{{2,63}}$", re.I)
_HOST = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$", re.I)
_USER = re.compile(r"^[a-z_][a-z0-9_.@-]{0,63}$", re.I)
_IMAGE = re.compile(r"^[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9._-]+)*"
                    r"(:(?!latest$)[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})$")
_TRIMMED = re.compile(r"^\S(.*\S)?$")  # a name: not empty, one line, no spaces around it
_K8S_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")


def rule(ok: Callable[[Any], Any], what: str) -> Check:
    """A check from a predicate: fine when ok(value) is true, else expected `what`."""

    def inner(v: Any) -> str | None:
        return None if ok(v) else what

    return inner


def regex(pattern: re.Pattern[str], what: str) -> Check:
    return rule(pattern.fullmatch, what)


def optional(check: Check) -> Check:
    """Empty text means "not set"; anything else must pass check."""

    def inner(v: Any) -> str | None:
        return None if v in ("", None) else check(v)

    inner.inner = check  # type: ignore[attr-defined]
    return inner


def span(lo: float, hi: float) -> Check:
    what = f"{'a whole number' if isinstance(lo + hi, int) else 'a number'} from {lo:g} to {hi:g}"
    inner = rule(lambda v: lo <= v <= hi, what)
    inner.problem, inner.expect = "out of range", what  # type: ignore[attr-defined]
    return inner


def each(check: Check, distinct: bool = False) -> Check:
    """Apply check to every item of a list (the key in errors gets [i]); distinct: no duplicates."""
    inner = rule(lambda v: not distinct or len(set(map(str, v))) == len(v), "no duplicates")
    inner.item = check  # type: ignore[attr-defined]
    return inner


def _ip(v: str, kind: Callable[..., Any] = ipaddress.ip_address, **kw: Any) -> Any:
    try:
        return kind(v, **kw)
    except ValueError:
        return None


def cidr(v: str) -> str | None:
    if _ip(v, ipaddress.ip_network) is not None:
        return None
    net = _ip(v, ipaddress.ip_network, strict=False)
    return f"the network address {net}, with the host bits zero" if net else "a network such as 203.0.113.0/24"


def admin_network(v: str) -> str | None:
    net = _ip(v, ipaddress.ip_network, strict=False)
    if net is None or net.prefixlen == 0:
        return "your campus or VPN range such as 128.250.0.0/16" + (", not the whole internet" if net else "")
    return cidr(v)


def address_range(v: str) -> str | None:
    lo, _, hi = (_ip(x.strip()) for x in v.partition("-"))
    fine = cidr(v) is None or (lo is not None and hi is not None and lo.version == hi.version and lo <= hi)
    return None if fine else "a CIDR or a range such as 10.0.0.200-10.0.0.220"


def http_url(v: str) -> str | None:
    m = _URL.fullmatch(v)
    return None if m and 1 <= int(m.group(1) or 80) <= 65535 else "an http:// or https:// URL such as http://proxy.example.edu:3128"


def name(what: str) -> Check:
    return regex(_TRIMMED, what)


nonempty = rule(str.strip, "a non-empty text")
tcp_port = rule(lambda v: 1 <= v <= 65535, "a TCP port from 1 to 65535")
public_port = rule(lambda v: 1 <= v <= 65535 and v != 22, "a TCP port from 1 to 65535 other than 22, which only network.admin_cidr may reach")
host_name = rule(lambda v: _ip(v) is not None or _HOST.fullmatch(v), "a host name or IP address, without scheme or port")
bind_template = rule(lambda v: "{username}" in v and _TRIMMED.fullmatch(v), "a DN containing {username}, such as uid={username},ou=people,o=example")
k8s_quantity = regex(_K8S_SIZE, "a size with a unit, such as 512Mi, 4G or 10Gi")
size_str = regex(_SIZE, "a size such as 100M or 2G")
version_str = regex(_VERSION, "a version such as 1.33 or 4.4.0")
email_addr = regex(_EMAIL, "an e-mail address")
git_url = regex(_GIT_URL, "a git URL such as https://github.com/org/repo.git or git@github.com:org/repo.git")
dns_name = regex(_DNS, "a DNS name such as hub.example.edu")
username = regex(_USER, "a user name of letters, digits and _ . @ -")
image_ref = regex(_IMAGE, "an image with a pinned tag other than latest, such as quay.io/jupyter/scipy-notebook:2025-10-20")
absolute_path = regex(re.compile(r"^/[^\s\0]*$"), "an absolute path without spaces")
k8s_name = regex(_K8S_NAME, "a Kubernetes name: lower-case letters, digits, '-' and '.'")
slug = regex(_NAME, "lower-case letters, digits and '-', 2-32 long, starting with a letter")
apt_package = regex(re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~-]+)?$"), "an apt package name, optionally =version")
python_class = regex(re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$"), "a dotted class name such as oauthenticator.GitHubOAuthenticator")
no_proxy_entry = regex(re.compile(r"^[^\s,]+$"), "a host, domain or network, without spaces or commas")


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
    clouds_yaml: str = _f("")
    region: str = _f("")
    api_timeout: int = _f(60, span(1, 3600))
    parallel: int = _f(8, span(1, 64))
    build_timeout: int = _f(900, span(10, 7200))
    retries: int = _f(3, span(0, 10))


@dataclass(frozen=True)
class Instances:
    count: int = _f(3, span(1, 500))
    flavor: str = _f(REQUIRED, name("a flavor name such as m3.large"))
    image: str = _f(REQUIRED, name("an image name such as 'NeCTAR Ubuntu 24.04 LTS (Noble) amd64'"))
    user: str = _f("ubuntu", username)
    availability_zone: str = _f("", optional(name("an availability zone such as melbourne-qh2-uom")))
    network: str = _f("", optional(name("a network name such as qh2-uom")))
    keypair: str = _f("coursehub", name("a key pair name such as coursehub"))
    public_key_file: str = _f("~/.ssh/id_ed25519.pub")
    private_key_file: str = _f("~/.ssh/id_ed25519", nonempty)
    extra_security_groups: list[str] = _f([], each(name("a security group name"), distinct=True))


@dataclass(frozen=True)
class Volumes:
    enabled: bool = _f(True)
    nodes: int = _f(0, span(0, 500))
    data_gb: int = _f(30, span(0, 16384))
    storage_gb: int = _f(0, span(0, 16384))
    availability_zone: str = _f("", optional(name("an availability zone such as melbourne-qh2-uom")))
    filesystem: Literal["xfs", "ext4"] = _f("xfs")
    mount: str = _f("/mnt/data", absolute_path)


@dataclass(frozen=True)
class Network:
    admin_cidr: str = _f(REQUIRED, admin_network)
    public_ports: list[int] = _f([80, 443], each(public_port, distinct=True))
    proxy: str = _f("", optional(http_url))
    no_proxy: list[str] = _f([], each(no_proxy_entry))


@dataclass(frozen=True)
class Hosts:
    packages: list[str] = _f([], each(apt_package, distinct=True))
    time_sync: Literal["timesyncd", "chrony"] = _f("timesyncd")
    ntp_servers: list[str] = _f([], each(host_name, distinct=True))
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
    hosts: list[str] = _f([], each(dns_name, distinct=True))
    https: Literal["none", "letsencrypt", "manual", "secret"] = _f("none")
    letsencrypt_email: str = _f("", optional(email_addr))
    letsencrypt_staging: bool = _f(False)
    tls_cert_file: str = _f("")
    tls_key_file: str = _f("")
    tls_secret: str = _f("", optional(k8s_name))
    db: Literal["sqlite-pvc", "sqlite-memory", "mysql", "postgres", "other"] = _f("sqlite-pvc")
    db_size: str = _f("1Gi", k8s_quantity)
    cull_timeout: int = _f(3600, span(60, 31 * 86400))
    cull_every: int = _f(600, span(30, 86400))
    port: int = _f(80, tcp_port)


@dataclass(frozen=True)
class Users:
    auth: Literal["ldap", "native", "dummy", "custom"] = _f("ldap")
    admins: list[str] = _f([], each(username, distinct=True))
    allowed: list[str] = _f([], each(username, distinct=True))
    allow_all: bool = _f(False)
    ldap_server: str = _f("", optional(host_name))
    ldap_port: int = _f(636, tcp_port)
    ldap_tls: Literal["on_connect", "before", "insecure"] = _f("on_connect")
    ldap_bind_dn_template: list[str] = _f([], each(bind_template))
    custom_class: str = _f("", optional(python_class))
    custom_config: dict[str, Any] = _f({})
    image: str = _f("quay.io/jupyter/scipy-notebook:2025-10-20", image_ref)
    staff_image: str = _f("", optional(image_ref))
    staff: list[str] = _f([], each(username, distinct=True))
    cpu_limit: float = _f(1.0, span(0.1, 256))
    cpu_guarantee: float = _f(0.75, span(0.0, 256))
    memory_limit: str = _f("4G", k8s_quantity)
    memory_guarantee: str = _f("2G", k8s_quantity)
    storage: str = _f("1Gi", k8s_quantity)
    storage_class: str = _f("", optional(k8s_name))
    default_url: str = _f("/lab", absolute_path)


@dataclass(frozen=True)
class Content:
    repo: str = _f("", optional(git_url))
    branch: str = _f("main", regex(re.compile(r"^[A-Za-z0-9._/-]+$"), "a git branch or tag name"))
    target: str = _f("workshops", regex(re.compile(r"^(?!\.\.?$)[A-Za-z0-9_.-]+$"), "a folder name without '/', other than '.' and '..'"))
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
    folder: str = field(default="", metadata={"internal": True}, repr=False)  # path's folder, absolute, when loaded

    @property
    def base_dir(self) -> Path:
        """The folder vars.yml lives in: relative paths in it are read from here."""
        return Path(self.folder) if self.folder else Path(self.path).resolve().parent

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
    p = Path(path) if path is not None else vars_path()
    label = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(label, "", "file not found" + ("" if p.is_absolute() else f" in {Path.cwd()}"),
                            expected="a settings file: copy vars.yml from the repository, or set COURSEHUB_VARS") from None
    except IsADirectoryError:
        raise SettingsError(label, "", "is a directory, not a file", expected="a YAML file such as vars.yml") from None
    except UnicodeDecodeError as e:
        raise SettingsError(label, "", f"not UTF-8 text: bad byte at offset {e.start}", expected="a UTF-8 YAML file") from None
    except OSError as e:
        raise SettingsError(label, "", f"cannot read the file: {e.strerror or type(e).__name__}",
                            expected="a readable YAML file") from None
    return from_dict(_parse(text, label), label)


def from_dict(data: Any, label: str = "vars.yml") -> Settings:
    """Validate a parsed vars.yml mapping into Settings (see load)."""
    values = _build(Settings, data, "", label)
    settings = Settings(**values, path=label, folder=str(Path(label).resolve().parent))
    _cross_checks(settings, label)
    return settings


class _Float(float):
    """A YAML float that remembers how it was written: `version: 1.30` stays "1.30"."""

    text = ""


@functools.cache
def _loader() -> type:
    """SafeLoader that rejects duplicate keys and keeps the text of floats."""
    import yaml

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    if key in seen:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {_key_text(key)!r}, first set on line {seen[key]}", key_node.start_mark)
                    seen[key] = key_node.start_mark.line + 1
                except TypeError:
                    continue  # an unhashable key: SafeLoader itself reports it
            return super().construct_mapping(node, deep=deep)

    def construct_float(loader: Any, node: Any) -> float:
        value = _Float(loader.construct_yaml_float(node))
        value.text = node.value
        return value

    Loader.add_constructor("tag:yaml.org,2002:float", construct_float)
    return Loader


def _parse(text: str, label: str) -> Any:
    import yaml

    try:
        data = yaml.load(text, Loader=_loader())  # a SafeLoader
    except RecursionError:
        raise SettingsError(label, "", "YAML nested too deeply", expected="a vars.yml of sections and keys") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if problem.startswith("duplicate key"):
            raise SettingsError(label, where, problem, expected="each key once in its section") from None
        if "<block" in problem:  # PyYAML's words for a key indented unlike its neighbours
            problem = "the indentation does not match the lines above"
        problem = problem.replace("'<stream end>'", "the end of the file").replace("the node content", "a value")
        if problem.startswith("but ") and getattr(e, "context", None):  # "expected a single document ..., but found ..."
            problem = f"{e.context}, {problem}"
        opened = {"while parsing a flow sequence": "[", "while parsing a flow mapping": "{"}.get(getattr(e, "context", ""))
        cmark = getattr(e, "context_mark", None)
        if opened and cmark and mark and cmark.line != mark.line:
            problem += f", in the '{opened}' opened on line {cmark.line + 1}"
        raise SettingsError(label, where, f"YAML syntax error: {problem}", expected="valid YAML") from None
    return {} if data is None else data


def _build(cls: type, data: Any, prefix: str, label: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise SettingsError(label, prefix.rstrip(".") or "top level", f"wrong type, found {_kind(data)}", got=data,
                            expected="a section of key: value pairs")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    for key in data:
        if key not in known:
            raise SettingsError(label, f"{prefix}{_key_text(key)}", "unknown key" + _suggest(key, list(known), prefix),
                                expected="one of " + ", ".join(known))
    out: dict[str, Any] = {}
    for fname, f in known.items():
        key = f"{prefix}{fname}"
        typ, check = hints[fname], f.metadata.get("check")
        if dataclasses.is_dataclass(typ):
            out[fname] = typ(**_build(typ, {} if data.get(fname) is None else data[fname], key + ".", label))
        elif fname in data:
            out[fname] = _coerce(data[fname], typ, key, label, check)
        elif f.metadata.get("required"):
            raise SettingsError(label, key, "required key is missing", expected=_expect(typ, check))
        # else: the dataclass default applies
    return out


_BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _coerce(value: Any, typ: Any, key: str, label: str, check: Check | None) -> Any:
    origin, shown, hint = typing.get_origin(typ), value, ""
    if value is None and origin in (list, dict):
        value = origin()  # `key:` with nothing after it: an empty list or mapping
    elif isinstance(value, bool) and (typ is str or origin is Literal):
        hint = ": YAML reads unquoted yes/no/on/off as booleans, so quote it if you meant text"
    elif isinstance(value, (int, float, datetime.date)) and not isinstance(value, bool) and typ is str:
        if check in (version_str, size_str, k8s_quantity) and isinstance(value, (int, float)):  # `version: 1.33`
            value = getattr(value, "text", "") or str(value)
        hint = "; quote it if you meant text"
    elif typ is bool and isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        value = _BOOL_WORDS[value.strip().lower()]  # "yes", "off", "True" written as text
    want = {Literal: str, list: list, dict: dict}.get(origin, (int, float) if typ is float else typ)
    if not isinstance(value, want) or (isinstance(value, bool) and typ is not bool):
        problem = "no value given" if value is None else f"wrong type, found {_kind(value)}{hint}"
        raise SettingsError(label, key, problem, got=_NULL if shown is None else shown, expected=_expect(typ, check, value))
    if origin is Literal and value not in typing.get_args(typ):
        raise SettingsError(label, key, "not an allowed value", got=shown, expected=_expect(typ, check))
    if origin is list:
        item_type, item_check = typing.get_args(typ)[0], getattr(check, "item", None)
        value = [_coerce(v, item_type, f"{key}[{i}]", label, item_check) for i, v in enumerate(value)]
    value = float(value) if typ is float else dict(value) if origin is dict else value
    expected = check(value) if check else None
    if expected:
        raise SettingsError(label, key, getattr(check, "problem", "invalid value"), got=shown, expected=expected)
    return value


def _expect(typ: Any, check: Check | None, value: Any = None) -> str:
    """What a key wants, for wrong-type and missing-key messages."""
    base, origin = getattr(check, "inner", check), typing.get_origin(typ)
    if typ is str and base is not None and base(""):
        return str(base(""))
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(typ)))
    if origin is list:
        return "a list" + (f", such as [{value}]" if isinstance(value, (str, int, float)) else "")
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false", dict: "key: value pairs"}
    return getattr(check, "expect", None) or names.get(origin or typ, "a value")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    for typ, text in ((str, "text"), (int, "a whole number"), (float, "a decimal number"), (list, "a list"),
                      (dict, "key: value pairs"), (datetime.date, "a date"), (bytes, "binary data")):
        if isinstance(value, typ):
            return text
    return "nothing" if value is None else f"a {type(value).__name__}"


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) and key.isprintable() else _show(key)


def _suggest(key: Any, here: list[str], prefix: str) -> str:
    """'; did you mean ...?' for a typo, or for a key that belongs in another section."""
    import difflib

    close = difflib.get_close_matches(str(key), here, n=1, cutoff=0.7)
    homes = [prefix + close[0]] if close else [path for path in _key_paths() if path.rpartition(".")[2] == key]
    return f"; did you mean {' or '.join(map(repr, homes))}?" if homes else ""


def _key_paths() -> typing.Iterator[str]:
    """Every key of vars.yml, dotted: deployment, ..., cloud, cloud.name, ..."""
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        if not f.metadata.get("internal"):
            yield f.name
            if dataclasses.is_dataclass(hints[f.name]):
                yield from (f"{f.name}.{g.name}" for g in dataclasses.fields(hints[f.name]))


def _cross_checks(s: Settings, label: str) -> None:
    """Rules between keys, each a one-line SettingsError; the first broken rule is reported."""
    u, h, k, need = s.users, s.hub, s.kubernetes, "required when"
    rules = [  # (broken?, key, problem, got, expected)
        (s.volumes.nodes > s.instances.count, "volumes.nodes", "more volume nodes than instances", s.volumes.nodes,
         f"at most instances.count, which is {s.instances.count}, or 0 for all of them"),
        (u.cpu_guarantee > u.cpu_limit, "users.cpu_guarantee", "guarantee above the limit", u.cpu_guarantee,
         f"at most users.cpu_limit, which is {u.cpu_limit:g}"),
        (_bytes(u.memory_guarantee) > _bytes(u.memory_limit), "users.memory_guarantee", "guarantee above the limit",
         u.memory_guarantee, f"at most users.memory_limit, which is {u.memory_limit}"),
        (u.auth == "ldap" and not u.ldap_server, "users.ldap_server", f"{need} users.auth is ldap", "",
         "the LDAP server's host name, such as ldap.example.edu"),
        (u.auth == "ldap" and not u.ldap_bind_dn_template, "users.ldap_bind_dn_template", f"{need} users.auth is ldap", [],
         "a list of DNs such as ['uid={username},ou=people,o=example']"),
        (u.auth == "custom" and not u.custom_class, "users.custom_class", f"{need} users.auth is custom", "",
         "an authenticator class such as oauthenticator.GitHubOAuthenticator"),
        (u.staff and not u.staff_image, "users.staff_image", f"{need} users.staff names anyone", "", "an image with a pinned tag"),
        (ipaddress.ip_network(k.pod_cidr).overlaps(ipaddress.ip_network(k.service_cidr)), "kubernetes.service_cidr",
         "overlaps kubernetes.pod_cidr", k.service_cidr, f"a network apart from {k.pod_cidr}"),
        (h.https == "letsencrypt" and not h.letsencrypt_email, "hub.letsencrypt_email", f"{need} hub.https is letsencrypt", "",
         "the e-mail Let's Encrypt writes to about expiry"),
        (h.https in ("letsencrypt", "manual") and not h.hosts, "hub.hosts", f"{need} hub.https is {h.https}", [],
         "the hub's DNS names, such as [jupyter.example.edu]"),
        (h.https == "manual" and not h.tls_cert_file, "hub.tls_cert_file", f"{need} hub.https is manual", "", "a file path"),
        (h.https == "manual" and not h.tls_key_file, "hub.tls_key_file", f"{need} hub.https is manual", "", "a file path"),
        (h.https == "secret" and not h.tls_secret, "hub.tls_secret", f"{need} hub.https is secret", "",
         "the name of a kubernetes.io/tls Secret"),
        (h.cull_every > h.cull_timeout, "hub.cull_every", "checks less often than the idle timeout", h.cull_every,
         f"at most hub.cull_timeout, which is {h.cull_timeout}"),
    ]
    for broken, key, problem, got, expected in rules:
        if broken:
            raise SettingsError(label, key, problem, got=got, expected=expected)


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _bytes(qty: str) -> float:
    m = re.match(r"^([0-9.]+)([A-Za-z]*)$", qty)
    assert m, qty
    return float(m.group(1)) * _UNITS[m.group(2)]
