"""Faults, first-class: power-off, power-loss, unplug, plug, reflash."""

import time

from . import LabError, net
from .host import log, require_root
from .lifecycle import nodes_of, up


def _one(inv, name, must_run=True):
    require_root()
    (node,) = nodes_of(inv, [name])
    if must_run and not node.running():
        raise LabError(f"node {name} is not running (python3 -m lab up {name})")
    return node


def power_off(inv, name):
    """Clean shutdown: SIGTERM to nspawn, the node's systemd stops its units and powers off."""
    node = _one(inv, name)
    took = node.power_off()
    log(f"{name}: powered off cleanly in {took:.1f} s")


def power_loss(inv, name):
    """The plug pulled: SIGKILL to the node's systemd, every process of the node dies at once."""
    node = _one(inv, name)
    took = node.power_loss()
    log(f"{name}: power lost (all processes killed) in {took:.2f} s")


def unplug(inv, name):
    """Network cable pulled: the host end of the node's link goes down (the node keeps running)."""
    _one(inv, name)
    net.set_link(name, up=False)
    log(f"{name}: unplugged ({net.host_link(name)} down)")


def plug(inv, name):
    _one(inv, name)
    net.set_link(name, up=True)
    log(f"{name}: plugged in ({net.host_link(name)} up)")


def reflash(inv, name):
    """A fresh SD card: stop, wipe the overlay, new machine-id and host keys, same MAC/IP, boot."""
    node = _one(inv, name, must_run=False)
    started = time.monotonic()
    if node.nspawn_pid():
        node.power_off()
    node.wipe()
    up(inv, [name])
    log(f"{name}: reflashed and booted in {time.monotonic() - started:.1f} s")
