"""kubeadm, kubelet and kubectl from pkgs.k8s.io at the pinned version, held; helm on the head.

KubePackages, on every host, in one probe round trip:
1. the signing key: /etc/apt/keyrings/kubernetes-apt-keyring.gpg must hold exactly the
   pinned key (checked by fingerprint, in Python, from the file's bytes);
2. the source: /etc/apt/sources.list.d/kubernetes.list has the one `deb [signed-by=...]` line;
3. the packages: all three installed at the version in vars.yml and held (apt-mark hold).

The key is downloaded once per run on the admin's machine and verified there; hosts
never fetch it. Package downloads are apt's (signed index, so pinned by the key).
When pkgs.k8s.io cannot be reached, the step fails with one line that says so.

Helm, on the head only: the pinned tarball, sha256-checked on the admin's machine, is
uploaded and unpacked to /usr/local/bin/helm. Only CourseHub's cluster add-ons use it.
"""

from __future__ import annotations

import base64
import shlex
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coursehub import pins
from coursehub.kube import commands as k
from coursehub.kube import parse, pgp
from coursehub.steps import Action, FileSpec, Step, ensure_file, file_probe_command, parse_file_fact
from coursehub.steps.apt import apt_get  # the host-steps engineer's apt line: noninteractive, lock retries
from coursehub.steps.kube_common import cache_dir, put_bytes

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.settings import Settings

PACKAGES = ("kubeadm", "kubelet", "kubectl")


class PackagesUnavailable(Exception):
    """The pinned version cannot be installed from the repository; str() is the one line to show."""


# ----------------------------------------------------------------------------- the key, once per run
_KEY_LOCK = threading.Lock()
_KEYS: dict[tuple[str, str], bytes | Exception] = {}


def verified_key(repo: pins.AptRepo) -> bytes:
    """The repository's signing key as a binary keyring, downloaded once and checked by fingerprint."""
    with _KEY_LOCK:
        got = _KEYS.get((repo.key_url, repo.fingerprint))
        if got is None:
            try:
                armored = pins.download(repo.key_url, timeout=30).decode("ascii", "replace")
                got = pgp.verified_keyring(armored, repo.fingerprint)
            except pgp.PgpError as e:
                got = pins.PinError(f"{repo.key_url}: {e}; refusing to trust it")
            except pins.PinError as e:
                got = e
            _KEYS[(repo.key_url, repo.fingerprint)] = got
    if isinstance(got, Exception):
        raise got
    return got


def forget_keys() -> None:
    with _KEY_LOCK:
        _KEYS.clear()


# ----------------------------------------------------------------------------- facts
@dataclass
class PackagesFact:
    key_fingerprints: list[str] | None  # None: no keyring file; []: unreadable
    sources: Any  # FileFact of the source list
    installed: dict[str, parse.Installed]
    held: set[str]


def probe_command(repo: pins.AptRepo) -> str:
    """One read-only round trip: keyring bytes, source list, dpkg state, holds."""
    key = shlex.quote(repo.keyring)
    return "; ".join([
        f"if [ -f {key} ]; then base64 -w0 {key}; echo; else echo missing; fi",
        f"echo {parse.SECTION}",
        file_probe_command(repo.sources),
        f"echo {parse.SECTION}",
        k.sh(k.dpkg_query(PACKAGES)) + " 2>/dev/null",
        f"echo {parse.SECTION}",
        "apt-mark showhold 2>/dev/null",
    ])


def parse_probe(text: str) -> PackagesFact:
    parts = parse.sections(text) + [""] * 4
    raw = parts[0].strip()
    if raw == "missing" or not raw:
        fps = None
    else:
        try:
            fps = pgp.fingerprints(base64.b64decode(raw))
        except (ValueError, pgp.PgpError):
            fps = []
    return PackagesFact(fps, parse_file_fact(parts[1].strip()), parse.parse_dpkg(parts[2]), parse.parse_holds(parts[3]))


