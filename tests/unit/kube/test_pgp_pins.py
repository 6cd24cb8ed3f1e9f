"""The signing-key check and the pinned downloads, against a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from coursehub import pins
from coursehub.kube import pgp
from coursehub.steps import kube_packages
from tests.unit.kube.conftest import fixture

KEY_A = "AC07CB2B87886C213B96C22FD8AD3DDF29A68862"
KEY_B = "44B3DA12DE7F29035B0569DBF9ADF76BD59B0649"


# ----------------------------------------------------------------------------- pgp
def test_fingerprint_matches_gpg():
    assert pgp.fingerprints(pgp.dearmor(fixture("test-key-a.asc"))) == [KEY_A]
    # gpg --export of key A hashes to this; dearmor gives the same bytes
    assert hashlib.sha256(pgp.dearmor(fixture("test-key-a.asc"))).hexdigest() == (
        "46d6261110b039e33bb80c165e0c3542df756e7afd96f8f6e593de814d36edd4")


def test_verified_keyring_accepts_only_the_pinned_key():
    assert pgp.verified_keyring(fixture("test-key-a.asc"), KEY_A) == pgp.dearmor(fixture("test-key-a.asc"))
    with pytest.raises(pgp.PgpError, match="is not the pinned"):
        pgp.verified_keyring(fixture("test-key-a.asc"), KEY_B)
    # a file that carries the pinned key plus another one is refused
    with pytest.raises(pgp.PgpError, match=KEY_B):
        pgp.verified_keyring(fixture("test-keys-a-and-b.asc"), KEY_A)
    with pytest.raises(pgp.PgpError, match="not an armored"):
        pgp.verified_keyring("<html>404</html>", KEY_A)


def test_pinned_kubernetes_key_and_repo_line():
    repo = pins.kubernetes_repo("1.33.5")
    assert repo.fingerprint == "DE15B14486CD377B9E876E1A234654DA9A296436"
    assert repo.line == ("deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] "
                         "https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /")
    assert repo.key_url == "https://pkgs.k8s.io/core:/stable:/v1.33/deb/Release.key"


# ----------------------------------------------------------------------------- the table
def test_every_pin_is_a_sha256_or_unknown_with_a_reason():
    items = [pins.helm("3.19.0", {}), *(pins.cni(n, {}) for n in pins.CNI), *(pins.chart(n, {}) for n in pins.CHARTS)]
    for a in items:
        assert a.sha256 is None or (len(a.sha256) == 64 and set(a.sha256) <= set("0123456789abcdef")), a.name
        assert a.source, a.name
        assert a.url.startswith("https://") if isinstance(a, pins.Artifact) else a.repo.startswith("https://")
    assert pins.helm("3.19.0", {}).sha256 == "a7f81ce08007091b86d8bd696eb4d86b8d0f2e1b9f6c714be62f82f96a594496"
    assert pins.helm("3.19.0", {}).url == "https://get.helm.sh/helm-v3.19.0-linux-amd64.tar.gz"


def test_unknown_checksum_is_refused_with_how_to(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEHUB_PINS", str(tmp_path / "pins.yml"))
    art = pins.helm("3.99.0", {})
    with pytest.raises(pins.PinError, match=r"helm 3.99.0: no sha256 is pinned.*releases/tag/v3.99.0.*pins.yml"):
        pins.require(art)
    with pytest.raises(pins.PinError, match="nfs-subdir-chart 4.0.18: no sha256"):
        pins.require(pins.chart("nfs-subdir-chart", {}))


def test_overrides_file(tmp_path):
    p = tmp_path / "pins.yml"
    p.write_text("nfs-subdir-chart: " + "AB" * 32 + "\n")
    extra = pins.overrides(p)
    assert pins.chart("nfs-subdir-chart", extra).sha256 == "ab" * 32
    p.write_text("helm: nope\n")
    with pytest.raises(pins.PinError, match="not a sha256"):
        pins.overrides(p)
    assert pins.overrides(tmp_path / "absent.yml") == {}


# ----------------------------------------------------------------------------- downloads
@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 serving `files` (path -> bytes); counts requests."""
    files: dict[str, bytes] = {}
    hits: list[str] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits.append(self.path)
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            if body is not None:
                self.wfile.write(body)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    pins.forget()
    kube_packages.forget_keys()
    yield f"http://127.0.0.1:{httpd.server_port}", files, hits
    httpd.shutdown()
    pins.forget()
    kube_packages.forget_keys()


def test_fetch_verifies_and_caches(server, tmp_path):
    base, files, hits = server
    files["/helm.tgz"] = b"pretend tarball"
    sha = hashlib.sha256(b"pretend tarball").hexdigest()
    assert pins.fetch(base + "/helm.tgz", sha, tmp_path, "helm.tgz") == b"pretend tarball"
    assert pins.fetch(base + "/helm.tgz", sha, tmp_path, "helm.tgz") == b"pretend tarball"
    assert hits == ["/helm.tgz"]  # once per process
    pins.forget()
    assert pins.fetch(base + "/helm.tgz", sha, tmp_path, "helm.tgz") == b"pretend tarball"
    assert hits == ["/helm.tgz"]  # and then from the cache, re-verified


def test_fetch_refuses_a_mismatch_and_remembers_failures(server, tmp_path):
    base, files, hits = server
    files["/calico.yaml"] = b"tampered"
    with pytest.raises(pins.PinError, match="sha256 mismatch.*refusing"):
        pins.fetch(base + "/calico.yaml", "0" * 64, tmp_path, "calico.yaml")
    assert not (tmp_path / "calico.yaml").exists()
    with pytest.raises(pins.PinError):
        pins.fetch(base + "/calico.yaml", "0" * 64, tmp_path, "calico.yaml")
    assert hits == ["/calico.yaml"]  # twenty hosts, one attempt, one message
    with pytest.raises(pins.PinError, match="HTTP 404"):
        pins.fetch(base + "/missing", "0" * 64, None, "missing")


def test_unreachable_is_one_clear_line():
    pins.forget()
    with pytest.raises(pins.PinError) as e:
        pins.fetch("http://127.0.0.1:9/never", "0" * 64, None, "never", timeout=2)
    assert str(e.value).startswith("cannot download http://127.0.0.1:9/never: ")
    assert "\n" not in str(e.value)


def test_release_key_is_fetched_once_and_checked(server):
    base, files, hits = server
    files["/core:/stable:/v1.33/deb/Release.key"] = fixture("test-key-a.asc").encode()
    repo = pins.AptRepo(minor="1.33", base=base + "/core:/stable:", fingerprint=KEY_A)
    assert kube_packages.verified_key(repo) == pgp.dearmor(fixture("test-key-a.asc"))
    kube_packages.verified_key(repo)
    assert len(hits) == 1
    wrong = pins.AptRepo(minor="1.33", base=base + "/core:/stable:", fingerprint=KEY_B)
    with pytest.raises(pins.PinError, match="is not the pinned .*refusing to trust it"):
        kube_packages.verified_key(wrong)
