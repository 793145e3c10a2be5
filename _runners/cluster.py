"""
The cluster model on the master, for orchestration and reporting.

Loads the same model (``_modules/cluster.py``) and the same inventory as the pillar, so
``salt-run`` and ``state.orch`` see exactly what the minions see.

CLI Example:

.. code-block:: bash

    salt-run cluster.nodes role=compute
"""

import importlib.util
import logging
import os

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "cluster"


def __virtual__():
    return __virtualname__


def _model():
    """Import _modules/cluster.py from the state tree (salt/_modules links to it)."""
    for root in __opts__["file_roots"]["base"]:
        path = os.path.join(root, "_modules", "cluster.py")
        if os.path.isfile(path):
            break
    else:
        raise CommandExecutionError("_modules/cluster.py not found in file_roots:base")
    spec = importlib.util.spec_from_file_location("cluster_model", path)
    model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(model)
    return model


def inventory():
    """
    The validated inventory (what the ``cluster`` pillar holds).

    CLI Example:

    .. code-block:: bash

        salt-run cluster.inventory
    """
    path = __opts__.get("cluster_inventory")
    if not path:
        raise CommandExecutionError("set cluster_inventory in the master config (master.d/cluster.conf)")
    return _model().load_inventory(path)["cluster"]


def nodes(role=None):
    """
    Node names, ordered by IP, optionally of one role.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.nodes
        salt-run cluster.nodes role=lanservices
    """
    return _model().nodes(role, inventory())


def lanservices():
    """
    The lanservices pair: ``{"primary": ..., "secondary": ...}``.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.lanservices
    """
    return _model().lanservices(inventory())
