"""cluster.router_handover: when the bootstrap router's DHCP is turned off, and how it says so.
The pair's answers and the SSH command are stubbed (the lab test runs the real one against the
router stand-in, tests/lab/test_55_zero_touch.py)."""

import subprocess

import pytest
import yaml

from tests.unit.test_rebuild_plan import runner  # noqa: F401  (the fixture)


def _router(runner, kind="dnsmasq"):  # noqa: F811
    data = yaml.safe_load(runner.inventory_path.read_text())
    data["cluster"]["network"]["router"] = {"ip": data["cluster"]["network"]["gateway"], "kind": kind}
    runner.inventory_path.write_text(yaml.safe_dump(data))


@pytest.fixture
def router(runner, monkeypatch):  # noqa: F811
    """``states``: each pair node's failover state; ``ssh``: what the router prints and its exit
    code; ``ran``: the SSH command lines run."""
    stub = {"states": {"alpha": "normal", "beta": "normal"}, "ssh": ("changed\n", 0), "ran": []}

    def fake_call(tgt, fun, arg=(), timeout=30, tgt_type="glob"):
        assert fun == "dhcpd_failover.status"
        return {n: {"dhcp-failover": {"local_state": stub["states"][n]}} for n in tgt.split(",") if n in stub["states"]}

    def fake_run(argv, **_kw):
        stub["ran"].append(argv)
        out, code = stub["ssh"]
        return subprocess.CompletedProcess(argv, code, out, "" if code == 0 else "Permission denied (publickey).")

    monkeypatch.setattr(runner, "_call", fake_call)
    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    monkeypatch.setattr(runner, "_progress", lambda message, audit=False: stub.setdefault("log", []).append(message))
    return stub


def test_no_router_in_the_inventory_is_nothing_to_do(runner, router):  # noqa: F811
    ret = runner.router_handover()
    assert ret["result"] is True and ret["changed"] is False and router["ran"] == []


def test_the_router_keeps_serving_while_no_peer_of_the_pair_serves(runner, router):  # noqa: F811
    _router(runner)
    router["states"] = {"alpha": "startup", "beta": "recover"}
    ret = runner.router_handover(wait=0)
    assert ret["result"] is False and runner.__context__["retcode"] == 1
    assert "keeps serving" in ret["comment"] and router["ran"] == []


def test_a_dnsmasq_router_is_told_over_ssh_as_root_with_the_deployer_key(runner, router):  # noqa: F811
    _router(runner)
    router["states"]["beta"] = "startup"  # one serving peer is enough
    ret = runner.router_handover(wait=0)
    assert ret["result"] is True and ret["changed"] is True and ret["serving"] == ["alpha"]
    (argv,) = router["ran"]
    assert argv[0] == "ssh" and argv[-2] == "root@192.168.10.1"
    assert argv[argv.index("-i") + 1].endswith("/ssh/deployer_ed25519")
    assert "BatchMode=yes" in argv and "StrictHostKeyChecking=accept-new" in argv
    assert "no-dhcp-interface=$i" in argv[-1] and "192.168.10.1/32" in argv[-1]
    assert any("DHCP handed over" in line for line in router["log"])


def test_an_openwrt_router_uses_uci_and_a_second_handover_changes_nothing(runner, router):  # noqa: F811
    _router(runner, kind="openwrt")
    router["ssh"] = ("unchanged\n", 0)
    ret = runner.router_handover(wait=0)
    assert ret["result"] is True and ret["changed"] is False
    assert "uci set dhcp.lan.ignore=1" in router["ran"][0][-1]
    assert "log" not in router  # nothing audited when nothing changed


def test_a_refused_login_fails_naming_the_router(runner, router):  # noqa: F811
    _router(runner)
    router["ssh"] = ("", 255)
    ret = runner.router_handover(wait=0)
    assert ret["result"] is False and "192.168.10.1" in ret["comment"] and "Permission denied" in ret["comment"]
