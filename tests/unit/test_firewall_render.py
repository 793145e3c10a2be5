"""The firewall's ruleset for each role of the project inventory, rendered by Salt's own Jinja
renderer from salt/firewall (map.jinja collects the ports the node's services declare in their
folders and resolves the zones from the inventory): what it accepts, from whom, and what not."""

import pytest
import yaml

from tests.conftest import STATE_TREE
from tests.firewall import accept_rules, accepts, loaders, render

NODE = {"deployer": "psi", "lanservices": "alpha", "compute": "delta"}
IP = {"psi": "192.168.10.10", "alpha": "192.168.10.6", "beta": "192.168.10.8", "delta": "192.168.10.21",
      "epsilon": "192.168.10.22", "gamma": "192.168.10.23", "zeta": "192.168.10.24"}
POOL = ["192.168.10.200", "192.168.10.240"]  # dhcp_pool start and end: DHCP guests
SUBNET_GUEST = "192.168.10.150"  # in the subnet, neither a node nor in the pool
OUTSIDE = "10.9.8.7"


@pytest.fixture(scope="module")
def rendered(salt_factories):
    """{role: (ruleset text, firewall map)} for one node of each role."""
    out = {}
    for role, name in NODE.items():
        out[role] = render(loaders(salt_factories, name))
    return out


def test_one_table_of_its_own_replaced_atomically(rendered):
    for role, (text, _) in rendered.items():
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        assert lines[:3] == ["table inet cluster", "delete table inet cluster", "table inet cluster {"], role
        assert "flush" not in text, role  # never the whole ruleset (k3s and dhcpd have their own tables)
        assert sum(line.count("table ") for line in lines) == 3, role
        assert "hook forward" not in text and "hook output" not in text, role
        assert "type filter hook input priority filter; policy drop;" in text, role
        body = [line for line in lines if line != "}"]
        assert body[-1] == 'counter name "input_dropped" drop', role
        for base in ("ct state established,related accept", 'iif "lo" accept'):
            assert base in lines, (role, base)
        assert any(line.startswith("icmp type {") and "echo-request" in line for line in lines), role
        assert any(line.startswith("icmpv6 type {") and "nd-neighbor-solicit" in line
                   and "nd-neighbor-advert" in line for line in lines), role


def test_compute_node(rendered):
    text, fw = rendered["compute"]
    assert fw["sls"] == ["network", "admin", "admin.default_user_absent", "sshd", "minion", "minion.extensions", "chrony", "sshd.hostcert", "tls",
                         "firewall", "distcc", "mpich", "k3s"]
    for node in IP:
        assert accepts(text, IP[node], "tcp", 3632), node
        assert accepts(text, IP[node], "tcp", 22), node
        assert accepts(text, IP[node], "tcp", 6443) and accepts(text, IP[node], "tcp", 10250), node
        assert accepts(text, IP[node], "udp", 8472), node
    for guest in [*POOL, SUBNET_GUEST, OUTSIDE]:
        for proto, port in [("tcp", 3632), ("tcp", 22), ("tcp", 6443), ("tcp", 10250), ("udp", 8472),
                            ("tcp", 40000), ("udp", 53), ("tcp", 53), ("udp", 67), ("udp", 123)]:
            assert not accepts(text, guest, proto, port), (guest, proto, port)
    # MPI (Hydra's control port, UCX over TCP): any TCP port, between the compute nodes only
    for node in ("epsilon", "gamma", "zeta"):
        assert accepts(text, IP[node], "tcp", 40000), node
    for node in ("psi", "alpha", "beta"):
        assert not accepts(text, IP[node], "tcp", 40000), node
    # the master's packets on a minion's connections (opened before the table first loaded) by
    # their source port: from the master only, and not its other connections
    for port in (4505, 4506):
        assert accepts(text, IP["psi"], "tcp", 40000, sport=port), port
        assert not any(accepts(text, src, "tcp", 40000, sport=port) for src in (IP["alpha"], *POOL)), port
    assert not accepts(text, IP["psi"], "tcp", 40000, sport=4507)
    # no lanservices service here: no DNS, DHCP, NTP server, TFTP, HTTP, failover, VRRP (the
    # other compute nodes reach any TCP port: MPI)
    for port in (53, 67, 69, 123):
        assert not any(accepts(text, IP[n], "udp", port) for n in IP), port
    for port in (53, 80, 647, 847):
        assert not any(accepts(text, IP[n], "tcp", port) for n in ("psi", "alpha", "beta")), port
    assert not accepts(text, IP["alpha"], 112)
    # k3s's pods reach their node (kubelet, the API server through a service address)
    assert accepts(text, "10.42.1.5", "tcp", 10250) and accepts(text, "10.43.0.10", "tcp", 6443)


