"""Self-healing on a real master and minions: the reactor on ``salt/minion/*/start`` hands the
minion ID to ``orch.rebuild``, which ignores a node never provisioned, only refreshes a
provisioned one, rebuilds a re-flashed one (master record, no marker grain) under a per-node
lock; and ``orch.cluster`` rolls out in order and stops at the first failing step.

Jobs and orchestration runs are observed on the master's event bus (salt-factories' event
listener): a highstate is a ``salt/job/<jid>/new`` event with ``fun: state.highstate``; a
reaction's orchestration ends with a ``salt/run/<jid>/ret`` event of its orchestrate runner
whose pillar names the node. Every wait is bounded.
"""

import json
import pathlib
import shutil
import time

import pytest

import salt.config
import salt.utils.event
from tests.integration.conftest import NODES, node_root

GRAIN = "cluster_provisioned"
WAIT = 120  # s: the longest any one wait may take (a minion restart plus a build is ~15 s)


# --- observing the master --------------------------------------------------------------


def _events(event_listener, salt_master, pattern, after):
    found = event_listener.get_events([(salt_master.id, pattern)], after_time=after)
    return sorted(found, key=lambda e: e.stamp)


def _highstates(event_listener, salt_master, node, after):
    """jids of the highstate jobs published to ``node`` since ``after``."""
    return [
        e.data["jid"]
        for e in _events(event_listener, salt_master, "salt/job/*/new", after)
        if e.data.get("fun") == "state.highstate" and node in (e.data.get("minions") or [])
    ]


def _rebuild_runs(event_listener, salt_master, node, after):
    """The returns of the orch.rebuild runs for ``node`` that ended since ``after``."""
    runs = []
    for e in _events(event_listener, salt_master, "salt/run/*/ret", after):
        args = e.data.get("fun_args") or [None]
        # the reaction's runner (state.orchestrate, or cluster.orchestrate beside other builds)
        if not str(e.data.get("fun")).endswith(".orchestrate") or not isinstance(args[0], dict):
            continue
        if args[0].get("mods") == "orch.rebuild" and (args[0].get("pillar") or {}).get("node") == node:
            runs.append(e.data)
    return runs


def _steps(run):
    """{state ID: step result} of an orchestration's return (salt-run --out=json or ret event)."""
    data = run["return"]["data"] if "return" in run else run["data"]
    (steps,) = data.values()  # one master
    assert isinstance(steps, dict), steps  # a render error is a list of strings
    return {sid.split("_|-")[1]: step for sid, step in steps.items()}


