"""
Raspberry Pi hardware grains.

Reads the board model from the device tree, the revision code and the serial
number from ``/proc/cpuinfo`` (falling back to the device tree), and decodes the
revision code as Raspberry Pi Ltd documents it ("Raspberry Pi revision codes",
https://www.raspberrypi.com/documentation/computers/raspberry-pi.html#raspberry-pi-revision-codes).

Grains
------

On a Raspberry Pi this module sets three flat grains, handy for targeting,

``rpi_model``
    the device-tree model string, e.g. ``Raspberry Pi 4 Model B Rev 1.4``
``rpi_revision``
    the revision code exactly as the firmware reports it (lower-case hex), e.g.
    ``d03114``, or ``1000002`` for an old-style board whose warranty bit is set
``rpi_serial``
    the board serial number, e.g. ``10000000a744c93f``

and one dictionary, ``rpi``, holding the same three values (``model``,
``revision``, ``serial``) plus the decoded revision code:

``revision_style``
    ``new`` (bit 23 set: a bit-field code, Raspberry Pi 2 and later) or ``old``
    (the sequential codes ``0002`` to ``0015`` of the first boards)
``type``
    the board type as the documentation names it: ``A``, ``B``, ``A+``, ``B+``,
    ``2B``, ``CM1``, ``3B``, ``Zero``, ``CM3``, ``Zero W``, ``3B+``, ``3A+``,
    ``CM3+``, ``4B``, ``Zero 2 W``, ``400``, ``CM4``, ``CM4S``, ``5``, ``CM5``,
    ``500/500+``, ``CM5 Lite``, ``CM0``
``memory_mb``
    installed memory in MB (integer): 256, 512, 1024, 2048, 4096, 8192, 16384
``manufacturer``
    ``Sony UK``, ``Egoman``, ``Embest``, ``Sony Japan``, ``Stadium`` or ``Qisda``
``processor``
    ``BCM2835``, ``BCM2836``, ``BCM2837``, ``BCM2711`` or ``BCM2712`` (decoded
    from the revision code: the ``Hardware`` line of ``/proc/cpuinfo`` says
    ``BCM2835`` on every board and is not used for this)
``board_revision``
    the PCB revision as a string, e.g. ``1.4``
``warranty_void``
    ``True`` when the firmware reports the warranty bit (set by overvolting):
    bit 25 of a new-style code, the ``1000`` prefix (bit 24) of an old-style one

Example, a Raspberry Pi 4 Model B with 8 GB (revision code ``d03114``):

.. code-block:: yaml

    rpi_model: Raspberry Pi 4 Model B Rev 1.4
    rpi_revision: d03114
    rpi_serial: 10000000a744c93f
    rpi:
      model: Raspberry Pi 4 Model B Rev 1.4
      revision: d03114
      serial: 10000000a744c93f
      revision_style: new
      type: 4B
      memory_mb: 8192
      manufacturer: Sony UK
      processor: BCM2711
      board_revision: '1.4'
      warranty_void: false

Target with, for example, ``salt -G 'rpi:type:4B' test.ping`` or
``salt -G 'rpi_model:Raspberry Pi 3*' test.ping``.

Missing data means missing grains, never an error: on a machine that is not a
Raspberry Pi (x86, another ARM board) the module returns no grain at all; a
value that cannot be read or decoded is simply left out (for example
``memory_mb`` for old-style code ``0015``, which shipped with 256 or 512 MB).
A machine counts as a Raspberry Pi when its model starts with ``Raspberry Pi``
or, on old kernels without a device tree, when ``/proc/cpuinfo`` names a
Broadcom Pi SoC (``BCM2708`` ... ``BCM2712``, ``BCM2835`` ... ``BCM2837``).

Where the data comes from (module constants, so tests can point them elsewhere):

- ``CPUINFO_PATH``: the ``Revision``, ``Serial``, ``Model`` and ``Hardware`` lines
- ``DEVICE_TREE_DIRS``: tried in order; in each, ``model`` (NUL-terminated
  string), ``serial-number`` (NUL-terminated string, used when cpuinfo has no
  serial) and ``system/linux,revision`` (32-bit big-endian, used when cpuinfo
  has no ``Revision`` line, as with some arm64 kernels)

Only the standard library is used.
"""

import logging
import sys

