"""The virtual lab end to end: identity of every node, the package source, idempotent ``up``, and
each fault doing what it says, checked from another node or from the host.

Every test leaves all nodes running (later end-to-end tests reuse the session's lab).
"""

import ipaddress
import json
import pathlib
import re
import subprocess
import time

import pytest

from lab import BRIDGE, CGROUP_PREFIX, DEFAULT_INVENTORY, net
from tests.lab.conftest import NETWORK, load_inventory

pytestmark = pytest.mark.lab

PROBE_FILE = "/var/lib/lab-probe.stopped"
# A unit whose ExecStop leaves a file: it runs on a clean shutdown, never on a power loss.
PROBE = (
    f"sudo rm -f {PROBE_FILE} && printf '[Service]\\nType=oneshot\\nRemainAfterExit=yes\\n"
    f"ExecStart=/bin/true\\nExecStop=/bin/touch {PROBE_FILE}\\n' "
    "| sudo tee /etc/systemd/system/lab-probe.service >/dev/null && sudo systemctl daemon-reload "
    "&& sudo systemctl start lab-probe && systemctl is-active lab-probe"
)


def _role(st, role):
    return [n for n, s in st["nodes"].items() if role in s["roles"]]


@pytest.fixture(scope="module")
def st(lab):
    return lab.status()


@pytest.fixture(scope="module")
def observer(st):
    """The node that watches the others (the deployer)."""
    return _role(st, "deployer")[0]


def _pids(lab):
    return {n: s["pid"] for n, s in lab.status()["nodes"].items()}


def _reachable(lab, observer, ip, tries=1):
    for _ in range(tries):
        if lab.run(observer, f"ping -c1 -W1 {ip}").returncode == 0:
            return True
        time.sleep(0.5)
    return False


def _host_procs_of(node):
    """Live processes on the host that belong to ``node`` (its nspawn and everything in the node)."""
    found = []
    for pid_dir in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            cgroups = (pid_dir / "cgroup").read_text()
            stat = (pid_dir / "stat").read_text()
        except OSError:
            continue
        if re.search(rf"/{re.escape(CGROUP_PREFIX + node)}(/|$)", cgroups, re.M) and stat.rpartition(")")[2].split()[0] != "Z":
            found.append(int(pid_dir.name))
    return found


def test_status_lists_every_node_running(lab, st):
    assert st["bridge"] == BRIDGE and st["bridge_up"]
    assert st["subnet"] == NETWORK["subnet"] and st["vip"] == NETWORK["vip"]
    assert st["domain"] == load_inventory(DEFAULT_INVENTORY)["domain"]
    assert set(_role(st, "deployer")) == {"psi"}
    assert set(_role(st, "lanservices")) == {"alpha", "beta"}
    assert set(_role(st, "compute")) == {"delta", "epsilon", "gamma", "zeta"}
    for name, node in st["nodes"].items():
        assert node["state"] == "running", name
        assert node["link"] == "up", name
    table = lab.cli("status").stdout
    assert all(re.search(rf"^{n}\s+{s['ip']}\s", table, re.M) for n, s in st["nodes"].items())


def test_every_node_is_itself(lab, st):
    """SSH as pi/raspberry works; own hostname, machine-id, host keys, inventory MAC and IP, own cgroup,
    and the inventory's Pi model in the (fake) device tree."""
    seen_ids, seen_keys = set(), set()
    for name, spec in st["nodes"].items():
        out = lab.run(
            name,
            "id -un; sudo -n id -u; hostname; cat /etc/machine-id; "
            "cat /sys/class/net/host0/address; ip -4 -o addr show dev host0; "
            "cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub; grep ^0:: /proc/1/cgroup; "
            "timeout 60 systemctl is-system-running --wait; "
            "tr -d '\\0' < /sys/firmware/devicetree/base/model",
            check=True,
        ).stdout.split("\n")
        user, root_uid, hostname, machine_id, mac, addr, hostkey, cgroup, system, model = out[:10]
        assert (user, root_uid) == ("pi", "0"), f"{name}: pi with passwordless sudo"
        assert hostname == name
        assert re.fullmatch(r"[0-9a-f]{32}", machine_id)
        assert mac == spec["mac"], f"{name}: host0 has {mac}, inventory says {spec['mac']}"
        assert f" {spec['ip']}/24 " in addr
        assert cgroup == "0::/init.scope", f"{name}: not in its own cgroup namespace: {cgroup}"
        assert system == "running", (
            f"{name}: systemd is {system}: " + lab.run(name, "systemctl --failed").stdout
        )
        assert model == spec["model"], f"{name}: the fake device tree says {model!r}"
        seen_ids.add(machine_id)
        seen_keys.add(hostkey)
        # the node's nspawn runs in the node's own cgroup on the host
        assert spec["pid"] in _host_procs_of(name)
    assert len(seen_ids) == len(st["nodes"]), "machine-ids are not unique"
    assert len(seen_keys) == len(st["nodes"]), "SSH host keys are not unique"


