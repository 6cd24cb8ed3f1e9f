"""Install, validate and look after JupyterHub (z2jh on the cluster, or the single-node hub).

    inv hub                 deploy by topology (cluster: helm on the head node; single: the head host)
    inv hub.render          write the z2jh values file (0600) and print it, secrets redacted
    inv hub.validate        schema + policy checks of the values
    inv hub.status          services / helm release, and what the hub API says
    inv hub.health          throwaway user: spawn, request through the proxy, stop, delete
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from invoke import Exit, task

from tasks._common import inventory, settings

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.hub.rest import HubAPI
    from coursehub.inventory import Inventory
    from coursehub.settings import Settings

VALUES_FILE = "z2jh-values.yaml"  # in the inventory folder (git-ignored), mode 0600


# ----------------------------------------------------------------------------- shared with tasks/ops_hub.py
def secret_store() -> Any:
    from coursehub import secrets
    from coursehub.settings import inventory_dir

    try:
        return secrets.load(inventory_dir())
    except secrets.SecretsError as e:
        raise Exit(str(e), code=2) from None


def head_remote(inv: Inventory) -> Remote:
    """A Remote for the head host over the fleet's shared connection; exit 1 if unreachable."""
    from coursehub import fleet, secrets
    from coursehub.inventory import InventoryError

    try:
        head = inv.head()
    except InventoryError as e:
        raise Exit(str(e), code=2) from None
    try:
        return fleet.Remote(head, fleet.connect(inv, head), secrets.redactor())
    except (fleet.Unreachable, fleet.HostKeyRejected, fleet.CommandFailed) as e:
        raise Exit(f"{head.name}: {e}", code=1) from None


def hub_api(s: Settings, inv: Inventory) -> HubAPI:
    """The hub's REST API through its proxy, with CourseHub's service token."""
    from coursehub.hub.rest import HubAPI, api_url
    from coursehub.hub.single import API_TOKEN

    return HubAPI(api_url(s, inv.head().address), secret_store().get(API_TOKEN))


def die(message: str, code: int = 1) -> None:
    from coursehub import secrets

    raise Exit(secrets.redactor()(message), code=code)


def _values(s: Settings) -> dict[str, Any]:
    from coursehub.hub.deploy import cluster_values
    from coursehub.hub.single import secrets_for
    from coursehub.hub.values import ValuesError

    store = secret_store()
    try:
        return cluster_values(s, secrets_for(s, store))
    except ValuesError as e:
        raise Exit(str(e), code=2) from None


# ----------------------------------------------------------------------------- tasks
@task(default=True, help={"dry_run": "probe and validate, print what would change; deploy nothing",
                          "skip_health": "do not run the health check after deploying"})
def hub(c, dry_run=False, skip_health=False):
    """Deploy JupyterHub as vars.yml describes (topology cluster: helm; single: the head host), then check it."""
    s = settings()
    if s.topology == "single":
        _deploy_single(s, dry_run)
    else:
        _deploy_cluster(s, dry_run)
    if not dry_run and not skip_health:
        health(c)


def _deploy_single(s: Settings, dry_run: bool) -> None:
    from coursehub import fleet
    from coursehub.hub import single
    from coursehub.hub.values import ValuesError

    inv = inventory()
    try:
        single.check(s)
        tls = single.read_tls(s)
    except (single.SingleHubError, ValuesError) as e:
        raise Exit(str(e), code=2) from None
    secrets = single.secrets_for(s, secret_store())
    steps = single.steps(s, inv, secrets, tls)
    result = fleet.run(steps, inv, task="hub", hosts=[inv.head()], dry_run=dry_run, parallel=1, timeout=1200)
    code = fleet.finish(result, inv)
    if code:
        raise Exit(code=code)
    if not dry_run:
        from coursehub.hub.rest import api_url

        print(f"hub: {api_url(s, inv.head().address).removesuffix('/hub/api')}/")


