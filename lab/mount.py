"""Overlay mounts: each node (and the builder) is an overlayfs upper dir on the read-only base image."""

import os

from .host import run


def mounts():
    """Mount points, decoded from /proc/self/mountinfo (octal escapes such as \\040)."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        for line in info:
            point = line.split()[4]
            points.append(point.encode().decode("unicode_escape"))
    return points


def is_mounted(path):
    return os.path.realpath(path) in mounts()


def mounts_under(prefix):
    prefix = os.path.realpath(prefix).rstrip("/") + "/"
    return [m for m in mounts() if m.startswith(prefix)]


def mount_overlay(lower, nodedir):
    """Mount nodedir/root = lower + nodedir/upper (idempotent)."""
    root = nodedir / "root"
    if is_mounted(root):
        return
    opts = f"lowerdir={lower},upperdir={nodedir / 'upper'},workdir={nodedir / 'work'}"
    run(["mount", "-t", "overlay", "overlay", "-o", opts, str(root)], what=f"mounting the overlay {root}")


def umount(path):
    """Unmount ``path`` and everything below it, deepest first (idempotent)."""
    path = os.path.realpath(path)
    below = [m for m in mounts() if m == path or m.startswith(path + "/")]
    for point in sorted(set(below), key=len, reverse=True):
        proc = run(["umount", point], check=False)
        if proc.returncode != 0:
            run(["umount", "-l", point], what=f"unmounting {point}")
