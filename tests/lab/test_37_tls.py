"""End to end on the lab: the cluster TLS CA (issue 14, part 1).

psi holds the CA (sls tls_ca: key root 0600 in the secrets directory) and signs its own
certificate locally under its policy tls_psi; every other node makes its own key and gets its
certificate by remote signing (x509.sign_remote_certificate through the master, under its policy
tls_<id>; the answer comes back through the Redis job cache, _returners/redis_jobcache.py). The
CA certificate is in every node's trust store, so every node verifies every node's certificate
for that node's names and no other. Redis on psi serves TLS on the loopback with psi's.
"""

import base64
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.lab.conftest import changes, salt

pytestmark = pytest.mark.lab

SECRETS = "/etc/salt/cluster-secrets"
CERT = "/etc/ssl/cluster/node.crt"
KEY = "/etc/ssl/cluster/node.key"
TRUST = "/usr/local/share/ca-certificates/cluster-ca.crt"


def _apply(cluster, target, sls):
    return salt(cluster, f"{target} state.apply {sls} queue=True", timeout=900)


@pytest.fixture(scope="module")
def issued(cluster):
    """tls_ca and tls on psi (the CA first), then tls everywhere, twice: (first, second) returns."""
    first = _apply(cluster, "psi", "tls_ca,tls,redis")
    first.update(_apply(cluster, "'*'", "tls"))
    changes(first)  # no failure anywhere
    started = time.monotonic()
    second = _apply(cluster, "'*'", "tls")
    second.update({f"{n} (redis)": r for n, r in _apply(cluster, "psi", "tls_ca,redis").items()})
    print(f"\ntls on every node again: {time.monotonic() - started:.1f} s")
    return first, second


@pytest.fixture(scope="module")
def nodes(cluster):
    return {name: info["ip"] for name, info in cluster.status()["nodes"].items()}


def test_a_second_apply_changes_nothing(issued):
    _, second = issued
    assert changes(second) == {n: [] for n in second}


def test_the_ca_key_stays_root_only_on_the_deployer(issued, cluster):
    assert cluster.run("psi", f"sudo stat -c '%a %U' {SECRETS}/tls/ca.key", check=True).stdout.split() == [
        "600", "root"]
    policies = salt(cluster, "'*' pillar.get x509_signing_policies", timeout=60)
    assert all(policies[n] in ("", {}) for n in policies if n != "psi")


@pytest.fixture(scope="module")
def certificates(issued, cluster, nodes):  # pylint: disable=unused-argument
    """{node: {"mode", "key_pub", "cert_pub", "fqdn", "days", "pem"}}, one SSH call per node."""
    script = "; ".join([
        f"sudo stat -c 'mode=%a/%U' {KEY}",
        f"echo key_pub=$(sudo openssl pkey -in {KEY} -pubout | sha256sum | cut -c1-16)",
        f"echo cert_pub=$(openssl x509 -in {CERT} -noout -pubkey | sha256sum | cut -c1-16)",
        f"echo fqdn=$(openssl x509 -in {CERT} -noout -subject -nameopt multiline | sed -n 's/ *commonName *= *//p')",
        f"echo start=$(date -d \"$(openssl x509 -in {CERT} -noout -startdate | cut -d= -f2)\" +%s)",
        f"echo end=$(date -d \"$(openssl x509 -in {CERT} -noout -enddate | cut -d= -f2)\" +%s)",
        f"echo pem=$(base64 -w0 {CERT})",
    ])
    found = {}
    for node in nodes:
        out = cluster.run(node, script, check=True).stdout
        facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        facts["days"] = round((int(facts.pop("end")) - int(facts.pop("start"))) / 86400)
        facts["pem"] = base64.b64decode(facts["pem"]).decode()
        found[node] = facts
    return found


def test_every_node_has_a_certificate_for_its_own_key_and_names(certificates):
    assert set(certificates) == {"psi", "alpha", "beta", "delta", "epsilon", "gamma", "zeta"}
    for node, facts in certificates.items():
        assert facts["mode"] == "600/root", node
        assert facts["key_pub"] == facts["cert_pub"], f"{node}: the certificate is not for the node's own key"
        assert facts["fqdn"].startswith(f"{node}."), facts["fqdn"]
        assert facts["days"] == 60, node  # cluster_tls_cert_days


def test_every_node_verifies_each_certificate_for_its_node_only(certificates, cluster, nodes):
    # one SSH call per node: each certificate verifies from the system store (no -CAfile) for its
    # node's name, FQDN and IP, and not for the next node's name
    names = sorted(certificates)
    files = "".join(f"cat > /tmp/tls-{n}.crt <<'EOF'\n{certificates[n]['pem']}EOF\n" for n in names)
    checks, expected = [f"test -s {TRUST} && echo trust=yes || echo trust=no"], ["trust=yes"]
    for i, node in enumerate(names):
        other = names[(i + 1) % len(names)]
        for flag, value, label, want in (("-verify_hostname", node, "name", "ok"),
                                         ("-verify_hostname", certificates[node]["fqdn"], "fqdn", "ok"),
                                         ("-verify_ip", nodes[node], "ip", "ok"),
                                         ("-verify_hostname", other, "other", "bad")):
            checks.append(f"openssl verify {flag} {value} /tmp/tls-{node}.crt >/dev/null 2>&1 "
                          f"&& echo {node}-{label}=ok || echo {node}-{label}=bad")
            expected.append(f"{node}-{label}={want}")
    for node in nodes:
        ret = cluster.run(node, files + "; ".join(checks) + "; rm -f /tmp/tls-*.crt", check=True)
        assert ret.stdout.split() == expected, f"{node}: {ret.stdout}{ret.stderr}"


