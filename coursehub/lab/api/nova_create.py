"""Checking a nova `POST /servers` request and making the server records it asks for.

Messages follow nova's (400 badRequest for a bad field, 403 forbidden over quota).
Helpers here run with the state lock held unless they only look at the request.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from typing import Any

from coursehub.lab.backend import ServerSpec

from .state import LabState, Server, new_id
from .web import ApiError, Request

TAG = re.compile(r"^[^,/]{1,60}$")


def check_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 255:
        raise ApiError(400, f"Invalid input for field/attribute name. Value: {value}. "
                            "'name' must be a non-empty string of at most 255 characters")
    return value


def check_networks(req: Request, body: dict[str, Any]) -> list[str]:
    """The network ids asked for; [] for "none"."""
    nets = body.get("networks")
    if nets is None:
        if req.at_least("2.37"):
            raise ApiError(400, "Invalid input for field/attribute server. 'networks' is a required property")
        return [LabState.lab_network_id()]
    if isinstance(nets, str):
        if not req.at_least("2.37") or nets not in ("auto", "none"):
            raise ApiError(400, f"Invalid input for field/attribute networks. Value: {nets}. {nets!r} is not of type 'array'")
        return [] if nets == "none" else [LabState.lab_network_id()]
    if not isinstance(nets, list) or not all(isinstance(n, dict) for n in nets):
        raise ApiError(400, f"Invalid input for field/attribute networks. Value: {nets}.")
    out = []
    for net in nets:
        if "port" in net or "fixed_ip" in net:
            raise ApiError(400, "The lab allocates ports and addresses itself: give networks as [{'uuid': id}]")
        if not net.get("uuid"):
            raise ApiError(400, "Bad network format: missing 'uuid'")
        out.append(str(net["uuid"]))
    return out[:1]


def check_metadata(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ApiError(400, f"Invalid input for field/attribute metadata. Value: {value}. Metadata must be a mapping "
                            "of strings to strings")
    if any(not 1 <= len(k) <= 255 or len(v) > 255 for k, v in value.items()):
        raise ApiError(400, "Invalid input for field/attribute metadata: keys are 1-255 and values 0-255 characters")
    return dict(value)


def check_tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(t, str) and TAG.match(t) for t in value):
        raise ApiError(400, f"Invalid input for field/attribute tags. Value: {value}. Tags are strings of 1-60 "
                            "characters without ',' or '/'")
    if len(value) > 50:
        raise ApiError(400, "The number of tags exceeded the per-server limit 50")
    return list(dict.fromkeys(value))


def check_user_data(value: Any) -> bytes:
    if value is None:
        return b""
    try:
        data = base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "User data needs to be valid base 64.") from None
    if len(str(value)) > 65535:
        raise ApiError(400, "User data too large. User data must be no larger than 65535 bytes once base64 encoded.")
    return data


def check_count(value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ApiError(400, f"Invalid input for field/attribute min_count/max_count. Value: {value}.")
    return n


def check_groups(st: LabState, value: Any) -> list[str]:
    if value is None:
        return ["default"]
    if not isinstance(value, list):
        raise ApiError(400, f"Invalid input for field/attribute security_groups. Value: {value}.")
    names = []
    for item in value:
        ref = item.get("name") if isinstance(item, dict) else None
        sg = st.security_groups.get(str(ref)) or next(
            (g for g in st.security_groups.values() if g["name"] == ref), None)
        if sg is None:
            raise ApiError(400, f"Security group {ref} not found for project {st.project_id}.")
        names.append(sg["name"])
    return names


def quota_count(st: LabState, flavor: dict[str, Any], lo: int, hi: int) -> int:
    """How many of `hi` servers fit the quotas; a 403 if fewer than `lo` do."""
    for n in range(hi, lo - 1, -1):
        if not st.over_quota({"instances": n, "cores": n * flavor["vcpus"], "ram": n * flavor["ram"]}):
            return n
    over = st.over_quota({"instances": lo, "cores": lo * flavor["vcpus"], "ram": lo * flavor["ram"]})
    names = ", ".join(sorted(o[0] for o in over))
    name, requested, used, limit = sorted(over)[0]
    raise ApiError(403, f"Quota exceeded for {names}: Requested {requested}, but already used {used} of {limit} {name}")


def new_server(st: LabState, name: str, flavor: dict[str, Any], image: dict[str, Any], key_name: str | None,
                groups: list[str], metadata: dict[str, str], tags: list[str], user_data: bytes,
                networks: list[str], description: str | None) -> Server:
    index = st.free_index() or 0
    sid = new_id()
    address = st.address_for(index) if index and networks else ""
    mac = st.mac_for(index) if index else ""
    srv = Server(id=sid, name=name, index=index, flavor_id=flavor["id"], image_id=image["id"], key_name=key_name,
                 security_groups=groups, availability_zone="nova", metadata=dict(metadata), tags=list(tags),
                 port_id=None, address=address, mac=mac, created=time.time(), started=st.clock(),
                 description=description, user_data=user_data, login_user=image["default_user"],
                 public_key=st.keypairs[key_name]["public_key"] if key_name else "")
    if not index:
        srv.forced_error = (f"Build of instance {sid} aborted: Failed to allocate the network(s), not rescheduling.")
    elif st.config.error_builds > 0:
        st.config.error_builds -= 1
        srv.forced_error = f"Build of instance {sid} aborted: injected build failure (error_builds)."
    elif st.config.error_names and re.search(st.config.error_names, name):
        srv.forced_error = f"Build of instance {sid} aborted: injected build failure (error_names)."
    if address:
        sg_ids = [g["id"] for g in st.security_groups.values() if g["name"] in groups]
        srv.port_id = st.add_port(sid, address, mac, sg_ids)["id"]
    st.servers[sid] = srv
    return srv


def backend_spec(st: LabState, srv: Server, peers: dict[str, str]) -> ServerSpec | None:
    if srv.forced_error:
        return None
    return ServerSpec(id=srv.id, name=srv.name, index=srv.index, address=srv.address, mac=srv.mac,
                      user=srv.login_user, public_key=srv.public_key, user_data=srv.user_data,
                      peers={n: a for n, a in peers.items() if n != srv.name})
