"""Inventory files: round trips, hand-written hosts.yml, and OpenSSH accepting ssh_config."""

from __future__ import annotations

import subprocess

import pytest

from coursehub import inventory
from coursehub.inventory import Host, Inventory, InventoryError, Volume

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHc0mRs1Wq0p3vA8tq3w3V7y0Ui2vS1cK0y8vYbqR2mE root@h1"


def sample(tmp_path) -> Inventory:
    return Inventory(
        dir=tmp_path / "inventory",
        identity_file=str(tmp_path / "id_ed25519"),
        hosts=[
            Host("coursehub-1", "10.77.0.11", user="debian", roles=["head", "storage"], host_keys=[KEY],
                 volumes=[Volume("0b3c9f", "coursehub-1-data", 30, "data", "/dev/vdb")],
                 metadata={"coursehub_role": "head"}, server_id="abc"),
            Host("coursehub-2", "10.77.0.12", user="debian", port=2222, host_keys=[KEY]),
        ],
    )


def test_write_then_load_round_trip(tmp_path):
    inv = sample(tmp_path)
    inventory.write(inv)
    back = inventory.load(inv.dir)
    assert back.hosts == inv.hosts
    assert back.identity_file == inv.identity_file
    assert back.head().name == "coursehub-1"
    assert [h.name for h in back.select(role="storage")] == ["coursehub-1"]
    assert [h.name for h in back.select("coursehub-2")] == ["coursehub-2"]


def test_known_hosts_lists_name_and_address_with_port(tmp_path):
    inv = sample(tmp_path)
    inventory.write(inv)
    lines = inv.known_hosts.read_text().splitlines()[1:]
    assert lines[0] == "coursehub-1,10.77.0.11 " + " ".join(KEY.split()[:2])
    assert lines[1].startswith("[coursehub-2]:2222,[10.77.0.12]:2222 ssh-ed25519 ")


def test_openssh_accepts_the_ssh_config(tmp_path):
    inv = sample(tmp_path)
    inventory.write(inv)
    out = subprocess.run(["ssh", "-G", "-F", str(inv.ssh_config), "coursehub-2"], capture_output=True, text=True,
                         check=True).stdout
    conf = dict(line.split(" ", 1) for line in out.splitlines())
    assert conf["hostname"] == "10.77.0.12"
    assert conf["user"] == "debian"
    assert conf["port"] == "2222"
    assert conf["stricthostkeychecking"] == "true"
    assert conf["userknownhostsfile"] == str(inv.known_hosts.resolve())
    assert conf["identityfile"] == str((tmp_path / "id_ed25519").resolve())


def test_hand_written_hosts_yml_gets_its_ssh_files(tmp_path):
    d = tmp_path / "inv"
    d.mkdir()
    (d / "hosts.yml").write_text(
        "hosts:\n"
        "  - name: lecture-box\n"
        "    address: 192.0.2.10\n"
        "    user: ubuntu\n"
        "    roles: [head]\n"
        f"    host_keys: ['{KEY}']\n"
    )
    inv = inventory.load(d)
    assert inv.head().user == "ubuntu"
    assert "Host lecture-box" in (d / "ssh_config").read_text()
    assert "lecture-box,192.0.2.10 ssh-ed25519" in (d / "known_hosts").read_text()


@pytest.mark.parametrize(
    "text, message",
    [
        ("hosts: 5\n", "expected a mapping with a 'hosts' list"),
        ("hosts:\n  - name: a\n", "hosts[0].address: required text is missing"),
        ("hosts:\n  - {name: 'a b', address: 10.0.0.1}\n", "hosts[0].name: invalid host name 'a b'"),
        ("hosts:\n  - {name: a, address: 10.0.0.1, port: 0}\n", "hosts[0].port: expected a TCP port, got 0"),
        ("hosts:\n  - {name: a, address: 10.0.0.1, roles: [boss]}\n", "hosts[0].roles: expected a list of head"),
        ("hosts:\n  - {name: a, address: 10.0.0.1, host_keys: [nope]}\n", "hosts[0].host_keys: expected OpenSSH"),
        ("hosts:\n  - {name: a, address: 10.0.0.1, colour: red}\n", "hosts[0].colour: unknown key"),
        ("hosts:\n  - {name: a, address: 10.0.0.1}\n  - {name: a, address: 10.0.0.2}\n", "hosts[1].name: duplicate host 'a'"),
        ("hosts: [\n", "not valid YAML"),
    ],
)
def test_bad_hosts_yml_is_one_clear_line(tmp_path, text, message):
    (tmp_path / "hosts.yml").write_text(text)
    with pytest.raises(InventoryError) as e:
        inventory.load(tmp_path)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith(str(tmp_path / "hosts.yml"))


def test_missing_inventory_says_what_to_do(tmp_path):
    with pytest.raises(InventoryError, match="run `inv provision`"):
        inventory.load(tmp_path)


def test_selection_errors(tmp_path):
    inv = sample(tmp_path)
    with pytest.raises(InventoryError, match="no host named 'nope'"):
        inv.select("nope")
    with pytest.raises(InventoryError, match="unknown role 'gpu'"):
        inv.select(role="gpu")


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path):
    inv = sample(tmp_path)
    inventory.write(inv)
    inventory.write(inv)
    assert sorted(p.name for p in inv.dir.iterdir()) == ["hosts.yml", "known_hosts", "ssh_config"]
