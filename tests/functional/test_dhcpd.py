"""The dhcpd state on the test host (files under a scratch root, real ``dhcpd -t`` checks), and
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

import pytest

from tests.functional.lannet import (
    HAVE_NETNS,
    Switch,
    by_id,
    changed,
    failed,
    in_netns,
    node_loaders,
    verify_unit,
    wait_for,
)

pytestmark = pytest.mark.skipif(not HAVE_NETNS, reason="needs root and `ip netns` (private network namespaces)")

BUSYBOX = "/bin/busybox"
CONF = "/etc/dhcp/dhcpd.conf"
VIP, ALPHA, BETA = "192.168.10.111", "192.168.10.6", "192.168.10.8"


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return {name: tmp_path_factory.mktemp(f"dhcpd-{name}") for name in ("alpha", "beta")}


@pytest.fixture(scope="module")
def alpha(salt_factories, roots, secrets_dir):
    return node_loaders(salt_factories, "alpha", roots["alpha"], secrets_dir, dhcpd={"interface": "eth0"})


@pytest.fixture(scope="module")
def beta(salt_factories, roots, secrets_dir):
    return node_loaders(salt_factories, "beta", roots["beta"], secrets_dir, dhcpd={"interface": "eth0"})


@pytest.fixture(scope="module")
def applied(alpha, beta, roots):
    """Both peers' files written by the real state (test mode first, then for real)."""
    runs = {}
    for name, loaders in (("alpha", alpha), ("beta", beta)):
        dry = loaders.modules.state.sls("dhcpd", test=True)
        written_by_dry_run = sorted(str(p) for p in roots[name].rglob("*") if p.is_file())
        real = loaders.modules.state.sls("dhcpd")
        runs[name] = (dry, written_by_dry_run, real)
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
    assert f'include "{key}";' in conf.read_text()
    assert (root / "etc/default/isc-dhcp-server").read_text().count('INTERFACESv4="eth0"') == 1
    unit = (root / "etc/systemd/system/isc-dhcp-server.service").read_text()
    assert f"ExecStart=/usr/sbin/dhcpd -4 -f -q -cf {conf}" in unit
    assert verify_unit(root / "etc/systemd/system/isc-dhcp-server.service") == []
    # the secret is in the key file, never in the state's output
    secret = (secrets_dir / "omapi.key").read_text().strip()
    assert f'secret "{secret}";' in key.read_text()
    assert secret not in json.dumps(real.raw)
    again = alpha.modules.state.sls("dhcpd")
    assert not failed(again) and changed(again) == {}


