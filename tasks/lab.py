"""The lab: an OpenStack-compatible API with real systemd hosts on this machine (root)."""

from __future__ import annotations

from pathlib import Path

from invoke import Exit, task

from tasks._common import settings


def _guard(fn):
    from coursehub.lab.control import LabError

    try:
        return fn()
    except LabError as e:
        raise Exit(str(e), code=e.code) from None


@task(help={
    "backend": "hosts (real systemd hosts; root) or memory (API only, no root). Default: vars.yml lab.backend",
    "nodes": "how many servers vars.lab.yml asks for. Default: vars.yml lab.nodes",
    "port": "the API's port on 127.0.0.1. Default: vars.yml lab.api_port",
})
def up(c, backend="", nodes=0, port=0):
    """Start the lab's OpenStack API and write clouds.yaml and vars.lab.yml.

    State lives in $COURSEHUB_LAB_DIR (default /var/lib/coursehub-lab as root).
    Then: COURSEHUB_VARS=vars.lab.yml inv provision bootstrap hub check
    """
    from coursehub.inventory import atomic_write
    from coursehub.lab import control

    s = settings()
    backend = backend or s.lab.backend
    if backend not in ("hosts", "memory"):
        raise Exit(f"--backend: unknown backend {backend!r} (expected hosts or memory)", code=2)
    nodes = nodes or s.lab.nodes
    if not 1 <= nodes <= 40:
        raise Exit(f"--nodes: {nodes} is out of range (expected 1 to 40)", code=2)
    lab_dir = control.default_dir()
    info = _guard(lambda: control.up(lab_dir, backend, port or s.lab.api_port, s.lab.subnet))
    out = Path("vars.lab.yml")
    atomic_write(out, control.vars_lab(info, nodes, Path("vars.yml").resolve()))
    print(f"lab: wrote {out} ({nodes} nodes) and {info.clouds_yaml} (0600)")
    print("next: COURSEHUB_VARS=vars.lab.yml inv provision bootstrap hub check")


@task
def status(c):
    """Show the lab: API address and process, its servers, and anything left behind."""
    from coursehub.lab import control

    lab_dir = control.default_dir()
    info = control.running(lab_dir)
    if info is None:
        print(f"lab: not running (state folder {lab_dir})")
    else:
        print(f"lab: API {info.url} (pid {info.pid}), backend {info.backend}, network {info.subnet}")
        rows = control.servers(info)
        for srv in rows:
            print(f"  {srv.get('name', '?'):<20} {srv.get('status', '?'):<8} {srv.get('address', '')}")
        print(f"  {len(rows)} servers")
    left = control.leftovers(lab_dir)
    if left and info is None:
        print("left behind by an earlier lab (inv lab.down removes it):")
        for line in left:
            print(f"  {line}")


@task
def down(c):
    """Stop the lab: power off and remove its hosts, network and volumes; verify nothing is left."""
    from coursehub.lab import control

    lab_dir = control.default_dir()
    problems = control.down(lab_dir)
    Path("vars.lab.yml").unlink(missing_ok=True)
    if problems:
        for p in problems:
            print(f"  left: {p}")
        raise Exit(f"lab.down: {len(problems)} things could not be removed (above)", code=1)
    print("lab: down; nothing left behind")
