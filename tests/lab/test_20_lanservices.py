"""End to end on the lab: DNS, DHCP failover and the VIP on alpha/beta (issue: LAN services).

The rollout is `salt-run state.orch orch.cluster` on the deployer. Queries come from the lab
host over the lab bridge; DHCP clients are network namespaces on that bridge.
"""

import ipaddress
import json
import time

import pytest

from lab.probe import DhcpClient, dig
from tests.lab.conftest import INVENTORY_ON_DEPLOYER, NETWORK, changes, salt

UNKNOWN_MAC = "02:77:00:00:00:99"


@pytest.fixture(scope="module")
def lan(rolled_out):
    st = rolled_out.status()
    return {
        "st": st,
        "alpha": st["nodes"]["alpha"]["ip"],
        "beta": st["nodes"]["beta"]["ip"],
        "vip": st["vip"],
        "domain": st["domain"],
    }


def soa_serial(server, zone):
    answer = dig(server, zone, "SOA")
    return int(answer[0].split()[2]) if answer else None


def test_every_name_resolves_the_same_at_alpha_beta_and_the_vip(lan):
    st, domain = lan["st"], lan["domain"]
    for name, node in st["nodes"].items():
        for server in (lan["alpha"], lan["beta"], lan["vip"]):
            assert dig(server, f"{name}.{domain}") == [node["ip"]], (name, server)
            assert dig(server, node["ip"], "PTR") == [f"{name}.{domain}."], (name, server)
    for server in (lan["alpha"], lan["beta"], lan["vip"]):
        assert dig(server, f"ns.{domain}") == [lan["vip"]]
        assert dig(server, f"salt.{domain}")[0] == f"psi.{domain}."
    assert soa_serial(lan["alpha"], domain) == soa_serial(lan["beta"], domain)


def test_unsigned_zone_transfer_is_refused(lan):
    for server in (lan["alpha"], lan["beta"], lan["vip"]):
        assert dig(server, f"ns.{lan['domain']}") == [lan["vip"]]  # the server answers queries...
        answer = dig(server, lan["domain"], "AXFR")
        assert answer in (None, []), f"unsigned AXFR from {server} returned records"  # ...not AXFR


def test_dhcp_reserved_address_and_pool_address(lan):
    st = lan["st"]
    zeta = st["nodes"]["zeta"]
    with DhcpClient(zeta["mac"], tag="r") as client:
        lease = client.lease()
    assert lease, "no lease for an inventory MAC"
    assert lease["ip"] == zeta["ip"]
    assert lease["dns"].split()[0] == lan["vip"]
    assert set(lease["dns"].split()) == {lan["vip"], lan["alpha"], lan["beta"]}
    assert set(lease["ntp"].split()) == {lan["alpha"], lan["beta"]}
    assert lease["domain"] == lan["domain"]
    assert lease["filename"]
    with DhcpClient(UNKNOWN_MAC, tag="u") as client:
        lease = client.lease()
    assert lease, "no lease for an unknown MAC"
    last = lambda ip: int(ip.rsplit(".", 1)[1])  # noqa: E731
    assert 200 <= last(lease["ip"]) <= 240, lease


def test_a_changed_ip_in_the_inventory_reaches_both_servers_with_one_serial_bump(lan, cluster):
    domain, old_ip, new_ip = lan["domain"], lan["st"]["nodes"]["zeta"]["ip"], str(ipaddress.ip_network(NETWORK["subnet"])[29])
    before = soa_serial(lan["alpha"], domain)
    cluster.run("psi", f"sudo sed -i.orig 's/ip: {old_ip},/ip: {new_ip},/' {INVENTORY_ON_DEPLOYER}", check=True)
    try:
        first = salt(cluster, "-L alpha,beta state.highstate", timeout=600)
        assert changes(first)["alpha"], "the primary's highstate changed nothing"
        for server in (lan["alpha"], lan["beta"], lan["vip"]):
            for _ in range(20):
                if dig(server, f"zeta.{domain}") == [new_ip]:
                    break
                time.sleep(0.25)
            assert dig(server, f"zeta.{domain}") == [new_ip], server
        after = soa_serial(lan["alpha"], domain)
        assert after > before
        assert soa_serial(lan["beta"], domain) == after
        second = salt(cluster, "-L alpha,beta state.highstate", timeout=600)
        assert changes(second) == {"alpha": [], "beta": []}
        assert soa_serial(lan["alpha"], domain) == after  # bumped once, not on every run
    finally:
        cluster.run("psi", f"sudo mv {INVENTORY_ON_DEPLOYER}.orig {INVENTORY_ON_DEPLOYER}", check=True)
        salt(cluster, "-L alpha,beta state.highstate", timeout=600)
    assert dig(lan["alpha"], f"zeta.{domain}") == [old_ip]


def _vip_holder(cluster):
    for name in ("alpha", "beta"):
        out = cluster.run(name, "ip -4 -o addr show dev host0", timeout=20).stdout
        if f" {cluster.status()['vip']}/" in out:
            return name
    return None


def test_power_loss_of_the_primary(lan, cluster):
    """Last in this file: alpha loses power, beta takes over; alpha comes back, all normal."""
    domain, vip = lan["domain"], lan["vip"]
    assert _vip_holder(cluster) == "alpha"
    cluster.cli("power-loss", "alpha")
    lost = time.monotonic()
    try:
        while time.monotonic() - lost < 15 and dig(vip, f"psi.{domain}", timeout=1) is None:
            time.sleep(0.1)
        answered = time.monotonic() - lost
        print(f"\nDNS on the VIP answers again {answered:.2f} s after alpha's power loss")
        assert dig(vip, f"psi.{domain}") == [lan["st"]["nodes"]["psi"]["ip"]]
        assert _vip_holder(cluster) == "beta"
        with DhcpClient(UNKNOWN_MAC, tag="d") as client:
            lease = client.lease(timeout=40)
        assert lease and lease["server"] == lan["beta"], lease
        print(f"DHCP lease from beta while alpha is down: {lease['seconds']:.1f} s")
    finally:
        cluster.cli("up", "alpha")
    # back to normal: VIP on alpha again (preempt), DNS and DHCP failover normal on both
    for _ in range(60):
        if _vip_holder(cluster) == "alpha":
            break
        time.sleep(1)
    assert _vip_holder(cluster) == "alpha"
    for _ in range(60):
        if salt(cluster, "alpha test.ping", timeout=30) == {"alpha": True}:
            break
        time.sleep(2)
    state = {}
    for _ in range(60):
        state = salt(cluster, "-L alpha,beta dhcpd_failover.status", timeout=60)
        peers = [p for node in state.values() if isinstance(node, dict) for p in node.values()]
        if len(peers) == 2 and all(p["local_state"] == p["partner_state"] == "normal" for p in peers):
            break
        time.sleep(2)
    assert len(peers) == 2 and all(p["local_state"] == "normal" for p in peers), json.dumps(state)
    assert dig(lan["alpha"], f"psi.{domain}") == [lan["st"]["nodes"]["psi"]["ip"]]
