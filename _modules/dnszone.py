"""
BIND zone data with sane serials.

The zone file is rendered from a list of records (the cluster model's ``cluster.dns_records``
and ``cluster.reverse_records``). Its SOA serial changes only when the rendered zone changes:
the zone is rendered again with the serial it already carries and compared with the file, so
a second run with the same records finds nothing to do, and a hand edit is put back (with a
new serial, since the served data changed). A new serial has the form ``YYYYMMDDnn`` (UTC) and
is always greater than the file's serial and than the serials the given servers still serve
(a rebuilt primary never goes back behind its secondary).

A candidate zone is checked with ``named-checkzone`` in the zone directory and only then
renamed over the serving file (atomically), so a bad record never replaces a serving zone.
Then ``rndc reload <zone>``.

Salt ships ``dnsutil.serial`` (a serial kept in a grain, bumped on request) and no zone
renderer; this module exists because the serial must follow the data, not the runs.

CLI Example:

.. code-block:: bash

    salt-call dnszone.status
    salt-call dnszone.serial /etc/bind/zones/db.dc1.b3rry.clust0r
"""

import difflib
import grp
import logging
import os
import pwd
import re
import tempfile
import time

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "dnszone"
__func_alias__ = {"reload_": "reload"}

# record types the renderer knows; a type outside this list is a mistake in the data
TYPES = ("A", "AAAA", "CNAME", "NS", "PTR", "MX", "TXT", "SRV")
SINGLE_VALUE = {"A": "address", "AAAA": "address", "CNAME": "name", "NS": "name", "PTR": "name"}
# one token of an owner name or of a record value: no blanks, comments, parentheses, quotes
_TOKEN = re.compile(r'^[^\s;()"\\]+$')
SOA_DEFAULTS = {"refresh": 3600, "retry": 600, "expire": 1209600, "minimum": 300}
MAX_SERIAL = 2**32 - 1


def __virtual__():
    # Rendering and planning need no BIND tools; check/reload/status say which one is missing.
    return __virtualname__


# --------------------------------------------------------------------------------------
# Serials
# --------------------------------------------------------------------------------------


def next_serial(current=None, today=None):
    """
    The serial that follows ``current``: ``<today>00`` (``YYYYMMDD00``, UTC) when that is
    greater, else ``current + 1``. Never smaller than or equal to ``current``.

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.next_serial 2024010105
    """
    if today is None:
        today = time.strftime("%Y%m%d", time.gmtime())
    today = str(today)
    if not re.fullmatch(r"\d{8}", today):
        raise CommandExecutionError(f"today must be YYYYMMDD, got {today!r}")
    base = int(today) * 100
    if current is None:
        return base
    current = int(current)
    if current < 0 or current > MAX_SERIAL:
        raise CommandExecutionError(f"serial {current} is outside 0..{MAX_SERIAL}")
    if current < base:
        return base
    if current + 1 > MAX_SERIAL:
        raise CommandExecutionError(
            f"serial {current} cannot be increased: reset the zone's serial by hand (RFC 1982)"
        )
    return current + 1


def _strip_comments(text):
    """The zone text without comments (``;`` to the end of the line, outside quotes)."""
    out = []
    for line in text.splitlines():
        quoted = False
        keep = []
        for char in line:
            if char == '"':
                quoted = not quoted
            elif char == ";" and not quoted:
                break
            keep.append(char)
        out.append("".join(keep))
    return "\n".join(out)


def parse_serial(text):
    """
    The SOA serial of a zone file's text, or None when it has no (readable) SOA record.

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.parse_serial "$(cat db.example)"
    """
    tokens = [t for t in re.split(r"[\s()]+", _strip_comments(text or "")) if t]
    for i, token in enumerate(tokens):
        if token.upper() == "SOA" and len(tokens) > i + 3:
            try:
                return int(tokens[i + 3])
            except ValueError:
                return None
    return None


def serial(path):
    """
    The SOA serial of the zone file at ``path`` (None when the file is missing or has none).

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.serial /etc/bind/zones/db.dc1.b3rry.clust0r
    """
    try:
        with open(path, encoding="utf-8") as handle:
            return parse_serial(handle.read())
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------


