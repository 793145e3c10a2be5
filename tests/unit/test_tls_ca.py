"""The cluster TLS CA's pillar (pillar/cluster/init.sls rendered from the project inventory): the
CA certificate (public) for every node, and to the deployer alone the CA's paths and one x509
signing policy per node, pinned to that minion ID and to its names; and what Salt's own policy
merge (x509_v2) makes of a greedy request."""

import importlib.machinery
import importlib.util

import pytest
import yaml

import salt.utils.x509 as x509util
from tests.conftest import INVENTORY, REPO

DOMAIN = "dc1.b3rry.clust0r"


def _load(name, path):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module


def _pillar(secrets_dir, minion_id, **opts):
    """pillar/cluster/init.sls (a #!py file) rendered for one minion, as the master does."""
    module = _load("cluster_pillar_tls", REPO / "pillar" / "cluster" / "init.sls")
    module.__opts__ = {"id": minion_id, "cluster_inventory": str(INVENTORY),
                       "cluster_secrets_dir": str(secrets_dir), "cluster_master_pub": "/nonexistent", **opts}
    return module.run()


@pytest.fixture
def secrets_dir(tmp_path):
    path = tmp_path / "cluster-secrets"
    (path / "tls").mkdir(parents=True)
    return path


@pytest.fixture
def inventory():
    return yaml.safe_load(INVENTORY.read_text())["cluster"]


def test_the_deployer_gets_one_pinned_policy_per_node(secrets_dir, inventory):
    pillar = _pillar(secrets_dir, "psi")
    policies = pillar["x509_signing_policies"]
    assert sorted(policies) == sorted(f"tls_{n}" for n in inventory["nodes"])
    for name, node in inventory["nodes"].items():
        policy = policies[f"tls_{name}"]
        assert policy["minions"] == name  # a glob without wildcards: that minion ID only, never a grain
        assert policy["CN"] == f"{name}.{DOMAIN}"
        sans = [f"DNS:{name}", f"DNS:{name}.{DOMAIN}", f"IP:{node['ip']}"]
        if "deployer" in node["roles"]:
            sans += ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]  # its TLS services are on the loopback
        assert policy["subjectAltName"] == ", ".join(sans)
        assert policy["extendedKeyUsage"] == "serverAuth, clientAuth"
        assert policy["basicConstraints"] == "critical, CA:false"
        assert policy["days_valid"] == 60
        assert policy["signing_private_key"] == str(secrets_dir / "tls" / "ca.key")
        assert policy["signing_cert"] == str(secrets_dir / "tls" / "ca.crt")
    assert pillar["deploy"]["tls_ca"] == {"key": str(secrets_dir / "tls" / "ca.key"),
                                          "cert": str(secrets_dir / "tls" / "ca.crt")}


def test_the_lifetime_follows_the_master_setting(secrets_dir):
    pillar = _pillar(secrets_dir, "psi", cluster_tls_cert_days=30)
    assert pillar["deploy"]["tls_cert_days"] == 30
    assert {p["days_valid"] for p in pillar["x509_signing_policies"].values()} == {30}


@pytest.mark.parametrize("minion_id", ["alpha", "delta", "zeta"])
def test_other_nodes_get_the_public_certificate_only(secrets_dir, minion_id):
    assert _pillar(secrets_dir, minion_id)["deploy"]["tls_ca_cert"] == ""  # none made yet
    (secrets_dir / "tls" / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    (secrets_dir / "tls" / "ca.key").write_text("-----BEGIN PRIVATE KEY-----\nSECRETKEY\n-----END PRIVATE KEY-----\n")
    pillar = _pillar(secrets_dir, minion_id)
    assert pillar["deploy"]["tls_ca_cert"] == "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    assert "x509_signing_policies" not in pillar and "tls_ca" not in pillar["deploy"]
    assert "SECRETKEY" not in repr(pillar) and str(secrets_dir / "tls" / "ca.key") not in repr(pillar)
    assert "SECRETKEY" not in repr(_pillar(secrets_dir, "psi"))  # paths only, even on the deployer


def test_salt_merges_a_greedy_request_down_to_the_policy(secrets_dir):
    policy = _pillar(secrets_dir, "psi")["x509_signing_policies"]["tls_delta"]
    policy.pop("minions")  # sign_remote_certificate checks and drops it before merging
    request = {"CN": "psi", "subject": {"CN": "psi", "O": "evil"}, "subjectAltName": "DNS:psi, DNS:*.example",
               "basicConstraints": "critical, CA:true", "keyUsage": "keyCertSign", "days_valid": 3650,
               "extendedKeyUsage": "codeSigning", "signing_private_key": "/tmp/other.key"}
    merged = x509util.merge_signing_policy(policy, request)
    assert "subject" not in merged  # the policy names the CN: a requested subject is dropped
    assert merged["CN"] == f"delta.{DOMAIN}"
    assert merged["subjectAltName"] == f"DNS:delta, DNS:delta.{DOMAIN}, IP:192.168.10.21"
    assert merged["basicConstraints"] == "critical, CA:false"
    assert merged["keyUsage"] == "critical, digitalSignature, keyEncipherment"
    assert merged["extendedKeyUsage"] == "serverAuth, clientAuth"
    assert merged["days_valid"] == 60
    assert merged["signing_private_key"] == str(secrets_dir / "tls" / "ca.key")


def test_the_policies_stay_out_of_the_ssh_ones(secrets_dir):
    pillar = _pillar(secrets_dir, "psi")
    assert not any(name.startswith("tls_") for name in pillar.get("ssh_signing_policies", {}))
    assert not any(name.startswith("host_") for name in pillar["x509_signing_policies"])
