"""A real master and minions: grain-targeted roles, idempotency, ID-targeted secrets, the
orchestration order, and an invalid inventory stopping every state run."""

import pytest

from tests.integration.conftest import ROLES, node_root


def _changes(ret):
    assert isinstance(ret, dict), ret
    return {sid: r["changes"] for sid, r in ret.items() if r.get("changes")}


def _roles_applied(integration_dir, name):
    roles_d = node_root(integration_dir, name) / "etc" / "cluster" / "roles.d"
    return sorted(p.name for p in roles_d.iterdir()) if roles_d.is_dir() else []


@pytest.fixture(scope="module")
def highstated(minions, salt_cli):
    ret = salt_cli.run("-L", "state.highstate", minion_tgt="psi,alpha,delta")
    assert ret.returncode == 0, ret
    return ret.data


def test_each_highstate_applies_only_its_roles_states(highstated, integration_dir):
    assert set(highstated) == {"psi", "alpha", "delta"}
    for name in highstated:
        assert _roles_applied(integration_dir, name) == ROLES[name]
        hosts = (node_root(integration_dir, name) / "etc" / "hosts").read_text()
        assert "192.168.10.10\tpsi.dc1.b3rry.clust0r psi" in hosts
    assert _roles_applied(integration_dir, "beta") == []  # not targeted: nothing applied


def test_second_highstate_reports_zero_changes(highstated, salt_cli):
    ret = salt_cli.run("-L", "state.highstate", minion_tgt="psi,alpha,delta")
    assert ret.returncode == 0, ret
    for name, states in ret.data.items():
        assert _changes(states) == {}, name


def test_orchestration_applies_deployer_then_lanservices_then_compute(minions, salt_run_cli, integration_dir):
    ret = salt_run_cli.run("state.orch", "orch.cluster")
    assert ret.returncode == 0, {k: v.get("comment") for k, v in next(iter(ret.data["data"].values())).items()}
    steps = next(iter(ret.data["data"].values()))
    assert all(step["result"] for step in steps.values()), steps
    order = [sid.split("_|-")[1] for sid, _ in sorted(steps.items(), key=lambda kv: kv[1]["__run_num__"])]
    assert order == [
        "orch-cluster-extension-modules-salt-function",  # every node's custom modules, first
        "orch-cluster-deployer-salt-state",
        "orch-cluster-lanservices-primary-salt-state",
        "orch-cluster-lanservices-secondary-salt-state",
        "orch-cluster-compute-k3s-server-salt-state",  # the only compute node: no agents step
        "orch-cluster-router-handover-salt-runner",  # no router in this inventory: nothing to do
        "orch-cluster-mine-update-salt-function",
        "orch-cluster-provisioned-salt-runner",
    ]
    by_id = {sid.split("_|-")[1]: step for sid, step in steps.items()}
    handover = by_id["orch-cluster-router-handover-salt-runner"]["changes"]["return"]
    assert handover["changed"] is False and "no router" in handover["comment"], handover
    starts = [by_id[s]["start_time"] for s in order]
    assert starts == sorted(starts)
    # each step ran on the nodes of its role, as the inventory says
    assert "alpha" in by_id["orch-cluster-lanservices-primary-salt-state"]["comment"]
    assert "beta" not in by_id["orch-cluster-lanservices-primary-salt-state"]["comment"]
    assert "beta" in by_id["orch-cluster-lanservices-secondary-salt-state"]["comment"]
    assert "delta" in by_id["orch-cluster-compute-k3s-server-salt-state"]["comment"]
    assert _roles_applied(integration_dir, "beta") == ["lanservices"]
    # requisite order holds in time too: beta's role marker is newer than alpha's
    marker = lambda n, r: node_root(integration_dir, n) / "etc" / "cluster" / "roles.d" / r  # noqa: E731
    assert marker("alpha", "lanservices").stat().st_mtime <= marker("beta", "lanservices").stat().st_mtime


def test_secrets_follow_the_inventory_not_the_grains(minions, inventory_with_gamma, spawn_minion, salt_cli):
    # gamma is a compute node in the inventory but claims lanservices in its own grains
    spawn_minion("gamma", ["compute", "lanservices"])
    ret = salt_cli.run("pillar.items", minion_tgt="gamma")
    assert ret.returncode == 0, ret
    assert "cluster" in ret.data
    assert set(ret.data["secrets"]) == {"k3s_token", "mpi_ssh_key", "mpi_ssh_pub"}
    lan = salt_cli.run("pillar.items", minion_tgt="alpha")
    assert set(lan.data["secrets"]) == {"tsig_key", "omapi_key", "vrrp_password"}
    deployer = salt_cli.run("pillar.items", minion_tgt="psi")
    assert set(deployer.data["secrets"]) == {"redis_password"}


def test_a_minion_outside_the_inventory_gets_no_pillar(minions, spawn_minion, salt_cli):
    spawn_minion("rogue", ["lanservices"])
    ret = salt_cli.run("pillar.items", minion_tgt="rogue")
    assert ret.returncode == 0, ret
    assert ret.data == {}


def test_invalid_inventory_makes_a_highstate_change_nothing(minions, salt_cli, integration_dir, broken_inventory):
    hosts = node_root(integration_dir, "alpha") / "etc" / "hosts"
    # drifted on the node itself (its files are its minion's mount namespace)
    ret = salt_cli.run("cmd.run", "printf 'drifted\\n' > /etc/hosts", "python_shell=True", minion_tgt="alpha")
    assert ret.returncode == 0, ret
    assert hosts.read_text() == "drifted\n"
    ret = salt_cli.run("state.highstate", minion_tgt="alpha")
    assert ret.returncode != 0
    assert broken_inventory in "\n".join(ret.data)
    assert hosts.read_text() == "drifted\n"  # the drift was NOT corrected: nothing ran
