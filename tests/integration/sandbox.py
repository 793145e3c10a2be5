"""A throwaway "node" on this very host: an sshd whose sessions see a copy-on-write root.

The integration tests apply real node states (users, sudoers, /etc/ssh, /etc/salt, services)
over salt-ssh, but the test host must not change. So the test's sshd runs in its own mount
and PID namespaces (``unshare --mount --pid --fork --mount-proc``). Before exec'ing sshd, a
small shell script (run inside the namespaces):

- makes every mount private (nothing propagates back to the host);
- mounts overlayfs over ``OVERLAID`` (lower = the host's directory, upper and work dirs in
  the sandbox directory), so whatever a session writes there lands in ``upper/<dir>`` and is
  gone with the sandbox; the host's files stay untouched;
- installs the seed files (e.g. mock init scripts), removes paths (e.g. systemctl) and runs
  the setup commands (e.g. a vanilla default user), all inside the overlays;
- mounts fresh tmpfs on /tmp and /dev/shm (salt's scratch files stay in the namespace).

Every process salt-ssh starts on the "node" is a descendant of that sshd, so it lives in the
same namespaces, including daemons a state starts. sshd is the namespace's PID 1: killing it
makes the kernel kill every process of the namespace, and the namespace's mounts vanish.
``unshare --kill-child`` and a parent-death signal on ``unshare`` itself make this happen
even if the test process dies. Needs root, util-linux ``unshare`` and overlayfs.
"""

import ctypes
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

# host directories the node's sessions see copy-on-write: everything a bootstrap writes
# (/etc, /opt, /home, /root, /var incl. /var/tmp, /run; /usr for mock tools and packages)
OVERLAID = ("/etc", "/opt", "/home", "/root", "/var", "/run", "/usr")
SSHD_PIDFILE = "/run/sandbox-sshd.pid"
SSHD_LOG = "/var/log/sandbox-sshd.log"


