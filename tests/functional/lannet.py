"""Helpers of the DHCP, NTP, TFTP and httpd functional tests.

- ``Switch``: network namespaces joined by a bridge in a namespace of its own (a small LAN:
  one namespace per node, ``eth0`` in each). Nothing leaves the namespaces; the host's network
  is not touched.
- ``in_netns``: run Python code (Salt modules, which fork their commands) inside a namespace.
- ``Daemon``: a foreground daemon with its log, stopped by its process group.
"""

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time

HAVE_NETNS = os.geteuid() == 0 and shutil.which("ip") is not None
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _sid(key):
    return key.split("_|-")[1]


def changed(ret):
    """``{state id: changes}`` of the states of a run that changed something."""
    return {_sid(key): r["changes"] for key, r in ret.raw.items() if r["changes"]}


def failed(ret):
    """``{state id: comment}`` of the states of a run that failed."""
    return {_sid(key): r["comment"] for key, r in ret.raw.items() if r["result"] is False}


def by_id(ret, state_id):
    """The result of state ``state_id`` in a run (keys are ``mod_|-id_|-name_|-fun``)."""
    for key, value in ret.raw.items():
        if _sid(key) == state_id:
            return value
    raise KeyError(f"{state_id} is not in the run: {sorted(ret.raw)}")


def verify_unit(path):
    """``systemd-analyze verify`` of a rendered unit file: its problems (empty when it is fine)."""
    if shutil.which("systemd-analyze") is None:
        return []
    res = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)], capture_output=True, text=True,
                         check=False)
    return [line for line in (res.stdout + res.stderr).splitlines() if line.strip()] or (
        [f"exit {res.returncode}"] if res.returncode else [])


@contextlib.contextmanager
def in_netns(name):
    """Move the calling thread into network namespace ``name`` (``ip netns``), then back."""
    with open("/proc/thread-self/ns/net", "rb") as orig, open(f"/run/netns/{name}", "rb") as target:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(orig.fileno(), CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Switch:
    """Namespaces ``<prefix>-<node>`` each with an ``eth0`` plugged into a bridge that lives in
    namespace ``<prefix>-sw``. ``nodes`` maps node -> ``{"ip": "a.b.c.d/len" or None, "mac": ...}``."""

    def __init__(self, prefix, nodes):
        self.prefix = prefix
        self.nodes = nodes
        self.sw = f"{prefix}-sw"
        self.ns = {node: f"{prefix}-{node}" for node in nodes}
        self.daemons = []

    def __enter__(self):
        try:
            _ip("netns", "add", self.sw)
            _ip("-n", self.sw, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.sw, "link", "set", "br0", "up")
            for i, (node, spec) in enumerate(self.nodes.items()):
                ns = self.ns[node]
                _ip("netns", "add", ns)
                _ip("-n", self.sw, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("-n", self.sw, "link", "set", f"p{i}", "master", "br0")
                _ip("-n", self.sw, "link", "set", f"p{i}", "up")
                if spec.get("mac"):
                    _ip("-n", ns, "link", "set", "eth0", "address", spec["mac"])
                if spec.get("ip"):
                    _ip("-n", ns, "addr", "add", spec["ip"], "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for daemon in reversed(self.daemons):
            daemon.stop()
        for ns in [*self.ns.values(), self.sw]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)

    def cmd(self, node, *args):
        return ["ip", "netns", "exec", self.ns[node], *args]

    def run(self, node, *args, timeout=30):
        return subprocess.run(self.cmd(node, *args), capture_output=True, text=True, timeout=timeout, check=False)

    def start(self, node, args, log):
        daemon = Daemon(self.cmd(node, *args), log)
        self.daemons.append(daemon)
        return daemon


class Daemon:
    """A foreground process in its own process group, output to ``log``."""

    def __init__(self, argv, log):
        self.log = log
        with open(log, "ab") as handle:
            self.proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)

    def output(self):
        with open(self.log, encoding="utf-8", errors="replace") as handle:
            return handle.read()


def wait_for(predicate, timeout, step=0.1, what="condition"):
    """Poll ``predicate`` until it returns something truthy (exceptions count as falsy);
    return that value. Fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # pylint: disable=broad-except
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last})")
        time.sleep(step)