def _fqdn(name, zone):
    return name if name.endswith(".") else f"{name}.{zone}."


def _token(where, value):
    if not isinstance(value, str) or not _TOKEN.match(value):
        raise CommandExecutionError(
            f"{where}: {value!r} is not usable in a zone file (empty, or holds a blank, ';', '(', ')', quote or backslash)"
        )
    return value


def _record_line(index, record):
    where = f"record {index}"
    if not isinstance(record, dict):
        raise CommandExecutionError(f"{where}: must be a mapping with name, type, value; got {record!r}")
    unknown = set(record) - {"name", "type", "value", "ttl"}
    if unknown:
        raise CommandExecutionError(f"{where}: unknown keys {sorted(unknown)} (allowed: name, type, value, ttl)")
    for key in ("name", "type", "value"):
        if key not in record:
            raise CommandExecutionError(f"{where}: missing {key!r}")
    owner = _token(f"{where}.name", str(record["name"]))
    rtype = str(record["type"]).upper()
    if rtype not in TYPES:
        raise CommandExecutionError(f"{where}.type: {record['type']!r} is not one of {', '.join(TYPES)}")
    value = record["value"]
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise CommandExecutionError(f"{where}.value: a value is one line")
    if rtype == "TXT":
        if not isinstance(value, str):
            raise CommandExecutionError(f"{where}.value: a TXT value is one line of text")
        value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    else:
        parts = str(value).split()
        if not parts:
            raise CommandExecutionError(f"{where}.value: empty")
        if rtype in SINGLE_VALUE and len(parts) != 1:
            raise CommandExecutionError(f"{where}.value: a {rtype} value is one {SINGLE_VALUE[rtype]}, got {value!r}")
        value = " ".join(_token(f"{where}.value", part) for part in parts)
    ttl = record.get("ttl")
    if ttl is not None and (not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= 2**31 - 1):
        raise CommandExecutionError(f"{where}.ttl: {ttl!r} is not a TTL in seconds")
    ttl_field = f"{ttl} " if ttl is not None else ""
    return f"{owner:<23} {ttl_field}IN {rtype:<5} {value}"


