"""
The k3s execution module and the k3s.joined state: join arguments, which node is the server,
readiness parsed from kubectl JSON (tests/unit/fixtures/k3s/, see its README for where those
documents come from), stale node objects of re-flashed nodes.

kubectl itself cannot run here (no k3s binary on this machine): a fake ``cmd.run_all`` answers
with the fixture documents, so everything above the subprocess call is the real code.
"""

import json
import os

import pytest
import yaml

from rpicluster import model, views
from tests.conftest import INVENTORY, REPO, load_by_path

FIXTURES = REPO / "tests" / "unit" / "fixtures" / "k3s"
k3s = load_by_path("k3s_mod_unit", REPO / "_modules" / "k3s.py")
k3s_state = load_by_path("k3s_state_unit", REPO / "_states" / "k3s.py")
INV = model.load_inventory(INVENTORY)

EPSILON_OLD = "8e2d4a6c1f3b5d7e9a0c2e4b6d8f1a3c"  # epsilon's machine-id in the fixtures
EPSILON_NEW = "0f9e8d7c6b5a49383726150413029181"  # after a re-flash


def fixture(name):
    return (FIXTURES / name).read_text()


class FakeKubectl:
    """``cmd.run_all`` answering ``k3s kubectl`` like a server holding ``doc``."""

    def __init__(self, doc):
        self.doc = json.loads(doc) if isinstance(doc, str) else doc
        self.calls = []
        self.after_delete = None
        self.journal = ""

    def __call__(self, cmd, **kwargs):
        self.calls.append(list(cmd))
        assert kwargs.get("python_shell") is False
        if cmd[0] == "journalctl":
            return {"retcode": 0, "stdout": self.journal, "stderr": ""}
        assert cmd[:3] == [k3s.K3S_BIN, "kubectl", "--kubeconfig"], cmd
        args = cmd[4:]
        if args == ["get", "nodes", "-o", "json"]:
            return {"retcode": 0, "stdout": json.dumps(self.doc), "stderr": ""}
        if args[:2] == ["get", "node"] and args[3:] == ["-o", "json"]:
            found = [i for i in self.doc["items"] if i["metadata"]["name"] == args[2]]
            if not found:  # what kubectl prints for a missing object
                return {"retcode": 1, "stdout": "", "stderr": f'Error from server (NotFound): nodes "{args[2]}" not found'}
            return {"retcode": 0, "stdout": json.dumps(found[0]), "stderr": ""}
        if args[:2] == ["delete", "node"]:
            name = args[2]
            before = len(self.doc["items"])
            self.doc["items"] = [i for i in self.doc["items"] if i["metadata"]["name"] != name]
            if self.after_delete is not None:
                self.doc = json.loads(self.after_delete)
            return {"retcode": 0, "stdout": f'node "{name}" deleted' if before != len(self.doc["items"]) or
                    self.after_delete else "", "stderr": ""}
        raise AssertionError(f"unexpected kubectl call {args}")


@pytest.fixture
def paths(tmp_path, monkeypatch):
    binary = tmp_path / "k3s"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    admin = tmp_path / "k3s.yaml"
    admin.write_text("apiVersion: v1\n")
    monkeypatch.setattr(k3s, "K3S_BIN", str(binary))
    monkeypatch.setattr(k3s, "ADMIN_KUBECONFIG", str(admin))
    monkeypatch.setattr(k3s, "KUBELET_KUBECONFIG", str(tmp_path / "kubelet.kubeconfig"))
    monkeypatch.setattr(k3s.time, "sleep", lambda s: None)
    return {"bin": binary, "admin": admin, "kubelet": tmp_path / "kubelet.kubeconfig"}


@pytest.fixture
def kubectl():
    return FakeKubectl(fixture("nodes-all-ready.json"))


@pytest.fixture
def opts():
    return {"test": False}


@pytest.fixture
def configure_loader_modules(kubectl, opts):
    mod_funcs = {f"k3s.{n}": getattr(k3s, n) for n in (
        "join_args", "node", "nodes", "stale_reason", "delete_node", "wait_ready", "agent_rejected")}
    return {
        # a compute node's pillar (the ext_pillar's node view: node:compute, by IP)
        k3s: {"__salt__": {"cmd.run_all": kubectl}, "__pillar__": {"node": views.node_view(INV, "epsilon")}},
        k3s_state: {"__salt__": mod_funcs, "__opts__": opts},
    }


# --- which node is the server, join arguments ------------------------------------------