def _deploy_cluster(s: Settings, dry_run: bool) -> None:
    import datetime as dt

    from coursehub import secrets
    from coursehub.hub import deploy

    values = _values(s)
    inv = inventory()
    plan = deploy.cluster_plan(s, values, dt.datetime.now(dt.UTC))
    redact = secrets.redactor()
    if dry_run:
        print(f"{inv.head().name}: would run (values validated; nothing changed):")
        for line in plan.describe(s):
            print("  " + redact(line))
        return
    remote = head_remote(inv)
    try:
        deploy.run_cluster(remote, s, plan, log=lambda line: print(f"{inv.head().name}$ {redact(line)}", flush=True))
    except deploy.DeployError as e:
        die(f"hub: deploy failed: {e}")


@task(help={"output": f"where to write the values (default: inventory/{VALUES_FILE}, mode 0600)"})
def render(c, output=""):
    """Write the z2jh values file (0600) for vars.yml and print it with every secret redacted."""
    from coursehub import secrets
    from coursehub.hub import values as values_mod
    from coursehub.settings import inventory_dir

    s = settings()
    values = _values(s)
    path = values_mod.write_values(output or inventory_dir() / VALUES_FILE, values)
    from coursehub.hub.single import secrets_for

    shown = values_mod.redact(values, secrets_for(s, secret_store()))
    print(secrets.redactor()(values_mod.to_yaml(shown)), end="")
    print(f"# written to {path} (mode 0600)", file=sys.stderr)


@task
def validate(c):
    """Check the z2jh values: the chart's schema (4.4.0), then CourseHub's policy rules."""
    from coursehub.hub.validate import check

    s = settings()
    problems = check(s, _values(s))  # _values already stops at the first problem; this lists the rest
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        raise Exit(code=2)
    print(f"z2jh {s.hub.chart_version} values: schema and policy checks passed")


@task
def status(c):
    """Show the hub: its services (single) or helm release (cluster), and what its API reports."""
    from coursehub.hub import helm, single
    from coursehub.hub.rest import HubAPIError
    from coursehub.steps.probe import parse_units, units_command

    s = settings()
    inv = inventory()
    remote = head_remote(inv)
    failed = False
    if s.topology == "single":
        units = parse_units(remote.run(units_command([single.PROXY_UNIT, single.HUB_UNIT]), check=False).stdout,
                            [single.PROXY_UNIT, single.HUB_UNIT])
        for u in units.values():
            print(f"{u.id:<26} {u.active:<10} {u.enabled or 'no unit file'}")
            failed |= not u.running
    else:
        out = remote.run(helm.shell(helm.status(s)), check=False)
        print(out.stdout.strip()[:2000] or out.stderr.strip())
        failed |= not out.ok
    api = hub_api(s, inv)
    try:
        info = api.info()
        users = api.users()
        running = [u.name for u in users if u.running]
        print(f"hub API {api.base}: JupyterHub {info.get('version', '?')}, {len(users)} users, "
              f"{len(running)} servers running" + (f" ({', '.join(running)})" if running else ""))
    except HubAPIError as e:
        print(f"hub API {api.base}: {e}")
        failed = True
    if failed:
        raise Exit(code=1)


@task(help={"attempts": "how many times to try before failing (default 3)",
            "timeout": "seconds to wait for the test server to start or stop (default 180)"})
def health(c, attempts=3, timeout=180):
    """Create a throwaway user through the API, start its server, reach it through the proxy, stop it, delete it."""
    import shlex

    from coursehub import fleet
    from coursehub.hub import health as health_mod
    from coursehub.hub import single

    s = settings()
    inv = inventory()
    api = hub_api(s, inv)
    remove = None
    if s.topology == "single":
        remote = head_remote(inv)

        def remove(user: str) -> None:
            name = shlex.quote(single.unix_name(user))
            try:
                remote.run(f"if getent passwd {name} >/dev/null; then userdel --remove {name} 2>/dev/null; fi; "
                           f"! getent passwd {name} >/dev/null")
            except (fleet.CommandFailed, fleet.Unreachable) as e:
                raise RuntimeError(f"removing Unix user {name}: {e}") from None

    result = health_mod.check(api, attempts=int(attempts), timeout=float(timeout), remove_host_user=remove,
                              log=lambda line: print(f"  {line}", flush=True))
    if not result.ok:
        die(f"hub.health: FAILED after {result.attempts} attempts in {result.seconds:.1f} s: {result.errors[-1]}")
    print(f"hub.health: ok in {result.seconds:.1f} s (attempt {result.attempts})")
