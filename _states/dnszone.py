"""
Manage BIND zone data whose serial changes only when the data changes.

The work is done by the ``dnszone`` execution module; this state plans, honours test mode
(``result: None``, nothing written, the candidate still checked with ``named-checkzone``),
then writes the checked zone and reloads it.

.. code-block:: yaml

    bind-zone-forward-dnszone-managed:
      dnszone.managed:
        - name: dc1.b3rry.clust0r
        - path: /etc/bind/zones/db.dc1.b3rry.clust0r
        - ns: [alpha.dc1.b3rry.clust0r., beta.dc1.b3rry.clust0r.]
        - records: {{ bind.node.zones[0].records | json }}
        - serial_servers: [127.0.0.1, 192.168.10.8]
"""

from salt.exceptions import CommandExecutionError

__virtualname__ = "dnszone"


def __virtual__():
    if "dnszone.plan" in __salt__:
        return __virtualname__
    return (False, "the dnszone execution module is not available (saltutil.sync_modules)")


def managed(
    name,
    path,
    records,
    ns,
    mname=None,
    contact=None,
    ttl=3600,
    soa=None,
    serial_servers=None,
    user="root",
    group="bind",
    mode="0644",
    reload=True,  # pylint: disable=redefined-builtin
    rndc_key=None,
    rndc_server=None,
    rndc_port=None,
):
    """
    Zone ``name`` in file ``path`` holds ``records`` (``[{"name", "type", "value"[, "ttl"]}]``)
    and one NS record per name of ``ns``. When the rendered zone differs from the file, the
    serial goes up (``YYYYMMDDnn``, above the file's and above what ``serial_servers``
    serve), the candidate is checked with ``named-checkzone`` and renamed over the file, and
    ``rndc reload <zone>`` runs (when ``reload``). The same records give the same file: no
    change, no new serial.

    name
        the zone (``dc1.b3rry.clust0r``, ``10.168.192.in-addr.arpa``)
    path
        the zone file; its directory must exist
    mname / contact / ttl / soa
        SOA primary name (default: the first NS), contact (default ``hostmaster``), default
        TTL, SOA timers ``{refresh, retry, expire, minimum}``
    serial_servers
        ``host`` or ``host#port`` whose served serial a new serial must exceed (the local
        named and the secondary: a rebuilt primary never goes back behind them)
    user / group / mode
        owner and mode of the zone file (named reads it as ``bind``)
    rndc_key / rndc_server / rndc_port
        how to reach named's control channel (rndc's defaults otherwise)
    """
    ret = {"name": name, "changes": {}, "result": True, "comment": ""}
    try:
        plan = __salt__["dnszone.plan"](
            name, path, records, ns, mname=mname, contact=contact, ttl=ttl, soa=soa,
            serial_servers=serial_servers, user=user, group=group, mode=mode,
        )
    except CommandExecutionError as exc:
        ret.update(result=False, comment=f"zone {name}: {exc}")
        return ret
    test = __opts__["test"]

    if not plan["changed"]:
        if not plan["perms"]:
            ret["comment"] = f"zone {name} is up to date (serial {plan['serial']})"
            return ret
        ret["changes"] = plan["perms"]
        if test:
            ret.update(result=None, comment=f"zone {name}: would fix the owner/mode of {path}")
            return ret
        try:
            __salt__["dnszone.fix_perms"](path, user, group, mode)
        except (CommandExecutionError, OSError) as exc:
            ret.update(result=False, changes={}, comment=f"zone {name}: cannot fix {path}: {exc}")
            return ret
        ret["comment"] = f"zone {name}: fixed the owner/mode of {path} (serial {plan['serial']} unchanged)"
        return ret

    serials = {"old": plan["old_serial"], "new": plan["serial"]}
    if test:
        # the candidate is checked in test mode too (a temporary file, nothing else touched),
        # unless BIND is not installed yet (a fresh node: the package state comes first)
        checked = bool(__salt__["cmd.which"]("named-checkzone"))
        if checked:
            try:
                __salt__["dnszone.check"](name, text=plan["text"])
            except CommandExecutionError as exc:
                ret.update(result=False, comment=f"zone {name}: the new zone data would be rejected: {exc}")
                return ret
        ret.update(
            result=None,
            changes={"serial": serials, "diff": plan["diff"]},
            comment=f"zone {name}: would write {path} with serial {plan['serial']}"
            + (f" (was {plan['old_serial']})" if plan["old_serial"] is not None else " (new zone file)")
            + (" and reload the zone" if reload else "")
            + ("" if checked else " (not checked: named-checkzone is not installed yet)"),
        )
        return ret

    try:
        __salt__["dnszone.write"](name, path, plan["text"], user=user, group=group, mode=mode)
    except (CommandExecutionError, OSError) as exc:
        ret.update(result=False, comment=f"zone {name}: {path} left as it was: {exc}")
        return ret
    ret["changes"] = {"serial": serials, "diff": plan["diff"]}
    comment = f"zone {name}: wrote {path} with serial {plan['serial']}"
    if reload:
        try:
            res = __salt__["dnszone.reload"](name, rndc_key=rndc_key, rndc_server=rndc_server, rndc_port=rndc_port)
        except CommandExecutionError as exc:
            ret.update(result=False, comment=f"{comment}, but the reload failed: {exc}")
            return ret
        ret["changes"]["reloaded"] = res["reloaded"]
        comment += f"; {'reloaded' if res['reloaded'] else 'not reloaded'}: {res['comment']}"
    ret["comment"] = comment
    return ret
