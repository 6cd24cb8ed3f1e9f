"""The lab's OpenStack-compatible HTTP API (Keystone v3, Nova, Neutron, Cinder, Glance).

    from coursehub.lab.api import LabAPI, clouds_yaml
    from coursehub.lab.memory import MemoryBackend

    api = LabAPI(MemoryBackend()).start()     # 127.0.0.1, a free port
    api.url                                   # http://127.0.0.1:PORT
    api.clouds_yaml()                         # {"clouds": {"coursehub-lab": {...}}} (holds the password)
    api.stop()

Modules: `server` (LabAPI, HTTP handling, faults applied), `web` (requests, replies,
error shapes, routing, microversions), `state` (records, seed, knobs, tokens),
`keystone`, `nova`, `nova_servers`, `nova_actions`, `neutron`, `cinder`, `glance`,
`faults` (fault rules, journal), `control` (/_lab/...).
"""

from .server import CLOUD_NAME, LabAPI, clouds_yaml

__all__ = ["LabAPI", "clouds_yaml", "CLOUD_NAME"]
