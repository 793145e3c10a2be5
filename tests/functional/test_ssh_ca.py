"""
The cluster SSH CA through Salt's loaders: the pillar (CA public key everywhere, signing
policies on the deployer only), the rendered trust (one @cert-authority line, TrustedUserCAKeys,
mpiexec's ssh config) and the host certificate states. The signing really runs: a compute
minion's ``ssh_pki.certificate_managed`` asks the deployer's loaders (its own pillar and
policies) through a stand-in for the Salt bus, then a real sshd on loopback serves the issued
certificate and ssh, trusting nothing but the rendered known_hosts line, accepts it (and
refuses the same node's host key without a certificate, and a certificate for another node).
"""

import os
import pathlib
import shutil
import socket
import subprocess
import time

import pytest

from tests.conftest import INVENTORY, STATE_TREE, cluster_pillar_opts, secrets_opts
from tests.functional.salt_bus import as_ca_minion, fake_publish_module, minion_loaders

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
HAVE_SSHD = os.path.exists(SSHD) and bool(shutil.which("ssh"))
DOMAIN = "dc1.b3rry.clust0r"
CERT_STATE = "sshd-host-certificate-ssh-pki-certificate-managed"
LOW_KEYS = {"state", "fun", "__id__", "__sls__", "__env__", "order", "require", "watch", "onchanges",
            "require_in", "watch_in", "onlyif", "unless", "name", "onfail"}
# the Salt bus in this process (tests/functional/salt_bus.py): None = the CA minion does not answer
BUS = None
FAKE_PUBLISH = fake_publish_module(__name__)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("ssh-ca")


@pytest.fixture(scope="module")
def make_loaders(salt_factories, secrets_dir, workdir):
    made = []

    admin_keys = secrets_dir / "admin-keys"  # what bootstrap/deployer --admin-key installs
    if not admin_keys.exists():
        admin_keys.mkdir(mode=0o700)
        _host_key(workdir / "alice")
        (admin_keys / "alice.pub").write_text((workdir / "alice.pub").read_text())

    def make(minion_id, roles):
        cache = workdir / minion_id / "cache"
        cache.mkdir(parents=True, exist_ok=True)
        extmods = workdir / "extmods" / "modules"
        extmods.mkdir(parents=True, exist_ok=True)
        (extmods / "publish.py").write_text(FAKE_PUBLISH)
        overrides = {
            "module_dirs": [str(workdir / "extmods")],
            "file_client": "local",
            "file_roots": {"base": [str(STATE_TREE)]},
            "cachedir": str(cache),
            **cluster_pillar_opts(INVENTORY),
            **secrets_opts(secrets_dir),
            "grains": {"roles": roles},
            "roles": {"lookup": {"every_node": []}},
            # a CA that does not answer is retried: quickly here
            "sshd": {"lookup": {"ca_retry": {"attempts": 2, "interval": 1, "splay": 0}}},
        }
        return minion_loaders(salt_factories, minion_id, overrides, made, __name__)

    yield make
    for loaders in made:
        loaders.reset_state()


@pytest.fixture(scope="module")
def psi(make_loaders):
    return as_ca_minion(make_loaders("psi", ["deployer"]))


@pytest.fixture(scope="module")
def delta(make_loaders):
    return make_loaders("delta", ["compute"])


@pytest.fixture(scope="module")
def ca_pub(secrets_dir):
    return (secrets_dir / "ssh" / "ca_ed25519.pub").read_text().strip()


def _low(loaders, sls):
    chunks = loaders.modules.state.show_low_sls(sls)
    assert isinstance(chunks, list), chunks  # a list of errors would be strings
    return {c["__id__"]: c for c in chunks}


def _kwargs(chunk, **changes):
    kwargs = {k: v for k, v in chunk.items() if k not in LOW_KEYS}
    kwargs.update(changes)
    return kwargs


def _host_key(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True)
    return path


@pytest.fixture
def bus(psi):
    """The CA minion (psi's loaders: its own pillar and policies) answers on the bus, as the
    master delivers a peer publish: with the requester's minion ID as __pub_id."""
    global BUS  # noqa: PLW0603

    def deliver(requester_id, tgt, fun, arg):
        assert (tgt, fun) == ("psi", "ssh_pki.sign_remote_certificate")
        policy, kwargs, only = arg
        return {tgt: psi.modules.ssh_pki.sign_remote_certificate(policy, kwargs, only, __pub_id=requester_id)}

    BUS = deliver
    yield deliver
    BUS = None


# --- pillar ---------------------------------------------------------------------------------