# ----------------------------------------------------------------------------- the step
class KubePackages(Step):
    """The pkgs.k8s.io repository, the three packages at the pinned version, and their hold."""

    name = "kube-packages"

    def __init__(self, settings: Settings, repo: pins.AptRepo | None = None):
        self.version = settings.kubernetes.version
        self.repo = repo or pins.kubernetes_repo(self.version)
        self.sources = FileSpec(self.repo.sources, self.repo.line + "\n", mode=0o644)

    def probe(self, remote: Remote) -> PackagesFact:
        return parse_probe(remote.run(probe_command(self.repo), check=False).stdout)

    def decide(self, fact: PackagesFact, remote: Remote) -> list[Action]:
        actions: list[Action] = []
        want_fp = self.repo.fingerprint.upper()
        if fact.key_fingerprints != [want_fp]:
            why = ("no signing key" if fact.key_fingerprints is None else
                   f"keyring holds {', '.join(fact.key_fingerprints) or 'no readable key'}, want {want_fp}")
            actions.append(Action(why=why, fn=self._install_key, label=f"install the pkgs.k8s.io key ({want_fp[-16:]})"))
        source = ensure_file(self.sources, fact.sources)
        actions += source
        wrong = {p: fact.installed[p].version if p in fact.installed and fact.installed[p].ok else "missing"
                 for p in PACKAGES
                 if not (p in fact.installed and fact.installed[p].ok and parse.upstream(fact.installed[p].version) == self.version)}
        for p, have in wrong.items():
            if is_minor_change(p, have, self.version):
                raise PackagesUnavailable(
                    f"{p} {parse.upstream(have)} is installed, vars.yml wants {self.version}: a minor-version change "
                    "is a cluster upgrade (kubeadm upgrade), which CourseHub does not do for you")
        if wrong:
            detail = ", ".join(f"{p} {parse.upstream(v) if v != 'missing' else 'missing'}" for p, v in wrong.items())
            actions.append(Action(why=f"{detail}; want {self.version}", fn=self._install_packages,
                                  label=f"apt-get install kubeadm kubelet kubectl {self.version} from {self.repo.url}"))
        held_missing = [p for p in PACKAGES if p not in fact.held]
        if held_missing or wrong:
            actions.append(Action(why="not held: " + " ".join(held_missing or PACKAGES),
                                  command=k.sh(k.apt_mark_hold(PACKAGES))))
        return actions

    # -- apply helpers (run only when decided)
    def _install_key(self, remote: Remote) -> None:
        put_bytes(remote, self.repo.keyring, verified_key(self.repo), mode=0o644)

    def _install_packages(self, remote: Remote) -> None:
        upd = remote.run(apt_get(*map(shlex.quote, k.apt_update_source_args(self.repo.sources))) + " 2>&1", check=False)
        madison = remote.run(k.sh(k.apt_madison(PACKAGES)) + " 2>/dev/null", check=False).stdout
        chosen = select_versions(parse.parse_madison(madison), self.version)
        missing = [p for p in PACKAGES if p not in chosen]
        if missing:
            raise PackagesUnavailable(unavailable_message(missing, self.version, self.repo, upd.stdout, upd.rc))
        remote.run(apt_get(*map(shlex.quote, k.apt_install_args(chosen))), timeout=900)


def is_minor_change(package: str, installed: str, want: str) -> bool:
    """True when replacing `installed` would change a cluster component's Kubernetes minor version.

    Only kubeadm and kubelet count, and only at a 1.x version: a client (kubectl) or a
    package of the same name from elsewhere (the Google Cloud SDK ships a `kubectl` at
    its own version, e.g. 528.0.0) is simply replaced by the pinned one.
    """
    if package not in ("kubeadm", "kubelet") or installed == "missing":
        return False
    have = parse.upstream(installed).split(".")
    return have[0] == "1" and have[:2] != want.split(".")[:2]


def select_versions(available: dict[str, list[str]], version: str) -> dict[str, str]:
    """package -> the Debian version of upstream `version` it is offered at (missing ones left out)."""
    out = {}
    for p in PACKAGES:
        v = parse.pick_version(available.get(p, []), version)
        if v:
            out[p] = v
    return out


def unavailable_message(missing: list[str], version: str, repo: pins.AptRepo, update_output: str, rc: int) -> str:
    """One line: which packages, which repository, and apt's own reason when it could not fetch."""
    reason = next((ln.strip() for ln in update_output.splitlines()
                   if ln.startswith(("Err:", "E:", "W: Failed to fetch")) or "Could not resolve" in ln
                   or "Failed to fetch" in ln), "")
    head = f"{', '.join(missing)} {version} not available from {repo.url}"
    if reason or rc != 0:
        return f"{head}: apt could not download the repository index ({reason or f'apt-get update exited {rc}'})"
    return f"{head}: the repository does not offer {version} (check kubernetes.version in vars.yml)"


class Helm(Step):
    """/usr/local/bin/helm at the pinned version, from the checksum-verified release tarball."""

    name = "helm"
    BINARY = "/usr/local/bin/helm"

    def __init__(self, settings: Settings, inv_dir: Path | None = None):
        self.artifact = pins.helm(settings.kubernetes.helm_version)
        self.inv_dir = inv_dir

    def probe(self, remote: Remote) -> str:
        out = remote.run(f"{k.sh(k.helm_version(self.BINARY))} 2>/dev/null || true", check=False)
        return out.stdout.strip()

    def decide(self, fact: str, remote: Remote) -> list[Action]:
        want = f"v{self.artifact.version}"
        if fact == want:
            return []
        pins.require(self.artifact)
        return [Action(why=f"{fact or 'not installed'}, want {want}", fn=self._install,
                       label=f"install helm {want} (sha256 {self.artifact.sha256[:12]}...)")]

    def _install(self, remote: Remote) -> None:
        data = pins.fetch(self.artifact.url, pins.require(self.artifact), cache_dir(self.inv_dir), self.artifact.filename)
        tgz = f"/var/lib/coursehub/{self.artifact.filename}"
        put_bytes(remote, tgz, data, mode=0o600)
        d = "/var/lib/coursehub/helm-unpack"
        remote.run(f"rm -rf {d} && mkdir -p {d} && tar -xzf {shlex.quote(tgz)} -C {d} linux-amd64/helm "
                   f"&& install -m 0755 -o root -g root {d}/linux-amd64/helm {self.BINARY} && rm -rf {d}")
