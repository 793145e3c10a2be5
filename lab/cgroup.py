"""Per-node cgroups (recipe pitfall 1).

Without systemd on the host, ``systemd-nspawn --register=no --keep-unit`` puts its payload under
its OWN cgroup; if every node starts from the same cgroup, all nodes share one tree and unit
stops/poweroffs hang on each other's processes. So each node's nspawn is started inside its own
``rpilab-NODE`` cgroup, in every hierarchy systemd uses (v1 ``name=systemd`` + the unified one in
hybrid mode, or the single cgroup2 tree).
"""

import os
import pathlib
import subprocess

from . import CGROUP_PREFIX


def hierarchies():
    """Mount points of the hierarchies systemd inside a node uses."""
    v1_systemd = unified = None
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            _dev, path, fstype, opts = line.split()[:4]
            if fstype == "cgroup" and "name=systemd" in opts.split(","):
                v1_systemd = path
            elif fstype == "cgroup2":
                unified = unified or path
    return [p for p in (v1_systemd, unified) if p]


def unusable_reason():
    roots = hierarchies()
    if not roots:
        return "no cgroup hierarchy for systemd is mounted (neither name=systemd nor cgroup2)"
    for root in roots:
        if not os.access(root, os.W_OK):
            return f"cgroup hierarchy {root} is not writable"
    return None


def paths(name):
    return [pathlib.Path(root) / f"{CGROUP_PREFIX}{name}" for root in hierarchies()]


def create(name):
    for path in paths(name):
        path.mkdir(exist_ok=True)
    clean(name, keep_top=True)


def enter(name):
    """Move the calling process into the node's cgroups (used between fork and exec)."""
    for path in paths(name):
        with open(path / "cgroup.procs", "w", encoding="ascii") as procs:
            procs.write("0")


def pids(name):
    """Every process in the node's cgroup trees."""
    found = set()
    for top in paths(name):
        if not top.is_dir():
            continue
        for dirpath, _dirs, files in os.walk(top):
            if "cgroup.procs" in files:
                try:
                    text = pathlib.Path(dirpath, "cgroup.procs").read_text(encoding="ascii")
                except OSError:
                    continue
                found.update(int(p) for p in text.split())
    return found


def clean(name, keep_top=False):
    """rmdir the node's (empty) cgroup trees depth-first; return the paths that stayed."""
    left = []
    for top in paths(name):
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
            if keep_top and dirpath == str(top):
                continue
            try:
                os.rmdir(dirpath)
            except OSError:
                left.append(dirpath)
    return left


def leftovers():
    """Names of lab cgroups present in any hierarchy."""
    names = set()
    for root in hierarchies():
        names.update(p.name[len(CGROUP_PREFIX) :] for p in pathlib.Path(root).glob(f"{CGROUP_PREFIX}*"))
    return sorted(names)


def nspawn_script(root, name, script, resolv_conf="off"):
    """``/bin/sh -ec script`` in a container on ``root`` that is not booted (installing into a
    disk image), in its own ``rpilab-NAME`` cgroup like a node; CompletedProcess (text)."""
    create(name)
    try:
        return subprocess.run(
            [
                "systemd-nspawn", "-q", "-D", str(root), "-M", f"lab{name}", "--register=no", "--keep-unit",
                f"--resolv-conf={resolv_conf}", "--timezone=off", "--pipe", "/bin/sh", "-ec", script,
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=lambda: enter(name),  # pylint: disable=subprocess-popen-preexec-fn
        )
    finally:
        clean(name)
