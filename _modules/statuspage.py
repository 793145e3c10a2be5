"""
The live status page on the lanservices pair.

``statuspage.collect`` writes two files into the page's web root (BusyBox httpd, salt/httpd):

``self.json``
    what this node knows itself: whether it holds the VIP, the serials its named serves, its
    DHCP failover state, its clock.
``status.json``
    the page's data: this node's and its peer's own views (the peer's ``self.json``, read over
    HTTP), the master's last published cluster status and job history (read over HTTP from the
    deployer, salt/statusfeed), and whether the deployer answers, since when not.

The minion's scheduler runs it every few seconds (salt/statuspage): no job reaches the master,
and the page keeps its pair-side facts current while the deployer is down. The shape of
``status.json`` is ``salt/statuspage/files/status.schema.json``.

CLI Example:

.. code-block:: bash

    salt -G roles:lanservices statuspage.self_view
"""

import datetime
import json
import logging
import os
import tempfile
import urllib.request

log = logging.getLogger(__name__)

__virtualname__ = "statuspage"

SCHEMA = 1
MAX_AGE = 60  # s: master data older than this is stale


def __virtual__():
    return __virtualname__


def _now():
    return datetime.datetime.now(datetime.UTC)


def _iso(when):
    return when.replace(microsecond=0).isoformat() if when else None


def _parse(text):
    try:
        when = datetime.datetime.fromisoformat(str(text))
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.astimezone()


def _answer(fun, *args, **kwargs):
    """A module's answer, or {"error": why} (one broken service must not hide the others)."""
    try:
        return __salt__[fun](*args, **kwargs)
    except Exception as exc:  # pylint: disable=broad-except
        return {"error": f"{fun}: {exc}"}


def _dhcp(peers):
    """The failover state as cluster.status gives it (one peer: flat)."""
    if not isinstance(peers, dict) or not peers or "error" in peers:
        return peers if isinstance(peers, dict) and "error" in peers else {"error": f"no failover peer ({peers!r})"}
    flat = {
        name: {"peer": name, "state": p.get("local_state"), "partner_state": p.get("partner_state"),
               "role": p.get("role"), "since": p.get("local_state_since")}
        for name, p in peers.items()
    }
    return next(iter(flat.values())) if len(flat) == 1 else flat


def self_view(vip=None):
    """
    What this lanservices node knows itself, without the master: VIP held (and keepalived's
    state), the zone serials named serves, the DHCP failover state, the clock.

    CLI Example:

    .. code-block:: bash

        salt alpha statuspage.self_view
    """
    vip_status = _answer("vip.status", vip) if vip else _answer("vip.status")
    zones = _answer("dnszone.status")
    chrony = _answer("chrony.status")
    if isinstance(zones, dict) and "error" not in zones:
        serials = {zone: (z or {}).get("serial") for zone, z in (zones.get("zones") or {}).items()}
    else:
        serials = {"error": str(zones.get("error") if isinstance(zones, dict) else zones)}
    if isinstance(chrony, dict) and "error" not in chrony:
        ntp = {"synced": bool(chrony.get("synchronised")), "offset": chrony.get("offset"),
               "reference": chrony.get("reference"), "stratum": chrony.get("stratum")}
    else:
        ntp = {"error": str(chrony.get("error") if isinstance(chrony, dict) else chrony)}
    held = isinstance(vip_status, dict) and bool(vip_status.get("held"))
    return {
        "made": _iso(_now()),
        "vip_held": held,
        "vip_state": vip_status.get("state") if isinstance(vip_status, dict) else None,
        "dns_serials": serials,
        "dhcp_failover": _dhcp(_answer("dhcpd_failover.status")),
        "ntp": ntp,
    }


def _fetch(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (http on the LAN)
        return json.loads(resp.read().decode())


def _write(path, doc):
    """Atomically: the web server never serves half a file."""
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".statuspage-")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle, separators=(",", ":"))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _memory(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def merge(me, own, peer, peer_view, feed, deployer, memory, now, vip, max_age=MAX_AGE):
    """
    The page's data from its parts (pure: no I/O). ``feed`` is the master's published
    document or None when the deployer did not answer; ``memory`` what the previous run
    remembered (the last feed, the last contact). Returns (status document, new memory).
    """
    memory = dict(memory or {})
    if feed is not None:
        memory["feed"] = feed
        memory["last_contact"] = _iso(now)
        memory.pop("unreachable_since", None)
    elif "unreachable_since" not in memory:
        memory["unreachable_since"] = _iso(now)
    last = memory.get("feed") or {}
    cluster = last.get("cluster")
    generated = _parse((cluster or {}).get("generated"))
    age = round((now - generated).total_seconds(), 1) if generated else None
    pair = {me: own, peer: peer_view} if peer else {me: own}
    holders = [name for name, view in pair.items() if isinstance(view, dict) and view.get("vip_held")]
    doc = {
        "schema": SCHEMA,
        "made": _iso(now),
        "served_by": me,
        "deployer": {
            "name": deployer,
            "reachable": feed is not None,
            "last_contact": memory.get("last_contact"),
            "unreachable_since": memory.get("unreachable_since"),
        },
        "age": age,
        "stale": feed is None or age is None or age > max_age,
        "cluster": cluster,
        "history": last.get("history") or [],
        "pair": pair,
        "vip": {"address": vip, "holder": holders[0] if len(holders) == 1 else None},
    }
    return doc, memory


def collect(web_root, me, peer, peer_url, feed_url, deployer, vip, timeout=2, max_age=MAX_AGE):
    """
    Write this node's ``self.json`` and the page's ``status.json`` into ``web_root``.

    CLI Example:

    .. code-block:: bash

        salt alpha statuspage.collect /srv/bbhttpd/www alpha beta http://10.77.0.8/self.json \\
            http://10.77.0.5:8082/status.json psi 10.77.0.111
    """
    own = self_view(vip)
    _write(os.path.join(web_root, "self.json"), own)
    try:
        peer_view = _fetch(peer_url, timeout) if peer else None
    except Exception as exc:  # pylint: disable=broad-except
        peer_view = {"error": f"{peer} does not answer: {exc}"}
    try:
        feed = _fetch(feed_url, timeout)
    except Exception as exc:  # pylint: disable=broad-except
        log.debug("statuspage: deployer feed %s: %s", feed_url, exc)
        feed = None
    memory_path = os.path.join(__opts__["cachedir"], "statuspage.json")
    doc, memory = merge(me, own, peer, peer_view, feed, deployer, _memory(memory_path), _now(), vip, max_age)
    _write(os.path.join(web_root, "status.json"), doc)
    _write(memory_path, memory)
    return {"stale": doc["stale"], "deployer": doc["deployer"]["reachable"], "vip_holder": doc["vip"]["holder"]}
