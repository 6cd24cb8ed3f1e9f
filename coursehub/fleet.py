"""Run steps on many hosts at once, report every host, write the run report.

    result = fleet.run([SwapOff(), Clock()], inventory, task="ops.swapoff")
    sys.exit(fleet.finish(result, inventory))

- Hosts run in parallel (a bounded pool); one host failing or unreachable never
  stops the others. Within a host, steps run in order; a failed step stops that
  host's later steps.
- Each host gets one SSH connection per process, shared by chained tasks
  (`inv ops.swapoff ops.resync-clocks`), with strict host-key checking against
  inventory/known_hosts only: an unknown or changed key is refused.
- `dry_run` probes and decides for real, then prints each host's plan and
  changes nothing.
- Everything printed or written passes through the secrets redactor.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from coursehub import secrets
from coursehub.inventory import Host, Inventory, atomic_write

if TYPE_CHECKING:
    import fabric

    from coursehub.steps import FileSpec, Step

OK, CHANGED, FAILED, UNREACHABLE = "ok", "changed", "failed", "unreachable"


class CommandFailed(Exception):
    """A command exited non-zero; str() names the command (redacted) and the output tail."""

    def __init__(self, command: str, rc: int, stdout: str, stderr: str):
        tail = (stderr.strip() or stdout.strip()).splitlines()[-3:]
        super().__init__(f"`{command}` exited {rc}" + (": " + " | ".join(tail) if tail else ""))
        self.command, self.rc, self.stdout, self.stderr = command, rc, stdout, stderr


class Unreachable(Exception):
    """The host could not be reached or stopped answering."""


class HostKeyRejected(Exception):
    """The host's key is not the one in inventory/known_hosts."""


@dataclass
class Out:
    stdout: str
    stderr: str
    rc: int
    remote: Remote | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def keep(self) -> Out:
        """Record this output in the host's result (ad hoc commands)."""
        if self.remote is not None:
            self.remote.kept.append(self.stdout + self.stderr)
        return self


# ----------------------------------------------------------------------------- connections
_POOL: dict[tuple[str, str], fabric.Connection] = {}
_POOL_LOCK = threading.Lock()


def connect(inv: Inventory, host: Host, timeout: float = 10) -> fabric.Connection:
    """The open connection to `host`, made once per process and reused."""
    import paramiko
    from fabric import Config, Connection

    key = (str(inv.ssh_config.resolve()), host.name)
    with _POOL_LOCK:
        conn = _POOL.get(key)
    if conn is not None and conn.is_connected:
        return conn
    config = Config(runtime_ssh_path=str(inv.ssh_config), overrides={"run": {"in_stream": False, "hide": True, "warn": True}})
    conn = Connection(host.name, config=config, connect_timeout=int(timeout),
                      connect_kwargs={"look_for_keys": False, "allow_agent": False, "banner_timeout": timeout,
                                      "auth_timeout": timeout})
    # Fabric trusts any key (paramiko's AutoAddPolicy). Trust only our known_hosts.
    conn.client.load_host_keys(str(inv.known_hosts))
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        conn.open()
    except paramiko.BadHostKeyException as e:
        raise HostKeyRejected(f"host key CHANGED for {host.name} ({host.address}): refusing to connect; "
                              f"got {e.key.get_name()} {e.key.fingerprint}") from None
    except paramiko.AuthenticationException as e:
        raise CommandFailed("ssh login", 255, "", f"authentication failed as {host.user}: {e}") from None
    except paramiko.SSHException as e:
        if "not found in known_hosts" in str(e):
            raise HostKeyRejected(f"host key of {host.name} ({host.address}) is not in {inv.known_hosts}: "
                                  "refusing to connect") from None
        raise Unreachable(f"ssh: {e}") from None
    except (TimeoutError, OSError, EOFError) as e:
        raise Unreachable(f"cannot connect to {host.address}:{host.port}: {e}") from None
    conn.transport.set_keepalive(15)
    with _POOL_LOCK:
        _POOL[key] = conn
    return conn


