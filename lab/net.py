"""The lab bridge and the nodes' host-side links (``vb-NODE``, made by nspawn --network-bridge).

The bridge carries the host's address (the last address of the subnet: the package source is
served there) and nothing else: no forwarding, no NAT, no uplink. The gateway address belongs
to the router stand-in (lab/router.py), which has no uplink either, so the nodes' traffic
cannot leave the bridge.
"""

import ipaddress
import json
import pathlib

from . import BRIDGE, MACHINE_PREFIX, LabError
from .host import log, run


def links():
    """Interface name -> `ip -j link` record."""
    out = run(["ip", "-j", "link", "show"], what="ip link").stdout
    return {link["ifname"]: link for link in json.loads(out or "[]")}


def host_link(node):
    """The host side of the node's link: systemd-nspawn names it vb-MACHINE."""
    name = f"vb-{MACHINE_PREFIX}{node}"
    if len(name) > 15:
        raise LabError(
            f"node name {node!r} is too long for its host-side link {name!r} "
            f"({12 - len(MACHINE_PREFIX)} characters at most)"
        )
    return name


def host_address(inv):
    """The host's address on the bridge: the subnet's last host address (the gateway is the
    router's); no node, the VIP or the DHCP pool may use it."""
    net = ipaddress.IPv4Network(inv["network"]["subnet"])
    address = net.broadcast_address - 1
    used = {n["ip"] for n in inv["nodes"].values()} | {inv["network"]["vip"], inv["network"]["gateway"]}
    pool = inv["network"].get("dhcp_pool") or {}
    in_pool = pool and ipaddress.IPv4Address(pool["start"]) <= address <= ipaddress.IPv4Address(pool["end"])
    if str(address) in used or in_pool:
        raise LabError(f"the lab host takes {address} (the subnet's last address) on the bridge: "
                       "keep it out of the inventory's nodes, VIP and DHCP pool")
    return str(address)


def lab_mac(ip):
    """A locally administered MAC from an IPv4 address: 02:00 + its 4 bytes."""
    return "02:00:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(ip).packed)


def bridge_mac(inv):
    """The bridge's own MAC, locally administered, from the host's address: 02:00 + its 4 bytes.

    Set, not left to Linux: a bridge without one takes the lowest MAC of its ports and changes it
    when that port goes away. On the lab that was alpha's: a power loss of alpha changed the
    host's MAC, every node's ARP entry for the host went stale, and DNS answers on the VIP from
    beta went nowhere for the 5 s until the nodes probed again. A LAN client's MAC does not
    change when a Pi dies."""
    return lab_mac(host_address(inv))


def bridge_up(inv):
    """Create the bridge with the host's address and its own MAC (idempotent)."""
    net = ipaddress.IPv4Network(inv["network"]["subnet"])
    addr = f"{host_address(inv)}/{net.prefixlen}"
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
    for old in addrs:  # an older lab held the gateway address here: it is the router's now
        if old != addr:
            run(["ip", "addr", "del", old, "dev", BRIDGE], what=f"removing {old} from {BRIDGE}")
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
