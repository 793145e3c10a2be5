"""SSH from the host to the nodes.

A vanilla node takes ``pi``/``raspberry`` (through sshpass). Once the bootstrap has closed password
logins, the lab logs in as the admin ``piclust`` with the lab's key STATE/ssh/id_ed25519 (the
bootstrap installs its .pub as the admin key). Which one works is remembered per node.
"""

import os
import subprocess

from . import ADMIN_USER, DEFAULT_PASSWORD, DEFAULT_USER, STATE, LabError
from .host import ensure_tools, run

KEY = STATE / "ssh" / "id_ed25519"
OPTS = [
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=10",
    "-o",
    "ServerAliveInterval=5",
    "-o",
    "ServerAliveCountMax=6",
]


def ensure_key():
    """The lab's admin key pair (made once, kept across rebuilds)."""
    if not KEY.exists():
        KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rpi-cluster-lab-admin", "-f", str(KEY)],
            what="ssh-keygen (lab admin key)",
        )
    return KEY


def as_pi(ip, cmd=(), tty=False):
    """argv: ssh as the vanilla user with the default password."""
    return [
        "sshpass",
        "-p",
        DEFAULT_PASSWORD,
        "ssh",
        *OPTS,
        *(["-t"] if tty else []),
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        f"{DEFAULT_USER}@{ip}",
        *cmd,
    ]


def as_admin(ip, cmd=(), tty=False):
    """argv: ssh as the admin with the lab key."""
    return [
        "ssh",
        *OPTS,
        *(["-t"] if tty else []),
        "-i",
        str(KEY),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        f"{ADMIN_USER}@{ip}",
        *cmd,
    ]


METHODS = {DEFAULT_USER: as_pi, ADMIN_USER: as_admin}


def auth_failed(proc):
    return proc.returncode == 5 or (proc.returncode == 255 and "Permission denied" in (proc.stderr or ""))


def login_method(node):
    """The user that can log in on ``node`` now (probes; remembers the answer in the node's dir)."""
    ensure_tools("sshpass", "ssh")
    ensure_key()
    memo = node.dir / "login"
    first = memo.read_text(encoding="ascii").strip() if memo.exists() else DEFAULT_USER
    order = [first] + [m for m in METHODS if m != first]
    last = None
    for user in order:
        last = subprocess.run(
            METHODS[user](node.spec["ip"], ["true"]),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if last.returncode == 0:
            if node.dir.is_dir():
                memo.write_text(user + "\n", encoding="ascii")
            return user
        if not auth_failed(last):
            break
    detail = (last.stderr or "").strip() if last else ""
    raise LabError(
        f"cannot log in on {node.name} ({node.spec['ip']}) as {DEFAULT_USER} (password) nor as "
        f"{ADMIN_USER} (key {KEY}): {detail or 'authentication refused'}"
    )


def exec_ssh(node, cmd):
    """Replace this process with ssh to ``node`` (a shell when ``cmd`` is empty)."""
    user = login_method(node)
    tty = not cmd and os.isatty(0)
    argv = METHODS[user](node.spec["ip"], list(cmd), tty=tty)
    os.execvp(argv[0], argv)
