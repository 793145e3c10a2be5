"""
TFTP health (tftpd-hpa): is the service up, and does it serve the file DHCP hands out?
The check fetches that file over TFTP (a small client in the standard library, RFC 1350,
octet mode) and compares it with the file in the tree. Used by the cluster status runner.

CLI Example:

.. code-block:: bash

    salt -G roles:lanservices tftpd.status
"""

import hashlib
import logging
import os
import shlex
import socket
import struct

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "tftpd"

DEFAULTS_FILE = "/etc/default/tftpd-hpa"
SERVICE = "tftpd-hpa"

_RRQ, _DATA, _ACK, _ERROR = 1, 3, 4, 5
_BLOCK = 512


def __virtual__():
    return __virtualname__


def read_defaults(path=DEFAULTS_FILE):
    """
    The variables of a shell ``KEY="value"`` file such as /etc/default/tftpd-hpa
    (TFTP_ADDRESS, TFTP_DIRECTORY, TFTP_BOOT_FILE, ...).

    CLI Example:

    .. code-block:: bash

        salt-call tftpd.read_defaults
    """
    out = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line or line.startswith("#") or "=" not in line:
                    continue
                key, value = line.split("=", 1)
                words = shlex.split(value, comments=True)
                out[key.strip()] = words[0] if len(words) == 1 else " ".join(words)
    except OSError as exc:
        raise CommandExecutionError(f"cannot read {path}: {exc.strerror} (is the tftpd state applied?)") from exc
    return out


def fetch(filename, host="127.0.0.1", port=69, timeout=3.0, max_bytes=64 * 1024 * 1024):
    """
    Download ``filename`` over TFTP (octet mode) and return its bytes.

    CLI Example:

    .. code-block:: bash

        salt-call tftpd.fetch pxelinux.0
    """
    data = bytearray()
    expected = 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(float(timeout))
        request = struct.pack("!H", _RRQ) + filename.encode() + b"\0octet\0"
        sock.sendto(request, (host, int(port)))
        server = None
        last = None
        while True:
            try:
                packet, addr = sock.recvfrom(4 + _BLOCK + 64)
            except (TimeoutError, ConnectionRefusedError) as exc:
                if last is None or isinstance(exc, ConnectionRefusedError):
                    raise CommandExecutionError(
                        f"no TFTP answer from {host}:{port} for {filename!r} ({exc or 'timeout'})"
                    ) from exc
                sock.sendto(last, server)  # one retransmission of the last ACK
                last = None
                continue
            if server is None:
                server = addr  # the server's transfer ID (its port for this transfer)
            elif addr != server:
                continue
            opcode, number = struct.unpack("!HH", packet[:4])
            if opcode == _ERROR:
                message = packet[4:].split(b"\0", 1)[0].decode(errors="replace")
                raise CommandExecutionError(f"TFTP error {number} for {filename!r} from {host}:{port}: {message}")
            if opcode != _DATA:
                raise CommandExecutionError(f"unexpected TFTP opcode {opcode} from {host}:{port}")
            last = struct.pack("!HH", _ACK, number)
            sock.sendto(last, server)
            if number == expected:
                data += packet[4:]
                expected = (expected + 1) % 65536
                if len(data) > max_bytes:
                    raise CommandExecutionError(f"{filename!r} is larger than {max_bytes} bytes")
                if len(packet) - 4 < _BLOCK:
                    return bytes(data)


def _running(service):
    try:
        return bool(__salt__["service.status"](service))
    except (CommandExecutionError, KeyError) as exc:
        log.debug("service.status %s: %s", service, exc)
        return None


def status(host="127.0.0.1", port=None, filename=None, defaults_file=DEFAULTS_FILE, timeout=3.0):
    """
    TFTP health: ``running`` (the tftpd-hpa service), and whether the boot file DHCP hands
    out (TFTP_BOOT_FILE of /etc/default/tftpd-hpa, or ``filename``) is served identical to
    the file in the tree (``served``, ``size``, ``error``).

    CLI Example:

    .. code-block:: bash

        salt-call tftpd.status
    """
    conf = read_defaults(defaults_file)
    if port is None:
        port = int(conf.get("TFTP_ADDRESS", ":69").rsplit(":", 1)[-1] or 69)
    filename = filename or conf.get("TFTP_BOOT_FILE")
    root = conf.get("TFTP_DIRECTORY", "/srv/tftp")
    if not filename:
        raise CommandExecutionError(f"no TFTP_BOOT_FILE in {defaults_file} and no filename given")
    out = {
        "running": _running(SERVICE),
        "address": f"{host}:{port}",
        "root": root,
        "boot_file": filename,
        "served": False,
        "size": None,
        "error": None,
    }
    try:
        got = fetch(filename, host=host, port=port, timeout=timeout)
    except CommandExecutionError as exc:
        out["error"] = str(exc)
        return out
    out["size"] = len(got)
    try:
        with open(os.path.join(root, filename), "rb") as handle:
            on_disk = handle.read()
    except OSError as exc:
        out["error"] = f"{filename} is served but unreadable in {root}: {exc.strerror}"
        return out
    out["served"] = hashlib.sha256(got).digest() == hashlib.sha256(on_disk).digest()
    if not out["served"]:
        out["error"] = f"the served {filename} differs from {os.path.join(root, filename)}"
    return out
