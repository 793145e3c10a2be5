"""Functional tier: Salt's loaders over the real salt/ tree, _modules and pillar; no daemons."""


import shutil
import subprocess
import time

import pytest
from saltfactories.utils.functional import Loaders

from tests.conftest import INVENTORY, STATE_TREE, cluster_pillar_opts, make_secrets, secrets_opts
from tests.functional.nodefs import make_node

# alpha_node's role table, emptied (roles:lookup): its highstate is then common, the role
# marker and no clean, what test_state_tree asserts of a highstate (the grain's role only, then
# zero changes). The full table would add the lanservices services (tested in their nodes' files
# by their own tests) and every_node's tls, which asks a CA over a Salt bus there is none of here.
EMPTY_ROLE_TABLE = {"every_node": [], "services": {"deployer": [], "lanservices": [], "compute": []}}


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("secrets") / "cluster-secrets"
    make_secrets(path)
    return path


@pytest.fixture(scope="module")
def minion_opts(salt_factories, secrets_dir):
    """alpha's config for loaders in the test's own process: reads only (pillar, rendering,
    modules on the test's own scratch files); what applies states is ``alpha_node``."""
    factory = salt_factories.salt_minion_daemon(
        "alpha",
        overrides={
            "file_client": "local",
            "file_roots": {"base": [str(STATE_TREE)]},
            **cluster_pillar_opts(INVENTORY),
            **secrets_opts(secrets_dir),
            "grains": {"roles": ["lanservices"]},
        },
    )
    return factory.config.copy()


@pytest.fixture(scope="module")
def alpha_node(salt_factories, secrets_dir, tmp_path_factory):
    """alpha (grain role lanservices, the role table emptied) applying states in its own files
    (tests/functional/nodefs.py): common writes the real /etc/hosts, /etc/hostname,
    /etc/cluster/... and sets the running hostname, all in alpha's namespace; the test reads
    them under ``alpha_node.root``."""
    return make_node(salt_factories, "alpha", tmp_path_factory.mktemp("alpha-node"), secrets_dir,
                     grains={"roles": ["lanservices"]}, roles=EMPTY_ROLE_TABLE)


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