def test_every_node_gets_the_ca_public_key_and_only_the_deployer_the_policies(psi, delta, ca_pub, secrets_dir):
    mine = delta.modules.pillar.items(unmask=True)
    assert mine["deploy"]["ssh_ca_pub"] == ca_pub and ca_pub.startswith("ssh-ed25519 ")
    assert "ssh_signing_policies" not in mine and "ssh_ca" not in mine["deploy"]
    ca = psi.modules.pillar.items(unmask=True)
    policies = ca["ssh_signing_policies"]
    assert sorted(policies) == ["host_alpha", "host_beta", "host_delta", "host_epsilon", "host_gamma", "host_zeta"]
    assert policies["host_delta"] == {
        "minions": "delta",
        "signing_private_key": str(secrets_dir / "ssh" / "ca_ed25519"),
        "cert_type": "host",
        "valid_principals": ["delta", f"delta.{DOMAIN}", "192.168.10.21"],
        "key_id": f"delta.{DOMAIN}",
        "ttl": "90d",
        "allowed_critical_options": [],
        "allowed_extensions": [],
    }
    # paths only: the CA key's content never goes into any pillar
    assert ca["deploy"]["ssh_ca"]["key"] == str(secrets_dir / "ssh" / "ca_ed25519")
    ca_key = (secrets_dir / "ssh" / "ca_ed25519").read_text().splitlines()[-2]  # its last body line
    assert ca_key not in repr(ca) and ca_key not in repr(mine)


# --- rendered states ------------------------------------------------------------------------

def test_trust_is_one_cert_authority_line_and_the_user_ca(delta, ca_pub):
    chunks = _low(delta, "sshd")
    known = chunks["sshd-known-hosts-file-managed"]
    assert known["name"] == "/etc/ssh/ssh_known_hosts"
    lines = [ln for ln in known["contents"].splitlines() if not ln.startswith("#")]
    patterns = f"*.{DOMAIN},alpha,192.168.10.6,beta,192.168.10.8,delta,192.168.10.21,epsilon,192.168.10.22," \
               "gamma,192.168.10.23,psi,192.168.10.10,zeta,192.168.10.24"
    assert lines == [f"@cert-authority {patterns} {ca_pub}"]
    assert chunks["sshd-user-ca-file-managed"]["contents"] == ca_pub
    dropin = chunks["sshd-config-dropin-file-managed"]
    assert "TrustedUserCAKeys /etc/ssh/cluster_user_ca.pub" in dropin["contents"]
    assert "PasswordAuthentication no" in dropin["contents"]
    assert dropin["check_cmd"] == "/usr/sbin/sshd -t -f"


def test_a_node_asks_the_deployer_and_the_deployer_signs_locally(psi, delta, secrets_dir):
    remote = _low(delta, "sshd.hostcert")
    cert = remote[CERT_STATE]
    assert cert["ca_server"] == "psi" and cert["signing_policy"] == "host_delta"
    assert cert["private_key"] == "/etc/ssh/ssh_host_ed25519_key" and "signing_private_key" not in cert
    assert cert["valid_principals"] == ["delta", f"delta.{DOMAIN}", "192.168.10.21"]
    assert cert["retry"]["attempts"] >= 2
    fail = remote["sshd-host-certificate-ca-unreachable-test-fail-without-changes"]
    assert fail["onfail"] == [{"ssh_pki": CERT_STATE}]
    assert "salt psi test.ping" in fail["name"] and "master.d/peer.conf" in fail["name"]
    assert remote["sshd-host-certificate-dropin-file-managed"]["contents"].strip().endswith(
        "HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub")
    local = _low(psi, "sshd.hostcert")[CERT_STATE]
    assert local["signing_private_key"] == str(secrets_dir / "ssh" / "ca_ed25519") and "ca_server" not in local
    assert local["valid_principals"] == ["psi", f"psi.{DOMAIN}", "192.168.10.10"]


def test_the_bootstrap_does_not_include_the_host_certificate(delta):
    ids = set(_low(delta, "bootstrap.minion"))
    assert "sshd-known-hosts-file-managed" in ids
    assert not any(i.startswith("sshd-host-certificate") for i in ids)


def test_mpiexec_ssh_trusts_the_ca_only(delta):
    config = _low(delta, "mpich")["mpich-user-ssh-config-file-managed"]["contents"]
    assert "StrictHostKeyChecking yes" in config and "accept-new" not in config
    assert "UserKnownHostsFile /dev/null" in config
    assert "GlobalKnownHostsFile /etc/ssh/ssh_known_hosts" in config


