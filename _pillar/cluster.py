"""
The cluster pillar: each inventory node gets ``cluster`` (the validated inventory) and
``node``, its own view (:func:`rpicluster.views.node_view`: roles, pair role, peer,
address, FQDN, and on the lanservices pair its DNS zones and DHCP reservations).

The inventory is read and validated once per render (:func:`rpicluster.model.load_inventory`
skips text it validated before). An invalid inventory raises: the render fails for every
minion with the problems, each naming its field, and with ``pillar_safe_render_error`` no
state runs anywhere. A minion that is not in the inventory gets nothing.

Configuration (master.d/cluster.conf; the inventory is ``cluster_inventory``, else
``cluster/inventory.yaml`` of a pillar root, unless ``inventory`` is given):

.. code-block:: yaml

    pillar_dirs:
      - /srv/cluster/_pillar
    ext_pillar:
      - cluster: {}

The master's Python must import ``rpicluster`` (bootstrap/deployer puts it on the path of
Salt's venv).
"""

import importlib.util
import logging

log = logging.getLogger(__name__)

__virtualname__ = "cluster"


def __virtual__():
    if importlib.util.find_spec("rpicluster") is None:
        return (False, "the rpicluster package is not importable: bootstrap/deployer puts it on the path of Salt's Python")
    return __virtualname__


def ext_pillar(minion_id, pillar, inventory=None):  # pylint: disable=unused-argument
    """
    ``cluster`` and ``node`` for ``minion_id`` from the inventory (``inventory``: its path,
    default ``cluster_inventory`` of the master config).
    """
    from rpicluster import model, views  # pylint: disable=import-outside-toplevel

    path = inventory or model.inventory_path(__opts__)
    cluster = model.load_inventory(path)["cluster"]
    if minion_id not in cluster["nodes"]:
        log.debug("cluster pillar: %s is not in the inventory %s", minion_id, path)
        return {}
    return {"cluster": cluster, "node": views.node_view(cluster, minion_id)}
