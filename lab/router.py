"""The router stand-in: what the original's OpenWRT router did while the cluster was bootstrapped.

A lab node at the inventory's gateway address (``network.router.ip``), not a cluster node. It runs
Debian's dnsmasq, the DHCP and DNS server OpenWRT runs: DHCP with the inventory's reservations
(MAC -> address) and the pool, DNS for the cluster names, until ``orch.cluster`` hands DHCP over
to the lanservices pair (``cluster.router_handover``: over SSH as root with the deployer's key,
``no-dhcp-interface``, which is what OpenWRT's ``dhcp.lan.ignore=1`` becomes). It has no uplink and
does not forward, so the nodes' default route ends here.
"""

import ipaddress

from . import LabError, cgroup, net
from .host import log
from .node import Node

NAME = "router"
DNSMASQ_CONF = "etc/dnsmasq.d/lab-router.conf"
SSHD_CONF = "etc/ssh/sshd_config.d/lab-router.conf"
AUTHORIZED_KEYS = "root/.ssh/authorized_keys"
LEASE_TIME = "1h"


def router(inv):
    """The router stand-in of the lab inventory; LabError when it has none the lab can stand in for."""
    spec = inv["network"].get("router")
    if not spec:
        raise LabError(
            "the lab inventory has no network.router: vanilla nodes ask DHCP, and the router stand-in "
            "answers until the lanservices pair takes over (network: router: {ip: GATEWAY, kind: dnsmasq})"
        )
    if spec.get("kind") != "dnsmasq":
        raise LabError(
            f"the lab's router stand-in is a Linux box with dnsmasq: network.router.kind must be dnsmasq "
            f"in the lab inventory, not {spec.get('kind')!r}"
        )
    if NAME in inv["nodes"]:
        raise LabError(f"the lab names its router stand-in {NAME!r}: rename the inventory node {NAME!r}")
    prefix = ipaddress.IPv4Network(inv["network"]["subnet"]).prefixlen
    return Router(NAME, {"ip": spec["ip"], "mac": net.lab_mac(spec["ip"]), "prefixlen": prefix, "roles": []})


def dnsmasq_conf(inv):
    """dnsmasq's configuration from the inventory: reservations, pool, names."""
    net_ = inv["network"]
    subnet = ipaddress.IPv4Network(net_["subnet"])
    pool = net_["dhcp_pool"]
    lines = [
        "# written by the lab from its inventory: the stand-in for the cluster's OpenWRT router",
        "interface=host0",
        "bind-interfaces",
        "no-resolv",  # no upstream: the lab's traffic stays on its bridge
        f"domain={inv['domain']}",
        f"local=/{inv['domain']}/",
        "expand-hosts",  # /etc/hosts (the lab writes every node in it) answers for the cluster names
        f"dhcp-range={pool['start']},{pool['end']},{subnet.netmask},{LEASE_TIME}",
        f"dhcp-option=option:router,{net_['gateway']}",
        f"dhcp-option=option:dns-server,{net_['gateway']}",
        "log-dhcp",
    ]
    for name, node in sorted(inv["nodes"].items(), key=lambda kv: ipaddress.IPv4Address(kv[1]["ip"])):
        lines.append(f"dhcp-host={node['mac']},{node['ip']},{name}")
    return "\n".join(lines) + "\n"


class Router(Node):
    """A lab node with a static address that serves DHCP and DNS with dnsmasq."""

    def _network(self, static=True):
        super()._network(static=True)

    def prepare(self, image_root, inv):
        super().prepare(image_root, inv)
        if not (self.root / "usr/sbin/dnsmasq").exists():
            self._install_dnsmasq()
        self._write(DNSMASQ_CONF, dnsmasq_conf(inv))
        # root by key only: the deployer's, for the handover (installed by the lab's bootstrap)
        self._write(SSHD_CONF, "# written by the lab\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n")

    def _install_dnsmasq(self):
        """dnsmasq from the lab's package source, into the router's disk (before it boots)."""
        log(f"{self.name}: installing dnsmasq")
        proc = cgroup.nspawn_script(
            self.root, "router-setup",
            "apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y -o Dpkg::Use-Pty=0 install dnsmasq",
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr + proc.stdout).strip().splitlines()[-15:])
            raise LabError(f"installing dnsmasq on the router stand-in failed:\n{tail}")

    def authorize(self, public_key):
        """Let the deployer's key log in as root (an admin does this once on a real OpenWRT)."""
        (self.root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
        self._write(AUTHORIZED_KEYS, public_key.strip() + "\n", mode=0o600)

    def dhcp_serving(self):
        """True while the router stand-in's dnsmasq still answers DHCP (no handover yet)."""
        conf = self.root / "etc/dnsmasq.d"
        return not any("no-dhcp-interface" in p.read_text(encoding="utf-8") for p in conf.glob("*.conf"))
