"""The cluster ext_pillar (_pillar/cluster.py): each inventory node's ``cluster`` and ``node``
pillar from one validated load, nothing for other minions, an invalid inventory an error
naming the field."""

import pytest
import yaml

from rpicluster import model, views
from tests.conftest import INVENTORY, PILLAR_TREE, REPO, load_by_path

ext = load_by_path("cluster_ext_pillar", REPO / "_pillar" / "cluster.py")


@pytest.fixture
def configure_loader_modules():
    return {ext: {"__opts__": {"cluster_inventory": str(INVENTORY)}}}


def test_the_module_loads_as_cluster():
    assert ext.__virtual__() == "cluster"


def test_an_inventory_node_gets_the_inventory_and_its_own_view():
    got = ext.ext_pillar("beta", {})
    assert set(got) == {"cluster", "node"}
    assert got["cluster"] == model.load_inventory(INVENTORY)["cluster"]
    assert got["node"] == views.node_view(got["cluster"], "beta")
    assert (got["node"]["pair_role"], got["node"]["peer"]["name"]) == ("secondary", "alpha")


def test_a_minion_outside_the_inventory_gets_nothing():
    assert ext.ext_pillar("rogue", {}) == {}
    assert ext.ext_pillar("alpha_master", {}) == {}  # the master's own minion (orchestration)


def test_an_invalid_inventory_fails_for_every_minion_naming_the_field(tmp_path):
    inv = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))
    inv["cluster"]["nodes"]["beta"]["ip"] = "192.168.6.10.8"
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv), encoding="utf-8")
    for minion in ("alpha", "beta", "rogue"):
        with pytest.raises(model.InventoryError, match=r"cluster\.nodes\.beta\.ip: '192\.168\.6\.10\.8' is not an IPv4 address"):
            ext.ext_pillar(minion, {}, inventory=str(path))


def test_the_inventory_is_the_configured_one_else_the_pillar_root_s(monkeypatch, tmp_path):
    inv = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))
    inv["cluster"]["domain"] = "elsewhere.test"
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv), encoding="utf-8")
    monkeypatch.setitem(ext.__opts__, "cluster_inventory", str(path))
    assert ext.ext_pillar("psi", {})["node"]["fqdn"] == "psi.elsewhere.test"
    monkeypatch.setitem(ext.__opts__, "cluster_inventory", "")
    monkeypatch.setitem(ext.__opts__, "pillar_roots", {"base": [str(tmp_path / "none"), str(PILLAR_TREE)]})
    assert ext.ext_pillar("psi", {})["node"]["fqdn"] == "psi.dc1.b3rry.clust0r"
    monkeypatch.setitem(ext.__opts__, "pillar_roots", {"base": [str(tmp_path / "none")]})
    with pytest.raises(model.InventoryError, match="no inventory: set cluster_inventory"):
        ext.ext_pillar("psi", {})


def _pillar_top(opts):
    """pillar/top.sls's ``run()`` with master config ``opts`` (a #!py file: plain Python)."""
    source = (PILLAR_TREE / "top.sls").read_text(encoding="utf-8").split("\n", 1)[1]
    namespace = {"__opts__": opts, "__file__": str(PILLAR_TREE / "top.sls")}
    exec(compile(source, str(PILLAR_TREE / "top.sls"), "exec"), namespace)  # noqa: S102 - the project's own file
    return namespace["run"]()["base"]


def test_the_pillar_top_has_a_target_per_role_list_never_one_per_node(tmp_path):
    # Salt matches every target of the top in every pillar render: their number must not grow
    # with the inventory. Each node's own key comes with the all-nodes list.
    secrets_dir = tmp_path / "secrets"
    top = _pillar_top({"cluster_inventory": str(INVENTORY), "cluster_secrets_dir": str(secrets_dir)})
    every = ",".join(views.nodes(model.load_inventory(INVENTORY)))
    assert top == {every: [{"match": "list"}, "cluster", "secrets.minion_key"]}
    secrets_dir.mkdir()
    top = _pillar_top({"cluster_inventory": str(INVENTORY), "cluster_secrets_dir": str(secrets_dir)})
    assert len(top) == 1 + 3 and all(target[0] == {"match": "list"} for target in top.values())
    assert [sls for target in top.values() for sls in target[1:]] == [
        "cluster", "secrets.minion_key", "secrets.deployer", "secrets.lanservices", "secrets.compute"]
