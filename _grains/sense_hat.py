"""
Sense HAT grains: is a Raspberry Pi Sense HAT plugged in?

A HAT (Hardware Attached on Top) carries an ID EEPROM; at boot the firmware reads it and
exposes its strings in the device tree under ``hat/`` (the HAT specification,
https://github.com/raspberrypi/hats): ``product``, ``vendor``, ``uuid``, ``product_id`` and
``product_ver``, each a NUL-terminated string. The Sense HAT's EEPROM says product
``Sense HAT``, vendor ``Raspberry Pi``.

Grains
------

``sense_hat``
    ``True`` when the HAT in the device tree is a Sense HAT (product ``Sense HAT``, vendor
    starting with ``Raspberry Pi``; both compared without regard to case), ``False``
    otherwise: no HAT, another HAT, no device tree (not a Pi, a container), unreadable data.
    Always set, so states can test it without a default.
``sense_hat_product``
    the product string of the HAT's EEPROM, whatever HAT it is (e.g. ``Sense HAT``,
    ``Pimoroni Unicorn HAT``); only set when a HAT with a product string is present.

Example, a Raspberry Pi 4 with a Sense HAT:

.. code-block:: yaml

    sense_hat: true
    sense_hat_product: Sense HAT

Target with, for example, ``salt -G 'sense_hat:True' test.ping``. The ``sensehat`` state
(salt/sensehat) drives the LED matrix only where this grain is true.

Where the data comes from (a module constant, so tests can point it elsewhere):

- ``HAT_DIRS``: tried in order, the first one holding a ``product`` wins (``/proc/device-tree``
  is a link to ``/sys/firmware/devicetree/base`` on current kernels).

A HAT plugged in after boot is not seen (the firmware reads the EEPROM at boot only). The
module never raises: anything unexpected means ``sense_hat: False``, logged at debug level.
Only the standard library is used.
"""

import logging

log = logging.getLogger(__name__)

__virtualname__ = "sense_hat"

HAT_DIRS = ("/proc/device-tree/hat", "/sys/firmware/devicetree/base/hat")

SENSE_HAT_PRODUCT = "sense hat"
SENSE_HAT_VENDOR_PREFIX = "raspberry pi"


def __virtual__():
    # Always loaded: sense_hat is False wherever there is no device tree at all.
    return __virtualname__


def _read_string(path):
    """
    The first NUL-terminated string of device-tree property ``path``, stripped; None when
    the file cannot be read or holds nothing.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        log.debug("sense_hat grains: cannot read %s: %s", path, exc)
        return None
    text = data.decode("utf-8", errors="replace").split("\x00", 1)[0].strip()
    return text or None


def _hat():
    """
    ``{"product": ..., "vendor": ...}`` of the first HAT directory with a product, or None.
    """
    for base in HAT_DIRS:
        product = _read_string(f"{base}/product")
        if product:
            return {"product": product, "vendor": _read_string(f"{base}/vendor") or ""}
    return None


def sense_hat():
    """
    Return the Sense HAT grains (see the module documentation).

    CLI Example:

    .. code-block:: bash

        salt '*' grains.item sense_hat sense_hat_product
    """
    try:
        hat = _hat()
        if hat is None:
            log.debug("sense_hat grains: no HAT EEPROM in %s", ", ".join(HAT_DIRS))
            return {"sense_hat": False}
        found = hat["product"].casefold() == SENSE_HAT_PRODUCT and hat["vendor"].casefold().startswith(
            SENSE_HAT_VENDOR_PREFIX
        )
        return {"sense_hat": found, "sense_hat_product": hat["product"]}
    except Exception as exc:  # pylint: disable=broad-except
        # A grain function that raises sets nothing (the loader only logs it): sense_hat
        # must always be defined for the state.
        log.debug("sense_hat grains: unexpected error: %s", exc, exc_info=True)
        return {"sense_hat": False}