def test_macs_on_the_wire_and_no_way_out(lab, st, observer):
    """Seen from another node, each address answers with its inventory MAC; nothing routes outside."""
    ips = " ".join(s["ip"] for n, s in st["nodes"].items() if n != observer)
    out = lab.run(
        observer,
        f"for ip in {ips}; do ping -c1 -W2 $ip >/dev/null || echo LOST $ip; done; "
        "ip -j neigh show dev host0",
        check=True,
    ).stdout
    assert "LOST" not in out, out
    neigh = {e["dst"]: e.get("lladdr") for e in json.loads(out)}
    for name, spec in st["nodes"].items():
        if name != observer:
            assert neigh.get(spec["ip"]) == spec["mac"], f"{name}: {neigh.get(spec['ip'])} != {spec['mac']}"
    route = lab.run(observer, "ip route show default; cat /etc/resolv.conf", check=True).stdout
    assert f"default via {st['router']['ip']} " in route, route  # as the router's DHCP said
    assert "nameserver 127.0.0.1" in route
    # ... and the router has no way out: no route beyond the bridge, no forwarding
    out = lab.on_router("ip route show default; ip route get 192.0.2.1 2>&1; cat /proc/sys/net/ipv4/ip_forward")
    assert "default" not in out.splitlines()[0] and "unreachable" in out.lower(), out
    assert out.split()[-1] == "0", out


def test_vanilla_nodes_get_their_address_from_the_router(lab, st):
    """A vanilla card asks DHCP; the router stand-in gives each inventory MAC its address and
    answers DNS for the cluster names (the original's OpenWRT)."""
    assert st["router"]["state"] == "running" and st["router"]["ip"] == NETWORK["router"]["ip"]
    assert st["host"] == str(list(ipaddress.ip_network(NETWORK["subnet"]).hosts())[-1])  # the subnet's last
    for name, spec in st["nodes"].items():
        out = lab.run(name, "ip -4 -o addr show dev host0; networkctl status host0 --no-pager | "
                      "grep -i 'network file'", check=True).stdout
        assert f" {spec['ip']}/24 " in out and "dynamic" in out, f"{name}: {out}"  # a leased address
        assert "50-lab-host0.network" in out, f"{name}: {out}"
    leases = lab.on_router("cat /var/lib/misc/dnsmasq.leases")
    for spec in st["nodes"].values():
        assert f" {spec['mac']} {spec['ip']} " in leases, leases
    answer = subprocess.run(
        ["dig", "+short", "+time=2", "+tries=2", f"@{st['router']['ip']}", f"gamma.{st['domain']}"],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    assert answer == [st["nodes"]["gamma"]["ip"]]


def test_package_source_on_the_bridge_only(lab, st, observer):
    gateway = st["host"]
    out = lab.run(
        observer,
        "sudo apt-get -q update >/dev/null && apt-cache policy bind9 keepalived; "
        f"python3 -c \"import urllib.request as u; print(u.urlopen('http://{gateway}:8080/"
        "wheelhouse/').read().decode())\"",
        check=True,
    ).stdout
    assert f"http://{gateway}:8080 ./" in out.replace("  ", " ")
    assert "Candidate: (none)" not in out
    assert re.search(r"salt-3008\.4\.tar\.gz", out), "salt sdist (locked) missing from the wheelhouse"
    assert re.search(r"saltext[._]redis-1\.0\.2-py", out), "saltext-redis wheel missing from the wheelhouse"
    listen = subprocess.run(
        ["ss", "-Hltn", "sport = :8080"], capture_output=True, text=True, check=True
    ).stdout
    # ours on its bridge, and any other only on another lab's bridge (a lab beside this one)
    bridges = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "type", "bridge"], capture_output=True,
                                        text=True, check=True).stdout)
    lab_hosts = {a["local"] for b in bridges if b.get("ifname", "").startswith("labbr") for a in b.get("addr_info", [])}
    addresses = [line.split()[3].rpartition(":")[0] for line in listen.strip().splitlines()]
    assert gateway in addresses and set(addresses) <= lab_hosts, listen


def test_up_twice_changes_nothing(lab):
    before = _pids(lab)
    out = lab.cli("up")
    assert "all requested nodes are running" in out.stderr
    assert _pids(lab) == before


