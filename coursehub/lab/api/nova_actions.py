"""Nova per-server sub-resources: actions (console log, stop/start/reboot, security groups),
metadata, tags (>= 2.26), volume attachments, interfaces.

Like real nova, metadata and tag changes and volume attachments need a server
that has finished building (409 while BUILD). The console log of a server still
in BUILD has only the early boot lines; the host keys appear once it is ACTIVE.
Attachment replies: `tag` >= 2.70, `delete_on_termination` >= 2.79 (settable >= 2.79),
and from 2.89 `attachment_id`/`bdm_uuid` replace `id` in GET replies.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from coursehub.lab.backend import HostFault
from coursehub.lab.console import render_console

from .nova import C
from .state import Server, new_id
from .web import ApiError, Request, Response, Router, iso

if TYPE_CHECKING:
    from .server import LabAPI

log = logging.getLogger(__name__)
_SETTLED = ("ACTIVE", "SHUTOFF")


def _ready(srv: Server, action: str) -> None:
    if srv.deleting or srv.status not in _SETTLED:
        state = "deleting" if srv.deleting else {"BUILD": "building", "ERROR": "error"}.get(srv.status, srv.status.lower())
        raise ApiError(409, f"Cannot '{action}' instance {srv.id} while it is in vm_state {state}")


def power(api: LabAPI, srv: Server, what: HostFault) -> None:
    """Call the backend's host fault and keep the server's status in step (poweroff -> SHUTOFF)."""
    api.backend.fault(srv.id, what)
    with api.state.lock:
        if what == "poweroff" and srv.status == "ACTIVE":
            srv.status, srv.updated = "SHUTOFF", time.time()
        elif what in ("poweron", "reboot") and srv.status == "SHUTOFF":
            srv.status, srv.updated = "ACTIVE", time.time()


def release_volumes(api: LabAPI, srv: Server, volume_ids: list[str]) -> None:
    """Detach a deleted server's volumes (deleting those marked delete_on_termination)."""
    st = api.state
    for vid in volume_ids:
        with st.lock:
            vol = st.volumes.get(vid)
            dot = False
            if vol is not None:
                dot = any(a.get("delete_on_termination") for a in vol.attachments if a["server_id"] == srv.id)
                vol.attachments = [a for a in vol.attachments if a["server_id"] != srv.id]
                st.transition(vol, "detaching", "available")
                if dot:
                    st.transition(vol, "deleting", None)
                    vol.gone_at = st.clock() + st.config.volume_seconds
            srv.volumes = [v for v in srv.volumes if v != vid]
        _quietly(api.backend.detach, srv.id, vid)
        if dot:
            _quietly(api.backend.delete_volume, vid)


