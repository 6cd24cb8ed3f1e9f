"""Archive users at the end of a term: plan, stop, tar.gz + sha256, verify, then delete.

    entries = plan(remote, settings, users, dest, stamp)     # what would happen, per user
    for e in entries: archive_one(remote, api, settings, e)  # nothing deleted before its archive verifies

Per user: stop the server (REST, waited for), write `<dest>/<user>-<stamp>.tar.gz`
through a temporary name, write its `.sha256`, verify (checksum, the archive reads
to the end, and it holds as many entries as the home has), and only then delete
the hub user and the home: on a single hub the Unix user `jupyter-<name>` with its
home (`userdel --remove`); on the cluster the user's PVCs, found under both
KubeSpawner naming schemes (legacy escaped `claim-<name>` and the KubeSpawner 7
"safe" slug) and by the `hub.jupyter.org/username` annotation. On the cluster the
home is read through a short-lived pod that mounts the claim (the users' image,
already on every node). Archives live on the head host (default ARCHIVE_DIR, 0700).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coursehub.hub.single import HOME_ROOT, unix_name
from coursehub.kube.parse import escape_slug, safe_slug  # KubeSpawner's two PVC name schemes

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.hub.rest import HubAPI, User
    from coursehub.settings import Settings

ARCHIVE_DIR = "/var/backups/coursehub/archive"
HOME_IN_POD = "/home/jovyan"


class ArchiveError(Exception):
    """An archive could not be made or verified; nothing of that user was deleted."""


# ----------------------------------------------------------------------------- PVC names
def pvc_candidates(user: str) -> list[str]:
    """The names a user's home PVC may have: legacy (escape) and KubeSpawner 7 (safe) schemes."""
    return list(dict.fromkeys([f"claim-{escape_slug(user)}", f"claim-{safe_slug(user)}"]))


def user_pvcs(pvc_list: Mapping[str, Any], user: str) -> list[str]:
    """Names of `user`'s PVCs in a `kubectl get pvc -o json` answer (by name scheme or annotation)."""
    names = set(pvc_candidates(user))
    out = []
    for item in pvc_list.get("items", []):
        meta = item.get("metadata", {})
        annotations = meta.get("annotations") or {}
        if meta.get("name") in names or annotations.get("hub.jupyter.org/username") == user:
            out.append(meta["name"])
    return sorted(set(out))


# ----------------------------------------------------------------------------- plan
@dataclass
class Entry:
    """One user to archive."""

    user: str
    admin: bool
    running: bool
    archive: str  # the .tar.gz on the head host
    home: str = ""  # single: the home folder; cluster: the PVC mounted
    size: int = -1  # bytes (-1: unknown)
    pvcs: list[str] = field(default_factory=list)
    unix_user: str = ""
    problem: str = ""  # set: this user is skipped (e.g. no home)

    def describe(self) -> str:
        what = self.home or ", ".join(self.pvcs) or "no home"
        size = f"{self.size / 1024**2:.1f} MiB" if self.size >= 0 else "size unknown"
        flags = (" admin" if self.admin else "") + (" running" if self.running else "")
        tail = f"  SKIP: {self.problem}" if self.problem else f" -> {self.archive}"
        return f"{self.user}{flags}: {what} ({size}){tail}"


def select_users(users: Iterable[User], except_admins: bool, skip: Sequence[str] = ()) -> list[User]:
    return [u for u in users if u.name not in skip and not (except_admins and u.admin)]


