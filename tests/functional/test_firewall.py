"""The firewall's rendered ruleset loaded by the real nft into network namespaces (never the
host's own): from a cluster node's address and from a DHCP-pool address, allowed ports connect,
refused ones time out and the drop counter goes up; the load script's rollback and confirmation.

Namespaces on a private bridge (lannet.Switch); small Python listeners and probes (fwprobe.py),
1 s timeouts, every subprocess bounded.
"""

import json
import os
import shutil
import sys

import pytest

from tests.firewall import loaders, render, render_file
from tests.functional.lannet import HAVE_NETNS, Switch, wait_for

pytestmark = pytest.mark.skipif(
    not HAVE_NETNS or shutil.which("nft") is None,
    reason="needs root, ip and nft (tests/host-packages.txt: nftables) for network namespaces",
)

PROBE = os.path.join(os.path.dirname(__file__), "fwprobe.py")
IP = {"psi": "192.168.10.10", "alpha": "192.168.10.6", "beta": "192.168.10.8", "delta": "192.168.10.21",
      "epsilon": "192.168.10.22"}
POOL = "192.168.10.200"  # the inventory's dhcp_pool start: a DHCP guest
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def rulesets(salt_factories):
    return {name: render(loaders(salt_factories, name))[0] for name in ("psi", "alpha", "delta")}


def _lan(prefix, host, extra=()):
    """The firewall host ``host`` (its inventory IP), a cluster node (epsilon), the other
    lanservices node (beta), a DHCP guest; ``extra``: more namespaces {name: spec}."""
    nodes = {"host": {"ip": f"{IP[host]}/24"}, "node": {"ip": f"{IP['epsilon']}/24"},
             "pair": {"ip": f"{IP['beta'] if host != 'beta' else IP['alpha']}/24"},
             "guest": {"ip": f"{POOL}/24"}, **dict(extra)}
    return Switch(prefix, nodes)


def _load(lan, ruleset, tmp_path):
    path = tmp_path / "cluster.nft"
    path.write_text(ruleset)
    check = lan.run("host", "nft", "-c", "-f", str(path))
    assert check.returncode == 0, check.stderr
    load = lan.run("host", "nft", "-f", str(path))
    assert load.returncode == 0, load.stderr


def _dropped(lan):
    out = lan.run("host", "nft", "-j", "list", "counter", "inet", "cluster", "input_dropped")
    assert out.returncode == 0, out.stderr
    return next(o["counter"]["packets"] for o in json.loads(out.stdout)["nftables"] if "counter" in o)


def _listen(lan, specs, tmp_path):
    daemon = lan.start("host", [sys.executable, PROBE, "listen", ",".join(specs)], tmp_path / "listen.log")
    wait_for(lambda: "listening" in daemon.output(), 10, what="the listeners")
    return daemon


