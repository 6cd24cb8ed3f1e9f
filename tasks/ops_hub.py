"""Hub chores through the hub's REST API (and the head host): users, servers, admins, git-pull fixes, archives.

Imported into tasks/ops.py, so these are `inv ops.users`, `inv ops.stop-server`, ...
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from invoke import Exit, task

from tasks._common import inventory, settings

if TYPE_CHECKING:
    from coursehub.hub.rest import HubAPI

__all__ = ["users", "stop_server", "admins", "gitpull_fix", "archive_users"]


def _api() -> tuple[object, object, HubAPI]:
    from tasks.hub import hub_api

    s = settings()
    inv = inventory()
    return s, inv, hub_api(s, inv)


def _fail(e: Exception) -> None:
    from tasks.hub import die

    die(f"{e}")


@task
def users(c):
    """List the hub's users: admin flag, last activity and running servers."""
    from coursehub.hub.rest import HubAPIError

    _, _, api = _api()
    try:
        found = api.users()
    except HubAPIError as e:
        _fail(e)
    width = max([len(u.name) for u in found] + [4])
    print(f"{'user':<{width}}  admin  {'last activity':<24}  servers")
    for u in sorted(found, key=lambda u: u.name):
        servers = ", ".join(f"{n or 'default'} ({'ready' if sv.ready else sv.pending or 'stopped'})"
                            for n, sv in u.servers.items()) or "-"
        print(f"{u.name:<{width}}  {'yes' if u.admin else '   '}    {u.last_activity or 'never':<24}  {servers}")
    print(f"\n{len(found)} users, {sum(1 for u in found if u.running)} with a running server")


@task(help={"user": "the hub user whose server to stop", "timeout": "seconds to wait for it to stop (default 120)"})
def stop_server(c, user, timeout=120):
    """Stop one user's server (their files stay) and wait until it has stopped."""
    from coursehub.hub.rest import HubAPIError

    _, _, api = _api()
    try:
        if api.user(user) is None:
            raise Exit(f"ops.stop-server: no hub user {user!r}", code=2)
        if api.stop_server(user) == 202:
            api.wait_server(user, ready=False, timeout=float(timeout))
    except HubAPIError as e:
        _fail(e)
    print(f"{user}: server stopped")


@task(help={"add": "comma-separated users to make hub admins", "remove": "comma-separated users to take admin from"})
def admins(c, add="", remove=""):
    """Grant or revoke hub admin now; with no flag, list the admins.

    vars.yml users.admins is applied again whenever the hub restarts: make lasting changes there.
    """
    from coursehub.hub.rest import HubAPIError

    s, _, api = _api()
    adds = [n.strip() for n in add.split(",") if n.strip()]
    removes = [n.strip() for n in remove.split(",") if n.strip()]
    try:
        for name in adds:
            if api.user(name) is None:
                api.create_user(name, admin=True)
            else:
                api.set_admin(name, True)
            print(f"{name}: admin")
        for name in removes:
            if api.user(name) is None:
                raise Exit(f"ops.admins: no hub user {name!r}", code=2)
            api.set_admin(name, False)
            note = " (listed in vars.yml users.admins: admin again after the next hub restart)" \
                if name in s.users.admins else ""
            print(f"{name}: not admin{note}")
        if not adds and not removes:
            names = sorted(u.name for u in api.users() if u.admin)
            print("admins: " + (", ".join(names) or "none"))
    except HubAPIError as e:
        _fail(e)


@task(help={"user": "the hub user whose git pull of the course content fails",
            "timeout": "seconds to wait for the server to stop and start again (default 180)"})
