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


def minion_loaders(salt_factories, minion_id, overrides, made, base_name):
    """Loaders of a minion built from salt-factories' config with ``overrides``, kept in ``made``
    (the fixture resets them at teardown)."""
    from saltfactories.utils.functional import Loaders  # pylint: disable=import-outside-toplevel

    opts = salt_factories.salt_minion_daemon(minion_id, overrides=overrides).config.copy()
    made.append(Loaders(opts, loaded_base_name=f"{base_name}.{minion_id}"))
    return made[-1]


def as_ca_minion(loaders):
    """The CA minion's pillar masked as a real minion holds it (pillar.get hands out copies): the
    signing module's pop() of "minions" must not change the policies for the next request."""
    import salt.utils.secret  # pylint: disable=import-outside-toplevel

    loaders.opts["pillar"] = salt.utils.secret.hide(loaders.opts["pillar"])
    return loaders
