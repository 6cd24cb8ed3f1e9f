"""Nova through openstacksdk's proxy layer (and raw HTTP for microversion gates and error shapes)."""

from __future__ import annotations

import base64

import openstack
import pytest
from openstack import exceptions as exc

from coursehub.lab.console import parse_fingerprints, parse_host_keys

PUB = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGLTA1NlZdr0BJWdVQfHUP2mpeBN6x0n8PkWpTa2qKan admin@laptop")


def _server(conn, ids, name="dep-1", **kw):
    attrs = dict(name=name, image_id=ids["image"], flavor_id=ids["flavor"], networks=[{"uuid": ids["network"]}])
    attrs.update(kw)
    return conn.compute.create_server(**attrs)


def test_discovery_document_and_microversion_headers(lab, http):
    r = http("GET", "/compute/v2.1", token=False)
    assert r.json()["version"]["version"] == "2.96" and r.json()["version"]["min_version"] == "2.1"
    assert http("GET", "/compute", token=False).json()["versions"][1]["id"] == "v2.1"
    r = http("GET", "/compute/v2.1/flavors", mv="2.61")
    assert r.headers["OpenStack-API-Version"] == "compute 2.61"
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.61"
    r = http("GET", "/compute/v2.1/flavors", mv="2.97")
    assert r.status_code == 406


def test_find_flavor_404_by_name_then_detail_list(conn, journal):
    flavor = conn.compute.find_flavor("m3.medium")
    assert (flavor.vcpus, flavor.ram, flavor.disk) == (2, 8192, 30)
    assert journal()[-2:] == ["GET /compute/v2.1/flavors/m3.medium 404",
                              "GET /compute/v2.1/flavors/detail?is_public=None 200"]
    assert conn.compute.get_flavor(flavor.id).name == "m3.medium"
    assert conn.compute.find_flavor("m9.huge") is None


def test_flavor_404_body_is_nova_shaped(http):
    r = http("GET", "/compute/v2.1/flavors/nope")
    assert r.status_code == 404
    assert r.json() == {"itemNotFound": {"code": 404, "message": "Flavor nope could not be found."}}


def test_availability_zones(conn):
    zones = list(conn.compute.availability_zones())
    assert [(z.name, z.state["available"]) for z in zones] == [("nova", True)]


def test_keypairs_create_find_duplicate_delete(conn, journal):
    kp = conn.compute.create_keypair(name="coursehub", public_key=PUB)
    assert kp.fingerprint.count(":") == 15 and kp.public_key == PUB
    assert conn.compute.find_keypair("coursehub").name == "coursehub"
    assert "GET /compute/v2.1/os-keypairs/coursehub 200" in journal()
    with pytest.raises(exc.ConflictException):
        conn.compute.create_keypair(name="coursehub", public_key=PUB)
    assert [k.name for k in conn.compute.keypairs()] == ["coursehub"]
    conn.compute.delete_keypair("coursehub")
    assert journal()[-1] == "DELETE /compute/v2.1/os-keypairs/coursehub 204"
    assert conn.compute.find_keypair("coursehub") is None
    with pytest.raises(exc.NotFoundException):
        conn.compute.delete_keypair("coursehub", ignore_missing=False)


def test_generated_keypair_has_a_private_key(conn):
    kp = conn.compute.create_keypair(name="gen")
    assert kp.private_key.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert kp.public_key.startswith("ssh-rsa ")


def test_bad_public_key_is_400(conn):
    with pytest.raises(exc.BadRequestException):
        conn.compute.create_keypair(name="bad", public_key="ssh-ed25519 not-base64!")


