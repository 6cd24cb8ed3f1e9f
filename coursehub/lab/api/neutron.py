"""Neutron v2.0: networks, subnets, ports, floating IPs and routers (read only), security
groups and rules (read/write), quotas, extensions.

Filters work as in neutron: any attribute as a query parameter (several values =
any of them), `fields=` to trim, `limit`/`marker` pagination with `<collection>_links`.
A new security group gets neutron's two egress rules; a duplicate rule is a 409
`SecurityGroupRuleExists`; exceeding a quota is a 409 `OverQuota`.
"""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING, Any

from .state import LabState
from .web import ApiError, Request, Response, Router, filter_by_query, iso, next_link, paginate

if TYPE_CHECKING:
    from .server import LabAPI

N = "/network/v2.0"
_PROTOCOLS = {"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "icmp": 1, "icmpv6": 58, "igmp": 2, "ipip": 4,
              "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "ipv6-nonxt": 59, "ipv6-opts": 60,
              "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17,
              "udplite": 136, "vrrp": 112}
_RULE_KEYS = {"security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
              "remote_ip_prefix", "remote_group_id", "remote_address_group_id", "description", "tenant_id", "project_id"}
NEUTRON_QUOTAS = ("network", "subnet", "port", "router", "floatingip", "security_group", "security_group_rule")
EXTENSIONS = ["security-group", "quotas", "quota_details", "standard-attr-tag", "standard-attr-description",
              "standard-attr-timestamp", "standard-attr-revisions", "port-security", "binding", "external-net",
              "router", "availability_zone", "network_availability_zone", "project-id", "stateful-security-group",
              "extra_dhcp_opt", "allowed-address-pairs", "net-mtu", "agent", "dns-integration"]


def _stamps(rec: dict[str, Any]) -> dict[str, Any]:
    return {"created_at": iso(rec["created"]), "updated_at": iso(rec.get("updated", rec["created"])),
            "revision_number": rec.get("revision_number", 1), "tags": [], "description": rec.get("description", "")}


