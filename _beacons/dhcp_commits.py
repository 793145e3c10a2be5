"""
Beacon: the leases the lanservices pair's dhcpd gave to nodes of the inventory, one event per
node, so that the master can rebuild a re-flashed node with no command (zero-touch rebuild,
``rebuild: auto`` in the inventory).

salt/dhcpd's commit hook writes ``<spool>/<node>`` ("<address> <epoch seconds>") for every
such lease; this beacon reads each record once, removes it, and fires
``salt/beacon/<minion>/dhcp_commits/<node>`` with ``node``, ``address`` and ``committed``.

.. code-block:: yaml

    beacons:
      dhcp_commits:
        - spool: /run/cluster-dhcp-commits
        - interval: 2
"""

import logging
import os

log = logging.getLogger(__name__)

__virtualname__ = "dhcp_commits"

SPOOL = "/run/cluster-dhcp-commits"


def __virtual__():
    return __virtualname__


def _config(config):
    """Beacon settings come as a list of one-key mappings."""
    out = {}
    for item in config if isinstance(config, list) else [config]:
        if isinstance(item, dict):
            out.update(item)
    return out


def validate(config):
    """The configuration must be a list; ``spool`` an absolute path."""
    if not isinstance(config, list):
        return False, "dhcp_commits: the configuration must be a list"
    spool = _config(config).get("spool", SPOOL)
    if not isinstance(spool, str) or not os.path.isabs(spool):
        return False, f"dhcp_commits: spool must be an absolute path, got {spool!r}"
    return True, "valid"


def read_spool(spool):
    """The records in ``spool`` (each removed once read), oldest name first: ``[{"tag",
    "node", "address", "committed"}]``. Names starting with a dot are the hook's files in
    the making."""
    try:
        names = sorted(os.listdir(spool))
    except FileNotFoundError:
        return []
    events = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(spool, name)
        try:
            with open(path, encoding="ascii") as handle:
                fields = handle.read().split()
            os.unlink(path)
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("dhcp_commits: cannot read %s: %s", path, exc)
            continue
        committed = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
        events.append({"tag": name, "node": name, "address": fields[0] if fields else "", "committed": committed})
    return events


def beacon(config):
    """One event per node whose lease dhcpd recorded since the last run."""
    return read_spool(_config(config).get("spool", SPOOL))
