"""The dhcpd state on the test host (in each node's own files, tests/functional/nodefs.py; real
``dhcpd -t`` checks; systemd mocked), and
the rendered pair run for real: two dhcpd in private network namespaces on a bridge, a DHCP
client (busybox udhcpc) with inventory and unknown MACs, the OMAPI localhost guard, the
failover states read over OMAPI by the dhcpd_failover module, a peer stopped, partner-down."""

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
import types

import pytest

from tests.functional.lannet import (
    HAVE_NETNS,
    Switch,
    by_id,
    changed,
    failed,
    verify_unit,
    wait_for,
)
from tests.functional.nodefs import make_node

pytestmark = pytest.mark.skipif(not HAVE_NETNS, reason="needs root and `ip netns` (private network namespaces)")

BUSYBOX = "/bin/busybox"
CONF = "/etc/dhcp/dhcpd.conf"
VIP, ALPHA, BETA = "192.168.10.111", "192.168.10.6", "192.168.10.8"
# beacon.present asks the running minion (over its event bus) which beacons it has: there is no
# minion daemon here. The lab proves that state (tests/lab/test_55_zero_touch.py).
NO_BEACON = [{"id": "dhcpd-commits-beacon-present"}]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return {name: tmp_path_factory.mktemp(f"dhcpd-{name}") for name in ("alpha", "beta")}


@pytest.fixture(scope="module")
def alpha(salt_factories, roots, secrets_dir):
    return make_node(salt_factories, "alpha", roots["alpha"], secrets_dir, dhcpd={"interface": "eth0"})


@pytest.fixture(scope="module")
def beta(salt_factories, roots, secrets_dir):
    return make_node(salt_factories, "beta", roots["beta"], secrets_dir, dhcpd={"interface": "eth0"})


@pytest.fixture(scope="module")
def applied(alpha, beta, roots):
    """Both peers' files written by the real state (test mode first, then for real)."""
    runs = {}
    for name, node in (("alpha", alpha), ("beta", beta)):
        run = node.dry_then_real("dhcpd", exclude=NO_BEACON)
        runs[name] = (run["dry"], run["written_by_dry_run"], run["real"])
    return runs


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------
# the state


def test_test_mode_writes_nothing(applied):
    dry, written, _ = applied["alpha"]
    assert not failed(dry), failed(dry)
    for sid in ("dhcpd-omapi-key-file-managed", "dhcpd-config-file-managed", "dhcpd-omapi-guard-file-managed",
                "dhcpd-defaults-file-managed", "dhcpd-unit-file-managed"):
        assert by_id(dry, sid)["result"] is None, sid
    assert written == []


def test_real_mode_writes_checked_files_then_changes_nothing(applied, alpha, roots, secrets_dir):
    _, _, real = applied["alpha"]
    assert not failed(real), failed(real)
    root = roots["alpha"]
    conf = root / CONF.lstrip("/")
    key = root / "etc/dhcp/omapi.key"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert 'include "/etc/dhcp/omapi.key";' in conf.read_text()
    assert (root / "etc/default/isc-dhcp-server").read_text().count('INTERFACESv4="eth0"') == 1
    unit = (root / "etc/systemd/system/isc-dhcp-server.service").read_text()
    assert f"ExecStart=/usr/sbin/dhcpd -4 -f -q -cf {CONF}" in unit
    assert verify_unit(root / "etc/systemd/system/isc-dhcp-server.service") == []
    # the secret is in the key file, never in the state's output
    secret = (secrets_dir / "omapi.key").read_text().strip()
    assert f'secret "{secret}";' in key.read_text()
    assert secret not in json.dumps(real.raw)
    again = alpha.sls("dhcpd", exclude=NO_BEACON)
    assert not failed(again) and changed(again) == {}


def test_the_server_runs_enabled_after_a_daemon_reload_mocked_systemctl(applied, alpha):
    units = alpha.fs.units()
    assert units["isc-dhcp-server.service"] == {"active": True, "enabled": True}, units
    calls = alpha.fs.systemctl_calls()
    assert calls.index("daemon-reload") < calls.index("start isc-dhcp-server.service"), calls


