"""The hash-pinned locks of what the nodes and the deployer pip-install (salt/minion/files/locks,
written by bootstrap/lock-salt-wheels): the pins of requirements*.txt, a sha256 on every line,
one version per distribution, and every installer going through them with --require-hashes."""

import hashlib
import re

import pytest

from lab import LabError
from lab import repo as lab_repo
from tests.conftest import REPO

LOCKS = REPO / "salt" / "minion" / "files" / "locks"


def _locks():
    return {name: lab_repo.read_lock(LOCKS / name) for name in lab_repo.LOCK_FILES}


def _pins(*files):
    pins = {}
    for name in files:
        for line in (REPO / name).read_text(encoding="utf-8").splitlines():
            match = re.match(r"\s*([A-Za-z0-9._-]+)==([^\s;#]+)", line)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    return pins


def test_the_locks_pin_exactly_the_versions_of_the_requirements():
    locks = _locks()
    pins = _pins("requirements.txt", "requirements-nodeps.txt")
    assert locks["salt.txt"]["salt"][0] == pins["salt"]
    assert locks["master.txt"]["redis"][0] == pins["redis"]
    assert locks["master.txt"]["saltext-redis"][0] == pins["saltext-redis"]
    # what the pinned toolchain of the tests shares with the nodes is the same version
    for name in ("pyzmq", "jinja2", "cryptography", "pyyaml"):
        assert locks["salt.txt"][name][0] == pins[name], name


def test_every_requirement_line_is_pinned_with_a_sha256():
    for name in lab_repo.LOCK_FILES:
        text = (LOCKS / name).read_text(encoding="utf-8")
        logical = [
            line.strip()
            for line in text.replace("\\\n", " ").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        assert logical, name
        for line in logical:
            assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*==\S+( +--hash=sha256:[0-9a-f]{64})+", line), (name, line)


def test_one_version_per_distribution_and_the_left_out_ones_are_out():
    seen = {}
    for name, lock in _locks().items():
        for dist, (version, hashes) in lock.items():
            assert seen.setdefault(dist, version) == version, (name, dist)
            assert hashes
    # the build backend Salt's sdist asks for, and Salt's runtime, are all locked
    assert {"setuptools", "wheel", "looseversion", "packaging", "importlib-metadata"} <= set(_locks()["build.txt"])
    assert {"pyzmq", "msgpack", "tornado", "cryptography", "jinja2", "pyyaml"} <= set(_locks()["salt.txt"])
    # timelib: an sdist-only C extension Salt imports optionally; redis-py-cluster: would downgrade redis
    assert "timelib" not in seen and "redis-py-cluster" not in seen


def test_read_lock_refuses_a_line_without_a_hash(tmp_path):
    lock = tmp_path / "lock.txt"
    lock.write_text("redis==8.1.0 \\\n    --hash=sha256:" + "a" * 64 + "\nsalt==3008.4\n", encoding="utf-8")
    with pytest.raises(LabError, match="salt==3008.4"):
        lab_repo.read_lock(lock)
    lock.write_text("redis==8.1.0 --hash=sha256:" + "a" * 63 + "\n", encoding="utf-8")
    with pytest.raises(LabError):
        lab_repo.read_lock(lock)


def test_the_wheelhouse_check_refuses_a_file_no_lock_pins(tmp_path):
    genuine, other = tmp_path / "a-1.0-py3-none-any.whl", tmp_path / "b-1.0-py3-none-any.whl"
    genuine.write_bytes(b"genuine")
    other.write_bytes(b"genuinE")
    lock = {"a": ("1.0", {hashlib.sha256(b"genuine").hexdigest()})}
    with pytest.raises(LabError, match="b-1.0-py3-none-any.whl"):
        lab_repo.verify_wheelhouse(tmp_path, [lock])
    other.unlink()
    lab_repo.verify_wheelhouse(tmp_path, [lock])


def test_the_installers_go_through_the_locks_with_require_hashes():
    state = (REPO / "salt" / "minion" / "init.sls").read_text(encoding="utf-8")
    for name in ("build.txt", "salt.txt"):
        assert f"salt://minion/files/locks/{name}" in state
    pip_line = re.search(r"\{%- set pip = (.*?) %\}", state).group(1)
    assert "--require-hashes" in pip_line and "--no-deps" in pip_line
    assert "--no-build-isolation -r {{ minion.lock_dir }}/salt.txt" in state
    assert "salt==" not in re.search(r"minion-salt-pip-cmd-run:(.*?)- unless", state, re.S).group(1)
    deployer = (REPO / "bootstrap" / "deployer").read_text(encoding="utf-8")
    assert "--no-deps --require-hashes)" in deployer
    for name in ("build.txt", "salt.txt", "master.txt"):
        assert f'-r "$LOCKS/{name}"' in deployer
    # no pip install of a bare name any more (it would bypass the hashes)
    assert not re.search(r"pip install[^\n]*\"(salt|redis|saltext-redis)==", deployer)
