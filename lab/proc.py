"""Process helpers: liveness by /proc (zombies count as dead), pid files, waiting."""

import os
import pathlib
import signal
import time


def alive(pid):
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (OSError, TypeError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def cmdline(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def children(pid):
    found = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text(encoding="ascii").split()]
        except OSError:
            continue
    return found


def read_pid(path, must_contain):
    """The pid in ``path`` if that process is alive and its command line contains ``must_contain``."""
    try:
        pid = int(pathlib.Path(path).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) and must_contain in "\0".join(cmdline(pid)) else None


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def kill(pid, sig=signal.SIGTERM):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