def archive_path(dest: str, user: str, stamp: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", user)
    return f"{dest.rstrip('/')}/{safe}-{stamp}.tar.gz"


def single_probe(unix_users: Sequence[str]) -> str:
    """One command: `<unix user> <home> <bytes>` per existing user (home from passwd)."""
    parts = [f"h=$(getent passwd {shlex.quote(n)} | cut -d: -f6); if [ -n \"$h\" ] && [ -d \"$h\" ]; then "
             f"echo {shlex.quote(n)} \"$h\" $(du -sb \"$h\" | cut -f1); fi" for n in unix_users]
    return "; ".join(parts) + "; true"


def parse_single_probe(text: str) -> dict[str, tuple[str, int]]:
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            out[parts[0]] = (parts[1], int(parts[2]))
    return out


def plan(remote: Remote, settings: Settings, users: Sequence[User], dest: str, stamp: str) -> list[Entry]:
    """Look every user's home up on the head host (read-only) and say what would happen."""
    entries = [Entry(u.name, u.admin, u.running, archive_path(dest, u.name, stamp)) for u in users]
    if not entries:
        return entries
    if settings.topology == "single":
        names = {e.user: unix_name(e.user) for e in entries}
        found = parse_single_probe(remote.run(single_probe(list(names.values()))).stdout)
        for e in entries:
            e.unix_user = names[e.user]
            if e.unix_user in found:
                e.home, e.size = found[e.unix_user]
                if not e.home.startswith(HOME_ROOT + "/"):
                    e.problem = f"home {e.home} is not under {HOME_ROOT}: refusing to archive and delete it"
            else:
                e.problem = f"no Unix user {e.unix_user} (never started a server): delete the hub user by hand"
    else:
        ns = settings.hub.namespace
        data = json.loads(remote.run(shlex.join(["kubectl", "get", "pvc", "--namespace", ns, "--output", "json"])).stdout
                          or "{}")
        for e in entries:
            e.pvcs = user_pvcs(data, e.user)
            e.home = e.pvcs[0] if e.pvcs else ""
            if not e.pvcs:
                e.problem = "no PVC under either name scheme"
            elif len(e.pvcs) > 1:
                e.problem = f"several PVCs ({', '.join(e.pvcs)}): archive them by hand, then re-run"
    return entries


# ----------------------------------------------------------------------------- commands
def write_commands(source_parent: str, source_name: str, archive: str) -> str:
    """tar.gz of <parent>/<name> to <archive> through a temporary name, then its .sha256 beside it."""
    d, name = archive.rsplit("/", 1)
    q = shlex.quote
    return (f"mkdir -p -m 0700 {q(d)} && tar --create --gzip --file {q(archive + '.tmp')} "
            f"--directory {q(source_parent)} {q(source_name)} && mv {q(archive + '.tmp')} {q(archive)} && "
            f"cd {q(d)} && sha256sum {q(name)} > {q(name + '.sha256')}")


def verify_command(archive: str, source: str) -> str:
    """Checksum matches, archive reads to the end, and holds as many entries as `source` has."""
    d, name = archive.rsplit("/", 1)
    q = shlex.quote
    return (f"cd {q(d)} && sha256sum --check --quiet {q(name + '.sha256')} && "
            f"n=$(tar --list --gzip --file {q(name)} | wc -l) && m=$(find {q(source)} | wc -l) && "
            f"if [ \"$n\" -ne \"$m\" ]; then echo \"archive has $n entries, home has $m\" >&2; exit 1; fi")


def delete_unix_user_command(unix_user: str, home: str) -> str:
    """Remove the Unix user and its home; fails unless both are gone afterwards."""
    u, h = shlex.quote(unix_user), shlex.quote(home)
    return f"userdel --remove {u} 2>/dev/null; ! getent passwd {u} >/dev/null && test ! -e {h}"


def pod_name(user: str) -> str:
    return f"coursehub-archive-{safe_slug(user)}"[:63].rstrip("-")


def cluster_pod(settings: Settings, user: str, pvc: str) -> list[list[str]]:
    """Commands that start a pod mounting `pvc` at HOME_IN_POD and wait until it runs."""
    from coursehub.hub.values import split_image

    name, tag = split_image(settings.users.image)
    pod = pod_name(user)
    ns = settings.hub.namespace
    overrides = {"spec": {"containers": [{"name": pod, "image": f"{name}:{tag}", "command": ["sleep", "3600"],
                                          "securityContext": {"runAsUser": 0},
                                          "volumeMounts": [{"name": "home", "mountPath": HOME_IN_POD}]}],
                          "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": pvc}}]}}
    return [
        ["kubectl", "run", pod, "--namespace", ns, "--restart=Never", f"--image={name}:{tag}",
         "--overrides", json.dumps(overrides, sort_keys=True), "--labels=app=coursehub-archive"],
        ["kubectl", "wait", "--namespace", ns, "--for=condition=Ready", f"pod/{pod}", "--timeout=300s"],
    ]


