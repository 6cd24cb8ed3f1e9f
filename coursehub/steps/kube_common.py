"""What the Kubernetes steps share: stdin for secrets, binary uploads, the head's Remote,
and two generic steps (a manifest applied on the head; a pinned Helm chart release).

Secrets (join tokens, the cloud credentials, shared secrets) reach a host only
through a command's stdin, never as a file or an argument; the value is added to
the run's redactor first, so no report or error message can show it.
"""

from __future__ import annotations

import io
import shlex
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from coursehub import secrets
from coursehub.kube import CACHE_DIR, STATE_DIR, parse
from coursehub.kube import commands as k
from coursehub.steps import Action, FileFact, FileSpec, Step, ensure_file, file_probe_command, parse_file_fact

if TYPE_CHECKING:
    from coursehub.fleet import Out, Remote
    from coursehub.inventory import Inventory
    from coursehub.pins import Chart


def hide(*values: str) -> None:
    """Register secret values with the process-wide redactor (reports, errors, plans)."""
    secrets.KNOWN.add(values)


def run_stdin(remote: Remote, command: str, data: str, timeout: float = 600, check: bool = True) -> Out:
    """Run `command` as root with `data` on its stdin (then EOF); raise CommandFailed like Remote.run."""
    from coursehub.fleet import CommandFailed, Out, Unreachable

    line = f"{remote.sudo}sh -c {shlex.quote(command)}" if remote.sudo else command
    try:
        r = remote.conn.run(line, hide=True, warn=True, in_stream=io.StringIO(data), timeout=timeout)
    except Exception as e:  # CommandTimedOut, SSH errors
        raise Unreachable(f"`{remote.redact(command)}` with input: {type(e).__name__}: {remote.redact(str(e))}") from None
    out = Out(r.stdout, r.stderr, r.exited, remote)
    if check and r.exited != 0:
        raise CommandFailed(remote.redact(command), r.exited, remote.redact(r.stdout), remote.redact(r.stderr))
    return out


def put_bytes(remote: Remote, path: str, data: bytes, mode: int = 0o644) -> None:
    """Install binary `data` at `path` (root:root) through a private temporary file and a rename."""
    import hashlib

    tmp = f"/tmp/.coursehub-{hashlib.sha256(data).hexdigest()[:16]}-{threading.get_ident()}"
    sftp = remote.conn.sftp()
    with sftp.open(tmp, "wb") as f:
        f.chmod(0o600)
        f.write(data)
    dest, new = shlex.quote(path), shlex.quote(path + ".coursehub-new")
    remote.run(f"mkdir -p $(dirname {dest}) && cp {tmp} {new} && rm -f {tmp} && chmod {mode:o} {new} "
               f"&& chown root:root {new} && mv -f {new} {dest}")


def head_remote(inv: Inventory) -> Remote:
    """The head as a Remote, on the process's pooled connection (opened if needed)."""
    from coursehub import fleet

    head = inv.head()
    return fleet.Remote(head, fleet.connect(inv, head), secrets.redactor())


def kubectl_json(remote: Remote, argv: list[str]) -> str:
    return remote.run(k.sh(argv)).stdout


def cache_dir(inv_dir: Path | None) -> Path | None:
    return inv_dir / "cache" if inv_dir else None


# ----------------------------------------------------------------------------- a manifest on the head
class Manifest(Step):
    """A manifest kept at STATE_DIR/k8s/<name>.yaml on the head and applied server-side.

    Probe: the file's checksum and which of its objects exist. Apply when the file
    differs or an object is missing; `after` commands (rollout waits) follow an apply.
    """

    def __init__(self, name: str, text: str, after: list[list[str]] | None = None, why: str = ""):
        self.name = f"manifest {name}"
        self.spec = FileSpec(f"{STATE_DIR}/k8s/{name}.yaml", text, mode=0o600)
        self.expected = expected_objects(text)
        self.after = after or []
        self.why = why

    def probe(self, remote: Remote) -> dict[str, Any]:
        path = shlex.quote(self.spec.path)
        out = remote.run(f"{file_probe_command(self.spec.path)}; echo {parse.SECTION}; "
                         f"if [ -f {path} ]; then {k.sh(k.get_file_names(self.spec.path))} 2>&1; fi",
                         check=False).stdout
        parts = parse.sections(out)
        return {"file": parse_file_fact(parts[0].strip()), "existing": parts[1] if len(parts) > 1 else ""}

    def decide(self, fact: dict[str, Any], remote: Remote) -> list[Action]:
        actions = ensure_file(self.spec, fact["file"])
        existing = {ln.strip().lower() for ln in fact["existing"].splitlines() if "/" in ln}
        missing = [o for o in self.expected if not any(e.endswith("/" + o.split("/", 1)[1]) and
                                                       e.split("/", 1)[0].split(".", 1)[0] == o.split("/", 1)[0]
                                                       for e in existing)]
        if actions or missing:
            why = self.why or ("changed" if actions else "missing: " + ", ".join(missing))
            actions.append(Action(why=why, command=k.sh(k.apply(self.spec.path)), label=f"kubectl apply {self.spec.path}"))
            actions += [Action(why="wait until ready", command=k.sh(a)) for a in self.after]
        return actions

    def verify(self, remote: Remote) -> list[Action]:
        return [a for a in self.decide(self.probe(remote), remote) if a.why != "wait until ready"]


