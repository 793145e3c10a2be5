"""
Rolling maintenance (issue 12): the order maintenance.plan gives (compute in batches of at most
half the compute nodes, the lanservices node without the VIP first, the deployer last, unknown
names refused), and orch.maintenance rendered by Salt's own Jinja renderer from that plan:
every step requires the one before, a lanservices node is drained before it goes down and put
back before its health gate, and the deployer's reboot is the last step.
"""

import copy

import pytest
import yaml

import salt.config
import salt.utils.templates
from tests.conftest import INVENTORY, REPO, load_by_path

maintenance = load_by_path("maintenance_runner", REPO / "_runners" / "maintenance.py")
cluster = load_by_path("cluster_runner_for_maintenance", REPO / "_runners" / "cluster.py")
ORCH = REPO / "salt" / "orch" / "maintenance.sls"


@pytest.fixture
def opts(tmp_path):
    return dict(copy.deepcopy(salt.config.DEFAULT_MASTER_OPTS), cluster_inventory=str(INVENTORY),
                cachedir=str(tmp_path), conf_file=str(tmp_path / "master"),
                file_roots={"base": [str(REPO / "salt")]})


@pytest.fixture
def vip_on(monkeypatch):
    """Who holds the VIP, as vip.held answers."""
    holder = {"name": "alpha"}

    def fake_call(tgt, fun, arg=(), timeout=30, tgt_type="list"):
        assert fun == "vip.held"
        return {n: n == holder["name"] for n in tgt}

    monkeypatch.setattr(maintenance, "_call", fake_call)
    return holder


@pytest.fixture
def configure_loader_modules(opts):
    runners = {name: getattr(cluster, name) for name in ("nodes", "lanservices", "inventory")}
    ctx = {"__opts__": opts, "__context__": {}}
    return {cluster: ctx, maintenance: dict(ctx, __salt__={f"cluster.{k}": v for k, v in runners.items()})}


def test_the_whole_cluster(vip_on):
    plan = maintenance.plan()
    assert plan == {
        "compute": [["delta", "epsilon"], ["gamma", "zeta"]],  # 4 compute nodes: batches of 2
        "lanservices": ["beta", "alpha"],  # alpha holds the VIP: beta goes first
        "deployer": ["psi"],
        "unknown": [],
    }


def test_the_vip_holder_goes_last_and_a_subset_keeps_the_batch_size(vip_on):
    vip_on["name"] = "beta"
    plan = maintenance.plan(nodes=["zeta", "beta", "alpha", "delta", "nosuch"])
    assert plan["compute"] == [["delta", "zeta"]]
    assert plan["lanservices"] == ["alpha", "beta"]
    assert plan["deployer"] == [] and plan["unknown"] == ["nosuch"]


def render(plan, pillar):
    """orch.maintenance through Salt's Jinja renderer, then YAML: [(state id, body)] in order."""
    opts = dict(copy.deepcopy(salt.config.DEFAULT_MASTER_OPTS), file_roots={"base": [str(REPO / "salt")]})
    context = {
        "salt": {"saltutil.runner": lambda fun, **kw: copy.deepcopy(plan)},
        "pillar": pillar, "opts": opts, "saltenv": "base", "sls": "orch.maintenance",
    }
    out = salt.utils.templates.render_jinja_tmpl(ORCH.read_text(), context)
    return list((yaml.safe_load(out) or {}).items())


PLAN = {"compute": [["delta", "epsilon"], ["gamma", "zeta"]], "lanservices": ["beta", "alpha"],
        "deployer": ["psi"], "unknown": []}


def test_the_orchestration_is_one_chain_in_the_plans_order():
    steps = render(PLAN, {})
    ids = [sid for sid, _ in steps]
    assert ids == [
        "orch-maintenance-compute-1-upgrade-salt-function",
        "orch-maintenance-compute-1-reboot-salt-runner",
        "orch-maintenance-compute-1-delta-healthy-salt-runner",
        "orch-maintenance-compute-1-epsilon-healthy-salt-runner",
        "orch-maintenance-compute-2-upgrade-salt-function",
        "orch-maintenance-compute-2-reboot-salt-runner",
        "orch-maintenance-compute-2-gamma-healthy-salt-runner",
        "orch-maintenance-compute-2-zeta-healthy-salt-runner",
        "orch-maintenance-beta-drain-salt-runner",
        "orch-maintenance-beta-upgrade-salt-function",
        "orch-maintenance-beta-reboot-salt-runner",
        "orch-maintenance-beta-undrain-salt-runner",
        "orch-maintenance-beta-beta-healthy-salt-runner",
        "orch-maintenance-alpha-drain-salt-runner",
        "orch-maintenance-alpha-upgrade-salt-function",
        "orch-maintenance-alpha-reboot-salt-runner",
        "orch-maintenance-alpha-undrain-salt-runner",
        "orch-maintenance-alpha-alpha-healthy-salt-runner",
        "orch-maintenance-psi-upgrade-salt-function",
        "orch-maintenance-psi-reboot-salt-function",
    ]
    for (_, body), (before, _) in zip(steps[1:], steps, strict=False):
        ((_, args),) = body.items()
        requires = [r for item in args if isinstance(item, dict) and "require" in item for r in item["require"]]
        assert requires == [{"salt": before}], (body, before)
    ((fun, args),) = steps[-1][1].items()
    assert fun == "salt.function" and {"arg": ["sleep 10; systemctl reboot"]} in args
    # after a reboot the gate also wants the clock synchronised (a rebuild's gate does not ask)
    gates = [args for sid, body in steps if sid.endswith("-healthy-salt-runner") for args in body.values()]
    assert len(gates) == 6 and all({"clock": True} in args for args in gates)


def test_without_reboot_or_upgrade_and_unknown_nodes():
    ids = [sid for sid, _ in render(PLAN, {"reboot": False, "upgrade": False})]
    assert not [i for i in ids if "reboot" in i or "upgrade" in i]
    assert ids.index("orch-maintenance-alpha-drain-salt-runner") < ids.index("orch-maintenance-alpha-undrain-salt-runner")
    refused = render(dict(PLAN, unknown=["nosuch"]), {"nodes": ["nosuch"]})
    assert [sid for sid, _ in refused] == ["orch-maintenance-unknown-nodes-test-fail-without-changes"]