def test_the_deployer_keeps_the_ca_key_and_signs_the_admin_keys(psi, secrets_dir, ca_pub):
    chunks = _low(psi, "ssh_ca")
    key = chunks["ssh-ca-key-file-managed"]
    assert key["mode"] == "0600" and key["create"] is False and key["replace"] is False
    line = chunks["ssh-ca-salt-ssh-known-hosts-ca-line-file-replace"]
    assert line["name"] == "/etc/salt/pki/ssh_known_hosts" and line["repl"].endswith(ca_pub)
    user = chunks["ssh-ca-user-certificate-deployer_ed25519-ssh-pki-certificate-managed"]
    assert user["name"] == str(secrets_dir / "ssh" / "deployer_ed25519-cert.pub")
    assert user["cert_type"] == "user" and user["valid_principals"] == ["piclust"]
    alice = chunks["ssh-ca-user-certificate-alice-ssh-pki-certificate-managed"]
    assert alice["name"] == str(secrets_dir / "admin-certs" / "alice-cert.pub")


def test_the_admin_user_certificate_is_issued_once(psi, secrets_dir, ca_pub):
    chunk = _low(psi, "ssh_ca")["ssh-ca-user-certificate-alice-ssh-pki-certificate-managed"]
    first = psi.states.ssh_pki.certificate_managed(chunk["name"], **_kwargs(chunk))
    assert first.result is True and first.changes == {"created": chunk["name"]}
    assert psi.states.ssh_pki.certificate_managed(chunk["name"], **_kwargs(chunk)).changes == {}
    listing = subprocess.run(["ssh-keygen", "-L", "-f", chunk["name"]], capture_output=True, text=True,
                             check=True).stdout
    assert "user certificate" in listing and "piclust" in listing and "permit-pty" in listing
    assert "permit-port-forwarding" not in listing and 'Key ID: "piclust:alice"' in listing
    assert psi.modules.ssh_pki.verify_signature(chunk["name"], ca_pub)
    # the admin-keys list (authorized_keys of every node) never picks the certificate up
    assert not list((secrets_dir / "admin-keys").glob("*-cert.pub"))


# --- signing for real -------------------------------------------------------------------------

def test_policies_pin_the_requester_and_its_principals(psi, workdir, ca_pub):
    pub = (_host_key(workdir / "policy_key")).with_suffix(".pub").read_text()
    sign = psi.modules.ssh_pki.sign_remote_certificate
    ret = sign("host_delta", {"public_key": pub, "valid_principals": ["delta", "psi", "evil.example"],
                              "extensions": {"permit-pty": True}, "ttl": "3650d"}, __pub_id="delta")
    assert ret["errors"] == []
    cert = psi.modules.ssh_pki.read_certificate(ret["data"].decode())
    assert cert["cert_type"] == "host" and cert["valid_principals"] == ["delta"]
    assert cert["extensions"] == {} and cert["issuer_public_key"] == ca_pub.rsplit(" ", 1)[0]
    # a principal outside the policy gets the policy's principals, never more
    ret = sign("host_delta", {"public_key": pub, "valid_principals": ["psi"]}, __pub_id="delta")
    assert sorted(psi.modules.ssh_pki.read_certificate(ret["data"].decode())["valid_principals"]) == sorted(
        ["delta", f"delta.{DOMAIN}", "192.168.10.21"])
    assert sign("host_delta", {"public_key": pub}, __pub_id="zeta")["errors"] == [
        "minion not permitted to use specified signing policy"]
    assert sign("host_psi", {"public_key": pub}, __pub_id="psi")["errors"]  # no remote policy for the CA
    only = sign("host_delta", {}, True, __pub_id="delta")["data"]
    assert only["signing_public_key"].decode() == ca_pub.rsplit(" ", 1)[0]
    assert "signing_private_key" not in only


def test_the_host_certificate_state_is_idempotent_and_renews(bus, psi, delta, workdir, ca_pub):
    """delta's host certificate, issued as the highstate does it (the rendered state, only its key
    and certificate paths moved to a scratch directory), the CA reached over the bus stand-in."""
    key = _host_key(workdir / "delta_host_key")
    cert = workdir / "delta_host_key-cert.pub"
    kwargs = _kwargs(_low(delta, "sshd.hostcert")[CERT_STATE], private_key=str(key))
    apply = delta.states.ssh_pki.certificate_managed
    dry = apply(str(cert), test=True, **kwargs)
    assert dry.result is None and "would have been created" in dry.comment and not cert.exists()
    first = apply(str(cert), **kwargs)
    assert first.result is True and first.changes == {"created": str(cert)}
    again = apply(str(cert), **kwargs)
    assert again.result is True and again.changes == {}
    renew = apply(str(cert), **dict(kwargs, ttl_remaining="91d"))  # less than that remains: renewed
    assert renew.result is True and renew.changes.get("expiration") is True
    info = psi.modules.ssh_pki.read_certificate(str(cert))
    assert sorted(info["valid_principals"]) == sorted(["delta", f"delta.{DOMAIN}", "192.168.10.21"])
    assert info["key_id"] == f"delta.{DOMAIN}" and info["cert_type"] == "host"
    assert psi.modules.ssh_pki.verify_signature(str(cert), ca_pub)
    assert oct(cert.stat().st_mode & 0o777) == "0o644"


