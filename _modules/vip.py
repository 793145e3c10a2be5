"""
The floating IP of the lanservices pair (keepalived VRRP): held here or not, and the state
of the VRRP instance.

The state comes from the file the keepalived notify script (salt/keepalived) writes on every
transition (``<state_dir>/<instance>.state``: ``STATE PRIORITY EPOCH``); whether the VIP is
held comes from the addresses of this node's interfaces; whether keepalived runs from its pid
file. A node whose keepalived is not running reports ``STOPPED`` whatever the file says (a
power loss leaves no notification behind).

CLI Example:

.. code-block:: bash

    salt -G roles:lanservices vip.status
"""

import logging
import os

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "vip"

# the defaults of salt/keepalived/defaults.yaml (paths.state_dir, instance) and of Debian's
# keepalived.service (PIDFile)
STATE_DIR = "/run/keepalived-cluster"
INSTANCE = "VI_DNS"
PIDFILE = "/run/keepalived.pid"
LOOPBACK = "lo"
STATES = ("MASTER", "BACKUP", "FAULT", "STOP")


def __virtual__():
    return __virtualname__


def addresses():
    """
    The IPv4 addresses of this node's interfaces: ``{address: interface}`` (secondary
    addresses, such as a VIP, included).

    CLI Example:

    .. code-block:: bash

        salt-call vip.addresses
    """
    res = __salt__["cmd.run_all"](["ip", "-o", "-4", "addr", "show"], python_shell=False, ignore_retcode=True)
    if res["retcode"] != 0:
        raise CommandExecutionError(f"ip -o -4 addr show failed: {res['stderr'].strip()}")
    return parse_addresses(res["stdout"])


def parse_addresses(text):
    """
    ``{address: interface}`` from the output of ``ip -o -4 addr show``; an address on lo
    and on another interface (the VIP on the holder) maps to the other interface.

    CLI Example:

    .. code-block:: bash

        salt-call vip.parse_addresses "$(ip -o -4 addr show)"
    """
    out = {}
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[2] == "inet":
            interface = fields[1].split("@")[0]
            address = fields[3].split("/")[0]
            if address not in out or out[address] == LOOPBACK:  # an interface before lo
                out[address] = interface
    return out


def read_state(path):
    """
    ``{"state", "priority", "since"}`` from a notify state file (None when there is none).

    CLI Example:

    .. code-block:: bash

        salt-call vip.read_state /run/keepalived-cluster/VI_DNS.state
    """
    try:
        with open(path, encoding="ascii") as handle:
            fields = handle.read().split()
    except FileNotFoundError:
        return None
    if not fields or fields[0] not in STATES:
        log.warning("%s: unexpected content %r", path, fields)
        return None
    number = lambda i: int(fields[i]) if len(fields) > i and fields[i].isdigit() else None  # noqa: E731
    return {"state": fields[0], "priority": number(1), "since": number(2)}


def _running(pidfile):
    try:
        with open(pidfile, encoding="ascii") as handle:
            pid = int(handle.read().split()[0])
        with open(f"/proc/{pid}/comm", encoding="ascii") as handle:
            return handle.read().strip() == "keepalived"
    except (OSError, ValueError, IndexError):
        return False


def status(vip=None, instance=INSTANCE, state_dir=STATE_DIR, pidfile=PIDFILE):
    """
    The VIP on this node: ``{"vip", "held", "interface", "instance", "state", "priority",
    "since", "running"}``. ``held`` is True when an interface of this node carries the VIP;
    ``state`` is the instance's last VRRP state (MASTER, BACKUP, FAULT, STOP), ``STOPPED``
    when keepalived is not running, ``UNKNOWN`` when it never reported one. ``vip``
    defaults to the inventory's ``cluster.network.vip``.

    CLI Example:

    .. code-block:: bash

        salt-call vip.status
        salt -G roles:lanservices vip.status --out=json
    """
    if vip is None:
        try:
            vip = __pillar__["cluster"]["network"]["vip"]
        except (KeyError, TypeError) as exc:
            raise CommandExecutionError("no vip given and no 'cluster' pillar to take it from") from exc
    # salt/keepalived keeps the VIP on lo of both peers (it answers packets still in flight to
    # a node that just handed the VIP over): held means on the interface keepalived moves it on
    held_on = addresses().get(str(vip))
    held_on = None if held_on == LOOPBACK else held_on
    running = _running(pidfile)
    recorded = read_state(os.path.join(state_dir, f"{instance}.state")) or {}
    state = recorded.get("state", "UNKNOWN") if running else "STOPPED"
    return {
        "vip": str(vip),
        "held": held_on is not None,
        "interface": held_on,
        "instance": instance,
        "state": state,
        "priority": recorded.get("priority") if running else None,
        "since": recorded.get("since"),
        "running": running,
    }


def held(vip=None):
    """
    True when this node holds the VIP.

    CLI Example:

    .. code-block:: bash

        salt -G roles:lanservices vip.held
    """
    if vip is None:
        return status()["held"]
    return addresses().get(str(vip)) not in (None, LOOPBACK)
