#!py
"""The validated, normalised inventory as the ``cluster`` pillar (see _modules/cluster.py)."""
import importlib.util
import os


def run():
    pillar_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "cluster_model", os.path.join(os.path.dirname(pillar_root), "_modules", "cluster.py")
    )
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    path = __opts__.get("cluster_inventory") or os.path.join(pillar_root, "cluster", "inventory.yaml")
    return model.load_inventory(path)
