"""Cinder and Glance through openstacksdk: volumes end to end, quotas (413), microversions, images."""

from __future__ import annotations

import pytest
from openstack import exceptions as exc


def _volume(conn, size=10, name="data"):
    vol = conn.block_storage.create_volume(name=name, size=size, availability_zone="nova")
    assert vol.status == "creating"
    return conn.block_storage.wait_for_status(vol, "available", interval=0.01, wait=5)


def _server(conn, ids, name="vol-host"):
    srv = conn.compute.create_server(name=name, image_id=ids["image"], flavor_id=ids["flavor"],
                                     networks=[{"uuid": ids["network"]}])
    return conn.compute.wait_for_server(srv, interval=0.01, wait=5)


def test_discovery_documents(http):
    r = http("GET", "/volume/v3", token=False)
    v = r.json()["versions"][0]
    assert (v["version"], v["min_version"], v["status"]) == ("3.71", "3.0", "CURRENT")
    assert http("GET", "/volume", token=False).status_code == 300
    r = http("GET", "/image", token=False)
    assert r.status_code == 300 and r.json()["versions"][0]["id"] == "v2.16"


def test_volume_lifecycle(conn, ids, lab, backend, journal):
    vol = _volume(conn)
    assert conn.block_storage.find_volume("data").id == vol.id
    assert f"GET /volume/v3/{lab.state.project_id}/volumes/data 404" in journal()
    assert f"GET /volume/v3/{lab.state.project_id}/volumes/detail?name=data 200" in journal()
    srv = _server(conn, ids)
    conn.compute.create_volume_attachment(srv, volume_id=vol.id)
    vol = conn.block_storage.wait_for_status(vol, "in-use", interval=0.01, wait=5)
    assert vol.attachments[0]["server_id"] == srv.id and vol.attachments[0]["device"] == "/dev/vdb"
    assert ("attach", srv.id, vol.id, 10, "/dev/vdb") in backend.calls
    conn.block_storage.extend_volume(vol, 20)
    assert conn.block_storage.get_volume(vol).size == 20
    assert ("extend", vol.id, 20) in backend.calls
    with pytest.raises(exc.BadRequestException):
        conn.block_storage.delete_volume(vol)                          # attached
    conn.compute.delete_volume_attachment(srv, vol)
    conn.block_storage.wait_for_status(vol, "available", interval=0.01, wait=5)
    conn.block_storage.delete_volume(vol)
    conn.block_storage.wait_for_delete(vol, interval=0.01, wait=5)
    assert ("delete_volume", vol.id) in backend.calls
    assert any(line.startswith(f"DELETE /volume/v3/{lab.state.project_id}/volumes/{vol.id}?cascade=False")
               for line in journal())


def test_volume_transitions_take_volume_seconds(conn, lab, clock):
    lab.configure(volume_seconds=5)
    vol = conn.block_storage.create_volume(size=1)
    assert conn.block_storage.get_volume(vol).status == "creating"
    clock.advance(5)
    assert conn.block_storage.get_volume(vol).status == "available"


def test_extend_in_use_needs_3_42(conn, ids, http, lab):
    vol = _volume(conn)
    conn.compute.create_volume_attachment(_server(conn, ids), volume_id=vol.id)
    conn.block_storage.wait_for_status(vol, "in-use", interval=0.01, wait=5)
    path = f"/volume/v3/{lab.state.project_id}/volumes/{vol.id}/action"
    r = http("POST", path, mv="3.41", json={"os-extend": {"new_size": 11}})
    assert r.status_code == 400 and "badRequest" in r.json()
    assert r.headers["OpenStack-API-Version"] == "volume 3.41"
    assert http("POST", path, mv="3.42", json={"os-extend": {"new_size": 11}}).status_code == 202
    r = http("POST", path, mv="3.71", json={"os-extend": {"new_size": 5}})
    assert r.status_code == 400 and "greater than current size" in r.json()["badRequest"]["message"]


@pytest.mark.parametrize("quota, size, word", [({"volumes": 1}, 1, "VolumeLimitExceeded"),
                                               ({"gigabytes": 15}, 10, "VolumeSizeExceedsAvailableQuota")])
def test_quota_exceeded_is_413_over_limit(conn, lab, http, quota, size, word):
    lab.configure(quotas=quota)
    _volume(conn, size=size, name="first")
    with pytest.raises(exc.HttpException) as err:
        conn.block_storage.create_volume(name="second", size=size)
    assert err.value.status_code == 413
    r = http("POST", f"/volume/v3/{lab.state.project_id}/volumes", json={"volume": {"size": size}})
    assert r.status_code == 413 and r.headers["Retry-After"] == "0"
    assert r.json()["overLimit"]["code"] == 413 and word in r.json()["overLimit"]["message"]


def test_extend_over_quota_is_413(conn, lab):
    vol = _volume(conn, size=10)
    lab.configure(quotas={"gigabytes": 15})
    with pytest.raises(exc.HttpException) as err:
        conn.block_storage.extend_volume(vol, 20)
    assert err.value.status_code == 413


def test_zones_limits_and_quota_sets(conn, lab):
    _volume(conn, size=3)
    zones = list(conn.block_storage.availability_zones())
    assert [z.name for z in zones] == ["nova"]
    limits = conn.block_storage.get_limits()
    assert limits.absolute.total_volumes_used == 1 and limits.absolute.total_gigabytes_used == 3
    qs = conn.block_storage.get_quota_set(lab.state.project_id, usage=True)
    assert qs.volumes == 50 and qs.usage["gigabytes"] == 3
    conn.block_storage.update_quota_set(lab.state.project_id, volumes=9)
    assert conn.block_storage.get_quota_set(lab.state.project_id).volumes == 9


def test_bad_volume_requests(http, lab):
    base = f"/volume/v3/{lab.state.project_id}/volumes"
    assert http("POST", base, json={"volume": {"size": 0}}).status_code == 400
    assert http("POST", base, json={"volume": {"size": 1, "availability_zone": "mars"}}).status_code == 400
    r = http("GET", f"{base}/nope")
    assert r.json() == {"itemNotFound": {"code": 404, "message": "Volume nope could not be found."}}


def test_images_by_name_and_id(conn, journal):
    img = conn.image.find_image("NeCTAR Ubuntu 24.04 LTS (Noble) amd64")
    assert img.status == "active" and img.properties.get("default_user") == "ubuntu"
    assert journal()[-2].endswith(" 404") and "/image/v2/images?name=" in journal()[-1]
    assert conn.image.get_image(img.id).name == img.name
    assert {i.name for i in conn.image.images()} == {"NeCTAR Ubuntu 24.04 LTS (Noble) amd64", "Debian 12 (Bookworm)"}
    assert conn.image.find_image("debian-12") is None
    with pytest.raises(exc.NotFoundException):
        conn.image.get_image("debian-12")


def test_glance_404_is_plain_text_and_images_page(http):
    r = http("GET", "/image/v2/images/debian-12")
    assert r.status_code == 404 and r.text.startswith("404 Not Found\n\nNo image found with ID debian-12")
    page = http("GET", "/image/v2/images?limit=1").json()
    assert len(page["images"]) == 1 and page["next"].startswith("/v2/images?marker=")
