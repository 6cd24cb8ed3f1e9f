"""Nova, everything but servers: discovery, flavors, keypairs, availability zones, limits, quotas.

Microversions 2.1 to 2.96 (negotiated in `LabAPI.dispatch`). Gated here:
keypair `type` (>= 2.2, and 201/204 replies from 2.2), keypair `user_id` (>= 2.10),
keypair pagination (>= 2.35), generated keypairs (< 2.92), flavor
`description` (>= 2.55) and `extra_specs` (>= 2.61), limits and quota keys for
proxied network resources (< 2.36) and personality files (< 2.57).
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from coursehub.lab.console import md5_fingerprint, parse_public_key

from .web import ApiError, Request, Response, Router, iso, next_link, paginate

if TYPE_CHECKING:
    from .server import LabAPI

C = "/compute/v2.1"
_KEYPAIR_NAME = re.compile(r"^[a-zA-Z0-9 _-]{1,255}$")
_KEYPAIR_NAME_292 = re.compile(r"^[a-zA-Z0-9 _.@-]{1,255}$")
NOVA_QUOTAS = ("instances", "cores", "ram", "key_pairs", "metadata_items", "server_groups", "server_group_members")


def version_doc(base: str) -> dict[str, Any]:
    from .server import NOVA_MAX, NOVA_MIN
    return {"id": "v2.1", "status": "CURRENT", "version": NOVA_MAX, "min_version": NOVA_MIN,
            "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": f"{base}{C}/"},
                      {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]}


def links(req: Request, kind: str, ident: str) -> list[dict[str, str]]:
    return [{"rel": "self", "href": f"{req.base_url}{C}/{kind}/{ident}"},
            {"rel": "bookmark", "href": f"{req.base_url}/compute/{kind}/{ident}"}]


def flavor_view(req: Request, f: dict[str, Any], detail: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f["id"], "name": f["name"], "links": links(req, "flavors", f["id"])}
    if req.at_least("2.55"):
        out["description"] = None
    if detail:
        out.update({"ram": f["ram"], "disk": f["disk"], "vcpus": f["vcpus"], "OS-FLV-EXT-DATA:ephemeral": f["ephemeral"],
                    "OS-FLV-DISABLED:disabled": False, "os-flavor-access:is_public": f["is_public"],
                    "swap": f["swap"] if req.at_least("2.75") else (f["swap"] or ""), "rxtx_factor": 1.0})
        if req.at_least("2.61"):
            out["extra_specs"] = dict(f["extra_specs"])
    return out


def generate_keypair() -> tuple[str, str]:
    """(public OpenSSH line, private PEM) as nova makes them: RSA 2048."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return public + " Generated-by-Nova", private


