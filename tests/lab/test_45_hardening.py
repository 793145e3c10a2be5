"""End to end on the lab: the holes issue 14 closes on the nodes themselves.

No secret in the Redis job cache: every file that holds a secret on a node is tampered with (a comment line appended), a
highstate of those nodes puts each one back (the test checks it reported the change), and then
every value of the job cache (Redis db 0 on the deployer: every job return and job load since
the lab came up, the roll-out's first highstates included) is searched for every secret the
deployer holds, each line of each private key included. And the vanilla account is gone and
sshd is hardened on every node.
"""

import base64
import json

import pytest

from tests.lab.conftest import changes, salt

# node -> files holding a secret there (tampered with, then put back by the highstate)
SECRET_FILES = {
    "psi": ["/etc/redis/cluster-auth.conf"],
    "beta": ["/etc/bind/cluster-transfer.key", "/etc/dhcp/omapi.key", "/etc/keepalived/keepalived.conf"],
    "gamma": ["/home/computeadm/.ssh/id_ed25519"],
}
# the state that manages each of them (the highstate must report it changed)
RESTORED_BY = {
    "psi": {"redis-auth-file-managed"},
    "beta": {"bind-tsig-key-file-managed", "dhcpd-omapi-key-file-managed", "keepalived-config-file-managed"},
    "gamma": {"mpich-user-ssh-key-file-managed"},
}

# Runs on psi with the Salt venv's Python: every secret line of the secrets directory, then every
# key of Redis db 0 with its whole value, whatever the key type. Public keys and certificates are
# not secrets: the TLS CA's certificate (tls/ca.crt) travels in every remote signing job.
SCAN = r"""
import json, os, redis
top = "/etc/salt/cluster-secrets"
secrets = set()
for root, _, files in os.walk(top):
    for name in files:
        if name.endswith((".pub", ".crt")) or root.endswith("admin-keys"):
            continue
        with open(os.path.join(root, name), errors="replace") as handle:
            for line in handle:
                line = line.strip()
                if len(line) >= 8 and not line.startswith("-----"):
                    secrets.add(line)
with open(os.path.join(top, "redis.password")) as handle:
    serv = redis.Redis(host="127.0.0.1", port=6379, db=0, password=handle.read().strip())
keys, leaks = 0, {}
for key in serv.scan_iter(count=1000):
    kind = serv.type(key)
    if kind == b"string":
        values = [serv.get(key)]
    elif kind == b"hash":
        values = [b for pair in serv.hgetall(key).items() for b in pair]
    elif kind == b"list":
        values = serv.lrange(key, 0, -1)
    elif kind == b"set":
        values = list(serv.smembers(key))
    elif kind == b"zset":
        values = serv.zrange(key, 0, -1)
    else:
        values = []
    keys += 1
    text = b"\n".join(v for v in values if v).decode(errors="replace")
    for secret in secrets:
        if secret in text:
            leaks.setdefault(secret[:6] + "...", []).append(key.decode(errors="replace"))
print(json.dumps({"keys": keys, "secrets": len(secrets), "leaks": leaks}))
"""


@pytest.fixture(scope="module")
def restored(rolled_out):
    """The secret files tampered with, then put back by one highstate of their nodes."""
    for node, paths in SECRET_FILES.items():
        for path in paths:
            rolled_out.run(node, f"sudo sh -c 'echo \"# tampered by the test\" >> {path}'", check=True)
    ret = salt(rolled_out, f"-L {','.join(SECRET_FILES)} state.apply", timeout=600)
    return changes(ret)


def test_the_highstate_put_every_secret_file_back(restored):
    for node, ids in RESTORED_BY.items():
        assert ids <= set(restored[node]), f"{node}: {sorted(ids - set(restored[node]))} did not change"


def test_no_secret_value_in_any_job_return(rolled_out, restored):  # pylint: disable=unused-argument
    script = base64.b64encode(SCAN.encode()).decode()
    proc = rolled_out.run("psi", f"echo {script} | base64 -d | sudo /opt/salt/bin/python3 -", timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found["secrets"] > 10, f"the secrets were not read: {found}"
    assert found["keys"] > 50, f"the job cache looks empty: {found}"
    assert not found["leaks"], f"secrets in the job cache: {found['leaks']}"


def test_the_default_account_is_gone_and_sshd_is_hardened(rolled_out):
    """After the roll-out's highstates: no pi account, home or group on any node, and the sshd
    settings the cluster hardens in force (sshd -T prints what the running config means)."""
    want = {
        "passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin no",
        "authenticationmethods publickey", "permitemptypasswords no", "maxauthtries 3",
        "logingracetime 30", "x11forwarding no", "allowagentforwarding no",
    }
    for node in rolled_out.nodes:
        proc = rolled_out.run(node, "getent passwd pi; getent group pi; ls -d /home/pi 2>/dev/null; echo ---; "
                                    "sudo sshd -T", check=True)
        gone, _, sshd = proc.stdout.partition("---\n")
        assert gone.strip() == "", f"{node}: pi is still there: {gone}"
        missing = want - set(sshd.splitlines())
        assert not missing, f"{node}: sshd -T lacks {sorted(missing)}"
