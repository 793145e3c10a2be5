"""
ISC DHCP failover: each peer's configuration (derived from the cluster model) and the
run-time failover state, read and changed over OMAPI.

The lanservices pair runs ``isc-dhcp-server`` as a failover pair: the primary and the
secondary are the node pillar's ``pair_role`` (the cluster model: the lower IP is the
primary). :func:`peer_config` computes what ``salt/dhcpd/files/dhcpd.conf.jinja`` prints for
one of them.

At run time the failover state of each peer relationship is an OMAPI object
(``failover-state``, see dhcpd(8)). This module talks to dhcpd's OMAPI listener with
``omshell`` (shipped by ``isc-dhcp-server`` in Debian bookworm), authenticated with the key
of the live configuration; the secret goes to omshell on stdin, never on a command line.
Everything it needs (OMAPI port, key name, algorithm and secret, the peer names) is read from
the configuration dhcpd runs with (``/etc/dhcp/dhcpd.conf`` and the files it includes), so
the answer is about what is really configured.

States (dhcpd(8)): startup, normal, communications-interrupted, partner-down,
potential-conflict, recover, paused, shutdown, recover-done, resolution-interrupted,
conflict-done, recover-wait.

Note: dhcpd 4.4 exports ``local-address``/``partner-address`` of the failover-state object
garbled (not the configured addresses), so they are not reported.

CLI Example:

.. code-block:: bash

    salt-call dhcpd_failover.status
"""

import datetime
import ipaddress
import logging
import os
import re

import salt.utils.path
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "dhcpd_failover"

DEFAULT_CONFIG = "/etc/dhcp/dhcpd.conf"

# local-state / partner-state codes of the failover-state object (dhcpd(8))
STATES = {
    0: "unknown-state",
    1: "startup",
    2: "normal",
    3: "communications-interrupted",
    4: "partner-down",
    5: "potential-conflict",
    6: "recover",
    7: "paused",
    8: "shutdown",
    9: "recover-done",
    10: "resolution-interrupted",
    11: "conflict-done",
    254: "recover-wait",
}
STATE_CODES = {name: code for code, name in STATES.items()}

# From these states the partner is known to be unreachable: moving to partner-down is what
# the operator (or the rebuild orchestration) does once the partner is known to be down.
INTERRUPTED = ("communications-interrupted", "resolution-interrupted")

# integer attributes of the failover-state object (4-byte big-endian in omshell's output)
_INTEGERS = {
    "local-state", "partner-state", "local-stos", "partner-stos", "hierarchy", "mclt",
    "local-port", "partner-port", "max-outstanding-updates", "load-balance-max-secs",
    "max-response-delay", "cur-unacked-updates", "last-packet-sent",
    "last-timestamp-received", "skew",
}
_HEX = re.compile(r"^[0-9a-f]{2}(?::[0-9a-f]{2})*$")
_ATTR = re.compile(r"^([a-z][a-z0-9-]*) = (.*)$")
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")


def __virtual__():
    # Always loadable: peer_config() renders the configuration before the package exists.
    return __virtualname__


# --------------------------------------------------------------------------------------
# Configuration data from the cluster model (the node and cluster pillar)
# --------------------------------------------------------------------------------------


def _pillar(key, value=None):
    """``value``, else this minion's pillar ``key`` (the cluster ext_pillar gives ``cluster``
    and ``node``)."""
    if value is not None:
        return value
    try:
        return __pillar__[key]
    except (NameError, KeyError) as exc:
        raise CommandExecutionError(
            f"no {key!r} pillar: is this minion in pillar/cluster/inventory.yaml, and does the "
            "pillar render (salt-call pillar.items)?"
        ) from exc


