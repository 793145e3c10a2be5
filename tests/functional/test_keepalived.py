"""keepalived through the loaders: the SLS for the primary and the secondary (test mode, real
mode, idempotency, a broken config rejected by `keepalived -t`), then the rendered configs
running for real in two network namespaces with named: the VIP on the primary, given up when
its named dies or its keepalived stops, taken back when it recovers; vip.status on both."""

import ipaddress
import os
import signal
import time

import pytest
import yaml

from tests.conftest import INVENTORY, REPO, load_by_path
from tests.functional.lanpair import (
    HAVE_NETNS,
    KEEPALIVED,
    NAMED,
    Pair,
    changed,
    failed,
    node_loaders,
    scratch_root,
    wait_for,
)

pytestmark = [
    pytest.mark.skipif(not (os.path.exists(KEEPALIVED) and os.path.exists(NAMED)),
                       reason="needs keepalived and named (tests/host-packages.txt)"),
    pytest.mark.skipif(not HAVE_NETNS, reason="needs root and iproute2: keepalived -t and VRRP run in network namespaces"),
]

INV = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))["cluster"]
IPS = {"alpha": INV["nodes"]["alpha"]["ip"], "beta": INV["nodes"]["beta"]["ip"]}
VIP = INV["network"]["vip"]
DOMAIN = INV["domain"]
PREFIX = ipaddress.IPv4Network(INV["network"]["subnet"]).prefixlen


@pytest.fixture(scope="module")
def net():
    with Pair(f"rpik{os.getpid()}", IPS, PREFIX) as pair:
        yield pair


def _loaders(salt_factories, net, node, root, secrets_dir, **keepalived):
    # the interface is found from the ip4_interfaces grain, as on a real node; the config test
    # runs where that interface exists (keepalived -t checks it)
    return node_loaders(
        salt_factories, node, root, secrets_dir,
        keepalived={"check_cmd": f"ip netns exec {net.ns[node]} keepalived -t -f", **keepalived},
        grains={"ip4_interfaces": {"lo": ["127.0.0.1"], "eth0": [IPS[node]]}},
    )


@pytest.fixture(scope="module")
def nodes(salt_factories, net, secrets_dir):
    with scratch_root("alpha") as alpha, scratch_root("beta") as beta:
        yield {
            node: {"root": root, "loaders": _loaders(salt_factories, net, node, root, secrets_dir)}
            for node, root in (("alpha", alpha), ("beta", beta))
        }


def test_keepalived_sls_test_mode_writes_nothing(nodes):
    node = nodes["alpha"]
    ret = node["loaders"].modules.state.sls("keepalived", test=True)
    assert not failed(ret), failed(ret)
    assert any(r["result"] is None for r in ret.raw.values())
    assert not (node["root"] / "etc" / "keepalived" / "keepalived.conf").exists()


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_keepalived_sls_applies_then_changes_nothing(nodes, name, secrets_dir):
    node = nodes[name]
    ret = node["loaders"].modules.state.sls("keepalived")
    assert not failed(ret), failed(ret)
    conf = node["root"] / "etc" / "keepalived" / "keepalived.conf"
    text = conf.read_text()
    assert "interface eth0\n" in text  # found from the grain: the interface holding the node's IP
    assert ("state MASTER" in text) == (name == "alpha")
    assert oct(conf.stat().st_mode & 0o777) == "0o640"  # it holds the VRRP password
    password = (secrets_dir / "vrrp.password").read_text().strip()
    assert f"auth_pass {password}\n" in text
    assert password not in repr(ret.raw)  # no password in the state output
    for script in ("check-named", "notify-state"):
        assert oct((node["root"] / "etc" / "keepalived" / script).stat().st_mode & 0o777) == "0o755"
    assert changed(node["loaders"].modules.state.sls("keepalived")) == {}


def test_a_broken_config_is_rejected_and_the_previous_one_stays(salt_factories, net, nodes, secrets_dir):
    root = nodes["beta"]["root"]
    conf = root / "etc" / "keepalived" / "keepalived.conf"
    before = conf.read_bytes()
    broken = _loaders(salt_factories, net, "beta", root, secrets_dir, virtual_router_id=300)
    ret = broken.modules.state.sls("keepalived")
    errors = failed(ret)
    assert [sid.split("_|-")[1] for sid in errors] == ["keepalived-config-file-managed"], errors
    assert "check_cmd" in next(iter(errors.values()))
    assert conf.read_bytes() == before


def test_no_interface_holding_the_node_ip_is_a_clear_failure(salt_factories, net, secrets_dir, tmp_path):
    loaders = node_loaders(salt_factories, "alpha", tmp_path, secrets_dir,
                           grains={"ip4_interfaces": {"lo": ["127.0.0.1"], "eth9": ["10.1.1.1"]}})
    errors = failed(loaders.modules.state.sls("keepalived"))
    assert list(errors.values()) == [
        f"no interface of alpha holds its inventory IP {IPS['alpha']}: set keepalived:lookup:interface"
    ]


# --------------------------------------------------------------------------------------
# VRRP for real
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(net, nodes):
    """named (bind SLS) and keepalived (keepalived SLS) on both nodes, in their namespaces."""
    for name, node in nodes.items():
        root = node["root"]
        for sls in ("bind", "keepalived"):
            if sls == "bind" or not (root / "etc" / "keepalived" / "keepalived.conf").exists():
                ret = node["loaders"].modules.state.sls(sls)
                assert not failed(ret), failed(ret)
        node["named"] = _start_named(net, name, root)
    for name in nodes:
        wait_for(lambda n=name: _named_answers(net, n), 15, 0.1, f"named on {name}")
    wait_for(lambda: _named_answers(net, "beta", IPS["beta"]), 15, 0.1, "the zone transferred to beta")
    for name, node in nodes.items():
        root = node["root"]
        node["keepalived"] = _start_keepalived(net, name, root)
    yield nodes


