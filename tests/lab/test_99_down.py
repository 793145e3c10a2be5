"""``down`` leaves nothing of the lab behind. Runs last: files are collected in name order, and the
lab fixture of the earlier files is session-wide, so this is the session's last lab test."""

import json
import pathlib
import subprocess

import pytest

from lab import BRIDGE, CGROUP_PREFIX, MACHINE_PREFIX

pytestmark = pytest.mark.lab


def _lab_processes(state):
    procs = []
    for pid_dir in pathlib.Path("/proc").glob("[0-9]*"):
        try:
            cmd = (pid_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cgroups = (pid_dir / "cgroup").read_text()
            zombie = (pid_dir / "stat").read_text().rpartition(")")[2].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and (str(state) in cmd or f"/{CGROUP_PREFIX}" in cgroups):
            procs.append(f"{pid_dir.name}: {cmd}")
    return procs


def test_down_removes_everything(lab_cli):
    lab_cli.cli("down", timeout=300)
    state = lab_cli.state.resolve()
    mounts = [ln.split()[4] for ln in pathlib.Path("/proc/self/mountinfo").read_text().splitlines()]
    assert not [m for m in mounts if m.startswith(str(state))], "lab mounts left"
    assert not list(pathlib.Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PREFIX}*")), "lab cgroups left"
    assert not list(pathlib.Path("/sys/fs/cgroup").glob(f"{CGROUP_PREFIX}*")), "lab cgroups left"
    links = [
        link["ifname"]
        for link in json.loads(
            subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
        )
    ]
    assert BRIDGE not in links and not [ln for ln in links if ln.startswith(f"vb-{MACHINE_PREFIX}")], links
    assert not _lab_processes(state), _lab_processes(state)
    st = lab_cli.status()
    assert not st["bridge_up"] and st["package_server"] is None
    assert {s["state"] for s in st["nodes"].values()} == {"stopped"}
    assert not (state / "nodes").exists() or not list((state / "nodes").iterdir())
