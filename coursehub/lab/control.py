"""Bring the lab up, report on it, and take it down again (what `inv lab.*` calls).

`up()` builds (or reuses) the base image, starts `python -m coursehub.lab serve`
in the background with its PID recorded, waits until the API answers, and
writes three files: `<lab dir>/clouds.yaml` (0600; the lab's password),
`<lab dir>/id_ed25519` (the client key the lab's servers accept), and
`vars.lab.yml`, a complete CourseHub configuration pointed at the lab.
`down()` stops the API (which powers off and removes its hosts), then sweeps
whatever a crash may have left and checks that nothing is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets as _random
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CLOUD = "coursehub-lab"


class LabError(Exception):
    """The lab cannot do what was asked; str() is one line. `code` 2 means bad input."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


def default_dir() -> Path:
    """$COURSEHUB_LAB_DIR, else /var/lib/coursehub-lab (root) or ~/.cache/coursehub-lab."""
    env = os.environ.get("COURSEHUB_LAB_DIR")
    if env:
        return Path(env).resolve()
    return Path("/var/lib/coursehub-lab") if os.geteuid() == 0 else Path.home() / ".cache" / "coursehub-lab"


@dataclass
class LabInfo:
    dir: Path
    url: str
    pid: int
    backend: str
    subnet: str

    @property
    def clouds_yaml(self) -> Path:
        return self.dir / "clouds.yaml"

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"


def running(lab_dir: Path) -> LabInfo | None:
    """The running lab's record, if its API process is alive."""
    try:
        data = json.loads((lab_dir / "api.json").read_text())
    except (OSError, ValueError):
        return None
    if not _alive(int(data.get("pid", 0))):
        return None
    return LabInfo(lab_dir, data["url"], int(data["pid"]), data["backend"], data.get("subnet", ""))


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def client_key(lab_dir: Path) -> Path:
    """The lab's client key pair (ed25519, 0600), made once."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = lab_dir / "id_ed25519"
    if path.exists() and path.with_suffix(".pub").exists():
        return path
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    path.with_suffix(".pub").write_text(public.decode() + " coursehub-lab\n")
    return path


def up(lab_dir: Path, backend: str, port: int, subnet: str, log=print, timeout: float = 60) -> LabInfo:
    """Start the lab (idempotent: a running lab is reused)."""
    if backend == "hosts" and os.geteuid() != 0:
        raise LabError("lab.up: the hosts backend needs root (it makes network namespaces and boots systemd "
                       "hosts); run as root, or use --backend memory", code=2)
    lab_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(lab_dir, 0o700)
    info = running(lab_dir)
    if info:
        if info.backend != backend:
            raise LabError(f"lab.up: a lab with backend {info.backend} is already running ({info.url}); "
                           "run `inv lab.down` first", code=2)
        log(f"lab: already running at {info.url} (pid {info.pid}, backend {info.backend})")
        return info
    client_key(lab_dir)
    if backend == "hosts":
        from coursehub.lab import image

        t0 = time.monotonic()
        log("lab: preparing the base image (built once per machine with mmdebstrap, then cached)...")
        base = image.ensure_base()
        log(f"lab: base image ready in {time.monotonic() - t0:.1f} s ({base})")
    env = dict(os.environ, COURSEHUB_LAB_PASSWORD=_random.token_urlsafe(24))
    (lab_dir / "api.json").unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "coursehub.lab", "serve", "--port", str(port), "--dir", str(lab_dir),
           "--backend", backend, "--subnet", subnet, "--clouds-yaml", str(lab_dir / "clouds.yaml")]
    with open(lab_dir / "api.log", "ab") as logf:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=Path(__file__).resolve().parents[2])
    (lab_dir / "api.pid").write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (lab_dir / "api.log").read_text(errors="replace").strip().splitlines()[-3:]
            raise LabError(f"lab.up: the API exited with {proc.returncode}: {' | '.join(tail)}")
        info = running(lab_dir)
        if info and _answers(info.url):
            log(f"lab: OpenStack API at {info.url} (pid {info.pid}, backend {backend}, network {subnet})")
            return info
        time.sleep(0.1)
    proc.terminate()
    raise LabError(f"lab.up: the API did not answer within {timeout:g} s (see {lab_dir / 'api.log'})")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/identity/v3", timeout=2) as r:  # noqa: S310 (loopback only)
            return r.status == 200
    except OSError:
        return False


def servers(info: LabInfo) -> list[dict]:
    """The lab's servers as its control endpoint lists them."""
    try:
        with urllib.request.urlopen(f"{info.url}/_lab/servers", timeout=5) as r:  # noqa: S310
            data = json.loads(r.read())
    except (OSError, ValueError):
        return []
    return data.get("servers", data) if isinstance(data, dict) else data


def leftovers(lab_dir: Path) -> list[str]:
    """Anything a hosts lab left on this machine (needs root to see all of it)."""
    if os.geteuid() != 0:
        return []
    from coursehub.lab.hosts import leftovers as host_leftovers

    return host_leftovers(lab_dir)


def down(lab_dir: Path, log=print, timeout: float = 60) -> list[str]:
    """Stop the API and its hosts, sweep what is left; return what could not be removed."""
    info = running(lab_dir)
    pid_file = lab_dir / "api.pid"
    pid = info.pid if info else int(pid_file.read_text()) if pid_file.exists() else 0
    if pid and _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        log(f"lab: API stopped (pid {pid})")
    problems: list[str] = []
    if os.geteuid() == 0 and lab_dir.exists():
        from coursehub.lab.hosts import teardown

        problems = teardown(lab_dir)
    for name in ("api.pid", "api.json", "clouds.yaml"):
        (lab_dir / name).unlink(missing_ok=True)
    return problems + leftovers(lab_dir)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def vars_lab(info: LabInfo, nodes: int, repo_vars: Path) -> str:
    """A complete vars.yml pointed at the lab: single-node hub, dummy login, the lab's proxy."""
    gateway = info.subnet.rsplit(".", 1)[0] + ".1" if info.subnet else "10.77.0.1"
    port = info.url.rsplit(":", 1)[1]
    return f"""\
# Written by `inv lab.up`: CourseHub pointed at the lab on this machine. Use it as it is:
#   COURSEHUB_VARS=vars.lab.yml inv provision bootstrap hub check
# Every key is explained in vars.yml ({repo_vars}).
deployment: lab
topology: single
parallel: 20

cloud:
  name: {CLOUD}
  clouds_yaml: {info.clouds_yaml}
  region: Lab
  build_timeout: 300

instances:
  count: {nodes}
  flavor: m3.small
  image: "Debian 12 (Bookworm)"
  user: debian
  keypair: coursehub-lab
  public_key_file: {info.key}.pub
  private_key_file: {info.key}

volumes:
  enabled: true
  data_gb: 2
  filesystem: xfs
  mount: /mnt/data

network:
  admin_cidr: {gateway}/32          # this machine, on the lab bridge
  proxy: http://{gateway}:3142      # the lab's allow-listed proxy to the package registries

hosts:
  time_sync: timesyncd
  ntp_servers: [{gateway}]          # the bridge: serves no time, so no guest can move this machine's clock

storage:
  backend: none

hub:
  https: none
  port: 80

users:
  auth: dummy                      # lab only: one shared password, in inventory/secrets.yml
  admins: [teacher]
  allowed: [student1, student2, student3]

content:
  shared_volume: false

lab:
  backend: {info.backend}
  nodes: {nodes}
  subnet: {info.subnet or '10.77.0.0/24'}
  api_port: {port}
"""
