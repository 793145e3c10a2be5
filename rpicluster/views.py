"""
Views derived from the validated inventory (:func:`rpicluster.model.load_inventory`).

Every function takes the inventory explicitly: the mapping under ``cluster``, or the whole
``{"cluster": ...}`` document. :func:`node_view` is what the ext_pillar hands a minion as its
``node`` pillar: the state tree reads it in the services' ``map.jinja`` files.

Ordering rule: nodes are ordered by IP address, never by mapping order (which pillar
serialisation does not promise to keep). The first lanservices node is the primary, the
first compute node is the k3s server.
"""

import ipaddress

from rpicluster.model import DEPLOYER_SERVICE_NAMES, ROLES, VIP_NAME, CommandExecutionError


def _inv(inventory):
    if isinstance(inventory, dict) and set(inventory) == {"cluster"}:
        return inventory["cluster"]
    return inventory


def _by_ip(nodes_):
    return sorted(nodes_, key=lambda n: ipaddress.IPv4Address(nodes_[n]["ip"]))


def nodes(inventory, role=None):
    """Names of the nodes (optionally only those with ``role``), ordered by IP address."""
    inv = _inv(inventory)
    if role is not None and role not in ROLES:
        raise CommandExecutionError(f"unknown role {role!r} (known: {', '.join(ROLES)})")
    return [n for n in _by_ip(inv["nodes"]) if role is None or role in inv["nodes"][n]["roles"]]


def node(inventory, name):
    """One node: ``name``, ``fqdn``, ``ip``, ``mac``, ``roles``, ``model``, ``rebuild``."""
    inv = _inv(inventory)
    if name not in inv["nodes"]:
        raise CommandExecutionError(f"{name!r} is not a node of the inventory")
    return {"name": name, "fqdn": f"{name}.{inv['domain']}", **inv["nodes"][name]}


def roles(inventory, name):
    """The roles of node ``name`` (empty when it is not in the inventory)."""
    return list(_inv(inventory)["nodes"].get(name, {}).get("roles", []))


def lanservices(inventory):
    """The lanservices pair: ``{"primary": name, "secondary": name}``."""
    primary, secondary = nodes(inventory, "lanservices")
    return {"primary": primary, "secondary": secondary}


def deployer(inventory):
    """The name of the deployer node (the salt-master)."""
    return nodes(inventory, "deployer")[0]


def k3s_server(inventory):
    """The compute node that runs the k3s server (the first compute node by IP)."""
    return nodes(inventory, "compute")[0]


def hosts_entries(inventory):
    """``/etc/hosts`` lines for every node: ``[{"ip", "names": [fqdn, short]}]``."""
    inv = _inv(inventory)
    return [{"ip": inv["nodes"][n]["ip"], "names": [f"{n}.{inv['domain']}", n]} for n in nodes(inv)]


def dns_records(inventory):
    """
    Forward zone records relative to the cluster domain: an A record per node, the VIP
    as ``ns``, and CNAMEs for the deployer's services. Ordered, so the zone is stable.
    """
    inv = _inv(inventory)
    records = [{"name": n, "type": "A", "value": inv["nodes"][n]["ip"]} for n in nodes(inv)]
    records.append({"name": VIP_NAME, "type": "A", "value": inv["network"]["vip"]})
    dep = deployer(inv)
    records += [{"name": alias, "type": "CNAME", "value": dep} for alias in DEPLOYER_SERVICE_NAMES]
    return records


def reverse_zone(inventory):
    """
    The name of the reverse zone covering the subnet (octet-aligned, e.g.
    ``10.168.192.in-addr.arpa`` for a /24).
    """
    subnet = ipaddress.IPv4Network(_inv(inventory)["network"]["subnet"])
    octets = max(1, subnet.prefixlen // 8)
    parts = str(subnet.network_address).split(".")[:octets]
    return ".".join(reversed(parts)) + ".in-addr.arpa"


def reverse_records(inventory):
    """
    PTR records of the reverse zone: owner names relative to :func:`reverse_zone`,
    values fully qualified (nodes and the VIP).
    """
    inv = _inv(inventory)
    octets = max(1, ipaddress.IPv4Network(inv["network"]["subnet"]).prefixlen // 8)
    pairs = [(inv["nodes"][n]["ip"], f"{n}.{inv['domain']}.") for n in nodes(inv)]
    pairs.append((inv["network"]["vip"], f"{VIP_NAME}.{inv['domain']}."))
    out = []
    for ip, fqdn in sorted(pairs, key=lambda p: ipaddress.IPv4Address(p[0])):
        host = ".".join(reversed(ip.split(".")[octets:]))
        out.append({"name": host, "type": "PTR", "value": fqdn})
    return out


def dhcp_reservations(inventory):
    """A fixed address per node, by MAC: ``[{"name", "mac", "ip"}]`` ordered by IP."""
    inv = _inv(inventory)
    return [{"name": n, "mac": inv["nodes"][n]["mac"], "ip": inv["nodes"][n]["ip"]} for n in nodes(inv)]


def roster(inventory, **entry):
    """
    salt-ssh roster entries for every node: ``{name: {"host": ip, **entry}}``.
    ``entry`` holds the connection options shared by all nodes (user, priv, sudo, ...).
    """
    inv = _inv(inventory)
    return {n: {"host": inv["nodes"][n]["ip"], **entry} for n in nodes(inv)}


def _brief(inv, name):
    return {"name": name, "fqdn": f"{name}.{inv['domain']}", "ip": inv["nodes"][name]["ip"]}


def node_view(inventory, name):
    """
    What node ``name`` knows of itself and of the cluster (its ``node`` pillar): the node
    (:func:`node`), plus

    - ``pair_role``: ``primary``, ``secondary`` (of the lanservices pair) or ``none``;
    - ``peer``: the other one of the pair (``{name, fqdn, ip}``), None outside the pair;
    - ``pair``: ``{primary, secondary}``, ``deployer``, ``k3s_server``: ``{name, fqdn, ip}``;
    - ``compute``: the compute nodes by IP (``{name, fqdn, ip}``: distcc, MPI, firewall);
    - ``hosts``: every node by IP (:func:`node`: /etc/hosts, firewall, network boot);
    - on a lanservices node, what it serves: ``dns:zones`` (forward, then reverse: ``{name,
      records}``) and ``dhcp:reservations``.
    """
    inv = _inv(inventory)
    me = node(inv, name)
    pair = lanservices(inv)
    pair_role = next((role for role, member in pair.items() if member == name), "none")
    view = {
        **me,
        "pair_role": pair_role,
        "peer": None,
        "pair": {role: _brief(inv, member) for role, member in pair.items()},
        "deployer": _brief(inv, deployer(inv)),
        "k3s_server": _brief(inv, k3s_server(inv)),
        "compute": [_brief(inv, n) for n in nodes(inv, "compute")],
        "hosts": [node(inv, n) for n in nodes(inv)],
    }
    if pair_role != "none":
        view["peer"] = dict(view["pair"]["secondary" if pair_role == "primary" else "primary"])
        view["dns"] = {"zones": [{"name": inv["domain"], "records": dns_records(inv)},
                                 {"name": reverse_zone(inv), "records": reverse_records(inv)}]}
        view["dhcp"] = {"reservations": dhcp_reservations(inv)}
    return view
