"""Create the cloud resources (key pair, security group, volumes, servers) and write inventory/."""

from __future__ import annotations

from invoke import Exit, task

from tasks._common import settings


def _clouds_yaml(s) -> str:
    path = getattr(s.cloud, "clouds_yaml", "")
    return str(s.resolve(path)) if path else ""


def _guard(fn):
    """Turn CloudError/PlanError into one line and the right exit code (2: fix your input)."""
    from coursehub.cloud import CloudError, PlanError

    try:
        return fn()
    except PlanError as e:
        raise Exit(f"provision: {e}", code=2) from None
    except CloudError as e:
        raise Exit(str(e), code=e.code) from None


def _print_plan(report) -> None:
    p = report.plan
    lines = p.lines()
    print(f"plan for {report.identity.project} ({report.identity.user}):")
    for line in lines:
        print(f"  {line}")
    print(f"{len(p.create)} to create, {len(p.remove)} to remove, {len(p.keep)} kept")


@task(default=True, help={
    "dry_run": "print the plan (create / keep / remove); change nothing",
    "remove": "allow removing servers and volumes vars.yml no longer asks for (scale down)",
    "trust_on_first_use": "accept host keys the console log does not show (INSECURE; for images that print none)",
})
def provision(c, dry_run=False, remove=False, trust_on_first_use=False):
    """Create or converge this deployment's servers and volumes, then write inventory/.

    Idempotent: a second run creates nothing. Transient cloud errors are retried,
    ERROR builds are rebuilt, and a run interrupted anywhere is finished by the next.
    """
    from coursehub import cloud
    from coursehub.settings import inventory_dir

    s = settings()
    report = _guard(lambda: cloud.provision(s, inventory_dir(), dry_run=dry_run, allow_remove=remove,
                                            trust_on_first_use=trust_on_first_use, clouds_yaml=_clouds_yaml(s)))
    if dry_run:
        _print_plan(report)
        print("dry run: nothing was changed")
        return
    p = report.plan
    print(f"provision: {len(p.create)} created, {len(p.remove)} removed, {len(p.keep)} kept "
          f"in {report.seconds:.1f} s ({report.retried} transient errors retried)")
    inv = report.inventory
    for h in inv.hosts:
        vols = ", ".join(f"{v.name} {v.size_gb}G" for v in h.volumes) or "-"
        print(f"  {h.name:<20} {h.address:<16} {','.join(h.roles):<14} {vols}")
    print(f"inventory: {inv.hosts_file}  (ssh -F {inv.ssh_config} {inv.head().name})")
    if report.untrusted:
        raise Exit(f"host keys missing for {', '.join(report.untrusted)}: they are not trusted; re-run once their "
                   "console logs show cloud-init's keys, or pass --trust-on-first-use (insecure)", code=1)


@task(name="plan")
def plan_(c):
    """Show what `inv provision` would create, keep and remove (same as --dry-run)."""
    provision(c, dry_run=True)


@task
def status(c):
    """Show this deployment's servers (state, roles, addresses, volumes) as the cloud sees them."""
    from coursehub import cloud
    from coursehub.cloud.apply import address

    s = settings()
    servers, volumes = _guard(lambda: cloud.status(s, clouds_yaml=_clouds_yaml(s)))
    by_id: dict[str, list[str]] = {}
    for v in volumes:
        for sid in v.attached_to:
            by_id.setdefault(sid, []).append(f"{v.name} {v.size}G {v.status}")
    print(f"{'server':<20} {'status':<8} {'roles':<14} {'address':<16} volumes")
    for x in servers:
        print(f"{x.name:<20} {x.status:<8} {','.join(x.roles):<14} {address(x, s.instances.network):<16} "
              f"{'; '.join(by_id.get(x.id, [])) or '-'}")
    loose = [v for v in volumes if not v.attached_to]
    for v in loose:
        print(f"{'(unattached)':<20} {v.status:<8} {'':<14} {'':<16} {v.name} {v.size}G")
    print(f"{len(servers)} servers, {len(volumes)} volumes")


@task(help={"yes": "do not ask for confirmation"})
def destroy(c, yes=False):
    """Delete every server, volume and the security group this deployment created (asks first)."""
    from coursehub import cloud
    from coursehub.settings import inventory_dir

    s = settings()
    if not yes:
        answer = input(f"Delete ALL servers and volumes (with their data) of deployment {s.deployment!r}? "
                       f"Type the deployment name to confirm: ")
        if answer.strip() != s.deployment:
            raise Exit("destroy: not confirmed; nothing was deleted", code=1)
    removed = _guard(lambda: cloud.destroy(s, inventory_dir(), clouds_yaml=_clouds_yaml(s)))
    for r in removed:
        print(f"  - {r}")
    print(f"destroy: {len(removed)} resources removed; the key pair {s.instances.keypair!r} is kept")
