"""
The cluster model: the inventory, loaded and validated.

The inventory (``pillar/cluster/inventory.yaml``) is the one source of truth. This module
reads and validates it (naming every bad field); :mod:`rpicluster.views` derives what the
pillar, the runner, the salt-ssh roster, the bootstrap scripts and the lab need from the
validated inventory. Nothing else parses the inventory.

Plain Python (PyYAML only, imported when an inventory is read): the master's ext_pillar and
runner, the pillar top, the roster, the bootstrap scripts and the lab import it normally.
"""

import copy
import io
import ipaddress
import os
import re

try:  # Salt is optional: the lab and the validation script run without it
    from salt.exceptions import CommandExecutionError
except ImportError:  # pragma: no cover - exercised by the lab only

    class CommandExecutionError(Exception):
        """Stand-in for Salt's exception when Salt is not installed."""

ROLES = ("deployer", "lanservices", "compute")

# name of each key -> (required, default). A default of None means "required".
TOP_KEYS = {"domain": True, "network": True, "nodes": True}
NETWORK_KEYS = {
    "subnet": (True, None),
    "gateway": (True, None),
    "vip": (True, None),
    "dhcp_pool": (True, None),
    "ntp_upstream": (False, []),
    "dns_forwarders": (False, []),
    "router": (False, None),
}
POOL_KEYS = {"start": (True, None), "end": (True, None)}
# the bootstrap router: serves DHCP (the inventory's reservations) and DNS until the
# lanservices pair takes over; kinds the handover knows how to stop
ROUTER_KEYS = {"ip": (True, None), "kind": (True, None)}
ROUTER_KINDS = ("openwrt", "dnsmasq")  # cluster.router_handover knows how to hand over from each
# rebuild: manual (salt-run cluster.rebuild NODE) or auto (a DHCP lease for the node's MAC while
# its minion is not connected starts the same rebuild)
NODE_KEYS = {"roles": (True, None), "ip": (True, None), "mac": (True, None), "model": (False, ""),
             "rebuild": (False, "manual")}
REBUILD_MODES = ("manual", "auto")

# Names the zone gives the deployer's services (CNAMEs to the deployer).
DEPLOYER_SERVICE_NAMES = ("salt", "pkgcache", "status")
VIP_NAME = "ns"
# names no node may take: the zone's own names, and localhost (every resolver answers it itself)
RESERVED_NAMES = {VIP_NAME: "the VIP's name", "localhost": "the loopback's name",
                  **{alias: "a service of the deployer" for alias in DEPLOYER_SERVICE_NAMES}}

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class InventoryError(CommandExecutionError, ValueError):
    """The inventory is invalid; ``problems`` holds one line per problem, naming the field."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


# --------------------------------------------------------------------------------------
# Loading and validation (pure functions, no Salt needed)
# --------------------------------------------------------------------------------------


def _yaml_loader():
    """A SafeLoader that refuses duplicate mapping keys (YAML would keep the last one); libyaml's
    parser when PyYAML has it (four times faster: most of a large inventory's validation)."""
    import yaml  # pylint: disable=import-outside-toplevel

    class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # pylint: disable=too-many-ancestors
        pass

    def construct_mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise InventoryError(
                    [f"line {key_node.start_mark.line + 1}: duplicate key {key!r}"]
                )
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping
    )
    return StrictLoader


# path -> (text, normalised inventory) of the last valid read: the pillar top, the cluster
# pillar and the ext_pillar of one render (and the renders after it) read the same file, and
# YAML parsing plus validation is most of a render's cost; keyed by the text, never stale
_VALID = {}


