"""End to end on the lab: every node's firewall (salt/firewall, table inet cluster) as a DHCP
guest of the LAN meets it: a namespace on the lab bridge with a new MAC leases a pool address
from the pair, then probes the nodes. DNS on the VIP, DHCP and SSH to the deployer answer;
distcc on a compute node, Redis and salt on the deployer, SSH to any other node time out and
the nodes' drop counters go up. Every probe has a 2 s timeout.
"""

import ipaddress
import json
import pathlib
import random
import subprocess
import sys
import time

import pytest
import yaml

from lab.probe import DhcpClient
from tests.lab.conftest import NETWORK, changes, salt

pytestmark = pytest.mark.lab

TESTS = pathlib.Path(__file__).resolve().parents[1]
PROBE = TESTS / "functional" / "fwprobe.py"
POOL = NETWORK["dhcp_pool"]
TIMEOUT = 2.0


def _dropped(lab, node):
    out = lab.run(node, "sudo nft -j list counter inet cluster input_dropped", check=True).stdout
    return next(o["counter"]["packets"] for o in json.loads(out)["nftables"] if "counter" in o)


def _probe(netns, dest, specs):
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, str(PROBE), "probe", dest, str(TIMEOUT),
                           ",".join(specs)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def guest(rolled_out):
    """(netns, lease): a DHCP guest on the lab bridge holding the pool address it leased."""
    st = rolled_out.status()
    prefix = st["subnet"].split("/")[1]
    mac = "02:77:65:" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))
    with DhcpClient(mac, tag="f") as client:
        lease = client.lease(timeout=30)
        assert lease and lease["ip"], "no lease for a new DHCP guest"
        subprocess.run(["ip", "netns", "exec", client.ns, "ip", "addr", "add", f"{lease['ip']}/{prefix}", "dev", "eth0"],
                       check=True, capture_output=True, timeout=10)
        yield client.ns, lease


def test_every_node_has_the_table_and_a_second_apply_changes_nothing(rolled_out):
    ret = salt(rolled_out, "'*' state.sls firewall", timeout=600)
    assert set(ret) == set(rolled_out.nodes), sorted(ret)
    assert changes(ret) == {n: [] for n in ret}
    for node in rolled_out.nodes:
        listed = rolled_out.run(node, "sudo nft list tables", check=True).stdout
        assert "table inet cluster" in listed, (node, listed)
        assert rolled_out.run(node, "systemctl is-enabled cluster-firewall").stdout.strip() == "enabled", node


def test_a_dhcp_guest_gets_a_pool_address_and_dns_on_the_vip(rolled_out, guest):
    netns, lease = guest
    st = rolled_out.status()
    address = ipaddress.ip_address(lease["ip"])
    assert ipaddress.ip_address(POOL["start"]) <= address <= ipaddress.ip_address(POOL["end"]), lease
    assert lease["server"] in {st["nodes"]["alpha"]["ip"], st["nodes"]["beta"]["ip"]}, lease
    dig = subprocess.run(["ip", "netns", "exec", netns, "dig", "+short", "+time=2", "+tries=1", f"@{st['vip']}",
                          f"psi.{st['domain']}"], capture_output=True, text=True, timeout=30, check=False)
    assert dig.stdout.split() == [st["nodes"]["psi"]["ip"]], (dig.stdout, dig.stderr)


def test_a_dhcp_guest_reaches_ssh_on_the_deployer_only(rolled_out, guest):
    netns, _ = guest
    st = rolled_out.status()
    deployer = _probe(netns, st["nodes"]["psi"]["ip"], ["tcp:22", "tcp:4505", "tcp:4506", "tcp:6379", "tcp:8082"])
    assert deployer == {"tcp:22": "open", "tcp:4505": "timeout", "tcp:4506": "timeout", "tcp:6379": "timeout",
                        "tcp:8082": "timeout"}
    before = _dropped(rolled_out, "delta")
    compute = _probe(netns, st["nodes"]["delta"]["ip"], ["tcp:22", "tcp:3632", "tcp:10250"])
    assert compute == {"tcp:22": "timeout", "tcp:3632": "timeout", "tcp:10250": "timeout"}
    assert _dropped(rolled_out, "delta") > before
    for node in ("alpha", "beta", "epsilon"):
        assert _probe(netns, st["nodes"][node]["ip"], ["tcp:22"]) == {"tcp:22": "timeout"}, node


