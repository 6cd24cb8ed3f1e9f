"""Validate z2jh values before any deploy: the chart's own schema, then policy rules.

    values = render(settings, secrets)
    problems = check(settings, values)      # [] when helm would accept them and policy holds
    validate(settings, values)              # or: raise the first problem as ValuesError

Schema: the rendered values are merged over the chart defaults the way helm does
(mappings merge, the user's value wins, lists replace) and validated with
jsonschema Draft 7 against the chart's `values.schema.yaml` (copied into
`chart/`, one pair of files per chart version). Each error is mapped back to the
vars.yml key that produced its values path (`KEYS`, longest prefix wins).

Policy: rules the schema cannot express (JupyterHub 5 needs an allow-list or
allow_all; Let's Encrypt needs hosts and an e-mail; manual TLS needs PEM files;
the staff image is pre-pulled; no dummy login on a public hub; ...).

Every problem is a ValuesError whose str() is one line naming the key:
`vars.yml: <key>: <problem> (got ...; expected ...)`. jsonschema is imported
inside the functions that use it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from coursehub.hub.values import (
    MASK,
    ValuesError,
    is_secret,
    pem_problem,
    render,
    shared_pvc_name,
    split_image,
)
from coursehub.settings import Settings

__all__ = [
    "ValuesError", "CHART_DIR", "KEYS", "chart_versions", "chart_defaults", "chart_schema", "merge",
    "values_key", "schema_errors", "policy_errors", "check", "validate", "validated",
]

CHART_DIR = Path(__file__).resolve().parent / "chart"
DUMMY_CLASSES = ("dummy", "jupyterhub.auth.DummyAuthenticator", "dummyauthenticator.DummyAuthenticator")

# values path prefix -> the vars.yml key that writes it (longest matching prefix wins).
KEYS: dict[str, str] = {
    "hub.config.JupyterHub.authenticator_class": "users.auth",
    "hub.config.Authenticator.admin_users": "users.admins",
    "hub.config.Authenticator.allowed_users": "users.allowed",
    "hub.config.Authenticator.allow_all": "users.allow_all",
    "hub.config.Authenticator": "users.allowed",
    "hub.config.LDAPAuthenticator.server_address": "users.ldap_server",
    "hub.config.LDAPAuthenticator.server_port": "users.ldap_port",
    "hub.config.LDAPAuthenticator.tls_strategy": "users.ldap_tls",
    "hub.config.LDAPAuthenticator.bind_dn_template": "users.ldap_bind_dn_template",
    "hub.config.LDAPAuthenticator": "users.auth",
    "hub.config.NativeAuthenticator": "users.auth",
    "hub.config.DummyAuthenticator": "users.auth",
    "hub.config": "users.custom_config",
    "hub.db.pvc.storage": "hub.db_size",
    "hub.db": "hub.db",
    "hub.extraConfig": "users.staff",
    "proxy.service": "kubernetes.load_balancer",
    "proxy.https.hosts": "hub.hosts",
    "proxy.https.letsencrypt.contactEmail": "hub.letsencrypt_email",
    "proxy.https.letsencrypt.acmeServer": "hub.letsencrypt_staging",
    "proxy.https.manual.cert": "hub.tls_cert_file",
    "proxy.https.manual.key": "hub.tls_key_file",
    "proxy.https.secret": "hub.tls_secret",
    "proxy.https": "hub.https",
    "singleuser.image": "users.image",
    "singleuser.defaultUrl": "users.default_url",
    "singleuser.cpu.limit": "users.cpu_limit",
    "singleuser.cpu.guarantee": "users.cpu_guarantee",
    "singleuser.memory.limit": "users.memory_limit",
    "singleuser.memory.guarantee": "users.memory_guarantee",
    "singleuser.storage.capacity": "users.storage",
    "singleuser.storage.dynamic.storageClass": "users.storage_class",
    "singleuser.storage.extraVolumes": "content.shared_volume",
    "singleuser.storage.extraVolumeMounts": "content.shared_mount",
    "singleuser.lifecycleHooks": "content.repo",
    "prePuller.extraImages": "users.staff_image",
    "cull.timeout": "hub.cull_timeout",
    "cull.every": "hub.cull_every",
}


# ----------------------------------------------------------------------------- chart data
def chart_versions() -> list[str]:
    """Chart versions with a bundled defaults + schema pair."""
    return sorted(p.name[len("values-"):-len(".yaml")] for p in CHART_DIR.glob("values-*.yaml"))


@functools.lru_cache(maxsize=4)
def _load(name: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(CHART_DIR / name, encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)  # noqa: S506 - a safe loader


def _version_problem(settings: Settings) -> ValuesError | None:
    v = settings.hub.chart_version
    if (CHART_DIR / f"values-{v}.yaml").is_file() and (CHART_DIR / f"values.schema-{v}.yaml").is_file():
        return None
    return ValuesError("hub.chart_version", "no bundled chart schema for this version", got=v,
                       expected="one of " + ", ".join(chart_versions()) + " (add its files to coursehub/hub/chart/)",
                       file=settings.path)


def chart_defaults(version: str = "4.4.0") -> dict[str, Any]:
    """The chart's values.yaml for `version` (a fresh copy)."""
    return copy.deepcopy(_load(f"values-{version}.yaml"))