def peer_config(params=None, boot_file=None, node=None, inventory=None):
    """
    What the dhcpd.conf of this failover peer holds, derived from its ``node`` pillar (the
    cluster model's view of the node: pair role, peer, DHCP reservations), the ``cluster``
    pillar (``inventory``: the network plan) and ``params`` (the ``dhcpd`` map:
    salt/dhcpd/defaults.yaml merged with pillar overrides): the failover section for its role,
    the subnet and its options (the VIP first, then both servers as DNS; both servers as NTP;
    the domain; ``next-server`` = this server, ``filename`` = ``boot_file`` for network boot),
    the dynamic pool and a fixed address for every inventory node by MAC.

    CLI Example:

    .. code-block:: bash

        salt-call dhcpd_failover.peer_config params='{"failover": {...}}' boot_file=pxelinux.0
    """
    if not isinstance(params, dict) or "failover" not in params:
        raise CommandExecutionError(
            "params must be the dhcpd map (salt/dhcpd/map.jinja), with a 'failover' section"
        )
    node = _pillar("node", node)
    inv = _pillar("cluster", inventory)
    if isinstance(inv, dict) and set(inv) == {"cluster"}:
        inv = inv["cluster"]
    pair = {role: member["name"] for role, member in node["pair"].items()}
    role = node["pair_role"]
    if role not in pair:
        raise CommandExecutionError(
            f"{node['name']!r} is not a lanservices node: the DHCP failover pair is "
            f"{pair['primary']} (primary) and {pair['secondary']} (secondary)"
        )
    other_role = "secondary" if role == "primary" else "primary"
    ips = {role: node["ip"], other_role: node["peer"]["ip"]}

    fo = params["failover"]
    ports = {"primary": int(fo["primary_port"]), "secondary": int(fo["secondary_port"])}
    split = int(fo["split"])
    if not 0 <= split <= 256:
        raise CommandExecutionError(f"dhcpd failover split {split} is outside 0..256")
    if int(fo["mclt"]) <= 0:
        raise CommandExecutionError("dhcpd failover mclt must be a positive number of seconds")
    failover = {
        "name": fo["name"],
        "role": role,
        "address": ips[role],
        "port": ports[role],
        "peer_address": ips[other_role],
        "peer_port": ports[other_role],
        "max_response_delay": int(fo["max_response_delay"]),
        "max_unacked_updates": int(fo["max_unacked_updates"]),
        "load_balance_max_seconds": int(fo["load_balance_max_seconds"]),
        "auto_partner_down": int(fo.get("auto_partner_down") or 0),
    }
    if role == "primary":  # only the primary may carry mclt and split
        failover.update(mclt=int(fo["mclt"]), split=split)

    net = inv["network"]
    subnet = ipaddress.IPv4Network(net["subnet"])
    return {
        "node": node["name"],
        "role": role,
        "domain": inv["domain"],
        "subnet": str(subnet.network_address),
        "netmask": str(subnet.netmask),
        "broadcast": str(subnet.broadcast_address),
        "routers": net["gateway"],
        "dns_servers": [net["vip"], ips["primary"], ips["secondary"]],
        "ntp_servers": [ips["primary"], ips["secondary"]],
        "next_server": ips[role],
        "filename": boot_file,
        "pool": {"start": net["dhcp_pool"]["start"], "end": net["dhcp_pool"]["end"]},
        "failover": failover,
        "reservations": node["dhcp"]["reservations"],
    }


# --------------------------------------------------------------------------------------
# The live configuration: OMAPI settings and peer names
# --------------------------------------------------------------------------------------


def _strip_comments(text):
    """Drop ``# ...`` comments that are not inside double quotes."""
    out = []
    for line in text.splitlines():
        quoted = False
        for i, char in enumerate(line):
            if char == '"':
                quoted = not quoted
            elif char == "#" and not quoted:
                line = line[:i]
                break
        out.append(line)
    return "\n".join(out)


def _read_config(path, depth=0):
    try:
        with open(path, encoding="utf-8") as handle:
            text = _strip_comments(handle.read())
    except OSError as exc:
        raise CommandExecutionError(
            f"cannot read the dhcpd configuration {path}: {exc.strerror} "
            "(is the dhcpd state applied, and is this run as root?)"
        ) from exc
    if depth < 4:
        base = os.path.dirname(path)
        for inc in re.findall(r'^\s*include\s+"([^"]+)"\s*;', text, re.M):
            text += "\n" + _read_config(os.path.join(base, inc), depth + 1)
    return text


