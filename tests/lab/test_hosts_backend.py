"""The hosts backend against real hosts: SSH, systemd, network, volumes, faults, proxy, teardown."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.lab.labkit import CAN_RUN_LAB, SKIP_REASON, USER, Lab, LabHost, make_spec, write_known_hosts

pytestmark = [pytest.mark.lab, pytest.mark.skipif(not CAN_RUN_LAB, reason=SKIP_REASON)]


def _banner(host: LabHost) -> bool:
    from coursehub.lab.hosts import ssh_banner

    return ssh_banner(host.spec.address, timeout=1.0)


def _wait(pred, timeout: float = 30.0, step: float = 0.1) -> bool:  # noqa: ANN001
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return False


# ---------------------------------------------------------------- identity and access


def test_ssh_as_image_user_with_strict_host_keys(lab: Lab) -> None:
    for h in lab.hosts:
        out = lab.run(h, "hostname; id -un; sudo -n true && echo sudo-ok; stat -c '%a %U' ~/.ssh/authorized_keys")
        assert out.splitlines() == [h.spec.name, USER, "sudo-ok", f"600 {USER}"]


def test_root_login_with_the_keypair(lab: Lab) -> None:
    assert lab.run(lab.hosts[0], "id -u", user="root") == "0"


def test_changed_host_key_is_refused(lab: Lab, tmp_path: Path) -> None:
    a, b = lab.hosts[0], lab.hosts[1]
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"{a.spec.address} {b.keys.lines[0]}\n")  # b's key claimed for a
    argv = [x.replace(str(lab.known_hosts), str(wrong)) for x in lab.ssh_argv(a)]
    r = subprocess.run([*argv, "true"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 255
    assert "HOST IDENTIFICATION HAS CHANGED" in r.stderr or "Host key verification failed" in r.stderr


def test_host_keys_are_per_host_ed25519(lab: Lab) -> None:
    lines = [h.keys.lines for h in lab.hosts]
    assert all(len(ls) == 1 and ls[0].startswith("ssh-ed25519 ") for ls in lines)
    assert len({ls[0].split()[1] for ls in lines}) == len(lines)
    served = lab.run(lab.hosts[0], "cat /etc/ssh/ssh_host_ed25519_key.pub").split()[:2]
    assert served == lab.hosts[0].keys.lines[0].split()[:2]


def test_systemd_is_pid1_and_running(lab: Lab) -> None:
    for h in lab.hosts:
        out = lab.run(h, "cat /proc/1/comm; systemd-detect-virt; systemctl is-system-running --wait; "
                         "systemctl --failed --no-legend --plain | wc -l")
        assert out.splitlines() == ["systemd", "systemd-nspawn", "running", "0"]
    # systemctl works for the image user through sudo
    assert lab.run(lab.hosts[0], "sudo systemctl restart ssh && systemctl is-active ssh") == "active"


# ---------------------------------------------------------------- network and safety


def test_hosts_reach_each_other_by_name(lab: Lab) -> None:
    out = lab.run(lab.hosts[0], "ping -c1 -W2 node2 >/dev/null && ping -c1 -W2 node3 >/dev/null && echo ok")
    assert out == "ok"


def test_no_route_out_no_dns_no_clock(lab: Lab) -> None:
    h = lab.hosts[0]
    assert "default" not in lab.run(h, "ip route; ip -6 route")
    assert lab.run(h, "cat /etc/resolv.conf | grep -c nameserver || true") == "0"
    # the guest may not set this machine's clock or load modules
    bnd = int(lab.run(h, "grep CapBnd /proc/1/status").split()[1], 16)
    assert not bnd & (1 << 25), "CAP_SYS_TIME must be dropped"
    assert not bnd & (1 << 16), "CAP_SYS_MODULE must be dropped"
    r = lab.ssh(h, "sudo date -s '2001-01-01 00:00:00'")
    assert r.returncode != 0 and "not permitted" in r.stderr
    assert time.gmtime().tm_year > 2001
    conf = lab.run(h, "cat /etc/systemd/timesyncd.conf.d/*.conf")
    assert "NTP=10.77.0.1" in conf and re.search(r"^FallbackNTP=$", conf, re.M)


def test_apt_and_pip_through_the_proxy_others_refused(lab: Lab) -> None:
    h = lab.hosts[1]
    r = lab.ssh(h, "sudo apt-get update -q", timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Err:" not in r.stdout
    codes = lab.run(h, "curl -s -o /dev/null -w '%{http_code}\\n' -x http://10.77.0.1:3142 http://example.com/; "
                       "curl -s -o /dev/null -w '%{http_code}\\n' -x http://10.77.0.1:3142 https://example.com/ || true")
    assert codes.splitlines()[0] == "403"
    assert codes.splitlines()[1] in ("403", "000")  # curl reports the refused CONNECT as 000 or 403
    # pip, configured by the lab (proxy and this machine's index), through CONNECT tunnels
    if lab.backend.proxy.allow.connect:  # type: ignore[attr-defined]
        r = lab.ssh(h, "python3 -m venv /tmp/v && /tmp/v/bin/pip download -q --no-deps -d /tmp/dl six && ls /tmp/dl",
                    timeout=120)
        assert r.returncode == 0 and ".whl" in r.stdout, r.stdout + r.stderr
        assert lab.backend.proxy.counts["tunnels"] >= 1  # type: ignore[attr-defined]
    assert lab.backend.proxy.counts["denied"] >= 2  # type: ignore[attr-defined]


def test_proxy_denies_from_the_machine_too(lab: Lab) -> None:
    proxy = urllib.request.ProxyHandler({"http": "http://10.77.0.1:3142"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.build_opener(proxy).open("http://example.invalid/", timeout=10)
    assert e.value.code == 403


# ---------------------------------------------------------------- volumes


def test_volume_format_mount_extend_detach(lab: Lab) -> None:
    b, h = lab.backend, lab.hosts[2]
    b.attach(h.spec.id, "vol-a", 1, "/dev/vdb")  # type: ignore[attr-defined]
    lab.run(h, "sudo mkfs.xfs -q /dev/vdb && sudo mkdir -p /mnt/data && sudo mount /dev/vdb /mnt/data && "
               "echo hello | sudo tee /mnt/data/f >/dev/null && sync")
    size = lambda: int(lab.run(h, "sudo blockdev --getsize64 /dev/vdb"))  # noqa: E731
    assert size() == 1024**3
    b.extend("vol-a", 2)  # type: ignore[attr-defined]
    assert size() == 2 * 1024**3
    lab.run(h, "sudo xfs_growfs /mnt/data >/dev/null")
    assert int(lab.run(h, "df --output=size -B1M /mnt/data | tail -1")) > 1500
    lab.run(h, "sudo umount /mnt/data")
    b.detach(h.spec.id, "vol-a")  # type: ignore[attr-defined]
    assert lab.ssh(h, "test -e /dev/vdb").returncode == 1
    # the data stays with the volume: attach it to another host as /dev/vdc
    other = lab.hosts[0]
    b.attach(other.spec.id, "vol-a", 2, "/dev/vdc")  # type: ignore[attr-defined]
    assert lab.run(other, "sudo mount /dev/vdc /mnt && cat /mnt/f && sudo umount /mnt") == "hello"
    b.detach(other.spec.id, "vol-a")  # type: ignore[attr-defined]
    b.delete_volume("vol-a")  # type: ignore[attr-defined]
    assert not list((lab.dir / "volumes").glob("vol-a*"))


def test_volume_node_comes_back_after_reboot(lab: Lab) -> None:
    b, h = lab.backend, lab.hosts[2]
    b.attach(h.spec.id, "vol-r", 1, "/dev/vdd")  # type: ignore[attr-defined]
    old = lab.run(h, "cat /proc/sys/kernel/random/boot_id")
    b.fault(h.spec.id, "reboot")  # type: ignore[attr-defined]
    assert b.wait_ready([h.spec.id], 60)[h.spec.id] is True  # type: ignore[attr-defined]
    assert lab.run(h, "cat /proc/sys/kernel/random/boot_id") != old
    assert lab.run(h, "test -b /dev/vdd && echo yes") == "yes"
    b.delete_volume("vol-r")  # type: ignore[attr-defined]
    assert lab.ssh(h, "test -e /dev/vdd").returncode == 1


# ---------------------------------------------------------------- faults


def test_freeze_and_thaw(lab: Lab) -> None:
    b, h = lab.backend, lab.hosts[1]
    b.fault(h.spec.id, "freeze")  # type: ignore[attr-defined]
    try:
        assert not _banner(h)
    finally:
        b.fault(h.spec.id, "thaw")  # type: ignore[attr-defined]
    assert _wait(lambda: _banner(h), 10)
    assert lab.run(h, "echo back") == "back"


def test_stop_and_start_sshd(lab: Lab) -> None:
    b, h = lab.backend, lab.hosts[1]
    b.fault(h.spec.id, "stop-sshd")  # type: ignore[attr-defined]
    r = lab.ssh(h, "true")
    assert r.returncode == 255 and "refused" in r.stderr
    b.fault(h.spec.id, "start-sshd")  # type: ignore[attr-defined]
    assert lab.run(h, "echo back") == "back"


def test_cut_and_heal_the_link(lab: Lab) -> None:
    b, h = lab.backend, lab.hosts[1]
    b.fault(h.spec.id, "cut")  # type: ignore[attr-defined]
    try:
        assert not _banner(h)
        assert lab.ssh(lab.hosts[0], "ping -c1 -W1 node2 >/dev/null").returncode != 0
    finally:
        b.fault(h.spec.id, "heal")  # type: ignore[attr-defined]
    assert _wait(lambda: _banner(h), 10)


def test_poweroff_and_poweron_keep_the_disk(lab: Lab) -> None:
    b, h = lab.backend, lab.hosts[1]
    lab.run(h, "echo kept | sudo tee /var/tmp/marker >/dev/null && sync")
    hd = b.host_dir(h.spec.id)  # type: ignore[attr-defined]
    b.fault(h.spec.id, "poweroff")  # type: ignore[attr-defined]
    assert b.ready(h.spec.id) is False  # type: ignore[attr-defined]
    assert hd.alive() == [] and not _banner(h)
    b.fault(h.spec.id, "poweron")  # type: ignore[attr-defined]
    assert b.wait_ready([h.spec.id], 60)[h.spec.id] is True  # type: ignore[attr-defined]
    assert lab.run(h, "cat /var/tmp/marker") == "kept"


def test_reboot_changes_boot_id(lab: Lab) -> None:
    b, h = lab.backend, lab.hosts[0]
    old = lab.run(h, "cat /proc/sys/kernel/random/boot_id")
    b.fault(h.spec.id, "reboot")  # type: ignore[attr-defined]
    assert b.wait_ready([h.spec.id], 60)[h.spec.id] is True  # type: ignore[attr-defined]
    assert lab.run(h, "cat /proc/sys/kernel/random/boot_id") != old
    assert lab.run(h, "systemctl is-system-running --wait") == "running"


# ---------------------------------------------------------------- removal


def test_delete_server_removes_everything_of_it(lab: Lab, client_key: tuple[Path, str]) -> None:
    from coursehub.lab import loopdev, net

    b = lab.backend
    spec = make_spec(4, client_key[1], 4)
    keys = b.create(spec)  # type: ignore[attr-defined]
    assert b.wait_ready([spec.id], 60)[spec.id] is True  # type: ignore[attr-defined]
    host = LabHost(spec, keys)
    write_known_hosts(lab.known_hosts, [*lab.hosts, host])
    b.attach(spec.id, "vol-d", 1, "/dev/vdb")  # type: ignore[attr-defined]
    assert lab.run(host, "test -b /dev/vdb && hostname") == "node4"
    hd = b.host_dir(spec.id)  # type: ignore[attr-defined]
    pids = hd.alive()
    assert pids
    b.delete(spec.id)  # type: ignore[attr-defined]
    assert b.ready(spec.id) is None  # type: ignore[attr-defined]
    assert "lab-h4" not in net.lab_netns() and "lv-h4" not in net.lab_links()
    assert not hd.path.exists()
    assert all(not Path(f"/proc/{p}").exists() or Path(f"/proc/{p}/stat").read_text().split()[2] == "Z" for p in pids)
    assert not list(Path("/sys/fs/cgroup").glob("*/lab/h4"))
    assert str(hd.merged) not in Path("/proc/self/mountinfo").read_text()
    assert not [f for f in loopdev.loops_backed_under(lab.dir).values() if "vol-d" in f]
    assert (lab.dir / "volumes/vol-d.img").exists()  # the volume outlives the server
    b.delete(spec.id)  # type: ignore[attr-defined]  # idempotent
    b.delete_volume("vol-d")  # type: ignore[attr-defined]
    write_known_hosts(lab.known_hosts, lab.hosts)


def test_close_leaves_nothing_behind(lab: Lab) -> None:
    from coursehub.lab import net
    from coursehub.lab.hosts import SYSCTL_FILE, leftovers

    saved = json.loads((lab.dir / SYSCTL_FILE).read_text())
    lab.backend.attach(lab.hosts[0].spec.id, "vol-c", 1, "/dev/vdb")  # type: ignore[attr-defined]
    lab.run(lab.hosts[0], "sudo mkfs.ext4 -q /dev/vdb && sudo mount /dev/vdb /mnt")  # busy at close
    assert leftovers(lab.dir)  # the running lab is seen
    t = time.monotonic()
    lab.backend.close()  # type: ignore[attr-defined]
    assert time.monotonic() - t < 15
    assert leftovers(lab.dir) == []
    assert {k: net.read_sysctl(k) for k in saved} == saved
    assert not net.bridge_exists()
