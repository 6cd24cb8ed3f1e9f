"""The provisioning planner and the console-log host-key parser (pure functions, no cloud)."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from coursehub import settings
from coursehub.cloud import names
from coursehub.cloud.hostkeys import fingerprint, parse_host_keys
from coursehub.cloud.plan import CloudState, PlanError, Rule, RuleInfo, ServerInfo, VolumeInfo, plan, wanted_rules

BASE = {"instances": {"flavor": "m3.small", "image": "img", "count": 3}, "network": {"admin_cidr": "192.0.2.0/24"},
        "users": {"auth": "dummy"}, "deployment": "ch"}


def cfg(**over):
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in BASE.items()}
    for key, value in over.items():
        section, _, field = key.partition("__")
        data.setdefault(section, {})[field] = value
    return settings.from_dict(data)


def server(i, roles=("compute",), status="ACTIVE"):
    return ServerInfo(id=f"id{i}", name=f"ch-{i}", index=i, status=status, roles=tuple(roles))


def full_state(n=3):
    s = cfg()
    sg_rules = [RuleInfo(f"r{i}", r) for i, r in enumerate(wanted_rules(s))]
    servers = [server(1, ("head",))] + [server(i) for i in range(2, n + 1)]
    vols = [VolumeInfo(f"v{i}", f"ch-{i}-data", 30, "in-use", [f"id{i}"]) for i in range(1, n + 1)]
    return CloudState(keypair=True, security_group_id="sg", rules=sg_rules, servers=servers, volumes=vols)


def test_first_run_creates_everything_and_makes_index_1_the_head():
    p = plan(cfg(), CloudState())
    assert p.keypair and p.security_group
    assert [w.name for w in p.servers] == ["ch-1", "ch-2", "ch-3"]
    assert p.servers[0].roles == ("head",) and p.servers[1].roles == ("compute",)
    assert p.servers[0].metadata("ch") == {names.DEPLOYMENT: "ch", names.INDEX: "1", names.ROLES: "head"}
    assert [v[0] for v in p.volumes] == ["ch-1-data", "ch-2-data", "ch-3-data"]
    assert ("ch-2", "ch-2-data") in p.attach
    assert len(p.add_rules) == 4 and not p.remove


def test_converged_state_plans_nothing():
    p = plan(cfg(), full_state())
    assert p.changes == 0 and not p.servers and not p.volumes and not p.attach
    assert "server ch-1 (head, ACTIVE)" in p.keep


def test_rules_ssh_only_from_admin_range():
    rules = wanted_rules(cfg())
    assert rules[0] == Rule("tcp", 22, 22, "192.0.2.0/24")
    assert Rule("tcp", 80, 80, "0.0.0.0/0") in rules and Rule("tcp", 443, 443, "0.0.0.0/0") in rules
    assert Rule(None, None, None, None, remote_group=True) in rules and len(rules) == 4


def test_stray_rule_is_removed_and_changed_admin_range_replaced():
    st = full_state()
    st.rules.append(RuleInfo("stray", Rule("tcp", 8443, 8443, "0.0.0.0/0")))
    p = plan(cfg(network__admin_cidr="198.51.100.0/24"), st)
    assert {r.id for r in p.remove_rules} == {"stray", "r0"}
    assert p.add_rules == [Rule("tcp", 22, 22, "198.51.100.0/24")]


def test_scale_up_adds_compute_nodes_and_keeps_the_head():
    p = plan(cfg(instances__count=5), full_state())
    assert [(w.name, w.roles) for w in p.servers] == [("ch-4", ("compute",)), ("ch-5", ("compute",))]


def test_scale_up_fills_a_gap_first():
    st = full_state()
    st.servers = [x for x in st.servers if x.index != 2]
    st.volumes = [v for v in st.volumes if v.name != "ch-2-data"]
    p = plan(cfg(), st)
    assert [w.name for w in p.servers] == ["ch-2"]


def test_scale_down_needs_remove_and_takes_newest_non_head():
    with pytest.raises(PlanError, match=r"removing ch-3 needs --remove \(drain them first"):
        plan(cfg(instances__count=2), full_state())
    p = plan(cfg(instances__count=1), full_state(), allow_remove=True)
    assert [x.name for x in p.remove_servers] == ["ch-3", "ch-2"]
    assert {v.name for v in p.remove_volumes} == {"ch-2-data", "ch-3-data"}


def test_head_is_never_moved_or_reelected():
    st = full_state()
    st.servers = [server(1), server(2), server(3)]
    with pytest.raises(PlanError, match="none is marked head"):
        plan(cfg(), st)
    st.servers = [server(1, ("head",)), server(2, ("head",))]
    with pytest.raises(PlanError, match="more than one server is marked head"):
        plan(cfg(), st)


def test_head_not_first_index_keeps_its_role():
    st = full_state()
    st.servers = [server(1), server(2, ("head",)), server(3)]
    p = plan(cfg(instances__count=4), st)
    assert p.servers[0].roles == ("compute",)


def test_volumes_only_on_first_nodes_and_storage_disks():
    p = plan(cfg(volumes__nodes=1, volumes__storage_gb=55), CloudState())
    assert [(v[0], v[1], v[2]) for v in p.volumes] == [("ch-1-data", "data", 30), ("ch-1-storage", "storage", 55)]
    assert p.servers[0].roles == ("head", "storage") and p.servers[1].roles == ("compute",)


def test_volume_attached_elsewhere_is_an_error():
    st = full_state()
    st.volumes[1] = dataclasses.replace(st.volumes[1], attached_to=["someone-else"])
    with pytest.raises(PlanError, match="ch-2-data is attached to another server"):
        plan(cfg(), st)


def test_unattached_volume_is_attached_not_recreated():
    st = full_state()
    st.volumes[2] = dataclasses.replace(st.volumes[2], attached_to=[], status="available")
    p = plan(cfg(), st)
    assert p.attach == [("ch-3", "ch-3-data")] and not p.volumes


# ----------------------------------------------------------------------------- host keys
KEY_B64 = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + bytes(range(32))).decode()


def console(fp=None, prefix=""):
    fp = fp or fingerprint(KEY_B64)
    return "\n".join([
        "[   2.1] cloud-init[812]: Cloud-init v. 24.1 running",
        f"{prefix}-----BEGIN SSH HOST KEY FINGERPRINTS-----",
        f"{prefix}256 SHA256:{fp} root@ch-1 (ED25519)",
        f"{prefix}-----END SSH HOST KEY FINGERPRINTS-----",
        "-----BEGIN SSH HOST KEY KEYS-----",
        f"ssh-ed25519 {KEY_B64} root@ch-1",
        "-----END SSH HOST KEY KEYS-----",
    ])


@pytest.mark.parametrize("prefix", ["", "ec2: ", "ci-info: "])
def test_parse_host_keys(prefix):
    assert parse_host_keys(console(prefix=prefix)) == [f"ssh-ed25519 {KEY_B64}"]


def test_key_whose_fingerprint_is_not_printed_is_not_trusted():
    assert parse_host_keys(console(fp="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")) == []


def test_no_block_no_keys():
    assert parse_host_keys("booting...\nlogin:") == []
    assert parse_host_keys("-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 AAAA") == []