def register(router: Router, api: LabAPI) -> None:
    st = api.state

    def owner() -> dict[str, str]:
        return {"tenant_id": st.project_id, "project_id": st.project_id}

    def network_view(n: dict[str, Any]) -> dict[str, Any]:
        return {"id": n["id"], "name": n["name"], **owner(), "admin_state_up": True, "mtu": 1450, "status": "ACTIVE",
                "subnets": list(n["subnets"]), "shared": False, "availability_zone_hints": [],
                "availability_zones": ["nova"], "ipv4_address_scope": None, "ipv6_address_scope": None,
                "router:external": False, "port_security_enabled": True, "qos_policy_id": None,
                "l2_adjacency": True, "dns_domain": "", **_stamps(n)}

    def subnet_view(s: dict[str, Any]) -> dict[str, Any]:
        return {"id": s["id"], "name": s["name"], **owner(), "network_id": s["network_id"], "ip_version": 4,
                "subnetpool_id": None, "enable_dhcp": True, "ipv6_ra_mode": None, "ipv6_address_mode": None,
                "gateway_ip": s["gateway_ip"], "cidr": s["cidr"], "allocation_pools": [dict(p) for p in s["allocation_pools"]],
                "host_routes": [], "dns_nameservers": [], "service_types": [], "segment_id": None, **_stamps(s)}

    def port_view(p: dict[str, Any]) -> dict[str, Any]:
        return {"id": p["id"], "name": p["name"], **owner(), "network_id": p["network_id"], "mac_address": p["mac_address"],
                "admin_state_up": True, "status": "ACTIVE", "device_id": p["device_id"], "device_owner": p["device_owner"],
                "fixed_ips": [dict(ip) for ip in p["fixed_ips"]], "allowed_address_pairs": [], "extra_dhcp_opts": [],
                "security_groups": list(p["security_groups"]), "binding:vnic_type": "normal",
                "port_security_enabled": True, "dns_name": "", "ip_allocation": "immediate", **_stamps(p)}

    def rule_view(r: dict[str, Any]) -> dict[str, Any]:
        out = {k: r[k] for k in ("id", "security_group_id", "direction", "ethertype", "protocol", "port_range_min",
                                 "port_range_max", "remote_ip_prefix", "remote_group_id", "remote_address_group_id")}
        prefix = r["remote_ip_prefix"]
        out["normalized_cidr"] = str(ipaddress.ip_network(prefix, strict=False)) if prefix else None
        out["belongs_to_default_sg"] = st.security_groups.get(r["security_group_id"], {}).get("name") == "default"
        return {**out, **owner(), **_stamps(r)}

    def sg_view(g: dict[str, Any]) -> dict[str, Any]:
        return {"id": g["id"], "name": g["name"], **owner(), "stateful": g["stateful"], "shared": False,
                "security_group_rules": [rule_view(r) for r in st.rules_of(g["id"])], **_stamps(g)}

    collections: dict[str, tuple[str, str, Any, Any]] = {
        # url part: (singular, NotFound type, records getter, view)
        "networks": ("network", "NetworkNotFound", lambda: st.networks, network_view),
        "subnets": ("subnet", "SubnetNotFound", lambda: st.subnets, subnet_view),
        "ports": ("port", "PortNotFound", lambda: st.ports, port_view),
        "security-groups": ("security_group", "SecurityGroupNotFound", lambda: st.security_groups, sg_view),
        "security-group-rules": ("security_group_rule", "SecurityGroupRuleNotFound", lambda: st.rules, rule_view),
        "floatingips": ("floatingip", "FloatingIPNotFound", lambda: {}, dict),
        "routers": ("router", "RouterNotFound", lambda: {}, dict),
    }

    def not_found(kind: str, rid: str) -> ApiError:
        singular, err, _, _ = collections[kind]
        noun = singular.replace("_", " ").capitalize().replace("ip", "IP")
        tail = "does not exist" if kind.startswith("security") else "could not be found."
        return ApiError(404, f"{noun} {rid} {tail}", kind=err)

    def trim(item: dict[str, Any], req: Request) -> dict[str, Any]:
        fields = req.query.get("fields")
        return {k: v for k, v in item.items() if k in fields} if fields else item

    def lister(kind: str) -> Any:
        def handler(req: Request) -> Response:
            _, _, records, view = collections[kind]
            with st.lock:
                items = [view(r) for r in records().values()]
            items = filter_by_query(items, req.query)
            page, marker = paginate(items, req)
            body: dict[str, Any] = {kind.replace("-", "_"): [trim(i, req) for i in page]}
            if marker:
                body[f"{kind.replace('-', '_')}_links"] = next_link(req, marker)
            return Response(200, body)
        return handler

    def getter(kind: str) -> Any:
        def handler(req: Request) -> Response:
            singular, _, records, view = collections[kind]
            with st.lock:
                rec = records().get(req.params["id"])
                if rec is None:
                    raise not_found(kind, req.params["id"])
                return Response(200, {singular: trim(view(rec), req)})
        return handler

    # ------------------------------------------------------------------ security groups
    def overquota(name: str) -> None:
        if st.over_quota({name: 1}):
            raise ApiError(409, f"Quota exceeded for resources: ['{name}'].", kind="OverQuota")

    def create_sg(req: Request) -> Response:
        body = req.json().get("security_group")
        if not isinstance(body, dict):
            raise ApiError(400, "Resource body required", kind="HTTPBadRequest")
        extra = set(body) - {"name", "description", "stateful", "tenant_id", "project_id"}
        if extra:
            raise ApiError(400, f"Unrecognized attribute(s) '{', '.join(sorted(extra))}'", kind="HTTPBadRequest")
        name = body.get("name", "")
        if not isinstance(name, str) or len(name) > 255:
            raise ApiError(400, f"Invalid input for name. Reason: '{name}' is not a valid string.", kind="HTTPBadRequest")
        with st.lock:
            if name == "default":
                raise ApiError(409, "Default security group already exists.", kind="SecurityGroupDefaultAlreadyExists")
            overquota("security_group")
            if st.over_quota({"security_group_rule": 2}):
                raise ApiError(409, "Quota exceeded for resources: ['security_group_rule'].", kind="OverQuota")
            sg = st.add_security_group(name, str(body.get("description") or ""))
            sg["stateful"] = bool(body.get("stateful", True))
            return Response(201, {"security_group": sg_view(sg)})

    def update_sg(req: Request) -> Response:
        body = req.json().get("security_group")
        if not isinstance(body, dict) or set(body) - {"name", "description", "stateful"}:
            raise ApiError(400, "Invalid input for security_group", kind="HTTPBadRequest")
        with st.lock:
            sg = st.security_groups.get(req.params["id"])
            if sg is None:
                raise not_found("security-groups", req.params["id"])
            sg.update(body)
            sg["updated"], sg["revision_number"] = time.time(), sg["revision_number"] + 1
            return Response(200, {"security_group": sg_view(sg)})

    def delete_sg(req: Request) -> Response:
        sid = req.params["id"]
        with st.lock:
            sg = st.security_groups.get(sid)
            if sg is None:
                raise not_found("security-groups", sid)
            if sg["name"] == "default":
                raise ApiError(409, "Insufficient rights for removing default security group.",
                               kind="SecurityGroupCannotRemoveDefault")
            if any(sid in p["security_groups"] for p in st.ports.values()):
                raise ApiError(409, f"Security Group {sid} in use.", kind="SecurityGroupInUse")
            for rule in list(st.rules.values()):
                if sid in (rule["security_group_id"], rule["remote_group_id"]):
                    del st.rules[rule["id"]]
            del st.security_groups[sid]
        return Response(204)

    def create_rule(req: Request) -> Response:
        body = req.json().get("security_group_rule")
        if not isinstance(body, dict):
            raise ApiError(400, "Resource body required", kind="HTTPBadRequest")
        extra = set(body) - _RULE_KEYS
        if extra:
            raise ApiError(400, f"Unrecognized attribute(s) '{', '.join(sorted(extra))}'", kind="HTTPBadRequest")
        with st.lock:
            rule = _check_rule(st, body)
            sg = st.security_groups.get(rule["security_group_id"])
            if sg is None:
                raise not_found("security-groups", str(rule["security_group_id"]))
            if rule["remote_group_id"] and rule["remote_group_id"] not in st.security_groups:
                raise not_found("security-groups", str(rule["remote_group_id"]))
            for other in st.rules_of(sg["id"]):
                if _rule_key(other) == _rule_key(rule):
                    raise ApiError(409, f"Security group rule already exists. Rule id is {other['id']}.",
                                   kind="SecurityGroupRuleExists")
            overquota("security_group_rule")
            new = st.add_rule(sg["id"], **{k: v for k, v in rule.items() if k != "security_group_id"})
            sg["revision_number"] += 1
            return Response(201, {"security_group_rule": rule_view(new)})

    def delete_rule(req: Request) -> Response:
        with st.lock:
            rule = st.rules.pop(req.params["id"], None)
            if rule is None:
                raise not_found("security-group-rules", req.params["id"])
        return Response(204)

    # ------------------------------------------------------------------ quotas, discovery
    def quota(req: Request, detail: bool = False, defaults: bool = False) -> Response:
        from .state import DEFAULT_QUOTAS
        ours = req.params.get("project_id", st.project_id) == st.project_id and not defaults
        with st.lock:
            q = dict(st.config.quotas) if ours else dict(DEFAULT_QUOTAS)
            used = st.usage() if ours else {}
        body = {n: ({"limit": q[n], "used": used.get(n, 0), "reserved": 0} if detail else q[n]) for n in NEUTRON_QUOTAS}
        return Response(200, {"quota": body})

    def update_quota(req: Request) -> Response:
        body = req.json().get("quota")
        if not isinstance(body, dict) or any(k not in NEUTRON_QUOTAS or not isinstance(v, int) for k, v in body.items()):
            raise ApiError(400, f"Invalid input for quota: {body}", kind="HTTPBadRequest")
        if req.params["project_id"] != st.project_id:
            raise ApiError(400, f"Project {req.params['project_id']} is not a valid project.", kind="HTTPBadRequest")
        api.configure(quotas=body)
        return quota(req)

    def root(req: Request) -> Response:
        return Response(200, {"versions": [{"id": "v2.0", "status": "CURRENT",
                                            "links": [{"rel": "self", "href": f"{req.base_url}{N}/"}]}]})

    def resources(req: Request) -> Response:
        return Response(200, {"resources": [
            {"name": c["singular"], "collection": kind,
             "links": [{"rel": "self", "href": f"{req.base_url}{N}/{kind}"}]}
            for kind, c in ((k, {"singular": v[0]}) for k, v in collections.items())]})

    def extensions(req: Request) -> Response:
        return Response(200, {"extensions": [{"alias": a, "name": a, "description": a, "links": [],
                                              "updated": "2013-01-20T00:00:00-00:00"} for a in EXTENSIONS]})

    add = router.add
    add("GET", "/network", root, "neutron", auth=False)
    add("GET", N, resources, "neutron")
    add("GET", f"{N}/extensions", extensions, "neutron")
    for kind in collections:
        add("GET", f"{N}/{kind}", lister(kind), "neutron")
        add("GET", f"{N}/{kind}/{{id}}", getter(kind), "neutron")
    add("POST", f"{N}/security-groups", create_sg, "neutron")
    add("PUT", f"{N}/security-groups/{{id}}", update_sg, "neutron")
    add("DELETE", f"{N}/security-groups/{{id}}", delete_sg, "neutron")
    add("POST", f"{N}/security-group-rules", create_rule, "neutron")
    add("DELETE", f"{N}/security-group-rules/{{id}}", delete_rule, "neutron")
    add("GET", f"{N}/quotas", lambda req: Response(200, {"quotas": [{**quota(req).body["quota"],
                                                                      "project_id": st.project_id}]}), "neutron")
    add("GET", f"{N}/quotas/{{project_id}}", quota, "neutron")
    add("PUT", f"{N}/quotas/{{project_id}}", update_quota, "neutron")
    add("GET", f"{N}/quotas/{{project_id}}/details", lambda req: quota(req, detail=True), "neutron")
    add("GET", f"{N}/quotas/{{project_id}}/default", lambda req: quota(req, defaults=True), "neutron")


