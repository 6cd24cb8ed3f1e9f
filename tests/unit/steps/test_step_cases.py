"""Probe output -> expected actions, one YAML file per case under cases/<step>/ (pyinfra style).

A case names the step, optional vars.yml sections, host and step arguments, the
raw text the step's probe command printed, and either the actions expected (each
a substring of the action's description, in order; [] means "already ok") or the
sentence the step refuses the host with:

    about: swap entry in fstab, no swap active
    probe: |
      @@coursehub swaps
      Filename  Type  Size  Used  Priority
      ...
    expect: ["write /etc/fstab", "systemctl mask"]
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from coursehub.bootstrap import base_packages
from coursehub.steps.apt import Packages
from coursehub.steps.clock import Clock, ResyncClocks
from coursehub.steps.disks import Disks, GrowDisk
from coursehub.steps.images import PurgeImages
from coursehub.steps.kernel import Kernel
from coursehub.steps.logs import TruncateLogs
from coursehub.steps.moves import MoveRoot
from coursehub.steps.preflight import Preflight
from coursehub.steps.probe import HostRefused, parse_size
from coursehub.steps.proxy import Proxy
from coursehub.steps.report import DiskReport
from coursehub.steps.runtime import Runtime
from coursehub.steps.swap import SwapOff
from coursehub.templates import render

CASES = sorted((Path(__file__).parent / "cases").glob("*/*.yaml"))

BUILD = {
    "swap": lambda s, inv, a: SwapOff(),
    "clock": lambda s, inv, a: Clock(s),
    "resync-clocks": lambda s, inv, a: ResyncClocks(s, **a),
    "kernel": lambda s, inv, a: Kernel(),
    "disks": lambda s, inv, a: Disks(s),
    "grow-disk": lambda s, inv, a: GrowDisk(s),
    "runtime": lambda s, inv, a: Runtime(s, inv),
    "proxy": lambda s, inv, a: Proxy(s, inv),
    "packages": lambda s, inv, a: Packages(a.get("packages") or base_packages(s)),
    "preflight": lambda s, inv, a: Preflight(),
    "moves": lambda s, inv, a: MoveRoot(**a),
    "logs": lambda s, inv, a: TruncateLogs(parse_size(a.get("over", "1G"))),
    "images": lambda s, inv, a: PurgeImages(a.get("runtime", s.hosts.runtime)),
    "report": lambda s, inv, a: DiskReport(**{"warn_below": 15, **a}),
}


def load(path: Path) -> dict[str, Any]:
    """A case, with each `{name}` of its `shas` in the probe text replaced by that rendered file's sha256.

        shas: {timesyncd: [timesyncd.conf.j2, {servers: [10.77.0.1]}]}   # the file as CourseHub writes it
    """
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(case, dict) and "probe" in case and ("expect" in case or "refused" in case), path
    for name, (template, variables) in (case.get("shas") or {}).items():
        sha = hashlib.sha256(render(template, **variables).encode()).hexdigest()
        case["probe"] = case["probe"].replace("{" + name + "}", sha)
    return case


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_case(path, make_settings, lab_host, make_inventory, fake_remote):
    case = load(path)
    s = make_settings(**case.get("settings", {}))
    host = lab_host(**case.get("host", {}))
    others = [lab_host(**h) for h in case.get("other_hosts", [])]
    inv = make_inventory(host, *others)
    step = BUILD[path.parent.name](s, inv, case.get("args", {}))
    remote = fake_remote(host)
    fact = step.parse(case["probe"], host)
    if case.get("fact"):
        fact = dataclasses.replace(fact, **case["fact"])
    if "refused" in case:
        with pytest.raises(HostRefused) as e:
            step.decide(fact, remote)
        assert case["refused"] in str(e.value)
        return
    actions = step.decide(fact, remote)
    described = [a.describe() for a in actions]
    assert len(described) == len(case["expect"]), "\n".join(described)
    for want, got in zip(case["expect"], described, strict=True):
        assert want in got, f"{want!r} not in {got!r}"
    assert remote.commands == [], "decide must not run commands"
    for key, want in (case.get("files") or {}).items():
        writer = fake_remote(host)
        for a in actions:
            if a.label.startswith(f"write {key} "):
                a.run(writer)  # put_text: records the FileSpec it would install
        assert writer.puts, f"no write of {key}"
        spec = writer.puts[-1]
        for line in want:
            assert line in spec.text, f"{line!r} not in {key}:\n{spec.text}"
