"""
The master's job cache (_returners/redis_jobcache.py) against a real redis-server: a remote
signing job of x509_v2 (public key out, certificate back, both DER bytes) is stored and read back
as the requester needs it, which saltext-redis's own returner cannot do; a job without bytes is
stored exactly as saltext-redis stores it (cluster.history and salt-run jobs read those keys).
"""

import copy
import datetime
import json

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import salt.config
import salt.loader
import salt.utils.x509 as x509util
from tests.conftest import REPO

pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
JID = "20261202101500123456"


@pytest.fixture
def opts(tmp_path, redis_server):
    return dict(
        copy.deepcopy(salt.config.DEFAULT_MASTER_OPTS),
        cachedir=str(tmp_path / "cache"),
        master_job_cache="redis_jobcache",
        returner_dirs=[str(REPO / "_returners")],
        keep_jobs_seconds=3600,
        **{"redis.unix_socket_path": str(redis_server), "redis.db": "0", "__role": "master"},
    )


@pytest.fixture
def returners(opts):
    return salt.loader.returners(opts, {"config.option": lambda key, default=None, **_: opts.get(key, default)})


@pytest.fixture
def raw(redis_server):
    return redis.Redis(unix_socket_path=str(redis_server), db=0, decode_responses=True)


def _signing_job():
    """What a node's x509.certificate_managed with ca_server sends, and what the CA answers."""
    ca_key, node_key = ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gamma")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(node_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=60))
            .sign(ca_key, hashes.SHA384()))
    public_der = x509util.to_der(node_key.public_key())
    load = {"jid": JID, "fun": "x509.sign_remote_certificate", "tgt": "psi", "tgt_type": "glob",
            "arg": ["tls_gamma", {"public_key": public_der, "days_valid": 60}, False], "id": "gamma"}
    ret = {"jid": JID, "id": "psi", "fun": "x509.sign_remote_certificate", "success": True, "retcode": 0,
           "return": {"data": x509util.to_der(cert), "errors": []}}
    return load, ret, cert, node_key


def test_saltext_redis_alone_cannot_store_a_signing_job(returners):
    """Why the module exists: the stock returner fails on the DER bytes (the job was lost)."""
    load, ret, _, _ = _signing_job()
    with pytest.raises(TypeError, match="bytes"):
        returners["redis.save_load"](JID, load)
    with pytest.raises(TypeError, match="bytes"):
        returners["redis.returner"](ret)


def test_a_signing_job_reads_back_as_the_requester_needs_it(returners):
    load, ret, cert, node_key = _signing_job()
    returners["redis_jobcache.save_load"](JID, load)
    returners["redis_jobcache.returner"](ret)

    answer = returners["redis_jobcache.get_jid"](JID)["psi"]["return"]
    assert answer["data"].startswith("b64:")
    assert x509util.load_cert(answer["data"]) == cert  # what x509_v2's _create_certificate_remote loads
    sent = returners["redis_jobcache.get_load"](JID)["arg"][1]["public_key"]
    assert x509util.load_pubkey(sent).public_numbers() == node_key.public_key().public_numbers()
    assert JID in returners["redis_jobcache.get_jids"]()


def test_a_job_without_bytes_is_stored_as_saltext_redis_stores_it(returners, raw):
    load = {"jid": JID, "fun": "state.apply", "arg": [], "tgt": ["alpha"], "tgt_type": "list"}
    ret = {"jid": JID, "id": "alpha", "fun": "state.apply", "return": {"a": {"result": True}}, "success": True}
    other = "20261202101500999999"

    returners["redis_jobcache.save_load"](JID, load)
    returners["redis_jobcache.returner"](ret)
    returners["redis.save_load"](other, dict(load, jid=other))
    returners["redis.returner"](dict(ret, jid=other))

    assert json.loads(raw.get(f"load:{JID}")) == dict(json.loads(raw.get(f"load:{other}")), jid=JID)
    assert json.loads(raw.hget(f"ret:{JID}", "alpha")) == dict(json.loads(raw.hget(f"ret:{other}", "alpha")), jid=JID)
    assert 0 < raw.ttl(f"load:{JID}") <= 3600 and 0 < raw.ttl(f"ret:{JID}") <= 3600
    assert raw.get("alpha:state.apply") == other  # same per-minion index: the newest job wins
    assert "alpha" in returners["redis_jobcache.get_minions"]()