def render(zone, records, serial, ns, mname=None, contact=None, ttl=3600, soa=None):
    """
    The text of zone ``zone``: SOA (``mname``, ``contact``, ``serial``, timers from ``soa``),
    one NS record per name of ``ns``, then ``records`` in their order. Each record is
    ``{"name", "type", "value"[, "ttl"]}``; names are relative to the zone unless they end
    with a dot. Deterministic: the same arguments give the same text.

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.render example.test '[{"name": "www", "type": "A", "value": "10.0.0.5"}]' \\
            2024010100 '["ns1.example.test."]'
    """
    zone = str(zone).rstrip(".").lower()
    if not zone:
        raise CommandExecutionError("zone: empty name")
    if isinstance(ns, str):
        ns = [ns]
    if not ns:
        raise CommandExecutionError(f"zone {zone}: at least one NS name is needed")
    timers = dict(SOA_DEFAULTS)
    unknown = set(soa or {}) - set(SOA_DEFAULTS)
    if unknown:
        raise CommandExecutionError(f"soa: unknown keys {sorted(unknown)} (allowed: {', '.join(SOA_DEFAULTS)})")
    timers.update({k: int(v) for k, v in (soa or {}).items()})
    serial = int(serial)
    if not 0 <= serial <= MAX_SERIAL:
        raise CommandExecutionError(f"serial {serial} is outside 0..{MAX_SERIAL}")
    mname = _fqdn(_token("mname", mname or ns[0]), zone)
    contact = _fqdn(_token("contact", contact or "hostmaster"), zone)
    lines = [
        f"; zone {zone}: managed by Salt (dnszone.managed) from the cluster inventory.",
        "; Do not edit: a change here is replaced, with a new serial, at the next state run.",
        f"$ORIGIN {zone}.",
        f"$TTL {int(ttl)}",
        f"@{'':<22} IN SOA   {mname} {contact} (",
        f"{'':<24}{serial:<11} ; serial",
        f"{'':<24}{timers['refresh']:<11} ; refresh",
        f"{'':<24}{timers['retry']:<11} ; retry",
        f"{'':<24}{timers['expire']:<11} ; expire",
        f"{'':<24}{timers['minimum']:<11} ; negative caching TTL",
        f"{'':<24})",
    ]
    lines += [f"{'@':<23} IN NS    {_fqdn(_token('ns', name), zone)}" for name in ns]
    lines += [_record_line(i, record) for i, record in enumerate(records or [])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# Planning, checking, writing, reloading
# --------------------------------------------------------------------------------------


def _run(cmd, what):
    binary = cmd[0]
    if not os.path.isabs(binary) and not __salt__["cmd.which"](binary):
        raise CommandExecutionError(f"{binary} not found: {what} needs it (Debian package bind9-utils)")
    return __salt__["cmd.run_all"](cmd, python_shell=False, ignore_retcode=True, output_loglevel="debug")


def served_serial(zone, server, port=53, timeout=1):
    """
    The SOA serial that DNS server ``server`` serves for ``zone`` (None when it does not
    answer or does not have the zone).

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.served_serial dc1.b3rry.clust0r 192.168.10.8
    """
    res = _run(
        ["dig", "+short", "+norecurse", f"+time={int(timeout)}", "+tries=1", "-p", str(port),
         f"@{server}", str(zone).rstrip("."), "SOA"],
        "served_serial",
    )
    fields = res["stdout"].split() if res["retcode"] == 0 else []
    if len(fields) >= 3 and fields[2].isdigit():
        return int(fields[2])
    return None


def _perms_changes(path, user, group, mode):
    """What chmod/chown would change on ``path`` (empty when right, or when it is missing)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {}
    changes = {}
    if mode is not None and (st.st_mode & 0o7777) != int(str(mode), 8):
        changes["mode"] = {"old": f"{st.st_mode & 0o7777:04o}", "new": f"{int(str(mode), 8):04o}"}
    if user is not None and st.st_uid != _uid(user):
        changes["user"] = {"old": _name(pwd.getpwuid, st.st_uid), "new": user}
    if group is not None and st.st_gid != _gid(group):
        changes["group"] = {"old": _name(grp.getgrgid, st.st_gid), "new": group}
    return changes


def _name(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def _uid(user):
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError as exc:
        raise CommandExecutionError(f"user {user!r} does not exist (is bind9 installed?)") from exc


def _gid(group):
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise CommandExecutionError(f"group {group!r} does not exist (is bind9 installed?)") from exc


def plan(
    zone,
    path,
    records,
    ns,
    mname=None,
    contact=None,
    ttl=3600,
    soa=None,
    serial_servers=None,
    today=None,
    user=None,
    group=None,
    mode=None,
):
    """
    What writing zone ``zone`` to ``path`` would do, without doing it.

    Returns ``changed`` (the zone data differs), ``old_serial``, ``serial`` (the serial the
    file would carry), ``text``, ``diff`` and ``perms`` (owner/mode fixes). When the data
    changed, the new serial is above the file's serial and above what each of
    ``serial_servers`` (``"host"`` or ``"host#port"``) serves.

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.plan dc1.b3rry.clust0r /etc/bind/zones/db.dc1.b3rry.clust0r \\
            "$(salt-call --out=json cluster.dns_records | jq -c .local)" '["alpha.dc1.b3rry.clust0r."]'
    """
    zone = str(zone).rstrip(".").lower()
    try:
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
    except FileNotFoundError:
        current = None
    old_serial = parse_serial(current) if current is not None else None
    args = {"mname": mname, "contact": contact, "ttl": ttl, "soa": soa}
    if old_serial is not None and render(zone, records, old_serial, ns, **args) == current:
        return {
            "zone": zone, "path": path, "changed": False, "old_serial": old_serial, "serial": old_serial,
            "text": current, "diff": "", "perms": _perms_changes(path, user, group, mode),
        }
    floor = [old_serial] if old_serial is not None else []
    for server in serial_servers or []:
        host, _, port = str(server).partition("#")
        served = served_serial(zone, host, int(port or 53))
        log.debug("zone %s: %s serves serial %s", zone, server, served)
        if served is not None:
            floor.append(served)
    new_serial = next_serial(max(floor) if floor else None, today)
    text = render(zone, records, new_serial, ns, **args)
    diff = "".join(
        difflib.unified_diff(
            (current or "").splitlines(True), text.splitlines(True), f"{path} (serving)", f"{path} (new)"
        )
    )
    return {
        "zone": zone, "path": path, "changed": True, "old_serial": old_serial, "serial": new_serial,
        "text": text, "diff": diff, "perms": {},
    }


def check(zone, path=None, text=None):
    """
    Check a zone with ``named-checkzone`` (a file at ``path``, or ``text`` through a temporary
    file). Returns its output; raises with that output when the zone is rejected.

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.check dc1.b3rry.clust0r /etc/bind/zones/db.dc1.b3rry.clust0r
    """
    zone = str(zone).rstrip(".").lower()
    if (path is None) == (text is None):
        raise CommandExecutionError("check needs exactly one of path or text")
    tmp = None
    if text is not None:
        fd, tmp = tempfile.mkstemp(prefix=f"dnszone-{zone}.", suffix=".db")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        path = tmp
    try:
        # -k fail: bad host names are errors; -i local: integrity checks without lookups
        res = _run(["named-checkzone", "-k", "fail", "-i", "local", zone, path], "the zone check")
    finally:
        if tmp:
            os.unlink(tmp)
    output = "\n".join(s for s in (res["stdout"], res["stderr"]) if s).strip()
    if res["retcode"] != 0:
        raise CommandExecutionError(f"named-checkzone rejected zone {zone}: {output}")
    return output


def write(zone, path, text, user="root", group="bind", mode="0644"):
    """
    Replace the zone file at ``path`` with ``text``, only if ``named-checkzone`` accepts it:
    the candidate is written beside the zone, checked, then renamed over it (atomic). A
    rejected candidate is removed and the serving file stays as it was.

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.write dc1.b3rry.clust0r /etc/bind/zones/db.dc1.b3rry.clust0r "$(cat candidate)"
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CommandExecutionError(f"zone directory {directory} does not exist")
    uid, gid = _uid(user), _gid(group)
    fd, candidate = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".candidate")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(candidate, int(str(mode), 8))
        os.chown(candidate, uid, gid)
        output = check(zone, path=candidate)
        os.replace(candidate, path)
    except BaseException:
        if os.path.exists(candidate):
            os.unlink(candidate)
        raise
    return output


