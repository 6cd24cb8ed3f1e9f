"""The lab's control surface, on the API's own port, for tests and benchmarks.

    GET    /_lab                       what is running: backend kind, counts
    GET    /_lab/servers               every server: id, name, index, address, mac, status
    GET    /_lab/faults                the live fault rules
    POST   /_lab/faults                replace them with a JSON list of rules (see faults.py)
    DELETE /_lab/faults                clear them
    GET    /_lab/journal[?since=SEQ]   {"requests": [{seq, method, path, status, time, ms}, ...]}
    DELETE /_lab/journal               forget the journal
    POST   /_lab/reset                 delete every server and volume, re-seed, clear faults and journal
    GET    /_lab/config                the knobs (build_seconds, quotas, ...)
    POST   /_lab/config                change some of them: {"build_seconds": 3, "quotas": {"instances": 2}}
    POST   /_lab/hosts/<id|name>/<f>   host fault f: stop-sshd, start-sshd, freeze, thaw, cut, heal,
                                       poweroff, poweron, reboot (poweroff shows as SHUTOFF in nova)

Control requests need no token, are never faulted and are not journaled.
Nothing here reveals the password or a token.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, get_args

from coursehub.lab.backend import HostFault

from .web import ApiError, Request, Response, Router

if TYPE_CHECKING:
    from .server import LabAPI

HOST_FAULTS: tuple[str, ...] = get_args(HostFault)


def _body(req: Request) -> Any:
    try:
        return json.loads(req.body or b"null")
    except ValueError:
        raise ApiError(400, "the body is not JSON") from None


def dispatch(api: LabAPI, req: Request) -> Response:
    route, params, known = api.control.match(req.method, req.path)
    try:
        if route is None:
            raise ApiError(405 if known else 404, "no such control endpoint" if not known else "method not allowed")
        req.params = params
        return route.handler(req)
    except ApiError as e:
        return Response(e.status, {"error": e.message})


def register(router: Router, api: LabAPI) -> None:
    st = api.state

    def summary(req: Request) -> Response:
        with st.lock:
            return Response(200, {"backend": getattr(api.backend, "kind", "?"), "subnet": str(st.subnet),
                                  "servers": len(st.servers), "volumes": len(st.volumes),
                                  "faults": len(api.faults.list()), "journal": len(api.journal)})

    def servers(req: Request) -> Response:
        with st.lock:
            return Response(200, {"servers": [
                {"id": s.id, "name": s.name, "index": s.index, "address": s.address, "mac": s.mac,
                 "status": s.status, "deleting": s.deleting} for s in st.servers.values()]})

    def set_faults(req: Request) -> Response:
        rules = _body(req)
        if isinstance(rules, dict) and "rules" in rules:
            rules = rules["rules"]
        if not isinstance(rules, list):
            raise ApiError(400, "POST a JSON list of fault rules")
        api.set_faults(rules)
        return Response(200, {"faults": api.faults.list()})

    def clear_faults(req: Request) -> Response:
        api.faults.clear()
        return Response(204)

    def journal(req: Request) -> Response:
        try:
            since = int(req.arg("since") or 0)
        except ValueError:
            raise ApiError(400, "since must be a sequence number") from None
        return Response(200, {"requests": api.journal.entries(since)})

    def clear_journal(req: Request) -> Response:
        api.journal.clear()
        return Response(204)

    def reset(req: Request) -> Response:
        api.reset()
        return Response(200, {"reset": True})

    def config(req: Request) -> Response:
        if req.method == "POST":
            data = _body(req)
            if not isinstance(data, dict):
                raise ApiError(400, "POST a JSON object of knobs")
            api.configure(**data)
        with st.lock:
            return Response(200, {"config": st.config.public()})

    def host_fault(req: Request) -> Response:
        from .nova_actions import power
        ref, what = req.params["server"], req.params["fault"]
        if what not in HOST_FAULTS:
            raise ApiError(400, f"unknown host fault {what!r}; known: {', '.join(HOST_FAULTS)}")
        with st.lock:
            srv = st.servers.get(ref) or next((s for s in st.servers.values() if s.name == ref), None)
            if srv is None or srv.deleting:
                raise ApiError(404, f"no server {ref!r}")
        try:
            power(api, srv, what)  # type: ignore[arg-type]
        except KeyError:
            raise ApiError(409, f"the backend has no host for server {ref!r}") from None
        except Exception as e:
            raise ApiError(500, f"{type(e).__name__}: {e}") from None
        return Response(200, {"server": srv.id, "name": srv.name, "fault": what, "status": srv.status})

    add = router.add
    add("GET", "/_lab", summary, "lab", auth=False)
    add("GET", "/_lab/servers", servers, "lab", auth=False)
    add("GET", "/_lab/faults", lambda req: Response(200, {"faults": api.faults.list()}), "lab", auth=False)
    add("POST", "/_lab/faults", set_faults, "lab", auth=False)
    add("DELETE", "/_lab/faults", clear_faults, "lab", auth=False)
    add("GET", "/_lab/journal", journal, "lab", auth=False)
    add("DELETE", "/_lab/journal", clear_journal, "lab", auth=False)
    add("POST", "/_lab/reset", reset, "lab", auth=False)
    add("GET", "/_lab/config", config, "lab", auth=False)
    add("POST", "/_lab/config", config, "lab", auth=False)
    add("POST", "/_lab/hosts/{server}/{fault}", host_fault, "lab", auth=False)
