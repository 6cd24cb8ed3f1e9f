"""Verify every host with testinfra and print a host x check table (changes nothing)."""

from __future__ import annotations

from invoke import Exit, task

from tasks._common import HOST_FLAGS, selected


@task(default=True, help={
    "hosts": HOST_FLAGS["hosts"],
    "role": "only hosts with this role (head, compute or storage); each host gets every check for its roles",
    "parallel": "how many hosts to read at once (default: vars.yml `parallel`)",
})
def check(c, hosts="", role="", parallel=0):
    """Check every host against vars.yml with the testinfra checks in tests/infra; read-only.

    All hosts: login, swap off (now and in fstab), time sync, data disks mounted by UUID,
    free space, container runtime root, no password SSH login, nothing CourseHub wrote
    world-writable. Storage: volume filesystem, NFS exports. Head: kubelet and API
    (cluster) or hub, proxy and port (single). Prints a host x check table and the
    reason for every failure; exit 1 if any check failed, 2 on bad input.
    """
    from coursehub import check as chk
    from coursehub.secrets import SecretsError, load, redactor
    from coursehub.settings import vars_path

    s, inv, chosen = selected(hosts, role)
    if parallel < 0:
        raise Exit(f"--parallel: expected a positive number, got {parallel}", code=2)
    try:
        load(inv.dir)  # registers the generated secrets with the redactor: none may appear in the output
    except SecretsError as e:
        raise Exit(str(e), code=2) from None
    started, redact, parallel = chk.now(), redactor(), parallel or s.parallel
    print(f"check: {len(chosen)} hosts, {min(parallel, len(chosen))} at once (read-only)")
    try:
        reports = chk.run(inv, chosen, vars_path(), parallel=parallel)
    except chk.CheckError as e:
        raise Exit(str(e), code=2) from None
    seconds = (chk.now() - started).total_seconds()
    print("\n" + redact(chk.render_table(reports)))
    path = chk.write_report(reports, inv, started, seconds)
    print(f"\n{chk.summary(reports, seconds)}; report: {path}")
    code = chk.exit_code(reports)
    if code:
        raise Exit(code=code)