def test_deployer(rendered):
    text, fw = rendered["deployer"]
    assert "master" in fw["sls"] and "redis" in fw["sls"]  # master includes redis
    # Redis's plain and TLS ports are on the loopback only: opened to nobody
    for port in (6379, 6380):
        assert not any(accepts(text, src, "tcp", port) for src in [*IP.values(), *POOL, SUBNET_GUEST]), port
    assert fw["confirm"]["host"] == ""  # its own load rests on the render-time assertion
    for node in IP:
        assert accepts(text, IP[node], "tcp", 4505) and accepts(text, IP[node], "tcp", 4506), node
    for guest in [*POOL, SUBNET_GUEST, OUTSIDE]:
        assert not accepts(text, guest, "tcp", 4505) and not accepts(text, guest, "tcp", 4506), guest
    # SSH from the whole LAN (the admin's laptop is a DHCP guest), not from outside it
    for src in [*POOL, SUBNET_GUEST, IP["delta"]]:
        assert accepts(text, src, "tcp", 22), src
    assert not accepts(text, OUTSIDE, "tcp", 22)
    # Redis: the loopback only
    for src in [*IP.values(), *POOL]:
        assert not accepts(text, src, "tcp", 6379), src
    # the status feed: the pair's collectors only
    assert accepts(text, IP["alpha"], "tcp", 8082) and accepts(text, IP["beta"], "tcp", 8082)
    for src in [IP["delta"], *POOL]:
        assert not accepts(text, src, "tcp", 8082), src
    # not a compute node
    assert not accepts(text, IP["delta"], "tcp", 3632) and not accepts(text, IP["delta"], "tcp", 40000)
    for port in (53, 67):
        assert not accepts(text, POOL[0], "udp", port), port


def test_lanservices_node(rendered):
    text, fw = rendered["lanservices"]
    for guest in [*POOL, SUBNET_GUEST, IP["delta"]]:
        for proto, port in [("udp", 53), ("tcp", 53), ("udp", 67), ("udp", 69), ("udp", 123), ("tcp", 80)]:
            assert accepts(text, guest, proto, port), (guest, proto, port)
    assert not accepts(text, OUTSIDE, "udp", 53)
    # a client without an address broadcasts from 0.0.0.0
    assert accepts(text, "0.0.0.0", "udp", 67)
    assert not accepts(text, "0.0.0.0", "udp", 53)
    # TFTP's transfer: the conntrack helper on the request
    tftp = accepts(text, POOL[0], "udp", 69)
    assert len(tftp) == 1 and 'ct helper set "tftp"' in tftp[0]
    assert 'ct helper tftp {\n\t\ttype "tftp" protocol udp' in text
    # DHCP failover (each peer's port), VRRP: between the pair only
    for port in (647, 847):
        assert accepts(text, IP["beta"], "tcp", port), port
        for src in [IP["delta"], IP["psi"], *POOL]:
            assert not accepts(text, src, "tcp", port), (src, port)
    assert accepts(text, IP["beta"], 112)
    for src in [IP["delta"], IP["psi"], *POOL]:
        assert not accepts(text, src, 112), src
    # OMAPI and rndc: the loopback only
    for port in (7911, 953):
        assert not any(accepts(text, src, "tcp", port) for src in [*IP.values(), *POOL]), port
    # SSH from the cluster only; no compute or deployer port
    assert accepts(text, IP["psi"], "tcp", 22) and not accepts(text, POOL[0], "tcp", 22)
    for proto, port in [("tcp", 3632), ("tcp", 4506), ("tcp", 6379), ("tcp", 40000)]:
        assert not accepts(text, IP["delta"], proto, port), port
    assert fw["zones"]["pair"] == [IP["alpha"], IP["beta"], "192.168.10.111"]


