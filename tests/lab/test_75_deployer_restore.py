"""End to end on the lab: the deployer's backup and restore (issue 14).

`salt-run cluster.backup` on psi writes the encrypted archive; the archive and its passphrase
leave psi (to the lab host, as an admin copies them off the card); psi is re-flashed
(`python3 -m lab reflash psi`: a vanilla card, new host keys) and rebuilt with
`python3 -m lab restore-deployer` (the checkout and the archive onto the card,
`bootstrap/deployer --restore`). Then every minion answers with the key it had, nothing
accepted by hand, the master's key is the one the minions pinned, the master still knows which
nodes it provisioned (a card re-flashed after the restore is rebuilt); DNS through the VIP never
stopped (dnsperf for the whole round trip: no query lost), a new DHCP client gets a lease while
psi is down, alpha keeps the VIP; a highstate of the other nodes changes nothing, and psi's
second one neither.
"""

import base64
import json
import time

import pytest

from lab.probe import DhcpClient
from tests.lab.conftest import DnsLoad, changes, salt, salt_run

pytestmark = pytest.mark.lab

NODES = ["psi", "alpha", "beta", "delta", "epsilon", "gamma", "zeta"]
QPS = 50
ARCHIVE = "/root/deployer-backup.tar.gpg"
PASSPHRASE = "/etc/salt/cluster-secrets/backup.passphrase"  # made by the first cluster.backup


def _keys(cluster):
    """(sha256 of the master's public key, salt-key's accepted/pending/denied lists) on psi."""
    master = cluster.run("psi", "sudo sha256sum /etc/salt/pki/master/master.pub", check=True).stdout.split()[0]
    listed = json.loads(cluster.run("psi", "sudo salt-key -L --out json", check=True).stdout)
    return master, {k: sorted(v) for k, v in listed.items()}


def _fetch(cluster, path, dest):
    data = cluster.run("psi", f"sudo base64 -w0 {path}", timeout=120, check=True).stdout
    dest.write_bytes(base64.b64decode(data))
    dest.chmod(0o600)
    return dest


def _holds_vip(cluster, node, vip):
    """The VIP on the node's LAN interface (both of the pair also have it on lo, for named)."""
    lines = cluster.run(node, "ip -4 -o addr show", timeout=30).stdout.splitlines()
    return any(f" {vip}/" in line for line in lines if line.split()[1] != "lo")


def test_the_deployer_comes_back_from_its_backup(rolled_out, tmp_path):
    st = rolled_out.status()
    vip = st["vip"]
    master_before, keys_before = _keys(rolled_out)
    assert keys_before["minions"] == sorted(NODES), keys_before
    proc = rolled_out.run("psi", f"sudo salt-run --out json cluster.backup {ARCHIVE}", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    print(f"\ncluster.backup: {report['files']} files, {report['bytes']} bytes, leases of {report['dhcp_leases']}")
    assert report["dhcp_leases"] == ["alpha", "beta"] and report["files"] > 20, report
    archive = _fetch(rolled_out, ARCHIVE, tmp_path / "deployer-backup.tar.gpg")
    passphrase = _fetch(rolled_out, PASSPHRASE, tmp_path / "passphrase")
    secret = rolled_out.run("psi", "sudo cat /etc/salt/cluster-secrets/tsig.key", check=True).stdout.strip()
    assert secret.encode() not in archive.read_bytes()
    since = {n: rolled_out.run(n, "date +%s", check=True).stdout.strip() for n in ("alpha", "beta")}

    with DnsLoad(vip, st["domain"], tmp_path, NODES, QPS) as load:
        started = time.monotonic()
        rolled_out.cli("reflash", "psi", timeout=300)
        # psi is a vanilla card now: the pair serves DHCP without it
        with DhcpClient("02:77:75:00:00:01", tag="r") as client:
            lease = client.lease(timeout=60)
        assert lease and lease["ip"], "no DHCP lease while the deployer was down"
        restore = rolled_out.cli("restore-deployer", str(archive), str(passphrase), timeout=1800)
        took = time.monotonic() - started
        load.stop()
    print(f"reflash + restore of psi: {took:.1f} s; {restore.stdout.strip()}\n"
          f"DNS through the VIP meanwhile: {load.sent} sent, {load.lost} lost")
    assert load.lost == 0, f"{load.lost} DNS queries lost while the deployer was rebuilt"
    assert load.sent >= QPS * 0.8 * load.seconds, "dnsperf did not keep up its rate"

    # every minion answers with its own key; nothing is pending, denied or accepted anew
    master_after, keys_after = _keys(rolled_out)
    assert master_after == master_before, "the master's key changed: the minions would refuse it"
    assert keys_after == keys_before, keys_after
    # the master's provisioned records came back: a card re-flashed now is rebuilt, not ignored
    # as never provisioned (the deployer's own record stays out of the archive)
    code, plan, err = salt_run(rolled_out, "cluster.build_plan gamma", timeout=120)
    assert code == 0 and isinstance(plan, dict), (plan, err)
    assert plan["action"] == "build" and "re-flashed" in plan["reason"], plan
    assert salt(rolled_out, "'*' test.ping", timeout=60) == {n: True for n in NODES}
    assert _holds_vip(rolled_out, "alpha", vip) and not _holds_vip(rolled_out, "beta", vip)
    for node in ("alpha", "beta"):
        log = rolled_out.run(node, f"sudo journalctl -u keepalived --since @{since[node]} --no-pager -o cat",
                             check=True).stdout
        assert "Entering" not in log, f"{node}'s keepalived changed state:\n{log[-1500:]}"

    others = ",".join(n for n in NODES if n != "psi")
    ret = salt(rolled_out, f"-L {others} state.apply", timeout=900)
    assert {m: c for m, c in changes(ret).items() if c} == {}, "the restore changed the other nodes' states"
    first = changes(salt(rolled_out, "psi state.apply", timeout=900))  # the vanilla card's leftovers (pi, ...)
    print(f"psi's first highstate after the restore changed: {first['psi']}")
    assert changes(salt(rolled_out, "psi state.apply", timeout=900)) == {"psi": []}