def chart_schema(version: str = "4.4.0") -> dict[str, Any]:
    """The chart's values.schema.yaml for `version` (shared; do not modify)."""
    return _load(f"values.schema-{version}.yaml")


@functools.lru_cache(maxsize=4)
def _validator(version: str) -> Any:
    import jsonschema

    return jsonschema.Draft7Validator(chart_schema(version))


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge of `over` onto `base`: mappings merge recursively, `over` wins, lists replace."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------- schema
def values_key(path: Iterable[Any], settings: Settings) -> str:
    """The vars.yml key behind a values path such as ('singleuser', 'cpu', 'limit'); '' when unknown."""
    parts = [str(p) for p in path]
    table = dict(KEYS)
    if settings.users.auth == "custom":
        section = settings.users.custom_class.rpartition(".")[2]
        table["hub.config.JupyterHub.authenticator_class"] = "users.custom_class"
        table[f"hub.config.{section}"] = "users.custom_config" if section[:1].isupper() else "users.custom_class"
    for n in range(len(parts), 0, -1):
        key = table.get(".".join(parts[:n]))
        if key:
            return key
    return ""


_TYPES = {"number": "a number", "integer": "a whole number", "string": "text", "object": "a mapping",
          "array": "a list", "boolean": "true or false", "null": "null"}


def _expected(error: Any) -> str:
    v, arg = error.validator, error.validator_value
    if v == "type":
        return " or ".join(_TYPES.get(t, t) for t in ([arg] if isinstance(arg, str) else arg))
    if v == "enum":
        return "one of " + ", ".join(str(x) for x in arg if x not in (None, ""))
    if v == "required":
        return "the keys " + ", ".join(arg)
    if v == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        pattern = list(error.schema.get("patternProperties", {}))
        text = ("one of " + ", ".join(known)) if 0 < len(known) <= 8 else "a key the chart defines"
        return text + (f", or a name matching {pattern[0]}" if pattern else "")
    return " ".join(error.message.split())[:100]


def _unexpected(error: Any) -> list[str]:
    """The keys an additionalProperties error complains about."""
    import re

    props = error.schema.get("properties", {})
    patterns = list(error.schema.get("patternProperties", {}))
    inst = error.instance if isinstance(error.instance, Mapping) else {}
    return [str(k) for k in inst if k not in props and not any(re.search(p, str(k)) for p in patterns)]


