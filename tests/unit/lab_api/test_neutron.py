"""Neutron through openstacksdk: networks, subnets, ports, security groups and rules, quotas."""

from __future__ import annotations

import pytest
from openstack import exceptions as exc


def test_find_network_404_by_name_then_filtered_list(conn, lab, journal):
    net = conn.network.find_network("lab")
    assert net.subnet_ids == [lab.state.subnet_record["id"]]
    assert journal()[-2:] == ["GET /network/v2.0/networks/lab 404", "GET /network/v2.0/networks?name=lab 200"]
    sub = conn.network.find_subnet("lab-subnet")
    assert (sub.cidr, sub.gateway_ip, sub.ip_version) == ("10.77.0.0/24", "10.77.0.1", 4)
    assert conn.network.find_network("nope") is None


def test_not_found_body_is_neutron_shaped(http):
    r = http("GET", "/network/v2.0/networks/private")
    assert r.status_code == 404
    assert r.json() == {"NeutronError": {"type": "NetworkNotFound", "message": "Network private could not be found.",
                                         "detail": ""}}


def test_ports_follow_servers(conn, ids):
    srv = conn.compute.create_server(name="p", image_id=ids["image"], flavor_id=ids["flavor"],
                                     networks=[{"uuid": ids["network"]}])
    ports = list(conn.network.ports(device_id=srv.id))
    assert len(ports) == 1 and ports[0].fixed_ips[0]["ip_address"] == "10.77.0.11"
    assert ports[0].mac_address == "02:77:00:00:00:01" and ports[0].device_owner == "compute:nova"
    assert list(conn.network.ips(port_id=ports[0].id)) == []
    default = conn.network.find_security_group("default")
    assert ports[0].security_group_ids == [default.id]
    conn.compute.delete_server(srv)
    conn.compute.wait_for_delete(srv, interval=0.01, wait=5)
    assert list(conn.network.ports(device_id=srv.id)) == []


def test_security_group_gets_two_egress_rules(conn, journal):
    sg = conn.network.create_security_group(name="coursehub", description="CourseHub hosts")
    assert journal()[-1] == "POST /network/v2.0/security-groups 201"
    rules = sg.security_group_rules
    assert sorted((r["direction"], r["ethertype"]) for r in rules) == [("egress", "IPv4"), ("egress", "IPv6")]
    assert conn.network.find_security_group("coursehub").id == sg.id
    assert "GET /network/v2.0/security-groups/coursehub 404" in journal()


def test_rules_duplicates_remote_group_and_delete(conn, journal):
    sg = conn.network.create_security_group(name="coursehub", description="")
    rules = []
    for port in (22, 80, 443):
        rules.append(conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol="tcp",
            port_range_min=port, port_range_max=port, remote_ip_prefix="0.0.0.0/0"))
    internal = conn.network.create_security_group_rule(security_group_id=sg.id, direction="ingress",
                                                       ethertype="IPv4", remote_group_id=sg.id)
    assert internal.remote_group_id == sg.id and internal.protocol is None
    with pytest.raises(exc.ConflictException, match="already exists"):
        conn.network.create_security_group_rule(
            security_group_id=sg.id, direction="ingress", ethertype="IPv4", protocol="tcp",
            port_range_min=22, port_range_max=22, remote_ip_prefix="0.0.0.0/0")
    assert journal()[-1] == "POST /network/v2.0/security-group-rules 409"
    listed = list(conn.network.security_group_rules(security_group_id=sg.id))
    assert len(listed) == 6
    assert conn.network.get_security_group_rule(rules[0].id).port_range_min == 22
    conn.network.delete_security_group_rule(rules[0])
    assert len(list(conn.network.security_group_rules(security_group_id=sg.id))) == 5
    conn.network.delete_security_group(sg)
    assert conn.network.find_security_group("coursehub") is None
    assert list(conn.network.security_group_rules(security_group_id=sg.id)) == []


