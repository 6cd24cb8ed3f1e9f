"""The head: kubelet and the API server (topology cluster), or the hub, its proxy and its port (single)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

from tests.infra import roles
from tests.infra.targets import verdict

if TYPE_CHECKING:
    from coursehub.inventory import Host
    from coursehub.settings import Settings

ROLE = "head"


@pytest.mark.topology("cluster")
@pytest.mark.probe(command=roles.kubelet_command)
def test_kubelet(probed: str) -> None:
    """kubelet is enabled, running and healthy (its /healthz answers ok)."""
    verdict(roles.kubelet_problems(probed))


@pytest.mark.topology("cluster")
@pytest.mark.probe(command=roles.api_command)
def test_api(probed: str) -> None:
    """The Kubernetes API server is ready (/readyz, with the admin kubeconfig, on the head)."""
    verdict(roles.api_problems(probed))


@pytest.mark.topology("single")
@pytest.mark.probe(command=roles.hub_command)
def test_hub(probed: str, settings: Settings) -> None:
    """coursehub-hub and coursehub-proxy are enabled, running, and not behind their configuration."""
    verdict(roles.hub_problems(probed, settings))


@pytest.mark.topology("single")
@pytest.mark.probe(command=roles.port_command)
def test_port(probed: str, node: Host, settings: Settings) -> None:
    """The hub's public port listens, the hub answers through it on the head, and it is reachable from here."""
    from coursehub.hub import single

    try:
        with socket.create_connection((node.address, single.public_port(settings)), timeout=5):
            outside = ""
    except OSError as e:
        outside = str(e) or type(e).__name__
    verdict(roles.port_problems(probed, settings, outside))
