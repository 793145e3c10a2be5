"""Integration tier: a real salt-master and minions (pytest-salt-factories) on this host.

Minions are named after inventory nodes and carry the role grains the bootstrap would
write. They run on the test host itself, each in its node's own files and hostname
(tests/functional/nodefs.py: a private mount namespace whose /etc, /var, ... are overlays of
the host's, the node's changes under node_root(name)/etc, ...): the states write their real
paths and the host does not change. systemd is mocked there (a recording systemctl stub).
"""

import shutil
import sys

import pytest
import yaml

from tests.conftest import (
    INVENTORY,
    REPO,
    STATE_TREE,
    cluster_pillar_opts,
    make_secrets,
    model_environ,
    secrets_opts,
)
from tests.functional.nodefs import NodeFs

# the integration cluster: the project inventory minus three compute nodes (every node of
# the inventory has a running minion, or the orchestration would rightly report it missing)
NODES = ("psi", "alpha", "beta", "delta")
ROLES = {"psi": ["deployer"], "alpha": ["lanservices"], "beta": ["lanservices"], "delta": ["compute"]}


@pytest.fixture(scope="session")
def integration_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="session")
def inventory_file(integration_dir):
    data = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))
    data["cluster"]["nodes"] = {n: s for n, s in data["cluster"]["nodes"].items() if n in NODES}
    path = integration_dir / "inventory.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def broken_inventory(inventory_file):
    """Swap in an inventory with an invalid IP for the duration of one test."""
    good = inventory_file.read_text(encoding="utf-8")
    inventory_file.write_text(good.replace("ip: 192.168.10.8", "ip: 192.168.6.10.8"), encoding="utf-8")
    assert inventory_file.read_text(encoding="utf-8") != good
    try:
        yield "cluster.nodes.beta.ip: '192.168.6.10.8' is not an IPv4 address"
    finally:
        inventory_file.write_text(good, encoding="utf-8")


@pytest.fixture
def inventory_with_gamma(inventory_file):
    """Add compute node gamma to the inventory for one test."""
    good = inventory_file.read_text(encoding="utf-8")
    data = yaml.safe_load(good)
    data["cluster"]["nodes"]["gamma"] = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))["cluster"]["nodes"]["gamma"]
    inventory_file.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    try:
        yield
    finally:
        inventory_file.write_text(good, encoding="utf-8")


@pytest.fixture(scope="session")
def secrets_dir(integration_dir):
    path = integration_dir / "cluster-secrets"
    make_secrets(path)
    return path


@pytest.fixture(scope="session")
def master_environ(integration_dir):
    """salt-master, salt-run and salt-ssh import rpicluster (ext_pillar, pillar top, runner)."""
    return model_environ(integration_dir / "model-path")


@pytest.fixture(scope="session")
def salt_master(salt_factories, inventory_file, secrets_dir, master_environ):
    factory = salt_factories.salt_master_daemon(
        "rpic-master",
        overrides={
            "file_roots": {"base": [str(STATE_TREE)]},
            "runner_dirs": [str(REPO / "_runners")],
            **cluster_pillar_opts(inventory_file),
            **secrets_opts(secrets_dir),
            "auto_accept": False,
            "open_mode": False,
            "pillar_safe_render_error": True,
            # the self-healing reaction, as master.d/reactor.conf maps it on the deployer
            "reactor": [{"salt/minion/*/start": [str(STATE_TREE / "reactor" / "minion-start.sls")]}],
        },
    )
    # its own environment (the manager's goes to the minions too, which must not need the model)
    factory.environ = master_environ
    with factory.started(start_timeout=120):
        yield factory


def node_root(integration_dir, name):
    return integration_dir / "roots" / name


def _minion(salt_master, integration_dir, name, roles):
    root = node_root(integration_dir, name)
    shutil.rmtree(root, ignore_errors=True)
    node = NodeFs(root)
    factory = salt_master.salt_minion_daemon(
        name,
        overrides={
            "grains": {"roles": roles},
            # the roles' services are the lab's to prove: here common and the role markers
            "roles": {"lookup": {"every_node": [], "services": {"deployer": [], "lanservices": [], "compute": []}}},
            # as salt/minion writes it: the start event carries the provisioned marker
            "start_event_grains": ["cluster_provisioned"],
            "systemd.scope": False,
        },
    )
    # the minion runs in the node's files: its python started through the node's launcher
    factory.python_executable = str(node.launcher(root.parent / f"{name}-python", sys.executable))
    return factory


@pytest.fixture(scope="session")
def minions(salt_master, integration_dir):
    factories = {n: _minion(salt_master, integration_dir, n, r) for n, r in ROLES.items()}
    for factory in factories.values():
        factory.start(start_timeout=120)
    try:
        yield factories
    finally:
        for factory in factories.values():
            factory.terminate()


@pytest.fixture
def spawn_minion(salt_master, integration_dir):
    """Start an extra minion (e.g. one lying about its roles) for one test."""
    started = []

    def spawn(name, roles):
        factory = _minion(salt_master, integration_dir, name, roles)
        factory.start(start_timeout=120)
        started.append(factory)
        return factory

    yield spawn
    for factory in started:
        factory.terminate()
        # a later spawn of the same ID gets a fresh root dir and key pair: forget this one's key
        ret = salt_master.salt_key_cli().run("--yes", "--delete", factory.id)
        assert ret.returncode == 0, ret


@pytest.fixture(scope="session")
def salt_cli(salt_master):
    return salt_master.salt_cli(timeout=180)


@pytest.fixture(scope="session")
def salt_run_cli(salt_master, master_environ):
    return salt_master.salt_run_cli(timeout=300, environ=master_environ)
