"""The cluster SSH CA's pure parts: the CA key made once and root-only (bootstrap/generate-secrets),
the pillar that hands out its public key and, to the deployer alone, one signing policy per node
(pillar/cluster/init.sls), and what Salt's own policy merge makes of a greedy request."""

import importlib.machinery
import importlib.util
import os
import stat
import subprocess
from datetime import datetime

import pytest

import salt.utils.sshpki as sshpki
from tests.conftest import INVENTORY, REPO, secrets_layout, stop_gpg_agents


def _load(name, path):
    """Import a Python file whatever its name (bootstrap/generate-secrets, a #!py pillar file)."""
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    loader.exec_module(module)
    return module


secrets_tool = _load("generate_secrets", REPO / "bootstrap" / "generate-secrets")
DOMAIN = "dc1.b3rry.clust0r"


def _generate(secrets_dir):
    """generate-secrets in-process, with its GPG keydir and repository beside ``secrets_dir``."""
    keydir, repo = secrets_layout(secrets_dir)
    return secrets_tool.main(["generate-secrets", str(secrets_dir), "--repo", str(repo), "--gpg-keydir", str(keydir)])


def _pillar(secrets_dir, minion_id):
    """pillar/cluster/init.sls (a #!py file) rendered for one minion, as the master does."""
    module = _load("cluster_pillar", REPO / "pillar" / "cluster" / "init.sls")
    module.__opts__ = {"id": minion_id, "cluster_inventory": str(INVENTORY),
                       "cluster_secrets_dir": str(secrets_dir), "cluster_master_pub": "/nonexistent"}
    return module.run()


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("secrets") / "cluster-secrets"
    assert _generate(path) == 0
    admin = path / "admin-keys"
    admin.mkdir(mode=0o700)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path / "alice")], check=True)
    (admin / "alice.pub").write_text((path / "alice.pub").read_text())
    (admin / "stray-cert.pub").write_text("a certificate someone dropped here: never certified again\n")
    yield path
    stop_gpg_agents([secrets_layout(path)[0]])


def test_the_ca_key_is_made_once_and_root_only(secrets_dir, capsys):
    key = secrets_dir / "ssh" / "ca_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((secrets_dir / "ssh").stat().st_mode) == 0o700
    pub = (secrets_dir / "ssh" / "ca_ed25519.pub").read_text()
    assert pub.startswith("ssh-ed25519 ") and pub.strip().endswith(" cluster-ssh-ca")
    before = key.read_bytes()
    capsys.readouterr()
    assert _generate(secrets_dir) == 0
    assert f"{secrets_dir}: created nothing\n" in capsys.readouterr().out
    assert key.read_bytes() == before


def test_every_node_gets_the_ca_public_key_only(secrets_dir):
    pillar = _pillar(secrets_dir, "delta")
    ca_pub = (secrets_dir / "ssh" / "ca_ed25519.pub").read_text().strip()
    assert pillar["deploy"]["ssh_ca_pub"] == ca_pub
    assert pillar["deploy"]["ssh_host_cert_ttl"] == "90d"
    assert "ssh_signing_policies" not in pillar and "ssh_ca" not in pillar["deploy"]


def test_the_deployer_gets_one_pinned_policy_per_other_node(secrets_dir):
    pillar = _pillar(secrets_dir, "psi")
    policies = pillar["ssh_signing_policies"]
    assert sorted(policies) == [f"host_{n}" for n in ("alpha", "beta", "delta", "epsilon", "gamma", "zeta")]
    for name, policy in policies.items():
        node = name[len("host_"):]
        assert policy["minions"] == node  # a glob without wildcards: that minion ID only
        assert policy["valid_principals"][:2] == [node, f"{node}.{DOMAIN}"]
        assert policy["valid_principals"][2].startswith("192.168.10.")
        assert policy["cert_type"] == "host"
        assert policy["signing_private_key"] == str(secrets_dir / "ssh" / "ca_ed25519")
    certs = pillar["deploy"]["ssh_ca"]["user_certs"]
    assert certs == {
        str(secrets_dir / "ssh" / "deployer_ed25519.pub"): str(secrets_dir / "ssh" / "deployer_ed25519-cert.pub"),
        str(secrets_dir / "admin-keys" / "alice.pub"): str(secrets_dir / "admin-certs" / "alice-cert.pub"),
    }


def test_no_ca_no_policies(tmp_path):
    empty = tmp_path / "secrets"
    empty.mkdir()
    for minion_id in ("psi", "delta"):
        pillar = _pillar(empty, minion_id)
        assert pillar["deploy"]["ssh_ca_pub"] == ""
        assert "ssh_signing_policies" not in pillar and "ssh_ca" not in pillar["deploy"]


def test_salt_merges_a_greedy_request_down_to_the_policy(secrets_dir):
    policy = _pillar(secrets_dir, "psi")["ssh_signing_policies"]["host_zeta"]
    policy.pop("minions")  # sign_remote_certificate checks and drops it before merging
    request = {"valid_principals": ["zeta", "psi", "*.example"], "cert_type": "user", "ttl": "3650d",
               "extensions": {"permit-pty": True}, "critical_options": {"force-command": "/bin/true"},
               "key_id": "psi.dc1.b3rry.clust0r"}
    merged = sshpki.merge_signing_policy(policy, request)
    assert merged["valid_principals"] == ["zeta"]
    assert merged["cert_type"] == "host" and merged["key_id"] == f"zeta.{DOMAIN}"
    assert merged["extensions"] is None and merged["critical_options"] is None
    fmt = "%Y-%m-%d %H:%M:%S"
    lifetime = datetime.strptime(merged["not_after"], fmt) - datetime.strptime(merged["not_before"], fmt)
    assert lifetime.days == 90  # the policy's ttl is also its maximum
    everything = sshpki.merge_signing_policy(policy, {"all_principals": True})
    assert sorted(everything["valid_principals"]) == sorted(["zeta", f"zeta.{DOMAIN}", "192.168.10.24"])


def test_the_signing_key_path_stays_out_of_any_other_pillar(secrets_dir):
    for minion_id in ("alpha", "delta"):
        assert str(secrets_dir / "ssh" / "ca_ed25519") not in repr(_pillar(secrets_dir, minion_id))
    assert os.path.exists(secrets_dir / "ssh" / "ca_ed25519")