def fix_perms(path, user="root", group="bind", mode="0644"):
    """
    Put the owner, group and mode of ``path`` right; returns what changed.

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.fix_perms /etc/bind/zones/db.dc1.b3rry.clust0r
    """
    changes = _perms_changes(path, user, group, mode)
    if "user" in changes or "group" in changes:
        os.chown(path, _uid(user) if user is not None else -1, _gid(group) if group is not None else -1)
    if "mode" in changes:
        os.chmod(path, int(str(mode), 8))
    return changes


def _rndc(args, rndc_key=None, rndc_server=None, rndc_port=None):
    cmd = ["rndc"]
    if rndc_key:
        cmd += ["-k", str(rndc_key)]
    if rndc_server:
        cmd += ["-s", str(rndc_server)]
    if rndc_port:
        cmd += ["-p", str(rndc_port)]
    return _run(cmd + list(args), "rndc")


def _named_down(res):
    text = (res["stderr"] + res["stdout"]).lower()
    return "connection refused" in text or "connect failed" in text


def reload_(zone, rndc_key=None, rndc_server=None, rndc_port=None):
    """
    ``rndc reload <zone>``. Returns ``{"reloaded": bool, "comment": str}``: not reloaded
    when named is not running (it loads the zone when it starts) or does not have the zone
    in its running configuration yet (it loads it at its next reconfiguration). Any other
    rndc failure raises.

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.reload dc1.b3rry.clust0r
    """
    zone = str(zone).rstrip(".").lower()
    res = _rndc(["reload", zone], rndc_key, rndc_server, rndc_port)
    output = "\n".join(s for s in (res["stdout"], res["stderr"]) if s).strip()
    if res["retcode"] == 0:
        return {"reloaded": True, "comment": output}
    if _named_down(res):
        return {"reloaded": False, "comment": f"named is not running ({output}): it loads the zone when it starts"}
    if "not found" in output or "no matching zone" in output:
        return {
            "reloaded": False,
            "comment": f"named does not serve {zone} yet ({output}): it loads it at its next reconfiguration",
        }
    raise CommandExecutionError(f"rndc reload {zone} failed: {output}")