def register(router: Router, api: LabAPI) -> None:
    st = api.state

    def versions(req: Request) -> Response:
        v20 = {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "", "updated": "2011-01-21T11:33:21Z",
               "links": [{"rel": "self", "href": f"{req.base_url}/compute/v2/"}]}
        return Response(200, {"versions": [v20, version_doc(req.base_url)]})

    # ------------------------------------------------------------------ flavors
    def list_flavors(req: Request, detail: bool) -> Response:
        with st.lock:
            flavors = sorted(st.flavors.values(), key=lambda f: f["id"])
        public = (req.arg("is_public") or "true").lower()
        if public in ("true", "1", "yes", "t", "y", "on"):
            flavors = [f for f in flavors if f["is_public"]]
        elif public in ("false", "0", "no", "f", "n", "off"):
            flavors = [f for f in flavors if not f["is_public"]]
        for arg, key in (("minRam", "ram"), ("minDisk", "disk")):
            if req.arg(arg):
                try:
                    floor = int(req.arg(arg) or 0)
                except ValueError:
                    raise ApiError(400, f"Invalid {arg} filter [{req.arg(arg)}]") from None
                flavors = [f for f in flavors if f[key] >= floor]
        page, marker = paginate(flavors, req)
        body: dict[str, Any] = {"flavors": [flavor_view(req, f, detail) for f in page]}
        if marker:
            body["flavors_links"] = next_link(req, marker)
        return Response(200, body)

    def find_flavor(fid: str) -> dict[str, Any]:
        with st.lock:
            flavor = st.flavors.get(fid)
        if flavor is None:
            raise ApiError(404, f"Flavor {fid} could not be found.")
        return flavor

    def get_flavor(req: Request) -> Response:
        return Response(200, {"flavor": flavor_view(req, find_flavor(req.params["flavor_id"]))})

    def extra_specs(req: Request) -> Response:
        return Response(200, {"extra_specs": dict(find_flavor(req.params["flavor_id"])["extra_specs"])})

    # ------------------------------------------------------------------ keypairs
    def keypair_view(req: Request, kp: dict[str, Any], full: bool) -> dict[str, Any]:
        out = {"name": kp["name"], "public_key": kp["public_key"], "fingerprint": kp["fingerprint"]}
        if req.at_least("2.2"):
            out["type"] = kp["type"]
        if full:
            out.update({"user_id": st.user_id, "created_at": iso(kp["created"], fraction=True, zulu=False),
                        "deleted": False, "deleted_at": None, "updated_at": None, "id": kp["seq"]})
        return out

    def list_keypairs(req: Request) -> Response:
        with st.lock:
            pairs = sorted(st.keypairs.values(), key=lambda k: k["name"])
        if req.at_least("2.35"):
            page, marker = paginate(pairs, req, key="name")
        else:
            page, marker = pairs, None
        body: dict[str, Any] = {"keypairs": [{"keypair": keypair_view(req, kp, False)} for kp in page]}
        if marker:
            body["keypairs_links"] = next_link(req, marker)
        return Response(200, body)

    def get_keypair(req: Request) -> Response:
        name = req.params["name"]
        with st.lock:
            kp = st.keypairs.get(name)
        if kp is None:
            raise ApiError(404, f"Keypair {name} not found for user {st.user_id}")
        return Response(200, {"keypair": keypair_view(req, kp, True)})

    def create_keypair(req: Request) -> Response:
        data = req.json().get("keypair")
        if not isinstance(data, dict):
            raise ApiError(400, "Invalid input for field/attribute keypair. Value: None. 'keypair' is a required property")
        allowed = {"name", "public_key"} | ({"type"} if req.at_least("2.2") else set()) | (
            {"user_id"} if req.at_least("2.10") else set())
        extra = sorted(set(data) - allowed)
        if extra:
            raise ApiError(400, f"Invalid input for field/attribute keypair. Value: {data}. Additional properties are "
                                f"not allowed ({', '.join(repr(e) for e in extra)} {'was' if len(extra) == 1 else 'were'} unexpected)")
        name = data.get("name")
        pattern = _KEYPAIR_NAME_292 if req.at_least("2.92") else _KEYPAIR_NAME
        if not isinstance(name, str) or not pattern.match(name) or name != name.strip():
            raise ApiError(400, f"Invalid input for field/attribute name. Value: {name}. Keypair name must be a string "
                                "and between 1 and 255 characters long, containing only allowed characters")
        kind = data.get("type", "ssh")
        if kind not in ("ssh", "x509"):
            raise ApiError(400, f"Invalid input for field/attribute type. Value: {kind}. '{kind}' is not one of ['ssh', 'x509']")
        if kind == "x509":
            raise ApiError(400, "Keypair data is invalid: x509 keypairs are not supported by the lab")
        public, private = data.get("public_key"), None
        if public is None and req.at_least("2.92"):
            raise ApiError(400, "Invalid input for field/attribute keypair. 'public_key' is a required property")
        if public is not None:
            try:
                _t, blob, _c = parse_public_key(str(public))
            except ValueError:
                raise ApiError(400, "Keypair data is invalid: failed to generate fingerprint") from None
        with st.lock:
            if name in st.keypairs:
                raise ApiError(409, f"Key pair '{name}' already exists.")
            if st.over_quota({"key_pairs": 1}):
                raise ApiError(403, "Quota exceeded, too many key pairs.")
        if public is None:
            public, private = generate_keypair()
            _t, blob, _c = parse_public_key(public)
        with st.lock:
            if name in st.keypairs:
                raise ApiError(409, f"Key pair '{name}' already exists.")
            st.keypair_seq += 1
            kp = {"name": name, "public_key": str(public).strip(), "fingerprint": md5_fingerprint(blob), "type": kind,
                  "created": time.time(), "seq": st.keypair_seq}
            st.keypairs[name] = kp
        out = keypair_view(req, kp, False)
        out["user_id"] = st.user_id
        if private is not None:
            out["private_key"] = private
        return Response(201 if req.at_least("2.2") else 200, {"keypair": out})

    def delete_keypair(req: Request) -> Response:
        name = req.params["name"]
        with st.lock:
            if st.keypairs.pop(name, None) is None:
                raise ApiError(404, f"Keypair {name} not found for user {st.user_id}")
        return Response(204 if req.at_least("2.2") else 202)

    # ------------------------------------------------------------------ zones, limits, quotas
    def zones(req: Request) -> Response:
        zone: dict[str, Any] = {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}
        if req.path.endswith("/detail"):
            zone["hosts"] = {"lab": {"nova-compute": {"available": True, "active": True, "updated_at": iso(time.time())}}}
        return Response(200, {"availabilityZoneInfo": [zone]})

    def limits(req: Request) -> Response:
        with st.lock:
            used, q = st.usage(), dict(st.config.quotas)
        absolute = {
            "maxTotalInstances": q["instances"], "maxTotalCores": q["cores"], "maxTotalRAMSize": q["ram"],
            "maxTotalKeypairs": q["key_pairs"], "maxServerMeta": q["metadata_items"], "maxServerGroups": q["server_groups"],
            "maxServerGroupMembers": q["server_group_members"], "totalInstancesUsed": used["instances"],
            "totalCoresUsed": used["cores"], "totalRAMUsed": used["ram"], "totalServerGroupsUsed": 0,
        }
        if not req.at_least("2.36"):
            absolute.update(maxImageMeta=128, maxSecurityGroups=q["security_group"],
                            maxSecurityGroupRules=q["security_group_rule"], maxTotalFloatingIps=q["floatingip"],
                            totalSecurityGroupsUsed=used["security_group"], totalFloatingIpsUsed=0)
        if not req.at_least("2.57"):
            absolute.update(maxPersonality=5, maxPersonalitySize=10240)
        return Response(200, {"limits": {"rate": [], "absolute": absolute}})

    def quota_set(req: Request, detail: bool, defaults: bool = False) -> dict[str, Any]:
        from .state import DEFAULT_QUOTAS
        ours = req.params["project_id"] == st.project_id and not defaults
        with st.lock:
            used = st.usage() if ours else {}
            q = dict(st.config.quotas) if ours else dict(DEFAULT_QUOTAS)
        names = list(NOVA_QUOTAS)
        extra = {}
        if not req.at_least("2.57"):
            extra.update(injected_files=5, injected_file_content_bytes=10240, injected_file_path_bytes=255)
        if not req.at_least("2.36"):
            extra.update(floating_ips=q["floatingip"], fixed_ips=-1, security_groups=q["security_group"],
                         security_group_rules=q["security_group_rule"])
        out: dict[str, Any] = {"id": req.params["project_id"]}
        for name in names:
            out[name] = {"limit": q[name], "in_use": used.get(name, 0), "reserved": 0} if detail else q[name]
        for name, value in extra.items():
            out[name] = {"limit": value, "in_use": 0, "reserved": 0} if detail else value
        return out

    def update_quota(req: Request) -> Response:
        data = req.json().get("quota_set")
        if not isinstance(data, dict):
            raise ApiError(400, "Invalid input for field/attribute quota_set.")
        data.pop("force", None)
        bad = [k for k in data if k not in NOVA_QUOTAS or not isinstance(data[k], int) or data[k] < -1]
        if bad:
            raise ApiError(400, f"Invalid input for field/attribute quota_set: {', '.join(map(str, bad))}")
        if req.params["project_id"] != st.project_id:
            raise ApiError(400, f"Project ID {req.params['project_id']} is not a valid project.")
        api.configure(quotas=data)
        body = quota_set(req, detail=False)
        body.pop("id")
        return Response(200, {"quota_set": body})

    def extensions(req: Request) -> Response:
        names = ["os-availability-zone", "os-extended-volumes", "os-keypairs", "os-volume-attachment-update",
                 "os-server-tags", "os-console-output", "os-quota-sets", "os-extended-availability-zone"]
        ext = [{"alias": n, "name": n, "namespace": "http://docs.openstack.org/compute/ext/fake_xml",
                "description": n, "links": [], "updated": "2014-12-03T00:00:00Z"} for n in names]
        return Response(200, {"extensions": ext})

    add = router.add
    add("GET", "/compute", versions, "nova", auth=False)
    add("GET", C, lambda req: Response(200, {"version": version_doc(req.base_url)}), "nova", auth=False)
    add("GET", f"{C}/flavors", lambda req: list_flavors(req, False), "nova")
    add("GET", f"{C}/flavors/detail", lambda req: list_flavors(req, True), "nova")
    add("GET", f"{C}/flavors/{{flavor_id}}", get_flavor, "nova")
    add("GET", f"{C}/flavors/{{flavor_id}}/os-extra_specs", extra_specs, "nova")
    add("GET", f"{C}/os-keypairs", list_keypairs, "nova")
    add("POST", f"{C}/os-keypairs", create_keypair, "nova")
    add("GET", f"{C}/os-keypairs/{{name}}", get_keypair, "nova")
    add("DELETE", f"{C}/os-keypairs/{{name}}", delete_keypair, "nova")
    add("GET", f"{C}/os-availability-zone", zones, "nova")
    add("GET", f"{C}/os-availability-zone/detail", zones, "nova")
    add("GET", f"{C}/limits", limits, "nova")
    add("GET", f"{C}/os-quota-sets/{{project_id}}", lambda req: Response(200, {"quota_set": quota_set(req, False)}), "nova")
    add("PUT", f"{C}/os-quota-sets/{{project_id}}", update_quota, "nova")
    add("GET", f"{C}/os-quota-sets/{{project_id}}/detail",
        lambda req: Response(200, {"quota_set": quota_set(req, True)}), "nova")
    add("GET", f"{C}/os-quota-sets/{{project_id}}/defaults",
        lambda req: Response(200, {"quota_set": quota_set(req, False, defaults=True)}), "nova")
    add("GET", f"{C}/extensions", extensions, "nova")
