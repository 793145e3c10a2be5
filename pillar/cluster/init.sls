#!py
"""
(``cluster``, the validated inventory, and ``node``, the node's own view, come from the
ext_pillar _pillar/cluster.py.)
``deploy``: how nodes reach and trust the deployer (master address and pinned fingerprint,
package cache, pinned Salt version, admin account and its SSH keys), from the master config
that bootstrap/deployer writes.
``deploy:ssh_ca_pub``: the cluster SSH CA's public key (every node trusts host and user
certificates it signed); ``deploy:ssh_host_cert_ttl``: the lifetime of a host certificate.
The deployer alone also gets ``deploy:ssh_ca`` (paths of the CA key and of the public keys it
signs user certificates for, with their certificates' paths; never any key's content) and
``ssh_signing_policies``: one ``host_<node>``
policy per other node, which only that minion may use and which pins the principals to its
name, FQDN and IP (salt/sshd/hostcert.sls asks for it by remote signing).
``deploy:extension_modules``: the digest of the custom modules minions sync (salt://_<kind>/*.py);
a node syncs them when it differs from the one it synced last (salt/minion/extensions.sls).
``deploy:tls_ca_cert``: the cluster TLS CA's certificate (PEM, public; '' until the deployer's
highstate made it, salt/tls_ca), for every node's trust store; ``deploy:tls_cert_days``: the
lifetime of a node's TLS certificate. The deployer alone also gets ``deploy:tls_ca`` (paths of
the CA key and certificate) and ``x509_signing_policies``: one ``tls_<node>`` policy per node
(the deployer's included: it signs its own locally under it), which only that minion may use
and which pins the certificate's subject and names to the node's name, FQDN and IP.
"""
import glob
import hashlib
import os

from rpicluster import model, views


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def _host_signing_policies(inventory, ca_key, ttl):
    """``ssh_signing_policies`` of the CA minion: ``host_<node>`` for every node but the deployer
    (which signs its own certificate locally), usable by that minion ID only."""
    policies = {}
    for name in views.nodes(inventory):
        node = views.node(inventory, name)
        if name == views.deployer(inventory):
            continue
        policies[f"host_{name}"] = {
            "minions": name,
            "signing_private_key": ca_key,
            "cert_type": "host",
            "valid_principals": [node["name"], node["fqdn"], node["ip"]],
            "key_id": node["fqdn"],
            "ttl": ttl,
            "allowed_critical_options": [],
            "allowed_extensions": [],
        }
    return policies


# the deployer's TLS services listen on the loopback (Redis): its certificate names it too
LOOPBACK_NAMES = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]


def _tls_signing_policies(inventory, ca_key, ca_cert, days):
    """``x509_signing_policies`` of the TLS CA minion: ``tls_<node>`` for every node, usable by
    that minion ID only (``minions`` is a glob without wildcards). x509_v2 merges a policy over
    the request, the policy winning: the subject (CN) and subjectAltName a node gets are these,
    whatever it asks for. A policy cannot depend on who asks, hence one policy per node (a
    policy per role could not pin each node's names)."""
    policies = {}
    deployer = views.deployer(inventory)
    for name in views.nodes(inventory):
        node = views.node(inventory, name)
        sans = [f"DNS:{node['name']}", f"DNS:{node['fqdn']}", f"IP:{node['ip']}"]
        if name == deployer:
            sans += LOOPBACK_NAMES
        policies[f"tls_{name}"] = {
            "minions": name,
            "signing_private_key": ca_key,
            "signing_cert": ca_cert,
            "CN": node["fqdn"],
            "subjectAltName": ", ".join(sans),
            "basicConstraints": "critical, CA:false",
            "keyUsage": "critical, digitalSignature, keyEncipherment",
            "extendedKeyUsage": "serverAuth, clientAuth",
            "subjectKeyIdentifier": "hash",
            "authorityKeyIdentifier": "keyid:always",
            "days_valid": days,
        }
    return policies


def _extension_modules_digest():
    """sha256 over the names and contents of the custom modules a minion syncs: every
    ``_<kind>/*.py`` of the base file roots (salt/_modules, _states, _grains, _beacons)."""
    digest = hashlib.sha256()
    for root in __opts__.get("file_roots", {}).get("base", []):
        for path in sorted(glob.glob(os.path.join(root, "_*", "*.py"))):
            digest.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as handle:
                digest.update(handle.read() + b"\0")
    return digest.hexdigest()


