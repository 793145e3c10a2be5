"""keepalived on nodes of the inventory (``nodefs``: the states write their real paths in the
node's files, applied in the node's network namespace): the SLS for the primary and the
secondary (test mode, real mode, idempotency, a broken config rejected by `keepalived -t`, the
VRRPv3 config, the units with systemctl mocked), then the rendered configs running for real with
named, in the nodes' files, in network namespaces on a switch (a bridge):
the VIP on the primary, given up when its named dies or hangs or its keepalived stops, after a
power loss of the primary (DNS on the VIP answers from the secondary: the failover times are
printed, not asserted), adverts from a stranger dropped, the VIP taken back when the primary
recovers; sub-second adverts under CPU load; vip.status on both."""

import ipaddress
import os
import pathlib
import re
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

import pytest
import yaml
from saltfactories.utils.functional import MultiStateResult

from tests.conftest import INVENTORY, REPO, load_by_path
from tests.functional.lannet import Daemon, _ip, in_netns
from tests.functional.lanpair import (
    HAVE_NETNS,
    KEEPALIVED,
    NAMED,
    Pair,
    changed,
    failed,
    lan_node,
    netns_argv,
    scratch_root,
    wait_for,
)

pytestmark = [
    pytest.mark.skipif(not (os.path.exists(KEEPALIVED) and os.path.exists(NAMED)),
                       reason="needs keepalived and named (tests/host-packages.txt)"),
    pytest.mark.skipif(not HAVE_NETNS, reason="needs root and iproute2: keepalived -t and VRRP run in network namespaces"),
]

INV = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))["cluster"]
IPS = {"alpha": INV["nodes"]["alpha"]["ip"], "beta": INV["nodes"]["beta"]["ip"]}
VIP = INV["network"]["vip"]
DOMAIN = INV["domain"]
SUBNET = ipaddress.IPv4Network(INV["network"]["subnet"])
PREFIX = SUBNET.prefixlen
DEFAULTS = yaml.safe_load((REPO / "salt" / "keepalived" / "defaults.yaml").read_text(encoding="utf-8"))["keepalived"]
# two more hosts on the switch: a DNS client and a stranger speaking VRRP (not in the inventory)
_TAKEN = {VIP, *(node["ip"] for node in INV["nodes"].values())}
CLIENT, ROGUE = [str(a) for a in reversed(list(SUBNET.hosts())) if str(a) not in _TAKEN][:2]
POWER_LOSS_RUNS = 5


