"""End to end on the lab: the cluster TLS CA (issue 14, part 1).

psi holds the CA (sls tls_ca: key root 0600 in the secrets directory) and signs its own
certificate locally under its policy tls_psi; the CA certificate is in every node's trust store,
so every node verifies psi's certificate for psi's names; Redis on psi serves TLS on the loopback
with it. The other nodes get no certificate yet: remote signing is off (salt/tls/defaults.yaml
says why: Salt's peer publish of x509.sign_remote_certificate does not return with the Redis
job cache), and they make no key either.
"""

import time

import pytest

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


def test_psis_certificate_is_for_its_names_and_every_node_trusts_it(issued, cluster, nodes):
    psi_ip = nodes["psi"]
    assert cluster.run("psi", f"sudo stat -c '%a %U' {KEY}", check=True).stdout.split() == ["600", "root"]
    pem = cluster.run("psi", f"cat {CERT}", check=True).stdout
    fqdn = cluster.run("psi", f"openssl x509 -noout -subject -nameopt multiline -in {CERT}",
                       check=True).stdout.split("=")[-1].strip()
    assert fqdn.startswith("psi.")
    dates = cluster.run("psi", f"openssl x509 -noout -startdate -enddate -in {CERT}", check=True).stdout
    start, end = (time.mktime(time.strptime(ln.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT")) for ln in dates.splitlines())
    assert round((end - start) / 86400) == 60, dates  # cluster_tls_cert_days
    # one SSH call per node: the trust store holds the CA, and psi's certificate verifies from the
    # system store (no -CAfile) for psi's name, FQDN and IP, not for another name
    checks = " ".join([
        f"test -s {TRUST} && echo trust=yes || echo trust=no;",
        f"for n in psi {fqdn}; do openssl verify -verify_hostname $n /tmp/psi.crt >/dev/null 2>&1 && echo $n=ok || echo $n=bad; done;",
        f"openssl verify -verify_ip {psi_ip} /tmp/psi.crt >/dev/null 2>&1 && echo ip=ok || echo ip=bad;",
        "openssl verify -verify_hostname zeta.invalid /tmp/psi.crt >/dev/null 2>&1 && echo other=ok || echo other=bad",
    ])
    expected = ["trust=yes", "psi=ok", f"{fqdn}=ok", "ip=ok", "other=bad"]
    for node in nodes:
        ret = cluster.run(node, f"cat > /tmp/psi.crt <<'EOF'\n{pem}EOF\n{checks}", check=True)
        assert ret.stdout.split() == expected, f"{node}: {ret.stdout}{ret.stderr}"


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
