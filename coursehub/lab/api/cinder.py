"""Cinder v3 (microversions 3.0 to 3.71): volumes, extend, availability zones, limits,
quota sets, volume types (one: `__DEFAULT__`), empty snapshot and backup lists.

States: creating -> available; attaching -> in-use; detaching -> available;
extending -> available | in-use; deleting -> gone (404). Each transition lands
after `volume_seconds` of the lab clock (0: at the next request). Extending an
in-use volume needs microversion >= 3.42, as on real cinder. Over quota: 413
`overLimit` with Retry-After.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .state import Volume, new_id, stable_id
from .web import ApiError, Request, Response, Router, iso, next_link, paginate

if TYPE_CHECKING:
    from .server import LabAPI

V = "/volume/v3/{project_id}"
CINDER_QUOTAS = ("volumes", "gigabytes", "snapshots", "backups", "backup_gigabytes")
_DELETABLE = ("available", "error", "error_restoring", "error_extending", "error_managing")
TYPE_ID = stable_id("volume-type", "__DEFAULT__")


def version_doc(base: str) -> dict[str, Any]:
    from .server import CINDER_MAX, CINDER_MIN
    return {"id": "v3.0", "status": "CURRENT", "version": CINDER_MAX, "min_version": CINDER_MIN,
            "updated": "2023-08-31T00:00:00Z",
            "links": [{"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
                      {"rel": "self", "href": f"{base}/volume/v3/"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}]}


def _over(message: str) -> ApiError:
    return ApiError(413, message, headers={"Retry-After": "0"})


def register(router: Router, api: LabAPI) -> None:
    st = api.state

    def project(req: Request) -> None:
        if req.params["project_id"] != st.project_id:
            raise ApiError(404, f"Project {req.params['project_id']} could not be found.")

    def find(req: Request) -> Volume:
        project(req)
        vol = st.volumes.get(req.params["volume_id"])
        if vol is None:
            raise ApiError(404, f"Volume {req.params['volume_id']} could not be found.")
        return vol

    def view(req: Request, vol: Volume, detail: bool = True) -> dict[str, Any]:
        links = [{"rel": "self", "href": f"{req.base_url}/volume/v3/{st.project_id}/volumes/{vol.id}"},
                 {"rel": "bookmark", "href": f"{req.base_url}/volume/{st.project_id}/volumes/{vol.id}"}]
        out: dict[str, Any] = {"id": vol.id, "name": vol.name, "links": links}
        if not detail:
            return out
        out.update({
            "status": vol.status, "size": vol.size, "availability_zone": vol.availability_zone,
            "created_at": iso(vol.created, fraction=True, zulu=False),
            "updated_at": iso(vol.updated or vol.created, fraction=True, zulu=False), "description": vol.description,
            "volume_type": "__DEFAULT__", "snapshot_id": None, "source_volid": None, "metadata": dict(vol.metadata),
            "user_id": st.user_id, "bootable": "false", "encrypted": False, "replication_status": None,
            "consistencygroup_id": None, "multiattach": False, "migration_status": None,
            "os-vol-tenant-attr:tenant_id": st.project_id, "os-vol-host-attr:host": "lab@lvm#lvm",
            "os-vol-mig-status-attr:migstat": None, "os-vol-mig-status-attr:name_id": None,
            "attachments": [{"id": vol.id, "attachment_id": a["id"], "volume_id": vol.id, "server_id": a["server_id"],
                             "host_name": None, "device": a["device"], "attached_at": a["attached_at"]}
                            for a in vol.attachments],
        })
        gated = {"3.13": ("group_id", None), "3.21": ("provider_id", None), "3.48": ("service_uuid", "lab-volume"),
                 "3.61": ("cluster_name", None), "3.63": ("volume_type_id", TYPE_ID),
                 "3.64": ("encryption_key_id", None), "3.65": ("consumes_quota", True)}
        for version, (key, value) in gated.items():
            if req.at_least(version):
                out[key] = value
        if req.at_least("3.48"):
            out["shared_targets"] = False
        return out

    def list_volumes(req: Request, detail: bool) -> Response:
        project(req)
        with st.lock:
            vols = list(reversed(st.volumes.values()))
            for arg in ("name", "status", "availability_zone"):
                if req.arg(arg) is not None:
                    vols = [v for v in vols if getattr(v, arg) == req.arg(arg)]
            items = [view(req, v, detail) for v in vols]
        page, marker = paginate(items, req)
        body: dict[str, Any] = {"volumes": page}
        if marker:
            body["volumes_links"] = next_link(req, marker)
        if req.at_least("3.45") and (req.arg("with_count") or "").lower() in ("true", "1", "yes"):
            body["count"] = len(items)
        return Response(200, body)

    def show(req: Request) -> Response:
        with st.lock:
            return Response(200, {"volume": view(req, find(req))})

    def create(req: Request) -> Response:
        project(req)
        body = req.json().get("volume")
        if not isinstance(body, dict):
            raise ApiError(400, "Missing required element 'volume' in request body.")
        unsupported = [k for k in ("snapshot_id", "source_volid", "imageRef", "backup_id", "source_replica")
                       if body.get(k)]
        if unsupported:
            raise ApiError(400, f"Invalid input received: the lab makes blank volumes only (got {unsupported[0]}).")
        size = body.get("size")
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ApiError(400, f"Invalid input received: Volume size '{size}' must be an integer and greater than 0.")
        az = body.get("availability_zone") or "nova"
        if az != "nova":
            raise ApiError(400, f"Invalid input received: Availability zone '{az}' is invalid.")
        vtype = body.get("volume_type")
        if vtype not in (None, "__DEFAULT__", TYPE_ID):
            raise ApiError(404, f"Volume type with name {vtype} could not be found.")
        metadata = body.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise ApiError(400, "Invalid input received: metadata must be a mapping of strings")
        with st.lock:
            _check_quota(st, volumes=1, gigabytes=size)
            vol = Volume(id=new_id(), name=body.get("name"), size=size, availability_zone=az,
                         description=body.get("description"), metadata={str(k): str(v) for k, v in metadata.items()},
                         created=time.time())
            st.volumes[vol.id] = vol
            st.transition(vol, "creating", "available")
            return Response(202, {"volume": view(req, vol)})

    def update(req: Request) -> Response:
        body = req.json().get("volume")
        if not isinstance(body, dict) or set(body) - {"name", "description", "metadata", "display_name",
                                                       "display_description"}:
            raise ApiError(400, "Invalid input received: only name, description and metadata can be updated.")
        with st.lock:
            vol = find(req)
            vol.name = body.get("name", body.get("display_name", vol.name))
            vol.description = body.get("description", body.get("display_description", vol.description))
            if isinstance(body.get("metadata"), dict):
                vol.metadata = {str(k): str(v) for k, v in body["metadata"].items()}
            vol.updated = time.time()
            return Response(200, {"volume": view(req, vol)})

    def delete(req: Request) -> Response:
        with st.lock:
            vol = find(req)
            if vol.status == "deleting":
                return Response(202)
            if vol.status not in _DELETABLE or vol.attachments:
                raise ApiError(400, "Invalid volume: Volume status must be available or error or error_restoring or "
                                    "error_extending or error_managing and must not be migrating, attached, belong to "
                                    "a group, have snapshots, awaiting a transfer, or be disassociated from snapshots "
                                    "after volume transfer.")
            st.transition(vol, "deleting", None)
            vol.gone_at = st.clock() + st.config.volume_seconds
        try:
            api.backend.delete_volume(vol.id)
        except Exception as e:
            with st.lock:
                vol.gone_at, vol.status = None, "error_deleting"
            raise ApiError(500, f"Failed to delete volume {vol.id}: {type(e).__name__}: {e}") from None
        return Response(202)

    def action(req: Request) -> Response:
        body = req.json()
        if len(body) != 1:
            raise ApiError(400, "Invalid request body: one action per request")
        name, arg = next(iter(body.items()))
        if name == "os-extend":
            return extend(req, arg)
        if name == "os-reset_status":
            with st.lock:
                vol = find(req)
                st.transition(vol, str((arg or {}).get("status") or vol.status), None)
            return Response(202)
        raise ApiError(400, f"There is no such action: {name}")

    def extend(req: Request, arg: Any) -> Response:
        new_size = (arg or {}).get("new_size") if isinstance(arg, dict) else None
        try:
            new_size = int(new_size)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ApiError(400, f"Invalid input for field/attribute new_size. Value: {new_size}.") from None
        with st.lock:
            vol = find(req)
            allowed = ("available", "in-use") if req.at_least("3.42") else ("available",)
            if vol.status not in allowed:
                text = "'available' or 'in-use'" if req.at_least("3.42") else "'available'"
                raise ApiError(400, f"Invalid volume: Volume status must be {text} to extend, currently {vol.status}.")
            if new_size <= vol.size:
                raise ApiError(400, f"Invalid input received: New size for extend must be greater than current size. "
                                    f"(current: {vol.size}, extended: {new_size}).")
            _check_quota(st, gigabytes=new_size - vol.size)
            back, old = vol.status, vol.size
            vol.size = new_size
            st.transition(vol, "extending", back)
        try:
            api.backend.extend(vol.id, new_size)
        except Exception as e:
            with st.lock:
                vol.size = old
                st.transition(vol, "error_extending", None)
            raise ApiError(500, f"Failed to extend volume {vol.id}: {type(e).__name__}: {e}") from None
        return Response(202)

    # ------------------------------------------------------------------ zones, limits, quotas, types
    def limits(req: Request) -> Response:
        project(req)
        with st.lock:
            q, used = dict(st.config.quotas), st.usage()
        absolute = {"maxTotalVolumes": q["volumes"], "maxTotalVolumeGigabytes": q["gigabytes"],
                    "maxTotalSnapshots": q["snapshots"], "maxTotalBackups": q["backups"],
                    "maxTotalBackupGigabytes": q["backup_gigabytes"], "totalVolumesUsed": used["volumes"],
                    "totalGigabytesUsed": used["gigabytes"], "totalSnapshotsUsed": 0, "totalBackupsUsed": 0,
                    "totalBackupGigabytesUsed": 0}
        return Response(200, {"limits": {"rate": [], "absolute": absolute}})

    def quota_set(req: Request, defaults: bool = False) -> Response:
        from .state import DEFAULT_QUOTAS
        project(req)
        ours = req.params["target"] == st.project_id and not defaults
        usage = (req.arg("usage") or "").lower() in ("true", "1", "yes")
        with st.lock:
            q = dict(st.config.quotas) if ours else dict(DEFAULT_QUOTAS)
            used = st.usage() if ours else {}
        out: dict[str, Any] = {"id": req.params["target"]}
        for name in CINDER_QUOTAS + ("per_volume_gigabytes", "groups", "volumes___DEFAULT__", "gigabytes___DEFAULT__"):
            limit = q.get(name.split("___")[0], -1 if name != "groups" else 10)
            in_use = used.get(name.split("___")[0], 0)
            out[name] = {"limit": limit, "in_use": in_use, "reserved": 0, "allocated": 0} if usage else limit
        return Response(200, {"quota_set": out})

    def update_quota(req: Request) -> Response:
        project(req)
        body = req.json().get("quota_set")
        if not isinstance(body, dict) or any(k not in CINDER_QUOTAS or not isinstance(v, int) for k, v in body.items()):
            raise ApiError(400, f"Invalid input received: quota_set {body}")
        if req.params["target"] != st.project_id:
            raise ApiError(400, f"Invalid input received: project {req.params['target']} is not valid.")
        api.configure(quotas=body)
        return quota_set(req)

    def vtype(req: Request) -> dict[str, Any]:
        return {"id": TYPE_ID, "name": "__DEFAULT__", "is_public": True, "description": "Default Volume Type",
                "extra_specs": {}, "qos_specs_id": None, "os-volume-type-access:is_public": True}

    def get_type(req: Request) -> Response:
        project(req)
        if req.params["type_id"] not in (TYPE_ID, "default", "__DEFAULT__"):
            raise ApiError(404, f"Volume type {req.params['type_id']} could not be found.")
        return Response(200, {"volume_type": vtype(req)})

    def empty(key: str) -> Any:
        def handler(req: Request) -> Response:
            project(req)
            return Response(200, {key: []})
        return handler

    add = router.add
    add("GET", "/volume", lambda req: Response(300, {"versions": [version_doc(req.base_url)]}), "cinder", auth=False)
    add("GET", "/volume/v3", lambda req: Response(200, {"versions": [version_doc(req.base_url)]}), "cinder", auth=False)
    add("GET", f"{V}/volumes", lambda req: list_volumes(req, False), "cinder")
    add("GET", f"{V}/volumes/detail", lambda req: list_volumes(req, True), "cinder")
    add("POST", f"{V}/volumes", create, "cinder")
    add("GET", f"{V}/volumes/{{volume_id}}", show, "cinder")
    add("PUT", f"{V}/volumes/{{volume_id}}", update, "cinder")
    add("DELETE", f"{V}/volumes/{{volume_id}}", delete, "cinder")
    add("POST", f"{V}/volumes/{{volume_id}}/action", action, "cinder")
    add("GET", f"{V}/os-availability-zone", lambda req: project(req) or Response(200, {"availabilityZoneInfo": [
        {"zoneName": "nova", "zoneState": {"available": True}}]}), "cinder")
    add("GET", f"{V}/limits", limits, "cinder")
    add("GET", f"{V}/os-quota-sets/{{target}}", quota_set, "cinder")
    add("PUT", f"{V}/os-quota-sets/{{target}}", update_quota, "cinder")
    add("GET", f"{V}/os-quota-sets/{{target}}/defaults", lambda req: quota_set(req, defaults=True), "cinder")
    add("GET", f"{V}/types", lambda req: project(req) or Response(200, {"volume_types": [vtype(req)]}), "cinder")
    add("GET", f"{V}/types/{{type_id}}", get_type, "cinder")
    for key, path in (("snapshots", "snapshots"), ("snapshots", "snapshots/detail"), ("backups", "backups"),
                      ("backups", "backups/detail")):
        add("GET", f"{V}/{path}", empty(key), "cinder")


def _check_quota(st: Any, **wanted: int) -> None:
    """413 overLimit in cinder's words when `wanted` more would exceed a quota (lock held)."""
    over = {name: (req, used, limit) for name, req, used, limit in st.over_quota(wanted)}
    if "volumes" in over:
        raise _over(f"VolumeLimitExceeded: Maximum number of volumes allowed ({over['volumes'][2]}) exceeded for "
                    "quota 'volumes'.")
    if "gigabytes" in over:
        req, used, limit = over["gigabytes"]
        raise _over("VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed gigabytes quota. "
                    f"Requested {req}G, quota is {limit}G and {used}G has been consumed.")