def test_server_lifecycle(conn, ids, lab, backend):
    conn.compute.create_keypair(name="coursehub", public_key=PUB)
    user_data = "#cloud-config\nruncmd: [true]\n"
    srv = _server(conn, ids, key_name="coursehub", security_groups=[{"name": "default"}],
                  metadata={"coursehub-role": "head"}, tags=["coursehub"], availability_zone="nova",
                  user_data=base64.b64encode(user_data.encode()).decode())
    srv = conn.compute.wait_for_server(srv, interval=0.01, wait=5)
    assert srv.status == "ACTIVE"
    assert srv.addresses == {"lab": [{"version": 4, "addr": "10.77.0.11", "OS-EXT-IPS:type": "fixed",
                                      "OS-EXT-IPS-MAC:mac_addr": "02:77:00:00:00:01"}]}
    assert srv.metadata == {"coursehub-role": "head"} and srv.tags == ["coursehub"]
    assert srv.key_name == "coursehub" and srv.availability_zone == "nova"
    assert srv.security_groups == [{"name": "default"}] and srv.flavor.original_name == "m3.small"
    spec = backend.servers[srv.id]
    assert (spec.index, spec.address, spec.mac, spec.user) == (1, "10.77.0.11", "02:77:00:00:00:01", "debian")
    assert spec.public_key == PUB and spec.user_data == user_data.encode()
    # console log: the keys the backend made, in cloud-init's shape
    out = conn.compute.get_server_console_output(srv)["output"]
    assert sorted(parse_host_keys(out)) == sorted(backend.host_keys[srv.id].lines)
    assert {kind for _fp, kind in parse_fingerprints(out)} == {"ED25519", "ECDSA"}
    tail = conn.compute.get_server_console_output(srv, length=3)["output"]
    assert len(tail.split("\n")) == 3
    # delete -> 404
    conn.compute.delete_server(srv)
    conn.compute.wait_for_delete(srv, interval=0.01, wait=5)
    with pytest.raises(exc.NotFoundException):
        conn.compute.get_server(srv.id)
    assert ("delete", srv.id) in backend.calls


def test_build_until_build_seconds_and_backend_ready(conn, ids, lab, clock, backend):
    lab.configure(build_seconds=30)
    backend.ready_after = 1
    srv = _server(conn, ids)
    assert conn.compute.get_server(srv.id).status == "BUILD"
    # still BUILD: the console has boot lines but no keys yet
    out = conn.compute.get_server_console_output(srv)["output"]
    assert "Linux version" in out and parse_host_keys(out) == []
    clock.advance(31)
    assert conn.compute.get_server(srv.id).status == "BUILD"      # the backend's first answer is "not yet"
    assert conn.compute.get_server(srv.id).status == "ACTIVE"


def test_delete_seconds_keeps_the_server_visible_as_deleting(conn, ids, lab, clock):
    lab.configure(delete_seconds=10)
    srv = conn.compute.wait_for_server(_server(conn, ids), interval=0.01, wait=5)
    conn.compute.delete_server(srv)
    assert conn.compute.get_server(srv.id).task_state == "deleting"
    clock.advance(11)
    with pytest.raises(exc.NotFoundException):
        conn.compute.get_server(srv.id)


@pytest.mark.parametrize("how", ["error_names", "error_builds", "backend"])
def test_error_builds(conn, ids, lab, backend, how):
    if how == "error_names":
        lab.configure(error_names="^bad-")
    elif how == "error_builds":
        lab.configure(error_builds=1)
    else:
        backend.fail = __import__("re").compile("^bad-")
    bad = _server(conn, ids, name="bad-1")
    with pytest.raises(exc.ResourceFailure):
        conn.compute.wait_for_server(bad, interval=0.01, wait=5)
    bad = conn.compute.get_server(bad.id)
    assert bad.status == "ERROR" and bad.fault["code"] == 500 and "aborted" in bad.fault["message"]
    good = conn.compute.wait_for_server(_server(conn, ids, name="good-1"), interval=0.01, wait=5)
    assert good.status == "ACTIVE"