def connect_waiting(inv: Inventory, host: Host, wait: float) -> fabric.Connection:
    """connect(), retrying an unreachable host until `wait` seconds have passed (a booting server)."""
    deadline = time.monotonic() + wait
    delay = 0.5
    while True:
        try:
            return connect(inv, host)
        except Unreachable as e:
            if time.monotonic() + delay > deadline:
                raise Unreachable(f"{e} (waited {wait:g} s)" if wait else str(e)) from None
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)


def close_all() -> None:
    """Close every pooled connection (end of process, or tests)."""
    with _POOL_LOCK:
        conns = list(_POOL.values())
        _POOL.clear()
    for c in conns:
        c.close()


class Remote:
    """A host as steps see it: run commands as root, install files."""

    def __init__(self, host: Host, conn: fabric.Connection, redact: secrets.Redactor, timeout: float = 600):
        self.host, self.conn, self.redact, self.timeout = host, conn, redact, timeout
        self.kept: list[str] = []
        self.sudo = "" if host.user == "root" else "sudo -n "

    def run(self, command: str, check: bool = True, timeout: float | None = None) -> Out:
        """Run `command` with sh as root; raise CommandFailed on non-zero exit when `check`."""
        import paramiko
        from invoke.exceptions import CommandTimedOut

        line = f"{self.sudo}sh -c {shlex.quote(command)}" if self.sudo else command
        try:
            r = self.conn.run(line, hide=True, warn=True, in_stream=False, timeout=timeout or self.timeout)
        except CommandTimedOut:
            raise Unreachable(f"`{self.redact(command)}` did not finish in {timeout or self.timeout:g} s") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise Unreachable(f"connection lost: {e}") from None
        out = Out(r.stdout, r.stderr, r.exited, self)
        if check and r.exited != 0:
            raise CommandFailed(self.redact(command), r.exited, self.redact(r.stdout), self.redact(r.stderr))
        return out

    def put(self, spec: FileSpec) -> None:
        """Install a file: upload to a private temporary file, then move it into place as root."""
        tmp = f"/tmp/.coursehub-{spec.sha256[:16]}-{threading.get_ident()}"
        sftp = self.conn.sftp()
        with sftp.open(tmp, "wb") as f:
            f.chmod(0o600)
            f.write(spec.text.encode())
        dest = shlex.quote(spec.path)
        new = shlex.quote(spec.path + ".coursehub-new")
        self.run(
            f"mkdir -p $(dirname {dest}) && cp {tmp} {new} && rm -f {tmp} && chmod {spec.mode:o} {new} "
            f"&& chown {spec.owner}:{spec.group} {new} && mv -f {new} {dest}"
        )


# ----------------------------------------------------------------------------- results
@dataclass
class HostResult:
    status: str = OK
    changed: list[str] = field(default_factory=list)
    plan: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""
    output: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RunResult:
    task: str
    started: str
    finished: str = ""
    dry_run: bool = False
    hosts: dict[str, HostResult] = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.hosts.values() if r.status == status)

    @property
    def failed(self) -> bool:
        return any(r.status in (FAILED, UNREACHABLE) for r in self.hosts.values())

    def report(self) -> dict[str, Any]:
        return {
            "task": self.task, "started": self.started, "finished": self.finished, "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "hosts": {name: asdict(r) for name, r in self.hosts.items()},
        }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def run(
    steps: Sequence[Step],
    inv: Inventory,
    *,
    task: str,
    hosts: Sequence[Host] | None = None,
    dry_run: bool = False,
    parallel: int = 20,
    timeout: float = 600,
    progress: IO[str] | None = None,
    connect_wait: float = 0,
) -> RunResult:
    """Run `steps` on every host (default: all in `inv`) in parallel; never raises for a host.

    `connect_wait`: keep trying an unreachable host this long before reporting it
    (bootstrap waits for freshly provisioned servers to answer SSH).
    """
    chosen = list(inv.hosts if hosts is None else hosts)
    redact = secrets.redactor()
    result = RunResult(task=task, started=_now(), dry_run=dry_run)
    progress = sys.stderr if progress is None else progress
    t0 = time.monotonic()
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(chosen) or 1))) as pool:
        futures = {pool.submit(_run_host, steps, inv, h, dry_run, timeout, redact, connect_wait): h for h in chosen}
        for fut in as_completed(futures):
            h = futures[fut]
            r = fut.result()
            result.hosts[h.name] = r
            done += 1
            detail = ", ".join(r.changed or r.plan) or (r.error.splitlines() or [""])[0][:100]
            print(f"  [{done:>{len(str(len(chosen)))}}/{len(chosen)}] {h.name:<20} {r.status:<11} {detail}",
                  file=progress, flush=True)
    result.hosts = {h.name: result.hosts[h.name] for h in chosen}
    result.finished = _now()
    result.seconds = time.monotonic() - t0
    return result