def _probe(lan, ns, dest, specs):
    out = lan.run(ns, sys.executable, PROBE, "probe", dest, str(TIMEOUT), ",".join(specs), timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _expect(results, allowed):
    return {spec: ("open" if spec in allowed else "timeout") for spec in results}


def test_every_role_passes_nft_check(rulesets, tmp_path):
    with Switch("fwck", {"host": {"ip": None}}) as lan:
        for name, ruleset in rulesets.items():
            path = tmp_path / f"{name}.nft"
            path.write_text(ruleset)
            check = lan.run("host", "nft", "-c", "-f", str(path))
            assert check.returncode == 0, (name, check.stderr)
            # loaded twice in a row: the file replaces its own table (delete + create)
            for _ in range(2):
                load = lan.run("host", "nft", "-f", str(path))
                assert load.returncode == 0, (name, load.stderr)
            tables = lan.run("host", "nft", "list", "tables").stdout.split()
            assert tables.count("cluster") == 1, tables


def test_a_compute_node(rulesets, tmp_path):
    with _lan("fwcp", "delta") as lan:
        # another table's rule stays: the load replaces table inet cluster only
        assert lan.run("host", "nft", "add", "table", "ip", "k3sfake").returncode == 0
        _load(lan, rulesets["delta"], tmp_path)
        assert "k3sfake" in lan.run("host", "nft", "list", "tables").stdout
        _listen(lan, ["tcp:22", "tcp:3632", "tcp:6443", "tcp:10250", "tcp:40000", "udp:8472", "udp:53"], tmp_path)
        specs = ["tcp:22", "tcp:3632", "tcp:6443", "tcp:10250", "tcp:40000", "udp:8472", "udp:53"]
        before = _dropped(lan)
        from_node = _probe(lan, "node", IP["delta"], specs)
        assert from_node == _expect(from_node, {"tcp:22", "tcp:3632", "tcp:6443", "tcp:10250", "tcp:40000",
                                                "udp:8472"}), from_node
        from_pair = _probe(lan, "pair", IP["delta"], specs)  # a cluster node, not a compute node
        assert from_pair == _expect(from_pair, {"tcp:22", "tcp:3632", "tcp:6443", "tcp:10250", "udp:8472"}), from_pair
        assert _dropped(lan) > before
        before = _dropped(lan)
        from_guest = _probe(lan, "guest", IP["delta"], specs)
        assert from_guest == _expect(from_guest, set()), from_guest
        assert _dropped(lan) >= before + len(specs)
        # ping answers, from anyone
        ping = lan.run("guest", "ping", "-c", "1", "-W", "2", IP["delta"])
        assert ping.returncode == 0, ping.stdout


def test_the_deployer(rulesets, tmp_path):
    with _lan("fwdp", "psi") as lan:
        _load(lan, rulesets["psi"], tmp_path)
        specs = ["tcp:22", "tcp:4505", "tcp:4506", "tcp:6379", "tcp:8082", "tcp:3632"]
        _listen(lan, specs, tmp_path)
        from_node = _probe(lan, "node", IP["psi"], specs)
        assert from_node == _expect(from_node, {"tcp:22", "tcp:4505", "tcp:4506"}), from_node
        from_pair = _probe(lan, "pair", IP["psi"], specs)
        assert from_pair == _expect(from_pair, {"tcp:22", "tcp:4505", "tcp:4506", "tcp:8082"}), from_pair
        before = _dropped(lan)
        from_guest = _probe(lan, "guest", IP["psi"], specs)
        assert from_guest == _expect(from_guest, {"tcp:22"}), from_guest  # the admin's laptop: SSH only
        assert _dropped(lan) >= before + len(specs) - 1
        # Redis answers on the loopback
        local = _probe(lan, "host", "127.0.0.1", ["tcp:6379"])
        assert local == {"tcp:6379": "open"}


def test_a_lanservices_node(rulesets, tmp_path):
    with _lan("fwls", "alpha", extra={"bare": {"ip": None}}) as lan:
        _load(lan, rulesets["alpha"], tmp_path)
        specs = ["udp:53", "tcp:53", "udp:123", "tcp:80", "tcp:647", "tcp:22", "tcp:3632"]
        listener = _listen(lan, [*specs, "udp:67", "udp:69"], tmp_path)
        from_guest = _probe(lan, "guest", IP["alpha"], specs)
        assert from_guest == _expect(from_guest, {"udp:53", "tcp:53", "udp:123", "tcp:80"}), from_guest
        from_pair = _probe(lan, "pair", IP["alpha"], specs)
        assert from_pair == _expect(from_pair, {"udp:53", "tcp:53", "udp:123", "tcp:80", "tcp:647", "tcp:22"})
        # a DHCP client with no address yet: from 0.0.0.0 to the broadcast address
        before = _dropped(lan)
        bcast = lan.run("bare", sys.executable, PROBE, "broadcast", timeout=30)
        assert json.loads(bcast.stdout or "{}") == {"udp:67": "sent"}, bcast.stderr
        wait_for(lambda: "received udp:67 from 0.0.0.0" in listener.output(), 5, what="the broadcast from 0.0.0.0")
        assert _dropped(lan) == before
        # TFTP: the request on 69, the transfer on the server's other port
        tftp = lan.run("guest", sys.executable, PROBE, "tftp", IP["alpha"], "2", timeout=30)
        assert json.loads(tftp.stdout or "{}") == {"tftp": "open"}, tftp.stderr
        assert '"tftp"' in lan.run("host", "nft", "list", "ct", "helpers", "table", "inet", "cluster").stdout


def test_the_load_script_confirms_or_rolls_back(salt_factories, tmp_path):
    """cluster-firewall-apply on a compute node: arms the rollback timer (systemd-run, stubbed:
    it would run on this host), loads, confirms with a new connection to the master's 4506 and
    disarms; with the master unreachable after the load it restores the previous table at once;
    the timer's --rollback restores it too; --boot loads without a master."""
    state, stubs = tmp_path / "state", tmp_path / "stubs"
    stubs.mkdir()
    calls = tmp_path / "calls.log"
    for tool in ("systemd-run", "systemctl"):
        (stubs / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {calls}\n')
        (stubs / tool).chmod(0o755)
    lookup = {"rules_file": str(tmp_path / "cluster.nft"), "state_dir": str(state),
              "apply_script": str(tmp_path / "apply"), "confirm": {"attempts": 2, "timeout": 1}}
    node = loaders(salt_factories, "delta", firewall={"lookup": lookup})
    ruleset, fwmap = render(node)
    assert fwmap["confirm"]["host"] == IP["psi"]
    script = tmp_path / "apply"
    script.write_text(render_file(node, "cluster-firewall-apply.jinja"))
    script.chmod(0o755)
    rules = tmp_path / "cluster.nft"
    env = ["env", f"PATH={stubs}:{os.environ['PATH']}"]

    with Switch("fwap", {"host": {"ip": f"{IP['delta']}/24"}, "master": {"ip": f"{IP['psi']}/24"}}) as lan:
        def apply(*args):
            return lan.run("host", *env, str(script), *args, timeout=60)

        def loaded_port():
            text = lan.run("host", "nft", "list", "table", "inet", "cluster").stdout
            return [p for p in ("3632", "3633") if f"tcp dport {p}" in text]

        master = lan.start("master", [sys.executable, PROBE, "listen", "tcp:4506"], tmp_path / "master.log")
        wait_for(lambda: "listening" in master.output(), 10, what="the master's port")
        rules.write_text(ruleset)
        assert apply("--is-current").returncode != 0  # nothing loaded yet
        first = apply("--apply")
        assert first.returncode == 0, first.stderr
        assert loaded_port() == ["3632"] and apply("--is-current").returncode == 0
        log = calls.read_text()
        assert f"systemd-run --quiet --unit=cluster-firewall-rollback --on-active=120 {script} --rollback" in log
        assert log.rstrip().splitlines()[-1].startswith("systemctl reset-failed")
        assert "systemctl stop cluster-firewall-rollback.timer" in log.splitlines()[-2]

        # a new ruleset, and the master no longer answers: the previous table comes back now
        rules.write_text(ruleset.replace("tcp dport 3632", "tcp dport 3633"))
        assert apply("--is-current").returncode != 0
        master.stop()
        cut = apply("--apply")
        assert cut.returncode == 1 and "restoring the previous table" in cut.stderr, cut.stderr
        assert loaded_port() == ["3632"]
        assert apply("--is-current").returncode != 0  # the next highstate tries again

        # the master answers again: loaded; the timer's rollback (had the node been cut off)
        # restores the table that was loaded before
        master = lan.start("master", [sys.executable, PROBE, "listen", "tcp:4506"], tmp_path / "master2.log")
        wait_for(lambda: "listening" in master.output(), 10, what="the master's port")
        assert apply("--apply").returncode == 0 and loaded_port() == ["3633"]
        assert apply("--rollback").returncode == 0 and loaded_port() == ["3632"]

        # at boot: loaded with no master and no timer
        master.stop()
        assert lan.run("host", "nft", "delete", "table", "inet", "cluster").returncode == 0
        calls.write_text("")
        boot = apply("--boot")
        assert boot.returncode == 0, boot.stderr
        assert loaded_port() == ["3633"] and apply("--is-current").returncode == 0
        assert calls.read_text() == ""


MASTER = """
import os, socket, sys, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 4506))
srv.listen(1)
print("listening", flush=True)
conn, _ = srv.accept()
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
conn.sendall(b"job\\n")
time.sleep(10)
"""
MINION = """
import socket, sys
conn = socket.create_connection((sys.argv[1], 4506), 3)
print("connected", flush=True)
conn.settimeout(float(sys.argv[2]))
try:
    print("got " + conn.recv(16).decode().strip(), flush=True)
except OSError:
    print("nothing", flush=True)
"""


@pytest.mark.parametrize("keep_rule", [True, False], ids=["as-rendered", "without-the-master-rule"])
def test_a_minion_connection_opened_before_the_first_load_keeps_working(rulesets, tmp_path, keep_rule):
    """The minion (delta) is connected to its master before its table first loads: conntrack never
    saw that connection start, so the master's next packet is "new". The rendered ruleset lets it
    in (the master's ports as source); without that rule the job would be dropped."""
    ruleset = rulesets["delta"]
    rule = next(line for line in ruleset.splitlines() if "salt-master to its minion" in line)
    assert f"ip saddr {IP['psi']} tcp sport {{ 4505, 4506 }} accept" in rule
    if not keep_rule:
        ruleset = ruleset.replace(rule, "")
    flag = tmp_path / "send"
    with _lan("fwmc", "delta", {"master": {"ip": f"{IP['psi']}/24"}}) as lan:
        master = lan.start("master", [sys.executable, "-c", MASTER, str(flag)], tmp_path / "master.log")
        wait_for(lambda: "listening" in master.output(), 10, what="the master")
        minion = lan.start("host", [sys.executable, "-c", MINION, IP["psi"], "4"], tmp_path / "minion.log")
        wait_for(lambda: "connected" in minion.output(), 10, what="the minion's connection")
        _load(lan, ruleset, tmp_path)
        flag.write_text("go")
        wait_for(lambda: "got" in minion.output() or "nothing" in minion.output(), 15, what="the minion's read")
        assert ("got job" in minion.output()) is keep_rule, minion.output()
