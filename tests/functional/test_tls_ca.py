"""
The cluster TLS CA through Salt's loaders (x509_v2): the deployer's CA (sls tls_ca: key root-only
in the secrets directory, self-signed CA certificate), a node's certificate (sls tls) obtained by
remote signing under its policy, and Redis's TLS listener. The signing really runs: delta's
``x509.certificate_managed`` with ``ca_server`` asks psi's loaders (psi's own pillar and
policies) through a stand-in for the Salt bus that delivers the request with the requester's
minion ID as ``__pub_id``, as the master does for a peer publish (the functional tier has no
master). The SLS are applied in each minion's own files (tests/functional/nodefs.py: the
node's scratch paths below are under the test's tmp directory, the rest of its files its own).
Then a real redis-server with the rendered TLS lines serves psi's certificate: redis-cli
and redis-py with the CA accept it, a server certificate from another CA and a wrong name are
refused.
"""

import datetime
import os
import shutil
import socket
import stat
import subprocess
import time

import pytest
from saltfactories.utils.functional import Loaders

from tests.conftest import INVENTORY, STATE_TREE, cluster_pillar_opts, secrets_opts
from tests.functional.nodefs import Node
from tests.functional.salt_bus import as_ca_minion, fake_publish_module

DOMAIN = "dc1.b3rry.clust0r"
CERT_STATE = "tls-certificate-x509-certificate-managed"
LOW_KEYS = {"state", "fun", "__id__", "__sls__", "__env__", "order", "require", "watch", "onchanges",
            "require_in", "watch_in", "onlyif", "unless", "name", "onfail", "retry"}
REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
OPENSSL = shutil.which("openssl")
# the Salt bus in this process (tests/functional/salt_bus.py): None = the CA minion does not answer
BUS = None
FAKE_PUBLISH = fake_publish_module(__name__)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("tls-ca")


@pytest.fixture(scope="module")
def make_loaders(salt_factories, secrets_dir, workdir):
    """A minion's loaders in the test's process (pillar, rendering, state functions on scratch
    paths, the CA's signing), and ``.node``: the same minion applying SLS in its own files."""
    made = []

    def make(minion_id, roles):
        node = workdir / minion_id
        (node / "cache").mkdir(parents=True, exist_ok=True)
        extmods = workdir / "extmods" / "modules"
        extmods.mkdir(parents=True, exist_ok=True)
        (extmods / "publish.py").write_text(FAKE_PUBLISH)
        # update-ca-certificates of the test host is not touched: a stand-in counts its runs
        update = node / "update-ca-certificates"
        update.write_text(f"#!/bin/sh\necho run >> {node / 'trust-updates'}\n")
        update.chmod(0o755)
        overrides = {
            "module_dirs": [str(workdir / "extmods")],
            "file_client": "local",
            "file_roots": {"base": [str(STATE_TREE)]},
            "cachedir": str(node / "cache"),
            **cluster_pillar_opts(INVENTORY),
            **secrets_opts(secrets_dir),
            "grains": {"roles": roles},
            "roles": {"lookup": {"every_node": []}},
            # systemd-run --scope: not on this host (in a Node, systemctl is the stub)
            "systemd.scope": False,
            # the node's paths in a scratch directory; a CA that does not answer is retried quickly
            "tls": {"lookup": {
                "dir": str(node / "tls"), "key": str(node / "tls" / "node.key"),
                "cert": str(node / "tls" / "node.crt"), "trust_file": str(node / "trust" / "cluster-ca.crt"),
                "update_cmd": str(update), "ca_retry": {"attempts": 2, "interval": 1, "splay": 0},
            }},
        }
        opts = salt_factories.salt_minion_daemon(minion_id, overrides=overrides).config.copy()
        made.append(Loaders(opts, loaded_base_name=f"{__name__}.{minion_id}"))
        made[-1].node = Node(opts, node / "root")
        return made[-1]

    yield make
    for loaders in made:
        loaders.reset_state()


@pytest.fixture(scope="module")
def psi(make_loaders):
    return as_ca_minion(make_loaders("psi", ["deployer"]))


