"""Injected faults as openstacksdk sees them, and the /_lab control surface over HTTP."""

from __future__ import annotations

import time

import pytest
import requests
from keystoneauth1 import exceptions as ksa
from openstack import exceptions as exc

SERVERS = r"/compute/v2\.1/servers/detail"


def _control(lab, method, path, **kw):
    return requests.request(method, lab.url + "/_lab" + path, timeout=10, **kw)


def test_500_is_an_http_exception_with_the_service_body(conn, lab, http):
    lab.set_faults([{"method": "GET", "path": SERVERS, "status": 500}])
    with pytest.raises(exc.HttpException) as err:
        list(conn.compute.servers())
    assert err.value.status_code == 500
    r = http("GET", "/compute/v2.1/servers/detail")
    assert r.json()["computeFault"]["code"] == 500
    assert lab.journal.entries()[-1]["fault"] is True


def test_503_is_retried_only_with_status_code_retries(lab, connect):
    plain = connect()
    lab.set_faults([{"path": SERVERS, "status": 503, "times": 1}])
    with pytest.raises(exc.HttpException) as err:
        list(plain.compute.servers())
    assert err.value.status_code == 503
    retrying = connect(status_code_retries=3, status_code_retry_delay=0.01)
    lab.set_faults([{"path": SERVERS, "status": 503, "times": 2}])
    assert list(retrying.compute.servers()) == []
    assert [e["status"] for e in lab.journal.entries() if "servers/detail" in e["path"]][-3:] == [503, 503, 200]


def test_slow_reply_with_api_timeout_is_connect_timeout(lab, connect):
    conn = connect(api_timeout=0.3)
    list(conn.compute.flavors())
    lab.set_faults([{"path": SERVERS, "delay": 1.0, "times": 1}])
    started = time.monotonic()
    with pytest.raises(ksa.ConnectTimeout):
        list(conn.compute.servers())
    assert time.monotonic() - started < 0.9


def test_delay_only_rule_lets_the_request_through(conn, lab):
    lab.set_faults([{"path": SERVERS, "delay": 0.2, "times": 1}])
    started = time.monotonic()
    assert list(conn.compute.servers()) == []
    assert time.monotonic() - started >= 0.2


def test_dropped_connection_fails_then_is_retried_with_connect_retries(lab, connect):
    plain = connect()
    list(plain.compute.flavors())
    lab.set_faults([{"path": SERVERS, "drop": True, "times": 1}])
    with pytest.raises(ksa.ConnectFailure):
        list(plain.compute.servers())
    retrying = connect(connect_retries=2, connect_retry_delay=0.01)
    list(retrying.compute.flavors())
    lab.set_faults([{"path": SERVERS, "drop": True, "times": 1}])
    assert list(retrying.compute.servers()) == []
    assert [e["status"] for e in lab.journal.entries() if "servers/detail" in e["path"]][-2:] == [0, 200]


def test_rules_match_in_order_with_method_and_times(conn, lab, http):
    lab.set_faults([
        {"method": "POST", "path": "os-keypairs", "status": 409, "body": {"conflictingRequest": {"code": 409,
                                                                                                 "message": "x"}}},
        {"path": "os-keypairs", "status": 418, "times": 2},
    ])
    assert http("GET", "/compute/v2.1/os-keypairs").status_code == 418
    assert http("POST", "/compute/v2.1/os-keypairs", json={}).json()["conflictingRequest"]["message"] == "x"
    assert http("GET", "/compute/v2.1/os-keypairs").status_code == 418
    assert http("GET", "/compute/v2.1/os-keypairs").status_code == 200        # the 418 rule is used up
    assert len(lab.faults.list()) == 1


def test_injected_quota_errors_per_service(conn, lab):
    lab.set_faults([
        {"path": "/volumes$", "method": "POST", "status": 413},
        {"path": "/security-groups$", "method": "POST", "status": 409},
        {"path": "/servers$", "method": "POST", "status": 403},
    ])
    with pytest.raises(exc.HttpException) as err:
        conn.block_storage.create_volume(size=1)
    assert err.value.status_code == 413
    with pytest.raises(exc.ConflictException):
        conn.network.create_security_group(name="x")
    with pytest.raises(exc.ForbiddenException):
        conn.compute.create_server(name="x", image_id="i", flavor_id="f", networks="auto")


