"""The virtual lab: the cluster as systemd-nspawn nodes on one machine.

Run as ``python3 -m lab COMMAND`` from the repository root (see lab/README.md).
Standard library only (PyYAML, via the rpicluster package, reads the inventory).
"""

import os
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parent.parent

# LAB_INSTANCE names a lab beside the default one, with its own inventory (lab/inventory-NAME.yaml:
# its own subnet), state directory, bridge, cgroups and node machine names. `make test` runs the
# instance "test", so the tests never touch the cluster that `make lab` brought up.
INSTANCE = os.environ.get("LAB_INSTANCE", "")
if INSTANCE and not re.fullmatch(r"[a-z][a-z0-9]{0,3}", INSTANCE):
    raise SystemExit(f"LAB_INSTANCE={INSTANCE!r}: 1 to 4 lowercase letters or digits (interface names are short)")
_SUFFIX = f"-{INSTANCE}" if INSTANCE else ""
DEFAULT_INVENTORY = REPO / "lab" / f"inventory{_SUFFIX}.yaml"

# Everything the lab makes lives here, outside the repository. LAB_STATE_DIR is for tests of the
# lab itself; the default is what the documentation and the bootstrap rely on.
# (No instance's name starts with another's: `lab down` finds its mounts and cgroups by prefix.)
STATE = pathlib.Path(os.environ.get("LAB_STATE_DIR", f"/var/lib/rpi-cluster-{INSTANCE}lab"))

BRIDGE = f"labbr{INSTANCE or '0'}"  # short: interface names are limited to 15 characters
MACHINE_PREFIX = f"{INSTANCE}-" if INSTANCE else ""  # nspawn machine names (host links vb-MACHINE)
HTTP_PORT = 8080  # the package source (apt repository + wheelhouse), bound to the bridge only
CGROUP_PREFIX = f"rpilab{INSTANCE}-"  # per-node cgroups: /sys/fs/cgroup/{systemd,unified}/rpilab-NODE
DEFAULT_USER, DEFAULT_PASSWORD = "pi", "raspberry"  # the vanilla Raspbian login
ADMIN_USER = "piclust"  # the key-only admin the bootstrap creates (key: STATE/ssh/id_ed25519)


class LabError(Exception):
    """An error the user can act on; the message says what to do."""
