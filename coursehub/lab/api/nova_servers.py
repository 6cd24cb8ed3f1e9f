"""Nova servers: create, list (with nova's regex `name` filter), show, update, delete.

A server is BUILD until `build_seconds` of the lab clock have passed and the
backend says it is up, then ACTIVE; ERROR (with `fault`) when the backend says
it failed, when `error_builds`/`error_names` ask for it, or when the subnet has
no address left. DELETE answers 204 at once; GET shows task_state `deleting`
for `delete_seconds`, then 404.

Microversion gates on the request: `description` >= 2.19, `networks` "auto"/"none"
(and `networks` required) >= 2.37, `tags` >= 2.52, `trusted_image_certificates`
>= 2.63, `host`/`hypervisor_hostname` >= 2.74, `hostname` >= 2.90; personality < 2.57.
On the reply: `locked` >= 2.9, `description` >= 2.19, `tags` >= 2.26, embedded
flavor >= 2.47, `server_groups` >= 2.71, `locked_reason` >= 2.73,
`pinned_availability_zone` >= 2.96.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
import time
from typing import TYPE_CHECKING, Any

from . import nova_actions
from .nova import C, links
from .nova_create import (
    backend_spec,
    check_count,
    check_groups,
    check_metadata,
    check_name,
    check_networks,
    check_tags,
    check_user_data,
    new_server,
    quota_count,
)
from .state import LabState, Server
from .web import ApiError, Request, Response, Router, iso, next_link, paginate

if TYPE_CHECKING:
    from .server import LabAPI

log = logging.getLogger(__name__)

_BASE_KEYS = {"name", "imageRef", "flavorRef", "networks", "key_name", "security_groups", "availability_zone",
              "metadata", "user_data", "min_count", "max_count", "return_reservation_id", "config_drive",
              "block_device_mapping_v2", "accessIPv4", "accessIPv6", "adminPass", "OS-DCF:diskConfig"}
_GATED_KEYS = {"description": "2.19", "tags": "2.52", "trusted_image_certificates": "2.63", "host": "2.74",
               "hypervisor_hostname": "2.74", "hostname": "2.90"}
_STATES = {"BUILD": ("building", 0), "ACTIVE": ("active", 1), "ERROR": ("error", 0), "SHUTOFF": ("stopped", 4)}


def find_server(st: LabState, server_id: str) -> Server:
    """The server (lock held), or nova's 404."""
    srv = st.servers.get(server_id)
    if srv is None:
        raise ApiError(404, f"Instance {server_id} could not be found.")
    return srv


def fail(srv: Server, message: str) -> None:
    srv.status, srv.updated = "ERROR", time.time()
    srv.fault = {"code": 500, "created": iso(time.time()), "message": message,
                 "details": f"{message}\n  File \"/opt/lab/nova/compute/manager.py\", line 2471, in _build_and_run_instance"}


def refresh(api: LabAPI, servers: list[Server]) -> None:
    """Move BUILD servers on: ask the backend (outside the lock) once build_seconds have passed."""
    st = api.state
    with st.lock:
        now = st.clock()
        due = []
        for srv in servers:
            if srv.status != "BUILD" or srv.deleting or now - srv.started < st.config.build_seconds:
                continue
            if srv.forced_error:
                fail(srv, srv.forced_error)
            elif srv.host_keys is not None:
                due.append(srv)
    answers: dict[str, bool | None] = {}
    for srv in due:
        try:
            answers[srv.id] = api.backend.ready(srv.id)
        except Exception:
            log.exception("lab backend: ready(%s) failed", srv.id)
            answers[srv.id] = False
    with st.lock:
        for srv in due:
            if srv.status != "BUILD" or srv.deleting:
                continue
            if answers[srv.id] is True:
                srv.status, srv.launched = "ACTIVE", time.time()
                srv.updated = srv.launched
            elif answers[srv.id] is None:
                fail(srv, f"Build of instance {srv.id} aborted: the host did not come up.")


