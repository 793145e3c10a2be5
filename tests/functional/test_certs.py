"""_modules/certs.py through Salt's loaders, on certificates made by openssl and ssh-keygen:
a node's certificate is "current" (the highstate does not ask the CA) only when key, CA, names
and renewal date all agree; each difference alone sends the state back to the CA."""

import subprocess

import pytest

NAMES = ["DNS:gamma", "DNS:gamma.example", "IP:10.9.0.23"]
PRINCIPALS = ["gamma", "gamma.example", "10.9.0.23"]


def run(*cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)


def ec_key(path):
    run("openssl", "ecparam", "-genkey", "-name", "prime256v1", "-noout", "-out", path, cwd=path.parent)


def ca(d, name):
    key = d / f"{name}.key"
    ec_key(key)
    run("openssl", "req", "-x509", "-new", "-key", key, "-subj", f"/CN={name}", "-days", "365",
        "-out", d / f"{name}.crt", cwd=d)
    return d / f"{name}.crt", key


def issue(d, ca_pair, key, cn="gamma.example", sans=NAMES, days=60):
    (d / "ext").write_text(f"subjectAltName={','.join(sans)}\n")
    run("openssl", "req", "-new", "-key", key, "-subj", f"/CN={cn}", "-out", d / "n.csr", cwd=d)
    cert = d / "node.crt"
    run("openssl", "x509", "-req", "-in", d / "n.csr", "-CA", ca_pair[0], "-CAkey", ca_pair[1],
        "-CAcreateserial", "-days", str(days), "-extfile", d / "ext", "-out", cert, cwd=d)
    return cert


@pytest.fixture
def tls(tmp_path):
    cluster_ca = ca(tmp_path, "cluster-ca")
    key = tmp_path / "node.key"
    ec_key(key)
    return tmp_path, cluster_ca, key


def current(modules, cert, key, ca_cert, cn="gamma.example", names=NAMES, days=20):
    return modules.certs.tls_current(str(cert), str(key), ca_cert, cn, names, days_remaining=days)


def test_a_tls_certificate_from_the_cluster_ca_for_the_key_and_names_is_current(modules, tls):
    d, cluster_ca, key = tls
    cert = issue(d, cluster_ca, key)
    assert current(modules, cert, key, cluster_ca[0].read_text()) is True
    assert current(modules, cert, key, str(cluster_ca[0])) is True  # the CA as a path too


@pytest.mark.parametrize("change", ["another key", "another CA", "another CN", "another address",
                                    "a name more", "renewal due", "missing", "garbage"])
def test_any_difference_sends_the_tls_state_to_the_ca(modules, tls, change):
    d, cluster_ca, key = tls
    cert = issue(d, cluster_ca, key, days=10 if change == "renewal due" else 60)
    ca_cert, names, cn = cluster_ca[0].read_text(), list(NAMES), "gamma.example"
    if change == "another key":
        other = d / "other.key"
        ec_key(other)
        key = other
    elif change == "another CA":
        ca_cert = ca(d, "stranger-ca")[0].read_text()
    elif change == "another CN":
        cn = "delta.example"
    elif change == "another address":
        names[2] = "IP:10.9.0.24"
    elif change == "a name more":
        names.append("DNS:localhost")
    elif change == "missing":
        cert.unlink()
    elif change == "garbage":
        cert.write_text("not a certificate\n")
    assert current(modules, cert, key, ca_cert, cn=cn, names=names) is False


@pytest.fixture
def ssh(tmp_path):
    for name in ("ca", "host"):
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / name, cwd=tmp_path)
    return tmp_path


def host_cert(d, principals=PRINCIPALS, validity="+90d", ca="ca"):
    run("ssh-keygen", "-q", "-s", d / ca, "-I", "gamma.example", "-h", "-n", ",".join(principals),
        "-V", validity, d / "host.pub", cwd=d)
    return d / "host-cert.pub"


def test_an_ssh_host_certificate_from_the_ca_for_the_key_and_principals_is_current(modules, ssh):
    cert = host_cert(ssh)
    ca_pub = (ssh / "ca.pub").read_text()
    assert modules.certs.ssh_host_current(str(cert), str(ssh / "host"), ca_pub, PRINCIPALS, ttl_remaining="30d") is True


@pytest.mark.parametrize("change", ["another CA", "another principal", "renewal due", "user certificate", "garbage"])
def test_any_difference_sends_the_ssh_state_to_the_ca(modules, ssh, change):
    ca_pub = (ssh / "ca.pub").read_text()
    principals = list(PRINCIPALS)
    if change == "another CA":
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", ssh / "stranger", cwd=ssh)
        cert = host_cert(ssh, ca="stranger")
    elif change == "renewal due":
        cert = host_cert(ssh, validity="+10d")
    elif change == "user certificate":
        run("ssh-keygen", "-q", "-s", ssh / "ca", "-I", "gamma", "-n", ",".join(PRINCIPALS), "-V", "+90d",
            ssh / "host.pub", cwd=ssh)
        cert = ssh / "host-cert.pub"
    else:
        cert = host_cert(ssh)
        if change == "another principal":
            principals[2] = "10.9.0.24"
        else:
            cert.write_text("ssh-ed25519-cert-v01@openssh.com garbage\n")
    assert modules.certs.ssh_host_current(str(cert), str(ssh / "host"), ca_pub, principals, ttl_remaining="30d") is False
