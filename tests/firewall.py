"""The firewall's ruleset as Salt renders it: salt/firewall/map.jinja (the declarations of the
node's services, its zones resolved from the inventory) into files/cluster.nft.jinja, through
Salt's own Jinja renderer and loaders (no daemon, nothing applied)."""

import ipaddress
import itertools
import json
import re

from saltfactories.utils.functional import Loaders

from tests.conftest import INVENTORY, PILLAR_TREE, STATE_TREE, cluster_pillar_opts

_SEQ = itertools.count()
SEPARATOR = "#---- firewall map above, ruleset below ----#"
TEMPLATE = (
    "{%- from 'firewall/map.jinja' import firewall with context %}{{ firewall | json }}" + SEPARATOR
    + "{% include 'firewall/files/cluster.nft.jinja' %}"
)


def loaders(salt_factories, name, inventory=None, **opts):
    """Loaders of minion ``name`` of the project inventory (or ``inventory``), with the real
    the role table: every_node and the services of the roles (what a node applies); ``opts`` add to the minion config."""
    overrides = {
        "file_client": "local",
        "file_roots": {"base": [str(STATE_TREE)]},
        "pillar_roots": {"base": [str(PILLAR_TREE)]},
        **cluster_pillar_opts(inventory or INVENTORY),
        "cluster_secrets_dir": "/nonexistent/cluster-secrets",
        **opts,
    }
    factory = salt_factories.salt_minion_daemon(f"{name}", overrides=overrides)
    return Loaders(factory.config.copy(), loaded_base_name=f"{__name__}.{name}{next(_SEQ)}.loaded")


def render_file(node_loaders, template):
    """One of salt/firewall/files/ (``template``) as the state renders it for this node."""
    string = ("{%- from 'firewall/map.jinja' import firewall with context %}"
              f"{{% include 'firewall/files/{template}' %}}")
    return node_loaders.modules.slsutil.renderer(string=string, default_renderer="jinja").lstrip("\n")


def render(node_loaders):
    """``(ruleset text, firewall map)`` as the state renders them for this node."""
    out = node_loaders.modules.slsutil.renderer(string=TEMPLATE, default_renderer="jinja")
    fwmap, _, ruleset = out.partition(SEPARATOR)
    return ruleset.lstrip("\n"), json.loads(fwmap)


_SADDR = re.compile(r"\bip saddr (\{[^}]*\}|\S+)")
_DPORT = re.compile(r"\b(tcp|udp) dport (\{[^}]*\}|\S+)")
_SPORT = re.compile(r"\b(tcp|udp) sport (\{[^}]*\}|\S+)")
EPHEMERAL = 50000  # the source port of a client's new connection
_L4 = re.compile(r"\bmeta l4proto (\S+)")
_IPPROTO = re.compile(r"\bip protocol (\S+)")
_BASE = ("ct state", "iif ", "icmp type", "icmpv6 type", "counter name", "type filter")
PROTOCOLS = {"vrrp": 112, "112": 112}


def _items(text):
    return [i.strip() for i in text.strip("{} ").split(",") if i.strip()]


def accept_rules(ruleset):
    """The service rules of the input chain that accept: ``[(line, saddr, proto, ports, sports)]``
    with saddr a list of networks (None: any source), proto ``tcp``/``udp``/an int/None (any) and
    ports and sports lists of (low, high) destination and source port ranges (None: any port)."""
    rules = []
    for raw in ruleset.splitlines():
        line = raw.strip()
        if line.startswith("#") or not re.search(r"\baccept\b", line) or line.startswith(_BASE):
            continue
        saddr = _SADDR.search(line)
        nets = [ipaddress.ip_network(i, strict=False) for i in _items(saddr.group(1))] if saddr else None
        proto, ports, sports = None, None, None
        if dport := _DPORT.search(line):
            proto, ports = dport.group(1), _ranges(dport.group(2))
        if sport := _SPORT.search(line):
            proto, sports = sport.group(1), _ranges(sport.group(2))
        if proto is None and (l4 := _L4.search(line)):
            proto = l4.group(1)
        elif proto is None and (ipproto := _IPPROTO.search(line)):
            proto = PROTOCOLS.get(ipproto.group(1), ipproto.group(1))
        rules.append((line, nets, proto, ports, sports))
    return rules


def _ranges(text):
    out = []
    for item in _items(text):
        low, _, high = item.partition("-")
        out.append((int(low), int(high or low)))
    return out


def accepts(ruleset, src, proto, port=None, sport=EPHEMERAL):
    """The accept rules of ``ruleset`` (text) that let a new packet from ``src`` in (IPv4 only,
    established traffic and the loopback aside): ``proto`` tcp/udp with ``port`` from ``sport``
    (a client's ephemeral port unless said), or an IP protocol number. An empty list: the drop
    rule gets it."""
    addr = ipaddress.ip_address(src)
    hits = []
    for line, nets, rproto, ports, sports in accept_rules(ruleset):
        if nets is not None and not any(addr in net for net in nets):
            continue
        if rproto is not None and rproto != proto:
            continue
        if ports is not None and not any(low <= port <= high for low, high in ports):
            continue
        if sports is not None and not any(low <= sport <= high for low, high in sports):
            continue
        hits.append(line)
    return hits
