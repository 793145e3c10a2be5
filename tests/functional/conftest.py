"""Functional tier: Salt's loaders over the real salt/ tree, _modules and pillar; no daemons."""


import shutil
import subprocess
import time

import pytest
from saltfactories.utils.functional import Loaders

from tests.conftest import INVENTORY, STATE_TREE, cluster_pillar_opts, make_secrets, secrets_opts


@pytest.fixture(scope="module")
def node_root(tmp_path_factory):
    """Where the common state writes /etc/... (the loaders run on the test host itself)."""
    return tmp_path_factory.mktemp("node-root")


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("secrets") / "cluster-secrets"
    make_secrets(path)
    return path


@pytest.fixture(scope="module")
def minion_opts(salt_factories, node_root, secrets_dir):
    factory = salt_factories.salt_minion_daemon(
        "alpha",
        overrides={
            "file_client": "local",
            "file_roots": {"base": [str(STATE_TREE)]},
            **cluster_pillar_opts(INVENTORY),
            **secrets_opts(secrets_dir),
            "grains": {"roles": ["lanservices"]},
            "common": {"lookup": {"root": str(node_root), "set_running_hostname": False}},
            "roles": {"lookup": {"every_node": [], "services": {"deployer": [], "lanservices": [], "compute": []}}},
        },
    )
    return factory.config.copy()


@pytest.fixture(scope="module")
def loaders(minion_opts):
    return Loaders(minion_opts, loaded_base_name=f"{__name__}.loaded")


@pytest.fixture
def modules(loaders):
    return loaders.modules


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server on a unix socket in the test's directory (no TCP port)."""
    binary = shutil.which("redis-server")
    if not binary:
        pytest.fail("redis-server is missing (tests/host-packages.txt installs it)")
    sock = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        if sock.exists():
            break
        time.sleep(0.05)
    yield sock
    proc.terminate()
    proc.wait(10)
