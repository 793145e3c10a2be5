"""The lab inventory, validated by the project's cluster model (the rpicluster package)."""

import subprocess
import sys

from rpicluster import model, views

from . import LabError
from .net import host_address


def yaml():
    """PyYAML: from this Python, else Debian's python3-yaml (installed when missing)."""
    try:
        import yaml as mod  # pylint: disable=import-outside-toplevel

        return mod
    except ImportError:
        pass
    dist = "/usr/lib/python3/dist-packages"
    if dist not in sys.path:
        sys.path.append(dist)
    try:
        import yaml as mod  # pylint: disable=import-outside-toplevel

        return mod
    except ImportError:
        subprocess.run(
            ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "python3-yaml"],
            check=False,
            capture_output=True,
        )
    try:
        import yaml as mod  # pylint: disable=import-outside-toplevel

        return mod
    except ImportError as exc:
        raise LabError("PyYAML is missing: apt-get install python3-yaml (or pip install PyYAML)") from exc


def load(path):
    """The validated inventory (the mapping under ``cluster``); LabError naming every bad field."""
    yaml()  # make sure the model can import it
    try:
        return model.load_inventory(str(path))["cluster"]
    except model.InventoryError as exc:
        raise LabError(f"invalid inventory {path}:\n" + "\n".join(exc.problems)) from exc


def etc_hosts(inv, gateway_name="labhost"):
    """/etc/hosts for a node: localhost, the host's bridge address and every node (FQDN first)."""
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\t\tlocalhost ip6-localhost ip6-loopback",
        f"{host_address(inv)}\t{gateway_name}",
    ]
    for entry in views.hosts_entries(inv):
        lines.append(f"{entry['ip']}\t{' '.join(entry['names'])}")
    return "\n".join(lines) + "\n"