@pytest.fixture(scope="module")
def ca(psi, secrets_dir):
    """sls tls_ca applied on the deployer, once: the CA key and certificate."""
    ret = psi.node.sls("tls_ca")
    assert ret.failed is False, ret.raw
    return {"key": secrets_dir / "tls" / "ca.key", "cert": secrets_dir / "tls" / "ca.crt", "ret": ret}


@pytest.fixture(scope="module")
def delta(ca, make_loaders):
    """A compute node, made after the CA exists: its pillar carries the CA certificate."""
    return make_loaders("delta", ["compute"])


@pytest.fixture
def bus(psi):
    """The CA minion (psi's loaders: its own pillar and policies) answers on the bus."""
    global BUS  # noqa: PLW0603

    def deliver(requester_id, tgt, fun, arg):
        assert (tgt, fun) == ("psi", "x509.sign_remote_certificate")
        policy, kwargs, only = arg
        return {tgt: psi.modules.x509.sign_remote_certificate(policy, kwargs, only, __pub_id=requester_id)}

    BUS = deliver
    yield deliver
    BUS = None


def _changed(ret):
    return {sid: r["changes"] for sid, r in ret.raw.items() if r["changes"]}


def _low(loaders, sls):
    chunks = loaders.modules.state.show_low_sls(sls)
    assert isinstance(chunks, list), chunks
    return {c["__id__"]: c for c in chunks}


def _kwargs(chunk, **changes):
    kwargs = {k: v for k, v in chunk.items() if k not in LOW_KEYS}
    kwargs.update(changes)
    return kwargs


def _openssl(*args, check=True):
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=check, timeout=30)


def _text(cert):
    return _openssl("x509", "-noout", "-text", "-in", str(cert)).stdout


def _dates(cert):
    out = _openssl("x509", "-noout", "-startdate", "-enddate", "-in", str(cert)).stdout
    fmt = "%b %d %H:%M:%S %Y GMT"
    found = dict(line.split("=", 1) for line in out.splitlines())
    return (datetime.datetime.strptime(found["notBefore"], fmt), datetime.datetime.strptime(found["notAfter"], fmt))


def _verify(ca_cert, cert, *extra):
    return _openssl("verify", "-CAfile", str(ca_cert), *extra, str(cert), check=False)


def _mode(path):
    return stat.S_IMODE(path.stat().st_mode)


# --- the CA on the deployer -------------------------------------------------------------------

def test_the_ca_key_and_certificate_are_made_root_only_with_ca_extensions(ca, psi, secrets_dir):
    assert _mode(ca["key"]) == 0o600 and ca["key"].stat().st_uid == 0
    assert _mode(ca["key"].parent) == 0o700
    assert "PRIVATE KEY" in ca["key"].read_text()
    text = _text(ca["cert"])
    assert f"Subject: CN = cluster TLS CA {DOMAIN}" in text and f"Issuer: CN = cluster TLS CA {DOMAIN}" in text
    assert "CA:TRUE, pathlen:0" in text and "X509v3 Basic Constraints: critical" in text
    assert "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign" in text
    assert "NIST CURVE: P-384" in text
    not_before, not_after = _dates(ca["cert"])
    assert (not_after - not_before).days == 3650
    assert _verify(ca["cert"], ca["cert"]).returncode == 0  # self-signed, verifies against itself
    again = psi.node.sls("tls_ca")
    assert again.failed is False and _changed(again) == {}


def test_only_the_public_ca_certificate_reaches_the_nodes(ca, delta, psi):
    pillar = delta.modules.pillar.items(unmask=True)
    assert pillar["deploy"]["tls_ca_cert"] == ca["cert"].read_text()
    assert pillar["deploy"]["tls_cert_days"] == 60
    assert "x509_signing_policies" not in pillar and "tls_ca" not in pillar["deploy"]
    key_line = ca["key"].read_text().splitlines()[1]
    assert key_line not in repr(pillar) and key_line not in repr(psi.modules.pillar.items(unmask=True))


# --- a node's certificate -------------------------------------------------------------------