def test_the_cluster_still_reaches_its_services(rolled_out):
    """From the nodes themselves: distcc and SSH between compute nodes, the master from a
    minion (test.ping), the deployer's status feed from the pair."""
    st = rolled_out.status()
    delta, psi = st["nodes"]["delta"]["ip"], st["nodes"]["psi"]["ip"]
    probe = ("python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()'")
    for node, dest, port in [("epsilon", delta, 3632), ("epsilon", delta, 22), ("alpha", psi, 8082),
                             ("alpha", psi, 4506), ("delta", psi, 4505)]:
        proc = rolled_out.run(node, f"{probe} {dest} {port}")
        assert proc.returncode == 0, (node, dest, port, proc.stderr)
    pings = salt(rolled_out, "'*' test.ping", timeout=60)
    assert pings == {n: True for n in rolled_out.nodes}, pings



def test_the_admin_reaches_the_other_nodes_through_the_deployer_only(rolled_out):
    """The lab host is the admin's workstation (in the subnet, not a node): its SSH to delta
    times out, and `python3 -m lab ssh delta` (ProxyCommand through psi) logs in, from psi."""
    st = rolled_out.status()
    delta, psi = st["nodes"]["delta"]["ip"], st["nodes"]["psi"]["ip"]
    direct = subprocess.run([sys.executable, str(PROBE), "probe", delta, str(TIMEOUT), "tcp:22,tcp:3632"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert direct.returncode == 0, direct.stderr
    assert json.loads(direct.stdout) == {"tcp:22": "timeout", "tcp:3632": "timeout"}
    assert json.loads(subprocess.run([sys.executable, str(PROBE), "probe", psi, str(TIMEOUT), "tcp:22"],
                                     capture_output=True, text=True, timeout=60, check=True).stdout) == {"tcp:22": "open"}
    since = rolled_out.run("delta", "date +%s", check=True).stdout.strip()
    proc = subprocess.run([sys.executable, "-m", "lab", "ssh", "delta", "--", "id", "-un"],
                          cwd=TESTS.parent, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "piclust", proc.stdout + proc.stderr
    log = rolled_out.run("delta", f"sudo journalctl -u ssh --since @{since} --no-pager -o cat", check=True).stdout
    assert f"Accepted publickey for piclust from {psi} " in log, log[-1500:]


def test_vrrp_adverts_from_a_dhcp_guest_do_not_take_the_vip(rolled_out, guest, tmp_path):
    """A stranger on the LAN runs keepalived for the cluster's VRID with priority 254 and
    unicasts its adverts to both of the pair: the firewall drops them (alpha's counter goes up),
    alpha keeps the VIP and neither keepalived changes state."""
    netns, lease = guest
    st = rolled_out.status()
    alpha, beta = st["nodes"]["alpha"]["ip"], st["nodes"]["beta"]["ip"]
    vrrp = yaml.safe_load((TESTS.parent / "salt" / "keepalived" / "defaults.yaml").read_text())["keepalived"]
    conf = tmp_path / "rogue.conf"
    conf.write_text(
        "global_defs {\n    router_id rogue\n    vrrp_version 3\n}\n"
        f"vrrp_instance {vrrp['instance']} {{\n    state MASTER\n    interface eth0\n"
        f"    virtual_router_id {vrrp['virtual_router_id']}\n    priority 254\n    advert_int {vrrp['advert_int']}\n"
        f"    unicast_src_ip {lease['ip']}\n    unicast_peer {{\n        {alpha}\n        {beta}\n    }}\n"
        # a documentation address, not the VIP: its gratuitous ARPs must not poison the LAN's caches
        "    virtual_ipaddress {\n        192.0.2.111/32 dev lo\n    }\n}\n", encoding="utf-8")
    # on the LAN interface: both of the pair also have the VIP on lo (for named)
    holder = "ip -4 -o addr show | grep -v ': lo ' | grep -qw " + st["vip"] + " && echo holds || echo no"
    assert rolled_out.run("alpha", holder).stdout.strip() == "holds"
    since = rolled_out.run("alpha", "date +%s", check=True).stdout.strip()
    before = _dropped(rolled_out, "alpha")
    rogue = subprocess.Popen(
        ["ip", "netns", "exec", netns, "keepalived", "-n", "-l", "-D", "-P", "-f", str(conf),
         "-p", str(tmp_path / "rogue.pid"), "-r", str(tmp_path / "rogue-vrrp.pid")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(6)  # 30 adverts at 0.2 s
    finally:
        rogue.terminate()
        out, _ = rogue.communicate(timeout=30)
    assert "Entering MASTER STATE" in out, f"the stranger never advertised:\n{out[-1500:]}"
    assert _dropped(rolled_out, "alpha") >= before + 10, "alpha's firewall did not drop the adverts"
    assert rolled_out.run("alpha", holder).stdout.strip() == "holds"
    assert rolled_out.run("beta", holder).stdout.strip() == "no"
    for node in ("alpha", "beta"):
        log = rolled_out.run(node, f"sudo journalctl -u keepalived --since @{since} --no-pager -o cat", check=True).stdout
        assert "Entering" not in log, f"{node} changed state:\n{log[-1500:]}"