def private_needles(pem):
    """Strings only a copy of the key's private part holds: its private numbers (EC: d; RSA: d,
    p, q) in hex and in base64 at each of the three byte alignments, in 16-character pieces (96
    bits: no chance match; most pieces survive a line break or an escape inside a copy). Not the
    PEM's lines: its last line is the public key, which the certificate (stored base64 in the
    job cache) carries at the same alignment about one time in three."""
    numbers = serialization.load_pem_private_key(pem.encode(), None).private_numbers()
    secrets = [numbers.private_value] if hasattr(numbers, "private_value") else [numbers.d, numbers.p, numbers.q]
    needles = set()
    for value in secrets:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        for shift in range(3):
            aligned = raw[shift:][: (len(raw) - shift) // 3 * 3]
            text = base64.b64encode(aligned).decode()
            needles.update(text[i:i + 16] for i in range(0, len(text) - 15, 16))
        needles.update(raw.hex()[i:i + 24] for i in range(0, len(raw.hex()) - 23, 24))
    return sorted(needles)


def test_a_nodes_private_key_is_nowhere_on_the_deployer(issued, cluster):
    """Remote signing sends the public key only: gamma's key is in no file and no job on psi."""
    pem = cluster.run("gamma", f"sudo cat {KEY}", check=True).stdout
    needles = private_needles(pem)
    cert = cluster.run("gamma", f"cat {CERT}", check=True).stdout
    der = base64.b64encode(x509.load_pem_x509_certificate(cert.encode()).public_bytes(serialization.Encoding.DER))
    # the needles find the key in its own file and nothing in its public certificate
    assert any(n in pem for n in needles) and not any(n in cert or n.encode() in der for n in needles)
    # the needles go in a file, not on a command line (sudo would log them into psi's journal)
    lines = "\n".join(needles)
    files = cluster.run("psi", f"umask 077; cat > /tmp/needles <<'EOF'\n{lines}\nEOF\n"
                               "sudo grep -rlF -f /tmp/needles /etc /srv /root /var/cache/salt /var/lib/redis /var/log "
                               "2>/dev/null; echo rc=$?; rm -f /tmp/needles", timeout=120)
    assert files.stdout == "rc=1\n", files.stdout  # grep: 1 is "no match", 2 an error
    scan = ("import os, redis; "
            "serv = redis.Redis(host='127.0.0.1', password=open('/etc/salt/cluster-secrets/redis.password').read().strip()); "
            "vals = [v for k in serv.scan_iter(count=1000) for v in ([serv.get(k)] if serv.type(k) == b'string' "
            "else list(serv.hgetall(k).values()) if serv.type(k) == b'hash' else [])]; "
            f"print(len(vals), sum(any(n in (v or b'') for n in {[n.encode() for n in needles]!r}) for v in vals))")
    script = base64.b64encode(scan.encode()).decode()
    count, hits = cluster.run("psi", f"echo {script} | base64 -d | sudo /opt/salt/bin/python3 -", check=True).stdout.split()
    assert int(count) > 20 and hits == "0", (count, hits)


def test_redis_serves_tls_on_the_loopback_with_the_password(issued, cluster, nodes):
    auth = f"REDISCLI_AUTH=$(sudo cat {SECRETS}/redis.password)"
    ok = cluster.run("psi", f"{auth} redis-cli --tls --cacert {TRUST} -h localhost -p 6380 ping", check=True)
    assert ok.stdout.strip() == "PONG", ok.stderr
    noauth = cluster.run("psi", f"redis-cli --tls --cacert {TRUST} -h localhost -p 6380 ping")
    assert "NOAUTH" in noauth.stdout + noauth.stderr
    verified = cluster.run("psi", f"openssl s_client -connect 127.0.0.1:6380 -CAfile {TRUST} -verify_return_error "
                                  f"-verify_hostname localhost -brief </dev/null")
    assert verified.returncode == 0 and "Verification: OK" in verified.stderr, verified.stderr
    # loopback only: the deployer's own address does not answer on either port
    for port in (6379, 6380):
        assert cluster.run("psi", f"timeout 5 bash -c '</dev/tcp/{nodes['psi']}/{port}'").returncode != 0, port
    # the key reached redis through systemd's credentials, not by a copy on disk
    unit = cluster.run("psi", "systemctl cat redis-server", check=True).stdout
    assert [ln for ln in unit.splitlines() if ln.startswith("LoadCredential=")] == [f"LoadCredential=cluster-tls.key:{KEY}"], unit
