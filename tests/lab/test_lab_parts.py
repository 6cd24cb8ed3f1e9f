"""The hosts backend's pieces that need no hosts: apt sources, allow-list, proxy, names, records."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from coursehub.lab import aptsources, image, net, proxy
from coursehub.lab.guest import hostname_for, hosts_file, new_host_key
from coursehub.lab.supervisor import read_pidfile, write_pidfile

SOURCES = """\
Types: deb deb-src
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
Enabled: no
"""
ONE_LINE = """\
# a comment
deb [arch=amd64 signed-by=/k.gpg] https://third.example/apt stable main
deb http://sec.example/debian-security bookworm-security main contrib
"""


@pytest.fixture
def apt_root(tmp_path: Path) -> Path:
    d = tmp_path / "etc/apt/sources.list.d"
    d.mkdir(parents=True)
    (d / "debian.sources").write_text(SOURCES)
    (d / "extra.list").write_text(ONE_LINE)
    (d / "gone.list.disabled").write_text("deb http://disabled.example/x stable main\n")
    return tmp_path


def test_apt_sources_both_formats_enabled_only(apt_root: Path) -> None:
    uris = [u for s in aptsources.read_sources(apt_root) for u in s.uris]
    assert uris == ["http://mirror.example/debian", "https://third.example/apt", "http://sec.example/debian-security"]
    third = aptsources.read_sources(apt_root)[1]
    assert third.options == {"arch": "amd64", "signed-by": "/k.gpg"} and third.components == ("main",)


def test_image_sources_keep_only_this_release(apt_root: Path) -> None:
    text = image.debian_sources("bookworm", root=apt_root)
    assert "mirror.example" in text and "sec.example" in text and "third.example" not in text
    assert "Types: deb\n" in text and "deb-src" not in text and "Signed-By: /usr/share/keyrings" in text


def test_allowlist_from_urls(apt_root: Path) -> None:
    http: set[str] = set()
    connect: set[str] = set()
    for u in [*proxy.apt_source_urls(apt_root), "https://idx.example:8443/simple", "file:///opt/wheels"]:
        proxy._add_url(u, http, connect)
    allow = proxy.Allowlist(frozenset(http), frozenset(connect))
    assert allow.allows_http("MIRROR.example", 80) and not allow.allows_http("mirror.example", 8080)
    assert allow.allows_connect("third.example", 443) and not allow.allows_connect("third.example", 22)
    assert not allow.allows_connect("idx.example", 443)  # only :443 tunnels
    assert not allow.allows_http("third.example", 80)


def test_allowlist_from_this_machine_names_its_apt_hosts() -> None:
    allow = proxy.allowlist_from_machine()
    for url in proxy.apt_source_urls():
        host = url.split("/")[2]
        assert host in allow.http or host in allow.connect


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"abc", b"def"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        body = f"path={self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *a: object) -> None:
        pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_proxy_forwards_allowed_and_refuses_the_rest() -> None:
    up = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    up_host = f"127.0.0.1:{up.server_address[1]}"
    p = proxy.LabProxy("127.0.0.1", _free_port(), allow=proxy.Allowlist(http=frozenset({up_host}))).start()
    try:
        c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
        c.request("GET", f"http://{up_host}/dists/x?y=1")  # keep-alive: two requests, one connection
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"path=/dists/x?y=1")
        c.request("HEAD", f"http://{up_host}/h")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b""
        c.request("GET", f"http://{up_host}/chunked")
        assert c.getresponse().read() == b"abcdef"
        for method, url in (("GET", "http://not-allowed.example/"), ("POST", f"http://{up_host}/"),
                            ("GET", f"https://{up_host}/"), ("CONNECT", "not-allowed.example:443"),
                            ("CONNECT", f"{up_host}")):
            c = http.client.HTTPConnection("127.0.0.1", p.port, timeout=10)
            c.putrequest(method, url, skip_host=True)
            c.endheaders()
            assert c.getresponse().status == 403, (method, url)
        assert p.counts["forwarded"] == 3 and p.counts["denied"] == 5
    finally:
        p.stop()
        up.shutdown()


def test_guest_client_files_point_at_the_proxy() -> None:
    files = proxy.guest_client_files("http://10.77.0.1:3142")
    assert "proxy = http://10.77.0.1:3142" in files["etc/pip.conf"]
    assert "https-proxy=http://10.77.0.1:3142" in files["etc/npmrc"]


def test_lab_net_addresses() -> None:
    n = net.LabNet.from_subnet("10.77.0.0/24")
    assert (n.gateway, str(n.safety), n.prefixlen) == ("10.77.0.1", "10.77.0.0/16", 24)
    with pytest.raises(ValueError):
        net.LabNet.from_subnet("8.8.8.0/24")


def test_names_and_hosts_file() -> None:
    assert hostname_for("Head_Node 1") == "head-node-1"
    with pytest.raises(ValueError):
        hostname_for("___")
    text = hosts_file("node1", "10.77.0.11", {"node2": "10.77.0.12", "node1": "10.77.0.11"})
    assert "10.77.0.11\tnode1\n10.77.0.12\tnode2\n" in text and text.count("node1") == 1


def test_host_key_is_openssh_ed25519(tmp_path: Path) -> None:
    k = new_host_key("node1")
    assert k.public_line.startswith("ssh-ed25519 ") and k.public_line.endswith(" root@node1")
    f = tmp_path / "key"
    f.write_bytes(k.private_openssh)
    f.chmod(0o600)
    r = subprocess.run(["ssh-keygen", "-y", "-f", str(f)], capture_output=True, text=True)
    assert r.stdout.split()[:2] == k.public_line.split()[:2]


def test_pidfile_knows_a_reused_pid(tmp_path: Path) -> None:
    f = tmp_path / "x.pid"
    write_pidfile(f, os.getpid())
    assert read_pidfile(f) == os.getpid()
    f.write_text(f"{os.getpid()} 1\n")  # same PID, another start time: not ours
    assert read_pidfile(f) is None
    p = subprocess.Popen(["true"])
    p.wait()
    write_pidfile(f, p.pid)
    assert read_pidfile(f) is None
