"""Run the testinfra checks in tests/infra against hosts and tell, per host and check, how it went.

    reports = check.run(inventory, hosts, vars_file=..., parallel=20)
    print(check.render_table(reports))
    sys.exit(check.exit_code(reports))

The hosts are dealt to a few pytest processes, one per CPU at most (`python -m pytest
tests/infra --hosts=ssh://a,ssh://b -p no:cacheprovider --junitxml=...`), each with a
deadline. A process first reads all of its hosts at once (`--check-threads`; `parallel`
in total): one login and one batched probe per host, each bounded by ssh's timeouts and
a limit per command, so an unreachable host costs its ConnectTimeout while the others
are read. Then its checks judge what was read. (One process per host, tried first,
spent 4x the CPU: pytest and its imports cost ~0.45 s per process. 20 sshd hosts on a
2-CPU machine: 14 s of CPU and 11 s wall that way, 3.5 s of CPU and 5.6 s wall now.)
Each junit report becomes one Outcome per host and check; the table has a row per host
and a column per check:

    host   ssh  swap  clock  disks  free  runtime  sshd  perms  hub  port
    head   ok   ok    ok     ok     ok    ok       ok    ok     ok   ok
    node2  ok   FAIL  skip   ok     ok    ok       ok    FAIL   -    -

`ok` passed, `FAIL` failed, `skip` does not apply to the host (the reason is listed),
`ERR` the check itself broke, `-` not a check for this host's roles. Failures, errors
and skips follow the table, one line each. Checks only read: nothing here or in
tests/infra changes a host. The report goes to inventory/runs/<time>-check.json.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from coursehub.inventory import Host, Inventory

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "tests" / "infra"
OK, FAILED, SKIPPED, ERROR = "ok", "failed", "skipped", "error"
CELL = {OK: "ok", FAILED: "FAIL", SKIPPED: "skip", ERROR: "ERR"}
NOT_RUN = "-"
_RANK = {OK: 0, SKIPPED: 1, FAILED: 2, ERROR: 3}  # a test with several records keeps its worst


class CheckError(Exception):
    """The checks cannot run at all (no tests/infra next to the package); str() is one line."""


@dataclass
class Outcome:
    """One check on one host."""

    status: str  # ok, failed, skipped, error
    message: str = ""  # one line: what is wrong, or why it was skipped


@dataclass
class HostReport:
    """Every check of one host, or why the checks could not run there."""

    host: str
    checks: dict[str, Outcome] = field(default_factory=dict)
    error: str = ""  # the pytest process itself failed (crash, timeout, usage error)
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.error) or any(o.status in (FAILED, ERROR) for o in self.checks.values())


# ----------------------------------------------------------------------------- junit
def clean_message(text: str) -> str:
    """pytest's failure message as one line: no exception prefix, no assertion rewrite."""
    text = text or ""
    for prefix in ("AssertionError: ", "Failed: ", "Skipped: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    text = re.split(r"\n\s*assert ", text, maxsplit=1)[0]
    return " ".join(text.split())


def split_name(name: str) -> tuple[str, str]:
    """'test_swap[ssh://node1]' -> ('swap', 'node1')."""
    base, _, param = name.partition("[")
    host = param.rstrip("]").removeprefix("ssh://").split("?")[0]
    return base.removeprefix("test_"), host


def parse_junit(text: str) -> dict[str, dict[str, Outcome]]:
    """A pytest junit report -> host -> check -> Outcome, checks in the order they ran."""
    root = ET.fromstring(text)
    out: dict[str, dict[str, Outcome]] = {}
    for case in root.iter("testcase"):
        check, host = split_name(case.get("name", ""))
        outcome = Outcome(OK)
        for child in case:
            status = {"failure": FAILED, "error": ERROR, "skipped": SKIPPED}.get(child.tag)
            if status and _RANK[status] > _RANK[outcome.status]:
                outcome = Outcome(status, clean_message(child.get("message") or child.text or ""))
        checks = out.setdefault(host, {})
        if check not in checks or _RANK[outcome.status] > _RANK[checks[check].status]:
            checks[check] = outcome
    return out


# ----------------------------------------------------------------------------- running
HOST_TIMEOUT = 120  # seconds one host may take (login and its probe); ssh and the probe bound themselves first


def plan(names: Sequence[str], parallel: int, cpus: int | None = None) -> list[list[str]]:
    """Hosts dealt round-robin to at most `cpus` processes (and no more than `parallel` or one per host)."""
    procs = max(1, min(len(names), parallel, cpus or os.cpu_count() or 1))
    return [list(names[i::procs]) for i in range(procs) if names[i::procs]]


def pytest_argv(hosts: Sequence[str], junit: Path, ssh_config: Path, threads: int, infra: Path = INFRA) -> list[str]:
    """The pytest command that checks `hosts`, `threads` of them at once."""
    # The project's addopts and filterwarnings are for its own tests (the latter imports openstack: 0.5 s).
    return [sys.executable, "-m", "pytest", str(infra), "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
            "-o", "addopts=", "-o", "filterwarnings=", f"--junitxml={junit}",
            "--hosts=" + ",".join(f"ssh://{h}" for h in hosts), f"--ssh-config={ssh_config}",
            f"--check-threads={threads}"]


def check_env(vars_file: Path, inventory_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a check process: the same vars.yml and inventory, as absolute paths."""
    env = dict(os.environ if base is None else base)
    env.update(COURSEHUB_VARS=str(vars_file.resolve()), COURSEHUB_INVENTORY=str(inventory_dir.resolve()),
               PYTHONDONTWRITEBYTECODE="1")
    return env


def run_hosts(names: Sequence[str], ssh_config: Path, env: Mapping[str, str], threads: int = 20,
              timeout: float | None = None, infra: Path = INFRA) -> list[HostReport]:
    """Check `names` in one pytest process (its own deadline); one report per host, never raises for a host."""
    if timeout is None:
        timeout = HOST_TIMEOUT * -(-len(names) // max(1, threads)) + 30
    t0 = time.monotonic()
    error, results = "", {}
    with tempfile.TemporaryDirectory(prefix="coursehub-check-") as tmp:
        junit = Path(tmp) / "junit.xml"
        proc = subprocess.Popen(pytest_argv(names, junit, ssh_config, threads, infra), cwd=REPO, env=dict(env),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # no terminal: nothing can prompt; killable as a group
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            output, _ = proc.communicate()
            error = f"the checks did not finish in {timeout:g} s"
        else:
            error = _process_error(proc.returncode, output, junit)
        if junit.exists() and junit.stat().st_size:
            try:
                results = parse_junit(junit.read_text(encoding="utf-8"))
            except ET.ParseError as e:
                error = error or f"unreadable junit report: {e}"
    seconds = round(time.monotonic() - t0, 3)
    return [HostReport(n, results.get(n, {}), error or ("" if n in results else "no result for this host"), seconds)
            for n in names]


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """End the pytest process we started and its children (ssh), by its process group."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _process_error(rc: int, output: str, junit: Path) -> str:
    """'' when pytest ran the checks (exit 0 or 1), else one line saying what went wrong."""
    if rc in (0, 1) and junit.exists():
        return ""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    useful = [ln for ln in lines if ln.startswith(("ERROR", "E ", "UsageError"))] or lines
    tail = " | ".join(useful[-3:])[:400]
    what = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no checks collected"}.get(rc, f"exit {rc}")
    return f"pytest {what}" + (f": {tail}" if tail else "")


Runner = Callable[[list[str], int], list[HostReport]]


def run(inv: Inventory, hosts: Sequence[Host], vars_file: Path, parallel: int = 20,
        progress: IO[str] | None = None, runner: Runner | None = None, cpus: int | None = None) -> list[HostReport]:
    """Check `hosts`, at most `parallel` at once, in a few pytest processes; one report per host, in order."""
    if runner is None:
        if not (INFRA / "conftest.py").exists():
            raise CheckError(f"{INFRA}: the checks are not there (inv check runs from a CourseHub checkout)")
        env = check_env(vars_file, inv.dir)
        ssh_config = inv.ssh_config.resolve()

        def runner(names: list[str], threads: int) -> list[HostReport]:
            return run_hosts(names, ssh_config, env, threads)

    progress = sys.stderr if progress is None else progress
    names = [h.name for h in hosts]
    chunks = plan(names, parallel, cpus)
    threads = max(1, parallel // max(1, len(chunks)))
    reports: dict[str, HostReport] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(chunks))) as pool:
        futures = [pool.submit(runner, chunk, threads) for chunk in chunks]
        for fut in as_completed(futures):
            for r in fut.result():
                reports[r.host] = r
                bad = [c for c, o in r.checks.items() if o.status in (FAILED, ERROR)]
                state = "error" if r.error else "failed" if bad else "ok"
                detail = r.error[:100] if r.error else ", ".join(bad)
                print(f"  [{len(reports):>{len(str(len(names)))}}/{len(names)}] {r.host:<20} {state:<7} {detail}",
                      file=progress, flush=True)
    return [reports[n] for n in names]


# ----------------------------------------------------------------------------- output
def columns(reports: Iterable[HostReport]) -> list[str]:
    """Every check that ran on any host, in the order first seen."""
    return list(dict.fromkeys(c for r in reports for c in r.checks))


def cell(r: HostReport, check: str) -> str:
    if check in r.checks:
        return CELL[r.checks[check].status]
    return CELL[ERROR] if r.error else NOT_RUN


def render_table(reports: Sequence[HostReport]) -> str:
    """The host x check table, then one line per failure, error and skip."""
    cols = columns(reports) or ["checks"]
    width = max([len(r.host) for r in reports] + [4])
    widths = [max(len(c), 4) for c in cols]

    def row(first: str, cells: Iterable[str]) -> str:
        return "  ".join([f"{first:<{width}}", *(f"{v:<{w}}" for v, w in zip(cells, widths, strict=True))]).rstrip()

    lines = [row("host", cols)] + [row(r.host, (cell(r, c) for c in cols)) for r in reports]
    notes = details(reports)
    return "\n".join(lines + ([""] + notes if notes else []))


def details(reports: Sequence[HostReport]) -> list[str]:
    """One line per broken, failed and skipped check (in that order), and per host that could not be checked.

    A host's checks skipped for the same reason share one line.
    """
    width = max([len(r.host) for r in reports] + [4])
    out = []
    for r in reports:
        if r.error:
            out.append(f"{r.host:<{width}}  {'ERR':<4}  {r.error}")
    for wanted in (ERROR, FAILED, SKIPPED):
        for r in reports:
            by_reason: dict[str, list[str]] = {}
            for c, o in r.checks.items():
                if o.status == wanted:
                    by_reason.setdefault(o.message, []).append(c)
            for message, checks in by_reason.items():
                out.append(f"{r.host:<{width}}  {CELL[wanted]:<4}  {', '.join(checks)}: {message}")
    return out


def summary(reports: Sequence[HostReport], seconds: float) -> str:
    bad = [r for r in reports if r.failed]
    checks = sum(1 for r in reports for o in r.checks.values() if o.status in (FAILED, ERROR))
    tail = f", {checks} failed check{'s' * (checks != 1)}" if checks else ""
    return f"check: {len(reports)} hosts, {len(reports) - len(bad)} ok, {len(bad)} failed{tail} in {seconds:.1f} s"


def exit_code(reports: Sequence[HostReport]) -> int:
    """1 if any check failed or broke, or a host could not be checked; else 0."""
    return 1 if any(r.failed for r in reports) else 0


def write_report(reports: Sequence[HostReport], inv: Inventory, started: datetime, seconds: float) -> Path:
    """inventory/runs/<UTC time>-check.json (host -> check -> status and message)."""
    from coursehub import secrets
    from coursehub.inventory import atomic_write

    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = inv.dir / "runs" / f"{stamp}-check.json"
    data = {"task": "check", "started": started.strftime("%Y-%m-%dT%H:%M:%SZ"), "seconds": round(seconds, 3),
            "hosts": {r.host: asdict(r) for r in reports}}
    atomic_write(path, json.dumps(secrets.redactor().data(data), indent=2) + "\n")
    return path


def now() -> datetime:
    return datetime.now(UTC)
