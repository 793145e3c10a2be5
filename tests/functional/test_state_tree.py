"""The real state tree through the loaders: pillar and rendering in the test's process; common and
the highstate applied in alpha's own files and hostname (tests/functional/nodefs.py): test mode,
idempotency, drift."""

import copy

import yaml
from saltfactories.utils.functional import Loaders, MultiStateResult

import salt.pillar
from rpicluster import model


def _changed(ret):
    return {sid: r["changes"] for sid, r in ret.raw.items() if r["changes"]} if isinstance(ret.raw, dict) else ret


def test_pillar_holds_the_validated_inventory_and_role_secrets(modules):
    pillar = modules.pillar.items(unmask=True)
    assert pillar["cluster"]["nodes"]["alpha"]["ip"] == "192.168.10.6"
    assert set(pillar["secrets"]) == {"tsig_key", "omapi_key", "vrrp_password"}
    assert len(pillar["secrets"]["vrrp_password"]) == 8


def test_the_node_pillar_is_the_model_s_view_of_this_minion(modules):
    node = modules.pillar.items(unmask=True)["node"]
    assert (node["name"], node["pair_role"], node["peer"]["name"]) == ("alpha", "primary", "beta")
    assert [peer["name"] for peer in node["compute"]] == ["delta", "epsilon", "gamma", "zeta"]
    assert [zone["name"] for zone in node["dns"]["zones"]] == ["dc1.b3rry.clust0r", "10.168.192.in-addr.arpa"]
    # the model is the master's: no minion module of it
    assert "cluster.nodes" not in modules


def test_one_pillar_render_validates_the_inventory_once(minion_opts, monkeypatch):
    # pillar top, cluster pillar and ext_pillar all read the inventory: one parse and validation
    checked, check = [], model.check
    monkeypatch.setattr(model, "check", lambda data: checked.append(1) or check(data))
    monkeypatch.setattr(model, "_VALID", {})
    pillar = salt.pillar.get_pillar(minion_opts, {"id": "alpha"}, "alpha", saltenv="base").compile_pillar()
    assert "_errors" not in pillar, pillar["_errors"]
    assert pillar["node"]["name"] == "alpha" and pillar["cluster"]["domain"] == "dc1.b3rry.clust0r"
    assert "deploy" in pillar and "secrets" in pillar
    assert len(checked) == 1


def test_a_minion_outside_the_inventory_gets_no_node_and_the_states_say_why(minion_opts, tmp_path):
    opts = copy.deepcopy(minion_opts)
    opts.update(id="rogue", cachedir=str(tmp_path / "cache"))
    rogue = Loaders(opts, loaded_base_name=f"{__name__}.rogue")
    try:
        pillar = rogue.modules.pillar.items(unmask=True)
        assert "node" not in pillar and "cluster" not in pillar and "_errors" not in pillar
        errors = rogue.modules.state.show_sls("common")
        assert "no node pillar for rogue: is it a node of pillar/cluster/inventory.yaml" in str(errors)
    finally:
        rogue.reset_state()


def _by_id(ret, state_id):
    return next(r for r in ret.raw.values() if r["__id__"] == state_id)


def _twice_and_hostname(apply):
    """In one child of the node (one running node: the hostname a run sets stays for the next):
    ``apply(loaders)`` twice, then the running hostname."""
    def runs(loaders):
        return apply(loaders), apply(loaders), loaders.modules.cmd.run("hostname")
    return runs


def test_common_in_test_mode_changes_nothing(alpha_node):
    ret = alpha_node.sls("common", test=True)
    assert ret.failed is False, ret.raw
    would = [r for r in ret.raw.values() if r["result"] is None]
    assert would, "test mode should report what would change"
    assert _by_id(ret, "common-hostname-cmd-run")["result"] is None  # would set it: not yet
    assert alpha_node.fs.written() == []
    assert not (alpha_node.root / "etc" / "hosts").exists()


def test_common_applies_then_reports_zero_changes(alpha_node):
    first, again, hostname = alpha_node.call(_twice_and_hostname(lambda loaders: loaders.modules.state.sls("common").raw))
    ret, again = MultiStateResult(first), MultiStateResult(again)
    assert ret.failed is False, ret.raw
    hosts = (alpha_node.root / "etc" / "hosts").read_text()
    assert "192.168.10.21\tdelta.dc1.b3rry.clust0r delta\n" in hosts
    assert "192.168.10.111\tns.dc1.b3rry.clust0r ns\n" in hosts
    assert (alpha_node.root / "etc" / "hostname").read_text().strip() == "alpha"
    node = yaml.safe_load((alpha_node.root / "etc" / "cluster" / "node.yaml").read_text())
    assert node["node"]["roles"] == ["lanservices"]
    # the running hostname was the test host's: set, in alpha's own UTS namespace
    run = _by_id(ret, "common-hostname-cmd-run")
    assert run["result"] is True and run["changes"]["retcode"] == 0, run
    assert hostname == "alpha"
    assert {"etc/hosts", "etc/hostname", "etc/cluster/node.yaml"} <= set(alpha_node.fs.written())
    assert again.failed is False
    assert _changed(again) == {}


def test_highstate_applies_the_grain_role_only(alpha_node):
    first, again, _ = alpha_node.call(_twice_and_hostname(lambda loaders: loaders.modules.state.highstate().raw))
    ret = MultiStateResult(first)
    assert ret.failed is False, ret.raw
    roles_d = alpha_node.root / "etc" / "cluster" / "roles.d"
    assert sorted(p.name for p in roles_d.iterdir()) == ["lanservices"]
    assert "in_inventory: True" in (roles_d / "lanservices").read_text()
    assert _changed(MultiStateResult(again)) == {}


def test_a_drifted_file_is_put_back(alpha_node):
    hosts = alpha_node.root / "etc" / "hosts"  # alpha's own file (its upper layer): no child runs now
    hosts.write_text("127.0.0.1 localhost\n")
    ret = alpha_node.sls("common")
    assert "common-hosts-file-managed" in "".join(_changed(ret))
    assert "alpha.dc1.b3rry.clust0r" in hosts.read_text()