def test_server_is_the_first_compute_node_by_ip_unless_named():
    assert k3s.server() == "delta"
    assert k3s.server("") == "delta"
    assert k3s.server("gamma") == "gamma"
    with pytest.raises(k3s.CommandExecutionError, match="'alpha' .* is not a compute node"):
        k3s.server("alpha")
    # the compute nodes given (the k3s map passes them from the pillar)
    assert k3s.server(compute=["zeta", "gamma"]) == "zeta"
    with pytest.raises(k3s.CommandExecutionError, match="'delta' .* is not a compute node"):
        k3s.server("delta", compute=["zeta", "gamma"])


def test_agent_join_args_use_https_and_the_server_port():
    args = k3s.join_args("agent", "epsilon", "192.168.10.22", "s3cret\n", server_ip="192.168.10.21", iface="eth0")
    assert args == {
        "node-name": "epsilon", "node-ip": "192.168.10.22", "flannel-iface": "eth0",
        "server": "https://192.168.10.21:6443", "token": "s3cret",
    }
    other_port = k3s.join_args("agent", "zeta", "192.168.10.24", "t", server_ip="192.168.10.21", port="7443")
    assert other_port["server"] == "https://192.168.10.21:7443"


def test_server_join_args_advertise_the_node_ip_and_keep_the_kubeconfig_private():
    args = k3s.join_args("server", "delta", "192.168.10.21", "t", server_ip="192.168.10.21", iface="host0",
                         disable=["traefik"])
    assert "server" not in args
    assert args["advertise-address"] == "192.168.10.21"
    assert args["tls-san"] == ["192.168.10.21"]
    assert args["write-kubeconfig-mode"] == "0600"
    assert args["flannel-iface"] == "host0"
    assert args["disable"] == ["traefik"]
    assert "https-listen-port" not in args
    assert k3s.join_args("server", "delta", "192.168.10.21", "t", port=7443)["https-listen-port"] == 7443
    # the config file k3s reads is YAML of exactly these keys
    assert yaml.safe_load(yaml.safe_dump(args)) == args


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: k3s.join_args("master", "delta", "192.168.10.21", "t"), "'server' or 'agent'"),
        (lambda: k3s.join_args("agent", "epsilon", "192.168.10.22", "  "), "no k3s token"),
        (lambda: k3s.join_args("agent", "epsilon", "192.168.10.22", "t"), "no server address"),
        (lambda: k3s.join_args("agent", "epsilon", "192.168.10.22", "t", server_ip="192.168.10.22"), "cannot join itself"),
        (lambda: k3s.join_args("agent", "epsilon", "192.168.10.300", "t", server_ip="192.168.10.21"), "not an IPv4"),
        (lambda: k3s.join_args("agent", "epsilon", "192.168.10.22", "t", server_ip="delta"), "not an IPv4"),
        (lambda: k3s.join_args("server", "delta", "192.168.10.21", "t", port=0), "port must be"),
    ],
)
def test_join_args_refuse_what_cannot_work(call, message):
    with pytest.raises(k3s.CommandExecutionError, match=message):
        call()


# --- readiness from kubectl JSON ------------------------------------------------------


def test_parse_all_ready_nodes_kubectl_json():
    nodes = k3s.parse_nodes(fixture("nodes-all-ready.json"))
    assert [n["name"] for n in nodes] == ["delta", "epsilon", "gamma", "zeta"]
    assert all(n["ready"] and n["status"] == "Ready" and n["reason"] == "KubeletReady" for n in nodes)
    assert nodes[0]["roles"] == ["control-plane", "master"]
    assert [n["roles"] for n in nodes[1:]] == [[], [], []]
    assert [n["internal_ip"] for n in nodes] == ["192.168.10.21", "192.168.10.22", "192.168.10.23", "192.168.10.24"]
    assert {n["version"] for n in nodes} == {"v1.31.4+k3s1"}
    assert nodes[1]["machine_id"] == EPSILON_OLD


def test_parse_degraded_nodes_kubectl_json():
    nodes = {n["name"]: n for n in k3s.parse_nodes(fixture("nodes-degraded.json"))}
    assert nodes["delta"]["ready"] is True
    assert (nodes["epsilon"]["ready"], nodes["epsilon"]["status"], nodes["epsilon"]["reason"]) == (
        False, "Unknown", "NodeStatusUnknown")
    assert nodes["epsilon"]["message"] == "Kubelet stopped posting node status."
    assert (nodes["gamma"]["ready"], nodes["gamma"]["status"], nodes["gamma"]["reason"]) == (
        False, "NotReady", "KubeletNotReady")
    assert "cni plugin not initialized" in nodes["gamma"]["message"]
    # cordoned is still Ready
    assert (nodes["zeta"]["ready"], nodes["zeta"]["unschedulable"]) == (True, True)


def test_parse_a_single_node_kubectl_json():
    (delta,) = k3s.parse_nodes(json.loads(fixture("node-delta.json")))
    assert delta["name"] == "delta" and delta["ready"] and delta["roles"] == ["control-plane", "master"]


