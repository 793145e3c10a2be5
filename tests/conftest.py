"""Shared fixtures: paths of the project, a short root for salt-factories' sockets, the cluster
pillar as master.d configures it, and the cluster's secrets as bootstrap/generate-secrets makes
them (sealed copies, GPG key)."""

import importlib.util
import logging
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

# The tests run their own lab (LAB_INSTANCE=test: lab/inventory-test.yaml, its own subnet, bridge
# and state directory), so `make test` never touches the cluster `make lab` brought up. Set here,
# before any test imports lab; `python3 -m lab` run by the tests inherits it. LAB_INSTANCE=
# (empty) runs them on the default lab instead.
os.environ.setdefault("LAB_INSTANCE", "test")

REPO = pathlib.Path(__file__).resolve().parent.parent
STATE_TREE = REPO / "salt"
PILLAR_TREE = REPO / "pillar"
INVENTORY = PILLAR_TREE / "cluster" / "inventory.yaml"
GENERATE_SECRETS = REPO / "bootstrap" / "generate-secrets"
_KEYDIRS = []  # every GPG keydir a test made: their gpg-agents are stopped at the end


def secrets_layout(secrets_dir):
    """Where make_secrets puts what a deployer has elsewhere: the GPG keydir (its
    /etc/salt/gpgkeys) and the repository holding the sealed copies, beside ``secrets_dir``."""
    base = pathlib.Path(secrets_dir).parent
    return base / "gpgkeys", base / "repo"


def make_secrets(secrets_dir, *args, check=True):
    """Run bootstrap/generate-secrets into ``secrets_dir`` (``args``: e.g. --inventory FILE) with
    the keydir and repository of ``secrets_layout``: never this checkout nor /etc/salt/gpgkeys."""
    keydir, repo = secrets_layout(secrets_dir)
    _KEYDIRS.append(keydir)
    cmd = [sys.executable, str(GENERATE_SECRETS), str(secrets_dir), "--repo", str(repo), "--gpg-keydir", str(keydir)]
    return subprocess.run([*cmd, *map(str, args)], check=check, capture_output=True, text=True, timeout=300)


def secrets_opts(secrets_dir):
    """The config a master (or a masterless minion) needs to render the secrets pillar from what
    make_secrets made: the plain directory, Salt's gpg keydir, and the sealed copies as a second
    pillar root (on a deployer they are in the repository's own pillar/secrets/sealed)."""
    keydir, repo = secrets_layout(secrets_dir)
    return {
        "cluster_secrets_dir": str(secrets_dir),
        "gpg_keydir": str(keydir),
        "gpg_decrypt_must_succeed": True,
        "pillar_roots": {"base": [str(PILLAR_TREE), str(repo / "pillar")]},
    }


def cluster_pillar_opts(inventory=INVENTORY):
    """The config that gives a master (or a masterless minion) the cluster pillar as
    master.d/cluster.conf does: the inventory, and the ext_pillar _pillar/cluster.py that hands
    each node ``cluster`` and its ``node`` view."""
    return {"cluster_inventory": str(inventory), "pillar_dirs": [str(REPO / "_pillar")], "ext_pillar": [{"cluster": {}}]}


def model_environ(directory):
    """The environment of a master-side process started as a subprocess (salt-master, salt-run,
    salt-ssh): it imports rpicluster as bootstrap/deployer makes Salt's venv do, from a directory
    (``directory``) holding only a link to the package. Minions get no such path."""
    link = pathlib.Path(directory) / "rpicluster"
    if not link.is_symlink():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(REPO / "rpicluster")
    path = [str(directory), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def stop_gpg_agents(keydirs):
    for keydir in keydirs:
        if pathlib.Path(keydir).exists():
            subprocess.run(["gpgconf", "--homedir", str(keydir), "--kill", "gpg-agent"], check=False, capture_output=True)


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


# Salt's loader options of the deployer's master and of every minion (master.d/loader.conf): every
# master and minion the tests start runs with them, so the tests load modules as production does.
LOADER_OPTS = {
    option: value
    for option, value in yaml.safe_load((REPO / "master.d" / "loader.conf").read_text()).items()
    if option != "ssh_minion_opts"
}


@pytest.fixture(scope="session", autouse=True)
def _production_loader_opts():
    """Every master and minion salt-factories starts gets production's LOADER_OPTS (a test's own
    overrides still win)."""
    from saltfactories.manager import FactoriesManager

    def with_loader_opts(start):
        def started(self, *args, overrides=None, **kwargs):
            return start(self, *args, overrides={**LOADER_OPTS, **(overrides or {})}, **kwargs)
        return started

    with pytest.MonkeyPatch.context() as patch:
        for kind in ("salt_master_daemon", "salt_minion_daemon"):
            patch.setattr(FactoriesManager, kind, with_loader_opts(getattr(FactoriesManager, kind)))
        yield


@pytest.fixture(scope="session", autouse=True)
def _gpg_agents():
    """gpg starts one agent per keydir (generate-secrets, Salt's renderer): none outlives the tests."""
    yield
    stop_gpg_agents(_KEYDIRS)


# CI runs as root, where every tier can run: a skipped test there is a missing package or a
# broken set-up, not a pass. ALLOW_SKIPS=1 lets a developer run a subset as root anyway.
SKIPPED = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        SKIPPED.append(report)


def _skips_fail_the_run():
    return bool(SKIPPED) and os.geteuid() == 0 and not os.environ.get("ALLOW_SKIPS")


def pytest_sessionfinish(session, exitstatus):
    if _skips_fail_the_run() and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if _skips_fail_the_run():
        terminalreporter.section("skipped as root: the run fails (ALLOW_SKIPS=1 to accept)", red=True)
        for report in SKIPPED:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            terminalreporter.line(f"{report.nodeid}: {reason}")


def pytest_unconfigure(config):
    # Salt's log handlers flush their queued records at interpreter exit, after pytest closed the
    # streams they were given: without this, every run ends with pages of "--- Logging error ---".
    logging.raiseExceptions = False