def gitpull_fix(c, user, timeout=180):
    """Fix a failing nbgitpuller pull: move the content folder aside, restart the server so it clones afresh.

    Nothing is deleted: the old folder stays beside the new one as <folder>.before-fix-<time>,
    for the student to copy their own work back.
    """
    import datetime as dt

    from coursehub import fleet
    from coursehub.hub import helm, single
    from coursehub.hub.archive import safe_slug
    from coursehub.hub.rest import HubAPIError
    from tasks.hub import head_remote

    s, inv, api = _api()
    stamp = helm.stamp(dt.datetime.now(dt.UTC))
    folder = s.content.target
    try:
        u = api.user(user)
        if u is None:
            raise Exit(f"ops.gitpull-fix: no hub user {user!r}", code=2)
        if api.stop_server(user) == 202:
            api.wait_server(user, ready=False, timeout=float(timeout))
        remote = head_remote(inv)
        if s.topology == "single":
            unix = single.unix_name(user)
            home = remote.run(f"getent passwd {shlex.quote(unix)} | cut -d: -f6").stdout.strip()
            if not home:
                raise Exit(f"ops.gitpull-fix: {user} has no Unix user {unix} (never started a server)", code=2)
            src, dst = f"{home}/{folder}", f"{home}/{folder}.before-fix-{stamp}"
            out = remote.run(f"if [ -e {shlex.quote(src)} ]; then mv -T {shlex.quote(src)} {shlex.quote(dst)} "
                             f"&& echo moved; fi").stdout
        else:  # the original's gitfix Job: a pod on the user's claim does the move
            pod = f"jupyter-{safe_slug(user)}"
            src, dst = f"/home/jovyan/{folder}", f"/home/jovyan/{folder}.before-fix-{stamp}"
            print(f"{user}: moving {src} aside needs the server running: starting it once without changes")
            api.start_server(user)
            api.wait_server(user, ready=True, timeout=float(timeout))
            out = remote.run(shlex.join(["kubectl", "exec", "--namespace", s.hub.namespace, pod, "--", "sh", "-c",
                                         'if [ -e "$1" ]; then mv -T "$1" "$2" && echo moved; fi', "sh", src, dst])
                             ).stdout
            if api.stop_server(user) == 202:
                api.wait_server(user, ready=False, timeout=float(timeout))
        print(f"{user}: {src} moved to {dst}" if "moved" in out else f"{user}: no {src} to move")
        api.start_server(user)
        api.wait_server(user, ready=True, timeout=float(timeout))
    except (HubAPIError, fleet.CommandFailed, fleet.Unreachable) as e:
        _fail(e)
    print(f"{user}: server restarted; the content is pulled afresh into {folder}"
          + (" (content.repo is empty: nothing to pull)" if not s.content.repo else ""))


@task(help={"except_admins": "keep hub admins (and their homes)",
            "to": "folder on the head host for the archives (default /var/backups/coursehub/archive)",
            "users": "comma-separated users to archive (default: every user)",
            "dry_run": "list every user, home, size and archive path; change nothing",
            "yes": "do not ask for confirmation",
            "timeout": "seconds to wait for each server to stop (default 120)"})
def archive_users(c, except_admins=False, to="", users="", dry_run=False, yes=False, timeout=120):
    """End of term: stop each user's server, archive the home (tar.gz + sha256), verify it, then delete the user.

    Nothing of a user is deleted before their archive verifies. On the cluster the user's
    PVCs are found under both KubeSpawner naming schemes and deleted with them.
    """
    import datetime as dt

    from coursehub import fleet
    from coursehub.hub import archive, helm
    from coursehub.hub.health import TEST_USER
    from coursehub.hub.rest import HubAPIError
    from tasks.hub import head_remote

    s, inv, api = _api()
    dest = to or archive.ARCHIVE_DIR
    if not dest.startswith("/"):
        raise Exit(f"ops.archive-users: --to must be an absolute path on the head host (got {dest!r})", code=2)
    wanted = [n.strip() for n in users.split(",") if n.strip()]
    try:
        everyone = api.users()
        if wanted:
            missing = sorted(set(wanted) - {u.name for u in everyone})
            if missing:
                raise Exit(f"ops.archive-users: no hub user {', '.join(missing)}", code=2)
            everyone = [u for u in everyone if u.name in wanted]
        chosen = archive.select_users(everyone, bool(except_admins), skip=[TEST_USER])
        remote = head_remote(inv)
        entries = archive.plan(remote, s, chosen, dest, helm.stamp(dt.datetime.now(dt.UTC)))
    except (HubAPIError, fleet.CommandFailed, fleet.Unreachable, ValueError) as e:
        _fail(e)
    print(f"{len(entries)} users to archive on {inv.head().name} into {dest}:")
    for e in entries:
        print("  " + e.describe())
    if dry_run or not entries:
        print("(dry run: nothing changed)" if dry_run else "nothing to do")
        return
    if not yes:
        answer = input(f"Archive and then DELETE these {len(entries)} users? Type 'yes': ")
        if answer.strip() != "yes":
            raise Exit("ops.archive-users: not confirmed; nothing changed", code=1)
    failed = []
    for e in entries:
        try:
            archive.archive_one(remote, api, s, e, timeout=float(timeout), log=lambda line: print("  " + line))
        except (archive.ArchiveError, HubAPIError, fleet.Unreachable) as err:
            failed.append(e.user)
            print(f"  {e.user}: FAILED: {err}")
    print(f"archived and deleted {len(entries) - len(failed)} of {len(entries)} users"
          + (f"; failed (kept): {', '.join(failed)}" if failed else ""))
    if failed:
        raise Exit(code=1)
