"""
The master's part of the live status page: ``statuspage.publish`` writes the cluster status
(``cluster.status``) and the job history (``cluster.history``) to one file,
``<cluster_status_dir>/status.json`` (default ``/var/lib/cluster-status``), which the deployer
serves to the lanservices pair (salt/statusfeed); the pair's collector puts it on the page.

Salt keeps it current: the reactor asks for a publish on the events that change the page (a
minion starts, a highstate or an orchestration returns, presence changes;
master.d/reactor.conf) with ``statuspage.request``, which only leaves a mark; the master's
scheduler (master.d/statuspage.conf) runs ``statuspage.publish`` every few seconds in a
process of its own, which publishes when asked or when the last publish is ``every`` seconds
old (a node that goes silent sends no event). The work stays out of the reactor's threads:
two runners there importing the Redis client at once left it half-initialised for the whole
reactor process (seen on the lab: "partially initialized module 'redis'"), and the rebuilds the
reactor runs failed with it.

CLI Example:

.. code-block:: bash

    salt-run statuspage.publish
"""

import datetime
import fcntl
import json
import logging
import os
import time

log = logging.getLogger(__name__)

__virtualname__ = "statuspage"

DEFAULT_DIR = "/var/lib/cluster-status"
FEED = "status.json"
REQUESTED = ".requested"


def __virtual__():
    return __virtualname__


def _dir():
    return __opts__.get("cluster_status_dir", DEFAULT_DIR)


def _write(path, doc):
    """Atomically, readable by the feed's web server."""
    tmp = f"{path}.new"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, separators=(",", ":"))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def build():
    """
    The document ``publish`` writes: when it was made, the cluster status object, the job
    history.

    CLI Example:

    .. code-block:: bash

        salt-run statuspage.build --out=json
    """
    report = __salt__["cluster.status"](table=False)
    try:
        runs = __salt__["cluster.history"]()
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("statuspage: no job history: %s", exc)
        runs = []
    return {
        "made": datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "cluster": report,
        "history": runs if isinstance(runs, list) else [],
    }


def request():
    """
    Ask for a publish (the reactor's call): a mark the next scheduled ``publish`` sees. Cheap
    and without I/O beyond one file, so the reactor never waits for the cluster.

    CLI Example:

    .. code-block:: bash

        salt-run statuspage.request
    """
    folder = _dir()
    os.makedirs(folder, mode=0o755, exist_ok=True)
    open(os.path.join(folder, REQUESTED), "w", encoding="utf-8").close()  # noqa: SIM115 (a flag file)
    return {"requested": True}


def publish(max_rounds=3, every=None):
    """
    Write the page's master data (see :func:`build`). One publisher at a time: a call that
    finds another running asks it for one more round and returns at once. With ``every``
    (the scheduler's call): only when a publish was requested (:func:`request`) or the last
    one is at least ``every`` seconds old.

    CLI Example:

    .. code-block:: bash

        salt-run statuspage.publish
    """
    folder = _dir()
    os.makedirs(folder, mode=0o755, exist_ok=True)
    requested = os.path.join(folder, REQUESTED)
    if every is not None and not os.path.exists(requested):
        try:
            age = time.time() - os.path.getmtime(os.path.join(folder, FEED))
        except OSError:
            age = None
        if age is not None and age < float(every):
            return {"published": False, "comment": f"nothing requested, last publish {age:.0f} s ago"}
    try:
        os.remove(requested)
    except FileNotFoundError:
        pass
    again = os.path.join(folder, ".again")
    with open(os.path.join(folder, ".lock"), "w", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            open(again, "w", encoding="utf-8").close()  # noqa: SIM115 (a flag file)
            return {"published": False, "comment": "a publisher is running: it will publish once more"}
        started, rounds = time.monotonic(), 0
        while rounds < int(max_rounds):
            rounds += 1
            try:
                os.remove(again)
            except FileNotFoundError:
                pass
            _write(os.path.join(folder, FEED), build())
            if not os.path.exists(again):
                break
    return {"published": True, "path": os.path.join(folder, FEED), "rounds": rounds,
            "seconds": round(time.monotonic() - started, 1)}