def test_duplicate_rule_body_and_equivalent_prefixes(conn, http):
    sg = conn.network.create_security_group(name="dup")
    body = {"security_group_rule": {"security_group_id": sg.id, "direction": "egress", "ethertype": "IPv4",
                                    "remote_ip_prefix": "0.0.0.0/0"}}
    r = http("POST", "/network/v2.0/security-group-rules", json=body)   # same as the default egress rule
    assert r.status_code == 409
    err = r.json()["NeutronError"]
    assert err["type"] == "SecurityGroupRuleExists" and err["message"].startswith("Security group rule already exists.")


@pytest.mark.parametrize("rule, kind", [
    ({"direction": "sideways"}, "HTTPBadRequest"),
    ({"port_range_min": 22, "port_range_max": 22}, "SecurityGroupProtocolRequiredWithPorts"),
    ({"protocol": "tcp", "port_range_min": 90, "port_range_max": 80}, "SecurityGroupInvalidPortRange"),
    ({"protocol": "tcp", "remote_ip_prefix": "::/0"}, "SecurityGroupRuleParameterConflict"),
    ({"protocol": "bogus"}, "SecurityGroupRuleInvalidProtocol"),
])
def test_bad_rules_are_400(conn, http, rule, kind):
    sg = conn.network.create_security_group(name="bad")
    body = {"security_group_rule": {"security_group_id": sg.id, "direction": "ingress", **rule}}
    r = http("POST", "/network/v2.0/security-group-rules", json=body)
    assert r.status_code == 400 and r.json()["NeutronError"]["type"] == kind


def test_security_group_in_use_and_default_cannot_go(conn, ids):
    sg = conn.network.create_security_group(name="web")
    conn.compute.create_server(name="w", image_id=ids["image"], flavor_id=ids["flavor"],
                               networks=[{"uuid": ids["network"]}], security_groups=[{"name": "web"}])
    with pytest.raises(exc.ConflictException, match="in use"):
        conn.network.delete_security_group(sg)
    with pytest.raises(exc.ConflictException):
        conn.network.delete_security_group(conn.network.find_security_group("default"))


def test_quotas_are_409_over_quota(conn, lab, http):
    lab.configure(quotas={"security_group": 2})        # "default" is the first
    conn.network.create_security_group(name="one")
    with pytest.raises(exc.ConflictException, match="Quota exceeded"):
        conn.network.create_security_group(name="two")
    r = http("POST", "/network/v2.0/security-groups", json={"security_group": {"name": "two"}})
    assert r.json()["NeutronError"]["type"] == "OverQuota"
    sg = conn.network.find_security_group("one")
    lab.configure(quotas={"security_group_rule": len(lab.state.rules)})
    with pytest.raises(exc.ConflictException, match="security_group_rule"):
        conn.network.create_security_group_rule(security_group_id=sg.id, direction="ingress", protocol="tcp",
                                                port_range_min=22, port_range_max=22)


def test_quota_details_and_update(conn, lab):
    details = conn.network.get_quota(lab.state.project_id, details=True)
    assert details.security_groups == {"limit": 10, "used": 1, "reserved": 0}
    conn.network.update_quota(lab.state.project_id, security_groups=4)
    assert conn.network.get_quota(lab.state.project_id).security_groups == 4


def test_pagination_and_fields(conn, http):
    for i in range(4):
        conn.network.create_security_group(name=f"g{i}")
    names = [g.name for g in conn.network.security_groups(limit=2)]
    assert sorted(names) == ["default", "g0", "g1", "g2", "g3"]
    r = http("GET", "/network/v2.0/security-groups?limit=2&fields=id&fields=name")
    assert set(r.json()["security_groups"][0]) == {"id", "name"}
    assert r.json()["security_groups_links"][0]["rel"] == "next"


def test_extensions_and_root(http):
    assert http("GET", "/network", token=False).json()["versions"][0]["id"] == "v2.0"
    aliases = {e["alias"] for e in http("GET", "/network/v2.0/extensions").json()["extensions"]}
    assert {"security-group", "quotas", "quota_details"} <= aliases