def _bad(message: str, kind: str = "HTTPBadRequest") -> ApiError:
    return ApiError(400, message, kind=kind)


def _check_rule(st: LabState, body: dict[str, Any]) -> dict[str, Any]:
    """Validate a rule as neutron does; return the normalised attributes."""
    if not body.get("security_group_id"):
        raise _bad("Invalid input for operation: 'security_group_id' is a required attribute.")
    direction = body.get("direction")
    if direction not in ("ingress", "egress"):
        raise _bad(f"Invalid input for direction. Reason: '{direction}' is not in ['ingress', 'egress'].")
    ethertype = body.get("ethertype", "IPv4")
    if ethertype not in ("IPv4", "IPv6"):
        raise _bad(f"Invalid input for ethertype. Reason: '{ethertype}' is not in ['IPv4', 'IPv6'].")
    protocol = body.get("protocol")
    if protocol is not None:
        protocol = str(protocol).lower()
        if protocol != "any" and protocol not in _PROTOCOLS and not (protocol.isdigit() and 0 <= int(protocol) <= 255):
            raise _bad(f"Security group rule protocol {protocol} not supported. Only protocol values "
                       f"[None, {', '.join(sorted(_PROTOCOLS))}] and integer representations [0 to 255] are supported.",
                       "SecurityGroupRuleInvalidProtocol")
    ports = []
    for key in ("port_range_min", "port_range_max"):
        value = body.get(key)
        try:
            ports.append(None if value is None else int(value))
        except (TypeError, ValueError):
            raise _bad(f"Invalid input for {key}. Reason: '{value}' is not an integer.") from None
    lo, hi = ports
    if (lo is not None or hi is not None) and protocol in (None, "any"):
        raise _bad("Must also specify protocol if port range is given.", "SecurityGroupProtocolRequiredWithPorts")
    if protocol in ("tcp", "udp", "6", "17", "sctp", "dccp", "udplite"):
        if lo is None and hi is not None or lo is not None and hi is None:
            lo = hi = lo if lo is not None else hi
        for p in (lo, hi):
            if p is not None and not 1 <= p <= 65535:
                raise _bad(f"Invalid value for port {p}.", "SecurityGroupInvalidPortValue")
        if lo is not None and hi is not None and lo > hi:
            raise _bad("For TCP/UDP protocols, port_range_min must be <= port_range_max",
                       "SecurityGroupInvalidPortRange")
    prefix, group = body.get("remote_ip_prefix"), body.get("remote_group_id")
    if prefix and group:
        raise _bad("Only remote_ip_prefix or remote_group_id may be provided.", "SecurityGroupRemoteGroupAndRemoteIpPrefix")
    if prefix:
        try:
            net = ipaddress.ip_network(str(prefix), strict=False)
        except ValueError:
            raise _bad(f"Invalid input for remote_ip_prefix. Reason: '{prefix}' is not a valid IP subnet.") from None
        if f"IPv{net.version}" != ethertype:
            raise _bad(f"Conflicting value ethertype {ethertype} for CIDR {prefix}", "SecurityGroupRuleParameterConflict")
    return {"security_group_id": body["security_group_id"], "direction": direction, "ethertype": ethertype,
            "protocol": protocol, "port_range_min": lo, "port_range_max": hi, "remote_ip_prefix": prefix or None,
            "remote_group_id": group or None, "remote_address_group_id": body.get("remote_address_group_id"),
            "description": body.get("description") or ""}


def _rule_key(rule: dict[str, Any]) -> tuple[Any, ...]:
    """What neutron compares to find a duplicate rule (0.0.0.0/0 and ::/0 equal no prefix)."""
    proto = rule["protocol"]
    proto = None if proto in (None, "any") else str(_PROTOCOLS.get(proto, proto))
    prefix = rule["remote_ip_prefix"]
    if prefix:
        net = ipaddress.ip_network(prefix, strict=False)
        prefix = None if net.prefixlen == 0 else str(net)
    return (rule["direction"], rule["ethertype"], proto, rule["port_range_min"], rule["port_range_max"], prefix,
            rule["remote_group_id"], rule.get("remote_address_group_id"))
