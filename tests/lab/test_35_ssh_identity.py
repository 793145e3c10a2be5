"""End to end on the lab: SSH identity through the cluster SSH CA (issue 9, part 1).

Every node's own host key carries a host certificate from the CA on psi (remote signing over the
Salt bus, psi signs its own locally); every SSH client of the cluster trusts it through one
@cert-authority line and nothing else: salt-ssh on psi, mpiexec between the compute nodes, the
admin. The admin's keys get user certificates. A re-flashed node trusted again with nothing
edited is tested with the rebuild (test_50_rebuild.py).
"""

import re
import subprocess
import time

import pytest

from lab import access
from tests.lab.conftest import changes, salt

pytestmark = pytest.mark.lab

COMPUTE = ["delta", "epsilon", "gamma", "zeta"]
CERT = "/etc/ssh/ssh_host_ed25519_key-cert.pub"
SECRETS = "/etc/salt/cluster-secrets"
DEPLOYER_KEY = f"{SECRETS}/ssh/deployer_ed25519"
# an SSH client that trusts the global known_hosts only (the CA line) and never learns a key
STRICT = ("ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null "
          "-o GlobalKnownHostsFile=/etc/ssh/ssh_known_hosts -o ConnectTimeout=10")


def _apply(cluster, target, sls):
    """state.apply on the deployer, queued behind any state run already going on there."""
    return salt(cluster, f"{target} state.apply {sls} queue=True", timeout=900)


@pytest.fixture(scope="module")
def certified(cluster):
    """Every node's host certificate (sshd.hostcert, as the highstate applies it) and the CA's
    deployer side (ssh_ca), applied twice: (first, second) returns."""
    started = time.monotonic()
    first = _apply(cluster, "'*'", "sshd.hostcert")
    first.update(_apply(cluster, "psi", "ssh_ca"))
    changes(first)  # no failure anywhere
    cold = time.monotonic() - started
    started = time.monotonic()
    second = _apply(cluster, "'*'", "sshd.hostcert")
    second_ca = _apply(cluster, "psi", "ssh_ca")
    print(f"\nsshd.hostcert on every node + ssh_ca: first {cold:.1f} s, again {time.monotonic() - started:.1f} s")
    return first, second, second_ca


@pytest.fixture(scope="module")
def ca_pub(cluster):
    return cluster.run("psi", f"sudo cat {SECRETS}/ssh/ca_ed25519.pub", check=True).stdout.strip()


@pytest.fixture(scope="module")
def nodes(cluster):
    return {name: info["ip"] for name, info in cluster.status()["nodes"].items()}


def _cert(cluster, node):
    ret = salt(cluster, f"{node} ssh_pki.read_certificate {CERT}", timeout=60)[node]
    assert isinstance(ret, dict), f"{node}: {ret}"
    return ret


