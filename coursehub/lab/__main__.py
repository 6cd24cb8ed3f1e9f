"""`python -m coursehub.lab serve`: run the lab's OpenStack API in the foreground.

    python -m coursehub.lab serve --port 8780 --dir /var/lib/coursehub-lab --backend memory|hosts
                                  [--subnet 10.77.0.0/24] [--host 127.0.0.1] [--build-seconds 0]
                                  [--password-file F] [--clouds-yaml PATH]

The API password comes from $COURSEHUB_LAB_PASSWORD or --password-file (first
line). With --clouds-yaml PATH the server writes a clouds.yaml for the URL it
bound (mode 0600, generating a password if none was given) -- the only secret
it ever writes, and only when asked. It writes `<dir>/api.json` (url, pid,
backend; no secrets) once it listens and removes it on exit. SIGTERM or SIGINT
stops it: the backend then removes every server and volume it made.
Exit codes: 0 after a clean stop, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("coursehub.lab")


def make_backend(kind: str, lab_dir: Path, subnet: str) -> Any:
    if kind == "memory":
        from coursehub.lab.memory import MemoryBackend
        return MemoryBackend()
    from coursehub.lab.hosts import HostsBackend  # needs root and the lab's host tooling
    return HostsBackend(lab_dir=lab_dir, subnet=subnet)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _password(args: argparse.Namespace) -> str | None:
    if args.password_file:
        return Path(args.password_file).read_text().splitlines()[0].strip()
    return os.environ.get("COURSEHUB_LAB_PASSWORD") or None


def serve(args: argparse.Namespace) -> int:
    import yaml

    from coursehub.lab.api import LabAPI

    lab_dir = Path(args.dir)
    lab_dir.mkdir(parents=True, exist_ok=True)
    password = _password(args)
    if password is None and not args.clouds_yaml:
        print("lab: set COURSEHUB_LAB_PASSWORD, --password-file or --clouds-yaml (else no client can log in)",
              file=sys.stderr)
        return 2
    backend = make_backend(args.backend, lab_dir, args.subnet)
    api = LabAPI(backend, subnet=args.subnet, host=args.host, port=args.port, build_seconds=args.build_seconds,
                 password=password)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    api.start()
    state_file = lab_dir / "api.json"
    try:
        if args.clouds_yaml:
            _write_private(Path(args.clouds_yaml), yaml.safe_dump(api.clouds_yaml(), sort_keys=False))
        state_file.write_text(json.dumps({"url": api.url, "pid": os.getpid(), "backend": backend.kind,
                                          "subnet": args.subnet}) + "\n")
        print(f"lab API listening on {api.url} (backend {backend.kind})", flush=True)
        stop.wait()
    finally:
        log.info("lab API stopping")
        api.stop()
        try:
            backend.close()
        finally:
            state_file.unlink(missing_ok=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coursehub.lab", description="The CourseHub lab cloud.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the OpenStack-compatible API until SIGTERM")
    p.add_argument("--port", type=int, default=8780, help="TCP port (0 = any free port; see <dir>/api.json)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--dir", required=True, help="the lab's working directory")
    p.add_argument("--backend", choices=("memory", "hosts"), default="memory", help="what a server is")
    p.add_argument("--subnet", default="10.77.0.0/24", help="the lab network (server i gets .10+i)")
    p.add_argument("--build-seconds", type=float, default=0.0, help="minimum time a server stays in BUILD")
    p.add_argument("--password-file", help="file whose first line is the API password")
    p.add_argument("--clouds-yaml", help="write a clouds.yaml (0600) for cloud 'coursehub-lab' here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