def _run_host(steps: Sequence[Step], inv: Inventory, host: Host, dry_run: bool, timeout: float,
              redact: secrets.Redactor, connect_wait: float = 0) -> HostResult:
    t0 = time.monotonic()
    r = HostResult()
    step_name = "connect"
    try:
        remote = Remote(host, connect_waiting(inv, host, connect_wait), redact, timeout)
        for step in steps:
            step_name = step.name
            actions = step.decide(step.probe(remote), remote)
            if not actions:
                continue
            if dry_run:
                r.plan[step.name] = [redact(a.describe()) for a in actions]
                continue
            step.apply(remote, actions)
            r.changed.append(step.name)
            left = step.verify(remote)
            if left:
                raise CommandFailed(f"verify {step.name}", 1, "", "still to do after apply: "
                                    + "; ".join(a.describe() for a in left))
        r.output = [redact(o) for o in remote.kept]
        r.status = CHANGED if (r.changed or r.plan) else OK
    except Unreachable as e:
        r.status, r.error = UNREACHABLE, redact(str(e))
    except (CommandFailed, HostKeyRejected) as e:
        r.status, r.error = FAILED, redact(f"{step_name}: {e}")
    except Exception as e:  # a bug in a step must not hide the other hosts' results
        r.status, r.error = FAILED, redact(f"{step_name}: {type(e).__name__}: {e}")
    r.seconds = round(time.monotonic() - t0, 3)
    return r


# ----------------------------------------------------------------------------- summary
def finish(result: RunResult, inv: Inventory, out: IO[str] | None = None) -> int:
    """Print the per-host table and summary, write the run report; return the exit code."""
    out = sys.stdout if out is None else out
    redact = secrets.redactor()
    width = max([len(n) for n in result.hosts] + [4])
    verb = "would change" if result.dry_run else "changed"
    print(f"\n{'host':<{width}}  {'status':<11}  {verb}", file=out)
    for name, r in result.hosts.items():
        status = "plan" if result.dry_run and r.plan else r.status
        detail = ", ".join(r.plan or r.changed) if (r.plan or r.changed) else r.error
        print(f"{name:<{width}}  {status:<11}  {redact(detail)}", file=out)
        for step, lines in r.plan.items():
            for line in lines:
                print(f"{'':<{width}}    {step}: {line}", file=out)
        for text in r.output:
            for line in text.rstrip().splitlines():
                print(f"{'':<{width}}  | {line}", file=out)
    path = write_report(result, inv)
    counts = ", ".join(f"{result.count(s)} {s}" for s in (OK, CHANGED, FAILED, UNREACHABLE) if result.count(s))
    print(f"\n{result.task}: {counts or 'no hosts'} in {result.seconds:.1f} s"
          + (" (dry run: nothing changed)" if result.dry_run else "") + f"; report: {path}", file=out)
    return 1 if result.failed else 0


def write_report(result: RunResult, inv: Inventory) -> Path:
    """inventory/runs/<UTC timestamp>-<task>.json and runs/last.json, redacted."""
    runs = inv.dir / "runs"
    stamp = result.started.replace(":", "").replace("-", "")
    path = runs / f"{stamp}-{result.task.replace('/', '_')}.json"
    n = 1
    while path.exists():
        n += 1
        path = runs / f"{stamp}-{result.task}-{n}.json"
    text = json.dumps(secrets.redactor().data(result.report()), indent=2) + "\n"
    atomic_write(path, text)
    atomic_write(runs / "last.json", text)
    return path