def parse_config(text):
    """
    The OMAPI settings and failover peer names of a dhcpd configuration text:
    ``{"omapi_port", "key_name", "algorithm", "secret", "peers": [...]}`` (missing
    statements give None).

    CLI Example:

    .. code-block:: bash

        salt-call dhcpd_failover.parse_config "$(cat /etc/dhcp/dhcpd.conf)"
    """
    text = _strip_comments(text)
    port = re.search(r"^\s*omapi-port\s+(\d+)\s*;", text, re.M)
    key_name = re.search(r'^\s*omapi-key\s+"?([^";\s]+)"?\s*;', text, re.M)
    keys = {}
    for kname, body in re.findall(r'^\s*key\s+"?([^"{\s]+)"?\s*\{([^}]*)\}', text, re.M):
        algorithm = re.search(r"algorithm\s+([^;\s]+)\s*;", body)
        secret = re.search(r'secret\s+"?([^";\s]+)"?\s*;', body)
        keys[kname] = {
            "algorithm": algorithm.group(1).lower() if algorithm else "hmac-md5",
            "secret": secret.group(1) if secret else None,
        }
    chosen = keys.get(key_name.group(1), {}) if key_name else {}
    return {
        "omapi_port": int(port.group(1)) if port else None,
        "key_name": key_name.group(1) if key_name else None,
        "algorithm": chosen.get("algorithm"),
        "secret": chosen.get("secret"),
        "peers": re.findall(r'^\s*failover\s+peer\s+"([^"]+)"\s*\{', text, re.M),
    }


def _settings(config=None):
    path = config or DEFAULT_CONFIG
    settings = parse_config(_read_config(path))
    if settings["omapi_port"] is None:
        raise CommandExecutionError(f"OMAPI is not enabled in {path}: no 'omapi-port' statement")
    if not settings["key_name"] or not settings["secret"]:
        raise CommandExecutionError(
            f"{path} has no usable OMAPI key ('omapi-key NAME;' and 'key NAME {{ algorithm ...; "
            "secret ...; }')"
        )
    if not _TOKEN.match(settings["key_name"]) or not _BASE64.match(settings["secret"]):
        raise CommandExecutionError(f"{path}: the OMAPI key name or secret is malformed")
    settings["path"] = path
    return settings


def _peer_name(name, settings):
    if name is None:
        if len(settings["peers"]) != 1:
            raise CommandExecutionError(
                f"{settings['path']} declares {len(settings['peers'])} failover peers "
                f"({', '.join(settings['peers']) or 'none'}): name one"
            )
        return settings["peers"][0]
    if name not in settings["peers"]:
        raise CommandExecutionError(
            f"no failover peer {name!r} in {settings['path']} "
            f"(declared: {', '.join(settings['peers']) or 'none'})"
        )
    return name


# --------------------------------------------------------------------------------------
# omshell: run and parse
# --------------------------------------------------------------------------------------


def _value(attr, raw):
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        return raw[1:-1]
    if _HEX.match(raw):
        data = bytes(int(b, 16) for b in raw.split(":"))
        return int.from_bytes(data, "big") if attr in _INTEGERS else raw
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    return raw


def parse_omshell(text):
    """
    Parse omshell's output into ``{"objects": [{attribute: value}, ...], "errors": [...]}``:
    one mapping per object printed (integers decoded), and the error lines omshell printed
    (``dhcpctl_connect: ...``, ``can't open object: ...``, ``not connected.``, ...).

    CLI Example:

    .. code-block:: bash

        salt-call dhcpd_failover.parse_omshell "$(omshell < commands)"
    """
    objects, errors = [], []
    current = None
    for line in text.splitlines():
        line = re.sub(r"^(?:>\s?)+", "", line).strip()
        if not line:
            continue
        if line.startswith("obj: "):
            current = {} if line != "obj: <null>" else None
            if current is not None:
                objects.append(current)
            continue
        match = _ATTR.match(line)
        if match and current is not None:
            current[match.group(1)] = _value(match.group(1), match.group(2))
        else:
            errors.append(line)
    return {"objects": objects, "errors": errors}


def _stos(value):
    if not isinstance(value, int) or value <= 0:
        return None
    return datetime.datetime.fromtimestamp(value, datetime.UTC).isoformat()


