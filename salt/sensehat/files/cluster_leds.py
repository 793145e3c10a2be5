#!/usr/bin/env python3
# Managed by Salt (salt/sensehat): the cluster's health on the Sense HAT's LED matrix.
"""
cluster-leds: one pixel per cluster node on a Sense HAT's 8x8 LED matrix.

Every ``--interval`` seconds it reads the status file that the salt-master's publisher
writes on the deployer (``{"made": ISO time, "cluster": <salt-run cluster.status object>,
"history": [...]}``) and draws, row-major from the top-left pixel (8 a row), one pixel per
node in the order of ``cluster.nodes`` (the inventory order); the other pixels are off.

Colours, first rule that matches wins:

1. red (255, 0, 0): the node is down (``up`` is not true), its last build failed
   (``build.state == "failed"``) or its last highstate failed (``last_highstate.result``
   false). A node being rebuilt is red while it does not answer, amber once it does.
2. amber (255, 191, 0): it is being rebuilt (``build.state == "building"``) or its last
   highstate made changes (``last_highstate.changes > 0``: not converged yet).
3. green (0, 255, 0): up, not building, last highstate (if any) succeeded without changes.

Missing information never shows as green: a node entry that is not an object, or a node of the
order that the status does not list, is dim blue (0, 0, 128). When the status file is
missing, unreadable, has no ``cluster.nodes`` object, or is older than ``--max-age`` seconds
(its modification time; default 120), every node pixel is dim blue: the nodes of the stale
file if it can still be read, else those of the last good status, else the top-left pixel
alone (the display then still says "no data" rather than looking switched off). With more
than 64 nodes, pixels 1-63 are the first 63 nodes and pixel 64 the worst colour of all the
others (red, then amber, then blue, then green): no problem is ever hidden.

A VIP failover (``cluster.vip_holder`` names another node than the last one seen, also when
it was null in between) scrolls ``VIP <node>`` in amber across the matrix, then the node map
is drawn again. Only fresh data counts; the last holder is kept in ``--state`` (if given)
so that ``--once`` runs and restarts remember it.

Backend: ``sense_hat.SenseHat`` (Raspberry Pi OS package python3-sense-hat) on the hardware,
``sense_emu.SenseHat`` (pip package sense-emu, the Sense HAT emulator) with ``--emulator``.
The loop never ends on bad input or a missing device: it logs (to stderr, i.e. the journal;
a repeated problem once) and retries at the next interval. On SIGTERM/SIGINT it clears the
matrix, so a stopped service never leaves a frozen, possibly green, picture behind.

Usage: cluster_leds.py [--status PATH] [--interval 5] [--emulator] [--once] [--state PATH]
                       [--max-age 120] [--scroll-speed 0.1] [--rotation 0]

``--once`` draws one frame and exits (status 0; 1 when the LED matrix could not be driven).
Only the standard library and the Sense HAT library are used.
"""

import argparse
import collections
import json
import logging
import os
import signal
import sys
import tempfile
import time

log = logging.getLogger("cluster-leds")

OFF = (0, 0, 0)
GREEN = (0, 255, 0)
AMBER = (255, 191, 0)
RED = (255, 0, 0)
NO_DATA = (0, 0, 128)  # dim blue: nothing fresh is known (never green)

WIDTH = 8
PIXELS = WIDTH * WIDTH
# For the summary pixel of nodes beyond the 63rd: the worst colour wins.
SEVERITY = {GREEN: 0, NO_DATA: 1, AMBER: 2, RED: 3}

DEFAULT_STATUS = "/var/lib/cluster-status/status.json"
DEFAULT_INTERVAL = 5.0
DEFAULT_MAX_AGE = 120.0
DEFAULT_SCROLL_SPEED = 0.1


def _dict(value):
    return value if isinstance(value, dict) else {}


def node_colour(node):
    """
    The colour of one node of ``cluster.status``'s ``nodes`` (see the module docstring for
    the rules and their precedence).
    """
    if not isinstance(node, dict):
        return NO_DATA
    build = _dict(node.get("build")).get("state")
    last = _dict(node.get("last_highstate"))
    if node.get("up") is not True or build == "failed" or last.get("result") is False:
        return RED
    changes = last.get("changes")
    if build == "building" or (isinstance(changes, int) and not isinstance(changes, bool) and changes > 0):
        return AMBER
    return GREEN


