"""kube-packages on the lab's real Debian hosts: repository, key, pinned version, hold, and the offline failure.

pkgs.k8s.io cannot be reached from here, and tests never send traffic outside this
machine. So:

- The production path is run as far as it can go: the repository line exactly as in
  production, a signing key installed (a test key, handed to the step as if downloaded:
  the admin-side download of Release.key is the one thing skipped), then the hosts' own
  apt tries pkgs.k8s.io and cannot resolve it (the lab hosts have no DNS). The step must
  fail with one line that says so, on every host, having installed nothing.
- The rest runs for real against a small signed apt repository served from this machine
  on the lab bridge: stand-in kubeadm/kubelet/kubectl packages at 1.33.4-1.1 and
  1.33.5-1.1, an InRelease signed with a key made for the test. The step installs the key
  (checked by fingerprint), writes the source, selects exactly the pinned version, holds
  all three, and a second run changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from coursehub import fleet, inventory, pins
from coursehub import settings as settings_mod
from coursehub.kube import pgp
from coursehub.steps import kube_packages
from tests.lab.labkit import CAN_RUN_LAB, SKIP_REASON, USER, Lab

pytestmark = [pytest.mark.lab, pytest.mark.skipif(not CAN_RUN_LAB or not shutil.which("gpg") or not shutil.which("dpkg-deb"),
                                                  reason=SKIP_REASON + ", gpg and dpkg-deb")]
ROOT = Path(__file__).resolve().parents[2]
BRIDGE = "10.77.0.1"
VERSIONS = ("1.33.4-1.1", "1.33.5-1.1")


# ----------------------------------------------------------------------------- a signed apt repository
def _gpg(home: Path, *args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["gpg", "--homedir", str(home), "--batch", "--quiet", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], input=stdin, capture_output=True, check=True).stdout


def build_repo(root: Path) -> tuple[Path, str, str]:
    """A flat apt repository under root/core:/stable:/v1.33/deb/; returns (dir, armored key, fingerprint)."""
    home = root / "gnupg"
    home.mkdir(mode=0o700)
    _gpg(home, "--quick-gen-key", "coursehub lab repo <lab-repo@example.invalid>", "ed25519", "sign", "never")
    armored = _gpg(home, "--armor", "--export").decode()
    fingerprint = pgp.fingerprints(pgp.dearmor(armored))[0]
    repo = root / "core:" / "stable:" / "v1.33" / "deb"
    repo.mkdir(parents=True)
    stanzas = []
    for pkg in ("kubeadm", "kubelet", "kubectl"):
        for ver in VERSIONS:
            src = root / "build" / f"{pkg}-{ver}"
            (src / "DEBIAN").mkdir(parents=True)
            (src / "usr/share/coursehub-lab").mkdir(parents=True)
            (src / f"usr/share/coursehub-lab/{pkg}").write_text(f"stand-in {pkg} {ver}\n")
            (src / "DEBIAN/control").write_text(
                f"Package: {pkg}\nVersion: {ver}\nArchitecture: all\nMaintainer: CourseHub lab <lab@example.invalid>\n"
                f"Description: stand-in for {pkg} (lab test)\n")
            deb = repo / f"{pkg}_{ver}_all.deb"
            subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(src), str(deb)], check=True,
                           capture_output=True)
            data = deb.read_bytes()
            stanzas.append(f"Package: {pkg}\nVersion: {ver}\nArchitecture: all\n"
                           f"Maintainer: CourseHub lab <lab@example.invalid>\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                           f"SHA256: {hashlib.sha256(data).hexdigest()}\nDescription: stand-in for {pkg} (lab test)\n")
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    release = (f"Origin: coursehub-lab\nLabel: coursehub-lab\nArchitectures: all amd64\n"
               f"Date: Thu, 01 Jan 2026 00:00:00 UTC\nSHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")
    (repo / "Release").write_text(release)
    (repo / "InRelease").write_bytes(_gpg(home, "--clearsign", "--digest-algo", "SHA256", stdin=release.encode()))
    (repo / "Release.key").write_text(armored)
    return root, armored, fingerprint


@pytest.fixture(scope="module")
def apt_repo(lab: Lab, tmp_path_factory):
    """The repository served on the lab bridge (reachable only from this machine and its lab hosts)."""
    root, armored, fingerprint = build_repo(tmp_path_factory.mktemp("aptrepo"))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer((BRIDGE, 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    for h in lab.hosts:  # apt on the hosts goes through the lab's Debian-only proxy; reach the bridge directly
        lab.run(h, f"echo 'Acquire::http::Proxy::{BRIDGE} \"DIRECT\";' > /etc/apt/apt.conf.d/00coursehub-lab-repo",
                user="root")
    yield f"http://{BRIDGE}:{httpd.server_port}/core:/stable:", armored, fingerprint
    httpd.shutdown()
    subprocess.run(["gpgconf", "--homedir", str(root / "gnupg"), "--kill", "gpg-agent"], check=False)


@pytest.fixture(scope="module")
def inv(lab: Lab, tmp_path_factory):
    hosts = [inventory.Host(name=h.spec.name, address=h.spec.address, user=USER, roles=["head"] if i == 0 else ["compute"],
                            host_keys=list(h.keys.lines)) for i, h in enumerate(lab.hosts)]
    i = inventory.Inventory(dir=tmp_path_factory.mktemp("inventory"), hosts=hosts, identity_file=str(lab.key))
    inventory.write(i)
    yield i
    fleet.close_all()


@pytest.fixture
def settings():
    s = settings_mod.load(ROOT / "vars.yml")
    return s


def with_version(s, version: str):
    return dataclasses.replace(s, kubernetes=dataclasses.replace(s.kubernetes, version=version))


def host_state(lab: Lab, h) -> dict[str, str]:
    """What kube-packages manages on a host, read with plain shell tools."""
    out = lab.run(h, "echo installed=$(dpkg-query -W -f='${Package}=${Version} ' kubeadm kubelet kubectl 2>/dev/null); "
                     "echo held=$(apt-mark showhold | tr '\\n' ' '); "
                     "echo source=$(cat /etc/apt/sources.list.d/kubernetes.list 2>/dev/null); "
                     "echo keyring=$(test -f /etc/apt/keyrings/kubernetes-apt-keyring.gpg && echo yes || echo none)",
                  user="root")
    state = {k: v.strip() for k, _, v in (line.partition("=") for line in out.splitlines())}
    state["installed"] = " ".join(sorted(state.get("installed", "").split()))  # kubeadm kubectl kubelet
    return state


# ----------------------------------------------------------------------------- the production repository, offline
def test_production_repository_offline_fails_with_one_line(lab: Lab, inv, apt_repo, settings):
    _, armored, fingerprint = apt_repo
    repo = dataclasses.replace(pins.kubernetes_repo("1.33.5"), fingerprint=fingerprint)  # pkgs.k8s.io, a test key
    keyring = pgp.verified_keyring(armored, fingerprint)
    kube_packages.forget_keys()
    kube_packages._KEYS[(repo.key_url, fingerprint)] = keyring  # as if Release.key had been downloaded and checked
    step = kube_packages.KubePackages(with_version(settings, "1.33.5"), repo=repo)

    plan = fleet.run([step], inv, task="test:kube-packages", dry_run=True)
    for h in lab.hosts:
        assert plan.hosts[h.spec.name].plan["kube-packages"][0].startswith("install the pkgs.k8s.io key")
        assert host_state(lab, h)["keyring"] == "none"  # the dry run changed nothing

    result = fleet.run([step], inv, task="test:kube-packages")
    want = ("kube-packages: PackagesUnavailable: kubeadm, kubelet, kubectl 1.33.5 not available from "
            "https://pkgs.k8s.io/core:/stable:/v1.33/deb/: apt could not download the repository index (")
    for h in lab.hosts:
        r = result.hosts[h.spec.name]
        assert r.status == fleet.FAILED and r.error.startswith(want), r.error
        assert "\n" not in r.error and "pkgs.k8s.io" in r.error.split("(", 1)[1]
        state = host_state(lab, h)
        assert state["source"] == ("deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] "
                                   "https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /")
        assert state["keyring"] == "yes" and state["installed"] == ""
    kube_packages.forget_keys()


# ----------------------------------------------------------------------------- a reachable repository
def test_pinned_version_installed_and_held_then_nothing_to_do(lab: Lab, inv, apt_repo, settings):
    base, _armored, fingerprint = apt_repo
    kube_packages.forget_keys()
    repo = pins.AptRepo(minor="1.33", base=base, fingerprint=fingerprint)
    step = kube_packages.KubePackages(with_version(settings, "1.33.5"), repo=repo)
    first = fleet.run([step], inv, task="test:kube-packages")
    for h in lab.hosts:
        assert first.hosts[h.spec.name].status == fleet.CHANGED, first.hosts[h.spec.name].error
        state = host_state(lab, h)
        assert state["installed"] == "kubeadm=1.33.5-1.1 kubectl=1.33.5-1.1 kubelet=1.33.5-1.1"
        assert set(state["held"].split()) == {"kubeadm", "kubelet", "kubectl"}
        assert state["source"] == f"deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] {base}/v1.33/deb/ /"
        mode = lab.run(h, "stat -c '%a %U' /etc/apt/keyrings/kubernetes-apt-keyring.gpg", user="root")
        assert mode == "644 root"
    second = fleet.run([step], inv, task="test:kube-packages")
    assert {r.status for r in second.hosts.values()} == {fleet.OK}  # idempotent: nothing planned, nothing done


def test_patch_change_and_unknown_version(lab: Lab, inv, apt_repo, settings):
    base, _armored, fingerprint = apt_repo
    repo = pins.AptRepo(minor="1.33", base=base, fingerprint=fingerprint)
    down = fleet.run([kube_packages.KubePackages(with_version(settings, "1.33.4"), repo=repo)], inv, task="test")
    assert {r.status for r in down.hosts.values()} == {fleet.CHANGED}
    assert host_state(lab, lab.hosts[0])["installed"] == "kubeadm=1.33.4-1.1 kubectl=1.33.4-1.1 kubelet=1.33.4-1.1"
    missing = fleet.run([kube_packages.KubePackages(with_version(settings, "1.33.9"), repo=repo)], inv, task="test")
    for r in missing.hosts.values():
        assert r.status == fleet.FAILED
        assert r.error == (f"kube-packages: PackagesUnavailable: kubeadm, kubelet, kubectl 1.33.9 not available from "
                           f"{base}/v1.33/deb/: the repository does not offer 1.33.9 (check kubernetes.version in vars.yml)")
    assert host_state(lab, lab.hosts[0])["installed"].startswith("kubeadm=1.33.4-1.1")  # left as it was


def test_a_changed_key_is_replaced(lab: Lab, inv, apt_repo, settings, tmp_path):
    base, _armored, fingerprint = apt_repo
    h = lab.hosts[1]
    lab.run(h, "head -c 300 /dev/urandom > /etc/apt/keyrings/kubernetes-apt-keyring.gpg", user="root")
    repo = pins.AptRepo(minor="1.33", base=base, fingerprint=fingerprint)
    step = kube_packages.KubePackages(with_version(settings, "1.33.4"), repo=repo)
    r = fleet.run([step], inv, task="test", hosts=[inv.get(h.spec.name)])
    assert r.hosts[h.spec.name].status == fleet.CHANGED
    raw = lab.run(h, "base64 -w0 /etc/apt/keyrings/kubernetes-apt-keyring.gpg", user="root")
    import base64

    assert pgp.fingerprints(base64.b64decode(raw)) == [fingerprint]
    assert os.environ.get("NO_PROXY") is not None  # tests/conftest.py keeps local traffic off any proxy