def load_inventory(path):
    """
    Read and validate an inventory file; return ``{"cluster": <normalised inventory>}`` (a
    copy: the caller may change it).

    Raises :class:`InventoryError` naming every bad field. The file is read on every call;
    text that was valid before is not parsed and validated again.

    Example:

    .. code-block:: python

        from rpicluster import model
        inventory = model.load_inventory("pillar/cluster/inventory.yaml")["cluster"]
    """
    import yaml  # pylint: disable=import-outside-toplevel

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise InventoryError([f"{path}: cannot read: {exc.strerror}"]) from exc
    known = _VALID.get(path)
    if known is None or known[0] != text:
        stream = io.StringIO(text)
        stream.name = path  # YAML's error marks name the file, as when it reads the file itself
        try:
            data = yaml.load(stream, Loader=_yaml_loader())  # nosec: SafeLoader subclass
        except yaml.YAMLError as exc:
            raise InventoryError([f"{path}: not valid YAML: {exc}"]) from exc
        known = _VALID[path] = (text, check(data))
    return {"cluster": copy.deepcopy(known[1])}


def inventory_path(opts):
    """
    The inventory a master (or masterless minion) with config ``opts`` reads:
    ``cluster_inventory`` (bootstrap/deployer writes it), else ``cluster/inventory.yaml`` of
    the first ``pillar_roots:base`` directory that has one.
    """
    if opts.get("cluster_inventory"):
        return opts["cluster_inventory"]
    roots = opts.get("pillar_roots", {}).get("base", [])
    for root in roots:
        path = os.path.join(root, "cluster", "inventory.yaml")
        if os.path.isfile(path):
            return path
    raise InventoryError([f"no inventory: set cluster_inventory in the master config, or put "
                          f"cluster/inventory.yaml in a pillar root (pillar_roots:base: {roots})"])


def check(data):
    """
    Validate an inventory (the mapping under the top-level ``cluster`` key, or the whole
    document holding it) and return it normalised: defaults filled in, MACs lower case.

    Raises :class:`InventoryError` listing every problem.
    """
    if isinstance(data, dict) and set(data) == {"cluster"}:
        data = data["cluster"]
    problems = []
    result = _check(data, problems)
    if problems:
        raise InventoryError(problems)
    return result


def validate(data):
    """
    Return the list of problems of an inventory (empty when it is valid).
    """
    try:
        check(data)
    except InventoryError as exc:
        return exc.problems
    return []


def _keys(where, value, spec, problems):
    """Check a mapping's keys against ``spec``; return it with defaults, or None."""
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a mapping, got {_show(value)}")
        return None
    out = {}
    for key in value:
        if key not in spec:
            problems.append(f"{where}.{key}: unknown key (allowed: {', '.join(spec)})")
    for key, (required, default) in spec.items():
        if key in value:
            out[key] = value[key]
        elif required:
            problems.append(f"{where}.{key}: required key is missing")
        else:
            out[key] = list(default) if isinstance(default, list) else default
    return out


def _show(value):
    return repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"


def _ip(where, value, problems):
    try:
        return ipaddress.IPv4Address(str(value)) if isinstance(value, str) else _bad()
    except ValueError:
        problems.append(f"{where}: {_show(value)} is not an IPv4 address")
        return None


def _bad():
    raise ValueError


def dns_name_ok(name):
    """True when ``name`` is a valid DNS name (lower-case labels of letters, digits, hyphens)."""
    if not isinstance(name, str) or not name or len(name.rstrip(".")) > 253:
        return False
    return all(_LABEL.match(label) for label in name.rstrip(".").split("."))


