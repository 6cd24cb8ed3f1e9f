"""Shared test setup: the repository root is importable (coursehub, tasks, tests.support)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Everything the tests talk to is on this machine: never send it through a proxy.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost,10.77.0.0/16"
