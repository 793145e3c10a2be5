"""The virtual lab: the cluster as systemd-nspawn nodes on one machine.

Run as ``python3 -m lab COMMAND`` from the repository root (see lab/README.md).
Standard library only (PyYAML, via the rpicluster package, reads the inventory).
"""

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = REPO / "lab" / "inventory.yaml"

# Everything the lab makes lives here, outside the repository. LAB_STATE_DIR is for tests of the
# lab itself; the default is what the documentation and the bootstrap rely on.
STATE = pathlib.Path(os.environ.get("LAB_STATE_DIR", "/var/lib/rpi-cluster-lab"))

BRIDGE = "labbr0"  # short: interface names are limited to 15 characters
HTTP_PORT = 8080  # the package source (apt repository + wheelhouse), bound to the bridge only
CGROUP_PREFIX = "rpilab-"  # per-node cgroups: /sys/fs/cgroup/{systemd,unified}/rpilab-NODE
DEFAULT_USER, DEFAULT_PASSWORD = "pi", "raspberry"  # the vanilla Raspbian login
ADMIN_USER = "piclust"  # the key-only admin the bootstrap creates (key: STATE/ssh/id_ed25519)


class LabError(Exception):
    """An error the user can act on; the message says what to do."""
