"""How CourseHub names and tags what it creates, and reads that back.

Every resource carries the deployment name twice: in its name
(`<deployment>-<i>`, `<deployment>-<i>-data`, `<deployment>-sg`) and in its
metadata (`coursehub_deployment`). Discovery needs both to match, so a
resource someone else named alike is never touched. Roles are written into
server metadata at creation and only ever read back (the head never moves).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEPLOYMENT = "coursehub_deployment"
INDEX = "coursehub_index"
ROLES = "coursehub_roles"
VOLUME_ROLE = "coursehub_volume"


def server_name(deployment: str, index: int) -> str:
    return f"{deployment}-{index}"


def volume_name(deployment: str, index: int, role: str) -> str:
    return f"{deployment}-{index}-{role}"


def security_group_name(deployment: str) -> str:
    return f"{deployment}-sg"


def server_name_regex(deployment: str) -> str:
    """Nova's `name` filter is a regular expression (re.search)."""
    return f"^{re.escape(deployment)}-[0-9]+$"


def index_of(name: str, deployment: str) -> int | None:
    m = re.fullmatch(re.escape(deployment) + r"-([0-9]+)", name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class WantedServer:
    index: int
    name: str
    roles: tuple[str, ...]
    volumes: tuple[tuple[str, str, int], ...] = field(default=())  # (name, role, size_gb)

    def metadata(self, deployment: str) -> dict[str, str]:
        return {DEPLOYMENT: deployment, INDEX: str(self.index), ROLES: ",".join(self.roles)}


def roles_from_metadata(metadata: dict[str, str] | None) -> tuple[str, ...]:
    raw = (metadata or {}).get(ROLES, "")
    return tuple(r for r in raw.split(",") if r)


def ours(metadata: dict[str, str] | None, deployment: str) -> bool:
    return (metadata or {}).get(DEPLOYMENT) == deployment