def failover_state(obj):
    """
    The report of one ``failover-state`` object as parsed by :func:`parse_omshell`:
    state names instead of codes, the role, state-change times (UTC, ISO 8601).

    CLI Example:

    .. code-block:: bash

        salt-call dhcpd_failover.failover_state '{"name": "dhcp-failover", "local-state": 2}'
    """

    def state(code):
        return STATES.get(code, f"unknown-{code}") if isinstance(code, int) else None

    hierarchy = obj.get("hierarchy")
    return {
        "name": obj.get("name"),
        "role": {0: "primary", 1: "secondary"}.get(hierarchy),
        "local_state": state(obj.get("local-state")),
        "partner_state": state(obj.get("partner-state")),
        "local_state_since": _stos(obj.get("local-stos")),
        "partner_state_since": _stos(obj.get("partner-stos")),
        "local_port": obj.get("local-port"),
        "partner_port": obj.get("partner-port"),
        "mclt": obj.get("mclt"),
        "max_response_delay": obj.get("max-response-delay"),
        "load_balance_max_seconds": obj.get("load-balance-max-secs"),
    }


def _omshell(settings, name, commands, host, timeout):
    if not salt.utils.path.which("omshell"):
        raise CommandExecutionError("omshell is not installed: it ships with isc-dhcp-server")
    script = "\n".join(
        [
            f"server {host}",
            f"port {settings['omapi_port']}",
            f"key-algorithm {settings['algorithm']}",
            f"key {settings['key_name']} {settings['secret']}",
            "connect",
            "new failover-state",
            f'set name = "{name}"',
            "open",
            *commands,
        ]
    ) + "\n"
    res = __salt__["cmd.run_all"](
        ["omshell"], stdin=script, python_shell=False, ignore_retcode=True,
        timeout=timeout, output_loglevel="trace",
    )
    parsed = parse_omshell(res.get("stdout", ""))
    where = f"dhcpd OMAPI on {host}:{settings['omapi_port']}"
    for error in parsed["errors"]:
        if error.startswith("dhcpctl_connect") or error == "not connected.":
            raise CommandExecutionError(
                f"cannot connect to {where} ({error}): is isc-dhcp-server running? "
                "(systemctl status isc-dhcp-server)"
            )
        if "connection reset by peer" in error or "invalid key" in error:
            raise CommandExecutionError(
                f"{where} refused the key {settings['key_name']!r} ({error}): the key in "
                f"{settings['path']} differs from the one dhcpd runs with (restart dhcpd?)"
            )
        if "not found" in error:
            raise CommandExecutionError(f"{where} has no failover peer {name!r} ({error})")
        raise CommandExecutionError(f"{where}: {error}")
    if res.get("retcode") not in (0, None) or not parsed["objects"]:
        raise CommandExecutionError(
            f"omshell failed against {where} (exit {res.get('retcode')}): {res.get('stderr', '').strip()}"
        )
    return parsed["objects"][-1]


# --------------------------------------------------------------------------------------
# Public run-time functions
# --------------------------------------------------------------------------------------


def interrupted_states():
    """
    The local states from which :func:`partner_down` acts without ``force`` (the partner
    is unreachable).

    CLI Example:

    .. code-block:: bash

        salt-call dhcpd_failover.interrupted_states
    """
    return list(INTERRUPTED)


def peer_state(name=None, config=None, host="127.0.0.1", timeout=10):
    """
    The failover state of peer relationship ``name`` (default: the only one declared) as
    this dhcpd sees it: ``local_state``, ``partner_state`` (normal,
    communications-interrupted, partner-down, recover, recover-wait, recover-done,
    startup, ...), ``role``, when each state was entered, ports, MCLT.

    CLI Example:

    .. code-block:: bash

        salt-call dhcpd_failover.peer_state
        salt-call dhcpd_failover.peer_state dhcp-failover
    """
    settings = _settings(config)
    name = _peer_name(name, settings)
    return failover_state(_omshell(settings, name, [], host, timeout))


def status(config=None, host="127.0.0.1", timeout=10):
    """
    The failover state of every peer relationship of this dhcpd: ``{peer: {...}}``
    (see :func:`peer_state`). Raises when dhcpd does not answer on OMAPI.

    CLI Example:

    .. code-block:: bash

        salt '*' dhcpd_failover.status
    """
    settings = _settings(config)
    return {
        peer: failover_state(_omshell(settings, peer, [], host, timeout))
        for peer in settings["peers"]
    }