def test_the_bridge_keeps_its_own_mac_as_nodes_come_and_go(lab, st):
    """A LAN client's MAC does not change when a Pi dies: a bridge left to itself takes the
    lowest MAC of its ports (alpha's once, and a power loss of alpha then cut DNS on the VIP for
    5 s: every node's ARP entry for the host went stale)."""
    assert st["bridge_mac"] == "02:00:" + ":".join(f"{int(o):02x}" for o in st["host"].split("."))  # 02:00 + host IP
    assert pathlib.Path(f"/sys/class/net/{BRIDGE}/addr_assign_type").read_text().strip() == "3"  # NET_ADDR_SET
    assert pathlib.Path(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6").read_text().strip() == "1"  # IPv4 only
    links = {link["ifname"]: link["address"] for link in json.loads(
        subprocess.run(["ip", "-j", "link", "show", "master", BRIDGE], capture_output=True, text=True, check=True).stdout)}
    lowest = min(st["nodes"], key=lambda n: links[net.host_link(n)])  # the MAC the bridge would take
    lab.cli("power-loss", lowest)
    try:
        assert lab.status()["bridge_mac"] == st["bridge_mac"]
    finally:
        lab.cli("up", lowest)
    assert lab.status()["bridge_mac"] == st["bridge_mac"]


def test_power_loss_kills_everything_at_once(lab, st, observer):
    target = _role(st, "compute")[-2]
    assert lab.run(target, PROBE, check=True).stdout.strip() == "active"
    started = time.monotonic()
    lab.cli("power-loss", target)
    assert time.monotonic() - started < 5
    assert lab.status()["nodes"][target]["state"] == "stopped"
    assert not _host_procs_of(target), "processes of the node survived the power loss"
    assert not _reachable(lab, observer, st["nodes"][target]["ip"])
    # no clean shutdown happened: the unit's ExecStop never ran (the node's disk, read on the host)
    assert not (lab.state / "nodes" / target / "upper" / PROBE_FILE.lstrip("/")).exists()
    lab.cli("up", target)
    assert lab.run(target, f"test ! -e {PROBE_FILE} && hostname", check=True).stdout.strip() == target


def test_power_off_is_clean_and_up_boots_it_again(lab, st, observer):
    target = _role(st, "compute")[-2]
    assert lab.run(target, PROBE, check=True).stdout.strip() == "active"
    before = _pids(lab)
    lab.cli("power-off", target)
    assert lab.status()["nodes"][target]["state"] == "stopped"
    assert not _host_procs_of(target)
    assert not _reachable(lab, observer, st["nodes"][target]["ip"])
    # a clean shutdown stopped every unit: the probe's ExecStop wrote its file on the node's disk
    assert (lab.state / "nodes" / target / "upper" / PROBE_FILE.lstrip("/")).exists()
    console = (lab.state / "nodes" / target / "console.log").read_text(errors="replace")
    assert "shutdown.target" in console
    lab.cli("up")  # a stopped node is booted again; the running ones are left alone
    after = _pids(lab)
    assert after[target] and after[target] != before[target]
    assert {n: p for n, p in after.items() if n != target} == {n: p for n, p in before.items() if n != target}
    assert _reachable(lab, observer, st["nodes"][target]["ip"], tries=5)
    lab.run(target, f"sudo rm -f {PROBE_FILE} /etc/systemd/system/lab-probe.service", check=True)


def test_unplug_and_plug(lab, st, observer):
    target = _role(st, "compute")[0]
    ip = st["nodes"][target]["ip"]
    assert _reachable(lab, observer, ip)
    pid = _pids(lab)[target]
    lab.cli("unplug", target)
    node = lab.status()["nodes"][target]
    assert (node["state"], node["link"], node["pid"]) == ("running", "down", pid)
    assert not _reachable(lab, observer, ip)
    ping_host = subprocess.run(["ping", "-c1", "-W1", ip], capture_output=True, check=False)
    assert ping_host.returncode != 0
    lab.cli("plug", target)
    assert lab.status()["nodes"][target]["link"] == "up"
    assert _reachable(lab, observer, ip, tries=10)
    assert _pids(lab)[target] == pid, "the node kept running while unplugged"


def test_reflash_gives_a_vanilla_node_with_the_same_mac_and_ip(lab, st, observer):
    target = _role(st, "compute")[-1]
    spec = st["nodes"][target]
    cmd = "cat /etc/machine-id; cut -d' ' -f2 /etc/ssh/ssh_host_ed25519_key.pub; ls /home/pi"
    lab.run(target, "touch /home/pi/written-before-reflash", check=True)
    old_id, old_key, old_files = lab.run(target, cmd, check=True).stdout.split("\n")[:3]
    assert old_files == "written-before-reflash"
    lab.cli("reflash", target)
    new_id, new_key, *rest = lab.run(target, cmd, check=True).stdout.split("\n")
    assert new_id != old_id and new_key != old_key
    assert "written-before-reflash" not in rest, "the node's old disk survived"
    assert lab.run(target, "hostname", check=True).stdout.strip() == target
    # same MAC and IP, seen from another node
    out = lab.run(
        observer, f"ping -c1 -W2 {spec['ip']} >/dev/null && ip -j neigh show {spec['ip']}", check=True
    )
    assert json.loads(out.stdout)[0]["lladdr"] == spec["mac"]
    keyscan = subprocess.run(
        ["ssh-keyscan", "-t", "ed25519", spec["ip"]], capture_output=True, text=True, check=False
    ).stdout
    assert new_key in keyscan and old_key not in keyscan
