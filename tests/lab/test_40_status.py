"""End to end on the lab: `salt-run cluster.status` on the deployer (issue 9).

The JSON object and the values that could be wrong (VIP holder, DNS serials on both servers,
DHCP failover state, every node up and provisioned), the table people read, a quiet console
(no warning, no deprecation notice), then a node powered off: the status does not wait for it
and shows it down. The node is powered on again and awaited before the module ends.
"""

import json
import time

import pytest

from lab.probe import dig
from tests.lab.conftest import NETWORK, salt

NODES = ["psi", "alpha", "beta", "delta", "epsilon", "gamma", "zeta"]
ROLES = {"psi": ["deployer"], "alpha": ["lanservices"], "beta": ["lanservices"]}
DOWN = "zeta"  # the only node this module may power off (the lab is shared)
STATUS_TIMEOUT = 10  # s: cluster.status's default wait for the answers of connected minions


def cluster_status(cluster, args="--out=json"):
    """`salt-run cluster.status ARGS` on psi: (CompletedProcess, seconds it took on psi, parsed
    JSON or None). The time is taken on psi, around the command (not the SSH hop from here)."""
    proc = cluster.run(
        "psi",
        f"t0=$(date +%s%N); sudo salt-run cluster.status {args}; rc=$?; "
        'echo; echo "took-ms $(( ($(date +%s%N) - t0) / 1000000 ))"; exit $rc',
        timeout=120,
    )
    out, _, last = proc.stdout.rstrip().rpartition("\n")
    assert last.startswith("took-ms "), proc.stdout + proc.stderr
    proc.stdout = out
    try:
        report = json.loads(out) if "--out=json" in args else None
    except ValueError:
        raise AssertionError(f"cluster.status: no JSON:\n{out}\n{proc.stderr}") from None
    return proc, int(last.split()[1]) / 1000, report


def _settled(report):
    """The cluster is back to its steady state after the fault tests before this module (the
    power loss of alpha: VIP back, DHCP failover back to normal, chrony synced again)."""
    return (
        report is not None
        and report.get("vip_holder") == "alpha"
        and all((d or {}).get("state") == "normal" for d in report.get("dhcp_failover", {}).values())
        and all((v or {}).get("synced") for v in report.get("ntp", {}).values())
        and all(n.get("up") for n in report.get("nodes", {}).values())
    )


