"""The cluster model's derived views, from the project inventory and from pillar."""

import pytest

from tests.conftest import INVENTORY, REPO, load_by_path

model = load_by_path("cluster_model_views", REPO / "_modules" / "cluster.py")
INV = model.load_inventory(INVENTORY)


@pytest.fixture
def configure_loader_modules():
    # as an execution module, the functions read the inventory from the 'cluster' pillar
    return {model: {"__pillar__": dict(INV)}}


def test_nodes_are_ordered_by_ip_not_by_mapping_order():
    reordered = {"cluster": dict(INV["cluster"], nodes=dict(reversed(list(INV["cluster"]["nodes"].items()))))}
    assert model.nodes(inventory=reordered) == ["alpha", "beta", "psi", "delta", "epsilon", "gamma", "zeta"]
    assert model.nodes("compute", inventory=reordered) == ["delta", "epsilon", "gamma", "zeta"]


def test_views_read_the_pillar_by_default():
    assert model.nodes("deployer") == ["psi"]
    assert model.lanservices() == {"primary": "alpha", "secondary": "beta"}
    assert model.deployer() == "psi"
    assert model.k3s_server() == "delta"
    assert model.roles("beta") == ["lanservices"]
    assert model.roles("stranger") == []


def test_primary_is_the_lower_ip_whatever_the_names():
    inv = {"cluster": {**INV["cluster"], "nodes": {**INV["cluster"]["nodes"]}}}
    inv["cluster"]["nodes"]["beta"] = {**inv["cluster"]["nodes"]["beta"], "ip": "192.168.10.3"}
    assert model.lanservices(inventory=inv) == {"primary": "beta", "secondary": "alpha"}


def test_unknown_role_and_node_are_errors():
    with pytest.raises(model.CommandExecutionError, match="unknown role 'dns'"):
        model.nodes("dns")
    with pytest.raises(model.CommandExecutionError, match="'omega' is not a node"):
        model.node("omega")


def test_node_view():
    assert model.node("alpha") == {
        "name": "alpha", "fqdn": "alpha.dc1.b3rry.clust0r", "ip": "192.168.10.6",
        "mac": "b8:27:eb:00:00:06", "roles": ["lanservices"], "model": "Raspberry Pi Model B Plus Rev 1.2",
        "rebuild": "manual",
    }


def test_forward_records_cover_every_node_the_vip_and_deployer_services():
    records = model.dns_records()
    a = {r["name"]: r["value"] for r in records if r["type"] == "A"}
    assert a == {
        "alpha": "192.168.10.6", "beta": "192.168.10.8", "psi": "192.168.10.10", "delta": "192.168.10.21",
        "epsilon": "192.168.10.22", "gamma": "192.168.10.23", "zeta": "192.168.10.24", "ns": "192.168.10.111",
    }
    cnames = {r["name"]: r["value"] for r in records if r["type"] == "CNAME"}
    assert cnames == {"salt": "psi", "pkgcache": "psi", "status": "psi"}


def test_reverse_zone_and_records():
    assert model.reverse_zone() == "10.168.192.in-addr.arpa"
    ptr = {r["name"]: r["value"] for r in model.reverse_records()}
    assert ptr["6"] == "alpha.dc1.b3rry.clust0r."
    assert ptr["111"] == "ns.dc1.b3rry.clust0r."
    assert ptr["24"] == "zeta.dc1.b3rry.clust0r."
    assert len(ptr) == 8


def test_reverse_zone_of_a_16():
    inv = {"cluster": {**INV["cluster"], "network": {**INV["cluster"]["network"], "subnet": "10.20.0.0/16"}}}
    assert model.reverse_zone(inventory=inv) == "20.10.in-addr.arpa"


def test_dhcp_reservations_one_per_node_by_mac():
    res = model.dhcp_reservations()
    assert res[0] == {"name": "alpha", "mac": "b8:27:eb:00:00:06", "ip": "192.168.10.6"}
    assert len(res) == 7
    assert len({r["mac"] for r in res}) == 7


def test_roster_entries():
    roster = model.roster(user="piclust", sudo=True, priv="/k")
    assert roster["delta"] == {"host": "192.168.10.21", "user": "piclust", "sudo": True, "priv": "/k"}
    assert list(roster) == model.nodes()


def test_hosts_entries():
    entries = model.hosts_entries()
    assert entries[0] == {"ip": "192.168.10.6", "names": ["alpha.dc1.b3rry.clust0r", "alpha"]}


def test_no_pillar_is_a_clear_error():
    saved = model.__pillar__
    try:
        model.__pillar__ = {}
        with pytest.raises(model.CommandExecutionError, match="no 'cluster' pillar"):
            model.nodes()
    finally:
        model.__pillar__ = saved