def expected_objects(text: str) -> list[str]:
    """`kind/name` (kind lower-case) of each object in a manifest, as `kubectl get -o name` prints them."""
    from coursehub.kube.render import documents

    return [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in documents(text)
            if isinstance(d, dict) and d.get("kind") and (d.get("metadata") or {}).get("name")]


# ----------------------------------------------------------------------------- a pinned chart
class HelmRelease(Step):
    """A Helm release from a pinned, checksum-verified chart file, with values from templates/.

    The chart .tgz is fetched on the admin's machine (pins.fetch), uploaded to
    CACHE_DIR/charts/ on the head; values go to STATE_DIR/values/<release>.yaml.
    `helm upgrade --install --wait` runs when the release is missing, not deployed,
    at another chart version, or its values changed.
    """

    def __init__(self, release: str, namespace: str, chart: Chart, values: str, inv_dir: Path | None = None,
                 timeout: int = 600):
        self.name = f"helm {release}"
        self.release, self.namespace, self.chart, self.timeout = release, namespace, chart, timeout
        self.values = FileSpec(f"{STATE_DIR}/values/{release}.yaml", values, mode=0o600)
        self.chart_path = f"{CACHE_DIR}/charts/{chart.filename}"
        self.inv_dir = inv_dir

    def probe(self, remote: Remote) -> dict[str, Any]:
        out = remote.run(f"{file_probe_command(self.values.path)}; echo {parse.SECTION}; "
                         f"{file_probe_command(self.chart_path)}; echo {parse.SECTION}; "
                         f"{k.sh(k.helm_list())} 2>/dev/null || echo '[]'", check=False).stdout
        parts = parse.sections(out)
        return {"values": parse_file_fact(parts[0].strip()), "chart": parse_file_fact(parts[1].strip()),
                "releases": parse.parse_helm_list(parts[2]) if len(parts) > 2 else []}

    def decide(self, fact: dict[str, Any], remote: Remote) -> list[Action]:
        from coursehub import pins

        want_sha = pins.require(self.chart)  # refuse early, in the plan too, when no checksum is pinned
        actions = []
        chart_fact: FileFact = fact["chart"]
        if chart_fact.sha256 != want_sha:
            actions.append(Action(why=f"chart {self.chart.chart} {self.chart.version} not on the head",
                                  fn=self._upload_chart, label=f"upload verified {self.chart.filename}"))
        values = ensure_file(self.values, fact["values"])
        actions += values
        rel = next((r for r in fact["releases"] if r.name == self.release and r.namespace == self.namespace), None)
        want_chart = f"{self.chart.chart}-{self.chart.version}"
        reason = ("not installed" if rel is None else f"status {rel.status}" if rel.status != "deployed"
                  else f"chart {rel.chart}, want {want_chart}" if rel.chart != want_chart
                  else "values changed" if values else "")
        if reason:
            actions.append(Action(why=reason, command=k.sh(k.helm_upgrade(self.release, self.chart_path, self.namespace,
                                                                          self.values.path, self.timeout)),
                                  label=f"helm upgrade --install {self.release} ({want_chart})"))
        return actions

    def _upload_chart(self, remote: Remote) -> None:

        data = fetch_chart(self.chart, cache_dir(self.inv_dir))
        put_bytes(remote, self.chart_path, data, mode=0o644)


def fetch_chart(chart: Chart, cache: Path | None) -> bytes:
    """The chart's .tgz, located through its repository's index.yaml and checked against the pin."""
    from coursehub import pins

    sha = pins.require(chart)
    if cache is not None and (cache / chart.filename).is_file():
        data = (cache / chart.filename).read_bytes()
        if pins.sha256_hex(data) == sha:
            return data
    index = pins.download(chart.repo.rstrip("/") + "/index.yaml").decode("utf-8", "replace")
    url, _digest = parse.chart_url(index, chart.chart, chart.version, chart.repo)
    return pins.fetch(url, sha, cache, chart.filename)