@pytest.fixture(scope="module")
def issued(psi, delta, workdir):
    """delta's host key and its certificate for the sshd below (signed under delta's policy)."""
    key = _host_key(workdir / "served_host_key")
    cert = workdir / "served_host_key-cert.pub"
    pub = key.with_suffix(".pub").read_text()
    ret = psi.modules.ssh_pki.sign_remote_certificate("host_delta", {"public_key": pub}, __pub_id="delta")
    cert.write_bytes(ret["data"])
    return {"key": key, "cert": cert}


def test_an_unreachable_ca_is_retried_then_fails_with_a_message(delta, workdir):
    assert BUS is None
    kwargs = _kwargs(_low(delta, "sshd.hostcert")[CERT_STATE], private_key=str(_host_key(workdir / "lonely_key")))
    ret = delta.states.ssh_pki.certificate_managed(str(workdir / "lonely_key-cert.pub"), **kwargs)
    assert ret.result is False and "ca_server did not respond" in ret.comment
    assert ret.comment.startswith("Attempt 1: ")  # retried (ca_retry: 2 attempts here) before giving up
    assert not (workdir / "lonely_key-cert.pub").exists()


# --- sshd and ssh, for real ---------------------------------------------------------------------

def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(issued, delta, workdir):
    """A real sshd on loopback with delta's key, the rendered drop-in lines and the issued cert."""
    if not HAVE_SSHD:
        pytest.skip("no sshd/ssh on this host (tests/host-packages.txt: openssh-server)")
    pathlib.Path("/run/sshd").mkdir(exist_ok=True)
    dropin = _low(delta, "sshd.hostcert")["sshd-host-certificate-dropin-file-managed"]["contents"]
    port = _free_port()
    config = workdir / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {issued['key']}\nPidFile {workdir}/sshd.pid\n"
        f"UsePAM no\nStrictModes no\nPasswordAuthentication no\nAuthorizedKeysFile none\n"
        + dropin.replace("/etc/ssh/ssh_host_ed25519_key-cert.pub", str(issued["cert"]))
    )
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield {"port": port, "config": config}
    proc.terminate()
    proc.wait(timeout=10)


def _hostkey_check(port, known_hosts, alias):
    """ssh's host key verdict only (no user auth possible): trusted or refused, and why."""
    ret = subprocess.run(
        ["ssh", "-F", "/dev/null", "-p", str(port), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
         "-o", "UserKnownHostsFile=/dev/null", "-o", f"GlobalKnownHostsFile={known_hosts}",
         "-o", f"HostKeyAlias={alias}", "-o", "PubkeyAuthentication=no", "-o", "ConnectTimeout=5",
         "-v", "nobody@127.0.0.1", "true"],
        capture_output=True, text=True, timeout=30)
    return ret.stderr


def test_ssh_trusts_the_certified_host_through_the_rendered_line_only(sshd, delta, workdir):
    contents = _low(delta, "sshd")["sshd-known-hosts-file-managed"]["contents"]
    known = workdir / "ssh_known_hosts"
    known.write_text(contents)
    for alias in ("delta", f"delta.{DOMAIN}", "192.168.10.21"):
        out = _hostkey_check(sshd["port"], known, alias)
        assert f"Host '{alias}' is known and matches the ED25519-CERT host certificate" in out, out
        assert f"Found CA key in {known}:2" in out
        assert "Permission denied" in out  # past the host key check: only user auth failed
    # the certificate is delta's: the same server presented as zeta is refused
    out = _hostkey_check(sshd["port"], known, "zeta")
    assert "Host key verification failed" in out or "Certificate invalid" in out, out


def test_ssh_refuses_the_same_host_without_a_certificate(sshd, workdir):
    known = workdir / "ssh_known_hosts"
    config = sshd["config"]
    bare = workdir / "sshd_config_bare"
    port = _free_port()
    bare.write_text("\n".join(ln for ln in config.read_text().splitlines()
                              if not ln.startswith(("HostCertificate", "Port", "PidFile")))
                    + f"\nPort {port}\nPidFile {workdir}/sshd-bare.pid\n")
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(bare)], stderr=subprocess.PIPE)
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        out = _hostkey_check(port, known, "delta")
        assert "Host key verification failed" in out, out
    finally:
        proc.terminate()
        proc.wait(timeout=10)
