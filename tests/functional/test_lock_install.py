"""pip with --require-hashes over a small wheelhouse, as the nodes install (no network): the
genuine files install, one changed byte is refused. The wheelhouse is the lab's own when it holds
the files the real master.txt lock pins (redis, async-timeout, saltext-redis), else a wheel made
here with a lock written for it."""

import base64
import hashlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from lab import repo as lab_repo
from tests.conftest import REPO

LAB_WHEELHOUSE = lab_repo.SERVE / "wheelhouse"


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _made_wheel(directory):
    """A minimal valid wheel (one module) and its lock line."""
    files = {
        "lockprobe.py": b"GENUINE = True\n",
        "lockprobe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: lockprobe\nVersion: 1.0\n",
        "lockprobe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for name, data in files.items()
    ]
    files["lockprobe-1.0.dist-info/RECORD"] = ("\n".join([*record, "lockprobe-1.0.dist-info/RECORD,,"]) + "\n").encode()
    wheel = directory / "lockprobe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return f"lockprobe==1.0 --hash=sha256:{_sha256(wheel)}\n", "lockprobe.py"


@pytest.fixture
def wheelhouse(tmp_path):
    """(directory, lock file, a file the install must leave) — the lab's files when it has them."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    lock = REPO / "salt" / "minion" / "files" / "locks" / "master.txt"
    pinned = {h for _, hashes in lab_repo.read_lock(lock).values() for h in hashes}
    found = (
        [p for p in LAB_WHEELHOUSE.iterdir() if p.suffix == ".whl" and _sha256(p) in pinned]
        if LAB_WHEELHOUSE.is_dir()
        else []
    )
    if len(found) == len(lab_repo.read_lock(lock)):
        for path in found:
            shutil.copy2(path, house / path.name)
        return house, lock, "redis/__init__.py"
    line, module = _made_wheel(house)
    own = tmp_path / "lock.txt"
    own.write_text(line, encoding="utf-8")
    return house, own, module


def _pip_install(house, lock, target):
    # --isolated: no pip configuration of this host (extra indexes, find-links) takes part
    return subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "install", "--disable-pip-version-check",
         "--no-index", "--find-links", str(house), "--no-deps", "--require-hashes",
         "-r", str(lock), "--target", str(target)],
        capture_output=True, text=True, check=False, timeout=300,
    )


def test_the_genuine_wheelhouse_installs(wheelhouse, tmp_path):
    house, lock, module = wheelhouse
    proc = _pip_install(house, lock, tmp_path / "target")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "target" / module).is_file()


def test_one_changed_byte_is_refused(wheelhouse, tmp_path):
    house, lock, module = wheelhouse
    victim = sorted(house.glob("*.whl"))[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    proc = _pip_install(house, lock, tmp_path / "target")
    assert proc.returncode != 0
    assert "DO NOT MATCH THE HASHES" in proc.stderr, proc.stderr
    assert victim.name in proc.stderr
    assert not (tmp_path / "target" / module).exists()