def view(api: LabAPI, req: Request, srv: Server, detail: bool = True) -> dict[str, Any]:
    """The server as nova shows it at the request's microversion (lock held)."""
    st = api.state
    out: dict[str, Any] = {"id": srv.id, "name": srv.name, "links": links(req, "servers", srv.id)}
    if not detail:
        return out
    flavor = st.flavors.get(srv.flavor_id, {"id": srv.flavor_id, "name": "", "vcpus": 0, "ram": 0, "disk": 0,
                                            "ephemeral": 0, "swap": 0, "extra_specs": {}})
    vm_state, power = _STATES.get(srv.status, ("error", 0))
    task = "deleting" if srv.deleting else ("spawning" if srv.status == "BUILD" else None)
    addresses: dict[str, list[dict[str, Any]]] = {}
    if srv.port_id and srv.port_id in st.ports:
        port = st.ports[srv.port_id]
        net = st.networks.get(port["network_id"], {"name": "lab"})
        addresses[net["name"]] = [{"version": 4, "addr": ip["ip_address"], "OS-EXT-IPS:type": "fixed",
                                   "OS-EXT-IPS-MAC:mac_addr": port["mac_address"]} for ip in port["fixed_ips"]]
    on_host = srv.status != "ERROR" or srv.launched is not None
    out.update({
        "status": srv.status, "tenant_id": st.project_id, "user_id": st.user_id, "metadata": dict(srv.metadata),
        "hostId": hashlib.sha224((st.project_id + "lab").encode()).hexdigest() if on_host else "",
        "image": {"id": srv.image_id, "links": [{"rel": "bookmark", "href": f"{req.base_url}/compute/images/{srv.image_id}"}]},
        "flavor": ({"vcpus": flavor["vcpus"], "ram": flavor["ram"], "disk": flavor["disk"],
                    "ephemeral": flavor["ephemeral"], "swap": flavor["swap"], "original_name": flavor["name"],
                    "extra_specs": dict(flavor["extra_specs"])} if req.at_least("2.47") else
                   {"id": srv.flavor_id, "links": [{"rel": "bookmark", "href": f"{req.base_url}/compute/flavors/{srv.flavor_id}"}]}),
        "created": iso(srv.created), "updated": iso(srv.updated or srv.created), "addresses": addresses,
        "accessIPv4": "", "accessIPv6": "", "OS-DCF:diskConfig": "MANUAL", "config_drive": "",
        "key_name": srv.key_name, "OS-EXT-AZ:availability_zone": srv.availability_zone if on_host else "",
        "OS-SRV-USG:launched_at": iso(srv.launched, fraction=True, zulu=False) if srv.launched else None,
        "OS-SRV-USG:terminated_at": None, "OS-EXT-STS:task_state": task, "OS-EXT-STS:vm_state": vm_state,
        "OS-EXT-STS:power_state": power,
        "os-extended-volumes:volumes_attached": [
            {"id": vid, **({"delete_on_termination": _dot(st, vid, srv.id)} if req.at_least("2.3") else {})}
            for vid in srv.volumes],
        "OS-EXT-SRV-ATTR:host": "lab" if on_host else None,
        "OS-EXT-SRV-ATTR:hypervisor_hostname": "lab" if on_host else None,
        "OS-EXT-SRV-ATTR:instance_name": f"instance-{srv.index:08x}",
    })
    if srv.security_groups and srv.port_id:
        out["security_groups"] = [{"name": n} for n in dict.fromkeys(srv.security_groups)]
    if srv.status in ("BUILD", "ACTIVE"):
        out["progress"] = 0
    if srv.status == "ERROR" and srv.fault:
        out["fault"] = dict(srv.fault)
    if req.at_least("2.3"):
        out.update({"OS-EXT-SRV-ATTR:hostname": srv.name, "OS-EXT-SRV-ATTR:launch_index": 0,
                    "OS-EXT-SRV-ATTR:reservation_id": f"r-{srv.id[:8]}", "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                    "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "", "OS-EXT-SRV-ATTR:user_data": (
                        base64.b64encode(srv.user_data).decode() if srv.user_data else None)})
    gated = {"2.9": ("locked", False), "2.19": ("description", srv.description), "2.26": ("tags", list(srv.tags)),
             "2.63": ("trusted_image_certificates", None), "2.71": ("server_groups", []),
             "2.73": ("locked_reason", None), "2.96": ("pinned_availability_zone", None)}
    for version, (key, value) in gated.items():
        if req.at_least(version):
            out[key] = value
    return out