def test_no_rule_accepts_distcc_or_salt_from_the_subnet(rendered):
    """A rule naming the whole subnet never carries distcc, salt or MPI: those are per address."""
    for role, (text, _) in rendered.items():
        for line, nets, _proto, ports, _sports in accept_rules(text):
            wide = nets is None or any(net.num_addresses > 1 and net.prefixlen < 32 for net in nets
                                       if not str(net).startswith(("10.42.", "10.43.")))
            if wide:
                assert ports is not None, (role, line)  # no whole-subnet any-port rule
                for port in (3632, 4505, 4506, 6379, 6443, 10250):
                    assert not any(low <= port <= high for low, high in ports), (role, line)


def test_the_deployer_must_let_every_node_reach_the_master(salt_factories):
    """A ruleset that would cut a minion off its master fails to render, naming the port."""
    node = loaders(salt_factories, "psi", firewall={"lookup": {"master_ports": [4505, 4506, 4507]}})
    with pytest.raises(Exception, match=r"no rule accepts tcp/4507 from alpha \(192\.168\.10\.6\)"):
        render(node)


def test_the_state_checks_before_it_replaces_and_loads_only_on_change(salt_factories):
    """salt/firewall/init.sls for a compute node: the ruleset goes through `nft -c -f`, the load
    runs only when the loaded table is not the file's, the boot unit is enabled, not started."""
    node = loaders(salt_factories, "delta")
    states = node.modules.state.show_sls("firewall")
    assert isinstance(states, dict), states

    def args(sid, fun):
        assert sid in states, sorted(states)
        mod = fun.split(".")[0]
        assert fun.split(".")[1] in states[sid][mod], states[sid]
        return {k: v for item in states[sid][mod] if isinstance(item, dict) for k, v in item.items()}

    rules = args("firewall-rules-file-managed", "file.managed")
    assert rules["check_cmd"] == "/usr/sbin/nft -c -f" and rules["name"] == "/etc/cluster-firewall/cluster.nft"
    load = args("firewall-table-loaded-cmd-run", "cmd.run")
    assert load["name"] == "/usr/local/sbin/cluster-firewall-apply --apply"
    assert load["unless"] == "/usr/local/sbin/cluster-firewall-apply --is-current"
    assert "onchanges" in args("firewall-systemd-daemon-reload-cmd-run", "cmd.run")
    args("firewall-service-enabled", "service.enabled")
    assert args("firewall-pkg-installed", "pkg.installed")["pkgs"] == ["nftables"]
    for sid, body in states.items():  # every cmd.run is guarded
        if "cmd" in body and isinstance(body["cmd"], list):
            guards = {k for item in body["cmd"] if isinstance(item, dict) for k in item}
            assert guards & {"onchanges", "unless", "creates", "onlyif"}, sid


def test_every_declaration_names_an_sls_of_its_folder():
    """A typo in a declaration's key (an SLS name) would open nothing, silently: caught here."""
    files = sorted(STATE_TREE.glob("*/firewall.yaml"))
    assert {f.parent.name for f in files} >= {"sshd", "master", "bind", "dhcpd", "distcc", "k3s"}
    for path in files:
        folder = path.parent
        for sls in yaml.safe_load(path.read_text())["firewall"]:
            parts = sls.split(".")
            assert parts[0] == folder.name, (path, sls)
            target = folder / (f"{parts[1]}.sls" if len(parts) > 1 else "init.sls")
            assert target.is_file(), (path, sls)
