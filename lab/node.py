"""One node: its overlay, its identity, and its systemd-nspawn process (lab-recipe.md, substrate A).

STATE/nodes/NAME/ holds upper/ + work/ (the node's "SD card" on top of the base image), root/ (the
overlay mount), node.json (image, ip, mac), nspawn.pid and console.log.
"""

import json
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

from . import BRIDGE, HTTP_PORT, MACHINE_PREFIX, STATE, LabError, cgroup, net, pi, proc
from .host import log, run
from .inventory import etc_hosts
from .mount import is_mounted, mount_overlay, umount

NODES = STATE / "nodes"
# A vanilla card asks DHCP on its wired interface (as Raspberry Pi OS does). networkd takes the
# first file in name order: after the static one the bootstrap writes (10-cluster-static), before
# systemd's own 80-container-host0 (DHCP with link-local addresses).
NETWORK_FILE = "etc/systemd/network/50-lab-host0.network"
OLD_NETWORK_FILES = ("etc/systemd/network/10-lab-host0.network", "etc/systemd/network/99-lab-host0.network")
# A Pi's MAC is burnt in; an nspawn veth's is not: this unit sets the inventory's before networkd
MAC_UNIT = "etc/systemd/system/lab-hardware-mac.service"
MAC_UNIT_LINK = "etc/systemd/system/sysinit.target.wants/lab-hardware-mac.service"
HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")


def on_disk():
    """Names of the nodes that have a directory in the state dir."""
    return sorted(p.name for p in NODES.glob("*") if p.is_dir()) if NODES.is_dir() else []


# A reboot inside a node ends systemd-nspawn with exit status 133 (systemd-nspawn(1)); a real Pi
# boots again, so this loop starts the node again. A SIGTERM (power_off) goes on to nspawn: the
# node powers off, nspawn exits with another status and the loop ends with it. The pid file
# holds the loop's pid (its command line carries the node's root, as nspawn's did).
REBOOT_LOOP = r"""
trap 'kill -TERM "$child" 2>/dev/null' TERM
while :; do
    "$@" & child=$!
    while :; do wait "$child"; rc=$?; kill -0 "$child" 2>/dev/null || break; done
    [ "$rc" -eq 133 ] || exit "$rc"
    echo "nspawn-reboot-loop: the node rebooted, booting it again"
done
"""


