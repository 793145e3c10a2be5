"""The lab inventory, validated by the project's cluster model (_modules/cluster.py)."""

import importlib.util
import subprocess
import sys

from . import REPO, LabError
from .net import host_address

MODEL_FILE = REPO / "_modules" / "cluster.py"


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


def model():
    """The cluster model module, imported by path (no Salt needed)."""
    if not MODEL_FILE.exists():
        raise LabError(f"{MODEL_FILE} is missing: the lab validates its inventory with it")
    yaml()  # make sure the model can import it
    spec = importlib.util.spec_from_file_location("cluster_model", MODEL_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load(path):
    """The validated inventory (the mapping under ``cluster``); LabError naming every bad field."""
    mod = model()
    try:
        return mod.load_inventory(str(path))["cluster"]
    except mod.InventoryError as exc:
        raise LabError(f"invalid inventory {path}:\n" + "\n".join(exc.problems)) from exc


def etc_hosts(inv, gateway_name="labhost"):
    """/etc/hosts for a node: localhost, the host's bridge address and every node (FQDN first)."""
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\t\tlocalhost ip6-localhost ip6-loopback",
        f"{host_address(inv)}\t{gateway_name}",
    ]
    for entry in model().hosts_entries(inv):
        lines.append(f"{entry['ip']}\t{' '.join(entry['names'])}")
    return "\n".join(lines) + "\n"