@pytest.fixture(scope="module")
def healthy(cluster):
    deadline = time.monotonic() + 180  # what the status shows is tested, not how fast the cluster settles
    while True:
        proc, took, report = cluster_status(cluster)
        if _settled(report) or time.monotonic() > deadline:
            break
        time.sleep(5)
    print(f"\ncluster.status, every node up: {took:.1f} s (runner: {report.get('seconds')} s)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, took, report


def test_the_object_has_every_section(healthy):
    _, _, report = healthy
    assert set(report) >= {"generated", "nodes", "vip_holder", "dns_serials", "dhcp_failover", "ntp", "k3s"}
    assert sorted(report["nodes"]) == sorted(NODES)
    for name, node in report["nodes"].items():
        assert set(node) >= {"up", "roles", "provisioned", "last_highstate"}, name
        last = node["last_highstate"]
        assert last is None or set(last) >= {"time", "result"}, (name, last)
    assert sorted(report["ntp"]) == sorted(NODES)
    assert sorted(report["dns_serials"]) == sorted(report["dhcp_failover"]) == ["alpha", "beta"]


def test_every_node_is_up_provisioned_and_highstated(healthy):
    _, _, report = healthy
    nodes = report["nodes"]
    assert [n for n in NODES if nodes[n]["up"] is not True] == []
    for name, roles in ROLES.items():
        assert nodes[name]["roles"] == roles
    assert all(nodes[n]["roles"] == ["compute"] for n in ("delta", "epsilon", "gamma", "zeta"))
    assert {n: bool(nodes[n]["provisioned"]) for n in NODES} == {n: True for n in NODES}
    failed = {n: nodes[n]["last_highstate"] for n in NODES if not (nodes[n]["last_highstate"] or {}).get("result")}
    assert not failed, f"no successful last highstate in the job cache: {failed}"


def test_lan_services_values(healthy, cluster):
    _, _, report = healthy
    assert report["vip_holder"] == "alpha"
    serials = report["dns_serials"]
    zones = set(serials["alpha"])
    assert zones and set(serials["beta"]) == zones, serials
    for zone in zones:
        assert isinstance(serials["alpha"][zone], int), serials
        assert serials["alpha"][zone] == serials["beta"][zone], serials
    # the serial the status shows is the one alpha serves (asked from the lab host)
    st = cluster.status()
    soa = dig(st["nodes"]["alpha"]["ip"], st["domain"], "SOA")
    assert soa and int(soa[0].split()[2]) == serials["alpha"][st["domain"]], (soa, serials)
    assert {n: d.get("state") for n, d in report["dhcp_failover"].items()} == {"alpha": "normal", "beta": "normal"}
    assert report["dhcp_failover"]["alpha"]["role"] == "primary"
    assert report["dhcp_failover"]["beta"]["role"] == "secondary"
    unsynced = {n: v for n, v in report["ntp"].items() if not (v or {}).get("synced")}
    assert not unsynced, unsynced
    assert isinstance(report["k3s"], str) and "k3s not installed on delta" in report["k3s"], report["k3s"]
    assert not [p for p in report["problems"] if "VIP" in p or "DNS" in p or "DHCP" in p], report["problems"]


def test_the_table_and_a_quiet_console(healthy, cluster):
    json_proc, _, _ = healthy
    assert json_proc.stderr.strip() == "", f"console noise with --out=json:\n{json_proc.stderr}"
    proc, _, _ = cluster_status(cluster, args="")
    assert proc.returncode == 0 and proc.stderr.strip() == "", f"console noise:\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE"))
    rows = {line.split()[0]: line.split() for line in lines[header + 1: header + 1 + len(NODES)]}
    assert sorted(rows) == sorted(NODES)
    assert all(row[1] == "up" for row in rows.values()), rows
    assert f"VIP {NETWORK['vip']}: held by alpha (alpha MASTER, beta BACKUP)" in lines
    assert "DHCP failover: alpha normal (primary, partner normal); beta normal (secondary, partner normal)" in lines
    assert "problems: none" in lines or "problems:" in lines
    # the other salt-run commands the README lists are quiet too
    for args in ("cluster.nodes role=compute", "cluster.lanservices"):
        other = cluster.run("psi", f"sudo salt-run {args}", timeout=120)
        assert other.returncode == 0 and other.stderr.strip() == "", f"salt-run {args}:\n{other.stderr}"


def test_a_powered_off_node_is_shown_down_without_waiting_for_it(healthy, cluster):
    cluster.cli("power-off", DOWN)
    try:
        assert cluster.status()["nodes"][DOWN]["state"] != "running"
        proc, took, report = cluster_status(cluster)
        print(f"\ncluster.status with {DOWN} powered off: {took:.1f} s (runner: {report.get('seconds')} s)")
        assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
        # the batch waits up to its timeout for a node that holds a connection; one with none is
        # given a moment only. The wall time (salt-run's start included) is a figure, not a test:
        # on this 2-core machine running 7 nodes it varies with the load (10.3 s seen in CI).
        assert report["seconds"] < STATUS_TIMEOUT, f"the runner waited {report['seconds']} s for {DOWN}"
        assert {n: v["up"] for n, v in report["nodes"].items()} == {n: n != DOWN for n in NODES}
        assert report["nodes"][DOWN]["provisioned"], "the master's cached marker of a node that is down"
        assert report["ntp"][DOWN] is None
        assert f"{DOWN} does not answer" in report["problems"]
        assert report["vip_holder"] == "alpha"  # the rest is still read
    finally:
        cluster.cli("up", DOWN)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if salt(cluster, f"{DOWN} test.ping", timeout=15).get(DOWN) is True:
                break
            time.sleep(3)
    assert salt(cluster, f"{DOWN} test.ping", timeout=15) == {DOWN: True}, f"{DOWN}'s minion is not back"
