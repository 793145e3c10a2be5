"""The lab bridge and the nodes' host-side links (``vb-NODE``, made by nspawn --network-bridge).

The bridge carries the host's address (the inventory gateway) and nothing else: no forwarding,
no NAT, no uplink. Nodes get no default route, so their traffic cannot leave the bridge.
"""

import ipaddress
import json
import pathlib

from . import BRIDGE, LabError
from .host import log, run


def links():
    """Interface name -> `ip -j link` record."""
    out = run(["ip", "-j", "link", "show"], what="ip link").stdout
    return {link["ifname"]: link for link in json.loads(out or "[]")}


def host_link(node):
    name = f"vb-{node}"
    if len(name) > 15:
        raise LabError(
            f"node name {node!r} is too long for its host-side link {name!r} (12 characters at most)"
        )
    return name


def bridge_mac(inv):
    """The bridge's own MAC, locally administered, from the gateway address: 02:00 + its 4 bytes.

    Set, not left to Linux: a bridge without one takes the lowest MAC of its ports and changes it
    when that port goes away. On the lab that was alpha's: a power loss of alpha changed the
    host's MAC, every node's ARP entry for the host went stale, and DNS answers on the VIP from
    beta went nowhere for the 5 s until the nodes probed again. A LAN client's MAC does not
    change when a Pi dies."""
    gateway = ipaddress.IPv4Address(inv["network"]["gateway"]).packed
    return "02:00:" + ":".join(f"{byte:02x}" for byte in gateway)


def bridge_up(inv):
    """Create the bridge with the gateway address and its own MAC (idempotent)."""
    net = ipaddress.IPv4Network(inv["network"]["subnet"])
    addr = f"{inv['network']['gateway']}/{net.prefixlen}"
    mac = bridge_mac(inv)
    have_links = links()
    if BRIDGE not in have_links:
        log(f"creating bridge {BRIDGE} {addr} {mac}")
        run(
            ["ip", "link", "add", BRIDGE, "address", mac, "type", "bridge", "stp_state", "0", "forward_delay", "0"],
            what=f"creating bridge {BRIDGE}",
        )
    elif have_links[BRIDGE].get("address") != mac:
        run(["ip", "link", "set", BRIDGE, "address", mac], what=f"setting the MAC of {BRIDGE}")
    ipv6 = pathlib.Path(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6")
    if ipv6.exists():
        ipv6.write_text("1\n", encoding="ascii")  # IPv4 only: no link-local chatter
    have = run(["ip", "-j", "addr", "show", "dev", BRIDGE]).stdout
    addrs = [
        f"{a['local']}/{a['prefixlen']}"
        for i in json.loads(have)
        for a in i.get("addr_info", [])
        if a.get("family") == "inet"
    ]
    if addr not in addrs:
        run(["ip", "addr", "add", addr, "dev", BRIDGE], what=f"adding {addr} to {BRIDGE}")
    run(["ip", "link", "set", BRIDGE, "up"], what=f"bringing {BRIDGE} up")
    forwarding = pathlib.Path("/proc/sys/net/ipv4/ip_forward").read_text(encoding="ascii").strip()
    if forwarding != "0":
        log("warning: net.ipv4.ip_forward is on for this host; the nodes still have no default route")


def bridge_down():
    if BRIDGE in links():
        run(["ip", "link", "del", BRIDGE], what=f"removing bridge {BRIDGE}")


def set_link(node, up):
    name = host_link(node)
    if name not in links():
        raise LabError(f"node {node} has no link {name}: is it running? (python3 -m lab up {node})")
    run(["ip", "link", "set", name, "up" if up else "down"], what=f"ip link set {name}")


def link_state(node):
    """'up', 'down' (unplugged) or None (no link: node not running)."""
    link = links().get(host_link(node))
    if link is None:
        return None
    return "up" if "UP" in link.get("flags", []) else "down"


def remove_link(node):
    name = host_link(node)
    if name in links():
        run(["ip", "link", "del", name], check=False)
