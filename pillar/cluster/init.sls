#!py
"""
``cluster``: the validated, normalised inventory (see _modules/cluster.py).
``deploy``: how nodes reach and trust the deployer (master address and pinned fingerprint,
package cache, pinned Salt version, admin account and its SSH keys), from the master config
that bootstrap/deployer writes.
"""
import glob
import importlib.util
import os


def _read(path):
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def run():
    pillar_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "cluster_model", os.path.join(os.path.dirname(pillar_root), "_modules", "cluster.py")
    )
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
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
    deployer = model.node(model.deployer(inventory), inventory)
    deploy = {
        "master": deployer["ip"],
        "master_finger": finger,
        "package_cache": __opts__.get("cluster_package_cache", ""),
        "salt_version": __opts__.get("cluster_salt_version", "3008.4"),
        "saltext_redis_version": __opts__.get("cluster_saltext_redis_version", "1.0.2"),
        "admin_user": __opts__.get("cluster_admin_user", "piclust"),
        "admin_pubkeys": pubkeys,
    }
    if __opts__.get("id") == deployer["name"]:  # the master pre-accepts every node's key
        keydir = os.path.join(secrets_dir, "minion-keys")
        deploy["minion_pubkeys"] = {
            name: _read(os.path.join(keydir, f"{name}.pub")) + "\n"
            for name in model.nodes(None, inventory)
            if os.path.isfile(os.path.join(keydir, f"{name}.pub"))
        }
    return {"cluster": inventory, "deploy": deploy}
