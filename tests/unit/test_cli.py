"""The `inv` command line: the task list, and a bad vars.yml stopping every task with one line and exit code 2.

Each test runs the real `inv` of the venv from the repository root, with COURSEHUB_VARS
pointing at a temporary file, so nothing here reads the committed vars.yml or a real cloud.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
INV = REPO / ".venv" / "bin" / "inv"
NAMESPACES = {"provision", "bootstrap", "hub", "ops", "check", "lab"}
# lab.* makes the lab (and writes vars.lab.yml); it is the one namespace that does not need vars.yml.
NEEDS_NO_VARS = ("lab.",)

pytestmark = pytest.mark.skipif(not INV.exists(), reason=f"{INV} not installed (make venv)")


def run_inv(*args: str, vars_file: Path | str | None = None, inventory: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSEHUB_", "OS_"))}
    if vars_file is not None:
        env["COURSEHUB_VARS"] = str(vars_file)
    if inventory is not None:
        env["COURSEHUB_INVENTORY"] = str(inventory)
    # Were anything to reach for a cloud, it would find only a closed local port.
    env.update(OS_AUTH_URL="http://127.0.0.1:9/v3", OS_CLOUD="", HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    return subprocess.run([str(INV), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def tasks_and_positionals() -> dict[str, list[str]]:
    """Every task of the collection and its required positional arguments (read from the code, not a list here)."""
    code = "import json, tasks; print(json.dumps({n: list(tasks.ns[n].positional) for n in tasks.ns.task_names}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True, timeout=120)
    return json.loads(out.stdout)


TASKS = tasks_and_positionals() if INV.exists() else {}


def assert_one_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.splitlines() == [message], result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)


@pytest.fixture
def bad_vars(tmp_path: Path, vars_dict: dict[str, Any], write_vars: Any) -> tuple[Path, str]:
    vars_dict["instances"]["count"] = "3"
    path = write_vars(vars_dict, name="bad.yml")
    return path, f"{path}: instances.count: wrong type, found text (got '3'; expected a whole number from 1 to 500)"


# ----------------------------------------------------------------------------- the list
def test_inv_list() -> None:
    result = run_inv("--list")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for name in NAMESPACES:
        assert f"  {name}." in result.stdout


def test_inv_list_depth_one_shows_the_six_namespaces() -> None:
    result = run_inv("--list", "--list-depth", "1")
    assert result.returncode == 0, result.stderr
    shown = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and "[" in line}
    assert shown == NAMESPACES


def test_inv_list_needs_no_vars_file(tmp_path: Path) -> None:
    assert run_inv("--list", vars_file=tmp_path / "missing.yml").returncode == 0


# ----------------------------------------------------------------------------- every task validates first
@pytest.mark.parametrize("task", [t for t in TASKS if not t.startswith(NEEDS_NO_VARS)])
def test_every_task_stops_on_a_bad_vars_file(task: str, bad_vars: tuple[Path, str], tmp_path: Path) -> None:
    path, message = bad_vars
    inventory = tmp_path / "inventory"
    result = run_inv(task, *["x"] * len(TASKS[task]), vars_file=path, inventory=inventory)
    assert_one_line(result, message)
    assert result.stdout == ""
    assert not inventory.exists()  # nothing was written: the task stopped before doing anything


def test_there_are_tasks_to_check() -> None:
    assert len([t for t in TASKS if not t.startswith(NEEDS_NO_VARS)]) >= 5


def test_chained_tasks_stop_at_the_first(bad_vars: tuple[Path, str]) -> None:
    path, message = bad_vars
    assert_one_line(run_inv("provision", "bootstrap", "hub", vars_file=path), message)


# ----------------------------------------------------------------------------- kinds of bad files
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("deployment: x\n", "{path}: deployment: invalid value (got 'x'; "
                            "expected lower-case letters, digits and '-', 2-32 long, starting with a letter)"),
        ("", "{path}: instances.flavor: required key is missing (expected a flavor name such as m3.large)"),
        ("instances: [\n", "{path}: line 2, column 1: YAML syntax error: expected a value, but found the end of the file "
                           "(expected valid YAML)"),
        ("hub: {}\nhub: {}\n", "{path}: line 2, column 1: duplicate key 'hub', first set on line 1 (expected each key once in its section)"),
        ("instances:\n  flavor: m3.large\n  image: x\n  cuont: 3\n",
         "{path}: instances.cuont: unknown key; did you mean 'instances.count'? (expected one of count, flavor, image, user, "
         "availability_zone, network, keypair, public_key_file, private_key_file, extra_security_groups)"),
        ("cloud: 5\n", "{path}: cloud: wrong type, found a whole number (got 5; expected a section of key: value pairs)"),
    ],
    ids=["bad value", "empty file", "YAML syntax", "duplicate key", "unknown key", "section not a mapping"],
)
def test_bad_files_on_the_command_line(text: str, message: str, write_vars: Any) -> None:
    path = write_vars(text)
    assert_one_line(run_inv("provision", "--dry-run", vars_file=path), message.format(path=path))


def test_missing_vars_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.yml"
    assert_one_line(run_inv("bootstrap", vars_file=path),
                    f"{path}: file not found (expected a settings file: copy vars.yml from the repository, or set COURSEHUB_VARS)")


def test_missing_vars_yml_in_the_current_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COURSEHUB_")}
    result = subprocess.run([str(INV), "--search-root", str(REPO), "hub"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert_one_line(result, f"vars.yml: file not found in {tmp_path} "
                            "(expected a settings file: copy vars.yml from the repository, or set COURSEHUB_VARS)")


def test_vars_file_that_is_a_directory(tmp_path: Path) -> None:
    assert_one_line(run_inv("check", vars_file=tmp_path),
                    f"{tmp_path}: is a directory, not a file (expected a YAML file such as vars.yml)")