def _start_named(net, name, root):
    return net.start(name, [NAMED, "-g", "-u", "bind", "-c", str(root / "etc/bind/named.conf")], root / "named.log")


def _start_keepalived(net, name, root):
    return net.start(
        name,
        [KEEPALIVED, "-n", "-l", "-D", "-P", "-f", str(root / "etc/keepalived/keepalived.conf"),
         "-p", str(root / "run/keepalived.pid"), "-r", str(root / "run/keepalived-vrrp.pid")],
        root / "keepalived.log",
    )


def _named_answers(net, node, server="127.0.0.1"):
    return net.dig(node, f"@{server}", DOMAIN, "SOA") != []


def _status(net, nodes, name):
    module = load_by_path(f"vip_status_{name}", REPO / "_modules" / "vip.py")
    module.__salt__ = net.salt_stub(name)
    module.__pillar__ = {"cluster": {"network": {"vip": VIP}}}
    root = nodes[name]["root"]
    return module.status(state_dir=str(root / "run/keepalived-cluster"), pidfile=str(root / "run/keepalived.pid"))


def _holder(net):
    holders = [n for n in ("alpha", "beta") if VIP in net.addresses_of(n)]
    return holders[0] if len(holders) == 1 else None if not holders else "both"


def test_the_primary_holds_the_vip(net, running):
    wait_for(lambda: _holder(net) == "alpha" and _status(net, running, "beta")["state"] == "BACKUP",
                         15, 0.1, "alpha MASTER, beta BACKUP")
    alpha, beta = _status(net, running, "alpha"), _status(net, running, "beta")
    assert alpha["held"] is True and alpha["interface"] == "eth0" and alpha["state"] == "MASTER"
    assert alpha["running"] is True and alpha["priority"] == 150
    assert beta["held"] is False and beta["state"] == "BACKUP" and beta["priority"] == 100
    # named answers on the VIP (listen-on any picks the new address up by itself)
    wait_for(lambda: net.dig("beta", f"@{VIP}", f"alpha.{DOMAIN}") == [IPS["alpha"]], 10, 0.1, "DNS on the VIP")


def test_a_dead_named_gives_the_vip_up_and_gets_it_back(net, running):
    wait_for(lambda: _holder(net) == "alpha", 15, 0.1, "alpha holding the VIP")
    running["alpha"]["named"].stop()
    start = time.monotonic()
    wait_for(lambda: _holder(net) == "beta", 15, 0.05, "the VIP moving to beta")
    moved = time.monotonic() - start
    print(f"VIP moved after named died on the primary: {moved:.2f} s")
    assert moved < 8, f"the VIP moved after {moved:.1f} s"
    # the VIP now answers from beta, whose named is alive
    assert net.dig("alpha", f"@{VIP}", f"zeta.{DOMAIN}") == [INV["nodes"]["zeta"]["ip"]]
    assert _status(net, running, "beta")["state"] == "MASTER"
    assert _status(net, running, "alpha")["state"] == "BACKUP"
    assert _status(net, running, "alpha")["running"] is True
    # named back on alpha: its priority is restored and it preempts
    running["alpha"]["named"] = _start_named(net, "alpha", running["alpha"]["root"])
    wait_for(lambda: _holder(net) == "alpha", 20, 0.1, "the VIP back on alpha")
    wait_for(lambda: _status(net, running, "beta")["state"] == "BACKUP", 10, 0.1, "beta back to BACKUP")


def test_keepalived_stopping_or_dying_on_the_primary_moves_the_vip(net, running):
    wait_for(lambda: _holder(net) == "alpha", 15, 0.1, "alpha holding the VIP")
    # clean stop: alpha sends priority 0, beta takes over at once
    running["alpha"]["keepalived"].stop()
    start = time.monotonic()
    wait_for(lambda: _holder(net) == "beta", 10, 0.02, "the VIP on beta after a clean stop")
    clean = time.monotonic() - start
    print(f"VIP moved after keepalived stopped on the primary: {clean:.2f} s")
    assert clean < 3
    assert _status(net, running, "alpha") | {"since": None} == {
        "vip": VIP, "held": False, "interface": None, "instance": "VI_DNS", "state": "STOPPED",
        "priority": None, "since": None, "running": False,
    }
    running["alpha"]["keepalived"] = _start_keepalived(net, "alpha", running["alpha"]["root"])
    wait_for(lambda: _holder(net) == "alpha", 20, 0.1, "the VIP back on alpha")
    # power loss: SIGKILL, no goodbye advert; beta waits for the master-down interval (~3.6 s)
    running["alpha"]["keepalived"].stop(signal.SIGKILL)
    net.run("alpha", "ip", "addr", "del", f"{VIP}/{PREFIX}", "dev", "eth0")  # a dead node holds nothing
    start = time.monotonic()
    wait_for(lambda: _holder(net) == "beta", 15, 0.02, "the VIP on beta after a power loss")
    failover = time.monotonic() - start
    print(f"VIP moved after the primary's keepalived was killed (power loss): {failover:.2f} s")
    assert 2 < failover < 6, f"failover took {failover:.2f} s (master-down interval 3.6 s expected)"