class Node:
    def __init__(self, name, spec=None):
        self.name = name
        self.machine = f"{MACHINE_PREFIX}{name}"  # systemd-nspawn's name for it (the lab instance's)
        self.spec = spec or {}
        self.dir = NODES / name
        self.root = self.dir / "root"
        self.pidfile = self.dir / "nspawn.pid"
        self.console = self.dir / "console.log"

    # ---- what is running -------------------------------------------------------------------
    def nspawn_pid(self):
        return proc.read_pid(self.pidfile, str(self.root))

    def init_pid(self):
        """The host pid of the node's PID 1 (its systemd), or None."""
        if not self.nspawn_pid():
            return None
        for pid in sorted(cgroup.pids(self.name)):
            try:
                status = pathlib.Path(f"/proc/{pid}/status").read_text(encoding="ascii", errors="replace")
            except OSError:
                continue
            nspid = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("NSpid:")), [])
            if len(nspid) >= 2 and nspid[-1] == "1" and proc.alive(pid):
                return pid
        return None

    def running(self):
        return self.init_pid() is not None

    def meta(self):
        try:
            return json.loads((self.dir / "node.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    # ---- the node's disk -------------------------------------------------------------------
    def prepare(self, image_root, inv):
        """Mount the overlay; on a fresh disk write the node's identity (idempotent)."""
        meta = self.meta()
        lower = (
            meta.get("image")
            if meta.get("image") and pathlib.Path(meta["image"]).is_dir()
            else str(image_root)
        )
        for sub in ("upper", "work", "root"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        mount_overlay(lower, self.dir)
        if not meta:
            self._identity(inv)
        self._network()
        if self.spec.get("model"):
            pi.write_device_tree(self.dir / "firmware", self.spec["model"], self.spec["mac"])
        else:
            shutil.rmtree(self.dir / "firmware", ignore_errors=True)
        meta = {
            "image": lower,
            "ip": self.spec["ip"],
            "mac": self.spec["mac"],
            "created": meta.get("created") or time.strftime("%FT%T"),
        }
        (self.dir / "node.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")

    def _identity(self, inv):
        """What makes this node itself: hostname, machine-id, SSH host keys, hosts, apt source."""
        r = self.root
        (r / "etc/hostname").write_text(f"{self.name}\n", encoding="ascii")
        (r / "etc/machine-id").write_text(secrets.token_hex(16) + "\n", encoding="ascii")
        for old in (r / "etc/ssh").glob("ssh_host_*"):
            old.unlink()
        keygens = [
            subprocess.Popen(  # pylint: disable=consider-using-with
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-C",
                    f"root@{self.name}",
                    "-f",
                    str(r / f"etc/ssh/ssh_host_{kind}_key"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for kind in HOST_KEY_TYPES
        ]
        for keygen in keygens:
            if keygen.wait() != 0:
                raise LabError(f"ssh-keygen failed for {self.name}: {keygen.stderr.read().decode()}")
            keygen.stderr.close()
        (r / "etc/hosts").write_text(etc_hosts(inv), encoding="utf-8")
        (r / "etc/apt/sources.list").write_text(
            f"# the lab's package source (the deployer's package cache on real hardware)\n"
            f"deb [trusted=yes] http://{net.host_address(inv)}:{HTTP_PORT}/ ./\n",
            encoding="ascii",
        )

    def _network(self, static=False):
        """The inventory MAC on host0 (as burnt into a Pi), and DHCP as on a vanilla card (the
        router stand-in and later the lanservices pair give the inventory address), or
        ``static`` (the router itself). No IPv6 autoconf."""
        prefix = self.spec.get("prefixlen", 24)
        address = f"Address={self.spec['ip']}/{prefix}\n" if static else "DHCP=ipv4\n"
        files = {
            NETWORK_FILE: (
                "# written by the lab: the vanilla card's wired network\n[Match]\nName=host0\n\n"
                f"[Network]\n{address}LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
                + ("" if static else "\n[DHCPv4]\nClientIdentifier=mac\n")
            ),
            MAC_UNIT: (
                "# written by the lab: the MAC a Pi has from its hardware\n[Unit]\n"
                "Description=lab: the node's hardware MAC\nDefaultDependencies=no\n"
                "Before=network-pre.target systemd-networkd.service\nWants=network-pre.target\n\n"
                f"[Service]\nType=oneshot\nExecStart=/sbin/ip link set dev host0 address {self.spec['mac']}\n"
            ),
        }
        for rel, text in files.items():
            self._write(rel, text)
        link = self.root / MAC_UNIT_LINK
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/" + MAC_UNIT)
        for old in OLD_NETWORK_FILES:
            (self.root / old).unlink(missing_ok=True)

    def _write(self, rel, text, mode=0o644):
        """A file of the node's disk, written only when its content changes."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        path.chmod(mode)

    def wipe(self):
        """Back to a blank SD card: the upper dir (everything the node ever wrote) is deleted."""
        umount(self.root)
        for sub in ("upper", "work"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)
        (self.dir / "node.json").unlink(missing_ok=True)
        (self.dir / "login").unlink(missing_ok=True)

    # ---- power ------------------------------------------------------------------------------
    def boot(self):
        """Start systemd-nspawn in the node's own cgroup; return its pid (does not wait)."""
        if self.nspawn_pid():
            return self.nspawn_pid()
        self._cleanup()
        cgroup.create(self.name)
        cmd = [
            "systemd-nspawn",
            "--boot",
            "-D",
            str(self.root),
            "-M",
            self.machine,
            "--register=no",
            "--keep-unit",
            f"--network-bridge={BRIDGE}",
            "--resolv-conf=off",
            "--timezone=off",
            "--link-journal=no",
            "--console=passive",
        ]
        if (self.dir / "firmware").is_dir() and pathlib.Path("/sys/firmware").is_dir():
            cmd.append(f"--bind-ro={self.dir / 'firmware'}:/sys/firmware")  # the fake Pi device tree
        with open(self.console, "wb") as out:
            child = subprocess.Popen(  # pylint: disable=consider-using-with,subprocess-popen-preexec-fn
                ["sh", "-c", REBOOT_LOOP, "nspawn-reboot-loop", *cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                preexec_fn=lambda: cgroup.enter(self.name),
            )
        self.pidfile.write_text(f"{child.pid}\n", encoding="ascii")
        return child.pid

    def wait_ssh(self, timeout=90):
        """Wait until sshd on the node's IP sends its banner; return the seconds waited. Asked
        from the host, else from inside the node's own network namespace: once the node's
        firewall loads at boot, SSH from the lab host (not a cluster node) is dropped."""
        started = time.monotonic()
        while True:
            if not self.nspawn_pid():
                raise LabError(
                    f"node {self.name} stopped while booting: see {self.console}\n{self.console_tail()}"
                )
            if self._sshd_banner() or self._sshd_banner_inside():
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise LabError(
                    f"node {self.name}: sshd did not answer on {self.spec['ip']}:22 within "
                    f"{timeout} s: see {self.console}"
                )
            time.sleep(0.1)

    def _sshd_banner(self):
        try:
            with socket.create_connection((self.spec["ip"], 22), timeout=1) as sock:
                sock.settimeout(2)
                return sock.recv(64).startswith(b"SSH-")
        except OSError:
            return False

    _BANNER_PROBE = (
        "import socket,sys\n"
        "s = socket.create_connection((sys.argv[1], 22), 1)\n"
        "s.settimeout(2)\n"
        "sys.exit(0 if s.recv(64).startswith(b'SSH-') else 1)\n"
    )

    def _sshd_banner_inside(self):
        """The banner asked from the node's own network namespace (this host's python, nsenter -n)."""
        init = self.init_pid()
        if not init:
            return False
        try:
            probe = subprocess.run(
                ["nsenter", "-t", str(init), "-n", sys.executable, "-c", self._BANNER_PROBE, self.spec["ip"]],
                capture_output=True, timeout=10, check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return probe.returncode == 0

    def console_tail(self, lines=10):
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def power_off(self, timeout=60):
        """Clean shutdown (SIGTERM to nspawn = the node's systemd powers off); return seconds."""
        started = time.monotonic()
        pid = self.nspawn_pid()
        if pid:
            proc.kill(pid, signal.SIGTERM)
            if not proc.wait_gone(pid, timeout):
                log(f"{self.name}: no clean poweroff after {timeout} s, forcing")
                proc.kill(pid, signal.SIGTERM)  # a second SIGTERM makes nspawn force it
                if not proc.wait_gone(pid, 10):
                    self.power_loss()
        self._cleanup()
        return time.monotonic() - started

    def power_loss(self):
        """Everything in the node killed at once (SIGKILL to its PID 1 takes the pid namespace down)."""
        started = time.monotonic()
        pid, init = self.nspawn_pid(), self.init_pid()
        if init:
            proc.kill(init, signal.SIGKILL)
        if pid and not proc.wait_gone(pid, 10):
            proc.kill(pid, signal.SIGKILL)
            proc.wait_gone(pid, 5)
        self._cleanup()
        return time.monotonic() - started

    def _cleanup(self):
        """After nspawn ended: no process, cgroup, link, pid file or propagation dir left."""
        for pid in cgroup.pids(self.name):
            proc.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while cgroup.pids(self.name) and time.monotonic() < deadline:
            time.sleep(0.05)
        cgroup.clean(self.name)
        net.remove_link(self.name)
        self.pidfile.unlink(missing_ok=True)
        for kind in ("propagate", "unix-export", "incoming"):
            shutil.rmtree(f"/run/systemd/nspawn/{kind}/{self.machine}", ignore_errors=True)

    def destroy(self):
        """Stop (hard), unmount and delete the node."""
        if self.nspawn_pid():
            self.power_loss()
        self._cleanup()
        umount(self.root)
        if is_mounted(self.root):
            raise LabError(f"cannot unmount {self.root}: something still uses it (fuser -vm {self.root})")
        cgroup.clean(self.name)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_in(node, cmd):
    """Run ``cmd`` inside a running node (nsenter into all its namespaces); CompletedProcess."""
    init = node.init_pid()
    if not init:
        raise LabError(f"node {node.name} is not running: python3 -m lab up {node.name}")
    return run(["nsenter", "-t", str(init), "-a", *cmd], check=False)