def test_list_with_name_regex_and_find_by_name(conn, ids, journal):
    for name in ("dep-1", "dep-2", "other-dep-3"):
        _server(conn, ids, name=name)
    assert sorted(s.name for s in conn.compute.servers(name="^dep-")) == ["dep-1", "dep-2"]
    assert "GET /compute/v2.1/servers/detail?name=%5Edep- 200" in journal()
    assert sorted(s.name for s in conn.compute.servers(details=False)) == ["dep-1", "dep-2", "other-dep-3"]
    found = conn.compute.find_server("dep-2")
    assert found.name == "dep-2"
    assert journal()[-2:] == ["GET /compute/v2.1/servers/dep-2 404", "GET /compute/v2.1/servers/detail?name=dep-2 200"]


def test_list_pages_with_limit_and_marker(conn, ids):
    for i in range(5):
        _server(conn, ids, name=f"p-{i}")
    names = [s.name for s in conn.compute.servers(limit=2, paginated=True)]
    assert sorted(names) == [f"p-{i}" for i in range(5)]


def test_indices_reuse_the_lowest_free_one(conn, ids, backend):
    a, b, c = (_server(conn, ids, name=n) for n in ("a", "b", "c"))
    conn.compute.delete_server(b)
    d = _server(conn, ids, name="d")
    assert backend.servers[d.id].index == 2 and backend.servers[d.id].address == "10.77.0.12"
    assert backend.servers[d.id].peers == {"a": "10.77.0.11", "c": "10.77.0.13"}
    assert {backend.servers[x.id].index for x in (a, c)} == {1, 3}


def test_metadata_and_tags(conn, ids):
    srv = conn.compute.wait_for_server(_server(conn, ids), interval=0.01, wait=5)
    conn.compute.set_server_metadata(srv, role="worker", course="COMP90024")
    assert conn.compute.get_server_metadata(srv).metadata == {"role": "worker", "course": "COMP90024"}
    conn.compute.delete_server_metadata(srv, ["course"])
    assert conn.compute.get_server(srv.id).metadata == {"role": "worker"}
    conn.compute.add_tag_to_server(srv, "coursehub")
    conn.compute.add_tag_to_server(srv, "worker")
    assert sorted(conn.compute.get_server(srv.id).tags) == ["coursehub", "worker"]
    conn.compute.remove_tag_from_server(srv, "worker")
    assert conn.compute.get_server(srv.id).tags == ["coursehub"]
    assert [s.name for s in conn.compute.servers(tags="coursehub")] == ["dep-1"]


def test_metadata_and_tags_need_a_built_server(conn, ids, lab, http):
    lab.configure(build_seconds=60)
    srv = _server(conn, ids)
    r = http("PUT", f"/compute/v2.1/servers/{srv.id}/tags/x", mv="2.96")
    assert r.status_code == 409 and "vm_state building" in r.json()["conflictingRequest"]["message"]
    with pytest.raises(exc.ConflictException):
        conn.compute.set_server_metadata(srv, role="x")


def test_stop_start_reboot_call_the_backend(conn, ids, backend):
    srv = conn.compute.wait_for_server(_server(conn, ids), interval=0.01, wait=5)
    conn.compute.stop_server(srv)
    assert conn.compute.get_server(srv.id).status == "SHUTOFF"
    conn.compute.start_server(srv)
    conn.compute.reboot_server(srv, "SOFT")
    assert conn.compute.get_server(srv.id).status == "ACTIVE"
    assert [f for _s, f in backend.faults] == ["poweroff", "poweron", "reboot"]


def test_volume_attachments_through_nova(conn, ids):
    srv = conn.compute.wait_for_server(_server(conn, ids), interval=0.01, wait=5)
    vol = conn.block_storage.wait_for_status(conn.block_storage.create_volume(size=5, name="d"), "available",
                                             interval=0.01, wait=5)
    att = conn.compute.create_volume_attachment(srv, volume_id=vol.id)
    assert (att.volume_id, att.device) == (vol.id, "/dev/vdb")
    listed = list(conn.compute.volume_attachments(srv))
    assert [a.volume_id for a in listed] == [vol.id] and listed[0].attachment_id
    got = conn.compute.get_volume_attachment(srv, vol)
    assert got.device == "/dev/vdb"
    assert [v.id for v in conn.compute.get_server(srv.id).attached_volumes] == [vol.id]
    conn.compute.delete_volume_attachment(srv, vol)
    conn.block_storage.wait_for_status(vol, "available", interval=0.01, wait=5)
    assert list(conn.compute.volume_attachments(srv)) == []