def test_real_dhcpd_accepts_both_rendered_peers(applied, roots):
    for name in ("alpha", "beta"):
        conf = roots[name] / CONF.lstrip("/")
        res = subprocess.run(["dhcpd", "-4", "-t", "-cf", str(conf)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, res.stderr
    assert "\n  primary;" in (roots["alpha"] / CONF.lstrip("/")).read_text()
    assert "\n  secondary;" in (roots["beta"] / CONF.lstrip("/")).read_text()


def test_a_broken_config_is_rejected_and_the_live_one_stays(applied, salt_factories, roots, secrets_dir):
    conf = roots["alpha"] / CONF.lstrip("/")
    before = sha(conf)
    broken = node_loaders(salt_factories, "alpha", roots["alpha"], secrets_dir,
                          dhcpd={"interface": "eth0", "max_lease_time": "forever"})
    ret = broken.modules.state.sls("dhcpd")
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
    delta = node_loaders(salt_factories, "delta", tmp_path, secrets_dir, dhcpd={"interface": "eth0"})
    ret = delta.modules.state.sls("dhcpd")
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
def running_pair(roots, run, bridge):
    """alpha and beta running the rendered configs, plus a client, on one bridge."""
    nodes = {"alpha": {"ip": f"{ALPHA}/24"}, "beta": {"ip": f"{BETA}/24"}, "client": {}}
    with Switch(bridge, nodes) as lan:
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
                ["dhcpd", "-4", "-f", "-d", "-cf", str(roots[name] / CONF.lstrip("/")), "-lf", str(leases),
                 "-pf", str(run / f"{name}.pid"), "eth0"],
                run / f"{name}.log",
            )

        daemons = {name: start(name) for name in ("alpha", "beta")}
        yield {"lan": lan, "daemons": daemons, "run": run, "start": start}


@pytest.fixture(scope="module")
def pair(applied, roots, tmp_path_factory):
    with running_pair(roots, tmp_path_factory.mktemp("dhcpd-run"), f"rpic-dh{os.getpid() % 100000}") as running:
        yield running


def omapi(loaders, lan, node, roots, fn="status", **kwargs):
    with in_netns(lan.ns[node]):
        return getattr(loaders.modules.dhcpd_failover, fn)(config=str(roots[node] / CONF.lstrip("/")), **kwargs)


def both_normal(alpha, beta, lan, roots):
    states = [omapi(loaders, lan, name, roots)["dhcp-failover"] for name, loaders in (("alpha", alpha), ("beta", beta))]
    return all(s["local_state"] == s["partner_state"] == "normal" for s in states) and states


def test_live_failover_pair(pair, alpha, beta, roots, tmp_path):
    lan, daemons = pair["lan"], pair["daemons"]

    # 1. both peers reach normal; OMAPI reads it on each, with the right roles
    a, b = wait_for(lambda: both_normal(alpha, beta, lan, roots), 60, step=0.5, what="both peers normal")
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
    spools = {name: roots[name] / "run/cluster-dhcp-commits" for name in ("alpha", "beta")}
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
    with in_netns(lan.ns["beta"]):
        ret = beta.states.dhcpd_failover.partner_down(name="dhcp-failover", config=str(roots["beta"] / CONF.lstrip("/")))
    assert ret.result is False and "is in normal" in ret.comment and not ret.changes

    # 5. alpha stops: beta notices at once (TCP close) and still leases
    daemons["alpha"].stop(signal.SIGTERM)
    state = wait_for(
        lambda: omapi(beta, lan, "beta", roots)["dhcp-failover"]["local_state"] == "communications-interrupted",
        30, step=0.2, what="beta in communications-interrupted",
    )
    assert state
    again = udhcpc(lan, tmp_path, "epsilon", "b8:27:eb:00:00:22")
    assert again["ip"] == "192.168.10.22" and again["serverid"] == BETA

    # 6. the state puts the survivor into partner-down: test mode, real mode, then nothing to do
    config = str(roots["beta"] / CONF.lstrip("/"))
    with in_netns(lan.ns["beta"]):
        dry = beta.states.dhcpd_failover.partner_down(name="dhcp-failover", config=config, test=True)
        assert dry.result is None and "would move" in dry.comment
        assert beta.modules.dhcpd_failover.peer_state(config=config)["local_state"] == "communications-interrupted"
        real = beta.states.dhcpd_failover.partner_down(name="dhcp-failover", config=config)
        assert real.result is True
        assert real.changes == {"local_state": {"old": "communications-interrupted", "new": "partner-down"}}
        assert beta.modules.dhcpd_failover.peer_state(config=config)["local_state"] == "partner-down"
        twice = beta.states.dhcpd_failover.partner_down(name="dhcp-failover", config=config)
        assert twice.result is True and not twice.changes
    assert "I move from communications-interrupted to partner-down" in daemons["beta"].output()


def test_planned_shutdown_hands_the_whole_pool_to_the_partner(applied, alpha, beta, roots, tmp_path):
    """orch.maintenance's drain and undrain: alpha goes to shutdown over OMAPI, beta answers with
    partner-down at once and leases alone after alpha's dhcpd stopped; alpha restarted is
    resumed into recover, which beta sees."""
    with running_pair(roots, tmp_path, f"rpic-ds{os.getpid() % 100000}") as running:
        lan, daemons = running["lan"], running["daemons"]
        wait_for(lambda: both_normal(alpha, beta, lan, roots), 60, step=0.5, what="both peers normal")
        done = omapi(alpha, lan, "alpha", roots, fn="shutdown")
        assert done == {"name": "dhcp-failover", "changed": True, "old": "normal", "new": "shutdown"}
        assert omapi(alpha, lan, "alpha", roots, fn="shutdown")["changed"] is False
        wait_for(lambda: omapi(beta, lan, "beta", roots)["dhcp-failover"]["local_state"] == "partner-down",
                 30, step=0.2, what="beta in partner-down after alpha's shutdown")
        daemons["alpha"].stop(signal.SIGTERM)
        lease = udhcpc(lan, tmp_path, "epsilon", "b8:27:eb:00:00:22")
        assert lease["ip"] == "192.168.10.22" and lease["serverid"] == BETA
        # back from maintenance: dhcpd keeps shutdown across a restart; resume moves it to recover
        # (then recover-wait for one MCLT, then normal with beta)
        daemons["alpha"] = running["start"]("alpha")
        settled = lambda: omapi(alpha, lan, "alpha", roots)["dhcp-failover"]["local_state"]  # noqa: E731
        state = wait_for(lambda: settled() not in ("startup", "unknown-state") and settled(),
                         30, step=0.5, what="alpha's dhcpd answering OMAPI again, past startup")
        assert state == "shutdown"
        back = omapi(alpha, lan, "alpha", roots, fn="resume")
        assert back["changed"] is True and back["new"] in ("recover", "recover-wait"), back
        assert omapi(alpha, lan, "alpha", roots, fn="resume")["changed"] is False
        wait_for(lambda: omapi(beta, lan, "beta", roots)["dhcp-failover"]["partner_state"] in ("recover", "recover-wait"),
                 30, step=0.5, what="beta sees alpha recovering")


def test_omapi_refuses_a_wrong_key(pair, beta, roots, tmp_path):
    conf = (roots["beta"] / CONF.lstrip("/")).read_text()
    wrong = tmp_path / "wrong.key"
    wrong.write_text('key omapi-key { algorithm hmac-sha256; secret "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; };\n')
    other = tmp_path / "dhcpd.conf"
    other.write_text(conf.replace(str(roots["beta"] / "etc/dhcp/omapi.key"), str(wrong)))
    with in_netns(pair["lan"].ns["beta"]), pytest.raises(Exception, match="refused the key"):
        beta.modules.dhcpd_failover.status(config=str(other))


def test_nothing_listens_when_dhcpd_is_down(pair, alpha, roots):
    pair["daemons"]["alpha"].stop()  # already stopped by the failover test, unless it failed early
    with in_netns(pair["lan"].ns["alpha"]), pytest.raises(Exception, match="cannot connect to dhcpd OMAPI"):
        alpha.modules.dhcpd_failover.status(config=str(roots["alpha"] / CONF.lstrip("/")))