class Lan(Pair):
    """``Pair``'s namespaces (``alpha``, ``beta``, and here also ``client`` and ``rogue``), each
    with an ``eth0`` plugged into a bridge in namespace ``<prefix>-sw``: a node whose link goes
    dark (a power loss) leaves the others' links up, as on a switch (``Pair``'s direct veth
    would take the peer's carrier, and so its VRRP instance, down with it)."""

    def __init__(self, prefix, addresses, prefixlen):
        super().__init__(prefix, addresses, prefixlen)
        self.sw = f"{prefix}-sw"

    def __enter__(self):
        try:
            _ip("netns", "add", self.sw)
            _ip("-n", self.sw, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.sw, "link", "set", "br0", "up")
            for i, (node, ns) in enumerate(self.ns.items()):
                _ip("netns", "add", ns)
                _ip("-n", self.sw, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("-n", self.sw, "link", "set", f"p{i}", "master", "br0")
                _ip("-n", self.sw, "link", "set", f"p{i}", "up")
                _ip("-n", ns, "addr", "add", f"{self.addresses[node]}/{self.prefixlen}", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        super().__exit__(*exc)
        subprocess.run(["ip", "netns", "del", self.sw], capture_output=True, check=False)


@pytest.fixture(scope="module")
def net():
    with Lan(f"rpik{os.getpid()}", {**IPS, "client": CLIENT, "rogue": ROGUE}, PREFIX) as lan:
        yield lan


def _named_argv(name):
    # both nodes' named run on this one host with the same config path: `-D` (a comment for
    # process listings, not examined by named) tells them apart for track_process
    return [NAMED, "-g", "-u", "bind", "-c", "/etc/bind/named.conf", "-D", f"rpic-{name}"]


def _node(salt_factories, name, root, secrets_dir, **keepalived):
    # the interface is found from the ip4_interfaces grain, as on a real node. track_process
    # on, matching this node's named by its command line: both nodes' named run on this one
    # host (on a Pi, the default: the process name).
    return lan_node(
        salt_factories, name, root, secrets_dir,
        keepalived={"process": {"track": True, "match": _named_argv(name)}, **keepalived},
        grains={"ip4_interfaces": {"lo": ["127.0.0.1"], "eth0": [IPS[name]]}},
    )


def _apply(net, node, sls="keepalived", **kwargs):
    """``state.sls`` on ``node`` in its network namespace, as on the node: `keepalived -t` (the
    check_cmd) finds eth0 there, and the ARP sysctls land in that namespace, not on the host."""
    return MultiStateResult(node.call(lambda loaders: loaders.modules.state.sls(sls, **kwargs).raw,
                                      netns=net.ns[node.name]))


@pytest.fixture(scope="module")
def nodes(salt_factories, net, secrets_dir):
    with scratch_root("alpha") as alpha, scratch_root("beta") as beta:
        yield {
            name: {"root": root, "node": _node(salt_factories, name, root, secrets_dir)}
            for name, root in (("alpha", alpha), ("beta", beta))
        }


def test_keepalived_sls_test_mode_writes_nothing(net, nodes):
    node = nodes["alpha"]["node"]
    ret = _apply(net, node, test=True)
    assert not failed(ret), failed(ret)
    assert any(r["result"] is None for r in ret.raw.values())
    assert node.fs.written() == []  # no keepalived.conf, no script, no unit, no sysctl file


def test_keepalived_sls_test_mode_starts_nothing_mocked_systemctl(nodes):
    # only the test run above has run on alpha: it asked, changed no unit
    node = nodes["alpha"]["node"]
    assert node.fs.units() == {}
    assert not [c for c in node.fs.systemctl_calls() if c.split()[0] in ("start", "restart", "reload", "enable")]


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_keepalived_sls_applies_then_changes_nothing(net, nodes, name, secrets_dir):
    node = nodes[name]["node"]
    ret = _apply(net, node)
    assert not failed(ret), failed(ret)
    conf = node.root / "etc" / "keepalived" / "keepalived.conf"
    text = conf.read_text()
    assert "interface eth0\n" in text  # found from the grain: the interface holding the node's IP
    assert ("state MASTER" in text) == (name == "alpha")
    assert oct(conf.stat().st_mode & 0o777) == "0o640"
    # VRRPv3, sub-second adverts, unicast to the peer only, no authentication (none in v3): the
    # pillar's VRRP password is not in the config
    peer = IPS["beta" if name == "alpha" else "alpha"]
    assert "    vrrp_version 3\n" in text
    assert f"    advert_int {DEFAULTS['advert_int']}\n" in text and 0 < DEFAULTS["advert_int"] < 1
    assert f"unicast_src_ip {IPS[name]}\n    unicast_peer {{\n        {peer}\n    }}\n" in text
    assert "    check_unicast_src\n" in text
    assert "authentication {" not in text and "auth_pass" not in text
    password = (secrets_dir / "vrrp.password").read_text().strip()
    assert password not in text
    assert password not in repr(ret.raw)
    # named's process, matched here by its command line
    assert f'process "{NAMED}" "-g" "-u" "bind" "-c" "/etc/bind/named.conf" "-D" "rpic-{name}"\n' in text
    # the real paths
    assert 'script "/etc/keepalived/check-named"' in text and 'file "/var/lib/keepalived/maintenance"' in text
    assert "vrrp_notify_fifo /run/keepalived-cluster/vrrp.fifo\n" in text and str(node.root) not in text
    for script in ("check-named", "notify-state"):
        assert oct((node.root / "etc" / "keepalived" / script).stat().st_mode & 0o777) == "0o755"
    written = node.fs.written()
    for path in ("etc/keepalived/keepalived.conf", "etc/keepalived/check-named", "etc/keepalived/notify-state",
                 "etc/tmpfiles.d/keepalived-cluster.conf", "var/lib/keepalived/maintenance",
                 "etc/systemd/system/cluster-vip-on-lo.service"):
        assert path in written, written
    assert (node.root / "run" / "keepalived-cluster").is_dir()
    assert (node.root / "var/lib/keepalived/maintenance").read_text().strip() == "0"  # in service
    assert changed(_apply(net, node)) == {}


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_keepalived_sls_enables_and_starts_its_units_mocked_systemctl(net, nodes, name):
    """After the runs above: the VIP-on-lo unit and keepalived enabled and started, the unit
    first (require_in); the ARP sysctls set in the node's network namespace."""
    node = nodes[name]["node"]
    assert node.fs.units() == {
        "cluster-vip-on-lo.service": {"active": True, "enabled": True},
        "keepalived.service": {"active": True, "enabled": True},
    }
    starts = [c for c in node.fs.systemctl_calls() if c.split()[0] == "start"]
    assert starts == ["start cluster-vip-on-lo.service", "start keepalived.service"], starts
    for key, value in DEFAULTS["arp_sysctl"].items():
        assert net.run(name, "sysctl", "-n", key).stdout.strip() == str(value)


@pytest.mark.parametrize("virtual, tracked", [("physical", True), ("systemd-nspawn", False), ("container", False)])
def test_named_process_tracked_unless_in_a_container(salt_factories, net, secrets_dir, tmp_path, virtual, tracked):
    """process.track auto: keepalived gets the kernel's process events only outside containers."""
    node = lan_node(
        salt_factories, "alpha", tmp_path, secrets_dir,
        grains={"ip4_interfaces": {"lo": ["127.0.0.1"], "eth0": [IPS["alpha"]]}, "virtual": virtual},
    )
    ret = _apply(net, node)
    assert not failed(ret), failed(ret)
    text = (node.root / "etc" / "keepalived" / "keepalived.conf").read_text()
    assert ('vrrp_track_process proc_named {\n    process "named"\n    weight -60\n}' in text) == tracked
    assert ("track_process {\n        proc_named\n    }" in text) == tracked
    assert "track_script {\n        chk_named\n    }" in text


def test_vrrp_version_2_keeps_the_password_authentication(salt_factories, net, secrets_dir, tmp_path):
    node = _node(salt_factories, "beta", tmp_path, secrets_dir, vrrp_version=2, advert_int=1)
    ret = _apply(net, node)
    assert not failed(ret), failed(ret)
    text = (node.root / "etc" / "keepalived" / "keepalived.conf").read_text()
    password = (secrets_dir / "vrrp.password").read_text().strip()
    assert f"auth_type PASS\n        auth_pass {password}\n" in text and "vrrp_version 2\n" in text
    assert password not in repr(ret.raw)  # no password in the state output
    errors = failed(_apply(net, _node(salt_factories, "beta", tmp_path, secrets_dir, vrrp_version=2)))
    assert list(errors.values()) == [
        f"keepalived:advert_int {DEFAULTS['advert_int']} with VRRP version 2: whole seconds only (sub-second adverts need version 3)"
    ]


def test_a_broken_config_is_rejected_and_the_previous_one_stays(salt_factories, net, nodes, secrets_dir):
    root = nodes["beta"]["root"]
    conf = root / "etc" / "keepalived" / "keepalived.conf"
    before = conf.read_bytes()
    broken = _node(salt_factories, "beta", root, secrets_dir, virtual_router_id=300)
    ret = _apply(net, broken)
    errors = {sid.split("_|-")[1]: comment for sid, comment in failed(ret).items()}
    # the config is rejected; keepalived, which watches it, is left alone (not reloaded)
    assert sorted(errors) == ["keepalived-config-file-managed", "keepalived-service-running"], errors
    assert "check_cmd" in errors["keepalived-config-file-managed"]
    assert errors["keepalived-service-running"].startswith("One or more requisite failed"), errors
    assert conf.read_bytes() == before


def test_no_interface_holding_the_node_ip_is_a_clear_failure(salt_factories, net, secrets_dir, tmp_path):
    node = lan_node(salt_factories, "alpha", tmp_path, secrets_dir,
                    grains={"ip4_interfaces": {"lo": ["127.0.0.1"], "eth9": ["10.1.1.1"]}})
    errors = failed(_apply(net, node))
    assert list(errors.values()) == [
        f"no interface of alpha holds its inventory IP {IPS['alpha']}: set keepalived:lookup:interface"
    ]


# --------------------------------------------------------------------------------------
# VRRP for real
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def running(net, nodes):
    """named (bind SLS) and keepalived (keepalived SLS) on both nodes, in their namespaces."""
    for name, node in nodes.items():
        root = node["root"]
        for sls in ("bind", "keepalived"):
            if sls == "bind" or not (root / "etc" / "keepalived" / "keepalived.conf").exists():
                ret = _apply(net, node["node"], sls)
                assert not failed(ret), failed(ret)
        node["named"] = _start_named(net, name, node)
    for name in nodes:
        wait_for(lambda n=name: _named_answers(net, n), 15, 0.1, f"named on {name}")
    wait_for(lambda: _named_answers(net, "beta", IPS["beta"]), 15, 0.1, "the zone transferred to beta")
    for name, node in nodes.items():
        node["keepalived"] = _start_keepalived(net, name, node)
    yield nodes


def _start_named(net, name, node):
    """named in namespace ``name``, in the node's files (its config names /etc/bind/...)."""
    return net.start(name, _named_argv(name), node["root"] / "named.log", node=node["node"])


def _start_keepalived(net, name, node):
    # `-s NS`: keepalived subscribes to the kernel's process events (track_process), served in
    # the initial network namespace only, then enters the node's namespace itself, like a
    # keepalived on a Pi, which runs in the initial namespaces (`ip netns exec` would leave
    # named's process untracked: counted as dead). In the node's files (lanpair.netns_argv:
    # /run/netns/NS usable there); its config names /etc/keepalived/..., /run/keepalived-cluster/...
    daemon = Daemon(
        node["node"].wrap(netns_argv(net.ns[name], [
            KEEPALIVED, "-s", net.ns[name], "-n", "-l", "-D", "-P", "-f", "/etc/keepalived/keepalived.conf",
            "-p", "/run/keepalived.pid", "-r", "/run/keepalived-vrrp.pid"])),
        node["root"] / "keepalived.log",
    )
    net.daemons.append(daemon)
    return daemon


def _kill(daemon):
    """SIGKILL to a daemon's process group (its main process reaped); returns the group."""
    daemon.stop(signal.SIGKILL)
    return daemon.proc.pid


def _gone(pgid):
    """Wait until no process of group ``pgid`` is left, not even a zombie: a keepalived started
    again refuses to run while the pid of its pid file exists."""

    def gone():
        for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                    return False
            except (OSError, IndexError, ValueError):
                continue
        return True

    wait_for(gone, 10, 0.02, f"the processes of group {pgid} gone")


def _named_answers(net, node, server="127.0.0.1"):
    return net.dig(node, f"@{server}", DOMAIN, "SOA") != []


def _status(net, nodes, name):
    module = load_by_path(f"vip_status_{name}", REPO / "_modules" / "vip.py")
    module.__salt__ = net.salt_stub(name)
    module.__pillar__ = {"cluster": {"network": {"vip": VIP}}}
    # the files keepalived and its notify script wrote at /run/..., read in the node's root
    root = nodes[name]["root"]
    return module.status(state_dir=str(root / "run/keepalived-cluster"), pidfile=str(root / "run/keepalived.pid"))


def _holder(net):
    holders = [n for n in ("alpha", "beta") if VIP in net.addresses_of(n)]
    return holders[0] if len(holders) == 1 else None if not holders else "both"


def _normal(net, nodes):
    """alpha MASTER holding the VIP, beta BACKUP (else the tails of their keepalived logs)."""
    try:
        wait_for(lambda: _holder(net) == "alpha" and _status(net, nodes, "alpha")["state"] == "MASTER"
                 and _status(net, nodes, "beta")["state"] == "BACKUP", 20, 0.1, "alpha MASTER, beta BACKUP")
    except AssertionError as exc:
        tails = {name: nodes[name]["keepalived"].output().splitlines()[-25:] for name in ("alpha", "beta")}
        raise AssertionError(f"{exc}; holder {_holder(net)}, keepalived logs: {tails}") from None


def test_the_primary_holds_the_vip(net, running):
    _normal(net, running)
    alpha, beta = _status(net, running, "alpha"), _status(net, running, "beta")
    assert alpha["held"] is True and alpha["interface"] == "eth0" and alpha["state"] == "MASTER"
    assert alpha["running"] is True and alpha["priority"] == 150
    assert beta["held"] is False and beta["state"] == "BACKUP" and beta["priority"] == 100
    # named answers on the VIP (listen-on any picks the new address up by itself)
    wait_for(lambda: net.dig("beta", f"@{VIP}", f"alpha.{DOMAIN}") == [IPS["alpha"]], 10, 0.1, "DNS on the VIP")
    # both named processes tracked through the kernel's process events
    for name in ("alpha", "beta"):
        log = running[name]["keepalived"].output()
        assert "proc_events has confirmed it is configured" in log, log[-2000:]
        assert "Failed to set/clear process event listen" not in log


def test_a_dead_named_gives_the_vip_up_at_once_and_gets_it_back(net, running):
    _normal(net, running)
    mark = len(running["alpha"]["keepalived"].output())
    running["alpha"]["named"].stop()
    start = time.monotonic()
    wait_for(lambda: _holder(net) == "beta", 15, 0.01, "the VIP moving to beta")
    moved = time.monotonic() - start
    print(f"\nVIP moved after named died on the primary (track_process): {moved:.2f} s")
    assert moved < 8, f"the VIP moved after {moved:.1f} s"
    # the VIP now answers from beta, whose named is alive
    assert net.dig("alpha", f"@{VIP}", f"zeta.{DOMAIN}") == [INV["nodes"]["zeta"]["ip"]]
    wait_for(lambda: _status(net, running, "beta")["state"] == "MASTER"
             and _status(net, running, "alpha")["state"] == "BACKUP", 5, 0.05, "beta MASTER, alpha BACKUP")
    assert _status(net, running, "alpha")["running"] is True
    # the process tracker saw it first: its priority change before any of the check script
    lines = _transitions(running["alpha"]["keepalived"].output()[mark:])
    assert lines[:2] == ["Quorum lost for tracked process proc_named",
                         "(VI_DNS) Changing effective priority from 150 to 90"], lines
    # named back on alpha: its priority is restored and it preempts
    running["alpha"]["named"] = _start_named(net, "alpha", running["alpha"])
    wait_for(lambda: _holder(net) == "alpha", 20, 0.1, "the VIP back on alpha")
    wait_for(lambda: _status(net, running, "beta")["state"] == "BACKUP", 10, 0.1, "beta back to BACKUP")


def test_a_hung_named_gives_the_vip_up_and_gets_it_back(net, running):
    """named stopped (SIGSTOP): the process is there, but it answers nothing: the check script."""
    _normal(net, running)
    named = running["alpha"]["named"]
    mark = len(running["alpha"]["keepalived"].output())
    os.kill(named.proc.pid, signal.SIGSTOP)
    start = time.monotonic()
    try:
        wait_for(lambda: _holder(net) == "beta", 15, 0.01, "the VIP moving to beta")
        moved = time.monotonic() - start
        print(f"\nVIP moved after named hung on the primary (check script): {moved:.2f} s")
        assert net.dig("client", f"@{VIP}", f"zeta.{DOMAIN}") == [INV["nodes"]["zeta"]["ip"]]
        lines = _transitions(running["alpha"]["keepalived"].output()[mark:])
        assert lines[0].startswith("VRRP_Script(chk_named) ") and "(VI_DNS) Changing effective priority from 150 to 90" in lines
        assert not [line for line in lines if "tracked process" in line], lines
    finally:
        os.kill(named.proc.pid, signal.SIGCONT)
    wait_for(lambda: _holder(net) == "alpha", 20, 0.1, "the VIP back on alpha")
    wait_for(lambda: _status(net, running, "beta")["state"] == "BACKUP", 10, 0.1, "beta back to BACKUP")


def test_keepalived_stopping_or_dying_on_the_primary_moves_the_vip(net, running):
    _normal(net, running)
    # clean stop: alpha sends priority 0, beta takes over at once
    running["alpha"]["keepalived"].stop()
    start = time.monotonic()
    wait_for(lambda: _holder(net) == "beta", 10, 0.02, "the VIP on beta after a clean stop")
    clean = time.monotonic() - start
    print(f"\nVIP moved after keepalived stopped on the primary: {clean:.2f} s")
    assert clean < 3
    assert _status(net, running, "alpha") | {"since": None} == {
        "vip": VIP, "held": False, "interface": None, "instance": "VI_DNS", "state": "STOPPED",
        "priority": None, "since": None, "running": False,
    }
    running["alpha"]["keepalived"] = _start_keepalived(net, "alpha", running["alpha"])
    wait_for(lambda: _holder(net) == "alpha", 20, 0.1, "the VIP back on alpha")
    # keepalived killed: no goodbye advert; beta waits for the master-down interval
    start = time.monotonic()
    killed = _kill(running["alpha"]["keepalived"])
    net.run("alpha", "ip", "addr", "del", f"{VIP}/{PREFIX}", "dev", "eth0")  # a dead keepalived holds nothing
    wait_for(lambda: _holder(net) == "beta", 15, 0.01, "the VIP on beta after keepalived was killed")
    print(f"VIP moved after the primary's keepalived was killed: {time.monotonic() - start:.2f} s")
    _gone(killed)
    running["alpha"]["keepalived"] = _start_keepalived(net, "alpha", running["alpha"])
    _normal(net, running)


# --------------------------------------------------------------------------------------
# power loss: DNS on the VIP, seen from a client on the switch
# --------------------------------------------------------------------------------------


class DnsProbe:
    """A-record queries for ``qname`` to ``server``:53 from a UDP socket opened in namespace
    ``ns`` (it stays there; the test thread does not)."""

    def __init__(self, ns, server, qname, expected):
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.server, self.expected = server, socket.inet_aton(expected)
        self.question = b"".join(bytes([len(p)]) + p.encode() for p in qname.split(".")) + b"\0" + struct.pack("!HH", 1, 1)
        self.qid = os.getpid() & 0xFFFF

    def close(self):
        self.sock.close()

    def _answer_id(self, data):
        """The id of a response that answers our question with the expected address, else None."""
        if len(data) < 12:
            return None
        qid, flags, qdcount, ancount = struct.unpack("!HHHH", data[:8])
        if not flags & 0x8000 or flags & 0xF or qdcount != 1 or ancount < 1:
            return None
        if data[12:12 + len(self.question)] != self.question:
            return None
        pos = 12 + len(self.question)
        for _ in range(ancount):
            while pos < len(data) and data[pos] and data[pos] < 0xC0:  # the owner name
                pos += data[pos] + 1
            pos += 2 if pos < len(data) and data[pos] >= 0xC0 else 1
            if pos + 10 > len(data):
                return None
            rtype, _cls, _ttl, rdlength = struct.unpack("!HHIH", data[pos:pos + 10])
            if rtype == 1 and data[pos + 10:pos + 10 + rdlength] == self.expected:
                return qid
            pos += 10 + rdlength
        return None

    def first_answer(self, since, timeout, step=0.01):
        """Seconds from ``since`` (time.monotonic) to the first right answer to a query sent at or
        after it; a query every ``step`` s. Fails after ``timeout`` s."""
        sent = set()
        while True:
            now = time.monotonic()
            if now - since > timeout:
                raise AssertionError(f"no answer on {self.server} within {timeout} s")
            self.qid = (self.qid + 1) & 0xFFFF
            try:
                # RD set: minimal responses (the client is in the cluster's subnet)
                self.sock.sendto(struct.pack("!HHHHHH", self.qid, 0x0100, 1, 0, 0, 0) + self.question, (self.server, 53))
                sent.add(self.qid)
            except OSError:  # e.g. no ARP answer for the VIP yet
                pass
            deadline = now + step
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([self.sock], [], [], left)[0]:
                    break
                try:
                    data = self.sock.recv(4096)
                except OSError:
                    continue
                if self._answer_id(data) in sent:
                    return time.monotonic() - since


class AddressWatch:
    """``ip monitor address`` in namespace ``ns``: when ``address`` was added (time.monotonic)."""

    def __init__(self, ns, address):
        self.address, self.added = address, []
        self.proc = subprocess.Popen(["ip", "-n", ns, "monitor", "address"], stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if f" inet {self.address}/" in line and not line.startswith("Deleted"):
                self.added.append(time.monotonic())

    def first_after(self, since, timeout=2):
        """Seconds from ``since`` to the first addition after it (its line may come in late)."""
        end = time.monotonic() + timeout
        while (found := next((t - since for t in self.added if t >= since), None)) is None and time.monotonic() < end:
            time.sleep(0.01)
        return found

    def close(self):
        self.proc.kill()
        self.proc.wait()


def _power_off(net, running, name):
    """``name`` loses power: its link goes dark at once (the switch port with it); its daemons
    die without a word, in a thread (returned: join it) so that the caller can measure from the
    moment the link went down; it will come back without the VIP and without /run's pid files."""
    _ip("-n", net.ns[name], "link", "set", "eth0", "down")

    def die():
        for daemon in ("keepalived", "named"):
            _gone(_kill(running[name][daemon]))
        net.run(name, "ip", "addr", "del", f"{VIP}/{PREFIX}", "dev", "eth0")  # if it still has it

    thread = threading.Thread(target=die)
    thread.start()
    return thread


def _power_on(net, running, name, dying):
    """``name`` boots (once ``dying``, the thread of ``_power_off``, is done): link up, named,
    then keepalived (as the units are ordered)."""
    dying.join()
    _ip("-n", net.ns[name], "link", "set", "eth0", "up")
    running[name]["named"] = _start_named(net, name, running[name])
    wait_for(lambda: _named_answers(net, name), 15, 0.05, f"named on {name}")
    running[name]["keepalived"] = _start_keepalived(net, name, running[name])


def test_a_power_loss_of_the_primary_moves_dns_on_the_vip_to_the_secondary_and_back(net, running):
    qname, psi = f"psi.{DOMAIN}", INV["nodes"]["psi"]["ip"]
    probe = DnsProbe(net.ns["client"], VIP, qname, psi)
    watch = AddressWatch(net.ns["beta"], VIP)
    times = []
    try:
        for run in range(1, POWER_LOSS_RUNS + 1):
            _normal(net, running)
            probe.first_answer(time.monotonic(), 10)  # DNS on the VIP answers (from alpha)
            lost = time.monotonic()
            dying = _power_off(net, running, "alpha")
            took = probe.first_answer(lost, 15)
            times.append(took)
            vip_on_beta = watch.first_after(lost)
            # the answer came from beta: alpha is dark (its daemons dead now), beta holds the VIP
            dying.join()
            wait_for(lambda: _holder(net) == "beta" and _status(net, running, "beta")["state"] == "MASTER", 5, 0.05,
                     "beta MASTER holding the VIP")
            assert net.dig("client", f"@{VIP}", qname) == [psi]
            vip_on_beta = "?" if vip_on_beta is None else f"{vip_on_beta:.3f}"
            print(f"\nrun {run}: after the power loss of alpha, the VIP on beta at {vip_on_beta} s, "
                  f"DNS on the VIP answered at {took:.3f} s")
            _power_on(net, running, "alpha", dying)
            # alpha preempts: the VIP on alpha only, beta BACKUP; DNS on the VIP from alpha again
            _normal(net, running)
            probe.first_answer(time.monotonic(), 10)
            assert _holder(net) == "alpha"  # not "both"
    finally:
        probe.close()
        watch.close()
    print(f"power loss -> DNS on the VIP, advert_int {DEFAULTS['advert_int']} s, {len(times)} runs: "
          + ", ".join(f"{t:.3f}" for t in times)
          + f" s; median {statistics.median(times):.3f} s, range {min(times):.3f}-{max(times):.3f} s")


def _rogue_config(path):
    # the stranger claims the cluster's VRID and VIP with the highest priority there is; the
    # VIP on its loopback and arp_ignore: it must not steal the VIP by ARP, only by VRRP
    path.write_text(f"""global_defs {{
    router_id rogue
    vrrp_version 3
}}
vrrp_instance VI_DNS {{
    state MASTER
    interface eth0
    virtual_router_id {DEFAULTS['virtual_router_id']}
    priority 254
    advert_int {DEFAULTS['advert_int']}
    unicast_src_ip {ROGUE}
    unicast_peer {{
        {IPS['alpha']}
        {IPS['beta']}
    }}
    virtual_ipaddress {{
        {VIP}/{PREFIX} dev lo
    }}
}}
""")


def test_adverts_from_a_stranger_are_dropped(net, running, tmp_path):
    _normal(net, running)
    net.run("rogue", "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1")
    _rogue_config(tmp_path / "rogue.conf")
    marks = {name: len(running[name]["keepalived"].output()) for name in ("alpha", "beta")}
    rogue = net.start("rogue", [KEEPALIVED, "-n", "-l", "-D", "-P", "-f", str(tmp_path / "rogue.conf"),
                                "-p", str(tmp_path / "rogue.pid"), "-r", str(tmp_path / "rogue-vrrp.pid")],
                      tmp_path / "rogue.log")
    dropped = f"(VI_DNS) unicast source address {ROGUE} not a unicast peer"
    try:
        wait_for(lambda: "Entering MASTER STATE" in rogue.output(), 10, 0.1, "the rogue MASTER")
        for name in ("alpha", "beta"):
            wait_for(lambda n=name: dropped in running[n]["keepalived"].output()[marks[n]:], 10, 0.1,
                     f"{name} dropping the rogue's adverts")
        time.sleep(10 * DEFAULTS["advert_int"])
        # the stranger's priority 254 changed nothing
        assert _holder(net) == "alpha"
        assert _status(net, running, "alpha")["state"] == "MASTER"
        assert _status(net, running, "beta")["state"] == "BACKUP"
        for name in ("alpha", "beta"):
            assert "Entering" not in running[name]["keepalived"].output()[marks[name]:]
        # and beta takes over when alpha loses power: the stranger's adverts do not keep it back
        dying = _power_off(net, running, "alpha")
        wait_for(lambda: _holder(net) == "beta", 15, 0.02, "the VIP on beta, the rogue still talking")
        assert net.dig("client", f"@{VIP}", f"psi.{DOMAIN}") == [INV["nodes"]["psi"]["ip"]]
    finally:
        rogue.stop()
    _power_on(net, running, "alpha", dying)
    _normal(net, running)


TRANSITIONS = re.compile(r"\(VI_DNS\) (Entering \w+ STATE|Receive advertisement timeout|Changing effective priority|"
                         r"Master received advert)|VRRP_Script\(chk_named\) (failed|timed_out)|Quorum \w+ for tracked")


def _transitions(text):
    """The log lines of ``text`` that tell of a state or priority change or a failed check."""
    return [line.split(": ", 1)[-1] for line in text.splitlines() if TRANSITIONS.search(line)]


class AdvertGaps:
    """The VRRP adverts from ``source`` arriving in namespace ``ns`` (a raw socket there, kernel
    receive timestamps): the largest gap between two of them."""

    def __init__(self, ns, source):
        with in_netns(ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.settimeout(0.5)
        self.source, self.stamps, self.running = socket.inet_aton(source), [], True
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while self.running:
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(2048, 64)
            except (TimeoutError, OSError):
                continue
            if data[12:16] != self.source:
                continue
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", value[:16])
                    self.stamps.append(sec + nsec / 1e9)

    def stop(self):
        self.running = False
        self.thread.join()
        self.sock.close()
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        return len(self.stamps), max(gaps, default=None)


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def test_sub_second_adverts_hold_under_cpu_load(net, running):
    """Both CPUs of the host busy for 20 s: no state change, no spurious takeover."""
    _normal(net, running)
    seconds, cpus = 20, os.cpu_count() or 2
    marks = {name: len(running[name]["keepalived"].output()) for name in ("alpha", "beta")}
    holders = set()
    gaps = AdvertGaps(net.ns["beta"], IPS["alpha"])
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cpus)]
    try:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            holders.add(_holder(net))
            time.sleep(0.2)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
        adverts, widest = gaps.stop()
    changes = {name: _transitions(running[name]["keepalived"].output()[marks[name]:]) for name in ("alpha", "beta")}
    down = 3 * DEFAULTS["advert_int"] + (256 - DEFAULTS["priority"]["secondary"]) / 256 * DEFAULTS["advert_int"]
    print(f"\n{cpus} busy loops for {seconds} s, advert_int {DEFAULTS['advert_int']} s, "
          f"{adverts} adverts alpha -> beta, the widest gap "
          f"{widest:.3f} s (beta takes over after {down:.3f} s); VIP holders seen {sorted(map(str, holders))}, "
          f"state changes {changes}")
    assert holders == {"alpha"} and changes == {"alpha": [], "beta": []}
