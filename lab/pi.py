"""Fake Raspberry Pi hardware: a device tree with the inventory model, bound over /sys/firmware.

A real Pi exposes ``/sys/firmware/devicetree/base/{model,serial-number,system/linux,revision}``
(``/proc/device-tree`` links there). The lab writes the same files per node and nspawn binds them
read-only at /sys/firmware, so grains that read the device tree (_grains/rpi.py) see a Pi.
"""

import pathlib

# model string (as the inventory spells it) -> revision code (Raspberry Pi revision codes table)
REVISIONS = {
    "Raspberry Pi Model B Plus Rev 1.2": "0010",
    "Raspberry Pi 2 Model B Rev 1.1": "a01041",
    "Raspberry Pi 3 Model B Rev 1.2": "a02082",
    "Raspberry Pi 3 Model B Plus Rev 1.3": "a020d3",
    "Raspberry Pi 4 Model B Rev 1.4": "d03114",
}


def serial(mac):
    """Pi serial number: its last three bytes are the last three of the (b8:27:eb) MAC."""
    return "00000000" + "10" + mac.replace(":", "")[-6:]


def write_device_tree(firmware_dir, model, mac):
    """Write <firmware_dir>/devicetree/base/...; return firmware_dir (the bind source)."""
    base = pathlib.Path(firmware_dir) / "devicetree" / "base"
    (base / "system").mkdir(parents=True, exist_ok=True)
    (base / "model").write_bytes(model.encode() + b"\0")
    (base / "serial-number").write_bytes(serial(mac).encode() + b"\0")
    code = REVISIONS.get(model)
    rev = base / "system" / "linux,revision"
    if code:
        rev.write_bytes(int(code, 16).to_bytes(4, "big"))
    else:
        rev.unlink(missing_ok=True)
    return pathlib.Path(firmware_dir)
