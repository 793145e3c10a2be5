"""The rebuild decisions of the cluster runner (_runners/cluster.py): what a started minion
needs (build_plan), the per-node build lock and the provisioned records. Pure logic over a
scratch master cache directory and the project inventory; minion calls are stubbed."""

import json

import pytest
import yaml

from tests.conftest import INVENTORY, REPO, STATE_TREE, load_by_path


@pytest.fixture
def runner(tmp_path, monkeypatch):
    module = load_by_path("cluster_runner_under_test", REPO / "_runners" / "cluster.py")
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(INVENTORY.read_text(encoding="utf-8"), encoding="utf-8")
    module.__opts__ = {
        "cachedir": str(tmp_path / "cache"),
        "cluster_inventory": str(inventory),
        "file_roots": {"base": [str(STATE_TREE)]},
    }
    module.__context__ = {}
    calls = []

    def fake_call(tgt, fun, arg=(), timeout=30, tgt_type="glob"):
        calls.append((tgt, fun, list(arg)))
        if fun == "grains.setval":
            return {n: {arg[0]: arg[1]} for n in tgt.split(",")}
        return {}

    monkeypatch.setattr(module, "_call", fake_call)
    module.calls = calls
    module.inventory_path = inventory
    return module


def test_a_node_outside_the_inventory_is_ignored(runner):
    plan = runner.build_plan("mallory")
    assert plan["action"] == "ignore" and "inventory" in plan["reason"]


def test_a_provisioned_minion_that_restarts_only_refreshes(runner):
    plan = runner.build_plan("gamma", provisioned="2026-12-01T10:00:00+00:00")
    assert plan["action"] == "refresh"


def test_a_never_provisioned_node_waits_for_the_rollout_or_the_admin(runner):
    plan = runner.build_plan("gamma")
    assert plan["action"] == "ignore"
    assert "orch.cluster" in plan["reason"] and "cluster.rebuild" in plan["reason"]


def test_a_reflashed_node_is_built_without_touching_its_dependents(runner):
    assert runner.mark_provisioned(["gamma"])["gamma"]
    assert runner.calls[-1][1:] == ("grains.setval", ["cluster_provisioned", runner.calls[-1][2][1]])
    plan = runner.build_plan("gamma", provisioned=None)  # the re-flashed card carries no marker
    assert plan["action"] == "build" and "re-flashed" in plan["reason"]
    assert plan["roles"] == ["compute"] and plan["survivor"] is None
    assert plan["dependents"] == []  # same inventory entry: nothing else to refresh


def test_a_changed_inventory_entry_refreshes_dns_dhcp_and_the_host_lists(runner):
    runner.mark_provisioned(["gamma"])
    data = yaml.safe_load(runner.inventory_path.read_text(encoding="utf-8"))
    data["cluster"]["nodes"]["gamma"]["ip"] = "192.168.10.29"
    runner.inventory_path.write_text(yaml.safe_dump(data), encoding="utf-8")
    deps = {d["name"]: d for d in runner.build_plan("gamma")["dependents"]}
    assert deps["dns-dhcp"]["tgt"] == ["alpha", "beta"] and deps["dns-dhcp"]["sls"] == ["bind", "dhcpd"]
    assert "gamma" not in deps["compute-hosts"]["tgt"] and len(deps["compute-hosts"]["tgt"]) == 3
    assert deps["distcc-client"]["tgt"] == ["psi"]


def test_a_rebuilt_lanservices_peer_names_its_survivor(runner):
    runner._write("requested", "beta", {"time": runner._now()})  # noqa: SLF001
    plan = runner.build_plan("beta")
    assert plan["action"] == "build" and "asked for" in plan["reason"]
    assert plan["survivor"] == "alpha"
    assert runner.build_plan("alpha", provisioned=None)["action"] == "ignore"


def test_mark_provisioned_clears_the_request_and_the_failure(runner):
    runner._write("requested", "delta", {"time": runner._now()})  # noqa: SLF001
    runner.build_unlock("delta", failed=True)
    runner.mark_provisioned("delta")
    assert runner._read("requested", "delta") is None and runner._read("failed", "delta") is None  # noqa: SLF001
    record = runner._read("provisioned", "delta")  # noqa: SLF001
    assert record["entry"]["roles"] == ["compute"]


def test_mark_provisioned_fails_when_a_node_does_not_answer(runner, monkeypatch):
    monkeypatch.setattr(runner, "_call", lambda *a, **k: {"gamma": {"cluster_provisioned": "x"}})
    out = runner.mark_provisioned(["gamma", "zeta"])
    assert "zeta" in out and runner.__context__["retcode"] == 1
    assert runner._read("provisioned", "zeta") is None  # noqa: SLF001


