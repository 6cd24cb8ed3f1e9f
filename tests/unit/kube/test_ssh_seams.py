"""The SSH seams of the cluster steps, over real OpenSSH servers on loopback.

- run_stdin: a secret reaches the command's stdin (and EOF arrives, as `kubeadm join
  --config=/dev/stdin` needs), never its argv.
- put_bytes: binary files (the apt keyring, chart tarballs) arrive intact with the mode asked.
- The whole join: head and worker are two real sshd "hosts"; kubeadm and kubectl are small
  scripts standing in for the binaries that cannot be downloaded here, recording what they
  receive. The token goes head -> this machine -> worker's stdin, is deleted, and never
  appears in any argv on the worker.
"""

from __future__ import annotations

import os
import stat
import types
from pathlib import Path

import pytest

from coursehub import fleet, inventory, secrets
from coursehub.kube import commands as real_k
from coursehub.steps import kube_common, kube_join
from tests.support import sshd
from tests.unit.kube.conftest import fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not Path(sshd.SSHD).exists(), reason="needs root and sshd")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    root = tmp_path_factory.mktemp("kube-ssh")
    client = root / "id_ed25519"
    pub = sshd.keygen(client, "coursehub-kube-test")
    servers = [sshd.start(root / "sshd", name, f"127.0.0.{n}", pub) for name, n in (("head", 41), ("w1", 42))]
    yield root, client, servers
    fleet.close_all()
    for s in servers:
        s.stop()


@pytest.fixture
def inv(hosts, tmp_path):
    root, client, servers = hosts
    fleet.close_all()
    hs = [inventory.Host(name=s.name, address=s.address, port=s.port, user="root",
                         roles=["head"] if s.name == "head" else ["compute"], host_keys=[s.host_key_pub]) for s in servers]
    i = inventory.Inventory(dir=tmp_path / "inventory", hosts=hs, identity_file=str(client))
    inventory.write(i)
    return i


def remote(inv, name):
    h = inv.get(name)
    return fleet.Remote(h, fleet.connect(inv, h), secrets.redactor())


def test_run_stdin_delivers_data_and_eof(inv, tmp_path):
    r = remote(inv, "w1")
    out_file = tmp_path / "got"
    data = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ntoken: zzzzzz.0123456789abcdef\n"
    out = kube_common.run_stdin(r, f"cat /dev/stdin > {out_file}; tr -d '\\0' < /proc/$$/cmdline", data, timeout=30)
    assert out_file.read_text() == data
    assert "zzzzzz" not in out.stdout  # the shell's own argv never held it


def test_put_bytes_binary(inv, tmp_path):
    r = remote(inv, "w1")
    data = bytes(range(256)) * 40
    dest = tmp_path / "keyrings" / "kubernetes-apt-keyring.gpg"
    kube_common.put_bytes(r, str(dest), data, mode=0o644)
    assert dest.read_bytes() == data and stat.S_IMODE(dest.stat().st_mode) == 0o644


FAKE_KUBEADM = """#!/bin/sh
# stands in for kubeadm: records its arguments and stdin under $STATE
STATE={state}
echo "$*" >> $STATE/kubeadm-args
case "$1 $2" in
  "token create") cat {join_line} ;;
  "token delete") echo "$3" >> $STATE/deleted ;;
  "join --config=/dev/stdin") cat /dev/stdin > $STATE/join-config.yaml; touch $STATE/joined ;;
  *) echo "unexpected: $*" >&2; exit 1 ;;
esac
"""

FAKE_KUBECTL = """#!/bin/sh
# stands in for kubectl: the node exists once the fake join ran
STATE={state}
echo "$*" >> $STATE/kubectl-args
if [ -f $STATE/joined ]; then cat {node_json}; fi
"""


def test_join_end_to_end_over_ssh(inv, tmp_path, settings, monkeypatch):
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "join-line").write_text(fixture("join-command.txt"))
    (tmp_path / "node.json").write_text(fixture("node-w1.json"))
    kubeadm, kubectl = tmp_path / "kubeadm", tmp_path / "kubectl"
    kubeadm.write_text(FAKE_KUBEADM.format(state=state, join_line=tmp_path / "join-line"))
    kubectl.write_text(FAKE_KUBECTL.format(state=state, node_json=tmp_path / "node.json"))
    for f in (kubeadm, kubectl):
        f.chmod(0o755)

    def swap(fn):
        def inner(*a, **kw):
            argv = fn(*a, **kw)
            return [str(kubeadm) if argv[0] == "kubeadm" else str(kubectl) if argv[0] == "kubectl" else argv[0], *argv[1:]]
        return inner

    fake = types.SimpleNamespace(**{n: swap(getattr(real_k, n)) for n in
                                    ("token_create", "token_delete", "kubeadm_join_stdin", "get_json", "kubeadm_reset")},
                                 sh=real_k.sh)
    monkeypatch.setattr(kube_join, "k", fake)

    step = kube_join.Join(settings, inv)
    worker = remote(inv, "w1")
    fact = step.probe(worker)
    assert fact.registered is False
    actions = step.decide(fact, worker)
    assert [a.why for a in actions] == ["the API has no node w1"]
    step.apply(worker, actions)
    assert step.verify(worker) == []

    token = "k3x9qz.7f2m1p0w8e4r6t5y"
    assert token in (state / "join-config.yaml").read_text()
    assert (state / "deleted").read_text().split() == ["k3x9qz"]
    args = (state / "kubeadm-args").read_text()
    assert "join --config=/dev/stdin" in args and args.count(token) == 0
    assert secrets.KNOWN(token) == "***"
