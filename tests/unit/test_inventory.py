"""Inventory validation: every rule rejects a broken inventory and names the field."""

import copy
import re
import subprocess
import sys

import pytest
import yaml

from rpicluster import model
from tests.conftest import INVENTORY, REPO


@pytest.fixture
def inv():
    with open(INVENTORY, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_project_inventory_is_valid(inv):
    checked = model.check(inv)
    assert sorted(checked["nodes"]) == ["alpha", "beta", "delta", "epsilon", "gamma", "psi", "zeta"]
    assert checked["network"]["ntp_upstream"] == []  # optional keys get their defaults


def _set(path, value):
    def mutate(data):
        *parents, last = path.split(".")
        cur = data
        for key in parents:
            cur = cur[key]
        if value is DELETE:
            del cur[last]
        else:
            cur[last] = value

    return mutate


DELETE = object()
N = "cluster.nodes"

CASES = {
    # hostnames
    "bad hostname": (lambda d: d["cluster"]["nodes"].__setitem__("Bad_Name", d["cluster"]["nodes"].pop("zeta")),
                     "cluster.nodes.Bad_Name: 'Bad_Name' is not a valid hostname"),
    "upper-case hostname": (lambda d: d["cluster"]["nodes"].__setitem__("Zeta", d["cluster"]["nodes"].pop("zeta")),
                            "cluster.nodes.Zeta: 'Zeta' is not a valid hostname"),
    # node IPs
    "invalid ip": (_set(f"{N}.beta.ip", "192.168.6.10.8"), "cluster.nodes.beta.ip: '192.168.6.10.8' is not an IPv4 address"),
    "ip not a string": (_set(f"{N}.beta.ip", 12), "cluster.nodes.beta.ip: int 12 is not an IPv4 address"),
    "duplicate ip": (_set(f"{N}.beta.ip", "192.168.10.6"), "cluster.nodes.beta.ip: 192.168.10.6 is also the address of alpha"),
    "ip outside subnet": (_set(f"{N}.delta.ip", "192.168.11.21"), "cluster.nodes.delta.ip: 192.168.11.21 is outside the subnet"),
    "ip is network address": (_set(f"{N}.delta.ip", "192.168.10.0"), "cluster.nodes.delta.ip: 192.168.10.0 is the network address"),
    "ip is broadcast": (_set(f"{N}.delta.ip", "192.168.10.255"), "cluster.nodes.delta.ip: 192.168.10.255 is the broadcast address"),
    "ip is gateway": (_set(f"{N}.delta.ip", "192.168.10.1"), "cluster.nodes.delta.ip: 192.168.10.1 is the gateway address"),
    "ip in pool": (_set(f"{N}.delta.ip", "192.168.10.220"), "cluster.nodes.delta.ip: 192.168.10.220 is inside the DHCP pool"),
    "ip is vip": (_set(f"{N}.delta.ip", "192.168.10.111"), "cluster.nodes.delta.ip: 192.168.10.111 is the VIP"),
    # VIP
    "vip outside subnet": (_set("cluster.network.vip", "10.0.0.1"), "cluster.network.vip: 10.0.0.1 is outside the subnet"),
    "vip in pool": (_set("cluster.network.vip", "192.168.10.201"), "cluster.network.vip: 192.168.10.201 is inside the DHCP pool"),
    "vip invalid": (_set("cluster.network.vip", "x"), "cluster.network.vip: 'x' is not an IPv4 address"),
    # pool
    "pool reversed": (_set("cluster.network.dhcp_pool", {"start": "192.168.10.240", "end": "192.168.10.200"}),
                      "cluster.network.dhcp_pool: start 192.168.10.240 is after end 192.168.10.200"),
    "pool outside subnet": (_set("cluster.network.dhcp_pool.end", "192.168.11.5"), "cluster.network.dhcp_pool.end: 192.168.11.5 is outside the subnet"),
    "pool missing end": (_set("cluster.network.dhcp_pool.end", DELETE), "cluster.network.dhcp_pool.end: required key is missing"),
    # subnet / gateway
    "subnet invalid": (_set("cluster.network.subnet", "192.168.10.0/33"), "cluster.network.subnet: '192.168.10.0/33' is not an IPv4 network"),
    "subnet host bits": (_set("cluster.network.subnet", "192.168.10.5/24"), "cluster.network.subnet"),
    "gateway outside": (_set("cluster.network.gateway", "192.168.9.1"), "cluster.network.gateway: 192.168.9.1 is outside the subnet"),
    # MACs
    "invalid mac": (_set(f"{N}.gamma.mac", "b8:27:eb:00:00"), "cluster.nodes.gamma.mac: 'b8:27:eb:00:00' is not a MAC address"),
    "duplicate mac": (_set(f"{N}.gamma.mac", "B8:27:EB:00:00:21"), "cluster.nodes.gamma.mac: B8:27:EB:00:00:21 is also the MAC of delta"),
    "multicast mac": (_set(f"{N}.gamma.mac", "01:00:5e:00:00:01"), "cluster.nodes.gamma.mac: 01:00:5e:00:00:01 is a multicast address"),
    # roles
    "unknown role": (_set(f"{N}.zeta.roles", ["compute", "dns"]), "cluster.nodes.zeta.roles: unknown role 'dns'"),
    "empty roles": (_set(f"{N}.zeta.roles", []), "cluster.nodes.zeta.roles: must be a non-empty list"),
    "two deployers": (_set(f"{N}.zeta.roles", ["deployer"]), "cluster.nodes: need exactly 1 deployer node, found 2: psi, zeta"),
    "one lanservices": (_set(f"{N}.beta.roles", ["compute"]), "cluster.nodes: need exactly 2 lanservices nodes, found 1: alpha"),
    "three lanservices": (_set(f"{N}.zeta.roles", ["lanservices"]), "cluster.nodes: need exactly 2 lanservices nodes, found 3"),
    "no compute": (lambda d: [d["cluster"]["nodes"].pop(n) for n in ("delta", "epsilon", "gamma", "zeta")],
                   "cluster.nodes: need at least 1 compute node, found 0"),
    # domain
    "bad domain": (_set("cluster.domain", "dc1..clust0r"), "cluster.domain: 'dc1..clust0r' is not a valid DNS name"),
    "domain with underscore": (_set("cluster.domain", "dc_1.clust0r"), "cluster.domain: 'dc_1.clust0r' is not a valid DNS name"),
    # unknown and missing keys
    "typo in node key": (lambda d: d["cluster"]["nodes"]["alpha"].__setitem__("mca", "x"), "cluster.nodes.alpha.mca: unknown key"),
    "typo in network key": (_set("cluster.network.vipp", "192.168.10.112"), "cluster.network.vipp: unknown key"),
    "unknown top key": (_set("cluster.extra", 1), "cluster.extra: unknown key"),
    "missing mac": (_set(f"{N}.alpha.mac", DELETE), "cluster.nodes.alpha.mac: required key is missing"),
    "missing network": (_set("cluster.network", DELETE), "cluster.network: required key is missing"),
    "missing domain": (_set("cluster.domain", DELETE), "cluster.domain: required key is missing"),
    "no nodes": (_set("cluster.nodes", {}), "cluster.nodes: must be a non-empty mapping"),
    "forwarder invalid": (_set("cluster.network.dns_forwarders", ["1.2.3"]), "cluster.network.dns_forwarders[0]: '1.2.3' is not an IPv4 address"),
    # zero-touch: rebuild mode, the bootstrap router
    "rebuild mode typo": (_set(f"{N}.gamma.rebuild", "automatic"), "cluster.nodes.gamma.rebuild: 'automatic' is not one of manual, auto"),
    "rebuild not a string": (_set(f"{N}.gamma.rebuild", True), "cluster.nodes.gamma.rebuild: bool True is not one of"),
    "router not the gateway": (_set("cluster.network.router", {"ip": "192.168.10.2", "kind": "openwrt"}),
                               "cluster.network.router.ip: 192.168.10.2 is not the gateway 192.168.10.1"),
    "router kind unknown": (_set("cluster.network.router", {"ip": "192.168.10.1", "kind": "mikrotik"}),
                            "cluster.network.router.kind: 'mikrotik' is not one of openwrt, dnsmasq"),
    "router without kind": (_set("cluster.network.router", {"ip": "192.168.10.1"}), "cluster.network.router.kind: required key is missing"),
    "router typo": (_set("cluster.network.router", {"ip": "192.168.10.1", "kind": "openwrt", "knd": 1}),
                    "cluster.network.router.knd: unknown key"),
    "router not a mapping": (_set("cluster.network.router", "192.168.10.1"), "cluster.network.router: must be a mapping"),
    "forwarder is the vip": (_set("cluster.network.dns_forwarders", ["9.9.9.9", "192.168.10.111"]),
                             "cluster.network.dns_forwarders[1]: 192.168.10.111 is the VIP: named would forward to itself"),
    "forwarder is a lanservices node": (_set("cluster.network.dns_forwarders", ["192.168.10.8"]),
                                        "cluster.network.dns_forwarders[0]: 192.168.10.8 is lanservices node beta"),
    # names the zone gives to something else
    **{f"node named {name}": (lambda d, name=name: d["cluster"]["nodes"].__setitem__(name, d["cluster"]["nodes"].pop("zeta")),
                              f"cluster.nodes.{name}: the name '{name}' is reserved")
       for name in ("ns", "salt", "pkgcache", "status", "localhost")},
}


def test_rebuild_defaults_to_manual_and_router_is_optional(inv):
    checked = model.check(inv)
    assert {spec["rebuild"] for spec in checked["nodes"].values()} == {"manual"}
    assert checked["network"]["router"] is None
    inv["cluster"]["nodes"]["gamma"]["rebuild"] = "auto"
    inv["cluster"]["network"]["router"] = {"ip": "192.168.10.1", "kind": "openwrt"}
    checked = model.check(inv)
    assert checked["nodes"]["gamma"]["rebuild"] == "auto" and checked["nodes"]["delta"]["rebuild"] == "manual"
    assert checked["network"]["router"] == {"ip": "192.168.10.1", "kind": "openwrt"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_inventory_is_rejected_naming_the_field(inv, case):
    mutate, expected = CASES[case]
    data = copy.deepcopy(inv)
    mutate(data)
    with pytest.raises(model.InventoryError) as err:
        model.check(data)
    assert any(expected in problem for problem in err.value.problems), err.value.problems


def test_all_problems_are_reported_at_once(inv):
    inv["cluster"]["nodes"]["beta"]["ip"] = "192.168.6.10.8"
    inv["cluster"]["nodes"]["gamma"]["mac"] = "nope"
    problems = model.validate(inv)
    assert len(problems) == 2


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
def test_duplicate_yaml_key_is_rejected(tmp_path, monkeypatch, libyaml):
    if not libyaml:  # a PyYAML built without libyaml: the same check on its own parser
        monkeypatch.delattr(yaml, "CSafeLoader", raising=False)
    text = INVENTORY.read_text(encoding="utf-8")
    dup = text + "    zeta:    {roles: [compute], ip: 192.168.10.25, mac: \"b8:27:eb:00:00:25\"}\n"
    path = tmp_path / "inv.yaml"
    path.write_text(dup, encoding="utf-8")
    with pytest.raises(model.InventoryError, match="duplicate key 'zeta'"):
        model.load_inventory(path)


def test_macs_are_normalised(inv):
    inv["cluster"]["nodes"]["alpha"]["mac"] = "B8-27-EB-00-00-06"
    assert model.check(inv)["nodes"]["alpha"]["mac"] == "b8:27:eb:00:00:06"


def test_a_valid_text_is_validated_once_and_every_change_is_seen(inv, tmp_path, monkeypatch):
    checked, check = [], model.check
    monkeypatch.setattr(model, "check", lambda data: checked.append(1) or check(data))
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(inv), encoding="utf-8")
    first = model.load_inventory(path)
    first["cluster"]["nodes"].clear()  # a copy: the next caller gets the inventory whole
    assert sorted(model.load_inventory(path)["cluster"]["nodes"]) == sorted(inv["cluster"]["nodes"])
    assert len(checked) == 1
    inv["cluster"]["nodes"]["beta"]["ip"] = "192.168.10.9"
    path.write_text(yaml.safe_dump(inv), encoding="utf-8")
    assert model.load_inventory(path)["cluster"]["nodes"]["beta"]["ip"] == "192.168.10.9"
    inv["cluster"]["nodes"]["beta"]["ip"] = "192.168.6.10.8"
    path.write_text(yaml.safe_dump(inv), encoding="utf-8")
    for _ in range(2):  # an invalid text fails every time, naming the field
        with pytest.raises(model.InventoryError, match=r"cluster\.nodes\.beta\.ip"):
            model.load_inventory(path)
    assert len(checked) == 4


def test_yaml_errors_name_the_file(tmp_path):
    path = tmp_path / "inv.yaml"
    path.write_text("cluster: [1\n", encoding="utf-8")
    with pytest.raises(model.InventoryError, match=f'(?s)not valid YAML: .*in "{re.escape(str(path))}", line 1'):
        model.load_inventory(path)


def _script(*args):
    # from another directory: the script finds the model of its own checkout
    return subprocess.run(
        [sys.executable, str(REPO / "bootstrap" / "validate-inventory"), *args],
        capture_output=True, text=True, check=False, cwd="/",
    )


def test_validate_inventory_script_ok():
    proc = _script(str(INVENTORY))
    assert proc.returncode == 0
    assert proc.stdout == "OK: 7 nodes\n"


def test_validate_inventory_script_names_the_field(inv, tmp_path):
    inv["cluster"]["nodes"]["beta"]["ip"] = "192.168.6.10.8"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(inv), encoding="utf-8")
    proc = _script(str(path))
    assert proc.returncode == 1
    assert proc.stdout == "cluster.nodes.beta.ip: '192.168.6.10.8' is not an IPv4 address\n"


def test_validate_inventory_script_missing_file(tmp_path):
    proc = _script(str(tmp_path / "nope.yaml"))
    assert proc.returncode == 1
    assert "cannot read" in proc.stdout
