"""Helpers of the BIND and keepalived functional tests.

- ``node_loaders``: Salt loaders for one lanservices node of the project inventory (``alpha``
  or ``beta``) whose ``bind`` and ``keepalived`` states write under a scratch root, install
  nothing and leave services alone.
- ``Pair``: two network namespaces, ``alpha`` and ``beta``, joined by a veth link (``eth0`` in
  each) carrying the nodes' inventory addresses, where the rendered configs run with the real
  named and keepalived. Nothing leaves the namespaces; the host's network is not touched.
- ``Daemon``: a foreground daemon in a namespace, with its log, stopped (or killed) by its pid.
"""

import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

from saltfactories.utils.functional import Loaders

from tests.conftest import INVENTORY, STATE_TREE, cluster_pillar_opts, secrets_opts
from tests.functional.lannet import Daemon, _ip  # one netns daemon helper for every LAN test

HAVE_NETNS = os.geteuid() == 0 and shutil.which("ip") is not None
NAMED = shutil.which("named") or "/usr/sbin/named"
KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"


@contextlib.contextmanager
def scratch_root(name):
    """A node's scratch root, /tmp/rpic-<name>-XXXX, traversable (0755) so that named can run
    as ``bind`` on the files the states wrote there (pytest's own tmp dirs are 0700)."""
    path = pathlib.Path(tempfile.mkdtemp(prefix=f"rpic-{name}-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def node_loaders(salt_factories, name, root, secrets_dir, bind=None, keepalived=None, grains=None):
    """Loaders of minion ``name``; ``bind`` / ``keepalived`` add to those services' lookups."""
    root = str(root)
    overrides = {
        "file_client": "local",
        "file_roots": {"base": [str(STATE_TREE)]},
        **cluster_pillar_opts(INVENTORY),
        **secrets_opts(secrets_dir),
        "grains": {"roles": ["lanservices"], **(grains or {})},
        "roles": {"lookup": {"every_node": []}},
        "common": {"lookup": {"root": root, "set_running_hostname": False}},
        "bind": {"lookup": {"root": root, "pkgs": [], "manage_service": False, "serial_from_servers": False,
                            **(bind or {})}},
        "keepalived": {"lookup": {"root": root, "pkgs": [], "manage_service": False, **(keepalived or {})}},
    }
    factory = salt_factories.salt_minion_daemon(name, overrides=overrides)
    return Loaders(factory.config.copy(), loaded_base_name=f"{__name__}.{name}.loaded")


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

    def cmd(self, node, *args):
        return ["ip", "netns", "exec", self.ns[node], *args]

    def run(self, node, *args, timeout=30):
        return subprocess.run(self.cmd(node, *args), capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, node, args, log):
        daemon = Daemon(self.cmd(node, *args), log)
        self.daemons.append(daemon)
        return daemon

    def dig(self, node, *args):
        """``dig +short`` from inside ``node``; returns stdout lines."""
        res = self.run(node, "dig", "+time=1", "+tries=1", "+short", *args)
        return res.stdout.splitlines()

    def addresses_of(self, node):
        res = self.run(node, "ip", "-o", "-4", "addr", "show", "dev", "eth0")
        return [line.split()[3].split("/")[0] for line in res.stdout.splitlines()]

    def salt_stub(self, node):
        """A ``__salt__`` for a module loaded by path whose commands must run inside ``node``."""

        def run_all(cmd, python_shell=False, **_kwargs):
            assert python_shell is False
            res = self.run(node, *cmd)
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