def _wait_for(what, check, timeout=WAIT, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(interval)


def _wait_for_runs(event_listener, salt_master, node, after, count=1):
    def ended():
        runs = _rebuild_runs(event_listener, salt_master, node, after)
        return runs if len(runs) >= count else None

    return _wait_for(f"{count} orch.rebuild run(s) for {node}", ended)


def _marker(salt_cli, node):
    ret = salt_cli.run("grains.get", GRAIN, minion_tgt=node)
    assert ret.returncode == 0, ret
    return ret.data


def _record(salt_master, kind, node):
    path = pathlib.Path(salt_master.config["cachedir"]) / "cluster" / kind / node
    return json.loads(path.read_text()) if path.exists() else None


def _fire_start_events(salt_master, *nodes):
    """``salt/minion/<id>/start`` on the master's bus, as a minion without the marker sends it,
    all within milliseconds (what ``salt-run event.send`` does, without a process per event)."""
    opts = salt.config.master_config(salt_master.config_file)
    with salt.utils.event.get_master_event(opts, opts["sock_dir"], listen=False) as bus:
        for node in nodes:
            assert bus.fire_event({"id": node, "grains": {}}, f"salt/minion/{node}/start")


def _restart(factory):
    factory.terminate()
    factory.start(start_timeout=WAIT)


def _forget_builds(salt_cli, salt_master):
    """Nothing provisioned: no marker grain on any minion, no master records or locks."""
    ret = salt_cli.run("-L", "grains.delkey", GRAIN, minion_tgt=",".join(NODES))
    assert ret.returncode == 0, ret
    shutil.rmtree(pathlib.Path(salt_master.config["cachedir"]) / "cluster", ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def clean_slate(minions, salt_master, salt_cli, integration_dir):
    """Start and end with a cluster nobody provisioned; leave no role applied on the nodes (as
    the other modules of this tier expect: nothing applied yet)."""
    _forget_builds(salt_cli, salt_master)
    yield
    _forget_builds(salt_cli, salt_master)
    # on the nodes themselves (their files are their minions' mount namespaces)
    ret = salt_cli.run("-L", "file.remove", "/etc/cluster", minion_tgt=",".join(NODES))
    assert ret.returncode == 0, ret
    for name in NODES:
        assert not (node_root(integration_dir, name) / "etc" / "cluster").exists(), name


@pytest.fixture(scope="module")
def provisioned(clean_slate, salt_run_cli):
    """Every node provisioned, as orch.cluster leaves it (grain + master record): {node: time}.
    Each test below that uses it rebuilds (or restarts) a different node."""
    ret = salt_run_cli.run("cluster.mark_provisioned", f"nodes={','.join(NODES)}")
    assert ret.returncode == 0, ret
    assert set(ret.data) == set(NODES), ret.data
    return ret.data


# --- the reactor ---------------------------------------------------------------------


def test_a_node_never_provisioned_or_outside_the_inventory_is_ignored(
    minions, salt_master, salt_cli, event_listener
):
    after = time.time()
    _restart(minions["beta"])  # a real start event: no marker, and the master never built beta
    _fire_start_events(salt_master, "rogue")  # not a node of the inventory

    for node, reason in (("beta", "never provisioned"), ("rogue", "not a node of the inventory")):
        (run,) = _wait_for_runs(event_listener, salt_master, node, after)
        steps = _steps(run)
        assert list(steps) == [f"orch-rebuild-{node}-nothing-test-succeed-without-changes"], steps
        (step,) = steps.values()
        assert step["result"] is True and reason in step["name"], step
        assert _highstates(event_listener, salt_master, node, after) == []
    assert _marker(salt_cli, "beta") == ""
    assert _record(salt_master, "provisioned", "beta") is None


def test_a_reflashed_node_is_rebuilt_by_the_reactor(minions, provisioned, salt_master, salt_cli, event_listener):
    node = "psi"
    # a re-flashed card: the master provisioned it, the node carries no marker
    ret = salt_cli.run("grains.delkey", GRAIN, minion_tgt=node)
    assert ret.returncode == 0, ret
    assert _marker(salt_cli, node) == ""
    after = time.time()
    _restart(minions[node])

    (run,) = _wait_for_runs(event_listener, salt_master, node, after)
    steps = _steps(run)
    assert all(s["result"] is True for s in steps.values()), {k: s["comment"] for k, s in steps.items()}
    order = [sid for sid, _ in sorted(steps.items(), key=lambda kv: kv[1]["__run_num__"])]
    assert order[:7] == [
        f"orch-rebuild-{node}-lock-salt-runner",
        f"orch-rebuild-{node}-extension-modules-salt-function",
        f"orch-rebuild-{node}-highstate-salt-state",
        f"orch-rebuild-{node}-healthy-salt-runner",
        f"orch-rebuild-{node}-mine-update-salt-function",
        f"orch-rebuild-{node}-provisioned-salt-runner",
        f"orch-rebuild-{node}-unlock-salt-runner",
    ], order
    # the failure path did not run: nothing failed
    assert steps[f"orch-rebuild-{node}-unlock-after-failure-salt-runner"]["__state_ran__"] is False
    # exactly one highstate, of this node, and it ran
    assert len(_highstates(event_listener, salt_master, node, after)) == 1
    highstate = steps[f"orch-rebuild-{node}-highstate-salt-state"]
    assert node in highstate["comment"], highstate
    # the marker is back, newer, on the node and in the master's record; no lock is left
    marker = _marker(salt_cli, node)
    assert marker and marker > provisioned[node], (marker, provisioned[node])
    assert _record(salt_master, "provisioned", node)["time"] == marker
    assert _record(salt_master, "locks", node) is None
    assert _record(salt_master, "failed", node) is None


def test_a_restarted_provisioned_node_is_not_rebuilt(minions, provisioned, salt_master, salt_cli, event_listener):
    node = "alpha"
    after = time.time()
    _restart(minions[node])

    # the start event carried the marker (start_event_grains) ...
    starts = [
        e for e in _events(event_listener, salt_master, f"salt/minion/{node}/start", after)
        if e.data.get("id") == node
    ]
    assert starts and starts[-1].data["grains"] == {GRAIN: provisioned[node]}, [e.data for e in starts]
    # ... so the reaction only refreshed its mine data
    (run,) = _wait_for_runs(event_listener, salt_master, node, after)
    steps = _steps(run)
    assert list(steps) == [f"orch-rebuild-{node}-mine-update-salt-function"], steps
    assert steps[f"orch-rebuild-{node}-mine-update-salt-function"]["result"] is True
    assert _highstates(event_listener, salt_master, node, after) == []
    assert _marker(salt_cli, node) == provisioned[node]
    assert _record(salt_master, "provisioned", node)["time"] == provisioned[node]


def test_two_start_events_for_one_node_give_one_build(minions, provisioned, salt_master, salt_cli, event_listener):
    node = "delta"  # provisioned, and two start events without the marker: a re-flash, twice
    after = time.time()
    _fire_start_events(salt_master, node, node)

    # while the build goes on, the refused run must not record a failed build of the node
    failed_seen = []

    def both_ended():
        if _record(salt_master, "failed", node):
            failed_seen.append(_record(salt_master, "failed", node))
        runs = _rebuild_runs(event_listener, salt_master, node, after)
        return runs if len(runs) >= 2 else None

    runs = _wait_for(f"two orch.rebuild runs for {node}", both_ended, interval=0.2)
    assert len(runs) == 2, runs
    built, refused = sorted(
        (_steps(r) for r in runs), key=lambda s: s[f"orch-rebuild-{node}-lock-salt-runner"]["result"], reverse=True
    )
    # one build went through, start to end
    assert all(s["result"] is True for sid, s in built.items() if s.get("__state_ran__") is not False), built
    assert built[f"orch-rebuild-{node}-provisioned-salt-runner"]["result"] is True
    # the other was refused the lock and built nothing
    lock = refused[f"orch-rebuild-{node}-lock-salt-runner"]
    assert lock["result"] is False, lock
    assert "already being built" in str(lock["changes"]), lock
    assert refused[f"orch-rebuild-{node}-highstate-salt-state"]["result"] is False
    assert refused[f"orch-rebuild-{node}-highstate-salt-state"]["__state_ran__"] is False
    # exactly one highstate job for the node
    assert len(_highstates(event_listener, salt_master, node, after)) == 1
    assert failed_seen == [], "the refused duplicate recorded a failed build while the build went on"
    assert _record(salt_master, "failed", node) is None
    # the winner's lock is gone, the marker is newer
    assert _record(salt_master, "locks", node) is None
    marker = _marker(salt_cli, node)
    assert marker > provisioned[node], (marker, provisioned[node])
    assert _record(salt_master, "provisioned", node)["time"] == marker


# --- orch.cluster ----------------------------------------------------------------------


def test_orch_cluster_rolls_out_in_order_and_marks_every_node(minions, salt_master, salt_run_cli, salt_cli):
    ret = salt_run_cli.run("state.orch", "orch.cluster")
    assert ret.returncode == 0, {k: s.get("comment") for k, s in _steps(ret.data).items()}
    steps = _steps(ret.data)
    assert all(s["result"] is True for s in steps.values()), steps
    order = [sid for sid, _ in sorted(steps.items(), key=lambda kv: kv[1]["__run_num__"])]
    # one compute node here (delta, the k3s server): no agents step
    assert order == [
        "orch-cluster-extension-modules-salt-function",  # every node's custom modules, first
        "orch-cluster-deployer-salt-state",
        "orch-cluster-lanservices-primary-salt-state",
        "orch-cluster-lanservices-secondary-salt-state",
        "orch-cluster-compute-k3s-server-salt-state",
        "orch-cluster-router-handover-salt-runner",  # no router in this inventory: nothing to do
        "orch-cluster-mine-update-salt-function",
        "orch-cluster-provisioned-salt-runner",
    ]
    starts = [steps[s]["start_time"] for s in order]
    assert starts == sorted(starts)
    for sid, node in zip(order[1:5], ("psi", "alpha", "beta", "delta"), strict=True):
        named = {n for n in NODES if n in steps[sid]["comment"]}
        assert named == {node}, steps[sid]["comment"]  # each step highstated its node only
    # every node carries the marker, the one the master recorded
    marked = steps["orch-cluster-provisioned-salt-runner"]["changes"]["return"]
    assert set(marked) == set(NODES), marked
    for node, when in marked.items():
        assert _marker(salt_cli, node) == when
        assert _record(salt_master, "provisioned", node)["time"] == when


def _salt_step(high):
    """The arguments of a salt.* orchestration step from show_sls high data: {arg: value}."""
    (fun,) = (k for k in high if not k.startswith("__"))
    args = {}
    for item in high[fun]:
        if isinstance(item, dict):
            args.update(item)
    return args


def test_orch_cluster_starts_k3s_agents_after_their_server(minions, inventory_with_gamma, salt_run_cli):
    # gamma, a second compute node (rendered only: the ordering is the requisites orch.cluster declares)
    ret = salt_run_cli.run("state.orch_show_sls", "orch.cluster")
    assert ret.returncode == 0, ret
    (high,) = ret.data.values()
    assert isinstance(high, dict), high
    server = _salt_step(high["orch-cluster-compute-k3s-server-salt-state"])
    agents = _salt_step(high["orch-cluster-compute-agents-salt-state"])
    assert server["tgt"] == "delta" and agents["tgt"] == "gamma", (server, agents)
    assert server["require"] == [{"salt": "orch-cluster-lanservices-secondary-salt-state"}]
    assert agents["require"] == [{"salt": "orch-cluster-compute-k3s-server-salt-state"}]
    mine = _salt_step(high["orch-cluster-mine-update-salt-function"])
    assert mine["require"] == [{"salt": "orch-cluster-compute-agents-salt-state"}]
    assert "gamma" in mine["tgt"].split(",")


@pytest.fixture
def broken_alpha(integration_dir, salt_cli):
    """alpha's cluster directory is a regular file: its common state cannot apply."""
    cluster_dir = node_root(integration_dir, "alpha") / "etc" / "cluster"
    ret = salt_cli.run("cmd.run", "rm -rf /etc/cluster && echo 'not a directory' > /etc/cluster", "python_shell=True",
                       minion_tgt="alpha")
    assert ret.returncode == 0, ret
    assert cluster_dir.read_text() == "not a directory\n"
    yield
    # alpha is whole again (its next highstate recreates the directory)
    ret = salt_cli.run("file.remove", "/etc/cluster", minion_tgt="alpha")
    assert ret.returncode == 0, ret


def test_a_failing_step_stops_the_rollout_and_names_node_and_state(
    minions, provisioned, broken_alpha, salt_master, salt_run_cli
):
    records = {node: _record(salt_master, "provisioned", node) for node in NODES}
    assert all(records.values()), records
    ret = salt_run_cli.run("state.orch", "orch.cluster")
    assert ret.returncode != 0, ret
    steps = _steps(ret.data)
    assert steps["orch-cluster-deployer-salt-state"]["result"] is True
    failed = steps["orch-cluster-lanservices-primary-salt-state"]
    assert failed["result"] is False, failed
    assert "alpha" in failed["comment"], failed  # names the minion ...
    assert "common-cluster-dir-file-directory" in json.dumps(failed["changes"]), failed  # ... and the state
    for later in (
        "orch-cluster-lanservices-secondary-salt-state",
        "orch-cluster-compute-k3s-server-salt-state",
        "orch-cluster-router-handover-salt-runner",  # no router in this inventory: nothing to do
        "orch-cluster-mine-update-salt-function",
        "orch-cluster-provisioned-salt-runner",
    ):
        assert steps[later]["result"] is False, steps[later]
        assert steps[later]["__state_ran__"] is False, steps[later]
        assert "requisite failed" in steps[later]["comment"], steps[later]
    # no node was marked by the failed rollout
    assert {node: _record(salt_master, "provisioned", node) for node in NODES} == records
