"""Settings -> z2jh chart values, rendered with Jinja2 from `templates/z2jh-values.yaml.j2`.

    values = render(settings, secrets)        # a plain dict, ready for validate.check()
    write_values(path, values)                # the file helm reads: mode 0600, atomic
    print(to_yaml(redact(values, secrets)))   # what an admin may see

The template prints every input through a YAML filter (one-line, escaped), so no
value from vars.yml can add keys or break the indentation; the text is parsed
again with duplicate keys refused. Only the manual TLS files are read here, at
render time; they are named in vars.yml, never copied into it. Their key is a
secret, as are the dummy password and anything `redact()` recognises.

Heavy imports (jinja2, yaml) happen inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from coursehub.settings import Settings, SettingsError

__all__ = [
    "ValuesError", "TEMPLATE", "MASK", "render", "context", "to_yaml", "redact", "write_values",
    "split_image", "shared_pvc_name", "read_pem", "pem_problem", "is_secret", "LE_STAGING", "LE_PRODUCTION",
]

TEMPLATE = Path(__file__).resolve().parents[2] / "templates" / "z2jh-values.yaml.j2"
MASK = "***"
LE_PRODUCTION = "https://acme-v02.api.letsencrypt.org/directory"
LE_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
AUTH_CLASSES = {
    "ldap": "ldapauthenticator.LDAPAuthenticator",
    "native": "nativeauthenticator.NativeAuthenticator",
    "dummy": "jupyterhub.auth.DummyAuthenticator",
}
# hub.config sections the template writes itself; users.custom_config may not replace them.
OWN_SECTIONS = ("JupyterHub", "Authenticator")
# Values paths that hold secrets, and leaf key names that do wherever they appear
# (hub.config.*.password, client_secret, proxy.secretToken, hub.cookieSecret, ...).
SECRET_PATHS = frozenset({"proxy.https.manual.key", "hub.db.url", "hub.db.password", "imagePullSecret.password"})
SECRET_KEY = re.compile(r"(password|passwd|secret|token|private_?key|api_?key)", re.I)
MAX_PEM_BYTES = 1 << 20


class ValuesError(SettingsError):
    """A vars.yml setting that cannot become valid z2jh values; str() is one line:

    `vars.yml: <key>: <problem> (got ...; expected ...)`, as for SettingsError.
    """

    def __init__(self, key: str, problem: str, got: Any = None, expected: str = "", file: str = "vars.yml"):
        super().__init__(file, key, problem, got, expected)


# ----------------------------------------------------------------------------- small helpers
def split_image(ref: str) -> tuple[str, str]:
    """'registry:5000/org/img:tag' -> ('registry:5000/org/img', 'tag'): the last ':' after the last '/'."""
    head, slash, last = ref.rpartition("/")
    name, colon, tag = last.rpartition(":")
    if not colon or not name or not tag:
        raise ValueError(f"image {ref!r} has no tag")
    return head + slash + name, tag


def shared_pvc_name(settings: Settings) -> str:
    """The RWX PersistentVolumeClaim every user mounts (the deploy step creates it)."""
    return f"{settings.deployment}-shared"


_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")
_KEY = re.compile(r"-----BEGIN ((?:RSA |EC )?)PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\s]+-----END \1PRIVATE KEY-----")


def pem_problem(kind: str, text: str) -> str | None:
    """None when `text` is a usable PEM `cert` chain or unencrypted `key`, else what is wrong."""
    if kind == "cert":
        return None if _CERT.search(text) else "not a PEM certificate"
    if "ENCRYPTED" in text:
        return "the private key is encrypted"
    return None if _KEY.search(text) else "not a PEM private key"


_EXPECT_PEM = {"cert": "a readable PEM certificate chain (-----BEGIN CERTIFICATE-----)",
               "key": "a readable, unencrypted PEM private key (-----BEGIN PRIVATE KEY-----)"}


def read_pem(settings: Settings, key: str) -> str:
    """Read hub.tls_cert_file or hub.tls_key_file (`key` is the vars.yml key); ValuesError if unusable."""
    kind = "cert" if key.endswith("cert_file") else "key"
    name = getattr(settings.hub, key.rpartition(".")[2])
    expected = _EXPECT_PEM[kind]
    if not name:
        raise ValuesError(key, "required when hub.https is manual", got="", expected=expected, file=settings.path)
    path = settings.resolve(name)
    try:
        if path.stat().st_size > MAX_PEM_BYTES:
            raise ValuesError(key, "file too large for a PEM file", got=name, expected=expected, file=settings.path)
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ValuesError(key, "file not found", got=name, expected=expected, file=settings.path) from None
    except IsADirectoryError:
        raise ValuesError(key, "a folder, not a file", got=name, expected=expected, file=settings.path) from None
    except PermissionError:
        raise ValuesError(key, "cannot read the file (permission denied)", got=name, expected=expected,
                          file=settings.path) from None
    except (UnicodeDecodeError, OSError):
        raise ValuesError(key, "cannot read the file as PEM text", got=name, expected=expected,
                          file=settings.path) from None
    problem = pem_problem(kind, text)
    if problem:
        raise ValuesError(key, problem, got=name, expected=expected, file=settings.path)
    return text


def is_secret(path: Sequence[Any]) -> bool:
    """Whether the value at this values path (e.g. ('proxy', 'https', 'manual', 'key')) is a secret."""
    parts = [str(p) for p in path if not isinstance(p, int)]
    return ".".join(parts) in SECRET_PATHS or bool(parts and SECRET_KEY.search(parts[-1]))


# ----------------------------------------------------------------------------- filters
def yaml_inline(value: Any) -> str:
    """One line of YAML for any plain value; strings always double-quoted and escaped."""
    import yaml

    text = yaml.dump(value, Dumper=_dumpers()[0], default_flow_style=True, width=float("inf"),
                     allow_unicode=False, sort_keys=False)
    text = text.removesuffix("\n...\n").rstrip("\n")
    if "\n" in text:  # cannot happen with the dumper above; a guard for the template's safety
        raise ValueError("inline YAML spans lines")
    return text


def py_literal(value: Any) -> str:
    """A one-line Python literal for text or a list of texts (ascii(): every odd character escaped)."""
    if isinstance(value, str):
        return ascii(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return "[" + ", ".join(ascii(v) for v in value) + "]"
    raise TypeError(f"py filter takes text or a list of texts, not {type(value).__name__}")


@functools.lru_cache(maxsize=1)
def _dumpers() -> tuple[type, type]:
    """PyYAML dumpers: Inline (strings double-quoted) and Block (multi-line strings as |)."""
    import yaml

    class Inline(yaml.SafeDumper):
        pass

    class Block(yaml.SafeDumper):
        pass

    def quoted(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"')

    def literal(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)

    Inline.add_representer(str, quoted)
    Block.add_representer(str, literal)
    return Inline, Block


def parse(text: str) -> dict[str, Any]:
    """Parse rendered YAML; duplicate keys are an error (they would silently drop settings)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in rendered values (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return loader.construct_mapping(node, deep=True)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    data = yaml.load(text, Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError("rendered values are not a mapping")
    return data


# ----------------------------------------------------------------------------- render
def _custom(settings: Settings) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """users.custom_config split into the class's own traits and other class sections.

    Keys that start with a capital letter name another Configurable class
    (e.g. `OAuthenticator: {...}`) and become hub.config.<Key>; all others are
    traits of users.custom_class and go under hub.config.<ClassName>.
    """
    u = settings.users
    section = u.custom_class.rpartition(".")[2]
    if section in OWN_SECTIONS:
        raise ValuesError("users.custom_class", f"hub.config.{section} is written from users.*", got=u.custom_class,
                          expected="an authenticator class such as oauthenticator.GitHubOAuthenticator",
                          file=settings.path)
    traits: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for k, v in u.custom_config.items():
        (sections if isinstance(k, str) and k[:1].isupper() else traits)[k] = v
    for name in OWN_SECTIONS:
        if name in sections:
            raise ValuesError("users.custom_config", f"sets hub.config.{name}, which CourseHub writes", got=name,
                              expected="users.admins, users.allowed and users.allow_all for those",
                              file=settings.path)
    if section in sections:  # `GitHubOAuthenticator: {...}` spelled out: merge with the bare traits
        body = sections.pop(section)
        traits = {**body, **traits} if isinstance(body, dict) else body
    return section, traits, sections


def context(settings: Settings, secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The template's variables (see the header of the template)."""
    secrets = secrets or {}
    s, u = settings, settings.users
    name, tag = split_image(u.image)
    ctx: dict[str, Any] = {
        "s": s,
        "auth_class": u.custom_class if u.auth == "custom" else AUTH_CLASSES[u.auth],
        "auth_section": "", "custom_traits": {}, "custom_sections": {}, "dummy_password": "",
        "tls": None,
        "acme_server": LE_STAGING if s.hub.letsencrypt_staging else LE_PRODUCTION,
        "service_type": "NodePort" if s.kubernetes.load_balancer == "none" else "LoadBalancer",
        "image": {"name": name, "tag": tag, "ref": u.image},
        "staff": sorted({n.lower() for n in u.staff}),
        "staff_image": None,
        "shared_pvc": shared_pvc_name(s),
    }
    if u.auth == "custom":
        ctx["auth_section"], ctx["custom_traits"], ctx["custom_sections"] = _custom(s)
    if u.auth == "dummy":
        ctx["dummy_password"] = secrets.get("dummy_password", "")
        if not ctx["dummy_password"]:
            raise ValuesError("users.auth", "dummy needs the generated secret dummy_password", got=u.auth,
                              expected="inventory/secrets.yml to hold dummy_password", file=s.path)
    if s.hub.https == "manual":
        ctx["tls"] = {"cert": read_pem(s, "hub.tls_cert_file"), "key": read_pem(s, "hub.tls_key_file")}
    if u.staff and u.staff_image:
        sname, stag = split_image(u.staff_image)
        ctx["staff_image"] = {"name": sname, "tag": stag, "ref": u.staff_image}
    return ctx


def _strict(fn: Any, undefined: type) -> Any:
    """A filter that fails on an undefined variable (StrictUndefined alone lets filters receive it)."""

    def inner(value: Any) -> str:
        if isinstance(value, undefined):
            value._fail_with_undefined_error()
        return fn(value)

    return inner


def render(settings: Settings, secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The z2jh values (only what differs from the chart defaults) for these Settings.

    `secrets` holds generated secrets by name (here: dummy_password). Raises
    ValuesError for a setting that cannot be rendered (unreadable TLS file, ...).
    """
    text = _template().render(**context(settings, secrets))
    return parse(text)


@functools.lru_cache(maxsize=1)
def _template() -> Any:
    """The compiled template (StrictUndefined, escaping filters), built once per process."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE.parent)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML; values are escaped by the yaml filter
    )
    for name, fn in (("yaml", yaml_inline), ("py", py_literal)):
        env.filters[name] = _strict(fn, jinja2.Undefined)
    return env.get_template(TEMPLATE.name)


# ----------------------------------------------------------------------------- output
def to_yaml(values: Mapping[str, Any]) -> str:
    """Block YAML, keys in template order; multi-line text (code, PEM) as literal blocks."""
    import yaml

    return yaml.dump(dict(values), Dumper=_dumpers()[1], sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=120)


def redact(values: Any, secrets: Mapping[str, str] | None = None) -> Any:
    """A copy of `values` with every secret leaf replaced by "***".

    Secret: a text at a secret path (is_secret(): proxy.https.manual.key,
    hub.db.url, any key named like password, secret, token, private_key, api_key:
    hub.config.*.password, client_secret, proxy.secretToken, hub.cookieSecret, ...),
    a text equal to a known secret, and any known secret of 8+ characters inside
    a longer text. The input is not changed.
    """
    known = [v for v in (secrets or {}).values() if isinstance(v, str) and v]

    def text(s: str) -> str:
        if s in known:
            return MASK
        for k in known:
            if len(k) >= 8 and k in s:
                s = s.replace(k, MASK)
        return s

    def walk(v: Any, path: tuple[Any, ...]) -> Any:
        if isinstance(v, Mapping):
            return {k: walk(x, (*path, k)) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, (*path, i)) for i, x in enumerate(v)]
        if isinstance(v, str):
            return MASK if v and is_secret(path) else text(v)
        return v

    return walk(values, ())


def _token() -> str:
    """A short random suffix for temporary file names."""
    import secrets

    return secrets.token_hex(4)


def write_values(path: str | os.PathLike[str], values: Mapping[str, Any]) -> Path:
    """Write the values file for helm: created 0600 (never readable by others, not even briefly), atomic."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{_token()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("# z2jh values generated by CourseHub from vars.yml; holds secrets (mode 0600). Do not edit.\n")
            f.write(to_yaml(values))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p
