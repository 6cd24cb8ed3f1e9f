"""openstacksdk's cloud layer (conn.create_server, conn.list_servers, ...) against the lab.

create_server(wait=True) polls every 5 s (hard-coded); with build_seconds 0 the
server is ACTIVE at the first poll, so these tests never wait.
"""

from __future__ import annotations

import pytest
from openstack import exceptions as exc

from coursehub.lab.console import parse_host_keys

PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGLTA1NlZdr0BJWdVQfHUP2mpeBN6x0n8PkWpTa2qKan admin@laptop"


def _boot(conn, name, **kw):
    return conn.create_server(name, image="Debian 12 (Bookworm)", flavor="m3.small", network="lab", wait=True,
                              timeout=30, **kw)


def test_create_list_search_get_console_delete(conn, lab, backend, journal):
    conn.create_keypair("coursehub", public_key=PUB)
    conn.create_security_group("coursehub", "CourseHub hosts")
    srv = _boot(conn, "dep-1", key_name="coursehub", security_groups=["coursehub"], meta={"coursehub-role": "head"},
                userdata="#cloud-config\n")
    assert srv.status == "ACTIVE" and srv.private_v4 == "10.77.0.11" and srv.metadata["coursehub-role"] == "head"
    assert "GET /compute/v2.1/flavors/m3.small 404" in journal()
    assert any(line.startswith("GET /network/v2.0/ports?device_id=") for line in journal())
    assert backend.servers[srv.id].user_data == b"#cloud-config\n"
    _boot(conn, "dep-2")
    assert sorted(s.name for s in conn.list_servers()) == ["dep-1", "dep-2"]
    assert sorted(s.name for s in conn.search_servers("dep-*")) == ["dep-1", "dep-2"]
    assert conn.get_server("dep-1").id == srv.id
    assert "GET /compute/v2.1/servers/detail?name=dep-1 200" in journal()
    console = conn.get_server_console(srv)
    assert sorted(parse_host_keys(console)) == sorted(backend.host_keys[srv.id].lines)
    assert conn.delete_server("dep-1", wait=True, timeout=10) is True
    assert conn.get_server("dep-1") is None
    assert [s.name for s in conn.list_servers()] == ["dep-2"]


def test_volumes_attach_detach_delete(conn, backend):
    srv = _boot(conn, "v-host")
    vol = conn.create_volume(10, name="data", wait=True, timeout=10)
    assert vol.status == "available" and conn.get_volume("data").id == vol.id
    conn.attach_volume(srv, vol, wait=True, timeout=10)
    assert [v.id for v in conn.get_volumes(srv)] == [vol.id]
    assert conn.get_volume(vol.id).status == "in-use"
    conn.detach_volume(srv, vol, wait=True, timeout=10)
    assert conn.delete_volume(vol.id, wait=True, timeout=10) is True
    assert conn.get_volume("data") is None
    assert [c[0] for c in backend.calls if c[0] in ("attach", "detach", "delete_volume")] == \
        ["attach", "detach", "delete_volume"]


def test_security_groups_and_rules(conn):
    sg = conn.create_security_group("web", "web hosts")
    rule = conn.create_security_group_rule(sg.id, port_range_min=443, port_range_max=443, protocol="tcp",
                                           remote_ip_prefix="0.0.0.0/0")
    conn.create_security_group_rule(sg.id, remote_group_id=sg.id)
    with pytest.raises(exc.ConflictException):
        conn.create_security_group_rule(sg.id, port_range_min=443, port_range_max=443, protocol="tcp",
                                        remote_ip_prefix="0.0.0.0/0")
    got = conn.get_security_group("web")
    assert rule.id in {r["id"] for r in got.security_group_rules} and len(got.security_group_rules) == 4
    assert conn.delete_security_group("web") is True
    assert conn.get_security_group("web") is None


def test_keypairs_flavors_images_networks_zones(conn):
    kp = conn.create_keypair("k", public_key=PUB)
    assert conn.get_keypair("k").fingerprint == kp.fingerprint
    with pytest.raises(exc.ConflictException):
        conn.create_keypair("k", public_key=PUB)
    assert conn.delete_keypair("k") is True
    assert {f.name for f in conn.list_flavors()} == {"m3.small", "m3.medium", "m3.large", "m3.xlarge"}
    assert conn.get_flavor("m3.large").vcpus == 4
    assert conn.get_image("Debian 12 (Bookworm)").status == "active"
    assert conn.get_network("lab").subnet_ids
    assert conn.list_availability_zone_names() == ["nova"]
    assert [z.name for z in conn.block_storage.availability_zones()] == ["nova"]


def test_limits_and_quotas(conn, lab):
    _boot(conn, "q")
    conn.create_volume(2, wait=True, timeout=10)
    assert conn.get_compute_limits().total_cores_used == 1
    assert conn.get_volume_limits().absolute.total_gigabytes_used == 2
    assert conn.get_compute_quotas("coursehub").instances == 50
    assert conn.get_volume_quotas("coursehub").gigabytes == 2000
    assert conn.get_network_quotas("coursehub", details=True).security_groups["used"] == 1


def test_error_build_and_quota_through_the_cloud_layer(conn, lab):
    lab.configure(error_names="^broken")
    with pytest.raises(exc.SDKException):
        _boot(conn, "broken-1")
    lab.configure(quotas={"instances": 1})
    with pytest.raises(exc.ForbiddenException):
        _boot(conn, "second")


def test_cloud_get_flavor_reads_extra_specs(conn, journal):
    flavor = conn.get_flavor("m3.medium")
    assert flavor.ram == 8192
    assert f"GET /compute/v2.1/flavors/{flavor.id}/os-extra_specs 200" in journal()
