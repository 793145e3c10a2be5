"""Shared fixtures: paths of the project and a short root for salt-factories' sockets."""

import importlib.util
import pathlib
import shutil
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
STATE_TREE = REPO / "salt"
PILLAR_TREE = REPO / "pillar"
INVENTORY = PILLAR_TREE / "cluster" / "inventory.yaml"


def load_by_path(name, path):
    """Import a module that is not in a package (_modules/, _grains/, _runners/, bootstrap/)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def salt_factories_default_root_dir():
    # salt-factories' default is a fixed /tmp/<id>: one short directory per test session
    # instead (unix socket paths are limited; concurrent sessions must not share daemons)
    pathlib.Path("/tmp/rpic").mkdir(exist_ok=True)
    root = pathlib.Path(tempfile.mkdtemp(prefix="sf", dir="/tmp/rpic"))
    yield root
    shutil.rmtree(root, ignore_errors=True)