def test_a_node_gets_its_certificate_by_remote_signing_and_trusts_the_ca(bus, ca, delta, workdir):
    node = workdir / "delta"
    dry = delta.node.sls("tls", test=True)
    assert dry.raw[f"x509_|-{CERT_STATE}_|-{node / 'tls' / 'node.crt'}_|-certificate_managed"]["result"] is None
    ret = delta.node.sls("tls")
    assert ret.failed is False, ret.raw
    key, cert, trust = node / "tls" / "node.key", node / "tls" / "node.crt", node / "trust" / "cluster-ca.crt"
    assert _mode(key) == 0o600 and _mode(cert) == 0o644
    assert trust.read_text() == ca["cert"].read_text()
    assert (node / "trust-updates").read_text() == "run\n"
    assert _verify(ca["cert"], cert, "-purpose", "sslserver").returncode == 0
    assert _verify(ca["cert"], cert, "-purpose", "sslclient").returncode == 0
    text = _text(cert)
    assert f"Subject: CN = delta.{DOMAIN}" in text
    assert f"DNS:delta, DNS:delta.{DOMAIN}, IP Address:192.168.10.21\n" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "CA:FALSE" in text and "Digital Signature, Key Encipherment" in text
    not_before, not_after = _dates(cert)
    assert (not_after - not_before).days == 60  # the policy's days_valid (deploy:tls_cert_days)
    # the certificate is for delta's own key, which never left delta
    pub = _openssl("pkey", "-in", str(key), "-pubout").stdout
    assert _openssl("x509", "-noout", "-pubkey", "-in", str(cert)).stdout == pub
    again = delta.node.sls("tls")
    assert again.failed is False and _changed(again) == {}
    assert (node / "trust-updates").read_text() == "run\n"  # update-ca-certificates only on change


def test_the_certificate_is_renewed_inside_days_remaining_only(bus, delta, workdir):
    node = workdir / "delta"
    cert = node / "tls" / "node.crt"
    chunk = _low(delta, "tls")[CERT_STATE]
    assert chunk["ca_server"] == "psi" and chunk["signing_policy"] == "tls_delta"
    assert chunk["days_remaining"] == 20 and chunk["retry"]["attempts"] == 2
    before = _openssl("x509", "-noout", "-serial", "-in", str(cert)).stdout
    apply = delta.states.x509.certificate_managed
    outside = apply(str(cert), **_kwargs(chunk, days_remaining=59))  # 60 days left: not yet
    assert outside.result is True and outside.changes == {}
    assert _openssl("x509", "-noout", "-serial", "-in", str(cert)).stdout == before
    dry = apply(str(cert), test=True, **_kwargs(chunk, days_remaining=61))
    assert dry.result is None and dry.changes == {"expiration": True}
    inside = apply(str(cert), **_kwargs(chunk, days_remaining=61))  # fewer than 61 days left: renewed
    assert inside.result is True and inside.changes == {"expiration": True}
    assert _openssl("x509", "-noout", "-serial", "-in", str(cert)).stdout != before
    assert apply(str(cert), **_kwargs(chunk)).changes == {}


def test_the_policy_refuses_other_minions_and_pins_the_names(ca, psi, workdir):
    key = workdir / "greedy.key"
    key.write_text(psi.modules.x509.create_private_key(algo="ec"))
    pub = psi.modules.x509.get_public_key(str(key))
    sign = psi.modules.x509.sign_remote_certificate
    refused = sign("tls_zeta", {"public_key": pub}, __pub_id="delta")
    assert refused == {"data": None, "errors": ["minion not permitted to use specified signing policy"]}
    assert sign("tls_psi", {"public_key": pub}, __pub_id="delta")["errors"]  # nor the CA's own names
    assert sign("tls_nowhere", {"public_key": pub}, __pub_id="delta")["errors"] == [
        "signing_policy must be specified and defined on signing minion"]
    # under its own policy, a request for other names, a CA flag or 10 years gets the policy's
    greedy = sign("tls_delta", {"public_key": pub, "CN": "zeta", "subjectAltName": "DNS:zeta, DNS:*.example",
                                "basicConstraints": "critical, CA:true", "days_valid": 3650}, __pub_id="delta")
    assert greedy["errors"] == []
    issued = workdir / "greedy.crt"
    issued.write_text(psi.modules.x509.encode_certificate(greedy["data"]))
    text = _text(issued)
    assert f"Subject: CN = delta.{DOMAIN}" in text and "zeta" not in text and "example" not in text
    assert "CA:FALSE" in text
    not_before, not_after = _dates(issued)
    assert (not_after - not_before).days == 60
    assert _verify(ca["cert"], issued).returncode == 0
    # openssl checks the name: delta's certificate is not zeta's
    assert _verify(ca["cert"], issued, "-verify_hostname", f"delta.{DOMAIN}").returncode == 0
    wrong = _verify(ca["cert"], issued, "-verify_hostname", f"zeta.{DOMAIN}")
    assert wrong.returncode != 0 and "hostname mismatch" in wrong.stdout + wrong.stderr


