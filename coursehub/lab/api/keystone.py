"""Keystone v3: version discovery, password (and token) auth with a catalog, projects.

One domain (`Default`, id `default`), one user (`admin`) and one project
(`coursehub`). A token is valid for `token_seconds` of the lab clock; a bad
password, unknown user or project, or an expired token is a 401.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from .web import ApiError, Request, Response, Router, iso

if TYPE_CHECKING:
    from .server import LabAPI

DOMAIN = {"id": "default", "name": "Default"}


def version_doc(base: str) -> dict[str, Any]:
    return {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
            "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]}


def catalog(base: str, project_id: str, region: str) -> list[dict[str, Any]]:
    """The service catalog: one port, devstack-style paths."""
    services = [
        ("identity", "keystone", "/identity"), ("compute", "nova", "/compute/v2.1"),
        ("network", "neutron", "/network"), ("volumev3", "cinderv3", f"/volume/v3/{project_id}"),
        ("block-storage", "cinder", f"/volume/v3/{project_id}"), ("image", "glance", "/image"),
    ]
    out = []
    for kind, name, path in services:
        endpoints = [{"id": f"{name}-{iface}", "interface": iface, "region": region,
                      "region_id": region, "url": base + path} for iface in ("public", "internal")]
        out.append({"id": f"{name}-service", "type": kind, "name": name, "endpoints": endpoints})
    return out


def register(router: Router, api: LabAPI) -> None:
    st = api.state

    def project() -> dict[str, Any]:
        return {"id": st.project_id, "name": st.project_name, "domain_id": "default", "description": "CourseHub lab",
                "enabled": True, "parent_id": "default", "is_domain": False, "tags": [], "options": {}}

    def token_body(req: Request, methods: list[str], scoped: bool, expires: float) -> dict[str, Any]:
        now = time.time()
        token: dict[str, Any] = {
            "methods": methods, "expires_at": iso(expires, fraction=True), "issued_at": iso(now, fraction=True),
            "audit_ids": [secrets.token_urlsafe(16)],
            "user": {"id": st.user_id, "name": st.username, "domain": DOMAIN, "password_expires_at": None},
        }
        if scoped:
            token.update(project={"id": st.project_id, "name": st.project_name, "domain": DOMAIN}, is_domain=False,
                         roles=[{"id": f"role-{r}", "name": r} for r in ("admin", "member", "reader")],
                         catalog=catalog(req.base_url, st.project_id, st.region))
        return {"token": token}

    def versions(req: Request) -> Response:
        return Response(300, {"versions": {"values": [version_doc(req.base_url)]}})

    def v3(req: Request) -> Response:
        return Response(200, {"version": version_doc(req.base_url)})

    def authenticate(req: Request) -> Response:
        auth = req.json().get("auth")
        if not isinstance(auth, dict) or not isinstance(auth.get("identity"), dict):
            raise ApiError(400, "Invalid input for field 'identity': 'identity' is a required property")
        identity = auth["identity"]
        methods = identity.get("methods") or []
        unauthorized = ApiError(401, "The request you have made requires authentication.")
        if "password" in methods:
            user = (identity.get("password") or {}).get("user") or {}
            domain = user.get("domain") or {}
            same_user = user.get("id") == st.user_id or (
                user.get("name") == st.username and (domain.get("id") == "default" or domain.get("name") == "Default"))
            if not same_user or not secrets.compare_digest(str(user.get("password", "")), st.password):
                raise unauthorized
        elif "token" in methods:
            with st.lock:
                if not st.token_valid((identity.get("token") or {}).get("id")):
                    raise unauthorized
        else:
            raise unauthorized
        scope = auth.get("scope") or {}
        scoped = False
        if "project" in scope:
            proj = scope["project"] or {}
            pdom = proj.get("domain") or {}
            if not (proj.get("id") == st.project_id or (
                    proj.get("name") == st.project_name and (pdom.get("id") == "default" or pdom.get("name") == "Default"))):
                raise unauthorized
            scoped = True
        elif scope:
            raise unauthorized
        with st.lock:
            token, expires = st.issue_token()
        return Response(201, token_body(req, [m for m in methods if m in ("password", "token")], scoped, expires),
                        {"X-Subject-Token": token})

    def subject(req: Request) -> tuple[str, float]:
        """The X-Subject-Token and the seconds it has left, or keystone's 404."""
        token = req.headers.get("x-subject-token") or ""
        with st.lock:
            if not st.token_valid(token):
                raise ApiError(404, f"Could not find token: {'*' * 8}.")
            return token, st.tokens[token] - st.clock()

    def validate(req: Request) -> Response:
        _token, left = subject(req)
        return Response(200, token_body(req, ["password"], True, time.time() + left))

    def revoke(req: Request) -> Response:
        token, _left = subject(req)
        with st.lock:
            st.tokens.pop(token, None)
        return Response(204)

    def links(req: Request) -> dict[str, Any]:
        return {"self": req.base_url + req.path, "previous": None, "next": None}

    def list_projects(req: Request) -> Response:
        name = req.arg("name")
        found = [project()] if name in (None, st.project_name) else []
        return Response(200, {"projects": found, "links": links(req)})

    def get_project(req: Request) -> Response:
        if req.params["project_id"] != st.project_id:
            raise ApiError(404, f"Could not find project: {req.params['project_id']}.")
        return Response(200, {"project": project()})

    def user_projects(req: Request) -> Response:
        if req.params["user_id"] != st.user_id:
            raise ApiError(404, f"Could not find user: {req.params['user_id']}.")
        return Response(200, {"projects": [project()], "links": links(req)})

    def get_user(req: Request) -> Response:
        if req.params["user_id"] != st.user_id:
            raise ApiError(404, f"Could not find user: {req.params['user_id']}.")
        return Response(200, {"user": {"id": st.user_id, "name": st.username, "domain_id": "default", "enabled": True,
                                       "password_expires_at": None, "options": {}}})

    def auth_catalog(req: Request) -> Response:
        return Response(200, {"catalog": catalog(req.base_url, st.project_id, st.region), "links": links(req)})

    add = router.add
    add("GET", "/identity", versions, "keystone", auth=False)
    add("GET", "/identity/v3", v3, "keystone", auth=False)
    add("POST", "/identity/v3/auth/tokens", authenticate, "keystone", auth=False)
    add("GET", "/identity/v3/auth/tokens", validate, "keystone")
    add("DELETE", "/identity/v3/auth/tokens", revoke, "keystone")
    add("GET", "/identity/v3/auth/catalog", auth_catalog, "keystone")
    add("GET", "/identity/v3/auth/projects", lambda req: Response(200, {"projects": [project()], "links": links(req)}),
        "keystone")
    add("GET", "/identity/v3/projects", list_projects, "keystone")
    add("GET", "/identity/v3/projects/{project_id}", get_project, "keystone")
    add("GET", "/identity/v3/users/{user_id}", get_user, "keystone")
    add("GET", "/identity/v3/users/{user_id}/projects", user_projects, "keystone")