@pytest.mark.parametrize("doc", ["not json", '{"kind": "PodList", "items": []}', "[]"])
def test_parse_refuses_what_is_not_a_node_list(doc):
    with pytest.raises(k3s.CommandExecutionError):
        k3s.parse_nodes(doc)


def test_nodes_run_k3s_kubectl_with_the_admin_kubeconfig_kubectl_json(paths, kubectl):
    assert [n["name"] for n in k3s.nodes()] == ["delta", "epsilon", "gamma", "zeta"]
    assert kubectl.calls == [[str(paths["bin"]), "kubectl", "--kubeconfig", str(paths["admin"]), "get", "nodes", "-o", "json"]]
    assert k3s.ready() == {"delta": True, "epsilon": True, "gamma": True, "zeta": True}
    assert k3s.ready("zeta") is True
    assert k3s.ready("omega") is False
    assert k3s.node("omega") is None


def test_an_agent_reads_its_own_node_with_its_kubelet_credentials_kubectl_json(paths, kubectl):
    paths["admin"].unlink()
    paths["kubelet"].write_text("apiVersion: v1\n")
    assert k3s.node("epsilon")["ready"] is True
    assert kubectl.calls[-1][3:] == [str(paths["kubelet"]), "get", "node", "epsilon", "-o", "json"]
    assert k3s.node("omega") is None  # kubectl's NotFound is "no such node", not an error


def test_degraded_readiness_kubectl_json(paths, kubectl):
    kubectl.doc = json.loads(fixture("nodes-degraded.json"))
    assert k3s.ready() == {"delta": True, "epsilon": False, "gamma": False, "zeta": True}


def test_kubectl_errors_are_actionable(paths, kubectl, monkeypatch):
    def failing(cmd, **kwargs):
        return {"retcode": 1, "stdout": "", "stderr": "The connection to the server 127.0.0.1:6443 was refused"}

    monkeypatch.setitem(k3s.__salt__, "cmd.run_all", failing)
    with pytest.raises(k3s.CommandExecutionError, match="get nodes -o json failed .*refused"):
        k3s.nodes()
    paths["admin"].unlink()
    with pytest.raises(k3s.CommandExecutionError, match="k3s has not started on this node yet"):
        k3s.nodes()
    paths["bin"].unlink()
    with pytest.raises(k3s.CommandExecutionError, match="is not installed"):
        k3s.nodes()


# --- stale node objects ------------------------------------------------------------------


def test_a_gone_node_with_another_machine_id_is_stale_kubectl_json():
    nodes = {n["name"]: n for n in k3s.parse_nodes(fixture("nodes-degraded.json"))}
    reason = k3s.stale_reason(nodes["epsilon"], EPSILON_NEW)
    assert EPSILON_OLD in reason and EPSILON_NEW in reason and "rebuilt" in reason
    assert "Unknown since 2025-01-20T10:21:07Z" in reason


def test_what_is_not_stale_kubectl_json():
    degraded = {n["name"]: n for n in k3s.parse_nodes(fixture("nodes-degraded.json"))}
    ready = {n["name"]: n for n in k3s.parse_nodes(fixture("nodes-all-ready.json"))}
    assert k3s.stale_reason(degraded["epsilon"], EPSILON_OLD) == ""  # same machine, just down
    assert k3s.stale_reason(ready["epsilon"], EPSILON_NEW) == ""  # a Ready node is never deleted
    assert k3s.stale_reason(degraded["epsilon"], "") == ""  # nothing to compare with
    assert k3s.stale_reason(None, EPSILON_NEW) == ""  # no object at all


def test_delete_node_runs_on_the_server_only(paths, kubectl):
    kubectl.doc = json.loads(fixture("nodes-degraded.json"))
    assert k3s.delete_node("epsilon") is True
    delete = kubectl.calls[-1]
    assert delete[2:4] == ["--kubeconfig", str(paths["admin"])]
    assert delete[4:] == ["delete", "node", "epsilon", "--ignore-not-found", "--wait=true", "--timeout=60s"]
    assert k3s.delete_node("epsilon") is False  # already gone
    paths["admin"].unlink()
    with pytest.raises(k3s.CommandExecutionError, match="not the k3s server"):
        k3s.delete_node("epsilon")


def test_password_rejected_in_the_agent_log():
    line = ('level=fatal msg="Error: failed to get CA certs: Node password rejected, duplicate hostname or contents '
            "of '/etc/rancher/node/password' may not match server node-passwd entry\"")
    assert k3s.password_rejected(line)
    assert not k3s.password_rejected('level=info msg="Starting k3s agent v1.31.4+k3s1"')