def _die_with_parent():
    """preexec_fn: SIGKILL this child (unshare) when the test process dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port(address):
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _fstype(path):
    """The file system type of the mount holding ``path`` (longest mount point prefix)."""
    path = os.path.realpath(path)
    best, fstype = "", ""
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            left, right = line.split(" - ", 1)
            point = left.split()[4].replace("\\040", " ")
            if (path == point or path.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, fstype = point, right.split()[0]
    return fstype


class NodeSandbox:
    """One sshd on ``address``:``port`` serving a copy-on-write view of this host.

    ``seeds``: {absolute path: (mode, text)} installed inside the overlays before sshd starts;
    ``symlinks``: {absolute path: target}; ``remove``: paths deleted from the node's view;
    ``setup``: shell commands run there afterwards.
    The node's sshd uses the host's own /etc/ssh/sshd_config (with its drop-in directory, as
    on a real node), overridden only by ListenAddress and PidFile on its command line.
    """

    def __init__(self, base, address, port=None, seeds=None, symlinks=None, remove=(), setup=()):
        self.base = pathlib.Path(base)
        self.address = address
        self.port = port or free_port(address)
        self.seeds = dict(seeds or {})
        self.symlinks = dict(symlinks or {})
        self.remove = list(remove)
        self.setup = list(setup)
        self.proc = None
        self.init_pid = None  # host PID of the namespace's PID 1 (sshd)
        self.pid_ns = None  # its PID namespace, e.g. 'pid:[4026532...]'

    def upper(self, path):
        """Where a file the node wrote at absolute ``path`` lives on the host (overlay upper)."""
        return self.base / "upper" / str(path).lstrip("/")

    def path(self, path):
        """``path`` as the node sees it (the merged overlays), through /proc/<pid>/root."""
        return pathlib.Path(f"/proc/{self.init_pid}/root") / str(path).lstrip("/")

    def run(self, argv, timeout=30):
        """Run a command inside the node's namespaces (nsenter), as its sessions would."""
        cmd = ["nsenter", f"--target={self.init_pid}", "--mount", "--pid", "--", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)

    def _script(self):
        q = shlex.quote
        lines = ["set -eu", "mount --make-rprivate /"]
        for directory in OVERLAID:
            upper, work = self.base / "upper" / directory[1:], self.base / "work" / directory[1:]
            upper.mkdir(parents=True)
            work.mkdir(parents=True)
            lines.append(
                f"mount -t overlay overlay -o lowerdir={directory},upperdir={upper},workdir={work} {directory}"
            )
        seed_dir = self.base / "seed"
        for i, (path, (mode, text)) in enumerate(sorted(self.seeds.items())):
            src = seed_dir / str(i)
            src.parent.mkdir(exist_ok=True)
            src.write_text(text, encoding="utf-8")
            lines.append(f"install -D -m {mode:04o} {q(str(src))} {q(path)}")
        for path, target in sorted(self.symlinks.items()):
            lines.append(f"ln -sfn {q(target)} {q(path)}")
        for path in self.remove:
            lines.append(f"rm -rf {q(path)}")  # an overlay whiteout: gone for the node only
        lines += ["install -d -m 0755 /run/sshd"]  # no init system creates it
        lines += self.setup
        lines += [
            # the sandbox directory (under /tmp) is no longer needed inside: hide the host's /tmp,
            # but keep the Python environment visible when it lives there (a checkout under /tmp:
            # /opt/salt links to it, and its scripts name it in their #! lines)
            *self._keep_visible(sys.prefix),
            "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm",
            f"exec /usr/sbin/sshd -D -E {SSHD_LOG}"
            f" -o ListenAddress={self.address}:{self.port} -o PidFile={SSHD_PIDFILE}",
        ]
        return "\n".join(lines) + "\n"

    @staticmethod
    def _keep_visible(path):
        """Shell lines that put a tmpfs on /tmp while ``path`` (if under /tmp) stays reachable."""
        q = shlex.quote
        real = os.path.realpath(path)
        if not real.startswith("/tmp/"):
            return ["mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp"]
        return [
            "install -d /run/rpic-keep",
            f"mount --bind {q(real)} /run/rpic-keep",
            "mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp",
            f"install -d {q(real)}",
            f"mount --bind /run/rpic-keep {q(real)}",
        ]

    def start(self, timeout=20):
        if _fstype(self.base) == "overlay":  # overlayfs refuses upper dirs on overlayfs
            raise RuntimeError(f"{self.base} is on overlayfs: it cannot hold overlay upper dirs")
        self.base.mkdir(parents=True, exist_ok=True)
        script = self.base / "setup.sh"
        script.write_text(self._script(), encoding="utf-8")
        log = (self.base / "unshare.log").open("wb")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "/bin/sh", str(script)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox setup failed ({self.proc.returncode}): {self.log()}")
            if self.init_pid is None:
                children = pathlib.Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                pids = children.read_text().split() if children.exists() else []
                if pids:
                    self.pid_ns = os.readlink(f"/proc/{pids[0]}/ns/pid")
                    self.init_pid = int(pids[0])
            try:
                with socket.create_connection((self.address, self.port), timeout=1):
                    if self.init_pid is not None:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        log = self.log()
        self.stop()
        raise RuntimeError(f"sandbox sshd did not listen on {self.address}:{self.port}: {log}")

    def log(self):
        parts = []
        for path in (self.base / "unshare.log", self.upper(SSHD_LOG)):
            if path.exists():
                parts.append(f"--- {path.name}:\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def processes(self):
        """{host pid: argv} of every process in the namespace (sshd included)."""
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != self.pid_ns:
                    continue
                argv = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                state = pathlib.Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state in ("Z", "X"):  # exited, not reaped yet
                continue
            found[int(entry)] = [a.decode(errors="replace") for a in argv if a]
        return found

    def stop(self, timeout=20, cleanup=True):
        """Kill the namespace (all its processes), wait until it is gone; then, with
        ``cleanup``, delete the sandbox directory (all the node wrote, incl. copied-up files
        such as /etc/shadow)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()  # SIGKILL unshare -> --kill-child SIGKILLs the namespace's PID 1
        self.proc.wait(timeout=timeout)
        if self.init_pid is not None:
            if self._init_alive():  # --kill-child did not fire (yet): kill it ourselves
                os.kill(self.init_pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
            while self._init_alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            # once the namespace's PID 1 has exited, the kernel has killed all the others
            if self._init_alive():
                raise RuntimeError(f"sandbox namespace init {self.init_pid} survived SIGKILL")
            try:  # reap it if it was reparented to us (a child subreaper)
                os.waitpid(self.init_pid, os.WNOHANG)
            except ChildProcessError:
                pass
        self.proc = None
        if cleanup:
            if self.upper(SSHD_LOG).exists():  # kept beside it, for post-mortems
                shutil.copyfile(self.upper(SSHD_LOG), self.base.with_name(self.base.name + "-sshd.log"))
            shutil.rmtree(self.base, ignore_errors=True)

    def _init_alive(self):
        """The namespace's PID 1 still runs (not exited, and its PID not reused)."""
        try:
            if os.readlink(f"/proc/{self.init_pid}/ns/pid") != self.pid_ns:
                return False
            state = pathlib.Path(f"/proc/{self.init_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state not in ("Z", "X")


# -- the mocked init system ---------------------------------------------------------------
# The test host has no systemd as PID 1 (and the namespace has no init at all) but has
# systemctl installed: Salt then picks systemd_service in "offline" mode, where
# service.running does nothing ("Running in OFFLINE mode. Nothing to do"). So the node loses
# systemctl (MOCK_INIT_REMOVE), like a Debian without systemd, and Salt's `service` module is
# debian_service: it runs `service NAME ACTION` (-> /etc/init.d/NAME) and, to enable,
# `insserv NAME && update-rc.d NAME enable`. These mocks, installed in the node's overlays,
# make those calls do real work: they start the daemon the systemd unit would start, signal
# the sandbox's sshd, and create the rc?.d links.

MOCK_SALT_MINION_INIT = """#!/bin/sh
### BEGIN INIT INFO
# Provides:          salt-minion
# Required-Start:    $remote_fs $network
# Required-Stop:     $remote_fs $network
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: salt-minion (TEST MOCK standing in for systemd)
### END INIT INFO
# TEST MOCK (tests/integration/sandbox.py): no systemd here, so run the ExecStart of the
# unit file the state installed, daemonised.
UNIT=/etc/systemd/system/salt-minion.service
PIDFILE=/run/salt-minion.pid
running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
case "$1" in
start)
    running && exit 0
    exec_start=$(sed -n 's/^ExecStart=//p' "$UNIT")
    [ -n "$exec_start" ] || { echo "no ExecStart in $UNIT" >&2; exit 1; }
    $exec_start -d --pid-file="$PIDFILE" || exit 1
    i=0; while [ $i -lt 150 ]; do running && exit 0; sleep 0.1; i=$((i + 1)); done
    echo "salt-minion did not start" >&2; exit 1 ;;
stop)
    running || exit 0
    kill "$(cat "$PIDFILE")"
    i=0; while [ $i -lt 150 ]; do running || { rm -f "$PIDFILE"; exit 0; }; sleep 0.1; i=$((i + 1)); done
    kill -9 "$(cat "$PIDFILE")"; rm -f "$PIDFILE"; exit 0 ;;
restart|force-reload) "$0" stop && "$0" start ;;
status) running && exit 0; exit 3 ;;
*) echo "usage: $0 {start|stop|restart|force-reload|status}" >&2; exit 2 ;;
esac
"""

MOCK_SSH_INIT = f"""#!/bin/sh
### BEGIN INIT INFO
# Provides:          ssh sshd
# Required-Start:    $remote_fs $syslog
# Required-Stop:     $remote_fs $syslog
# Default-Start:     2 3 4 5
# Default-Stop:
# Short-Description: the sandbox's sshd (TEST MOCK)
### END INIT INFO
# TEST MOCK (tests/integration/sandbox.py): the node's sshd is the sandbox's PID 1, started by
# the test. status checks it; reload (and restart) check the configuration and send it
# SIGHUP, on which sshd re-executes itself and rereads it; it cannot be stopped from here.
PIDFILE={SSHD_PIDFILE}
running() {{ [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }}
case "$1" in
start) running && exit 0; echo "the sandbox sshd is not running" >&2; exit 1 ;;
reload|force-reload|restart) running || exit 7; /usr/sbin/sshd -t || exit 1; kill -HUP "$(cat "$PIDFILE")" ;;
stop) echo "the sandbox sshd cannot be stopped from inside" >&2; exit 1 ;;
status) running && exit 0; exit 3 ;;
*) echo "usage: $0 {{start|stop|reload|force-reload|restart|status}}" >&2; exit 2 ;;
esac
"""

MOCK_INSSERV = """#!/bin/sh
# TEST MOCK of insserv (tests/integration/sandbox.py), which Salt's debian_service.enable runs
# before `update-rc.d NAME enable`: create the rc?.d links from the script's LSB header, as
# update-rc.d does by itself when insserv is absent.
name=""
for arg; do case "$arg" in -*) ;; *) name=$arg ;; esac; done
[ -n "$name" ] || exit 0
exec /usr/sbin/update-rc.d "$name" defaults
"""

MOCK_RUNLEVEL = """#!/bin/sh
# TEST MOCK of sysvinit's runlevel (tests/integration/sandbox.py): multi-user, as booted
echo "N 2"
"""

MOCK_INIT_SEEDS = {
    "/etc/init.d/salt-minion": (0o755, MOCK_SALT_MINION_INIT),
    "/etc/init.d/ssh": (0o755, MOCK_SSH_INIT),
    "/usr/local/sbin/insserv": (0o755, MOCK_INSSERV),
    "/usr/local/sbin/runlevel": (0o755, MOCK_RUNLEVEL),
}
# no systemd on the node: systemctl and its sysvinit-compat links (/bin is /usr/bin here)
MOCK_INIT_REMOVE = (
    "/usr/bin/systemctl",
    "/usr/sbin/runlevel",
    "/usr/sbin/telinit",
    "/usr/sbin/halt",
    "/usr/sbin/poweroff",
    "/usr/sbin/reboot",
    "/usr/sbin/shutdown",
)
