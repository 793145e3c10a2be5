"""SSH from the host to the nodes.

A vanilla node takes ``pi``/``raspberry`` (through sshpass). Once the bootstrap has closed password
logins, the lab logs in as the admin ``piclust`` with the lab's key STATE/ssh/id_ed25519 (the
bootstrap installs its .pub as the admin key). Which one works is remembered per node.

The admin reaches every node but the deployer through the deployer (ssh's ProxyCommand, what
``ProxyJump`` does), as the README tells a real admin to: the nodes' firewalls accept SSH from
cluster nodes only, and the lab host is not one.
"""

import functools
import os
import shlex
import subprocess

from . import ADMIN_USER, DEFAULT_INVENTORY, DEFAULT_PASSWORD, DEFAULT_USER, STATE, LabError
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


@functools.lru_cache(maxsize=1)
def deployer_ip():
    """The deployer's address in the lab inventory."""
    from rpicluster import views  # pylint: disable=import-outside-toplevel

    from .inventory import load  # pylint: disable=import-outside-toplevel

    inv = load(DEFAULT_INVENTORY)
    return inv["nodes"][views.deployer(inv)]["ip"]


def _admin_opts():
    return ["-i", str(KEY), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]


def through_deployer(ip):
    """ssh options that reach ``ip`` through the deployer as the admin (none for the deployer)."""
    jump = deployer_ip()
    if ip == jump:
        return []
    hop = ["ssh", *OPTS, *_admin_opts(), "-W", "%h:%p", f"{ADMIN_USER}@{jump}"]
    return ["-o", f"ProxyCommand={shlex.join(hop)}"]


def as_pi(ip, cmd=(), tty=False, via_deployer=False):
    """argv: ssh as the vanilla user with the default password (through the deployer if asked:
    a node whose firewall is up takes SSH from cluster nodes only)."""
    return [
        "sshpass",
        "-p",
        DEFAULT_PASSWORD,
        "ssh",
        *OPTS,
        *(through_deployer(ip) if via_deployer else []),
        *(["-t"] if tty else []),
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
        f"{DEFAULT_USER}@{ip}",
        *cmd,
    ]


def as_admin(ip, cmd=(), tty=False):
    """argv: ssh as the admin with the lab key, through the deployer unless ``ip`` is it."""
    return [
        "ssh",
        *OPTS,
        *through_deployer(ip),
        *(["-t"] if tty else []),
        *_admin_opts(),
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
    errors = []
    for user in order:  # both, whatever the first said: pi's direct SSH times out once the firewall is up
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
        errors.append(f"{user}: {(last.stderr or '').strip() or 'authentication refused'}")
    raise LabError(
        f"cannot log in on {node.name} ({node.spec['ip']}) as {DEFAULT_USER} (password) nor as "
        f"{ADMIN_USER} (key {KEY}, through the deployer): {'; '.join(errors)}"
    )


def exec_ssh(node, cmd):
    """Replace this process with ssh to ``node`` (a shell when ``cmd`` is empty)."""
    user = login_method(node)
    tty = not cmd and os.isatty(0)
    argv = METHODS[user](node.spec["ip"], list(cmd), tty=tty)
    os.execvp(argv[0], argv)