def manage(zone, path, records, ns, user="root", group="bind", mode="0644", reload_zone=True,
           rndc_key=None, rndc_server=None, rndc_port=None, **kwargs):
    """
    Plan, check, write and reload in one call (what ``dnszone.managed`` does outside test
    mode). Returns the plan plus ``reload`` (the result of :func:`reload_`, or None).
    ``kwargs`` are those of :func:`plan` (``mname``, ``contact``, ``ttl``, ``soa``,
    ``serial_servers``, ``today``).

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.manage example.test /etc/bind/zones/db.example.test \\
            '[{"name": "www", "type": "A", "value": "10.0.0.5"}]' '["ns1.example.test."]'
    """
    kwargs = {k: v for k, v in kwargs.items() if not k.startswith("__")}
    result = plan(zone, path, records, ns, user=user, group=group, mode=mode, **kwargs)
    result["reload"] = None
    if result["changed"]:
        write(zone, path, result["text"], user=user, group=group, mode=mode)
        if reload_zone:
            result["reload"] = reload_(zone, rndc_key, rndc_server, rndc_port)
    elif result["perms"]:
        fix_perms(path, user, group, mode)
    return result


# --------------------------------------------------------------------------------------
# Status
# --------------------------------------------------------------------------------------


def _default_zones():
    """The zones this lanservices node serves (its ``node:dns:zones`` pillar: forward, reverse)."""
    try:
        return [zone["name"] for zone in __pillar__["node"]["dns"]["zones"]]
    except (KeyError, TypeError) as exc:
        raise CommandExecutionError("no zones given and no 'node:dns' pillar to take them from") from exc


def parse_zonestatus(text):
    """
    The fields of ``rndc zonestatus`` output that matter: ``serial`` (int), ``type``,
    ``loaded`` (the "last loaded" time), ``expires``/``refresh`` when present (secondaries).

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.parse_zonestatus "$(rndc zonestatus example.test)"
    """
    fields = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip().lower()] = value.strip()
    out = {"serial": int(fields["serial"]) if fields.get("serial", "").isdigit() else None,
           "type": fields.get("type"), "loaded": fields.get("last loaded")}
    for key, name in (("expires", "expires"), ("next refresh", "refresh")):
        if key in fields:
            out[name] = fields[key]
    return out


def status(zones=None, rndc_key=None, rndc_server=None, rndc_port=None):
    """
    DNS health on this server: whether named answers rndc, and per zone its type and the
    serial it serves (``rndc zonestatus``). ``zones`` defaults to the cluster's forward and
    reverse zones.

    Returns ``{"running": bool, "zones": {zone: {"serial", "type", "loaded"[, "error"]}}}``.

    CLI Example:

    .. code-block:: bash

        salt-call dnszone.status
        salt '*' dnszone.status zones='[dc1.b3rry.clust0r]'
    """
    if zones is None:
        zones = _default_zones()
    elif isinstance(zones, str):
        zones = [z for z in zones.split(",") if z]
    out = {"running": True, "zones": {}}
    for zone in zones:
        zone = str(zone).rstrip(".").lower()
        res = _rndc(["zonestatus", zone], rndc_key, rndc_server, rndc_port)
        if res["retcode"] == 0:
            out["zones"][zone] = parse_zonestatus(res["stdout"])
            continue
        if _named_down(res):
            out["running"] = False
        error = "\n".join(s for s in (res["stdout"], res["stderr"]) if s).strip()
        out["zones"][zone] = {"serial": None, "type": None, "loaded": None, "error": error}
    return out
