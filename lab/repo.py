"""The lab's package source: a local apt repository and a Python wheelhouse, served on the bridge.

- apt: every ``pkgs`` list of salt/*/defaults.yaml plus lab/packages.txt, downloaded with their
  dependencies as the base image would need them (a throw-away, never booted overlay on the base
  image runs ``apt-get install --download-only`` against the host's Debian mirror), indexed with
  apt-ftparchive. Rebuilt only when the list (or the base image) changes.
- wheelhouse: exactly the files salt/minion/files/locks/*.txt pin by sha256 (``pip download
  --require-hashes``; Salt is its sdist, built on the node), each checked again after the download.
- ``python3 -m http.server`` on <host>:8080 only (the host's bridge address): ``deb [trusted=yes] http://<host>:8080/ ./`` and
  ``http://<gw>:8080/wheelhouse/``.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

from . import HTTP_PORT, REPO, STATE, LabError, cgroup, proc
from .host import debian_sources, ensure_tools, log, run
from .inventory import yaml
from .mount import mount_overlay, umount

SERVE = STATE / "repo"  # the served directory
LAB_PACKAGES = REPO / "lab" / "packages.txt"

HTTP_PID = STATE / "run" / "http.pid"


def package_list():
    """Sorted Debian package names: salt/*/defaults.yaml ``pkgs`` + lab/packages.txt."""
    pkgs = set()
    for path in sorted((REPO / "salt").glob("*/defaults.yaml")):
        try:
            data = yaml().safe_load(path.read_text(encoding="utf-8")) or {}
        except Exception as exc:  # pylint: disable=broad-except
            raise LabError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict) or len(data) != 1:
            raise LabError(f"{path}: must have exactly one top-level key (the service name)")
        ((service, body),) = data.items()
        listed = (body or {}).get("pkgs", []) if isinstance(body, dict) else []
        if not isinstance(listed, list) or not all(isinstance(p, str) and p for p in listed):
            raise LabError(f"{path}: {service}.pkgs must be a list of Debian package names")
        pkgs.update(listed)
    for line in LAB_PACKAGES.read_text(encoding="utf-8").splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            pkgs.add(name)
    bad = sorted(p for p in pkgs if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", p))
    if bad:
        raise LabError(
            f"not Debian package names: {', '.join(bad)} (fix salt/*/defaults.yaml or lab/packages.txt)"
        )
    return sorted(pkgs)


def pin(package="salt"):
    """The version requirements.txt pins for ``package``."""
    text = "".join((REPO / f).read_text(encoding="utf-8") for f in ("requirements.txt", "requirements-nodeps.txt"))
    for line in text.splitlines():
        match = re.match(rf"\s*{re.escape(package)}\s*==\s*([^\s;#]+)", line)
        if match:
            return match.group(1)
    raise LabError(f"no '{package}==VERSION' line in {REPO / 'requirements.txt'}")


def salt_pin():
    return pin("salt")


def _key(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def build(image_root, force=False):
    build_debs(image_root, force)
    build_wheels(force)


def build_debs(image_root, force=False):
    pkgs = package_list()
    key = _key({"pkgs": pkgs, "image": image_root.name})
    stamp = SERVE / ".debs-key"
    if not force and stamp.exists() and stamp.read_text(encoding="utf-8").strip() == key:
        log(f"apt repository cached ({len(pkgs)} packages listed): {SERVE}")
        return
    ensure_tools("systemd-nspawn", "apt-ftparchive")
    started = time.monotonic()
    log(f"building the apt repository: {' '.join(pkgs)}")
    builder = STATE / "builder"
    if builder.exists():
        umount(builder / "root")
        shutil.rmtree(builder)
    for sub in ("upper", "work", "root"):
        (builder / sub).mkdir(parents=True)
    try:
        mount_overlay(image_root, builder)
        root = builder / "root"
        (root / "etc/apt/sources.list").write_text("\n".join(debian_sources()) + "\n", encoding="utf-8")
        script = "apt-get -q update && apt-get -q -y -o Dpkg::Use-Pty=0 install --download-only " + " ".join(
            pkgs
        )
        proc_ = cgroup.nspawn_script(root, "builder", script, resolv_conf="copy-host")
        if proc_.returncode != 0:
            tail = "\n".join((proc_.stderr + proc_.stdout).strip().splitlines()[-15:])
            raise LabError(
                f"downloading the lab's Debian packages failed (check the names in "
                f"salt/*/defaults.yaml and lab/packages.txt):\n{tail}"
            )
        debs = sorted((root / "var/cache/apt/archives").glob("*.deb"))
        tmp = SERVE / "debs.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for deb in debs:
            shutil.copy2(deb, tmp / deb.name)
    finally:
        umount(builder / "root")
        shutil.rmtree(builder, ignore_errors=True)
    shutil.rmtree(SERVE / "debs", ignore_errors=True)
    tmp.rename(SERVE / "debs")
    index = run(["apt-ftparchive", "packages", "debs"], cwd=SERVE, what="apt-ftparchive packages").stdout
    (SERVE / "Packages").write_text(index, encoding="utf-8")
    run(["gzip", "-9nkf", "Packages"], cwd=SERVE)
    release = run(
        ["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=rpi-cluster-lab", "release", "."],
        cwd=SERVE,
        what="apt-ftparchive release",
    ).stdout
    (SERVE / "Release").write_text(release, encoding="utf-8")
    stamp.write_text(key + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in (SERVE / "debs").iterdir()) >> 20
    log(f"apt repository: {len(debs)} .debs, {size} MiB, in {time.monotonic() - started:.0f} s")


def _python311():
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    for cand in ("python3.11", "/usr/bin/python3.11"):
        found = shutil.which(cand)
        if found:
            return found
    raise LabError("the wheelhouse needs Python 3.11 (bookworm's): install python3.11 or run the lab with it")


LOCKS = REPO / "salt" / "minion" / "files" / "locks"
LOCK_FILES = ("build.txt", "salt.txt", "master.txt")  # bootstrap/lock-salt-wheels writes them


def read_lock(path):
    """{name: (version, {sha256, ...})} of a pip requirements file in hash-checking form."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    pins = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})+)\s*$", line)
        if not match:
            raise LabError(f"{path}: not 'name==version --hash=sha256:...': {line[:80]}")
        name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
        pins[name] = (match.group(2), set(re.findall(r"sha256:([0-9a-f]{64})", match.group(3))))
    if not pins:
        raise LabError(f"{path}: no requirement (run bootstrap/lock-salt-wheels)")
    return pins


def verify_wheelhouse(directory, locks):
    """Every file in ``directory`` has a sha256 one of ``locks`` pins; raise LabError otherwise."""
    allowed = {h for lock in locks for _, hashes in lock.values() for h in hashes}
    bad = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest not in allowed:
            bad.append(f"{path.name} (sha256 {digest})")
    if bad:
        raise LabError(f"{directory}: files no lock pins (tampered with, or a stale lock?): {', '.join(bad)}")


def build_wheels(force=False):
    """The wheelhouse: exactly the files the locks pin, downloaded with --require-hashes."""
    paths = [LOCKS / name for name in LOCK_FILES]
    locks = [read_lock(path) for path in paths]
    locked = {name: pins for lock in locks for name, pins in lock.items()}
    for package in ("salt", "redis", "saltext-redis"):
        if locked.get(package, ("none",))[0] != pin(package):
            raise LabError(
                f"{LOCKS.relative_to(REPO)} locks {package}=={locked.get(package, ('none',))[0]}, "
                f"requirements*.txt pin {pin(package)}: run bootstrap/lock-salt-wheels"
            )
    salt_version = locked["salt"][0]
    key = _key({"locks": [p.read_text(encoding="utf-8") for p in paths], "py": "cp311"})
    wheels = SERVE / "wheelhouse"
    stamp = wheels / ".key"
    if not force and stamp.exists() and stamp.read_text(encoding="utf-8").strip() == key:
        log(f"wheelhouse cached (salt=={salt_version}): {wheels}")
        return
    started = time.monotonic()
    log(f"building the wheelhouse from {LOCKS.relative_to(REPO)}: salt=={salt_version} ...")
    tmp = SERVE / "wheelhouse.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    py = _python311()
    if subprocess.run([py, "-m", "pip", "--version"], capture_output=True, check=False).returncode != 0:
        raise LabError(f"{py} has no pip: apt-get install python3-pip (or use a Python 3.11 with pip)")
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
    for path in paths:
        # the files as the index publishes them (Salt: its sdist, built on the node): pip checks
        # each against the lock and fails on a mismatch ("THESE PACKAGES DO NOT MATCH THE HASHES")
        run(
            [py, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes", "-r", str(path), "-d", str(tmp)],
            env=env,
            what=f"pip download --require-hashes -r {path.relative_to(REPO)}",
        )
    verify_wheelhouse(tmp, locks)
    (tmp / ".key").write_text(key + "\n", encoding="utf-8")
    shutil.rmtree(wheels, ignore_errors=True)
    tmp.rename(wheels)
    log(f"wheelhouse: {len(list(wheels.iterdir())) - 1} files in {time.monotonic() - started:.0f} s")


# ---- the http server ------------------------------------------------------------------------


def server_pid():
    return proc.read_pid(HTTP_PID, "http.server")


def serve(address):
    """Start the package server on ``address``:8080 (idempotent); return its pid."""
    pid = server_pid()
    if pid:
        return pid
    HTTP_PID.parent.mkdir(parents=True, exist_ok=True)
    (STATE / "logs").mkdir(parents=True, exist_ok=True)
    with open(STATE / "logs" / "http.log", "a", encoding="utf-8") as out:
        child = subprocess.Popen(  # pylint: disable=consider-using-with
            [
                sys.executable,
                "-m",
                "http.server",
                str(HTTP_PORT),
                "--bind",
                address,
                "--directory",
                str(SERVE),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
        )
    HTTP_PID.write_text(f"{child.pid}\n", encoding="ascii")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise LabError(
                f"the package server exited (is port {HTTP_PORT} on {address} taken?): "
                f"see {STATE / 'logs' / 'http.log'}"
            )
        try:
            socket.create_connection((address, HTTP_PORT), timeout=0.5).close()
            return child.pid
        except OSError:
            time.sleep(0.1)
    raise LabError(
        f"the package server did not listen on {address}:{HTTP_PORT}: see {STATE / 'logs' / 'http.log'}"
    )


def unserve():
    pid = server_pid()
    if pid:
        proc.kill(pid)
        if not proc.wait_gone(pid, 5):
            proc.kill(pid, 9)
            proc.wait_gone(pid, 5)
    HTTP_PID.unlink(missing_ok=True)