def run():
    pillar_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = __opts__.get("cluster_inventory") or os.path.join(pillar_root, "cluster", "inventory.yaml")
    inventory = model.load_inventory(path)["cluster"]

    secrets_dir = __opts__.get("cluster_secrets_dir", "/etc/salt/cluster-secrets")
    master_pub = __opts__.get("cluster_master_pub", "/etc/salt/pki/master/master.pub")
    finger = ""
    if os.path.isfile(master_pub):
        import salt.utils.crypt  # pylint: disable=import-outside-toplevel

        # the minion hashes the key body, as pem_finger does (salt-key -F prints another value in 3008.4)
        finger = salt.utils.crypt.pem_finger(master_pub, sum_type=__opts__.get("hash_type", "sha256"))
    pubkeys = [
        _read(p)
        for p in [os.path.join(secrets_dir, "ssh", "deployer_ed25519.pub")]
        + sorted(glob.glob(os.path.join(secrets_dir, "admin-keys", "*.pub")))
        if os.path.isfile(p)
    ]
    ca_key = os.path.join(secrets_dir, "ssh", "ca_ed25519")
    ca_pub = ca_key + ".pub"
    # the TLS CA (salt/tls_ca makes both on the deployer's highstate; the key never leaves it)
    tls_ca_key = os.path.join(secrets_dir, "tls", "ca.key")
    tls_ca_cert = os.path.join(secrets_dir, "tls", "ca.crt")
    deployer = views.node(inventory, views.deployer(inventory))
    deploy = {
        "master": deployer["ip"],
        "master_finger": finger,
        "package_cache": __opts__.get("cluster_package_cache", ""),
        "salt_version": __opts__.get("cluster_salt_version", "3008.4"),
        "saltext_redis_version": __opts__.get("cluster_saltext_redis_version", "1.0.2"),
        "admin_user": __opts__.get("cluster_admin_user", "piclust"),
        "admin_pubkeys": pubkeys,
        "ssh_ca_pub": _read(ca_pub) if os.path.isfile(ca_pub) else "",
        "ssh_host_cert_ttl": __opts__.get("cluster_ssh_host_cert_ttl", "90d"),
        "tls_ca_cert": _read(tls_ca_cert) + "\n" if os.path.isfile(tls_ca_cert) else "",
        "tls_cert_days": int(__opts__.get("cluster_tls_cert_days", 60)),
        "extension_modules": _extension_modules_digest(),
    }
    if __opts__.get("id") == deployer["name"]:  # the master pre-accepts every node's key
        keydir = os.path.join(secrets_dir, "minion-keys")
        deploy["minion_pubkeys"] = {
            name: _read(os.path.join(keydir, f"{name}.pub")) + "\n"
            for name in views.nodes(inventory)
            if os.path.isfile(os.path.join(keydir, f"{name}.pub"))
        }
    extra = {}
    if __opts__.get("id") == deployer["name"] and os.path.isfile(ca_key):  # the SSH CA, deployer only
        # user certificates: the salt-ssh key's beside it (ssh picks <key>-cert.pub up by itself),
        # the admins' in admin-certs/ (admin-keys/*.pub is the authorized_keys list)
        ssh_dir = os.path.join(secrets_dir, "ssh")
        certs = {os.path.join(ssh_dir, "deployer_ed25519.pub"): os.path.join(ssh_dir, "deployer_ed25519-cert.pub")}
        for pub in sorted(glob.glob(os.path.join(secrets_dir, "admin-keys", "*.pub"))):
            name = os.path.basename(pub)[: -len(".pub")]
            if not name.endswith("-cert"):
                certs[pub] = os.path.join(secrets_dir, "admin-certs", f"{name}-cert.pub")
        deploy["ssh_ca"] = {"key": ca_key, "user_certs": {k: v for k, v in certs.items() if os.path.isfile(k)}}
        extra["ssh_signing_policies"] = _host_signing_policies(inventory, ca_key, deploy["ssh_host_cert_ttl"])
    if __opts__.get("id") == deployer["name"]:  # the TLS CA, deployer only (paths, never the key)
        deploy["tls_ca"] = {"key": tls_ca_key, "cert": tls_ca_cert}
        extra["x509_signing_policies"] = _tls_signing_policies(
            inventory, tls_ca_key, tls_ca_cert, deploy["tls_cert_days"]
        )
    return {"deploy": deploy, **extra}
