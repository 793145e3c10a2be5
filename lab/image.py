"""The base image: Debian bookworm made to look like a vanilla Raspberry Pi OS install.

Built with mmdebstrap from the host's own Debian mirror, cached in STATE/images/base-<hash>,
where <hash> covers every recipe input below: changing the recipe builds a new image.
Nothing node-specific is in it (no host keys, no machine-id, no addresses): the node's
overlay gets those (lab/node.py).
"""

import hashlib
import json
import shutil
import time

from . import DEFAULT_PASSWORD, DEFAULT_USER, STATE, LabError
from .host import debian_sources, ensure_tools, log, run

SUITE = "bookworm"
INCLUDE = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "libpam-systemd",
    "openssh-server",
    "openssh-sftp-server",
    "sudo",
    "python3",
    "python3-venv",
    "iproute2",
    "iputils-ping",
    "dnsutils",
    "isc-dhcp-client",
    "netbase",
    "procps",
    "ca-certificates",
    "less",
]

# Run on the host with $1 = the image root (sh -e). Every line is part of the cache key.
CUSTOMIZE = rf"""
R="$1"
chroot "$R" useradd -m -s /bin/bash -G sudo,adm,users,dialout,plugdev {DEFAULT_USER}
echo '{DEFAULT_USER}:{DEFAULT_PASSWORD}' | chroot "$R" chpasswd
echo '{DEFAULT_USER} ALL=(ALL) NOPASSWD: ALL' > "$R/etc/sudoers.d/010_{DEFAULT_USER}-nopasswd"
chmod 0440 "$R/etc/sudoers.d/010_{DEFAULT_USER}-nopasswd"
sed -i -e 's/^#\?PasswordAuthentication .*/PasswordAuthentication yes/' \
       -e 's/^#\?PermitRootLogin .*/PermitRootLogin no/' "$R/etc/ssh/sshd_config"
grep -q '^PasswordAuthentication yes' "$R/etc/ssh/sshd_config"
grep -q '^PermitRootLogin no' "$R/etc/ssh/sshd_config"
rm -f "$R"/etc/ssh/ssh_host_*
systemctl --root="$R" enable systemd-networkd.service ssh.service
: > "$R/etc/machine-id"
rm -f "$R/var/lib/dbus/machine-id"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$R/etc/hosts"
rm -f "$R/etc/resolv.conf"; echo 'nameserver 127.0.0.1' > "$R/etc/resolv.conf"
echo '# set per node by the lab (the lab package source on the bridge)' > "$R/etc/apt/sources.list"
rm -f "$R"/etc/apt/sources.list.d/*
echo 'raspberrypi' > "$R/etc/hostname"
mkdir -p "$R/var/log/journal"
mkdir -p "$R/etc/systemd/journald.conf.d"
printf '[Journal]\nSystemMaxUse=32M\n' > "$R/etc/systemd/journald.conf.d/lab.conf"
echo 'Raspberry Pi reference (rpi-cluster lab: Debian bookworm in systemd-nspawn)' > "$R/etc/rpi-issue"
"""


def recipe_key():
    recipe = {"suite": SUITE, "variant": "minbase", "include": INCLUDE, "customize": CUSTOMIZE, "v": 1}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def path():
    return STATE / "images" / f"base-{recipe_key()}"


def current():
    """The built image for the current recipe, or None."""
    root = path()
    return root if (root.parent / f"{root.name}.ok").exists() else None


def build(force=False):
    """Build the base image unless it is cached; return its path."""
    root = path()
    if current() and not force:
        log(f"base image cached: {root}")
        return root
    ensure_tools("mmdebstrap", "systemd-nspawn")
    tmp = root.parent / f"{root.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    (root.parent / f"{root.name}.ok").unlink(missing_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    started = time.monotonic()
    log(f"building the base image (mmdebstrap {SUITE}, {len(INCLUDE)} packages) ...")
    logfile = STATE / "logs" / "mmdebstrap.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "w", encoding="utf-8") as out:
        proc = run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--mode=root",
                "--include=" + ",".join(INCLUDE),
                SUITE,
                str(tmp),
                *debian_sources(),
            ],
            check=False,
            capture=False,
            stdout=out,
            stderr=out,
        )
    if proc.returncode != 0:
        tail = "\n".join(logfile.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
        shutil.rmtree(tmp, ignore_errors=True)
        raise LabError(f"mmdebstrap failed (exit {proc.returncode}, full log {logfile}):\n{tail}")
    run(["sh", "-ec", CUSTOMIZE, "customize", str(tmp)], what="customizing the base image")
    tmp.rename(root)
    (root.parent / f"{root.name}.ok").write_text(time.strftime("%F %T\n"), encoding="utf-8")
    log(f"base image built in {time.monotonic() - started:.0f} s: {root}")
    return root


def prune(in_use):
    """Remove images of older recipes that no node uses."""
    for old in (STATE / "images").glob("base-*"):
        if old.name.endswith(".ok") or old.name == path().name or str(old) in in_use:
            continue
        log(f"removing old base image {old}")
        (old.parent / f"{old.name}.ok").unlink(missing_ok=True)
        shutil.rmtree(old, ignore_errors=True)