def cluster_write_command(settings: Settings, user: str, archive: str) -> str:
    d, name = archive.rsplit("/", 1)
    q = shlex.quote
    tar = shlex.join(["kubectl", "exec", "--namespace", settings.hub.namespace, pod_name(user), "--",
                      "tar", "--create", "--gzip", "--file", "-", "--directory", HOME_IN_POD, "."])
    return (f"mkdir -p -m 0700 {q(d)} && {tar} > {q(archive + '.tmp')} && mv {q(archive + '.tmp')} {q(archive)} && "
            f"cd {q(d)} && sha256sum {q(name)} > {q(name + '.sha256')}")


def cluster_verify_command(settings: Settings, user: str, archive: str) -> str:
    d, name = archive.rsplit("/", 1)
    q = shlex.quote
    count = shlex.join(["kubectl", "exec", "--namespace", settings.hub.namespace, pod_name(user), "--",
                        "find", HOME_IN_POD + "/."])
    return (f"cd {q(d)} && sha256sum --check --quiet {q(name + '.sha256')} && "
            f"n=$(tar --list --gzip --file {q(name)} | wc -l) && m=$({count} | wc -l) && "
            f"if [ \"$n\" -ne \"$m\" ]; then echo \"archive has $n entries, home has $m\" >&2; exit 1; fi")


# ----------------------------------------------------------------------------- run
def archive_one(remote: Remote, api: HubAPI, settings: Settings, e: Entry, timeout: float = 120,
                log: Callable[[str], None] = print) -> None:
    """Stop, archive, verify, then delete one user. Raises ArchiveError (nothing deleted) on any failure."""
    from coursehub.fleet import CommandFailed

    if e.problem:
        raise ArchiveError(f"{e.user}: {e.problem}")

    def run(cmd: str) -> None:
        try:
            remote.run(cmd, timeout=3600)
        except CommandFailed as err:
            raise ArchiveError(f"{e.user}: {err}; nothing of this user was deleted") from None

    if api.stop_server(e.user) == 202:
        api.wait_server(e.user, ready=False, timeout=timeout)
    log(f"{e.user}: server stopped")
    if settings.topology == "single":
        parent, name = e.home.rsplit("/", 1)
        run(write_commands(parent, name, e.archive))
        run(verify_command(e.archive, e.home))
        log(f"{e.user}: {e.archive} written and verified (sha256 in {e.archive}.sha256)")
        api.delete_user(e.user)
        run(delete_unix_user_command(e.unix_user, e.home))
        log(f"{e.user}: hub user, Unix user {e.unix_user} and {e.home} deleted")
        return
    ns = settings.hub.namespace
    delete_pod = shlex.join(["kubectl", "delete", "pod", pod_name(e.user), "--namespace", ns, "--ignore-not-found",
                             "--wait=true"])
    try:
        for argv in cluster_pod(settings, e.user, e.pvcs[0]):
            run(shlex.join(argv))
        run(cluster_write_command(settings, e.user, e.archive))
        run(cluster_verify_command(settings, e.user, e.archive))
    finally:
        remote.run(delete_pod, check=False)
    log(f"{e.user}: {e.archive} written and verified (sha256 in {e.archive}.sha256)")
    api.delete_user(e.user)
    run(shlex.join(["kubectl", "delete", "pvc", "--namespace", ns, "--ignore-not-found", *e.pvcs]))
    log(f"{e.user}: hub user and PVC {', '.join(e.pvcs)} deleted")