def test_one_build_per_node(runner):
    first = runner.build_lock("gamma", owner="orch-1", wait=0)
    assert first["owner"] == "orch-1"
    refused = runner.build_lock("gamma", owner="orch-2", wait=0)
    assert isinstance(refused, str) and "already being built" in refused
    assert runner.__context__["retcode"] == 1
    assert runner.build_lock("gamma", owner="orch-1", wait=0)["owner"] == "orch-1"  # re-entrant
    # only the owner releases it
    assert "no build lock" in runner.build_unlock("gamma", owner="orch-2")
    assert runner.building()["gamma"]["owner"] == "orch-1"
    assert "released" in runner.build_unlock("gamma", owner="orch-1")
    assert runner.building() == {}


def test_at_most_two_builds_at_once(runner):
    assert runner.build_lock("gamma", owner="a", wait=0)["node"] == "gamma"
    assert runner.build_lock("zeta", owner="b", wait=0)["node"] == "zeta"
    third = runner.build_lock("delta", owner="c", wait=0)
    assert isinstance(third, str) and "2 builds in progress" in third
    runner.build_unlock("zeta", owner="b")
    assert runner.build_lock("delta", owner="c", wait=0)["node"] == "delta"


def test_an_expired_lock_frees_its_node(runner):
    runner.build_lock("gamma", owner="dead-orchestration", ttl=-1, wait=0)
    assert runner.build_lock("gamma", owner="new", wait=0)["owner"] == "new"


def test_the_lock_records_are_json_files_under_the_master_cache(runner, tmp_path):
    runner.build_lock("gamma", owner="o", wait=0)
    lock = json.loads((tmp_path / "cache" / "cluster" / "locks" / "gamma").read_text())
    assert lock["owner"] == "o" and lock["expires"] > 0


def test_a_rebuilt_k3s_agent_makes_the_server_forget_its_old_node(runner, monkeypatch, tmp_path):
    tree = tmp_path / "tree"
    (tree / "k3s" / "files" / "artifacts").mkdir(parents=True)
    (tree / "k3s" / "files" / "artifacts" / "k3s").write_bytes(b"\x7fELF")
    runner.__opts__["file_roots"]["base"].append(str(tree))
    monkeypatch.setattr(runner, "_call", lambda tgt, fun, arg=(), **k: {tgt: "new-machine-id"} if arg == ["machine_id"] else {})
    runner._write("requested", "gamma", {"time": runner._now()})  # noqa: SLF001
    plan = runner.build_plan("gamma")
    assert plan["k3s_server"] == "delta" and plan["machine_id"] == "new-machine-id"
    runner._write("requested", "delta", {"time": runner._now()})  # noqa: SLF001
    assert runner.build_plan("delta")["k3s_server"] is None  # the server itself has no one to ask


def test_without_the_k3s_artifact_no_rejoin_step(runner):
    runner._write("requested", "gamma", {"time": runner._now()})  # noqa: SLF001
    assert runner.build_plan("gamma")["k3s_server"] is None


def test_the_deployer_is_not_rebuilt_by_itself(runner):
    out = runner.rebuild("psi")
    assert "bootstrap/deployer" in out["comment"] and out["result"] is False
    assert out["retcode"] == 1 and runner.__context__["retcode"] == 1  # salt-run exits 1


def test_an_unknown_node_is_refused_before_anything_runs(runner, monkeypatch):
    monkeypatch.setattr(runner, "_host_keys", lambda *a, **k: pytest.fail("no SSH contact for an unknown node"))
    out = runner.rebuild("mallory")
    assert "not a node of the inventory" in out["comment"] and out["retcode"] == 1


def test_orchestration_failures_name_the_step_and_what_the_runner_said():
    module = load_by_path("cluster_runner_failures", REPO / "_runners" / "cluster.py")
    ret = {"data": {"m_master": {
        "salt_|-orch-rebuild-gamma-lock-salt-runner_|-cluster.build_lock_|-runner": {
            "result": False, "comment": "Runner function 'cluster.build_lock' failed.",
            "changes": {"return": "gamma is already being built (since x): not building it twice"}},
        "salt_|-orch-rebuild-gamma-highstate-salt-state_|-h_|-state": {
            "result": False, "comment": "One or more requisite failed: lock", "changes": {}},
    }}}
    failures = module._orchestration_failures(ret)  # noqa: SLF001
    assert failures == [
        "orch-rebuild-gamma-lock-salt-runner: Runner function 'cluster.build_lock' failed. "
        "gamma is already being built (since x): not building it twice"
    ]
    assert module._orchestration_failures({"data": {"m": ["Rendering SLS failed"]}})[0].startswith(  # noqa: SLF001
        "the orchestration did not run"
    )