log = logging.getLogger(__name__)

__virtualname__ = "rpi"

CPUINFO_PATH = "/proc/cpuinfo"
DEVICE_TREE_DIRS = ("/proc/device-tree", "/sys/firmware/devicetree/base")

# New-style revision code: NOQuuuWuFMMMCCCCPPPPTTTTTTTTRRRR
NEW_STYLE_FLAG = 1 << 23
NEW_STYLE_WARRANTY_BIT = 1 << 25
OLD_STYLE_WARRANTY_BIT = 1 << 24  # the "1000" prefix of e.g. 1000002
DT_REVISION_BYTES = 4  # system/linux,revision is one big-endian u32

NEW_STYLE_TYPES = {
    0x00: "A",
    0x01: "B",
    0x02: "A+",
    0x03: "B+",
    0x04: "2B",
    0x05: "Alpha",
    0x06: "CM1",
    0x08: "3B",
    0x09: "Zero",
    0x0A: "CM3",
    0x0C: "Zero W",
    0x0D: "3B+",
    0x0E: "3A+",
    0x0F: "Internal use only",
    0x10: "CM3+",
    0x11: "4B",
    0x12: "Zero 2 W",
    0x13: "400",
    0x14: "CM4",
    0x15: "CM4S",
    0x16: "Internal use only",
    0x17: "5",
    0x18: "CM5",
    0x19: "500/500+",
    0x1A: "CM5 Lite",
    0x1B: "CM0",
}

# MMM = 7 means "other" (read the size from the firmware): left out.
NEW_STYLE_MEMORY_MB = {
    0: 256,
    1: 512,
    2: 1024,
    3: 2048,
    4: 4096,
    5: 8192,
    6: 16384,
}

NEW_STYLE_MANUFACTURERS = {
    0: "Sony UK",
    1: "Egoman",
    2: "Embest",
    3: "Sony Japan",
    4: "Embest",
    5: "Stadium",
}

NEW_STYLE_PROCESSORS = {
    0: "BCM2835",
    1: "BCM2836",
    2: "BCM2837",
    3: "BCM2711",
    4: "BCM2712",
}

# Old-style codes: (type, board revision, memory in MB or None, manufacturer).
# Every old-style board has a BCM2835.
OLD_STYLE_CODES = {
    0x0002: ("B", "1.0", 256, "Egoman"),
    0x0003: ("B", "1.0", 256, "Egoman"),
    0x0004: ("B", "2.0", 256, "Sony UK"),
    0x0005: ("B", "2.0", 256, "Qisda"),
    0x0006: ("B", "2.0", 256, "Egoman"),
    0x0007: ("A", "2.0", 256, "Egoman"),
    0x0008: ("A", "2.0", 256, "Sony UK"),
    0x0009: ("A", "2.0", 256, "Qisda"),
    0x000D: ("B", "2.0", 512, "Egoman"),
    0x000E: ("B", "2.0", 512, "Sony UK"),
    0x000F: ("B", "2.0", 512, "Egoman"),
    0x0010: ("B+", "1.2", 512, "Sony UK"),
    0x0011: ("CM1", "1.0", 512, "Sony UK"),
    0x0012: ("A+", "1.1", 256, "Sony UK"),
    0x0013: ("B+", "1.2", 512, "Embest"),
    0x0014: ("CM1", "1.0", 512, "Embest"),
    0x0015: ("A+", "1.1", None, "Embest"),  # 256 MB or 512 MB
}
OLD_STYLE_PROCESSOR = "BCM2835"

# The "Hardware" line of /proc/cpuinfo on Raspberry Pi kernels.
PI_HARDWARE = frozenset(
    (
        "BCM2708",
        "BCM2709",
        "BCM2710",
        "BCM2711",
        "BCM2712",
        "BCM2835",
        "BCM2836",
        "BCM2837",
    )
)
MODEL_PREFIX = "Raspberry Pi"


def __virtual__():
    if sys.platform.startswith("linux"):
        return __virtualname__
    return (False, "rpi grains: Raspberry Pi hardware is only detected on Linux")


