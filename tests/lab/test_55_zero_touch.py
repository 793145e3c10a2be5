"""End to end on the lab: the bootstrap router's handover and the zero-touch rebuild (issue 10).

The vanilla cards leased their addresses from the router stand-in (tests/lab/test_00_lab.py);
orch.cluster handed DHCP over to the lanservices pair. Now only the pair answers DHCP, a MAC that
is not in the inventory triggers nothing, and epsilon (``rebuild: auto`` in lab/inventory.yaml)
re-flashed and powered on comes back provisioned and healthy with no command. The node without
``rebuild: auto`` (gamma, tests/lab/test_50_rebuild.py) only waits for ``cluster.rebuild``.
"""

import re
import subprocess
import time

import pytest

from lab.probe import DhcpClient
from tests.lab.conftest import salt, salt_run
from tests.lab.test_50_rebuild import _build, _highstates_since, _jid_now

pytestmark = pytest.mark.lab

AUTO = "epsilon"  # rebuild: auto in lab/inventory.yaml
UNKNOWN_MAC = "02:77:00:00:00:55"
AUDIT_LOG = "/var/log/salt/cluster-audit.log"
WITHIN = 600  # s: the bound, from the reflash to provisioned and healthy


def _offers(mac):
    """The addresses that sent DHCP replies while a client with ``mac`` asked for a lease: tcpdump
    on the client's own link (offers are unicast to the client's MAC: the bridge's own port would
    not see them), so every server's answer is seen, not only the one the client took."""
    with DhcpClient(mac, tag="z") as client:
        with subprocess.Popen(
            ["tcpdump", "-i", client.host_if, "-n", "-l", "-p", "udp and src port 67"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) as dump:
            time.sleep(1.5)  # tcpdump listening
            lease = client.lease()
            time.sleep(2)  # a slower server's offer
            dump.terminate()
            out, _ = dump.communicate(timeout=10)
    return lease, sorted(set(re.findall(r"IP (\d+\.\d+\.\d+\.\d+)\.67 >", out)))


def _audit(cluster):
    return cluster.run("psi", f"sudo cat {AUDIT_LOG} 2>/dev/null").stdout


def test_only_the_pair_answers_dhcp_after_the_handover(rolled_out):
    st = rolled_out.status()
    pair = {st["nodes"]["alpha"]["ip"], st["nodes"]["beta"]["ip"]}
    assert st["router"]["state"] == "running" and st["router"]["dhcp"] == "off", st["router"]
    lease, offers = _offers(UNKNOWN_MAC)
    assert lease and lease["server"] in pair, lease
    assert offers and set(offers) <= pair, f"DHCP replies from {offers}; the router is {st['router']['ip']}"
    # the router keeps answering DNS for the cluster names, as OpenWRT does after the handover
    dig = subprocess.run(["dig", "+short", "+time=2", f"@{st['router']['ip']}", f"alpha.{st['domain']}"],
                         capture_output=True, text=True, check=False).stdout.split()
    assert dig == [st["nodes"]["alpha"]["ip"]]
    # and a second handover changes nothing
    code, report, err = salt_run(rolled_out, "cluster.router_handover", timeout=180)
    assert code == 0 and report["result"] is True and report["changed"] is False, (report, err)


def test_an_unknown_mac_triggers_no_rebuild(rolled_out):
    audit_before = _audit(rolled_out)
    with DhcpClient(UNKNOWN_MAC, tag="n") as client:
        lease = client.lease()
    assert lease and lease["ip"], "no lease for an unknown MAC"
    time.sleep(15)  # the beacon (2 s), the event, the reactor: long enough for a wrong rebuild to start
    assert _audit(rolled_out) == audit_before
    code, report, err = salt_run(rolled_out, "cluster.status", timeout=120)
    assert code == 0 and isinstance(report, dict), (report, err)
    assert {n: d["build"] for n, d in report["nodes"].items() if d["build"]} == {}


def test_a_reflashed_node_with_rebuild_auto_comes_back_with_no_command(rolled_out):
    cluster = rolled_out
    mac = cluster.status()["nodes"][AUTO]["mac"]
    before = salt(cluster, f"-t 20 {AUTO} grains.get cluster_provisioned", timeout=60).get(AUTO)
    assert before, f"{AUTO} is not provisioned before the test"
    since = _jid_now(cluster)
    started = time.monotonic()
    cluster.cli("reflash", AUTO, timeout=300)
    reflashed = time.monotonic() - started
    marker = None
    while time.monotonic() - started < WITHIN:
        marker = salt(cluster, f"-t 10 {AUTO} grains.get cluster_provisioned", timeout=40).get(AUTO)
        if marker and marker != before:
            break
        time.sleep(5)
    assert marker and marker != before, f"{AUTO} not provisioned again {WITHIN} s after its reflash"
    # healthy: MPI across the four compute nodes works again
    out = cluster.run(
        "delta", "cd /tmp && sudo -u computeadm timeout 60 mpiexec -f /etc/mpich/hosts -n 4 hostname", timeout=90
    )
    took = time.monotonic() - started
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted(out.stdout.split()) == ["delta", "epsilon", "gamma", "zeta"]
    print(f"\nzero-touch: {AUTO} provisioned and healthy {took:.1f} s after `lab reflash` "
          f"(the reflash and power-on took {reflashed:.1f} s)")
    assert took <= WITHIN
    # built once (the lock), and the trust decision is on record: MAC, node, new host key
    assert len(_highstates_since(cluster, AUTO, since)) == 1
    lines = [ln for ln in _audit(cluster).splitlines() if "zero-touch" in ln and AUTO in ln and mac in ln]
    assert any(re.search(r"host key \d+ SHA256:\S+", ln) for ln in lines), lines
    assert _build(cluster, AUTO) is None