def test_an_unreachable_ca_is_retried_then_fails_with_a_message(delta, workdir):
    assert BUS is None
    chunk = _low(delta, "tls")
    kwargs = _kwargs(chunk[CERT_STATE], private_key=str(workdir / "delta" / "tls" / "node.key"))
    ret = delta.states.x509.certificate_managed(str(workdir / "lonely.crt"), **kwargs)
    assert ret.result is False and "ca_server did not respond" in ret.comment
    assert not (workdir / "lonely.crt").exists()
    fail = chunk["tls-certificate-ca-unreachable-test-fail-without-changes"]
    assert fail["onfail"] == [{"x509": CERT_STATE}]
    assert "salt psi test.ping" in fail["name"] and "x509_signing_policies:tls_delta" in fail["name"]


# --- the deployer's own certificate and Redis -----------------------------------------------------

@pytest.fixture(scope="module")
def psi_tls(ca, psi, workdir):
    """sls tls on the deployer: it signs its own certificate locally, under its policy."""
    ret = psi.node.sls("tls")
    assert ret.failed is False, ret.raw
    node = workdir / "psi"
    return {"key": node / "tls" / "node.key", "cert": node / "tls" / "node.crt",
            "trust": node / "trust" / "cluster-ca.crt", "ret": ret}


def test_the_deployer_signs_its_own_certificate_under_its_policy(psi_tls, ca, psi, workdir):
    text = _text(psi_tls["cert"])
    assert (f"DNS:psi, DNS:psi.{DOMAIN}, IP Address:192.168.10.10, DNS:localhost, "
            "IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1\n") in text
    assert _verify(ca["cert"], psi_tls["cert"], "-purpose", "sslserver").returncode == 0
    assert psi_tls["trust"].read_text() == ca["cert"].read_text()  # copied from the CA's file
    assert _mode(psi_tls["key"]) == 0o600
    again = psi.node.sls("tls")
    assert again.failed is False and _changed(again) == {}
    assert (workdir / "psi" / "trust-updates").read_text() == "run\n"