def _read_bytes(path):
    """
    Return the content of ``path``, or None when it cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        log.debug("rpi grains: cannot read %s: %s", path, exc)
        return None


def _dt_string(data):
    """
    Decode a device-tree string property: the first NUL-terminated string.
    """
    text = data.decode("utf-8", errors="replace").split("\x00", 1)[0].strip()
    return text or None


def _device_tree(name):
    """
    Return the raw bytes of device-tree property ``name`` from the first
    directory in DEVICE_TREE_DIRS that has it, or None.
    """
    for base in DEVICE_TREE_DIRS:
        data = _read_bytes(f"{base}/{name}")
        if data:
            return data
    return None


def _parse_cpuinfo(text):
    """
    Return the ``key: value`` lines of a cpuinfo text as a dict (the last
    occurrence of a key wins; the board lines appear once, after the CPUs).
    """
    info = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _decode_revision(code):
    """
    Decode a revision code (hex string as in /proc/cpuinfo) into the ``rpi``
    grain fields. Unknown parts are left out; an unparsable code gives {}.
    """
    try:
        value = int(code, 16)
    except (TypeError, ValueError):
        log.debug("rpi grains: revision code %r is not hexadecimal", code)
        return {}

    if value & NEW_STYLE_FLAG:
        decoded = {
            "revision_style": "new",
            "type": NEW_STYLE_TYPES.get((value >> 4) & 0xFF),
            "memory_mb": NEW_STYLE_MEMORY_MB.get((value >> 20) & 0x7),
            "manufacturer": NEW_STYLE_MANUFACTURERS.get((value >> 16) & 0xF),
            "processor": NEW_STYLE_PROCESSORS.get((value >> 12) & 0xF),
            "board_revision": f"1.{value & 0xF}",
            "warranty_void": bool(value & NEW_STYLE_WARRANTY_BIT),
        }
    else:
        decoded = {
            "revision_style": "old",
            "warranty_void": bool(value & OLD_STYLE_WARRANTY_BIT),
        }
        known = OLD_STYLE_CODES.get(value & ~OLD_STYLE_WARRANTY_BIT)
        if known:
            board_type, board_revision, memory_mb, manufacturer = known
            decoded.update(
                {
                    "type": board_type,
                    "memory_mb": memory_mb,
                    "manufacturer": manufacturer,
                    "processor": OLD_STYLE_PROCESSOR,
                    "board_revision": board_revision,
                }
            )
        else:
            log.debug(
                "rpi grains: old-style revision code %r is not in the table", code
            )
    return {key: val for key, val in decoded.items() if val is not None}


def _revision(cpuinfo):
    code = cpuinfo.get("Revision", "").lower()
    if code:
        return code
    data = _device_tree("system/linux,revision")
    if data and len(data) == DT_REVISION_BYTES:
        return f"{int.from_bytes(data, 'big'):04x}"
    return None


def _serial(cpuinfo):
    serial = cpuinfo.get("Serial", "").lower()
    # Kernels that do not know the serial print zeros: treat that as missing.
    if serial and serial.strip("0"):
        return serial
    data = _device_tree("serial-number")
    if data:
        serial = _dt_string(data)
        if serial and serial.strip("0"):
            return serial.lower()
    return None


def raspberry_pi():
    """
    Return the Raspberry Pi grains (see the module documentation), or {} when
    this machine is not a Raspberry Pi or nothing can be read.

    CLI Example:

    .. code-block:: bash

        salt '*' grains.item rpi rpi_model rpi_revision rpi_serial
    """
    raw = _read_bytes(CPUINFO_PATH)
    cpuinfo = _parse_cpuinfo(raw.decode("utf-8", errors="replace")) if raw else {}

    data = _device_tree("model")
    model = (_dt_string(data) if data else None) or cpuinfo.get("Model") or None

    is_pi = bool(model and model.startswith(MODEL_PREFIX)) or (
        cpuinfo.get("Hardware", "").upper() in PI_HARDWARE
    )
    if not is_pi:
        log.debug("rpi grains: not a Raspberry Pi (model %r), no grains set", model)
        return {}

    rpi = {"model": model, "revision": _revision(cpuinfo), "serial": _serial(cpuinfo)}
    if rpi["revision"]:
        rpi.update(_decode_revision(rpi["revision"]))
    rpi = {key: val for key, val in rpi.items() if val is not None}

    grains = {
        f"rpi_{key}": rpi[key] for key in ("model", "revision", "serial") if key in rpi
    }
    if rpi:
        grains["rpi"] = rpi
    return grains