@pytest.mark.parametrize("quota, flavor, message", [
    ({"instances": 1}, "m3.small", "instances"),
    ({"cores": 3}, "m3.large", "cores"),
    ({"ram": 4096}, "m3.medium", "ram"),
])
def test_quota_exceeded_is_403_forbidden(conn, ids, lab, http, quota, flavor, message):
    lab.configure(quotas=quota)
    fid = next(f["id"] for f in lab.state.flavors.values() if f["name"] == flavor)
    if message == "instances":
        _server(conn, ids, name="first")
    with pytest.raises(exc.ForbiddenException, match=f"Quota exceeded for {message}"):
        _server(conn, ids, name="over", flavor_id=fid)
    r = http("POST", "/compute/v2.1/servers", mv="2.96", json={"server": {
        "name": "raw", "imageRef": ids["image"], "flavorRef": fid, "networks": "auto"}})
    assert r.status_code == 403 and r.json()["forbidden"]["code"] == 403


def test_limits_and_quota_sets(conn, ids, lab):
    _server(conn, ids)
    limits = conn.compute.get_limits().absolute
    assert (limits.instances, limits.instances_used, limits.total_cores_used) == (50, 1, 1)
    qs = conn.compute.get_quota_set(lab.state.project_id, usage=True)
    assert qs.instances == 50 and qs.usage["instances"] == 1 and qs.usage["ram"] == 2048
    conn.compute.update_quota_set(lab.state.project_id, instances=7)
    assert conn.compute.get_quota_set(lab.state.project_id).instances == 7


@pytest.mark.parametrize("mv, body, word", [
    ("2.51", {"tags": ["x"]}, "tags"),
    ("2.36", {"networks": "auto"}, "networks"),
    ("2.18", {"description": "x"}, "description"),
])
def test_server_fields_are_gated_by_microversion(http, ids, mv, body, word):
    server = {"name": "g", "imageRef": ids["image"], "flavorRef": ids["flavor"],
              "networks": [{"uuid": ids["network"]}], **body}
    r = http("POST", "/compute/v2.1/servers", mv=mv, json={"server": server})
    assert r.status_code == 400 and word in r.json()["badRequest"]["message"]


def test_networks_required_from_2_37_and_auto_none_accepted(http, ids):
    base = {"name": "n", "imageRef": ids["image"], "flavorRef": ids["flavor"]}
    assert http("POST", "/compute/v2.1/servers", mv="2.37", json={"server": base}).status_code == 400
    assert http("POST", "/compute/v2.1/servers", mv="2.36", json={"server": base}).status_code == 202
    assert http("POST", "/compute/v2.1/servers", mv="2.37", json={"server": {**base, "networks": "none"}}).status_code == 202


def test_keypair_type_and_attachment_delete_on_termination_gates(http, conn, ids):
    r = http("POST", "/compute/v2.1/os-keypairs", mv="2.1", json={"keypair": {"name": "k", "type": "ssh",
                                                                              "public_key": PUB}})
    assert r.status_code == 400
    r = http("POST", "/compute/v2.1/os-keypairs", mv="2.1", json={"keypair": {"name": "k", "public_key": PUB}})
    assert r.status_code == 200 and "type" not in r.json()["keypair"]
    assert http("DELETE", "/compute/v2.1/os-keypairs/k", mv="2.1").status_code == 202
    srv = conn.compute.wait_for_server(_server(conn, ids), interval=0.01, wait=5)
    vol = conn.block_storage.create_volume(size=1)
    conn.block_storage.wait_for_status(vol, "available", interval=0.01, wait=5)
    body = {"volumeAttachment": {"volumeId": vol.id, "delete_on_termination": True}}
    r = http("POST", f"/compute/v2.1/servers/{srv.id}/os-volume_attachments", mv="2.78", json=body)
    assert r.status_code == 400
    r = http("POST", f"/compute/v2.1/servers/{srv.id}/os-volume_attachments", mv="2.79", json=body)
    assert r.status_code == 200 and r.json()["volumeAttachment"]["delete_on_termination"] is True