def _cluster(status):
    """The cluster.status object, given it or the whole status file document."""
    status = _dict(status)
    if "nodes" not in status and isinstance(status.get("cluster"), dict):
        return status["cluster"]
    return status


def _fit(colours):
    """``colours`` (one per node) laid out on the 64 pixels, see the module docstring."""
    colours = list(colours)
    if len(colours) > PIXELS:
        rest = colours[PIXELS - 1 :]
        colours = colours[: PIXELS - 1] + [max(rest, key=lambda c: SEVERITY.get(c, 1))]
    return colours + [OFF] * (PIXELS - len(colours))


def pixels(status, order):
    """
    The 64 pixels (``(r, g, b)`` tuples, row-major from the top-left) for ``status`` (the
    cluster.status object, or the status file document holding it under ``cluster``): one
    pixel per node name of ``order``, the rest off.
    """
    nodes = _dict(_cluster(status).get("nodes"))
    return _fit(node_colour(nodes[name]) if name in nodes else NO_DATA for name in order)


def stale_pixels(order):
    """The 64 pixels when nothing fresh is known: every node of ``order`` dim blue."""
    return _fit([NO_DATA] * max(len(order), 1))


def failover_message(previous_holder, holder):
    """
    ``"VIP <holder>"`` when the VIP moved: ``previous_holder`` (the last node seen holding
    it, None if none yet) and ``holder`` (now) are both nodes and differ; else None.
    """
    if isinstance(previous_holder, str) and previous_holder and isinstance(holder, str) and holder:
        if holder != previous_holder:
            return f"VIP {holder}"
    return None


def load_status(path, max_age=DEFAULT_MAX_AGE, now=None):
    """
    Read the status file: ``(cluster, problem)``. ``cluster`` is the cluster.status object
    (None when there is none that can be used: missing, unreadable, wrong shape); ``problem``
    None when the data is fresh and usable, else why not (the data may still be returned
    when it is only too old, for its node order).
    """
    now = time.time() if now is None else now
    try:
        with open(path, encoding="utf-8") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            doc = json.load(handle)
    except FileNotFoundError:
        return None, f"no status file {path}"
    except (OSError, ValueError) as exc:
        return None, f"cannot read {path}: {exc}"
    cluster = _cluster(doc)
    if not isinstance(cluster.get("nodes"), dict):
        return None, f"{path} holds no cluster.nodes object"
    if now - mtime > max_age:
        # no age in the text: the same problem is logged once, not at every read
        return cluster, f"{path} is stale (older than {max_age:g} s)"
    return cluster, None


def frame(cluster, problem, fallback_order=()):
    """``(pixels, order)`` to draw for a ``load_status`` result."""
    order = list(cluster["nodes"]) if cluster is not None else list(fallback_order)
    if problem is not None or cluster is None:
        return stale_pixels(order), order
    return pixels(cluster, order), order


COLOUR_NAMES = {GREEN: "green", AMBER: "amber", RED: "red", NO_DATA: "no data"}


def summary(colours, order):
    """One log line: how many node pixels of each colour."""
    counts = collections.Counter(COLOUR_NAMES.get(c, str(c)) for c in colours[: min(len(order), PIXELS)])
    return f"{len(order)} nodes: " + ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))


def open_backend(emulator):
    """The LED matrix: the emulator's or the hardware's SenseHat object."""
    if emulator:
        from sense_emu import SenseHat  # pip package sense-emu
    else:
        from sense_hat import SenseHat  # Raspberry Pi OS package python3-sense-hat
    return SenseHat()


def read_state(path):
    """The last VIP holder remembered in ``path`` (None when there is none)."""
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            holder = json.load(handle).get("vip_holder")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("ignoring the state file %s: %s", path, exc)
        return None
    return holder if isinstance(holder, str) and holder else None


def write_state(path, holder):
    """Remember the VIP holder in ``path`` (atomically); a failure is logged, not raised."""
    if not path:
        return
    try:
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".vip-", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"vip_holder": holder}, handle)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write the state file %s: %s", path, exc)


