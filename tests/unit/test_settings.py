"""vars.yml -> Settings: the committed file, every documented default, and bad inputs with their exact messages.

A bad input is the committed vars.yml with one change; its message must be the exact
one line `vars.yml: <key>: <problem> (got <value>; expected <what>)`.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from coursehub.settings import REQUIRED, Settings, SettingsError, from_dict, inventory_dir, load, vars_path

REPO = Path(__file__).resolve().parents[2]
DELETE: Any = object()

# Keys whose value in the committed vars.yml is an example, not the code default:
# the three required keys, and the two LDAP keys that are required when users.auth is ldap.
EXAMPLES_NOT_DEFAULTS = {
    "instances.flavor",
    "instances.image",
    "network.admin_cidr",
    "users.ldap_server",
    "users.ldap_bind_dn_template",
}
REQUIRED_KEYS = {"instances.flavor", "instances.image", "network.admin_cidr"}
MINIMAL = {  # only what has no default (the ldap keys: because users.auth defaults to ldap)
    "instances": {"flavor": "m1.small", "image": "Debian 12"},
    "network": {"admin_cidr": "198.51.100.0/24"},
    "users": {"ldap_server": "ldap.uni.example", "ldap_bind_dn_template": ["uid={username},o=uni"]},
}


def set_key(data: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """data with data[a][b] = value for dotted "a.b" (sections made as needed; DELETE removes it)."""
    *sections, last = dotted.split(".")
    node = data
    for name in sections:
        node = node.setdefault(name, {})
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value
    return data


def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1} (one level of sections, as in vars.yml)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, dict) and not prefix:
            out.update(flat(v, f"{k}."))
        else:
            out[prefix + k] = v
    return out


def schema() -> dict[str, dataclasses.Field[Any]]:
    """Every key of the schema, dotted ("instances.count"), to its dataclass field."""
    out: dict[str, dataclasses.Field[Any]] = {}
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        sub = getattr(defaults, f.name)
        if dataclasses.is_dataclass(sub):
            out |= {f"{f.name}.{g.name}": g for g in dataclasses.fields(sub)}
        elif not f.metadata.get("internal"):
            out[f.name] = f
    return out


def error_of(data: Any) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        from_dict(data)
    return info.value


# ----------------------------------------------------------------------------- the good file
def test_committed_vars_loads() -> None:
    s = load(REPO / "vars.yml")
    assert s.deployment == "coursehub" and s.topology == "cluster"
    assert s.instances.flavor == "m3.large" and s.instances.count == 3
    assert s.network.admin_cidr == "127.0.0.1/32"
    assert s.kubernetes.version == "1.33.5" and s.hub.chart_version == "4.4.0"
    assert s.users.ldap_bind_dn_template == ["uid={username},ou=people,o=example"]
    assert s.path == str(REPO / "vars.yml")


def test_vars_yml_documents_every_key(committed_vars: dict[str, Any]) -> None:
    assert set(flat(committed_vars)) == set(schema())


def test_minimal_file_gives_every_documented_default(committed_vars: dict[str, Any], write_vars: Any) -> None:
    loaded = load(write_vars(MINIMAL))
    differ = set()
    for key, documented in flat(committed_vars).items():
        section, _, name = key.rpartition(".")
        default = getattr(getattr(loaded, section) if section else loaded, name)
        if default != documented or type(default) is not type(documented):
            differ.add(key)
    assert differ == EXAMPLES_NOT_DEFAULTS


def test_examples_are_not_code_defaults() -> None:
    s = Settings()  # what the dataclasses hold when vars.yml says nothing
    assert (s.instances.flavor, s.instances.image, s.network.admin_cidr) == ("", "", "")
    assert s.users.ldap_server == "" and s.users.ldap_bind_dn_template == []
    assert repr(REQUIRED) == "REQUIRED"


def test_required_keys_are_the_three() -> None:
    assert {key for key, f in schema().items() if f.metadata.get("required")} == REQUIRED_KEYS


def test_only_required_keys_needs_ldap_or_another_auth() -> None:
    three = {"instances": dict(MINIMAL["instances"]), "network": dict(MINIMAL["network"])}
    assert str(error_of(three)) == ("vars.yml: users.ldap_server: required when users.auth is ldap "
                                    "(got ''; expected the LDAP server's host name, such as ldap.example.edu)")
    s = from_dict({**three, "users": {"auth": "native"}})
    assert s.users.auth == "native" and s.users.ldap_server == ""


def test_lists_are_fresh_per_instance() -> None:
    a, b = from_dict(MINIMAL), from_dict(MINIMAL)
    a.hub.hosts.append("x.example.edu")
    assert b.hub.hosts == [] and Settings().hub.hosts == []


# ----------------------------------------------------------------------------- accepted forms
MINIMAL_YAML = {  # MINIMAL as YAML snippets, so a test can set one key exactly as an admin would write it
    "instances": {"flavor": "m1.small", "image": "Debian 12"},
    "network": {"admin_cidr": "198.51.100.0/24"},
    "users": {"ldap_server": "ldap.uni.example", "ldap_bind_dn_template": "['uid={username},o=uni']"},
}


def yaml_with(key: str, raw: str) -> str:
    """MINIMAL as vars.yml text with `key: raw` written verbatim ("hosts" alone: the section itself)."""
    sections: dict[str, Any] = {k: dict(v) for k, v in MINIMAL_YAML.items()}
    section, _, name = key.partition(".")
    if name:
        sections.setdefault(section, {})[name] = raw
    else:
        sections[section] = raw
    lines = []
    for sec, body in sections.items():
        lines.append(f"{sec}: {body}" if isinstance(body, str) else f"{sec}:")
        lines += [f"  {k}: {v}" for k, v in body.items()] if isinstance(body, dict) else []
    return "\n".join(lines) + "\n"


DIGEST = "registry.example.edu:5000/course/img@sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("key", "raw", "value"),
    [
        ("kubernetes.version", "1.33", "1.33"),  # YAML reads a float: its text is kept
        ("kubernetes.version", "1.30", "1.30"),  # not "1.3"
        ("hub.chart_version", "4.4", "4.4"),
        ("hosts.log_max_size", "100", "100"),
        ("volumes.enabled", "'no'", False),  # quoted yes/no/on/off are read as booleans
        ("volumes.enabled", "'Yes'", True),
        ("volumes.enabled", "off", False),
        ("users.cpu_limit", "2", 2.0),
        ("hub.hosts", "", []),  # `key:` with nothing: an empty list
        ("hosts", "", []),  # an empty section: all defaults (checked on hosts.packages)
        ("users.image", DIGEST, DIGEST),
        ("kubernetes.lb_addresses", "['10.0.0.200 - 10.0.0.220', 10.0.1.0/28]", ["10.0.0.200 - 10.0.0.220", "10.0.1.0/28"]),
        ("network.admin_cidr", "'2001:db8::/32'", "2001:db8::/32"),
        ("users.ldap_server", "10.1.2.3", "10.1.2.3"),
        ("network.proxy", "http://wwwproxy.example.edu:8000", "http://wwwproxy.example.edu:8000"),
        ("hosts.packages", "[htop, 'jq=1.7.1-3build1']", ["htop", "jq=1.7.1-3build1"]),
        ("hub.hosts", "[jupyter.example.edu, Hub.Example.EDU]", ["jupyter.example.edu", "Hub.Example.EDU"]),
        ("users.admins", "[alice, b.smith@uni.example, _svc]", ["alice", "b.smith@uni.example", "_svc"]),
    ],
)
def test_accepted_forms(key: str, raw: str, value: Any, write_vars: Any) -> None:
    s = load(write_vars(yaml_with(key, raw)))
    got = getattr(getattr(s, key.partition(".")[0]), key.partition(".")[2] or "packages")
    assert got == value and type(got) is type(value)


# ----------------------------------------------------------------------------- bad inputs
TAIL_TOP = "expected one of deployment, topology, parallel, cloud, instances, volumes, network, hosts, storage, kubernetes, hub, users, content, lab)"
TAIL_INSTANCES = ("expected one of count, flavor, image, user, availability_zone, network, keypair, public_key_file, "
                  "private_key_file, extra_security_groups)")
SLUG = "expected lower-case letters, digits and '-', 2-32 long, starting with a letter)"
SIZE = "expected a size with a unit, such as 512Mi, 4G or 10Gi)"
PUBLIC_PORT = "expected a TCP port from 1 to 65535 other than 22, which only network.admin_cidr may reach)"
URL = "expected an http:// or https:// URL such as http://proxy.example.edu:3128)"
HOST = "expected a host name or IP address, without scheme or port)"
PINNED = "expected an image with a pinned tag other than latest, such as quay.io/jupyter/scipy-notebook:2025-10-20)"
YAML_BOOL = "YAML reads unquoted yes/no/on/off as booleans, so quote it if you meant text"
HTTPS = "expected one of none, letsencrypt, manual, secret)"
HUB_HOSTS = {"hub.hosts": ["jupyter.example.edu"]}

# (id, changes to the committed vars.yml, the exact message)
BAD: list[tuple[str, dict[str, Any], str]] = [
    # unknown keys
    ("unknown top-level key", {"cours": 1}, f"vars.yml: cours: unknown key ({TAIL_TOP}"),
    ("unknown nested key, did you mean", {"instances.cuont": 3},
     f"vars.yml: instances.cuont: unknown key; did you mean 'instances.count'? ({TAIL_INSTANCES}"),
    ("key in the wrong section", {"instances.admin_cidr": "10.0.0.0/8"},
     f"vars.yml: instances.admin_cidr: unknown key; did you mean 'network.admin_cidr'? ({TAIL_INSTANCES}"),
    ("section key at top level", {"nodes": 2},
     f"vars.yml: nodes: unknown key; did you mean 'volumes.nodes' or 'lab.nodes'? ({TAIL_TOP}"),
    # wrong types
    ("str for int", {"instances.count": "3"},
     "vars.yml: instances.count: wrong type, found text (got '3'; expected a whole number from 1 to 500)"),
    ("int for bool", {"volumes.enabled": 1},
     "vars.yml: volumes.enabled: wrong type, found a whole number (got 1; expected true or false)"),
    ("text not a boolean", {"volumes.enabled": "maybe"},
     "vars.yml: volumes.enabled: wrong type, found text (got 'maybe'; expected true or false)"),
    ("list for str", {"network.proxy": ["http://proxy.example.edu:3128"]},
     f"vars.yml: network.proxy: wrong type, found a list (got ['http://proxy.example.edu:3128']; {URL}"),
    ("mapping for list", {"network.public_ports": {"http": 80}},
     "vars.yml: network.public_ports: wrong type, found key: value pairs (got {'http': 80}; expected a list)"),
    ("text for list", {"hub.hosts": "jupyter.example.edu"},
     "vars.yml: hub.hosts: wrong type, found text (got 'jupyter.example.edu'; expected a list, such as [jupyter.example.edu])"),
    ("bool for int", {"cloud.retries": True},
     "vars.yml: cloud.retries: wrong type, found true/false (got true; expected a whole number from 0 to 10)"),
    ("float for int", {"instances.count": 3.5},
     "vars.yml: instances.count: wrong type, found a decimal number (got 3.5; expected a whole number from 1 to 500)"),
    ("str for float", {"users.cpu_limit": "1"},
     "vars.yml: users.cpu_limit: wrong type, found text (got '1'; expected a number from 0.1 to 256)"),
    ("number for a name", {"instances.flavor": 2},
     "vars.yml: instances.flavor: wrong type, found a whole number; quote it if you meant text "
     "(got 2; expected a flavor name such as m3.large)"),
    ("list for mapping", {"users.custom_config": ["a"]},
     "vars.yml: users.custom_config: wrong type, found a list (got ['a']; expected key: value pairs)"),
    ("no value", {"instances.count": None},
     "vars.yml: instances.count: no value given (got nothing; expected a whole number from 1 to 500)"),
    ("non-mapping section", {"cloud": 5},
     "vars.yml: cloud: wrong type, found a whole number (got 5; expected a section of key: value pairs)"),
    # out of range
    ("count 0", {"instances.count": 0}, "vars.yml: instances.count: out of range (got 0; expected a whole number from 1 to 500)"),
    ("count 501", {"instances.count": 501},
     "vars.yml: instances.count: out of range (got 501; expected a whole number from 1 to 500)"),
    ("parallel 0", {"parallel": 0}, "vars.yml: parallel: out of range (got 0; expected a whole number from 1 to 256)"),
    ("api_timeout 0", {"cloud.api_timeout": 0},
     "vars.yml: cloud.api_timeout: out of range (got 0; expected a whole number from 1 to 3600)"),
    ("cpu_limit 0", {"users.cpu_limit": 0}, "vars.yml: users.cpu_limit: out of range (got 0; expected a number from 0.1 to 256)"),
    ("disk_free_percent 95", {"hosts.disk_free_percent": 95},
     "vars.yml: hosts.disk_free_percent: out of range (got 95; expected a whole number from 1 to 90)"),
    ("cull_every 10", {"hub.cull_every": 10}, "vars.yml: hub.cull_every: out of range (got 10; expected a whole number from 30 to 86400)"),
    # CIDRs and address ranges
    ("cidr host bits set", {"network.admin_cidr": "10.0.0.1/8"},
     "vars.yml: network.admin_cidr: invalid value (got '10.0.0.1/8'; expected the network address 10.0.0.0/8, with the host bits zero)"),
    ("cidr garbage", {"network.admin_cidr": "campus"},
     "vars.yml: network.admin_cidr: invalid value (got 'campus'; expected your campus or VPN range such as 128.250.0.0/16)"),
    ("admin cidr is the internet", {"network.admin_cidr": "0.0.0.0/0"},
     "vars.yml: network.admin_cidr: invalid value (got '0.0.0.0/0'; "
     "expected your campus or VPN range such as 128.250.0.0/16, not the whole internet)"),
    ("cidr prefix too long", {"kubernetes.pod_cidr": "10.0.0.0/33"},
     "vars.yml: kubernetes.pod_cidr: invalid value (got '10.0.0.0/33'; expected a network such as 203.0.113.0/24)"),
    ("lb range backwards", {"kubernetes.lb_addresses": ["10.0.0.9-10.0.0.1"]},
     "vars.yml: kubernetes.lb_addresses[0]: invalid value (got '10.0.0.9-10.0.0.1'; expected a CIDR or a range such as 10.0.0.200-10.0.0.220)"),
    ("lb range mixes IPv4 and IPv6", {"kubernetes.lb_addresses": ["10.0.0.1-::1"]},
     "vars.yml: kubernetes.lb_addresses[0]: invalid value (got '10.0.0.1-::1'; expected a CIDR or a range such as 10.0.0.200-10.0.0.220)"),
    # ports
    ("port 0", {"network.public_ports": [80, 0]}, f"vars.yml: network.public_ports[1]: invalid value (got 0; {PUBLIC_PORT}"),
    ("port 70000", {"network.public_ports": [70000]}, f"vars.yml: network.public_ports[0]: invalid value (got 70000; {PUBLIC_PORT}"),
    ("port 22 public", {"network.public_ports": [22]}, f"vars.yml: network.public_ports[0]: invalid value (got 22; {PUBLIC_PORT}"),
    ("port 'http'", {"network.public_ports": ["http"]},
     "vars.yml: network.public_ports[0]: wrong type, found text (got 'http'; expected a whole number)"),
    ("duplicate ports", {"network.public_ports": [443, 443]},
     "vars.yml: network.public_ports: invalid value (got [443, 443]; expected no duplicates)"),
    ("ldap port 0", {"users.ldap_port": 0}, "vars.yml: users.ldap_port: invalid value (got 0; expected a TCP port from 1 to 65535)"),
    # versions
    ("version 1.x", {"kubernetes.version": "1.x"},
     "vars.yml: kubernetes.version: invalid value (got '1.x'; expected a version such as 1.33 or 4.4.0)"),
    ("version latest", {"hub.chart_version": "latest"},
     "vars.yml: hub.chart_version: invalid value (got 'latest'; expected a version such as 1.33 or 4.4.0)"),
    # e-mail, URLs, hosts
    ("e-mail without domain", {"hub.https": "letsencrypt", "hub.letsencrypt_email": "admin@", **HUB_HOSTS},
     "vars.yml: hub.letsencrypt_email: invalid value (got 'admin@'; expected an e-mail address)"),
    ("proxy ftp", {"network.proxy": "ftp://x"}, f"vars.yml: network.proxy: invalid value (got 'ftp://x'; {URL}"),
    ("proxy without scheme", {"network.proxy": "proxy:3128"}, f"vars.yml: network.proxy: invalid value (got 'proxy:3128'; {URL}"),
    ("proxy port too big", {"network.proxy": "http://proxy:99999"},
     f"vars.yml: network.proxy: invalid value (got 'http://proxy:99999'; {URL}"),
    ("git url", {"content.repo": "github.com/x/y"},
     "vars.yml: content.repo: invalid value (got 'github.com/x/y'; "
     "expected a git URL such as https://github.com/org/repo.git or git@github.com:org/repo.git)"),
    ("ldap server as URL", {"users.ldap_server": "ldaps://ldap.uni.example"},
     f"vars.yml: users.ldap_server: invalid value (got 'ldaps://ldap.uni.example'; {HOST}"),
    ("ntp server with port", {"hosts.ntp_servers": ["pool.ntp.org:123"]},
     f"vars.yml: hosts.ntp_servers[0]: invalid value (got 'pool.ntp.org:123'; {HOST}"),
    ("hub host not DNS", {"hub.hosts": ["jupyter example"]},
     "vars.yml: hub.hosts[0]: invalid value (got 'jupyter example'; expected a DNS name such as hub.example.edu)"),
    ("hub hosts duplicated", {"hub.hosts": ["a.example.edu", "a.example.edu"]},
     "vars.yml: hub.hosts: invalid value (got ['a.example.edu', 'a.example.edu']; expected no duplicates)"),
    ("no_proxy with comma", {"network.no_proxy": [".uni.example, .campus"]},
     "vars.yml: network.no_proxy[0]: invalid value (got '.uni.example, .campus'; expected a host, domain or network, without spaces or commas)"),
    # names
    ("deployment with space", {"deployment": "Course Hub"}, f"vars.yml: deployment: invalid value (got 'Course Hub'; {SLUG}"),
    ("deployment upper case", {"deployment": "UPPER"}, f"vars.yml: deployment: invalid value (got 'UPPER'; {SLUG}"),
    ("deployment too long", {"deployment": "c" * 33}, f"vars.yml: deployment: invalid value (got '{'c' * 33}'; {SLUG}"),
    ("namespace", {"hub.namespace": "j_hub"}, f"vars.yml: hub.namespace: invalid value (got 'j_hub'; {SLUG}"),
    ("network name with spaces around", {"instances.network": " qh2-uom"},
     "vars.yml: instances.network: invalid value (got ' qh2-uom'; expected a network name such as qh2-uom)"),
    ("empty flavor", {"instances.flavor": ""},
     "vars.yml: instances.flavor: invalid value (got ''; expected a flavor name such as m3.large)"),
    ("user name", {"users.admins": ["alice", "bob smith"]},
     "vars.yml: users.admins[1]: invalid value (got 'bob smith'; expected a user name of letters, digits and _ . @ -)"),
    ("duplicate admins", {"users.admins": ["alice", "alice"]},
     "vars.yml: users.admins: invalid value (got ['alice', 'alice']; expected no duplicates)"),
    ("apt package injection", {"hosts.packages": ["vim; reboot"]},
     "vars.yml: hosts.packages[0]: invalid value (got 'vim; reboot'; expected an apt package name, optionally =version)"),
    ("content target ..", {"content.target": ".."},
     "vars.yml: content.target: invalid value (got '..'; expected a folder name without '/', other than '.' and '..')"),
    ("relative mount", {"volumes.mount": "mnt/data"},
     "vars.yml: volumes.mount: invalid value (got 'mnt/data'; expected an absolute path without spaces)"),
    ("tls secret name", {"hub.https": "secret", "hub.tls_secret": "Hub_TLS"},
     "vars.yml: hub.tls_secret: invalid value (got 'Hub_TLS'; expected a Kubernetes name: lower-case letters, digits, '-' and '.')"),
    ("bind template without {username}", {"users.ldap_bind_dn_template": ["uid=alice,o=uni"]},
     "vars.yml: users.ldap_bind_dn_template[0]: invalid value (got 'uid=alice,o=uni'; "
     "expected a DN containing {username}, such as uid={username},ou=people,o=example)"),
    ("custom class not dotted", {"users.auth": "custom", "users.custom_class": "GitHubOAuthenticator"},
     "vars.yml: users.custom_class: invalid value (got 'GitHubOAuthenticator'; "
     "expected a dotted class name such as oauthenticator.GitHubOAuthenticator)"),
    # sizes
    ("size '4 GB'", {"users.memory_limit": "4 GB"}, f"vars.yml: users.memory_limit: invalid value (got '4 GB'; {SIZE}"),
    ("size '-1Gi'", {"users.storage": "-1Gi"}, f"vars.yml: users.storage: invalid value (got '-1Gi'; {SIZE}"),
    ("size without unit", {"users.memory_limit": 4}, f"vars.yml: users.memory_limit: invalid value (got 4; {SIZE}"),
    ("log size 100MB", {"hosts.log_max_size": "100MB"},
     "vars.yml: hosts.log_max_size: invalid value (got '100MB'; expected a size such as 100M or 2G)"),
    # images
    ("image without tag", {"users.image": "quay.io/jupyter/scipy-notebook"},
     f"vars.yml: users.image: invalid value (got 'quay.io/jupyter/scipy-notebook'; {PINNED}"),
    ("image :latest", {"users.staff": ["alice"], "users.staff_image": "quay.io/jupyter/scipy-notebook:latest"},
     f"vars.yml: users.staff_image: invalid value (got 'quay.io/jupyter/scipy-notebook:latest'; {PINNED}"),
    # enum values
    ("topology k8s", {"topology": "k8s"}, "vars.yml: topology: not an allowed value (got 'k8s'; expected one of cluster, single)"),
    ("auth oauth", {"users.auth": "oauth"},
     "vars.yml: users.auth: not an allowed value (got 'oauth'; expected one of ldap, native, dummy, custom)"),
    ("https 'yes'", {"hub.https": "yes"}, f"vars.yml: hub.https: not an allowed value (got 'yes'; {HTTPS}"),
    ("https yes unquoted", {"hub.https": True}, f"vars.yml: hub.https: wrong type, found true/false: {YAML_BOOL} (got true; {HTTPS}"),
    ("filesystem btrfs", {"volumes.filesystem": "btrfs"},
     "vars.yml: volumes.filesystem: not an allowed value (got 'btrfs'; expected one of xfs, ext4)"),
    # required keys
    ("missing flavor", {"instances.flavor": DELETE},
     "vars.yml: instances.flavor: required key is missing (expected a flavor name such as m3.large)"),
    ("missing image", {"instances.image": DELETE},
     "vars.yml: instances.image: required key is missing (expected an image name such as 'NeCTAR Ubuntu 24.04 LTS (Noble) amd64')"),
    ("missing admin_cidr", {"network.admin_cidr": DELETE},
     "vars.yml: network.admin_cidr: required key is missing (expected your campus or VPN range such as 128.250.0.0/16)"),
    # rules between keys
    ("volume nodes > count", {"volumes.nodes": 4},
     "vars.yml: volumes.nodes: more volume nodes than instances (got 4; expected at most instances.count, which is 3, or 0 for all of them)"),
    ("cpu guarantee > limit", {"users.cpu_guarantee": 2},
     "vars.yml: users.cpu_guarantee: guarantee above the limit (got 2.0; expected at most users.cpu_limit, which is 1)"),
    ("memory guarantee > limit", {"users.memory_guarantee": "4Gi"},
     "vars.yml: users.memory_guarantee: guarantee above the limit (got '4Gi'; expected at most users.memory_limit, which is 4G)"),
    ("ldap without server", {"users.ldap_server": ""},
     "vars.yml: users.ldap_server: required when users.auth is ldap (got ''; expected the LDAP server's host name, such as ldap.example.edu)"),
    ("ldap without bind template", {"users.ldap_bind_dn_template": []},
     "vars.yml: users.ldap_bind_dn_template: required when users.auth is ldap "
     "(got []; expected a list of DNs such as ['uid={username},ou=people,o=example'])"),
    ("custom without class", {"users.auth": "custom"},
     "vars.yml: users.custom_class: required when users.auth is custom "
     "(got ''; expected an authenticator class such as oauthenticator.GitHubOAuthenticator)"),
    ("staff without staff_image", {"users.staff": ["alice"]},
     "vars.yml: users.staff_image: required when users.staff names anyone (got ''; expected an image with a pinned tag)"),
    ("pod and service CIDRs overlap", {"kubernetes.service_cidr": "192.168.128.0/17"},
     "vars.yml: kubernetes.service_cidr: overlaps kubernetes.pod_cidr (got '192.168.128.0/17'; expected a network apart from 192.168.0.0/16)"),
    ("letsencrypt without email", {"hub.https": "letsencrypt", **HUB_HOSTS},
     "vars.yml: hub.letsencrypt_email: required when hub.https is letsencrypt "
     "(got ''; expected the e-mail Let's Encrypt writes to about expiry)"),
    ("letsencrypt without hosts", {"hub.https": "letsencrypt", "hub.letsencrypt_email": "admin@uni.example"},
     "vars.yml: hub.hosts: required when hub.https is letsencrypt (got []; expected the hub's DNS names, such as [jupyter.example.edu])"),
    ("manual https without files", {"hub.https": "manual", **HUB_HOSTS},
     "vars.yml: hub.tls_cert_file: required when hub.https is manual (got ''; expected a file path)"),
    ("manual https without key", {"hub.https": "manual", "hub.tls_cert_file": "hub.pem", **HUB_HOSTS},
     "vars.yml: hub.tls_key_file: required when hub.https is manual (got ''; expected a file path)"),
    ("secret https without secret", {"hub.https": "secret"},
     "vars.yml: hub.tls_secret: required when hub.https is secret (got ''; expected the name of a kubernetes.io/tls Secret)"),
    ("cull_every > cull_timeout", {"hub.cull_every": 7200},
     "vars.yml: hub.cull_every: checks less often than the idle timeout (got 7200; expected at most hub.cull_timeout, which is 3600)"),
]


@pytest.mark.parametrize(("changes", "message"), [pytest.param(c, m, id=i) for i, c, m in BAD])
def test_bad_input_gives_one_exact_line(changes: dict[str, Any], message: str, vars_dict: dict[str, Any]) -> None:
    for key, value in changes.items():
        set_key(vars_dict, key, value)
    e = error_of(vars_dict)
    assert str(e) == message
    assert "\n" not in str(e) and e.file == "vars.yml"
    assert str(e).startswith(f"vars.yml: {e.key}: ")  # names the key, as a real dotted key
    assert e.key.partition("[")[0] in set(schema()) | set(changes) | {f.name for f in dataclasses.fields(Settings)}


def test_there_are_at_least_thirty_bad_inputs() -> None:
    assert len(BAD) + len(BAD_FILES) >= 30
    assert len({i for i, _, _ in BAD}) == len(BAD)  # ids are unique


def test_error_attributes(vars_dict: dict[str, Any]) -> None:
    e = error_of(set_key(vars_dict, "instances.count", "3"))
    assert (e.file, e.key, e.problem, e.got, e.expected) == (
        "vars.yml", "instances.count", "wrong type, found text", "3", "a whole number from 1 to 500")
    assert error_of(set_key(vars_dict, "instances.count", None)).got is None  # shown as "got nothing"


def test_settings_error_message_format() -> None:
    assert str(SettingsError("v.yml", "a.b", "bad")) == "v.yml: a.b: bad"  # got=None: no got part
    assert str(SettingsError("v.yml", "", "file not found", expected="a file")) == "v.yml: file not found (expected a file)"
    assert str(SettingsError("v.yml", "k", "bad", got=True, expected="x")) == "v.yml: k: bad (got true; expected x)"
    long = SettingsError("v.yml", "k", "bad", got="x" * 100)
    assert str(long) == "v.yml: k: bad (got '" + "x" * 56 + "...)"
    assert str(SettingsError("v.yml", "k", "bad\nline", got="a\nb")) == "v.yml: k: bad\\nline (got 'a\\nb')"


def test_first_problem_only_is_reported(vars_dict: dict[str, Any]) -> None:
    set_key(vars_dict, "zzz", 1)
    set_key(vars_dict, "instances.count", 0)
    assert str(error_of(vars_dict)).startswith("vars.yml: zzz: unknown key")  # unknown keys before values


# ----------------------------------------------------------------------------- bad files
BAD_FILES: list[tuple[str, str, str]] = [
    ("empty file", "", "vars.yml: instances.flavor: required key is missing (expected a flavor name such as m3.large)"),
    ("only comments", "# all defaults\n",
     "vars.yml: instances.flavor: required key is missing (expected a flavor name such as m3.large)"),
    ("syntax error: unclosed list", "instances:\n  flavor: m3.large\n  image: [a, b\n  count: 3\n",
     "vars.yml: line 4, column 8: YAML syntax error: expected ',' or ']', but got ':', in the '[' opened on line 3 (expected valid YAML)"),
    ("syntax error: indentation", "instances:\n  flavor: m3.large\n image: x\n",
     "vars.yml: line 3, column 2: YAML syntax error: the indentation does not match the lines above (expected valid YAML)"),
    ("syntax error: tab", "instances:\n\tflavor: m3.large\n",
     "vars.yml: line 2, column 1: YAML syntax error: found character '\\t' that cannot start any token (expected valid YAML)"),
    ("syntax error: colon in value", "instances:\n  flavor: m3: large\n",
     "vars.yml: line 2, column 13: YAML syntax error: mapping values are not allowed here (expected valid YAML)"),
    ("duplicate key", "instances:\n  flavor: a\n  image: b\n  flavor: c\n",
     "vars.yml: line 4, column 3: duplicate key 'flavor', first set on line 2 (expected each key once in its section)"),
    ("duplicate section", "hub: {}\nusers: {}\nhub: {port: 8000}\n",
     "vars.yml: line 3, column 1: duplicate key 'hub', first set on line 1 (expected each key once in its section)"),
    ("a list, not a mapping", "- instances\n- network\n",
     "vars.yml: top level: wrong type, found a list (got ['instances', 'network']; expected a section of key: value pairs)"),
    ("two documents", "hub: {}\n---\nusers: {}\n",
     "vars.yml: line 2, column 1: YAML syntax error: expected a single document in the stream, but found another document "
     "(expected valid YAML)"),
    ("nested too deeply", "[" * 5000, "vars.yml: YAML nested too deeply (expected a vars.yml of sections and keys)"),
    ("a date where text belongs", "deployment: 2025-10-20\n",
     "vars.yml: deployment: wrong type, found a date; quote it if you meant text "
     "(got 2025-10-20; expected lower-case letters, digits and '-', 2-32 long, starting with a letter)"),
    ("binary where text belongs", "topology: !!binary aGk=\n",
     "vars.yml: topology: wrong type, found binary data (got b'hi'; expected one of cluster, single)"),
    ("key with nothing after it", "instances:\n  flavor:\n",
     "vars.yml: instances.flavor: no value given (got nothing; expected a flavor name such as m3.large)"),
]


@pytest.mark.parametrize(("text", "message"), [pytest.param(t, m, id=i) for i, t, m in BAD_FILES])
def test_bad_file_gives_one_exact_line(text: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COURSEHUB_VARS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vars.yml").write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        load()
    assert str(info.value) == message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    with pytest.raises(SettingsError) as info:
        load(path)
    assert str(info.value) == f"{path}: file not found (expected a settings file: copy vars.yml from the repository, or set COURSEHUB_VARS)"


def test_missing_file_in_the_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COURSEHUB_VARS", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as info:
        load()
    assert str(info.value) == (f"vars.yml: file not found in {tmp_path} "
                               "(expected a settings file: copy vars.yml from the repository, or set COURSEHUB_VARS)")


def test_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not a file (expected a YAML file such as vars.yml)"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "vars.yml"
    path.write_bytes(b"deployment: caf\xe9\n")
    with pytest.raises(SettingsError) as info:
        load(path)
    assert str(info.value) == f"{path}: not UTF-8 text: bad byte at offset 15 (expected a UTF-8 YAML file)"


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "vars.yml"
    path.write_text("deployment: x\n")

    def denied(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)  # root reads any file, so a chmod 000 proves nothing here
    with pytest.raises(SettingsError) as info:
        load(path)
    assert str(info.value) == f"{path}: cannot read the file: Permission denied (expected a readable YAML file)"


def test_error_names_the_file_it_read(write_vars: Any, vars_dict: dict[str, Any]) -> None:
    path = write_vars(set_key(vars_dict, "parallel", 0), name="course.yml")
    with pytest.raises(SettingsError) as info:
        load(path)
    assert str(info.value) == f"{path}: parallel: out of range (got 0; expected a whole number from 1 to 256)"


# ----------------------------------------------------------------------------- where the files are
def test_default_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COURSEHUB_VARS", raising=False)
    monkeypatch.delenv("COURSEHUB_INVENTORY", raising=False)
    assert vars_path() == Path("vars.yml") and inventory_dir() == Path("inventory")
    monkeypatch.setenv("COURSEHUB_VARS", "")  # empty: as if unset
    monkeypatch.setenv("COURSEHUB_INVENTORY", "")
    assert vars_path() == Path("vars.yml") and inventory_dir() == Path("inventory")


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, write_vars: Any, vars_dict: dict[str, Any], tmp_path: Path) -> None:
    path = write_vars(set_key(vars_dict, "deployment", "physics-101"), name="physics.yml")
    monkeypatch.setenv("COURSEHUB_VARS", str(path))
    monkeypatch.setenv("COURSEHUB_INVENTORY", str(tmp_path / "inv"))
    assert vars_path() == path and inventory_dir() == tmp_path / "inv"
    s = load()
    assert s.deployment == "physics-101" and s.path == str(path) and s.base_dir == tmp_path


def test_load_reads_dot_vars_yml_without_env(monkeypatch: pytest.MonkeyPatch, write_vars: Any, vars_dict: dict[str, Any],
                                             tmp_path: Path) -> None:
    monkeypatch.delenv("COURSEHUB_VARS", raising=False)
    write_vars(set_key(vars_dict, "deployment", "here"))
    monkeypatch.chdir(tmp_path)
    assert load().deployment == "here" and load().path == "vars.yml"


def test_env_pointing_nowhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COURSEHUB_VARS", str(tmp_path / "missing.yml"))
    with pytest.raises(SettingsError) as info:
        load()
    assert str(info.value).startswith(f"{tmp_path / 'missing.yml'}: file not found")


# ----------------------------------------------------------------------------- the Settings object
def test_settings_are_frozen() -> None:
    s = from_dict(MINIMAL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.deployment = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.instances.count = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.hub = s.hub  # type: ignore[misc]


def test_resolve_paths(write_vars: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    s = load(write_vars(MINIMAL))
    assert s.base_dir == tmp_path
    assert s.resolve("~/.ssh/id_ed25519") == tmp_path / "home/.ssh/id_ed25519"
    assert s.resolve("certs/hub.pem") == tmp_path / "certs/hub.pem"  # relative to vars.yml, not the cwd
    assert s.resolve("/etc/ssl/hub.pem") == Path("/etc/ssl/hub.pem")
    assert s.resolve(s.instances.private_key_file) == tmp_path / "home/.ssh/id_ed25519"


def test_resolve_with_a_relative_vars_path(write_vars: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "course").mkdir()
    write_vars(MINIMAL, name="course/vars.yml")
    monkeypatch.chdir(tmp_path)
    s = load("course/vars.yml")
    assert s.path == "course/vars.yml" and s.base_dir == tmp_path / "course"
    monkeypatch.chdir("/")  # a later change of directory does not move the files vars.yml names
    assert s.base_dir == tmp_path / "course" and s.resolve("hub.pem") == tmp_path / "course/hub.pem"


def test_load_imports_nothing_heavy(write_vars: Any) -> None:
    """Loading settings touches no cloud or host library (and stays fast for `inv --list`)."""
    path = write_vars(MINIMAL)
    code = ("import sys; from coursehub.settings import load; load(sys.argv[1]); "
            "print(sorted(m for m in ('openstack', 'fabric', 'paramiko', 'invoke', 'jsonschema', 'requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------- no input crashes
ODD_VALUES = [None, True, False, 0, -1, 10**20, 1.5, float("nan"), "", " ", "x", "a\nb", "10.0.0.1-::1", "-", "..", "1e3",
              "0.0.0.0/0", "::/0", [], [None], [1, "a"], [[1]], [{}], {}, {"a": 1}, {1: 2}]


@pytest.mark.parametrize("key", sorted(set(schema()) | {k.partition(".")[0] for k in schema()}))
def test_no_value_crashes_the_loader(key: str, vars_dict: dict[str, Any]) -> None:
    """Any value for any key or section loads or gives one SettingsError line: never another exception."""
    for value in [*ODD_VALUES, datetime.date(2025, 10, 20)]:
        data = set_key(copy.deepcopy(vars_dict), key, value)
        try:
            from_dict(data)
        except SettingsError as e:
            assert "\n" not in str(e) and str(e).startswith("vars.yml: ")
