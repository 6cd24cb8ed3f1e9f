"""helm and kubectl commands for the z2jh release, as argv lists (no shell, no I/O).

Each function returns the exact arguments to run on the head node (Fabric joins
them with shlex.join); tests compare them element by element. The deploy order:

    repo_add(), repo_update()
    hub_pod(s) -> pod name, or nothing on a first install; then db_backup(s, pod, dir, stamp(now))
    upgrade_install(s, values_path)        # --wait: returns when every pod is ready
    rollout_status(s, "hub"), rollout_status(s, "proxy")
    status(s) / history(s) / rollback(s, revision) when something is wrong
"""

from __future__ import annotations

import datetime as _dt
import shlex

from coursehub.settings import Settings

__all__ = [
    "REPO_NAME", "REPO_URL", "CHART", "HUB_DB", "repo_add", "repo_update", "upgrade_install", "status",
    "history", "rollback", "rollout_status", "hub_pod", "stamp", "db_backup_path", "db_backup", "shell",
]

REPO_NAME = "jupyterhub"
REPO_URL = "https://hub.jupyter.org/helm-chart/"
CHART = f"{REPO_NAME}/jupyterhub"
HUB_DB = "/srv/jupyterhub/jupyterhub.sqlite"
DEPLOY_TIMEOUT = "20m"  # the image pre-puller holds the upgrade until every node has the images
ROLLOUT_TIMEOUT = "300s"
# Run inside the hub container (it has Python, not the sqlite3 CLI): sqlite's online backup,
# consistent even while the hub writes. argv[1] = database, argv[2] = copy.
_BACKUP_PY = (
    "import sqlite3, sys; src = sqlite3.connect(sys.argv[1]); dst = sqlite3.connect(sys.argv[2]); "
    "src.backup(dst); dst.close(); src.close()"
)


def repo_add() -> list[str]:
    """Register the z2jh chart repository (idempotent: --force-update)."""
    return ["helm", "repo", "add", "--force-update", REPO_NAME, REPO_URL]


def repo_update() -> list[str]:
    """Refresh the z2jh repository index only."""
    return ["helm", "repo", "update", REPO_NAME]


def upgrade_install(s: Settings, values_path: str, timeout: str = DEPLOY_TIMEOUT) -> list[str]:
    """Install or upgrade the release at the pinned chart version; waits; undoes new resources on failure."""
    h = s.hub
    return [
        "helm", "upgrade", "--install", "--cleanup-on-fail",
        "--version", h.chart_version,
        "--namespace", h.namespace, "--create-namespace",
        "--values", values_path,
        "--wait", "--timeout", timeout,
        h.release, CHART,
    ]


def status(s: Settings) -> list[str]:
    """The release's status as JSON (info.status is "deployed" when healthy)."""
    return ["helm", "status", s.hub.release, "--namespace", s.hub.namespace, "--output", "json"]


def history(s: Settings, limit: int = 10) -> list[str]:
    """The release's last revisions as JSON (to pick a rollback target)."""
    return ["helm", "history", s.hub.release, "--namespace", s.hub.namespace, "--max", str(limit), "--output", "json"]


def rollback(s: Settings, revision: int | None = None, timeout: str = DEPLOY_TIMEOUT) -> list[str]:
    """Roll back to `revision` (default: the previous one) and wait for it."""
    if revision is not None and revision < 1:
        raise ValueError(f"revision must be 1 or more, not {revision}")
    argv = ["helm", "rollback", s.hub.release]
    if revision is not None:
        argv.append(str(revision))
    return argv + ["--namespace", s.hub.namespace, "--cleanup-on-fail", "--wait", "--timeout", timeout]


def rollout_status(s: Settings, deployment: str = "hub", timeout: str = ROLLOUT_TIMEOUT) -> list[str]:
    """Wait until a z2jh deployment (hub, proxy, autohttps, user-scheduler) has rolled out."""
    return ["kubectl", "rollout", "status", f"deployment/{deployment}", "--namespace", s.hub.namespace,
            f"--timeout={timeout}"]


def hub_pod(s: Settings) -> list[str]:
    """Print the running hub pod's name (empty output before the first install)."""
    return ["kubectl", "get", "pods", "--namespace", s.hub.namespace,
            "--selector", "component=hub", "--field-selector", "status.phase=Running",
            "--output", "jsonpath={.items[0].metadata.name}"]


def stamp(now: _dt.datetime) -> str:
    """A UTC timestamp for file names: 20260301T120000Z."""
    if now.tzinfo is None:
        raise ValueError("stamp() needs an aware datetime (e.g. datetime.now(UTC))")
    return now.astimezone(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def db_backup_path(s: Settings, backup_dir: str, when: str) -> str:
    """Where the backup lands on the head node: <dir>/<release>-hub-db-<stamp>.sqlite."""
    return f"{backup_dir.rstrip('/')}/{s.hub.release}-hub-db-{when}.sqlite"


def db_backup(s: Settings, pod: str, backup_dir: str, when: str) -> list[list[str]]:
    """Commands that copy the hub's sqlite database out of `pod` into a timestamped file.

    1. an online backup inside the pod (python3's sqlite3.backup, safe while the hub runs),
    2. `kubectl cp` of that copy to the head node, 3. removal of the copy in the pod.
    Nothing to do (an empty list) unless hub.db is sqlite-pvc.
    """
    if s.hub.db != "sqlite-pvc":
        return []
    if not pod or "/" in pod or pod.startswith("-"):
        raise ValueError(f"bad hub pod name {pod!r}")
    ns = s.hub.namespace
    tmp = f"/tmp/jupyterhub-backup-{when}.sqlite"
    return [
        ["kubectl", "exec", "--namespace", ns, pod, "--container", "hub", "--",
         "python3", "-c", _BACKUP_PY, HUB_DB, tmp],
        ["kubectl", "cp", "--namespace", ns, "--container", "hub", f"{pod}:{tmp}", db_backup_path(s, backup_dir, when)],
        ["kubectl", "exec", "--namespace", ns, pod, "--container", "hub", "--", "rm", "-f", tmp],
    ]


def shell(argv: list[str]) -> str:
    """One argv as a safely quoted command line (for Fabric's run() and for dry-run plans)."""
    return shlex.join(argv)