def _fingerprint(cluster, node):
    out = cluster.run(node, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub", check=True).stdout
    return out.split()[1]


def test_a_second_apply_changes_nothing(certified):
    _, second, second_ca = certified
    assert changes(second) == {n: [] for n in second}
    assert changes(second_ca) == {"psi": []}


def test_every_node_certifies_its_own_key_for_its_own_names(certified, cluster, nodes, ca_pub):
    keys = salt(cluster, "'*' ssh_pki.get_public_key /etc/ssh/ssh_host_ed25519_key.pub", timeout=60)
    for node, ip in nodes.items():
        cert = _cert(cluster, node)
        fqdn = cert["key_id"]
        assert fqdn.startswith(f"{node}.") and fqdn.endswith(".clust0r")
        assert cert["cert_type"] == "host"
        assert sorted(cert["valid_principals"]) == sorted([node, fqdn, ip])
        assert cert["issuer_public_key"] == " ".join(ca_pub.split()[:2])
        assert cert["public_key"] == " ".join(keys[node].split()[:2]), f"{node}: not its own host key"
        assert cert["critical_options"] == {} and cert["extensions"] == {}
        left = time.mktime(time.strptime(cert["not_after"], "%Y-%m-%d %H:%M:%S")) - time.time()
        assert left > 30 * 86400, f"{node}: the highstate should have renewed it ({cert['not_after']})"


def test_the_ca_key_stays_on_the_deployer_root_only(certified, cluster, nodes):
    assert cluster.run("psi", f"sudo stat -c '%a %U' {SECRETS}/ssh/ca_ed25519", check=True).stdout.split() == [
        "600", "root"]
    # no copy of the key file anywhere else: files of its size, compared by hash (the key itself is
    # never sent anywhere, not even in a job's arguments)
    size, digest = cluster.run("psi", f"sudo sh -c 'stat -c %s {SECRETS}/ssh/ca_ed25519; "
                                      f"sha256sum < {SECRETS}/ssh/ca_ed25519'", check=True).stdout.split()[:2]
    found = salt(cluster, f"'*' cmd.run 'find /etc /root /home /srv /var /tmp -xdev -type f -size {size}c "
                          "-exec sha256sum {} + 2>/dev/null; true'", timeout=180)
    copies = {n: [ln.split()[1] for ln in out.splitlines() if ln.startswith(digest)] for n, out in found.items()}
    assert copies == {n: ([f"{SECRETS}/ssh/ca_ed25519"] if n == "psi" else []) for n in nodes}, copies
    # the signing policies (with the key's path, never its content: tests/unit/test_ssh_ca.py) are
    # in the deployer's pillar only
    policies = salt(cluster, "'*' pillar.get ssh_signing_policies", timeout=60)
    assert sorted(policies["psi"]) == sorted(f"host_{n}" for n in nodes if n != "psi")
    assert all(policies[n] == "" or policies[n] == {} for n in nodes if n != "psi")


def test_every_client_trusts_every_node_through_the_ca_line_only(certified, cluster, nodes, ca_pub):
    ca_lines = set()
    for node in nodes:
        known = cluster.run(node, "cat /etc/ssh/ssh_known_hosts", check=True).stdout
        lines = [ln for ln in known.splitlines() if ln and not ln.startswith("#")]
        assert len(lines) == 1 and lines[0].startswith("@cert-authority ") and lines[0].endswith(ca_pub), node
        ca_lines.update(lines)
    assert len(ca_lines) == 1
    salt_ssh = cluster.run("psi", "sudo grep '^@cert-authority' /etc/salt/pki/ssh_known_hosts", check=True).stdout
    assert salt_ssh.strip().splitlines() == list(ca_lines)
    # from the deployer, by short name, FQDN and IP: the host key checked against the CA only
    names = {n: [n, _cert(cluster, n)["key_id"], ip] for n, ip in nodes.items()}
    script = "; ".join(
        f"echo \"{n} {h} $(sudo {STRICT} -i {DEPLOYER_KEY} piclust@{h} hostname 2>&1 | tail -1)\""
        for n, hosts in names.items() for h in hosts
    )
    out = cluster.run("psi", script, timeout=300).stdout.splitlines()
    answers = {tuple(line.split(" ", 2)[:2]): line.split(" ", 2)[2] for line in out}
    assert answers == {(n, h): n for n, hosts in names.items() for h in hosts}


def test_a_host_key_without_certificate_is_refused(certified, cluster):
    # the same node, asked for its plain ed25519 key only: nothing in known_hosts vouches for it
    proc = cluster.run("psi", f"sudo {STRICT} -o HostKeyAlgorithms=ssh-ed25519 -i {DEPLOYER_KEY} piclust@delta true")
    assert proc.returncode != 0
    assert "Host key verification failed" in proc.stderr, proc.stderr


def test_the_admin_logs_in_with_a_user_certificate(certified, cluster, ca_pub, tmp_path):
    # salt-ssh's key: its certificate sits beside it, ssh offers it by itself
    proc = cluster.run("psi", f"sudo {STRICT} -o PubkeyAcceptedAlgorithms=ssh-ed25519-cert-v01@openssh.com "
                              f"-i {DEPLOYER_KEY} piclust@epsilon 'id -un'", timeout=60)
    assert proc.stdout.strip() == "piclust", proc.stderr
    log = cluster.run("epsilon", "sudo journalctl -u ssh --no-pager -n 200", check=True).stdout
    assert re.search(r"Accepted publickey for piclust .* ED25519-CERT .* ID piclust:deployer_ed25519", log), log[-1500:]
    # the lab admin's key (bootstrap/deployer --admin-key): its certificate from psi, and a workstation
    # that trusts the cluster with the one CA line
    cert = cluster.run("psi", f"sudo cat {SECRETS}/admin-certs/lab-admin-cert.pub", check=True).stdout
    key = tmp_path / "admin"
    key.write_bytes(access.KEY.read_bytes())
    key.chmod(0o600)
    (tmp_path / "admin-cert.pub").write_text(cert)  # beside the key: ssh loads it by itself
    (tmp_path / "known_hosts").write_text(f"@cert-authority * {ca_pub}\n")
    epsilon = cluster.ip("epsilon")
    proc = subprocess.run(
        ["ssh", "-F", "/dev/null", *access.through_deployer(epsilon), "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "PubkeyAcceptedAlgorithms=ssh-ed25519-cert-v01@openssh.com",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "-o", "GlobalKnownHostsFile=/dev/null",
         f"piclust@{epsilon}", "id -un"],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    assert proc.stdout.strip() == "piclust", proc.stderr


def test_mpiexec_trusts_the_compute_nodes_through_the_ca_only(certified, cluster):
    config = cluster.run("delta", "sudo cat /home/computeadm/.ssh/config", check=True).stdout
    assert "StrictHostKeyChecking yes" in config and "UserKnownHostsFile /dev/null" in config
    proc = cluster.run("delta", "cd /tmp && sudo -u computeadm timeout 120 mpiexec -f /etc/mpich/hosts -n 4 hostname",
                       timeout=180)
    assert sorted(proc.stdout.split()) == COMPUTE, proc.stdout + proc.stderr
    assert cluster.run("delta", "sudo test -e /home/computeadm/.ssh/known_hosts").returncode != 0