def test_redis_renders_a_tls_listener_with_the_key_through_systemd(psi, psi_tls):
    chunks = _low(psi, "redis")
    conf = chunks["redis-tls-file-managed"]["contents"]
    assert "tls-port 6380\n" in conf and f"tls-cert-file {psi_tls['cert']}\n" in conf
    assert "tls-key-file /run/credentials/redis-server.service/cluster-tls.key\n" in conf
    assert f"tls-ca-cert-file {psi_tls['trust']}\n" in conf
    dropin = chunks["redis-tls-key-credential-dropin-file-managed"]
    assert dropin["name"] == "/etc/systemd/system/redis-server.service.d/cluster-tls.conf"
    assert f"LoadCredential=cluster-tls.key:{psi_tls['key']}" in dropin["contents"]
    watched = chunks["redis-service-running"]["watch"]
    assert {"x509": CERT_STATE} in watched and {"file": "redis-tls-file-managed"} in watched


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_redis(workdir, name, tls_lines, password):
    port, tls_port = _free_port(), _free_port()
    conf = workdir / f"{name}.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1 -::1\ndir {workdir}\nsave ''\nappendonly no\n"
                    f"requirepass {password}\n" + tls_lines.replace("tls-port 6380", f"tls-port {tls_port}"))
    proc = subprocess.Popen([REDIS_SERVER, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", tls_port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
    return proc, tls_port


@pytest.fixture(scope="module")
def redis_tls(psi, psi_tls, secrets_dir, workdir):
    """A real redis-server with the rendered TLS lines; the key path systemd would hand it
    (LoadCredential) is psi's key itself here (the test runs as root, as systemd reads it)."""
    if not (REDIS_SERVER and REDIS_CLI and OPENSSL):
        pytest.skip("no redis-server/redis-cli/openssl on this host (tests/host-packages.txt: redis-server)")
    conf = _low(psi, "redis")["redis-tls-file-managed"]["contents"]
    conf = conf.replace("/run/credentials/redis-server.service/cluster-tls.key", str(psi_tls["key"]))
    password = (secrets_dir / "redis.password").read_text().strip()
    proc, port = _start_redis(workdir, "redis", conf, password)
    yield {"port": port, "password": password, "ca": psi_tls["trust"]}
    proc.terminate()
    proc.wait(timeout=10)


def _cli(port, cacert, host="localhost", password=None, *args):
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    if password:
        env["REDISCLI_AUTH"] = password
    return subprocess.run([REDIS_CLI, "--tls", "--cacert", str(cacert), "-h", host, "-p", str(port), *args, "ping"],
                          capture_output=True, text=True, env=env, timeout=30)


def test_redis_cli_with_the_ca_talks_tls_and_still_needs_the_password(redis_tls):
    for host in ("localhost", "127.0.0.1"):
        ok = _cli(redis_tls["port"], redis_tls["ca"], host, redis_tls["password"])
        assert ok.stdout.strip() == "PONG", ok.stderr
    noauth = _cli(redis_tls["port"], redis_tls["ca"], "localhost", None)
    assert "NOAUTH" in noauth.stdout + noauth.stderr


def test_a_client_trusting_other_cas_refuses_the_cluster_certificate(redis_tls, workdir):
    other = workdir / "other-ca.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", str(workdir / "other-ca.key"), "-out", str(other), "-subj", "/CN=other CA", "-days", "2")
    ret = _cli(redis_tls["port"], other, "localhost", redis_tls["password"])
    assert ret.stdout.strip() != "PONG" and "certificate verify failed" in ret.stdout + ret.stderr


def test_the_listener_presents_the_deployers_names_only(redis_tls):
    """redis-cli 7.0 checks the chain, not the name (it said PONG to a certificate for another
    name in a trial): the name is checked by openssl and by redis-py, the Python client."""
    def s_client(name):
        return subprocess.run(
            [OPENSSL, "s_client", "-connect", f"127.0.0.1:{redis_tls['port']}", "-CAfile", str(redis_tls["ca"]),
             "-verify_hostname", name, "-verify_return_error", "-brief"],
            input="", capture_output=True, text=True, timeout=30)
    for name in ("localhost", "psi", f"psi.{DOMAIN}"):
        ok = s_client(name)
        assert ok.returncode == 0 and "Verification: OK" in ok.stderr, ok.stderr
    wrong = s_client(f"zeta.{DOMAIN}")
    assert wrong.returncode != 0 and "hostname mismatch" in wrong.stderr

    redis = pytest.importorskip("redis")
    client = redis.Redis(host="localhost", port=redis_tls["port"], password=redis_tls["password"], ssl=True,
                         ssl_ca_certs=str(redis_tls["ca"]), ssl_check_hostname=True, socket_timeout=10)
    assert client.ping() is True
    client.close()


def test_a_server_certificate_from_another_ca_is_refused(redis_tls, workdir):
    """A rogue Redis on the loopback with a self-signed certificate for the deployer's names:
    a client with the cluster CA refuses it."""
    key, cert = workdir / "rogue.key", workdir / "rogue.crt"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-subj", f"/CN=psi.{DOMAIN}", "-days", "2",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    lines = (f"tls-port 6380\ntls-cert-file {cert}\ntls-key-file {key}\ntls-ca-cert-file {cert}\n"
             "tls-auth-clients no\n")
    proc, port = _start_redis(workdir, "rogue", lines, "x")
    try:
        ret = _cli(port, redis_tls["ca"], "localhost", "x")
        assert ret.stdout.strip() != "PONG" and "certificate verify failed" in ret.stdout + ret.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)

