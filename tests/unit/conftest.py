"""Fixtures for the unit tests: the committed vars.yml as data, and temporary vars files.

    def test_x(vars_dict, write_vars):
        vars_dict["instances"]["count"] = 5
        path = write_vars(vars_dict)          # tmp_path/vars.yml, returned as a Path
        s = load(path)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMMITTED_VARS = REPO / "vars.yml"


@pytest.fixture(scope="session")
def committed_vars() -> dict[str, Any]:
    """The committed vars.yml, parsed once (do not change it: use vars_dict)."""
    return yaml.safe_load(COMMITTED_VARS.read_text(encoding="utf-8"))


@pytest.fixture
def vars_dict(committed_vars: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of the committed vars.yml that a test may change freely."""
    return copy.deepcopy(committed_vars)


@pytest.fixture
def write_vars(tmp_path: Path) -> Callable[..., Path]:
    """write_vars(data, name="vars.yml") -> Path: a mapping is dumped as YAML, a str written as is."""

    def write(data: dict[str, Any] | str, name: str = "vars.yml") -> Path:
        path = tmp_path / name
        text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return write