def _set_local_state(settings, name, state, host, timeout):
    """Move peer relationship ``name`` to local ``state`` over OMAPI; the local state after."""
    _omshell(settings, name, [f"set local-state = {STATE_CODES[state]}", "update"], host, timeout)
    return failover_state(_omshell(settings, name, [], host, timeout))["local_state"]


def shutdown(name=None, config=None, host="127.0.0.1", timeout=10):
    """
    Hand this server's part of the pool to its partner before planned maintenance: the local
    state of peer relationship ``name`` (default: the only one declared) goes to ``shutdown``,
    which the partner answers by moving to ``partner-down`` (it then serves the whole pool).
    Stop dhcpd afterwards; it goes through recover to normal with its partner when it starts
    again. Returns ``{"name", "changed", "old", "new"}``.

    CLI Example:

    .. code-block:: bash

        salt beta dhcpd_failover.shutdown
    """
    settings = _settings(config)
    name = _peer_name(name, settings)
    before = failover_state(_omshell(settings, name, [], host, timeout))
    old = before["local_state"]
    if old == "shutdown":
        return {"name": name, "changed": False, "old": old, "new": old}
    new = _set_local_state(settings, name, "shutdown", host, timeout)
    if new != "shutdown":
        raise CommandExecutionError(f"dhcpd accepted the update but {name!r} is in {new}, not shutdown")
    log.warning("DHCP failover %s: moved from %s to shutdown (planned maintenance)", name, old)
    return {"name": name, "changed": True, "old": old, "new": new}


def resume(name=None, config=None, host="127.0.0.1", timeout=10):
    """
    Bring this server back after planned maintenance (:func:`shutdown`): dhcpd keeps the
    shutdown state across a restart, so move it to ``recover``; it then learns from its
    partner the leases given out meanwhile and both return to ``normal`` after one MCLT
    (recover-wait, recover-done). Nothing changes unless the local state is shutdown.
    Returns ``{"name", "changed", "old", "new"}``.

    CLI Example:

    .. code-block:: bash

        salt beta dhcpd_failover.resume
    """
    settings = _settings(config)
    name = _peer_name(name, settings)
    old = failover_state(_omshell(settings, name, [], host, timeout))["local_state"]
    if old != "shutdown":
        return {"name": name, "changed": False, "old": old, "new": old}
    new = _set_local_state(settings, name, "recover", host, timeout)
    if new == "shutdown":
        raise CommandExecutionError(f"dhcpd accepted the update but {name!r} is still in shutdown")
    log.warning("DHCP failover %s: moved from shutdown to %s after maintenance", name, new)
    return {"name": name, "changed": True, "old": old, "new": new}


def partner_down(name=None, force=False, config=None, host="127.0.0.1", timeout=10):
    """
    Put this server into ``partner-down`` for peer relationship ``name``: it then serves
    the whole pool (after MCLT) instead of its own half. Only do this when the partner is
    really down and will not come back by itself (dhcpd.conf(5)); the rebuild
    orchestration calls it on the survivor before it reflashes the other node.

    Refused unless the local state is communications-interrupted or
    resolution-interrupted (``force=True`` overrides). Returns
    ``{"name", "changed", "old", "new"}``; nothing changes when already in partner-down.

    CLI Example:

    .. code-block:: bash

        salt beta dhcpd_failover.partner_down
    """
    settings = _settings(config)
    name = _peer_name(name, settings)
    before = failover_state(_omshell(settings, name, [], host, timeout))
    old = before["local_state"]
    if old == "partner-down":
        return {"name": name, "changed": False, "old": old, "new": old}
    if old not in INTERRUPTED and not force:
        raise CommandExecutionError(
            f"refusing partner-down for {name!r}: the local state is {old} (partner "
            f"{before['partner_state']}); it is only safe from {' or '.join(INTERRUPTED)}, "
            "with the partner known to be down (force=True overrides)"
        )
    new = _set_local_state(settings, name, "partner-down", host, timeout)
    if new != "partner-down":
        raise CommandExecutionError(f"dhcpd accepted the update but {name!r} is in {new}, not partner-down")
    log.warning("DHCP failover %s: moved from %s to partner-down", name, old)
    return {"name": name, "changed": True, "old": old, "new": new}
