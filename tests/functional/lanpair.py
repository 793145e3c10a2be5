"""Helpers of the BIND and keepalived functional tests.

- ``lan_node``: one lanservices node of the project inventory (``alpha`` or ``beta``) as a
  ``nodefs.Node``: its ``bind`` and ``keepalived`` states write their real paths in the node's
  files (overlays in a private mount namespace), install the packages (on the test host
  already) and manage the services (systemctl mocked).
- ``Pair``: two network namespaces, ``alpha`` and ``beta``, joined by a veth link (``eth0`` in
  each) carrying the nodes' inventory addresses, where the rendered configs run with the real
  named and keepalived, in the nodes' files (``Node.wrap``). Nothing leaves the namespaces; the
  host's network is not touched.
- ``netns_argv``: a daemon that enters a network namespace itself (``keepalived -s``), in a
  node's files; ``call_beside``: a change made in a node's files exactly where a running daemon
  of the node reads them.
- ``Daemon``: a foreground daemon in a namespace, with its log, stopped (or killed) by its pid.
"""

import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

from tests.functional import nodefs
from tests.functional.lannet import Daemon, _ip  # one netns daemon helper for every LAN test

HAVE_NETNS = os.geteuid() == 0 and shutil.which("ip") is not None
NAMED = shutil.which("named") or "/usr/sbin/named"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"


@contextlib.contextmanager
def scratch_root(name):
    """A node's root (``nodefs``: the upper directories of its files), /tmp/rpic-<name>-XXXX,
    in a traversable (0755) directory, so that named, which runs as ``bind`` in the node's
    files, reaches what the states wrote there (pytest's own tmp dirs are 0700)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix=f"rpic-{name}-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def lan_node(salt_factories, name, root, secrets_dir, bind=None, keepalived=None, grains=None, inventory=None):
    """Node ``name`` (a ``nodefs.Node``, its files under ``root``) with the lanservices role;
    ``bind`` / ``keepalived`` add to those services' lookups. The zone serials are not asked
    from running servers (``serial_from_servers``): none runs when the states are applied."""
    return nodefs.make_node(
        salt_factories, name, root, secrets_dir,
        grains={"roles": ["lanservices"], **(grains or {})},
        inventory=inventory,
        bind={"serial_from_servers": False, **(bind or {})},
        keepalived={**(keepalived or {})},
    )


def netns_argv(ns, argv):
    """``argv`` given ``/run/netns/<ns>`` (for a daemon that enters network namespace ``ns``
    itself, ``keepalived -s``): inside a node's files (``Node.wrap``) /run is the node's overlay,
    where the host's namespace handle is a plain file, so the handle is bound there again from
    the test process's view of /run."""
    handle = f"/run/netns/{ns}"
    bind = f"mount --no-canonicalize --bind /proc/{os.getpid()}/root{handle} {handle}"
    return ["sh", "-c", f'{bind} && exec "$@"', "netns", *map(str, argv)]


class _Joined(nodefs.NodeFs):
    """A node's files as a running process of the node sees them: ``call`` joins that
    process's mount namespace instead of mounting the overlays again."""

    def __init__(self, root, pid):  # pylint: disable=super-init-not-called  (the node's dirs exist)
        self.root = pathlib.Path(root)
        self.pid = pid

    def enter(self):
        with open(f"/proc/{self.pid}/ns/mnt", "rb") as target:
            if nodefs._libc.setns(target.fileno(), nodefs.CLONE_NEWNS) != 0:  # pylint: disable=protected-access
                raise OSError(nodefs.ctypes.get_errno(), f"setns(mnt of {self.pid})")


def call_beside(node, daemon, fn):
    """``fn(loaders)`` of ``node`` in the files exactly as ``daemon`` (started through
    ``node.wrap``) sees them: its own mount namespace. Each ``node.wrap`` or ``node.call``
    mounts the node's overlays afresh, and a file replaced through one mount can stay stale in
    another (overlayfs keeps its looked-up entries): a change a running daemon must read (a
    zone file, then ``rndc reload``) is made where the daemon is, as on a node."""
    return _Joined(node.root, daemon.proc.pid).call(node.config, fn)


def changed(ret):
    """The changes of a state run: ``{state id: changes}`` of the states that changed something."""
    return {sid: r["changes"] for sid, r in ret.raw.items() if r["changes"]}


def failed(ret):
    return {sid: r["comment"] for sid, r in ret.raw.items() if r["result"] is False}


class Pair:
    """Namespaces ``<prefix>-alpha`` and ``<prefix>-beta`` joined by a veth pair (``eth0`` in each)."""

    def __init__(self, prefix, addresses, prefixlen):
        self.ns = {node: f"{prefix}-{node}" for node in addresses}
        self.addresses = addresses
        self.prefixlen = prefixlen
        self.daemons = []

    def __enter__(self):
        try:
            a, b = list(self.ns)
            for node in self.ns:
                _ip("netns", "add", self.ns[node])
            _ip("link", "add", "rpic-va", "netns", self.ns[a], "type", "veth", "peer", "name", "rpic-vb",
                "netns", self.ns[b])
            for node, link in ((a, "rpic-va"), (b, "rpic-vb")):
                ns = self.ns[node]
                _ip("-n", ns, "link", "set", link, "name", "eth0")
                _ip("-n", ns, "addr", "add", f"{self.addresses[node]}/{self.prefixlen}", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for daemon in reversed(self.daemons):
            daemon.stop()
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def cmd(self, name, *args, node=None):
        """``args`` in namespace ``name``; in ``node``'s files (``Node.wrap``) when given."""
        return ["ip", "netns", "exec", self.ns[name], *(node.wrap(args) if node else args)]

    def run(self, name, *args, node=None, timeout=30):
        return subprocess.run(self.cmd(name, *args, node=node), capture_output=True, text=True, timeout=timeout,
                              check=False)

    def start(self, name, args, log, node=None):
        """A daemon in namespace ``name``, in ``node``'s files when given (its configs name the
        node's real paths, /etc/bind/...)."""
        daemon = Daemon(self.cmd(name, *args, node=node), log)
        self.daemons.append(daemon)
        return daemon

    def dig(self, name, *args):
        """``dig +short`` from inside ``name``; returns stdout lines."""
        res = self.run(name, "dig", "+time=1", "+tries=1", "+short", *args)
        return res.stdout.splitlines()

    def addresses_of(self, name):
        res = self.run(name, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
        return [line.split()[3].split("/")[0] for line in res.stdout.splitlines()]

    def salt_stub(self, name, node=None):
        """A ``__salt__`` for a module loaded by path whose commands must run inside namespace
        ``name`` (and ``node``'s files, when given)."""

        def run_all(cmd, python_shell=False, **_kwargs):
            assert python_shell is False
            res = self.run(name, *cmd, node=node)
            return {"retcode": res.returncode, "stdout": res.stdout.strip(), "stderr": res.stderr.strip()}

        return {"cmd.run_all": run_all, "cmd.which": shutil.which}


def wait_for(predicate, timeout, step=0.02, what="condition"):
    """Poll ``predicate`` until it is truthy; return (value, seconds waited). Fails on timeout."""
    start = time.monotonic()
    while True:
        value = predicate()
        if value:
            return value, time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)
