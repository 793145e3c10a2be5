"""Zero-touch rebuild decisions of the cluster runner: what a DHCP lease for an inventory node
means (cluster.zero_touch_decision, cluster.dhcp_lease). Minion calls and the rebuild itself
are stubbed; the records live in a scratch master cache."""

import pytest
import yaml

from tests.unit.test_rebuild_plan import runner  # noqa: F401  (the fixture)


@pytest.fixture
def inv(runner):  # noqa: F811
    return runner.inventory()


def _decide(runner, inv, node, connected=(), last=None, now=10_000):  # noqa: F811
    return runner.zero_touch_decision(node, inv, list(connected), last, now)


def test_decisions(runner, inv):  # noqa: F811
    assert _decide(runner, inv, "mallory")[0] == "ignore"
    assert _decide(runner, inv, "psi") == ("ignore", "psi is the deployer: bootstrap/deployer rebuilds it")
    assert _decide(runner, inv, "gamma", connected=["gamma"])[0] == "ignore"
    action, why = _decide(runner, inv, "gamma")
    assert action == "wait" and "salt-run cluster.rebuild gamma" in why
    inv["nodes"]["gamma"]["rebuild"] = "auto"
    assert _decide(runner, inv, "gamma") == ("rebuild", "gamma's minion is gone and it has rebuild: auto")
    assert _decide(runner, inv, "gamma", connected=["gamma"])[0] == "ignore"  # auto, but alive: a renewal
    action, why = _decide(runner, inv, "gamma", last=10_000 - 60)
    assert action == "ignore" and "started 60 s ago" in why
    assert _decide(runner, inv, "gamma", last=10_000 - runner.ZERO_TOUCH_INTERVAL)[0] == "rebuild"


def _auto(runner, node):  # noqa: F811
    data = yaml.safe_load(runner.inventory_path.read_text())
    data["cluster"]["nodes"][node]["rebuild"] = "auto"
    runner.inventory_path.write_text(yaml.safe_dump(data))


@pytest.fixture
def leases(runner, monkeypatch):  # noqa: F811
    """dhcp_lease with the minion's liveness and the rebuild stubbed: ``alive`` names the
    nodes whose minion answers; ``rebuilt`` lists the rebuilds started."""
    state = {"alive": set(), "rebuilt": []}
    monkeypatch.setattr(runner, "_minion_answers", lambda node: node in state["alive"])
    monkeypatch.setattr(runner, "_rebuild", lambda node, trusted_by: state["rebuilt"].append(node) or {"result": True})
    monkeypatch.setattr(runner, "_progress", lambda message, audit=False: state.setdefault("log", []).append(message))
    return state


def test_a_lease_for_an_auto_node_whose_minion_is_gone_rebuilds_it_once(runner, leases):  # noqa: F811
    _auto(runner, "gamma")
    first = runner.dhcp_lease("gamma", server="alpha", address="192.168.10.23")
    assert first["action"] == "rebuild" and leases["rebuilt"] == ["gamma"]
    assert any("b8:27:eb:00:00:23 (gamma)" in line and "rebuilding" in line for line in leases["log"])
    # the other server's event for the same lease, seconds later: the rate limit drops it
    second = runner.dhcp_lease("gamma", server="beta", address="192.168.10.23")
    assert second["action"] == "ignore" and leases["rebuilt"] == ["gamma"]


def test_a_lease_for_a_manual_node_is_recorded_as_waiting(runner, leases):  # noqa: F811
    ret = runner.dhcp_lease("delta", server="alpha", address="192.168.10.21")
    assert ret["action"] == "wait" and leases["rebuilt"] == []
    assert runner._read("waiting", "delta")["mac"] == "b8:27:eb:00:00:21"


def test_a_renewal_or_an_untrusted_sender_changes_nothing(runner, leases):  # noqa: F811
    _auto(runner, "gamma")
    leases["alive"].add("gamma")
    assert runner.dhcp_lease("gamma", server="alpha")["action"] == "ignore"
    leases["alive"].clear()
    ret = runner.dhcp_lease("gamma", server="zeta")  # a compute minion cannot ask for a rebuild
    assert ret["action"] == "ignore" and "not a lanservices node" in ret["comment"]
    assert leases["rebuilt"] == [] and runner._read("waiting", "gamma") is None