def _dot(st: LabState, volume_id: str, server_id: str) -> bool:
    vol = st.volumes.get(volume_id)
    for att in vol.attachments if vol else []:
        if att["server_id"] == server_id:
            return bool(att.get("delete_on_termination"))
    return False


def _filter(api: LabAPI, req: Request, servers: list[Server]) -> list[Server]:
    name = req.arg("name")
    if name:
        try:
            pattern = re.compile(name)
        except re.error:
            raise ApiError(400, f"Invalid regular expression for the name filter: {name}") from None
        servers = [s for s in servers if pattern.search(s.name)]
    status = req.arg("status")
    if status:
        servers = [s for s in servers if s.status == status.upper()]
    if req.arg("ip"):
        ip = re.compile(re.escape(req.arg("ip") or ""))
        servers = [s for s in servers if ip.search(s.address)]
    for arg, attr in (("flavor", "flavor_id"), ("image", "image_id"), ("key_name", "key_name"),
                      ("availability_zone", "availability_zone")):
        if req.arg(arg):
            servers = [s for s in servers if getattr(s, attr) == req.arg(arg)]
    if req.at_least("2.26"):
        for arg, want_all, negate in (("tags", True, False), ("tags-any", False, False),
                                      ("not-tags", True, True), ("not-tags-any", False, True)):
            if req.arg(arg):
                wanted = set((req.arg(arg) or "").split(","))
                def match(s: Server, w: set[str] = wanted, a: bool = want_all) -> bool:
                    return w <= set(s.tags) if a else bool(w & set(s.tags))
                servers = [s for s in servers if match(s) != negate]
    return servers


