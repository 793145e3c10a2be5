"""
Rolling maintenance of the cluster (salt/orch/maintenance.sls): which nodes go together, how
a lanservices node hands its services over before it goes down, and the reboot that waits for
the node to come back.

CLI Example:

.. code-block:: bash

    salt-run maintenance.plan
    salt-run state.orch orch.maintenance pillar='{"reboot": true}'
"""

import logging
import time

import salt.client

log = logging.getLogger(__name__)

__virtualname__ = "maintenance"

DRAIN_TIMEOUT = 60  # s: the peer holds the VIP and answers DNS on it, its DHCP serves alone
REBOOT_TIMEOUT = 600  # s: a node is back (its minion answers with a new boot ID)
# keepalived's track_file (salt/keepalived): 1 lowers this node's VRRP priority below its peer's
DRAIN_FILE = "/var/lib/keepalived/maintenance"


def __virtual__():
    return __virtualname__


def _fail(message):
    __context__["retcode"] = 1  # a salt.runner orchestration step fails
    log.info("maintenance: %s", message)
    return message


def _call(tgt, fun, arg=(), timeout=30, tgt_type="list"):
    """``fun`` on the minions ``tgt``: {minion: return}; a minion that does not answer is missing."""
    out = {}
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        for ret in client.cmd_iter(tgt, fun, arg=list(arg), timeout=timeout, tgt_type=tgt_type):
            for minion, data in ret.items():
                if isinstance(data, dict) and "ret" in data:
                    out[minion] = data["ret"]
    return out


