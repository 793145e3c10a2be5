"""A stand-in for the Salt bus between minions in functional tests (no master there): the
requesting minion's ``publish.publish`` is replaced by a module that hands the request to
``BUS(requester_id, tgt, fun, arg)`` of the test module; ``BUS = None``: the CA minion does not
answer. Used by the SSH and TLS CA tests (remote signing)."""


def fake_publish_module(test_module):
    """The source of the stand-in ``publish`` execution module, reading ``test_module.BUS``."""
    return f"""
import sys


def publish(tgt, fun, arg=None, **kwargs):
    bus = getattr(sys.modules.get({test_module!r}), "BUS", None)
    return bus(__opts__["id"], tgt, fun, arg) if bus else {{}}
"""
