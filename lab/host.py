"""The host side: root check, host tools (installed from Debian on demand), command runner."""

import os
import pathlib
import shutil
import subprocess
import sys

from . import LabError

# command -> Debian package that ships it
TOOLS = {
    "systemd-nspawn": "systemd-container",
    "mmdebstrap": "mmdebstrap",
    "apt-ftparchive": "apt-utils",
    "sshpass": "sshpass",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ip": "iproute2",
    "ping": "iputils-ping",
    "dhclient": "isc-dhcp-client",  # lab.probe: DHCP clients on the bridge
    "dig": "bind9-dnsutils",  # lab.probe: DNS queries over the bridge
}


def log(msg):
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def run(cmd, check=True, capture=True, what=None, **kw):
    """Run ``cmd``; on failure raise LabError "<what> failed: <stderr tail>"."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    if capture:
        kw.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc = subprocess.run(cmd, check=False, text=True, **kw)
    except FileNotFoundError as exc:
        raise LabError(f"{cmd[0]} not found: run 'python3 -m lab build' (installs the host tools)") from exc
    if check and proc.returncode != 0:
        tail = "\n".join(((proc.stderr or "") + (proc.stdout or "")).strip().splitlines()[-15:])
        raise LabError(f"{what or cmd[0]} failed (exit {proc.returncode}): {tail}")
    return proc


def require_root():
    if os.geteuid() != 0:
        raise LabError(
            "the lab needs root (namespaces, mounts, bridge): run as root, e.g. sudo python3 -m lab ..."
        )


def preflight():
    """Why systemd-nspawn nodes cannot run on this machine, or None when they can."""
    if sys.platform != "linux":
        return "the lab needs Linux"
    if os.geteuid() != 0:
        return "the lab needs root"
    fs = pathlib.Path("/proc/filesystems").read_text(encoding="utf-8")
    if "overlay" not in fs:
        return "the kernel has no overlayfs (modprobe overlay)"
    for ns in ("pid", "net", "mnt", "uts", "ipc"):
        if not os.path.exists(f"/proc/self/ns/{ns}"):
            return f"the kernel has no {ns} namespaces"
    from . import cgroup  # pylint: disable=import-outside-toplevel

    return cgroup.unusable_reason()


def _systemd_version():
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "systemd"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def ensure_tools(*commands):
    """Install the Debian packages that ship ``commands`` (all of TOOLS when none given)."""
    wanted = sorted({TOOLS[c] for c in (commands or TOOLS) if not shutil.which(c)})
    if not wanted:
        return
    require_root()
    specs = []
    for pkg in wanted:
        # systemd-container must match the host's systemd, or apt upgrades systemd as well
        ver = _systemd_version() if pkg == "systemd-container" else ""
        specs.append(f"{pkg}={ver}" if ver else pkg)
    log(f"installing host tools: {' '.join(specs)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    install = ["apt-get", *lock, "install", "-y", "--no-install-recommends"]
    if run([*install, *specs], check=False, env=env).returncode == 0:
        return
    run(["apt-get", *lock, "update"], env=env, what="apt-get update")  # stale or missing package lists
    if run([*install, *specs], check=False, env=env).returncode == 0:
        return
    # the host's systemd version may be gone from the mirror: take the current one (PID 1 is not
    # systemd here, so upgrading the systemd package alongside is harmless)
    plain = [spec.split("=")[0] for spec in specs]
    run(
        [*install, *plain],
        env=env,
        what=f"apt-get install {' '.join(plain)} (install them by hand, then retry)",
    )


def debian_sources():
    """The host's Debian apt sources as one-line ``deb`` entries (the mirror is never hard-coded)."""
    lines = []
    d822 = pathlib.Path("/etc/apt/sources.list.d/debian.sources")
    files = [d822] if d822.exists() else []
    files += sorted(p for p in pathlib.Path("/etc/apt/sources.list.d").glob("*.sources") if p != d822)
    for path in files:
        for stanza in path.read_text(encoding="utf-8").split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line.startswith(" "):
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.split()
            if "deb" not in fields.get("types", []) or fields.get("enabled", ["yes"])[0] == "no":
                continue
            opts = f"[signed-by={fields['signed-by'][0]}] " if fields.get("signed-by") else ""
            for uri in fields.get("uris", []):
                for suite in fields.get("suites", []):
                    lines.append(f"deb {opts}{uri} {suite} {' '.join(fields.get('components', ['main']))}")
    legacy = pathlib.Path("/etc/apt/sources.list")
    if legacy.exists():
        lines += [
            ln.strip()
            for ln in legacy.read_text(encoding="utf-8").splitlines()
            if ln.strip().startswith("deb ")
        ]
    lines = [ln for ln in lines if " bookworm" in ln]
    if not lines:
        raise LabError("no Debian bookworm source in /etc/apt/sources.list(.d): add your Debian mirror there")
    return lines
