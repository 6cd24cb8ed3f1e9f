"""Keystone v3 over HTTP: discovery, password auth, catalog, 401s, token expiry, clouds.yaml."""

from __future__ import annotations

import json

import openstack
import pytest
import requests
import yaml
from keystoneauth1 import exceptions as ksa

from coursehub.lab.api import clouds_yaml


def _auth_body(lab, password=None, scope=True):
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "password": password or lab.state.password, "domain": {"name": "Default"}}}}}}
    if scope:
        body["auth"]["scope"] = {"project": {"name": "coursehub", "domain": {"id": "default"}}}
    return body


def test_discovery_unversioned_300_and_versioned_200(lab):
    r = requests.get(lab.url + "/identity", timeout=5)
    assert r.status_code == 300
    assert r.json()["versions"]["values"][0]["id"] == "v3.14"
    r = requests.get(lab.url + "/identity/v3", timeout=5)
    assert r.status_code == 200
    doc = r.json()["version"]
    assert doc["status"] == "stable" and doc["links"][0]["href"].endswith("/identity/v3/")


def test_password_auth_gives_201_subject_token_and_catalog(lab):
    r = requests.post(lab.url + "/identity/v3/auth/tokens", json=_auth_body(lab), timeout=5)
    assert r.status_code == 201
    assert r.headers["X-Subject-Token"]
    token = r.json()["token"]
    assert token["expires_at"].endswith("Z") and token["project"]["name"] == "coursehub"
    by_type = {s["type"]: s["endpoints"][0]["url"] for s in token["catalog"]}
    assert by_type["compute"] == lab.url + "/compute/v2.1"
    assert by_type["network"] == lab.url + "/network"
    assert by_type["volumev3"] == by_type["block-storage"] == f"{lab.url}/volume/v3/{lab.state.project_id}"
    assert by_type["image"] == lab.url + "/image" and by_type["identity"] == lab.url + "/identity"
    assert {e["region_id"] for s in token["catalog"] for e in s["endpoints"]} == {"Lab"}


def test_unscoped_token_has_no_catalog(lab):
    r = requests.post(lab.url + "/identity/v3/auth/tokens", json=_auth_body(lab, scope=False), timeout=5)
    assert r.status_code == 201 and "catalog" not in r.json()["token"]


@pytest.mark.parametrize("change", ["password", "user", "project"])
def test_bad_credentials_are_401_in_keystone_shape(lab, change):
    body = _auth_body(lab)
    if change == "password":
        body = _auth_body(lab, password="not-it")
    elif change == "user":
        body["auth"]["identity"]["password"]["user"]["name"] = "root"
    else:
        body["auth"]["scope"]["project"]["name"] = "other"
    r = requests.post(lab.url + "/identity/v3/auth/tokens", json=body, timeout=5)
    assert r.status_code == 401
    assert r.json() == {"error": {"code": 401, "title": "Unauthorized",
                                  "message": "The request you have made requires authentication."}}


def test_sdk_with_wrong_password_raises_unauthorized(lab):
    kwargs = lab.connect_kwargs()
    kwargs["password"] = "wrong"
    conn = openstack.connect(**kwargs)
    with pytest.raises(ksa.Unauthorized):
        list(conn.compute.flavors())
    with pytest.raises(ksa.Unauthorized):
        conn.list_servers()


def test_calls_without_or_with_a_bogus_token_are_401(lab, http):
    for token in (None, "gAAAAAB-bogus"):
        headers = {"X-Auth-Token": token} if token else {}
        r = requests.get(lab.url + "/compute/v2.1/servers", headers=headers, timeout=5)
        assert r.status_code == 401 and r.json()["error"]["code"] == 401
        assert r.headers["WWW-Authenticate"].startswith("Keystone uri=")


def test_expired_token_is_401_and_the_sdk_logs_in_again(lab, connect, clock, journal):
    conn = connect()
    assert len(list(conn.compute.flavors())) == 4
    old = conn.auth_token
    clock.advance(3601)
    r = requests.get(lab.url + "/compute/v2.1/flavors", headers={"X-Auth-Token": old}, timeout=5)
    assert r.status_code == 401
    lab.journal.clear()
    assert len(list(conn.compute.flavors())) == 4      # keystoneauth re-authenticates on the 401
    assert journal() == ["GET /compute/v2.1/flavors/detail?is_public=None 401",
                         "POST /identity/v3/auth/tokens 201",
                         "GET /compute/v2.1/flavors/detail?is_public=None 200"]


def test_token_lifetime_is_a_knob(lab, clock):
    lab.configure(token_seconds=30)
    r = requests.post(lab.url + "/identity/v3/auth/tokens", json=_auth_body(lab), timeout=5)
    token = r.headers["X-Subject-Token"]
    headers = {"X-Auth-Token": token}
    assert requests.get(lab.url + "/compute/v2.1/flavors", headers=headers, timeout=5).status_code == 200
    clock.advance(31)
    assert requests.get(lab.url + "/compute/v2.1/flavors", headers=headers, timeout=5).status_code == 401


def test_validate_and_revoke_a_token(lab, http):
    r = requests.post(lab.url + "/identity/v3/auth/tokens", json=_auth_body(lab), timeout=5)
    token = r.headers["X-Subject-Token"]
    assert http("GET", "/identity/v3/auth/tokens", headers={"X-Subject-Token": token}).status_code == 200
    assert http("DELETE", "/identity/v3/auth/tokens", headers={"X-Subject-Token": token}).status_code == 204
    assert requests.get(lab.url + "/compute/v2.1", headers={"X-Auth-Token": token}, timeout=5).status_code == 200
    assert requests.get(lab.url + "/compute/v2.1/flavors", headers={"X-Auth-Token": token},
                        timeout=5).status_code == 401


def test_find_project_404_by_name_then_list(conn, lab, journal):
    project = conn.identity.find_project("coursehub")
    assert project.id == lab.state.project_id
    assert journal()[-2:] == ["GET /identity/v3/projects/coursehub 404", "GET /identity/v3/projects?name=coursehub 200"]
    with pytest.raises(openstack.exceptions.NotFoundException):
        conn.identity.get_project("nope")


def test_clouds_yaml_works_through_os_client_config_file(lab, tmp_path, monkeypatch):
    doc = lab.clouds_yaml()
    entry = doc["clouds"]["coursehub-lab"]
    assert entry["auth"]["auth_url"] == lab.url + "/identity/v3"
    assert entry["region_name"] == "Lab" and entry["identity_api_version"] == 3
    assert clouds_yaml(lab.url, "pw")["clouds"]["coursehub-lab"]["auth"]["password"] == "pw"
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    conn = openstack.connect(cloud="coursehub-lab")
    assert {f.name for f in conn.compute.flavors()} >= {"m3.small", "m3.medium", "m3.large"}


def test_journal_holds_no_password_or_token(conn, lab):
    list(conn.compute.flavors())
    text = json.dumps(lab.journal.entries()) + requests.get(lab.url + "/_lab/journal", timeout=5).text
    assert lab.state.password not in text and conn.auth_token not in text
    assert lab.state.password not in requests.get(lab.url + "/_lab/config", timeout=5).text