def test_faults_endpoint(lab):
    r = _control(lab, "POST", "/faults", json=[{"method": "GET", "path": "flavors", "status": 500, "times": 1}])
    assert r.status_code == 200 and r.json()["faults"][0]["status"] == 500
    assert _control(lab, "GET", "/faults").json()["faults"][0]["path"] == "flavors"
    assert _control(lab, "POST", "/faults", json=[{"path": "x"}]).status_code == 400      # nothing to do
    assert _control(lab, "POST", "/faults", json=[{"path": "(", "status": 500}]).status_code == 400
    assert _control(lab, "DELETE", "/faults").status_code == 204
    assert _control(lab, "GET", "/faults").json() == {"faults": []}


def test_journal_endpoint(conn, lab):
    list(conn.compute.flavors())
    entries = _control(lab, "GET", "/journal").json()["requests"]
    assert entries[-1]["method"] == "GET" and entries[-1]["path"].startswith("/compute/v2.1/flavors/detail")
    assert entries[-1]["status"] == 200 and {"seq", "time", "ms"} <= set(entries[-1])
    later = _control(lab, "GET", f"/journal?since={entries[-1]['seq']}").json()["requests"]
    assert later == []
    assert _control(lab, "DELETE", "/journal").status_code == 204
    assert _control(lab, "GET", "/journal").json()["requests"] == []


def test_reset_endpoint_deletes_everything(conn, ids, lab, backend):
    srv = conn.compute.create_server(name="r", image_id=ids["image"], flavor_id=ids["flavor"], networks="auto")
    conn.block_storage.create_volume(size=1)
    assert _control(lab, "POST", "/reset").status_code == 200
    assert ("delete", srv.id) in backend.calls
    assert list(conn.compute.servers()) == [] and list(conn.block_storage.volumes()) == []
    assert _control(lab, "GET", "").json()["servers"] == 0


def test_config_endpoint(conn, ids, lab, clock):
    r = _control(lab, "POST", "/config", json={"build_seconds": 10, "quotas": {"instances": 3}})
    assert r.json()["config"]["build_seconds"] == 10 and r.json()["config"]["quotas"]["instances"] == 3
    srv = conn.compute.create_server(name="c", image_id=ids["image"], flavor_id=ids["flavor"], networks="auto")
    assert conn.compute.get_server(srv.id).status == "BUILD"
    clock.advance(10)
    assert conn.compute.get_server(srv.id).status == "ACTIVE"
    assert _control(lab, "POST", "/config", json={"nope": 1}).status_code == 400
    assert _control(lab, "POST", "/config", json={"quotas": {"instances": "many"}}).status_code == 400


def test_host_faults_endpoint(conn, ids, lab, backend):
    srv = conn.compute.create_server(name="h1", image_id=ids["image"], flavor_id=ids["flavor"], networks="auto")
    conn.compute.wait_for_server(srv, interval=0.01, wait=5)
    for fault in ("stop-sshd", "start-sshd", "freeze", "thaw", "cut", "heal", "reboot"):
        assert _control(lab, "POST", f"/hosts/h1/{fault}").status_code == 200
    r = _control(lab, "POST", f"/hosts/{srv.id}/poweroff")
    assert r.json()["status"] == "SHUTOFF" and conn.compute.get_server(srv.id).status == "SHUTOFF"
    _control(lab, "POST", "/hosts/h1/poweron")
    assert conn.compute.get_server(srv.id).status == "ACTIVE"
    assert [f for _s, f in backend.faults] == ["stop-sshd", "start-sshd", "freeze", "thaw", "cut", "heal",
                                               "reboot", "poweroff", "poweron"]
    assert _control(lab, "POST", "/hosts/h1/explode").status_code == 400
    assert _control(lab, "POST", "/hosts/nobody/freeze").status_code == 404
    servers = _control(lab, "GET", "/servers").json()["servers"]
    assert servers == [{"id": srv.id, "name": "h1", "index": 1, "address": "10.77.0.11", "mac": "02:77:00:00:00:01",
                        "status": "ACTIVE", "deleting": False}]


def test_control_paths_are_not_faulted_or_journaled(lab):
    lab.set_faults([{"path": ".*", "status": 500}])
    assert _control(lab, "GET", "/journal").status_code == 200
    assert _control(lab, "GET", "/nope").status_code == 404
    assert len(lab.journal) == 0