def _quietly(fn: Any, *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("lab backend: %s%r failed", getattr(fn, "__name__", fn), args)


def register(router: Router, api: LabAPI) -> None:
    from .nova_servers import find_server, refresh
    st = api.state

    def server(req: Request) -> Server:
        with st.lock:
            return find_server(st, req.params["server_id"])

    # ------------------------------------------------------------------ actions
    def action(req: Request) -> Response:
        body = req.json()
        if len(body) != 1:
            raise ApiError(400, "Malformed request body: one action per request")
        name, arg = next(iter(body.items()))
        srv = server(req)
        refresh(api, [srv])
        if name == "os-getConsoleOutput":
            return console(srv, arg)
        with st.lock:
            if name not in ("os-stop", "os-start", "reboot", "addSecurityGroup", "removeSecurityGroup"):
                raise ApiError(400, f"There is no such action: {name}")
            _ready(srv, {"os-stop": "stop", "os-start": "start"}.get(name, name))
            if name == "os-stop" and srv.status != "ACTIVE":
                raise ApiError(409, f"Cannot 'stop' instance {srv.id} while it is in vm_state stopped")
            if name == "os-start" and srv.status != "SHUTOFF":
                raise ApiError(409, f"Instance {srv.id} is not in a stopped state, cannot start it")
            if name == "reboot" and (not isinstance(arg, dict) or arg.get("type") not in ("SOFT", "HARD")):
                raise ApiError(400, "Invalid input for field/attribute reboot: 'type' must be SOFT or HARD")
        if name in ("os-stop", "os-start", "reboot"):
            power(api, srv, {"os-stop": "poweroff", "os-start": "poweron", "reboot": "reboot"}[name])  # type: ignore[arg-type]
            return Response(202)
        group = (arg or {}).get("name") if isinstance(arg, dict) else None
        with st.lock:
            sg = next((g for g in st.security_groups.values() if group in (g["name"], g["id"])), None)
            if sg is None:
                raise ApiError(404, f"Security group {group} not found for project {st.project_id}.")
            port = st.ports.get(srv.port_id or "")
            if name == "addSecurityGroup":
                if sg["name"] in srv.security_groups:
                    raise ApiError(400, f"Security group {sg['name']} is already associated with the instance {srv.id}")
                srv.security_groups.append(sg["name"])
                if port is not None:
                    port["security_groups"].append(sg["id"])
            else:
                if sg["name"] not in srv.security_groups:
                    raise ApiError(400, f"Security group {sg['name']} not associated with the instance {srv.id}")
                srv.security_groups.remove(sg["name"])
                if port is not None and sg["id"] in port["security_groups"]:
                    port["security_groups"].remove(sg["id"])
        return Response(202)

    def console(srv: Server, arg: Any) -> Response:
        length = (arg or {}).get("length") if isinstance(arg, dict) else None
        try:
            length = None if length in (None, -1, "-1") else int(length)
            if length is not None and length < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise ApiError(400, f"Invalid input for field/attribute length. Value: {length}.") from None
        with st.lock:
            if srv.deleting or srv.status == "ERROR" or srv.host_keys is None:
                raise ApiError(409, f"Instance {srv.id} is not ready")
            text = render_console(srv.name, srv.host_keys.lines, address=srv.address, mac=srv.mac, user=srv.login_user,
                                  user_keys=[srv.public_key] if srv.public_key else [], started=srv.created,
                                  finished=srv.status != "BUILD")
        if length is not None:
            lines = text.split("\n")
            text = "\n".join(lines[-length:]) if length else ""
        return Response(200, {"output": text})

    # ------------------------------------------------------------------ metadata
    def meta_get(req: Request) -> Response:
        srv = server(req)
        with st.lock:
            key = req.params.get("key")
            if key is None:
                return Response(200, {"metadata": dict(srv.metadata)})
            if key not in srv.metadata:
                raise ApiError(404, "Metadata item was not found")
            return Response(200, {"meta": {key: srv.metadata[key]}})

    def meta_set(req: Request) -> Response:
        from .nova_create import check_metadata
        srv = server(req)
        body = req.json()
        key = req.params.get("key")
        if key is not None:
            meta = check_metadata(body.get("meta"))
            if len(meta) != 1:
                raise ApiError(400, "Request body contains too many items")
            if key not in meta:
                raise ApiError(400, "Request body and URI mismatch")
        else:
            meta = check_metadata(body.get("metadata"))
        with st.lock:
            _ready(srv, "update_instance_metadata" if key or req.method == "POST" else "replace_instance_metadata")
            new = dict(meta) if (req.method == "PUT" and key is None) else {**srv.metadata, **meta}
            limit = st.quota("metadata_items")
            if 0 <= limit < len(new):
                raise ApiError(403, f"Quota exceeded for metadata_items: Requested {len(new)}, but already used 0 of "
                                    f"{limit} metadata_items")
            srv.metadata, srv.updated = new, time.time()
            if key is not None:
                return Response(200, {"meta": {key: new[key]}})
            return Response(200, {"metadata": dict(new)})

    def meta_delete(req: Request) -> Response:
        srv = server(req)
        with st.lock:
            _ready(srv, "delete_instance_metadata")
            if srv.metadata.pop(req.params["key"], None) is None:
                raise ApiError(404, "Metadata item was not found")
        return Response(204)

    # ------------------------------------------------------------------ tags
    def tags_gate(req: Request) -> Server:
        if not req.at_least("2.26"):
            raise ApiError(404, "The resource could not be found.")
        return server(req)

    def tags(req: Request) -> Response:
        from .nova_create import check_tags
        srv = tags_gate(req)
        tag = req.params.get("tag")
        with st.lock:
            if req.method == "GET" and tag is None:
                return Response(200, {"tags": list(srv.tags)})
            if req.method == "GET":
                if tag not in srv.tags:
                    raise ApiError(404, f"Tag {tag} was not found for instance {srv.id}")  # nosec - message text
                return Response(204)
            _ready(srv, "update tags" if tag is None else "update tag")
            if req.method == "PUT" and tag is None:
                srv.tags = check_tags(req.json().get("tags"))
                return Response(200, {"tags": list(srv.tags)})
            if req.method == "PUT":
                check_tags([tag])
                if tag in srv.tags:
                    return Response(204)
                if len(srv.tags) >= 50:
                    raise ApiError(400, "The number of tags exceeded the per-server limit 50")
                srv.tags.append(tag)
                return Response(201, None, {"Location": f"{req.base_url}{C}/servers/{srv.id}/tags/{tag}"})
            if tag is None:
                srv.tags = []
            elif tag in srv.tags:
                srv.tags.remove(tag)
            else:
                raise ApiError(404, f"Tag {tag} was not found for instance {srv.id}")
            return Response(204)

    # ------------------------------------------------------------------ volume attachments
    def att_view(req: Request, srv: Server, vid: str, created: bool = False) -> dict[str, Any]:
        vol = st.volumes.get(vid)
        att = next((a for a in (vol.attachments if vol else []) if a["server_id"] == srv.id), {})
        out: dict[str, Any] = {"device": att.get("device"), "serverId": srv.id, "volumeId": vid}
        if created or not req.at_least("2.89"):
            out["id"] = vid
        if req.at_least("2.70"):
            out["tag"] = att.get("tag")
        if req.at_least("2.79"):
            out["delete_on_termination"] = bool(att.get("delete_on_termination"))
        if req.at_least("2.89") and not created:
            out.update(attachment_id=att.get("id"), bdm_uuid=att.get("bdm_uuid"))
        return out

    def list_attachments(req: Request) -> Response:
        srv = server(req)
        with st.lock:
            return Response(200, {"volumeAttachments": [att_view(req, srv, v) for v in srv.volumes]})

    def get_attachment(req: Request) -> Response:
        srv = server(req)
        with st.lock:
            vid = req.params["volume_id"]
            if vid not in srv.volumes:
                raise ApiError(404, f"Volume {vid} is not attached to instance {srv.id}")  # nova: VolumeBDMNotFound
            return Response(200, {"volumeAttachment": att_view(req, srv, vid)})

    def attach(req: Request) -> Response:
        body = req.json().get("volumeAttachment")
        allowed = {"volumeId", "device"} | ({"tag"} if req.at_least("2.49") else set()) | (
            {"delete_on_termination"} if req.at_least("2.79") else set())
        if not isinstance(body, dict) or "volumeId" not in body or set(body) - allowed:
            raise ApiError(400, f"Invalid input for field/attribute volumeAttachment. Value: {body}.")
        srv = server(req)
        refresh(api, [srv])
        vid = str(body["volumeId"])
        with st.lock:
            _ready(srv, "attach_volume")
            vol = st.volumes.get(vid)
            if vol is None:
                raise ApiError(404, f"Volume {vid} could not be found.")
            if vol.status != "available":
                raise ApiError(400, f"Invalid volume: volume '{vid}' status must be 'available'. Currently in '{vol.status}'")
            used = {a["device"] for v in srv.volumes for a in st.volumes[v].attachments if v in st.volumes}
            device = next(f"/dev/vd{c}" for c in "bcdefghijklmnopqrstuvwxyz" if f"/dev/vd{c}" not in used)
            vol.attachments.append({"id": new_id(), "server_id": srv.id, "device": device, "bdm_uuid": new_id(),
                                    "attached_at": iso(time.time(), fraction=True, zulu=False), "tag": body.get("tag"),
                                    "delete_on_termination": bool(body.get("delete_on_termination"))})
            st.transition(vol, "attaching", "in-use")
            srv.volumes.append(vid)
            size = vol.size
        try:
            api.backend.attach(srv.id, vid, size, device)
        except Exception as e:
            log.exception("lab backend: attach(%s, %s) failed", srv.id, vid)
            with st.lock:
                vol.attachments = [a for a in vol.attachments if a["server_id"] != srv.id]
                srv.volumes = [v for v in srv.volumes if v != vid]
                st.transition(vol, "available", None)
            raise ApiError(500, f"Failed to attach volume {vid} to instance {srv.id}: {type(e).__name__}: {e}") from None
        with st.lock:
            return Response(200, {"volumeAttachment": att_view(req, srv, vid, created=True)})

    def detach(req: Request) -> Response:
        srv = server(req)
        vid = req.params["volume_id"]
        with st.lock:
            if vid not in srv.volumes:
                raise ApiError(404, f"Volume {vid} is not attached to instance {srv.id}")
            _ready(srv, "detach_volume")
            vol = st.volumes.get(vid)
            if vol is not None:
                vol.attachments = [a for a in vol.attachments if a["server_id"] != srv.id]
                st.transition(vol, "detaching", "available")
            srv.volumes.remove(vid)
        _quietly(api.backend.detach, srv.id, vid)
        return Response(202)

    # ------------------------------------------------------------------ interfaces, ips
    def interfaces(req: Request) -> Response:
        srv = server(req)
        with st.lock:
            port = st.ports.get(srv.port_id or "")
            items = [] if port is None else [{
                "port_state": "ACTIVE", "port_id": port["id"], "net_id": port["network_id"],
                "mac_addr": port["mac_address"], "fixed_ips": [dict(ip) for ip in port["fixed_ips"]],
                **({"tag": None} if req.at_least("2.70") else {})}]
        return Response(200, {"interfaceAttachments": items})

    def ips(req: Request) -> Response:
        from .nova_servers import view
        srv = server(req)
        with st.lock:
            return Response(200, {"addresses": view(api, req, srv)["addresses"]})

    add = router.add
    s = f"{C}/servers/{{server_id}}"
    add("POST", f"{s}/action", action, "nova")
    add("GET", f"{s}/metadata", meta_get, "nova")
    add("POST", f"{s}/metadata", meta_set, "nova")
    add("PUT", f"{s}/metadata", meta_set, "nova")
    add("GET", f"{s}/metadata/{{key}}", meta_get, "nova")
    add("PUT", f"{s}/metadata/{{key}}", meta_set, "nova")
    add("DELETE", f"{s}/metadata/{{key}}", meta_delete, "nova")
    for method in ("GET", "PUT", "DELETE"):
        add(method, f"{s}/tags", tags, "nova")
        add(method, f"{s}/tags/{{tag}}", tags, "nova")
    add("GET", f"{s}/os-volume_attachments", list_attachments, "nova")
    add("POST", f"{s}/os-volume_attachments", attach, "nova")
    add("GET", f"{s}/os-volume_attachments/{{volume_id}}", get_attachment, "nova")
    add("DELETE", f"{s}/os-volume_attachments/{{volume_id}}", detach, "nova")
    add("GET", f"{s}/os-interface", interfaces, "nova")
    add("GET", f"{s}/ips", ips, "nova")