def register(router: Router, api: LabAPI) -> None:
    st = api.state
    nova_actions.register(router, api)

    def list_servers(req: Request, detail: bool) -> Response:
        with st.lock:
            servers = list(reversed(st.servers.values()))
        refresh(api, servers)
        with st.lock:
            servers = _filter(api, req, [s for s in servers if s.id in st.servers])
            page, marker = paginate([{"id": s.id, "srv": s} for s in servers], req)
            body: dict[str, Any] = {"servers": [view(api, req, p["srv"], detail) for p in page]}
        if marker:
            body["servers_links"] = next_link(req, marker)
        return Response(200, body)

    def show(req: Request) -> Response:
        with st.lock:
            srv = find_server(st, req.params["server_id"])
        refresh(api, [srv])
        with st.lock:
            return Response(200, {"server": view(api, req, find_server(st, srv.id))})

    def update(req: Request) -> Response:
        data = req.json().get("server")
        allowed = {"name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"} | (
            {"description"} if req.at_least("2.19") else set()) | ({"hostname"} if req.at_least("2.90") else set())
        if not isinstance(data, dict) or set(data) - allowed:
            raise ApiError(400, f"Invalid input for field/attribute server. Value: {data}. Additional properties are not allowed")
        with st.lock:
            srv = find_server(st, req.params["server_id"])
            if "name" in data:
                srv.name = check_name(data["name"])
            if "description" in data:
                srv.description = data["description"]
            srv.updated = time.time()
            return Response(200, {"server": view(api, req, srv)})

    def delete(req: Request) -> Response:
        with st.lock:
            srv = find_server(st, req.params["server_id"])
            first = not srv.deleting
            srv.deleting = True
            detached = list(srv.volumes) if first else []
        if first:
            nova_actions.release_volumes(api, srv, detached)
            try:
                api.backend.delete(srv.id)
            except Exception:
                log.exception("lab backend: delete(%s) failed", srv.id)
        with st.lock:
            srv.gone_at = st.clock() + st.config.delete_seconds
            srv.updated = time.time()
        return Response(204)

    def create(req: Request) -> Response:
        body = req.json().get("server")
        if not isinstance(body, dict):
            raise ApiError(400, "Invalid input for field/attribute server. Value: None. 'server' is a required property")
        allowed = _BASE_KEYS | {k for k, v in _GATED_KEYS.items() if req.at_least(v)} | (
            set() if req.at_least("2.57") else {"personality"})
        extra = sorted(set(body) - allowed)
        if extra:
            raise ApiError(400, f"Invalid input for field/attribute server. Value: {body}. Additional properties are "
                                f"not allowed ({', '.join(repr(e) for e in extra)} {'was' if len(extra) == 1 else 'were'} unexpected)")
        name = check_name(body.get("name"))
        for key in ("flavorRef", "imageRef"):
            if not body.get(key):
                raise ApiError(400, f"Invalid input for field/attribute server. '{key}' is a required property"
                               + ("; the lab does not boot from volume" if key == "imageRef" else ""))
        networks = check_networks(req, body)
        metadata = check_metadata(body.get("metadata", {}))
        tags = check_tags(body.get("tags", []))
        user_data = check_user_data(body.get("user_data"))
        lo, hi = check_count(body.get("min_count", 1)), check_count(body.get("max_count", body.get("min_count", 1)))
        if lo > hi:
            raise ApiError(400, "min_count must be <= max_count")
        with st.lock:
            flavor = st.flavors.get(str(body["flavorRef"]).rstrip("/").rsplit("/", 1)[-1])
            if flavor is None:
                raise ApiError(400, f"Flavor {body['flavorRef']} could not be found.")
            image = st.images.get(str(body["imageRef"]).rstrip("/").rsplit("/", 1)[-1])
            if image is None:
                raise ApiError(400, f"Image {body['imageRef']} could not be found.")
            key_name = body.get("key_name")
            if key_name is not None and key_name not in st.keypairs:
                raise ApiError(400, "Invalid key_name provided.")
            for net in networks:
                if net not in st.networks:
                    raise ApiError(400, f"Network {net} could not be found.")
            groups = check_groups(st, body.get("security_groups"))
            az = body.get("availability_zone") or "nova"
            if str(az).split(":", 1)[0] != "nova":
                raise ApiError(400, "The requested availability zone is not available")
            if len(metadata) > st.quota("metadata_items") >= 0:
                raise ApiError(403, f"Quota exceeded for metadata_items: Requested {len(metadata)}, but already used 0 "
                                    f"of {st.quota('metadata_items')} metadata_items")
            count = quota_count(st, flavor, lo, hi)
            created = [new_server(st, f"{name}-{i + 1}" if hi > 1 else name, flavor, image, key_name, groups, metadata,
                                   tags, user_data, networks, body.get("description")) for i in range(count)]
            peers = {s.name: s.address for s in st.live_servers() if s.address}
            specs = [(srv, backend_spec(st, srv, peers)) for srv in created]
        for srv, spec in specs:
            if spec is None:
                continue
            try:
                keys = api.backend.create(spec)
            except Exception as e:
                log.exception("lab backend: create(%s) failed", srv.name)
                with st.lock:
                    fail(srv, f"Build of instance {srv.id} aborted: {type(e).__name__}: {e}")
                continue
            with st.lock:
                srv.host_keys = keys
        first = created[0]
        if body.get("return_reservation_id"):
            return Response(202, {"reservation_id": f"r-{first.id[:8]}"})
        reply = {"id": first.id, "links": links(req, "servers", first.id), "OS-DCF:diskConfig": "MANUAL",
                 "security_groups": [{"name": g} for g in first.security_groups], "adminPass": secrets.token_urlsafe(9)}
        return Response(202, {"server": reply}, {"Location": f"{req.base_url}{C}/servers/{first.id}"})

    add = router.add
    add("GET", f"{C}/servers", lambda req: list_servers(req, False), "nova")
    add("GET", f"{C}/servers/detail", lambda req: list_servers(req, True), "nova")
    add("POST", f"{C}/servers", create, "nova")
    add("GET", f"{C}/servers/{{server_id}}", show, "nova")
    add("PUT", f"{C}/servers/{{server_id}}", update, "nova")
    add("DELETE", f"{C}/servers/{{server_id}}", delete, "nova")