class Driver:
    """The display loop's state: the backend, the last node order and VIP holder."""

    def __init__(self, status_path, emulator=False, max_age=DEFAULT_MAX_AGE, state_path=None,
                 scroll_speed=DEFAULT_SCROLL_SPEED, rotation=0, backend_factory=open_backend):
        self.status_path = status_path
        self.emulator = emulator
        self.max_age = max_age
        self.state_path = state_path
        self.scroll_speed = scroll_speed
        self.rotation = rotation
        self.backend_factory = backend_factory
        self.hat = None
        self.order = []
        self.holder = read_state(state_path)
        self._said = {}

    def _say(self, topic, level, message):
        """Log ``message`` unless it is what was last said about ``topic`` (no journal spam)."""
        if self._said.get(topic) != message:
            self._said[topic] = message
            log.log(level, "%s", message)

    def _backend(self):
        if self.hat is None:
            hat = self.backend_factory(self.emulator)
            if self.rotation:
                hat.set_rotation(self.rotation, False)
            self.hat = hat
            self._say("backend", logging.INFO, f"LED matrix opened ({'emulator' if self.emulator else 'Sense HAT'})")
        return self.hat

    def step(self):
        """Read the status once and draw it; False when the LED matrix could not be driven."""
        cluster, problem = load_status(self.status_path, self.max_age)
        colours, order = frame(cluster, problem, self.order)
        if order:
            self.order = order
        self._say("status", logging.WARNING if problem else logging.INFO,
                  problem or f"status: {summary(colours, order)}")
        holder = cluster.get("vip_holder") if problem is None else None
        message = failover_message(self.holder, holder)
        try:
            hat = self._backend()
            if message:
                log.info("failover: %s (was %s)", message, self.holder)
                hat.show_message(message, scroll_speed=self.scroll_speed, text_colour=list(AMBER),
                                 back_colour=list(OFF))
            hat.set_pixels([list(c) for c in colours])
        except Exception as exc:  # pylint: disable=broad-except
            # no device yet, emulator not running, device gone: open it again next time (an
            # unshown failover message is shown then: the holder is not remembered yet)
            self.hat = None
            self._say("backend", logging.ERROR, f"cannot drive the LED matrix: {exc!r}")
            return False
        if isinstance(holder, str) and holder and holder != self.holder:
            self.holder = holder
            write_state(self.state_path, holder)
        return True

    def clear(self):
        try:
            if self.hat is not None:
                self.hat.clear()
        except Exception as exc:  # pylint: disable=broad-except
            log.warning("cannot clear the LED matrix: %r", exc)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="The cluster's health on a Sense HAT's LED matrix.")
    parser.add_argument("--status", default=DEFAULT_STATUS, help=f"status file (default {DEFAULT_STATUS})")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between reads (5)")
    parser.add_argument("--emulator", action="store_true", help="drive the Sense HAT emulator (sense_emu)")
    parser.add_argument("--once", action="store_true", help="draw one frame and exit")
    parser.add_argument("--state", default=None, help="file remembering the last VIP holder")
    parser.add_argument("--max-age", type=float, default=DEFAULT_MAX_AGE,
                        help="status older than this many seconds is stale (120)")
    parser.add_argument("--scroll-speed", type=float, default=DEFAULT_SCROLL_SPEED,
                        help="seconds per column of the failover message (0.1)")
    parser.add_argument("--rotation", type=int, choices=(0, 90, 180, 270), default=0,
                        help="rotation of the matrix in degrees (0)")
    return parser.parse_args(argv)


def _stop(signum, _frame):
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")
    driver = Driver(args.status, emulator=args.emulator, max_age=args.max_age, state_path=args.state,
                    scroll_speed=args.scroll_speed, rotation=args.rotation)
    if args.once:
        return 0 if driver.step() else 1
    signal.signal(signal.SIGTERM, _stop)
    try:
        while True:
            started = time.monotonic()
            try:
                driver.step()
            except Exception:  # pylint: disable=broad-except
                # a bug must not stop the display for good: logged with its traceback, retried
                log.exception("unexpected error, retrying in %s s", args.interval)
            time.sleep(max(0.0, args.interval - (time.monotonic() - started)))
    except (KeyboardInterrupt, SystemExit):
        driver.clear()
        log.info("stopped, LED matrix cleared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