def test_real_dhcpd_accepts_both_rendered_peers(applied, alpha, beta, roots):
    for node in (alpha, beta):
        res = subprocess.run(node.wrap(["dhcpd", "-4", "-t", "-cf", CONF]), capture_output=True, text=True,
                             check=False)
        assert res.returncode == 0, res.stderr
    assert "\n  primary;" in (roots["alpha"] / CONF.lstrip("/")).read_text()
    assert "\n  secondary;" in (roots["beta"] / CONF.lstrip("/")).read_text()


def test_a_broken_config_is_rejected_and_the_live_one_stays(applied, salt_factories, roots, secrets_dir):
    conf = roots["alpha"] / CONF.lstrip("/")
    before = sha(conf)
    broken = make_node(salt_factories, "alpha", roots["alpha"], secrets_dir,
                       dhcpd={"interface": "eth0", "max_lease_time": "forever"})
    ret = broken.sls("dhcpd", exclude=NO_BEACON)
    result = by_id(ret, "dhcpd-config-file-managed")
    assert result["result"] is False
    assert "check_cmd execution failed" in result["comment"]
    assert "expecting number" in result["comment"]  # dhcpd's own message reaches the operator
    assert sha(conf) == before
    assert not list(conf.parent.glob("tmp*")), "the candidate was left beside the live file"