def _check(data, problems):  # pylint: disable=too-many-locals,too-many-branches,too-many-statements
    top = _keys("cluster", data, {k: (True, None) for k in TOP_KEYS}, problems)
    if top is None:
        return None
    if "domain" in top and not dns_name_ok(top["domain"]):
        problems.append(f"cluster.domain: {_show(top['domain'])} is not a valid DNS name")

    # network plan
    net = _keys("cluster.network", top.get("network"), NETWORK_KEYS, problems) if "network" in top else None
    subnet = gateway = vip = pool = None
    forwarders = []  # (field, address) of each valid DNS forwarder, checked against the nodes below
    if net is not None:
        if "subnet" in net:
            try:
                subnet = ipaddress.IPv4Network(str(net["subnet"]), strict=True)
                if not isinstance(net["subnet"], str):
                    raise ValueError
            except ValueError:
                problems.append(
                    f"cluster.network.subnet: {_show(net['subnet'])} is not an IPv4 network (a.b.c.d/n)"
                )
        if "gateway" in net:
            gateway = _ip("cluster.network.gateway", net["gateway"], problems)
            if gateway and subnet:
                _host_in("cluster.network.gateway", gateway, subnet, problems)
        if "dhcp_pool" in net:
            pool_in = _keys("cluster.network.dhcp_pool", net["dhcp_pool"], POOL_KEYS, problems)
            if pool_in is not None:
                start = _ip("cluster.network.dhcp_pool.start", pool_in.get("start"), problems) if "start" in pool_in else None
                end = _ip("cluster.network.dhcp_pool.end", pool_in.get("end"), problems) if "end" in pool_in else None
                if start and end:
                    if start > end:
                        problems.append(f"cluster.network.dhcp_pool: start {start} is after end {end}")
                    else:
                        pool = (start, end)
                for key, addr in (("start", start), ("end", end)):
                    if addr and subnet:
                        _host_in(f"cluster.network.dhcp_pool.{key}", addr, subnet, problems)
                if pool and gateway and pool[0] <= gateway <= pool[1]:
                    problems.append(f"cluster.network.dhcp_pool: contains the gateway {gateway}")
        if "vip" in net:
            vip = _ip("cluster.network.vip", net["vip"], problems)
            if vip:
                if subnet:
                    _host_in("cluster.network.vip", vip, subnet, problems)
                if vip == gateway:
                    problems.append(f"cluster.network.vip: {vip} is the gateway address")
                if pool and pool[0] <= vip <= pool[1]:
                    problems.append(f"cluster.network.vip: {vip} is inside the DHCP pool")
        for key, kind in (("dns_forwarders", "ip"), ("ntp_upstream", "name")):
            values = net.get(key)
            if not isinstance(values, list):
                problems.append(f"cluster.network.{key}: must be a list, got {_show(values)}")
                continue
            for i, value in enumerate(values):
                where = f"cluster.network.{key}[{i}]"
                if kind == "ip":
                    forwarder = _ip(where, value, problems)
                    if forwarder:
                        forwarders.append((where, forwarder))
                elif not (dns_name_ok(value) or _is_ip(value)):
                    problems.append(f"{where}: {_show(value)} is neither a DNS name nor an IPv4 address")
        if net.get("router") is not None:
            router = _keys("cluster.network.router", net["router"], ROUTER_KEYS, problems)
            if router is not None:
                address = _ip("cluster.network.router.ip", router["ip"], problems) if "ip" in router else None
                if address and gateway and address != gateway:
                    problems.append(f"cluster.network.router.ip: {address} is not the gateway {gateway} "
                                    "(the router is the LAN's gateway)")
                if "kind" in router and router["kind"] not in ROUTER_KINDS:
                    problems.append(f"cluster.network.router.kind: {_show(router['kind'])} is not one of "
                                    f"{', '.join(ROUTER_KINDS)}")
                if address:
                    router["ip"] = str(address)
                net["router"] = router
        net = {
            **net,
            "dhcp_pool": {"start": str(pool[0]), "end": str(pool[1])} if pool else net.get("dhcp_pool"),
        }

    # nodes
    nodes_in = top.get("nodes")
    nodes = {}
    if "nodes" in top:
        if not isinstance(nodes_in, dict) or not nodes_in:
            problems.append(f"cluster.nodes: must be a non-empty mapping, got {_show(nodes_in)}")
            nodes_in = {}
    else:
        nodes_in = {}
    seen_names, seen_ips, seen_macs = {}, {}, {}
    for name, spec in nodes_in.items():
        where = f"cluster.nodes.{name}"
        if not isinstance(name, str) or not _LABEL.match(name):
            problems.append(f"{where}: {_show(name)} is not a valid hostname (a-z, 0-9, '-', 1-63 chars)")
        elif name.lower() in RESERVED_NAMES:
            problems.append(f"{where}: the name {name!r} is reserved ({RESERVED_NAMES[name.lower()]} in the zone)")
        elif name.lower() in seen_names:
            problems.append(f"{where}: duplicate hostname (also {seen_names[name.lower()]})")
        else:
            seen_names[name.lower()] = name
        node = _keys(where, spec, NODE_KEYS, problems)
        if node is None:
            continue
        if "roles" in node:
            roles = node["roles"]
            if not isinstance(roles, list) or not roles:
                problems.append(f"{where}.roles: must be a non-empty list, got {_show(roles)}")
            else:
                for role in roles:
                    if role not in ROLES:
                        problems.append(f"{where}.roles: unknown role {_show(role)} (known: {', '.join(ROLES)})")
                if len(set(map(str, roles))) != len(roles):
                    problems.append(f"{where}.roles: a role is listed twice")
        if "ip" in node:
            ip = _ip(f"{where}.ip", node["ip"], problems)
            if ip:
                if subnet:
                    _host_in(f"{where}.ip", ip, subnet, problems)
                if ip == gateway:
                    problems.append(f"{where}.ip: {ip} is the gateway address")
                if ip == vip:
                    problems.append(f"{where}.ip: {ip} is the VIP (cluster.network.vip)")
                if pool and pool[0] <= ip <= pool[1]:
                    problems.append(f"{where}.ip: {ip} is inside the DHCP pool")
                if ip in seen_ips:
                    problems.append(f"{where}.ip: {ip} is also the address of {seen_ips[ip]}")
                seen_ips.setdefault(ip, name)
                node["ip"] = str(ip)
        if "mac" in node:
            mac = node["mac"]
            norm = mac.lower().replace("-", ":") if isinstance(mac, str) else None
            if not norm or not _MAC.match(norm):
                problems.append(f"{where}.mac: {_show(mac)} is not a MAC address (aa:bb:cc:dd:ee:ff)")
            else:
                if int(norm[:2], 16) & 1:
                    problems.append(f"{where}.mac: {mac} is a multicast address")
                if norm in seen_macs:
                    problems.append(f"{where}.mac: {mac} is also the MAC of {seen_macs[norm]}")
                seen_macs.setdefault(norm, name)
                node["mac"] = norm
        if node.get("rebuild") not in REBUILD_MODES:
            problems.append(f"{where}.rebuild: {_show(node.get('rebuild'))} is not one of {', '.join(REBUILD_MODES)}")
        if not isinstance(node.get("model"), str):
            problems.append(f"{where}.model: must be a string, got {_show(node.get('model'))}")
        nodes[name] = node

    # a forwarder that is the cluster's own DNS (the VIP, a lanservices node) sends named's
    # recursive queries back to itself
    own_dns = {vip: "the VIP"} if vip else {}
    own_dns.update({ipaddress.IPv4Address(n["ip"]): f"lanservices node {name}" for name, n in nodes.items()
                    if "lanservices" in (n.get("roles") or []) and _is_ip(n.get("ip"))})
    for where, forwarder in forwarders:
        if forwarder in own_dns:
            problems.append(f"{where}: {forwarder} is {own_dns[forwarder]}: named would forward to itself")

    # role counts
    if nodes_in:
        wanted = {"deployer": (1, 1), "lanservices": (2, 2), "compute": (1, None)}
        for role, (low, high) in wanted.items():
            have = sorted(n for n, s in nodes.items() if role in (s.get("roles") or []))
            if len(have) < low or (high is not None and len(have) > high):
                need = f"exactly {low}" if low == high else f"at least {low}"
                problems.append(
                    f"cluster.nodes: need {need} {role} node{'s' if low > 1 else ''}, "
                    f"found {len(have)}{': ' + ', '.join(have) if have else ''}"
                )
    return {"domain": top.get("domain"), "network": net, "nodes": nodes}


def _host_in(where, addr, subnet, problems):
    if addr not in subnet:
        problems.append(f"{where}: {addr} is outside the subnet {subnet}")
    elif subnet.prefixlen < 31 and addr in (subnet.network_address, subnet.broadcast_address):
        kind = "network" if addr == subnet.network_address else "broadcast"
        problems.append(f"{where}: {addr} is the {kind} address of {subnet}")


def _is_ip(value):
    try:
        ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return False