def _wait(check, seconds, interval=0.5):
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def plan(nodes=None):
    """
    The order of a rolling maintenance of ``nodes`` (default: every node): compute nodes in
    batches of at most half the compute nodes, then the lanservices nodes one at a time (the
    one not holding the VIP first), then the deployer. Unknown names are listed, not dropped.

    CLI Example:

    .. code-block:: bash

        salt-run maintenance.plan
        salt-run maintenance.plan nodes='[gamma, beta]'
    """
    everyone = __salt__["cluster.nodes"]()
    chosen = list(nodes) if nodes else list(everyone)
    compute = [n for n in __salt__["cluster.nodes"](role="compute") if n in chosen]
    size = max(1, len(__salt__["cluster.nodes"](role="compute")) // 2)
    pair = __salt__["cluster.lanservices"]()
    held = _call([pair["primary"], pair["secondary"]], "vip.held", timeout=10)
    first, second = (pair["primary"], pair["secondary"]) if held.get(pair["secondary"]) else (
        pair["secondary"], pair["primary"])
    return {
        "compute": [compute[i : i + size] for i in range(0, len(compute), size)],
        "lanservices": [n for n in (first, second) if n in chosen],
        "deployer": [n for n in __salt__["cluster.nodes"](role="deployer") if n in chosen],
        "unknown": [n for n in chosen if n not in everyone],
    }


def _vip_and_dns(node, vip, zone, deployer):
    """``node`` holds the VIP, and named answers the cluster zone on the VIP (asked from the deployer)."""
    held = _call([node], "vip.held", timeout=10).get(node) is True
    serial = _call([deployer], "dnszone.served_serial", [zone, vip], timeout=10).get(deployer)
    return held and isinstance(serial, int)


def drain(node):
    """
    Take lanservices ``node`` out of service without losing a query: its VRRP priority drops
    below its peer's (keepalived's track_file), so the peer takes the VIP and announces it
    before this node lets it go (the order of a preemption: no gap); the orchestration waits
    until the peer holds the VIP and answers DNS on it. Then DHCP
    failover goes through its planned states (this node shutdown, the peer partner-down,
    serving the whole pool), and this node's dhcpd stops. If the peer does not take over,
    the drain is undone and the step fails. Nothing to do for other roles.

    CLI Example:

    .. code-block:: bash

        salt-run maintenance.drain alpha
    """
    pair = __salt__["cluster.lanservices"]()
    if node not in (pair["primary"], pair["secondary"]):
        return {"node": node, "drained": "nothing to hand over"}
    peer = pair["secondary"] if node == pair["primary"] else pair["primary"]
    inv = __salt__["cluster.inventory"]()
    vip, zone = inv["network"]["vip"], inv["domain"]
    deployer = __salt__["cluster.nodes"](role="deployer")[0]
    started = time.monotonic()
    done = _call([node], "file.write", [DRAIN_FILE, "1"], timeout=15)
    if node not in done:
        return _fail(f"maintenance: {node} does not answer: cannot lower its VRRP priority")
    if not _wait(lambda: _vip_and_dns(peer, vip, zone, deployer), DRAIN_TIMEOUT):
        _call([node], "file.write", [DRAIN_FILE, "0"], timeout=15)
        return _fail(f"maintenance: {peer} did not take the VIP {vip} with DNS answering within "
                     f"{DRAIN_TIMEOUT} s: {node} keeps it (drain undone)")
    vip_moved = round(time.monotonic() - started, 2)
    # DHCP in its planned states: this server shutdown, its peer partner-down (the whole pool)
    handed = _call([node], "dhcpd_failover.shutdown", timeout=30).get(node)

    def peer_serves_alone():
        states = _call([peer], "dhcpd_failover.status", timeout=15).get(peer)
        if not isinstance(states, dict) or not states:
            return None
        return all((p or {}).get("local_state") == "partner-down" for p in states.values()) and states

    states = isinstance(handed, dict) and _wait(peer_serves_alone, DRAIN_TIMEOUT, interval=1)
    if not states:
        undrain(node)
        return _fail(f"maintenance: {peer}'s DHCP failover did not reach partner-down after {node} went to "
                     f"shutdown within {DRAIN_TIMEOUT} s ({handed}): {node} is back in service (drain undone)")
    _call([node], "service.stop", ["isc-dhcp-server"], timeout=60)
    return {"node": node, "vip": peer, "vip_moved_s": vip_moved, "dhcp": f"{peer} partner-down",
            "seconds": round(time.monotonic() - started, 2)}


def undrain(node):
    """
    Put lanservices ``node`` back in service after maintenance: dhcpd running and out of the
    shutdown state it keeps across restarts (``dhcpd_failover.resume``: recover, then normal
    with its peer after one MCLT), VRRP priority back (the primary takes the VIP back by
    preemption).

    CLI Example:

    .. code-block:: bash

        salt-run maintenance.undrain alpha
    """
    pair = __salt__["cluster.lanservices"]()
    if node not in (pair["primary"], pair["secondary"]):
        return {"node": node, "undrained": "nothing to take back"}
    _call([node], "service.start", ["isc-dhcp-server"], timeout=60)
    # dhcpd answers OMAPI a moment after it started
    answers = []

    def resume():
        answers.append(_call([node], "dhcpd_failover.resume", timeout=30).get(node))
        return answers[-1] if isinstance(answers[-1], dict) else None

    resumed = _wait(resume, 30, interval=2)
    _call([node], "file.write", [DRAIN_FILE, "0"], timeout=15)
    if not isinstance(resumed, dict):
        return _fail(f"maintenance: {node}'s dhcpd did not leave the shutdown state: {answers[-1]}")
    return {"node": node, "undrained": True, "dhcp": f"{resumed['old']} -> {resumed['new']}"}


def _boot_ids(nodes):
    return {n: str(v).strip() for n, v in _call(nodes, "cmd.run", ["cat /proc/sys/kernel/random/boot_id"],
                                                   timeout=20).items()}


def reboot(nodes, timeout=REBOOT_TIMEOUT):
    """
    Reboot ``nodes`` and wait until every one is back: its minion answers with a new boot ID.
    Fails naming the nodes that did not come back within ``timeout`` seconds.

    CLI Example:

    .. code-block:: bash

        salt-run maintenance.reboot '[gamma, delta]'
    """
    nodes = [nodes] if isinstance(nodes, str) else list(nodes)
    before = _boot_ids(nodes)
    silent = [n for n in nodes if n not in before]
    if silent:
        return _fail(f"maintenance: {', '.join(silent)} did not answer before the reboot")
    started = time.monotonic()
    # in the background: the job returns before systemd takes the minion down
    _call(nodes, "cmd.run_bg", ["sleep 1; systemctl reboot"], timeout=20)
    back = {}
    deadline = started + float(timeout)
    while len(back) < len(nodes) and time.monotonic() < deadline:
        time.sleep(3)
        for node, boot_id in _boot_ids([n for n in nodes if n not in back]).items():
            if boot_id and boot_id != before[node]:
                back[node] = round(time.monotonic() - started, 1)
    missing = [n for n in nodes if n not in back]
    if missing:
        return _fail(f"maintenance: {', '.join(missing)} not back within {timeout} s after the reboot")
    return {"rebooted": back, "boot_ids": before}
