"""`python -m coursehub.lab serve` as a process: listens, answers openstacksdk, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import openstack
import yaml

ROOT = Path(__file__).resolve().parents[3]


def _start(tmp_path: Path, *extra: str, password: str | None = "pw-for-tests") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("COURSEHUB_LAB_PASSWORD", None)
    if password:
        env["COURSEHUB_LAB_PASSWORD"] = password
    return subprocess.Popen([sys.executable, "-m", "coursehub.lab", "serve", "--port", "0", "--dir",
                             str(tmp_path / "lab"), "--backend", "memory", *extra],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return json.loads(path.read_text())
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the lab API did not start")


def test_serve_answers_and_stops_on_sigterm(tmp_path):
    proc = _start(tmp_path)
    try:
        info = _wait_for(tmp_path / "lab" / "api.json", proc)
        assert info["backend"] == "memory" and info["pid"] == proc.pid
        conn = openstack.connect(auth_url=info["url"] + "/identity/v3", username="admin", password="pw-for-tests",
                                 project_name="coursehub", user_domain_name="Default", project_domain_name="Default",
                                 region_name="Lab")
        assert "m3.small" in {f.name for f in conn.compute.flavors()}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "listening on http://127.0.0.1:" in out
    assert "pw-for-tests" not in out + err
    assert not (tmp_path / "lab" / "api.json").exists()


def test_serve_writes_a_private_clouds_yaml_when_asked(tmp_path):
    target = tmp_path / "clouds.yaml"
    proc = _start(tmp_path, "--clouds-yaml", str(target), password=None)
    try:
        info = _wait_for(tmp_path / "lab" / "api.json", proc)
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
        entry = yaml.safe_load(target.read_text())["clouds"]["coursehub-lab"]
        assert entry["auth"]["auth_url"] == info["url"] + "/identity/v3" and len(entry["auth"]["password"]) > 20
        assert entry["auth"]["password"] not in (tmp_path / "lab" / "api.json").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


def test_serve_without_a_password_source_exits_2(tmp_path):
    proc = _start(tmp_path, password=None)
    _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "COURSEHUB_LAB_PASSWORD" in err