class _Kind:
    """Shown as-is (unquoted) in an error's "got": a description instead of a value."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


def _safe_got(path: list[str], value: Any) -> Any:
    if isinstance(value, (Mapping, list)):
        return _Kind("a mapping" if isinstance(value, Mapping) else "a list")
    if isinstance(value, str) and is_secret(path):
        return MASK
    return value


def schema_errors(settings: Settings, values: Mapping[str, Any]) -> list[ValuesError]:
    """Schema problems of `values` merged over the chart defaults, each naming its vars.yml key."""
    bad = _version_problem(settings)
    if bad:
        return [bad]
    version = settings.hub.chart_version
    merged = merge(chart_defaults(version), values)
    out = []
    errors = sorted(_validator(version).iter_errors(merged), key=lambda e: [str(p) for p in e.absolute_path])
    for e in errors:
        path = [str(p) for p in e.absolute_path]
        got: Any = _safe_got(path, e.instance)
        if e.validator == "additionalProperties":
            extra = _unexpected(e) or ["?"]
            path, got = path + [extra[0]], extra[0]
            problem = f"z2jh {version} schema has no key {'.'.join(path)}"
        else:
            problem = f"z2jh {version} schema rejects {'.'.join(path) or 'the values'}"
        key = values_key(path, settings)
        out.append(ValuesError(key, problem, got=got, expected=_expected(e), file=settings.path))
    return out


# ----------------------------------------------------------------------------- policy
def _get(values: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    cur: Any = values
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return default
        cur = cur[part]
    return cur


def _allows_someone(settings: Settings, values: Mapping[str, Any]) -> bool:
    if _get(values, "hub.config.Authenticator.allowed_users") or _get(values, "hub.config.Authenticator.allow_all"):
        return True
    if settings.users.auth == "custom":  # e.g. allowed_organizations, allowed_groups, allow_existing_users
        section = settings.users.custom_class.rpartition(".")[2]
        traits = _get(values, f"hub.config.{section}", {}) or {}
        return isinstance(traits, Mapping) and any(str(k).startswith("allow") and traits[k] for k in traits)
    return False


def policy_errors(settings: Settings, values: Mapping[str, Any]) -> list[ValuesError]:
    """Rules the chart schema cannot express, checked on `values` merged over the chart defaults."""
    bad = _version_problem(settings)
    if bad:
        return [bad]
    v = merge(chart_defaults(settings.hub.chart_version), values)
    f = settings.path
    out: list[ValuesError] = []

    def err(key: str, problem: str, got: Any = None, expected: str = "") -> None:
        out.append(ValuesError(key, problem, got=got, expected=expected, file=f))

    # Who may log in: JupyterHub 5 refuses everyone without an allow rule.
    if not _allows_someone(settings, v):
        err("users.allowed", "JupyterHub 5 lets nobody log in without an allow-list", got=[],
            expected="user names in users.allowed, or users.allow_all: true")
    auth_class = _get(v, "hub.config.JupyterHub.authenticator_class")
    https = bool(_get(v, "proxy.https.enabled"))
    if auth_class in DUMMY_CLASSES and https:
        err("users.auth", "dummy login (one shared password) on a public hub", got="dummy",
            expected="ldap, native or custom when hub.https is not none (dummy is for the lab)")

    # HTTPS
    kind = _get(v, "proxy.https.type") or "letsencrypt"
    if https:
        if kind in ("letsencrypt", "manual") and not _get(v, "proxy.https.hosts"):
            err("hub.hosts", f"HTTPS ({kind}) needs the hub's DNS names", got=[], expected="e.g. [jupyter.example.edu]")
        if kind == "letsencrypt" and not _get(v, "proxy.https.letsencrypt.contactEmail"):
            err("hub.letsencrypt_email", "Let's Encrypt needs a contact e-mail", got="",
                expected="the e-mail Let's Encrypt writes to about expiry")
        if kind == "manual":
            for part, key in (("cert", "hub.tls_cert_file"), ("key", "hub.tls_key_file")):
                problem = pem_problem(part, _get(v, f"proxy.https.manual.{part}") or "")
                if problem:
                    err(key, problem, got=getattr(settings.hub, key.rpartition(".")[2]),
                        expected="a PEM certificate chain" if part == "cert" else "an unencrypted PEM private key")
        if kind == "secret" and not _get(v, "proxy.https.secret.name"):
            err("hub.tls_secret", "HTTPS from a Secret needs its name", got="",
                expected="the name of a kubernetes.io/tls Secret")

    # Images: pinned, and the staff image pulled before anyone waits for it.
    tag = _get(v, "singleuser.image.tag")
    if tag in (None, "", "latest"):
        err("users.image", "image tag not pinned", got=settings.users.image, expected="a fixed tag such as 2025-10-20")
    if settings.users.staff and settings.users.staff_image:
        sname, stag = split_image(settings.users.staff_image)
        pulled = _get(v, "prePuller.extraImages", {}) or {}
        if not any(isinstance(i, Mapping) and (i.get("name"), i.get("tag")) == (sname, stag) for i in pulled.values()):
            err("users.staff_image", "not in prePuller.extraImages (staff would wait for the pull)",
                got=settings.users.staff_image, expected="the staff image pre-pulled on every node")
        if stag == "latest":
            err("users.staff_image", "image tag not pinned", got=settings.users.staff_image,
                expected="a fixed tag such as 2025-10-20")
        hooks = _get(v, "hub.extraConfig", {}) or {}
        if not any(settings.users.staff_image in str(code) for code in hooks.values()):
            err("users.staff", "no spawn hook gives users.staff their image", got=settings.users.staff,
                expected="hub.extraConfig to set spawner.image for them")

    # Storage and database
    if settings.content.shared_volume:
        mounts = _get(v, "singleuser.storage.extraVolumeMounts") or []
        if not any(isinstance(m, Mapping) and m.get("mountPath") == settings.content.shared_mount for m in mounts):
            err("content.shared_volume", "shared volume not mounted", got=shared_pvc_name(settings),
                expected=f"a mount at content.shared_mount ({settings.content.shared_mount})")
        if settings.content.shared_mount.rstrip("/") == str(_get(v, "singleuser.storage.homeMountPath")).rstrip("/"):
            err("content.shared_mount", "would hide every user's home", got=settings.content.shared_mount,
                expected="a folder other than the home mount (/home/jovyan), such as /home/shared")
    db = _get(v, "hub.db.type")
    if db in ("mysql", "postgres", "other") and not _get(v, "hub.db.url"):
        err("hub.db", f"{db} needs a database URL, and vars.yml has no key for one yet", got=db,
            expected="sqlite-pvc or sqlite-memory")
    return out


# ----------------------------------------------------------------------------- entry points
def check(settings: Settings, values: Mapping[str, Any]) -> list[ValuesError]:
    """All problems: schema errors first, then policy errors. [] means ready to deploy."""
    bad = _version_problem(settings)
    if bad:
        return [bad]
    return schema_errors(settings, values) + policy_errors(settings, values)


def validate(settings: Settings, values: Mapping[str, Any]) -> None:
    """Raise the first problem check() finds as a ValuesError."""
    problems = check(settings, values)
    if problems:
        raise problems[0]


def validated(settings: Settings, secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Render the values for `settings` and validate them (schema + policy); ValuesError if anything is wrong."""
    values = render(settings, secrets)
    validate(settings, values)
    return values
