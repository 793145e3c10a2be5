"""
ISC DHCP failover states (thin: the work is in the ``dhcpd_failover`` execution module).

.. code-block:: yaml

    dhcpd-failover-partner-down:
      dhcpd_failover.partner_down:
        - name: dhcp-failover
"""

from salt.exceptions import CommandExecutionError

__virtualname__ = "dhcpd_failover"


def __virtual__():
    if "dhcpd_failover.partner_down" in __salt__:
        return __virtualname__
    return (False, "the dhcpd_failover execution module is not loaded (saltutil.sync_modules)")


def partner_down(name, force=False, config=None):
    """
    Ensure this dhcpd is in ``partner-down`` for failover peer relationship ``name``.

    Only acts when the local state is communications-interrupted or
    resolution-interrupted (the partner is unreachable), unless ``force`` is True: see
    ``dhcpd_failover.partner_down``. Put the survivor into partner-down only when the
    partner is known to be down and will not restart on its own.

    name
        The failover peer name of dhcpd.conf (``failover peer "NAME"``).
    force
        Also act from other states (dangerous: address conflicts are likely).
    config
        The dhcpd configuration to read the OMAPI settings from (default /etc/dhcp/dhcpd.conf).
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    try:
        current = __salt__["dhcpd_failover.peer_state"](name, config=config)
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret
    old = current["local_state"]
    if old == "partner-down":
        ret.update(result=True, comment=f"DHCP failover peer {name} is already in partner-down")
        return ret
    interrupted = __salt__["dhcpd_failover.interrupted_states"]()
    if old not in interrupted and not force:
        ret["comment"] = (
            f"DHCP failover peer {name} is in {old} (partner {current['partner_state']}): "
            f"partner-down is only set from {' or '.join(interrupted)} (force overrides)"
        )
        return ret
    change = {"local_state": {"old": old, "new": "partner-down"}}
    if __opts__["test"]:
        ret.update(result=None, changes=change, comment=f"would move {name} from {old} to partner-down")
        return ret
    try:
        out = __salt__["dhcpd_failover.partner_down"](name, force=force, config=config)
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret
    ret.update(
        result=True,
        changes={"local_state": {"old": out["old"], "new": out["new"]}} if out["changed"] else {},
        comment=f"moved {name} from {out['old']} to {out['new']}",
    )
    return ret
