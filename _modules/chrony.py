"""
NTP health from chrony: what chronyd is synchronised to and the state of its sources, read
with ``chronyc -n -c`` (CSV, no name lookups). Used by the cluster status runner.

CLI Example:

.. code-block:: bash

    salt '*' chrony.status
"""

import logging

import salt.utils.path
from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "chrony"

# chronyd's reference ID while it serves its own clock (`local stratum N`): 127.127.1.1
LOCAL_REFID = "7F7F0101"

TRACKING_FIELDS = (
    "ref_id", "ref_name", "stratum", "ref_time", "system_time", "last_offset", "rms_offset",
    "frequency_ppm", "residual_frequency_ppm", "skew_ppm", "root_delay", "root_dispersion",
    "update_interval", "leap_status",
)
SOURCE_FIELDS = (
    "mode", "state", "name", "stratum", "poll", "reach", "last_rx", "offset",
    "measured_offset", "error",
)
MODES = {"^": "server", "=": "peer", "#": "refclock"}
SOURCE_STATES = {
    "*": "selected",
    "+": "combined",
    "-": "not-combined",
    "?": "unreachable",
    "x": "falseticker",
    "~": "too-variable",
}


def __virtual__():
    # Always loadable: a long-running minion loads its modules before the chrony state
    # installs chronyc; the functions say so when it is missing.
    return __virtualname__


def _number(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def parse_tracking(text):
    """
    Parse ``chronyc -c tracking`` (one CSV line) into a mapping, with ``synchronised``
    (a real or local reference and a known leap status) and ``local`` (serving its own clock).

    CLI Example:

    .. code-block:: bash

        salt-call chrony.parse_tracking "$(chronyc -n -c tracking)"
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1 or len(lines[0].split(",")) != len(TRACKING_FIELDS):
        raise CommandExecutionError(f"unexpected 'chronyc -c tracking' output: {text.strip()!r}")
    out = {
        key: (value if key in ("ref_id", "ref_name", "leap_status") else _number(value))
        for key, value in zip(TRACKING_FIELDS, lines[0].split(","), strict=True)
    }
    out["local"] = out["ref_id"] == LOCAL_REFID
    out["synchronised"] = out["ref_id"] != "00000000" and out["leap_status"] != "Not synchronised"
    return out


def parse_sources(text):
    """
    Parse ``chronyc -c sources`` (one CSV line per source) into a list of mappings; ``mode``
    and ``state`` are spelled out (server/peer/refclock; selected, combined, not-combined,
    unreachable, falseticker, too-variable), ``reach`` is the octal reachability register.

    CLI Example:

    .. code-block:: bash

        salt-call chrony.parse_sources "$(chronyc -n -c sources)"
    """
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != len(SOURCE_FIELDS):
            raise CommandExecutionError(f"unexpected 'chronyc -c sources' line: {line!r}")
        row = dict(zip(SOURCE_FIELDS, fields, strict=True))
        for key in ("stratum", "poll", "last_rx", "offset", "measured_offset", "error"):
            row[key] = _number(row[key])
        row["mode"] = MODES.get(row["mode"], row["mode"])
        row["state"] = SOURCE_STATES.get(row["state"], row["state"])
        row["reachable"] = row["reach"] not in ("0", "")
        out.append(row)
    return out


def _chronyc(command, socket=None):
    if not salt.utils.path.which("chronyc"):
        raise CommandExecutionError("chronyc is not installed (the chrony state installs it)")
    args = ["chronyc", "-n", "-c"] + (["-h", socket] if socket else []) + [command]
    res = __salt__["cmd.run_all"](args, python_shell=False, ignore_retcode=True, timeout=15)
    if res["retcode"] != 0:
        raise CommandExecutionError(
            f"chronyc {command} failed: {(res.get('stdout') or res.get('stderr') or '').strip()} "
            "(is chronyd running? systemctl status chrony)"
        )
    return res["stdout"]


def tracking(socket=None):
    """
    What chronyd is synchronised to: reference, stratum, offsets, leap status
    (``chronyc -n -c tracking``). ``socket``: chronyd's command socket, if not the default.

    CLI Example:

    .. code-block:: bash

        salt-call chrony.tracking
    """
    return parse_tracking(_chronyc("tracking", socket))


def sources(socket=None):
    """
    chronyd's time sources and their state (``chronyc -n -c sources``).

    CLI Example:

    .. code-block:: bash

        salt-call chrony.sources
    """
    return parse_sources(_chronyc("sources", socket))


def status(socket=None):
    """
    NTP health of this node: ``synchronised``, ``local`` (serving its own clock, no real
    source reachable), ``reference``, ``stratum``, ``offset`` (seconds), ``leap_status``,
    ``selected`` (the source in use), the counts of reachable and configured sources, and
    the sources themselves.

    CLI Example:

    .. code-block:: bash

        salt '*' chrony.status
    """
    track = tracking(socket)
    srcs = sources(socket)
    selected = [s["name"] for s in srcs if s["state"] == "selected"]
    return {
        "synchronised": track["synchronised"],
        "local": track["local"],
        "reference": "local" if track["local"] else (track["ref_name"] or track["ref_id"]),
        "stratum": track["stratum"],
        "offset": track["system_time"],
        "leap_status": track["leap_status"],
        "selected": selected[0] if selected else None,
        "sources_reachable": sum(1 for s in srcs if s["reachable"]),
        "sources_total": len(srcs),
        "sources": srcs,
    }