def test_reply_fields_follow_the_microversion(http, conn, ids):
    srv = _server(conn, ids, tags=["t"])
    old = http("GET", f"/compute/v2.1/servers/{srv.id}", mv="2.1").json()["server"]
    new = http("GET", f"/compute/v2.1/servers/{srv.id}", mv="2.96").json()["server"]
    assert "tags" not in old and "locked" not in old and set(old["flavor"]) == {"id", "links"}
    assert new["tags"] == ["t"] and new["flavor"]["original_name"] == "m3.small"
    assert "pinned_availability_zone" in new
    assert http("GET", f"/compute/v2.1/servers/{srv.id}/tags", mv="2.25").status_code == 404


@pytest.mark.parametrize("field, value, message", [
    ("flavorRef", "nope", "Flavor nope could not be found."),
    ("imageRef", "nope", "Image nope could not be found."),
    ("key_name", "nope", "Invalid key_name provided."),
    ("networks", [{"uuid": "nope"}], "Network nope could not be found."),
    ("user_data", "!!!", "User data needs to be valid base 64."),
])
def test_bad_server_requests_are_400(http, ids, field, value, message):
    server = {"name": "x", "imageRef": ids["image"], "flavorRef": ids["flavor"], "networks": "auto", field: value}
    r = http("POST", "/compute/v2.1/servers", mv="2.96", json={"server": server})
    assert r.status_code == 400 and r.json() == {"badRequest": {"code": 400, "message": message}}


def test_subnet_exhaustion_is_an_error_build(conn, ids, lab):
    lab.state.free_index = lambda: None  # type: ignore[method-assign]
    try:
        srv = _server(conn, ids)
        with pytest.raises(exc.ResourceFailure):
            conn.compute.wait_for_server(srv, interval=0.01, wait=5)
        assert "allocate the network" in conn.compute.get_server(srv.id).fault["message"]
    finally:
        del lab.state.free_index


def test_min_max_count_makes_numbered_servers(http, ids, conn):
    body = {"server": {"name": "multi", "imageRef": ids["image"], "flavorRef": ids["flavor"], "networks": "auto",
                       "min_count": 2, "max_count": 3}}
    assert http("POST", "/compute/v2.1/servers", mv="2.96", json=body).status_code == 202
    assert sorted(s.name for s in conn.compute.servers()) == ["multi-1", "multi-2", "multi-3"]


def test_unknown_server_is_404_in_nova_shape(http):
    r = http("GET", "/compute/v2.1/servers/nope")
    assert r.json() == {"itemNotFound": {"code": 404, "message": "Instance nope could not be found."}}
    assert isinstance(openstack, object)


def test_find_keypair_404_then_list(conn, journal):
    conn.compute.create_keypair(name="k1", public_key=PUB)
    assert conn.compute.find_keypair("missing") is None
    assert journal()[-2:] == ["GET /compute/v2.1/os-keypairs/missing 404", "GET /compute/v2.1/os-keypairs 200"]


def test_parallel_creates_get_distinct_hosts(lab, http, ids):
    from concurrent.futures import ThreadPoolExecutor

    def boot(i):
        body = {"server": {"name": f"par-{i}", "imageRef": ids["image"], "flavorRef": ids["flavor"],
                           "networks": "auto"}}
        return http("POST", "/compute/v2.1/servers", mv="2.96", json=body).status_code

    with ThreadPoolExecutor(10) as pool:
        assert set(pool.map(boot, range(20))) == {202}
    servers = lab.state.servers.values()
    assert sorted(s.index for s in servers) == list(range(1, 21))
    assert len({s.address for s in servers}) == 20 and len(lab.state.ports) == 20
