"""The cluster model's derived views (rpicluster.views), from the project inventory, and the node
view each minion gets as its ``node`` pillar."""

import pytest

from rpicluster import model, views
from tests.conftest import INVENTORY

INV = model.load_inventory(INVENTORY)


def test_nodes_are_ordered_by_ip_not_by_mapping_order():
    reordered = {"cluster": dict(INV["cluster"], nodes=dict(reversed(list(INV["cluster"]["nodes"].items()))))}
    assert views.nodes(reordered) == ["alpha", "beta", "psi", "delta", "epsilon", "gamma", "zeta"]
    assert views.nodes(reordered, "compute") == ["delta", "epsilon", "gamma", "zeta"]


def test_views_take_the_inventory_or_the_document_holding_it():
    for inv in (INV, INV["cluster"]):
        assert views.nodes(inv, "deployer") == ["psi"]
        assert views.lanservices(inv) == {"primary": "alpha", "secondary": "beta"}
        assert views.deployer(inv) == "psi"
        assert views.k3s_server(inv) == "delta"
        assert views.roles(inv, "beta") == ["lanservices"]
        assert views.roles(inv, "stranger") == []


def test_primary_is_the_lower_ip_whatever_the_names():
    inv = {"cluster": {**INV["cluster"], "nodes": {**INV["cluster"]["nodes"]}}}
    inv["cluster"]["nodes"]["beta"] = {**inv["cluster"]["nodes"]["beta"], "ip": "192.168.10.3"}
    assert views.lanservices(inv) == {"primary": "beta", "secondary": "alpha"}
    assert views.node_view(inv, "beta")["pair_role"] == "primary"
    assert views.node_view(inv, "alpha")["peer"] == {"name": "beta", "fqdn": "beta.dc1.b3rry.clust0r",
                                                     "ip": "192.168.10.3"}


def test_unknown_role_and_node_are_errors():
    with pytest.raises(model.CommandExecutionError, match="unknown role 'dns'"):
        views.nodes(INV, "dns")
    with pytest.raises(model.CommandExecutionError, match="'omega' is not a node"):
        views.node(INV, "omega")
    with pytest.raises(model.CommandExecutionError, match="'omega' is not a node"):
        views.node_view(INV, "omega")


def test_node():
    assert views.node(INV, "alpha") == {
        "name": "alpha", "fqdn": "alpha.dc1.b3rry.clust0r", "ip": "192.168.10.6",
        "mac": "b8:27:eb:00:00:06", "roles": ["lanservices"], "model": "Raspberry Pi Model B Plus Rev 1.2",
        "rebuild": "manual",
    }


def test_forward_records_cover_every_node_the_vip_and_deployer_services():
    records = views.dns_records(INV)
    a = {r["name"]: r["value"] for r in records if r["type"] == "A"}
    assert a == {
        "alpha": "192.168.10.6", "beta": "192.168.10.8", "psi": "192.168.10.10", "delta": "192.168.10.21",
        "epsilon": "192.168.10.22", "gamma": "192.168.10.23", "zeta": "192.168.10.24", "ns": "192.168.10.111",
    }
    cnames = {r["name"]: r["value"] for r in records if r["type"] == "CNAME"}
    assert cnames == {"salt": "psi", "pkgcache": "psi", "status": "psi"}


def test_reverse_zone_and_records():
    assert views.reverse_zone(INV) == "10.168.192.in-addr.arpa"
    ptr = {r["name"]: r["value"] for r in views.reverse_records(INV)}
    assert ptr["6"] == "alpha.dc1.b3rry.clust0r."
    assert ptr["111"] == "ns.dc1.b3rry.clust0r."
    assert ptr["24"] == "zeta.dc1.b3rry.clust0r."
    assert len(ptr) == 8


def test_reverse_zone_of_a_16():
    inv = {"cluster": {**INV["cluster"], "network": {**INV["cluster"]["network"], "subnet": "10.20.0.0/16"}}}
    assert views.reverse_zone(inv) == "20.10.in-addr.arpa"


def test_dhcp_reservations_one_per_node_by_mac():
    res = views.dhcp_reservations(INV)
    assert res[0] == {"name": "alpha", "mac": "b8:27:eb:00:00:06", "ip": "192.168.10.6"}
    assert len(res) == 7
    assert len({r["mac"] for r in res}) == 7


def test_roster_entries():
    roster = views.roster(INV, user="piclust", sudo=True, priv="/k")
    assert roster["delta"] == {"host": "192.168.10.21", "user": "piclust", "sudo": True, "priv": "/k"}
    assert list(roster) == views.nodes(INV)


def test_hosts_entries():
    entries = views.hosts_entries(INV)
    assert entries[0] == {"ip": "192.168.10.6", "names": ["alpha.dc1.b3rry.clust0r", "alpha"]}


def _brief(name, ip):
    return {"name": name, "fqdn": f"{name}.dc1.b3rry.clust0r", "ip": ip}


def test_node_view_of_the_primary():
    view = views.node_view(INV, "alpha")
    assert {k: view[k] for k in ("name", "fqdn", "ip", "mac", "roles", "model", "rebuild")} == views.node(INV, "alpha")
    assert view["pair_role"] == "primary"
    assert view["peer"] == _brief("beta", "192.168.10.8")
    assert view["pair"] == {"primary": _brief("alpha", "192.168.10.6"), "secondary": _brief("beta", "192.168.10.8")}
    assert view["deployer"] == _brief("psi", "192.168.10.10")
    assert view["k3s_server"] == _brief("delta", "192.168.10.21")
    assert [c["name"] for c in view["compute"]] == ["delta", "epsilon", "gamma", "zeta"]
    assert [h["name"] for h in view["hosts"]] == views.nodes(INV)
    assert view["hosts"][2] == views.node(INV, "psi")
    forward, reverse = view["dns"]["zones"]
    assert forward == {"name": "dc1.b3rry.clust0r", "records": views.dns_records(INV)}
    assert reverse == {"name": "10.168.192.in-addr.arpa", "records": views.reverse_records(INV)}
    assert view["dhcp"] == {"reservations": views.dhcp_reservations(INV)}


def test_node_view_of_the_secondary_and_of_nodes_outside_the_pair():
    beta = views.node_view(INV, "beta")
    assert (beta["pair_role"], beta["peer"]) == ("secondary", _brief("alpha", "192.168.10.6"))
    for name in ("psi", "delta"):
        view = views.node_view(INV, name)
        assert (view["pair_role"], view["peer"]) == ("none", None), name
        # what the pair serves is theirs alone
        assert "dns" not in view and "dhcp" not in view, name
        assert view["pair"] == beta["pair"] and view["compute"] == beta["compute"], name