def test_the_omapi_guard_passes_nft_check(applied, roots):
    guard = roots["alpha"] / "etc/dhcp/omapi-localhost.nft"
    res = subprocess.run(["nft", "-c", "-f", str(guard)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert 'tcp dport 7911 iif != "lo" reject' in guard.read_text()


def test_not_a_lanservices_node(salt_factories, tmp_path, secrets_dir):
    delta = make_node(salt_factories, "delta", tmp_path, secrets_dir, dhcpd={"interface": "eth0"})
    ret = delta.sls("dhcpd")
    assert "'delta' is not a lanservices node" in json.dumps(ret.raw)


# ------------------------------------------------------------------------------------------
# the real pair


def udhcpc(lan, tmp_path, tag, mac):
    """One DHCP exchange from the client namespace with ``mac``; the lease's variables."""
    out = tmp_path / f"lease-{tag}.env"
    script = tmp_path / f"udhcpc-{tag}.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > {out}\nexit 0\n')
    script.chmod(0o755)
    subprocess.run(["ip", "-n", lan.ns["client"], "link", "set", "eth0", "address", mac], check=True)
    res = lan.run("client", BUSYBOX, "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "8", "-T", "1",
                  "-A", "1", "-O", "ntpsrv", "-s", str(script), timeout=30)
    assert out.exists(), f"no lease for {mac}: {res.stdout}{res.stderr}"
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def connects(lan, node, host, port):
    code = (f"import socket; s = socket.socket(); s.settimeout(2); "
            f"print(s.connect_ex(('{host}', {port})))")
    res = lan.run(node, "python3", "-c", code)
    return res.stdout.strip() == "0"


@contextlib.contextmanager
def running_pair(nodes, run, bridge):
    """alpha and beta running the rendered configs (each in its own files), plus a client, on
    one bridge."""
    roots = {name: node.root for name, node in nodes.items()}
    addresses = {"alpha": {"ip": f"{ALPHA}/24"}, "beta": {"ip": f"{BETA}/24"}, "client": {}}
    with Switch(bridge, addresses) as lan:
        # the OMAPI guard on alpha only: beta shows what an unguarded OMAPI looks like
        guard = roots["alpha"] / "etc/dhcp/omapi-localhost.nft"
        for _ in range(2):  # loaded at every start of the unit: reloading must work
            res = lan.run("alpha", "nft", "-f", str(guard))
            assert res.returncode == 0, res.stderr
        def start(name):
            leases = run / f"{name}.leases"
            leases.touch()
            return lan.start(
                name,
                nodes[name].wrap(["dhcpd", "-4", "-f", "-d", "-cf", CONF, "-lf", str(leases),
                                  "-pf", str(run / f"{name}.pid"), "eth0"]),
                run / f"{name}.log",
            )

        daemons = {name: start(name) for name in ("alpha", "beta")}
        yield {"lan": lan, "daemons": daemons, "run": run, "start": start}


@pytest.fixture(scope="module")
def pair(applied, alpha, beta, tmp_path_factory):
    nodes = {"alpha": alpha, "beta": beta}
    with running_pair(nodes, tmp_path_factory.mktemp("dhcpd-run"), f"rpic-dh{os.getpid() % 100000}") as running:
        yield running


def omapi(node, lan, fn="status", config=CONF, **kwargs):
    """dhcpd_failover.<fn> on ``node``, in its files and its network namespace."""
    return node.call(lambda loaders: getattr(loaders.modules.dhcpd_failover, fn)(config=config, **kwargs),
                     netns=lan.ns[node.name])


def partner_down(node, lan, **kwargs):
    """The dhcpd_failover.partner_down state on ``node``: {result, comment, changes}."""
    def state(loaders):
        ret = loaders.states.dhcpd_failover.partner_down(name="dhcp-failover", config=CONF, **kwargs)
        return {"result": ret.result, "comment": ret.comment, "changes": ret.changes}
    return types.SimpleNamespace(**node.call(state, netns=lan.ns[node.name]))


def both_normal(alpha, beta, lan):
    states = [omapi(node, lan)["dhcp-failover"] for node in (alpha, beta)]
    return all(s["local_state"] == s["partner_state"] == "normal" for s in states) and states


def test_live_failover_pair(pair, alpha, beta, tmp_path):
    lan, daemons = pair["lan"], pair["daemons"]

    # 1. both peers reach normal; OMAPI reads it on each, with the right roles
    a, b = wait_for(lambda: both_normal(alpha, beta, lan), 60, step=0.5, what="both peers normal")
    assert (a["role"], b["role"]) == ("primary", "secondary")
    assert (a["local_port"], a["partner_port"], a["mclt"]) == (647, 847, 60)

    # 2. a client with an inventory MAC gets its reserved address, the VIP first as DNS, both
    #    servers as NTP, the domain and the network-boot file; an unknown MAC gets a pool address
    lease = udhcpc(lan, tmp_path, "delta", "b8:27:eb:00:00:21")
    assert lease["ip"] == "192.168.10.21"
    assert lease["dns"].split() == [VIP, ALPHA, BETA]
    assert lease["ntpsrv"].split() == [ALPHA, BETA]
    assert lease["domain"] == "dc1.b3rry.clust0r"
    assert lease["boot_file"] == "pxelinux.0"
    assert lease["siaddr"] == lease["serverid"]  # next-server = the server that answered
    assert lease["hostname"] == "delta"
    stranger = udhcpc(lan, tmp_path, "stranger", "02:00:00:00:00:99")
    last = int(stranger["ip"].rsplit(".", 1)[1])
    assert stranger["ip"].startswith("192.168.10.") and 200 <= last <= 240, stranger["ip"]
    # the commit hook recorded delta's lease on the server that gave it (the other one may too:
    # both answer a fixed address; the master takes one), and nothing for the stranger (only
    # inventory nodes have a hook): what the minion's beacon hands the master
    spools = {node.name: node.root / "run/cluster-dhcp-commits" for node in (alpha, beta)}
    records = {name: sorted(p.name for p in spool.iterdir()) if spool.exists() else [] for name, spool in spools.items()}
    server = "alpha" if lease["serverid"] == ALPHA else "beta"
    assert records[server] == ["delta"] and set(records["alpha"] + records["beta"]) == {"delta"}, records
    address, stamp = (spools[server] / "delta").read_text().split()
    assert address == "192.168.10.21" and abs(int(stamp) - time.time()) < 60

    # 3. OMAPI: the guard refuses connections that do not come over lo; unguarded beta accepts
    subprocess.run(["ip", "-n", lan.ns["client"], "addr", "add", "192.168.10.50/24", "dev", "eth0"], check=True)
    assert not connects(lan, "client", ALPHA, 7911)
    assert connects(lan, "client", BETA, 7911)
    assert connects(lan, "alpha", "127.0.0.1", 7911)

    # 4. partner-down is refused while the partner talks (real mode, nothing changes)
    ret = partner_down(beta, lan)
    assert ret.result is False and "is in normal" in ret.comment and not ret.changes

    # 5. alpha stops: beta notices at once (TCP close) and still leases
    daemons["alpha"].stop(signal.SIGTERM)
    state = wait_for(
        lambda: omapi(beta, lan)["dhcp-failover"]["local_state"] == "communications-interrupted",
        30, step=0.2, what="beta in communications-interrupted",
    )
    assert state
    again = udhcpc(lan, tmp_path, "epsilon", "b8:27:eb:00:00:22")
    assert again["ip"] == "192.168.10.22" and again["serverid"] == BETA

    # 6. the state puts the survivor into partner-down: test mode, real mode, then nothing to do
    dry = partner_down(beta, lan, test=True)
    assert dry.result is None and "would move" in dry.comment
    assert omapi(beta, lan, fn="peer_state")["local_state"] == "communications-interrupted"
    real = partner_down(beta, lan)
    assert real.result is True
    assert real.changes == {"local_state": {"old": "communications-interrupted", "new": "partner-down"}}
    assert omapi(beta, lan, fn="peer_state")["local_state"] == "partner-down"
    twice = partner_down(beta, lan)
    assert twice.result is True and not twice.changes
    assert "I move from communications-interrupted to partner-down" in daemons["beta"].output()


def test_planned_shutdown_hands_the_whole_pool_to_the_partner(applied, alpha, beta, tmp_path):
    """orch.maintenance's drain and undrain: alpha goes to shutdown over OMAPI, beta answers with
    partner-down at once and leases alone after alpha's dhcpd stopped; alpha restarted is
    resumed into recover, which beta sees."""
    with running_pair({"alpha": alpha, "beta": beta}, tmp_path, f"rpic-ds{os.getpid() % 100000}") as running:
        lan, daemons = running["lan"], running["daemons"]
        wait_for(lambda: both_normal(alpha, beta, lan), 60, step=0.5, what="both peers normal")
        done = omapi(alpha, lan, fn="shutdown")
        assert done == {"name": "dhcp-failover", "changed": True, "old": "normal", "new": "shutdown"}
        assert omapi(alpha, lan, fn="shutdown")["changed"] is False
        wait_for(lambda: omapi(beta, lan)["dhcp-failover"]["local_state"] == "partner-down",
                 30, step=0.2, what="beta in partner-down after alpha's shutdown")
        daemons["alpha"].stop(signal.SIGTERM)
        lease = udhcpc(lan, tmp_path, "epsilon", "b8:27:eb:00:00:22")
        assert lease["ip"] == "192.168.10.22" and lease["serverid"] == BETA
        # back from maintenance: dhcpd keeps shutdown across a restart; resume moves it to recover
        # (then recover-wait for one MCLT, then normal with beta)
        daemons["alpha"] = running["start"]("alpha")
        settled = lambda: omapi(alpha, lan)["dhcp-failover"]["local_state"]  # noqa: E731
        state = wait_for(lambda: settled() not in ("startup", "unknown-state") and settled(),
                         30, step=0.5, what="alpha's dhcpd answering OMAPI again, past startup")
        assert state == "shutdown"
        back = omapi(alpha, lan, fn="resume")
        assert back["changed"] is True and back["new"] in ("recover", "recover-wait"), back
        assert omapi(alpha, lan, fn="resume")["changed"] is False
        wait_for(lambda: omapi(beta, lan)["dhcp-failover"]["partner_state"] in ("recover", "recover-wait"),
                 30, step=0.5, what="beta sees alpha recovering")


def test_omapi_refuses_a_wrong_key(pair, beta, tmp_path):
    conf = (beta.root / CONF.lstrip("/")).read_text()
    wrong = tmp_path / "wrong.key"
    wrong.write_text('key omapi-key { algorithm hmac-sha256; secret "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; };\n')
    other = tmp_path / "dhcpd.conf"
    other.write_text(conf.replace('include "/etc/dhcp/omapi.key"', f'include "{wrong}"'))
    assert str(wrong) in other.read_text()
    with pytest.raises(Exception, match="refused the key"):
        omapi(beta, pair["lan"], config=str(other))


def test_nothing_listens_when_dhcpd_is_down(pair, alpha):
    pair["daemons"]["alpha"].stop()  # already stopped by the failover test, unless it failed early
    with pytest.raises(Exception, match="cannot connect to dhcpd OMAPI"):
        omapi(alpha, pair["lan"])
