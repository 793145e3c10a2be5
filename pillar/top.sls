#!py
"""
Pillar top, computed from the inventory.

Every pillar is targeted by minion ID lists taken from the validated inventory, never by
grains (a minion controls its own grains). An invalid inventory raises here, so the pillar
fails to render for every minion and a highstate applies nothing, naming the bad field (the
ext_pillar _pillar/cluster.py, which gives the nodes ``cluster`` and ``node``, raises too).
"""
import os

from rpicluster import model, views


def run():
    pillar_root = os.path.dirname(os.path.abspath(__file__))  # this file's own pillar tree
    path = __opts__.get("cluster_inventory") or os.path.join(pillar_root, "cluster", "inventory.yaml")
    inventory = model.load_inventory(path)["cluster"]
    secrets_dir = __opts__.get("cluster_secrets_dir", "/etc/salt/cluster-secrets")

    def ids(role=None):
        return ",".join(views.nodes(inventory, role))

    # Each node's own Salt key: secrets/minion_key.sls holds the key of the minion the pillar is
    # rendered for (opts['id']) and no other, so one list target serves every node. (A target per
    # node made Salt match them all, one by one, in every pillar render: most of its time at 250 nodes.)
    top = {ids(): [{"match": "list"}, "cluster", "secrets.minion_key"]}
    for role in model.ROLES:
        # role secrets only once the deployer bootstrap generated them (bootstrap/generate-secrets)
        if os.path.isfile(os.path.join(pillar_root, "secrets", f"{role}.sls")) and os.path.isdir(secrets_dir):
            top[ids(role)] = [{"match": "list"}, f"secrets.{role}"]
    return {"base": top}
