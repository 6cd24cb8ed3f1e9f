"""Purge unused container images (the runbook's image refresh: `docker image rm` per node).

"Unused" means no container (running or stopped) refers to the image, and the
runtime has not pinned it (containerd pins the Kubernetes pause image):

- docker:     `docker image prune -a -f` when any image has no container;
- containerd: `crictl rmi --prune` where crictl is installed (Kubernetes nodes),
              else `ctr -n <namespace> images rm` of the unused references.

The plan lists the images; a second run finds none and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from coursehub.steps import Action
from coursehub.steps.probe import ProbeStep, parse_sections, q, sections

if TYPE_CHECKING:
    from coursehub.fleet import Remote
    from coursehub.inventory import Host

PINNED = "io.cri-containerd.pinned=pinned"


@dataclass(frozen=True)
class Unused:
    tool: str  # docker, crictl, ctr, or "" (no runtime answering)
    images: list[str]  # shown in the plan
    namespace_refs: dict[str, list[str]]  # ctr: namespace -> references to remove


def docker_unused(images: str, used: str) -> list[str]:
    """`docker image ls --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}'` minus used ids."""
    in_use = {ln.strip() for ln in used.splitlines() if ln.strip()}
    out = []
    for line in images.splitlines():
        parts = line.split()
        if parts and parts[0] not in in_use:
            out.append(parts[1] if len(parts) > 1 and parts[1] != "<none>:<none>" else parts[0][:19])
    return out


def crictl_unused(images_json: str, ps_json: str) -> list[str]:
    try:
        images = json.loads(images_json or "{}").get("images") or []
        containers = json.loads(ps_json or "{}").get("containers") or []
    except ValueError:
        return []
    used = set()
    for c in containers:
        used.add(c.get("imageRef", ""))
        used.add((c.get("image") or {}).get("image", ""))
    out = []
    for im in images:
        names = set(im.get("repoTags") or []) | set(im.get("repoDigests") or []) | {im.get("id", "")}
        if im.get("pinned") or names & used:
            continue
        out.append((im.get("repoTags") or [im.get("id", "")[:19]])[0])
    return out


def ctr_unused(text: str) -> dict[str, list[str]]:
    """Blocks `ns NAME` / `images` (ctr images ls) / `containers` (ctr containers ls) -> unused refs."""
    out: dict[str, list[str]] = {}
    ns, part = "", ""
    refs: dict[str, list[str]] = {}
    used: dict[str, set[str]] = {}
    for line in text.splitlines():
        if line.startswith("ns "):
            ns, part = line[3:].strip(), ""
            refs.setdefault(ns, [])
            used.setdefault(ns, set())
        elif line.strip() in ("@images", "@containers"):
            part = line.strip()[1:]
        elif ns and part == "images" and line.strip() and not line.startswith("REF "):
            if PINNED not in line:
                refs[ns].append(line.split()[0])
        elif ns and part == "containers" and line.strip() and not line.startswith("CONTAINER "):
            f = line.split()
            if len(f) > 1:
                used[ns].add(f[1])
    for name, items in refs.items():
        unused = [ref for ref in items if ref not in used[name]]
        if unused:
            out[name] = unused
    return out


class PurgeImages(ProbeStep):
    name = "purge-images"

    def __init__(self, runtime: str):
        self.runtime = runtime

    def command(self, host: Host) -> str:
        if self.runtime == "docker":
            return sections(
                tool="docker info -f '{{.ServerVersion}}' >/dev/null && echo docker",
                images="docker image ls --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}'",
                used="docker ps -aq --no-trunc | xargs -r docker inspect -f '{{.Image}}'",
            )
        return sections(
            tool="if command -v crictl >/dev/null && crictl info >/dev/null; then echo crictl; "
                 "elif command -v ctr >/dev/null && ctr version >/dev/null; then echo ctr; fi",
            crictl_images="command -v crictl >/dev/null && crictl images -o json",
            crictl_ps="command -v crictl >/dev/null && crictl ps -a -o json",
            ctr="command -v ctr >/dev/null && for n in $(ctr namespaces ls -q); do echo \"ns $n\"; "
                "echo @images; ctr -n \"$n\" images ls; echo @containers; ctr -n \"$n\" containers ls; done",
        )

    def parse(self, text: str, host: Host) -> Unused:
        s = parse_sections(text)
        tool = s.get("tool", "").strip()
        if tool == "docker":
            return Unused(tool, docker_unused(s.get("images", ""), s.get("used", "")), {})
        if tool == "crictl":
            return Unused(tool, crictl_unused(s.get("crictl_images", ""), s.get("crictl_ps", "")), {})
        if tool == "ctr":
            refs = ctr_unused(s.get("ctr", ""))
            return Unused(tool, [f"{ns}/{r}" for ns, rs in refs.items() for r in rs], refs)
        return Unused("", [], {})

    def decide(self, fact: Unused, remote: Remote) -> list[Action]:
        if not fact.images:
            return []
        why = f"{len(fact.images)} unused: " + ", ".join(fact.images[:10]) + (" ..." if len(fact.images) > 10 else "")
        if fact.tool == "docker":
            return [Action(why=why, command="docker image prune -a -f >/dev/null")]
        if fact.tool == "crictl":
            return [Action(why=why, command="crictl rmi --prune >/dev/null")]
        cmd = " && ".join(f"ctr -n {q(ns)} images rm {' '.join(q(r) for r in refs)} >/dev/null"
                          for ns, refs in fact.namespace_refs.items())
        return [Action(why=why, command=cmd, label=f"ctr images rm ({len(fact.images)})")]
