"""Glance v2: version discovery (mandatory for openstacksdk), and the seeded public images.

Images are read only. GET by id answers the bare image (no wrapper); a miss is
glance's plain-text 404. Lists filter on any attribute (`name=`, `os_distro=`,
...) and page with `limit`/`marker` and a `next` link.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from .state import stable_id
from .web import ApiError, Request, Response, Router, filter_by_query, iso, paginate

if TYPE_CHECKING:
    from .server import LabAPI

I = "/image/v2"  # noqa: E741 - the path prefix, like C/N/V in the other services
OWNER = stable_id("project", "nectar-images", hexed=True)


def versions(req: Request) -> list[dict[str, Any]]:
    link = [{"rel": "self", "href": f"{req.base_url}/image/v2/"}]
    out = [{"id": "v2.16", "status": "CURRENT", "links": link}]
    out += [{"id": f"v2.{n}", "status": "SUPPORTED", "links": link} for n in range(15, 8, -1)]
    return out


def image_view(img: dict[str, Any]) -> dict[str, Any]:
    digest = hashlib.sha512(img["id"].encode()).hexdigest()
    return {
        "id": img["id"], "name": img["name"], "status": "active", "visibility": "public", "protected": True,
        "os_hidden": False, "container_format": "bare", "disk_format": "qcow2", "min_disk": 10, "min_ram": 0,
        "size": 2_361_393_152, "virtual_size": 10_737_418_240,
        "checksum": hashlib.md5(img["id"].encode(), usedforsecurity=False).hexdigest(), "os_hash_algo": "sha512",
        "os_hash_value": digest, "owner": OWNER, "created_at": iso(img["created"]), "updated_at": iso(img["created"]),
        "tags": [], "self": f"/v2/images/{img['id']}", "file": f"/v2/images/{img['id']}/file",
        "schema": "/v2/schemas/image", "architecture": "x86_64", "default_user": img["default_user"],
        "os_distro": img["os_distro"], "os_version": img["os_version"], "hw_qemu_guest_agent": "yes",
    }


def register(router: Router, api: LabAPI) -> None:
    st = api.state

    def list_images(req: Request) -> Response:
        with st.lock:
            items = [image_view(i) for i in sorted(st.images.values(), key=lambda i: i["name"])]
        items = filter_by_query(items, req.query, skip=("sort", "member_status", "tag"))
        page, marker = paginate(items, req)
        body: dict[str, Any] = {"images": page, "first": "/v2/images", "schema": "/v2/schemas/images"}
        if marker:
            body["next"] = f"/v2/images?marker={marker}&limit={req.arg('limit')}"
        return Response(200, body)

    def get_image(req: Request) -> Response:
        with st.lock:
            img = st.images.get(req.params["image_id"])
        if img is None:
            raise ApiError(404, f"No image found with ID {req.params['image_id']}")
        return Response(200, image_view(img))

    add = router.add
    add("GET", "/image", lambda req: Response(300, {"versions": versions(req)}), "glance", auth=False)
    add("GET", "/image/versions", lambda req: Response(200, {"versions": versions(req)}), "glance", auth=False)
    add("GET", f"{I}/images", list_images, "glance")
    add("GET", f"{I}/images/{{image_id}}", get_image, "glance")