def test_wait_ready_polls_until_the_node_is_ready_kubectl_json(paths, kubectl, monkeypatch):
    docs = [fixture("nodes-server-only.json")] * 2 + [fixture("nodes-all-ready.json")]
    seen = []
    real_node = k3s.node

    def node(name, kubeconfig=None):
        kubectl.doc = json.loads(docs[min(len(seen), len(docs) - 1)])
        seen.append(name)
        return real_node(name, kubeconfig)

    monkeypatch.setattr(k3s, "node", node)
    assert k3s.wait_ready("gamma", timeout=60, interval=1)["ready"] is True
    assert seen == ["gamma"] * 3
    seen.clear()
    docs[:] = [fixture("nodes-server-only.json")]
    assert k3s.wait_ready("gamma", timeout=0, interval=1) is None


# --- the k3s.joined state -----------------------------------------------------------------


def test_joined_ready_node_changes_nothing_kubectl_json(paths):
    ret = k3s_state.joined("epsilon", machine_id=EPSILON_OLD)
    assert ret == {"name": "epsilon", "changes": {}, "result": True,
                   "comment": "node epsilon is joined and Ready (v1.31.4+k3s1)"}


def test_joined_name_taken_by_another_machine_fails_kubectl_json(paths):
    ret = k3s_state.joined("epsilon", machine_id=EPSILON_NEW)
    assert ret["result"] is False and "two machines" in ret["comment"]


def test_joined_test_mode_says_it_would_delete_the_stale_node_kubectl_json(paths, kubectl, opts):
    kubectl.doc = json.loads(fixture("nodes-degraded.json"))
    opts["test"] = True
    ret = k3s_state.joined("epsilon", machine_id=EPSILON_NEW, timeout=120)
    assert ret["result"] is None
    assert ret["changes"] == {"deleted": "epsilon"}
    assert ret["comment"].startswith("would delete the stale node object")
    assert "wait up to 120 s" in ret["comment"]
    assert not [c for c in kubectl.calls if "delete" in c]


def test_joined_deletes_the_stale_node_then_waits_for_it_kubectl_json(paths, kubectl):
    kubectl.doc = json.loads(fixture("nodes-degraded.json"))
    rejoined = json.loads(fixture("nodes-all-ready.json"))
    rejoined["items"][1]["status"]["nodeInfo"]["machineID"] = EPSILON_NEW
    kubectl.after_delete = json.dumps(rejoined)  # the rebuilt node registers once the object is gone
    ret = k3s_state.joined("epsilon", machine_id=EPSILON_NEW, timeout=30, interval=1)
    assert ret["result"] is True, ret
    assert ret["changes"]["deleted"]["node"] == "epsilon"
    assert "Ready after" in ret["comment"]
    assert [c[4:7] for c in kubectl.calls if "delete" in c] == [["delete", "node", "epsilon"]]


def test_joined_without_waiting_only_removes_the_stale_node_kubectl_json(paths, kubectl):
    kubectl.doc = json.loads(fixture("nodes-degraded.json"))
    ret = k3s_state.joined("epsilon", machine_id=EPSILON_NEW, wait=False)
    assert ret["result"] is True and ret["changes"]["deleted"]["node"] == "epsilon"
    assert "registers when its k3s agent starts" in ret["comment"]
    # the same machine merely switched off: left alone
    kubectl.doc = json.loads(fixture("nodes-degraded.json"))
    ret = k3s_state.joined("epsilon", machine_id=EPSILON_OLD, wait=False)
    assert ret["result"] is True and ret["changes"] == {}


def test_joined_not_installed_in_test_mode_would_wait(paths, opts):
    os.unlink(paths["bin"])
    opts["test"] = True
    ret = k3s_state.joined("delta", machine_id="abc", timeout=300)
    assert ret["result"] is None and ret["changes"] == {}
    assert "would wait up to 300 s for node delta to be Ready" in ret["comment"]
    assert "is not installed" in ret["comment"]


def test_joined_times_out_and_names_the_password_rejection_kubectl_json(paths, kubectl):
    kubectl.doc = json.loads(fixture("nodes-server-only.json"))
    kubectl.journal = 'level=fatal msg="Error: Node password rejected, duplicate hostname"'
    ret = k3s_state.joined("gamma", machine_id="1a3c", timeout=0, interval=1)
    assert ret["result"] is False
    assert "not Ready after 0 s (not registered)" in ret["comment"]
    assert "Node password rejected" in ret["comment"] and "k3s.orch" in ret["comment"]
    kubectl.journal = ""
    ret = k3s_state.joined("gamma", machine_id="1a3c", timeout=0, interval=1)
    assert ret["result"] is False and "password" not in ret["comment"]
