"""salt-ssh applies ``bootstrap.minion`` to a node, as the deployer does on first contact.

The "node" is this host seen through a sandbox (tests/integration/sandbox.py): an sshd on a
loopback address in its own mount and PID namespaces, whose sessions write into overlayfs
upper dirs, so the host is left untouched. Its init system is mocked (the test host has no
systemd): Debian init scripts start the unit's ExecStart and signal the sandbox's sshd.

The node starts out "vanilla Raspbian": a `pi` user with password `raspberry`, in group sudo,
with a NOPASSWD sudoers rule. The first run logs in as pi with that password (roster like the
deployer's first contact); the second run uses the admin account the first run created (the
deployer's key, sudo) and must change nothing.

Master side: a salt-factories master configuration (never started: salt-ssh needs none) with
the repo's state and pillar trees, an inventory on 127.77.0.0/24 (no traffic leaves the host;
the minion started on the node looks for the master at 127.77.0.10 and finds nothing), the
secrets made by bootstrap/generate-secrets, and a master key pair made here.
"""

import glob
import importlib.metadata
import json
import os
import pathlib
import re
import stat
import subprocess
import sys
import time

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import (
    INVENTORY,
    STATE_TREE,
    cluster_pillar_opts,
    make_secrets,
    model_environ,
    secrets_opts,
)
from tests.integration.sandbox import MOCK_INIT_REMOVE, MOCK_INIT_SEEDS, NodeSandbox

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, overlayfs, sshd)"),
    pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="needs openssh-server"),
    pytest.mark.skipif(not os.path.exists("/usr/sbin/visudo"), reason="needs sudo (visudo)"),
]

NODE = "delta"  # a compute node of the inventory
SUBNET = "127.77.0"  # the inventory's 192.168.10.0/24, moved onto loopback
NODE_IP = f"{SUBNET}.21"
DEPLOYER_IP = f"{SUBNET}.10"
ADMIN = "piclust"  # the pillar's default admin account (cluster_admin_user)
SET_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # not the pyenv shims

# the test host itself must not get any of these (the sandbox takes every write)
HOST_PATHS = (
    "/opt/salt",
    "/etc/salt/minion.d/cluster.conf",
    "/etc/salt/pki/minion/minion.pem",
    f"/etc/sudoers.d/020_{ADMIN}-nopasswd",
    "/etc/ssh/sshd_config.d/10-cluster.conf",
    "/etc/systemd/system/salt-minion.service",
    "/etc/init.d/salt-minion",
    "/etc/rc2.d/S01salt-minion",
    f"/home/{ADMIN}",
    "/run/salt-minion.pid",
    "/run/sandbox-sshd.pid",
)
# ... and these must not change (salt-ssh -i writes ~/.ssh/known_hosts without its own file)
HOST_FILES = ("/etc/sudoers", "/etc/ssh/sshd_config", "/root/.ssh/known_hosts")
# a vanilla Raspberry Pi OS account, made inside the node before its sshd starts
VANILLA_PI = [
    "useradd -m -s /bin/bash -G sudo pi",
    "echo pi:raspberry | chpasswd",
    "echo 'pi ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/010_pi-nopasswd",
    "chmod 0440 /etc/sudoers.d/010_pi-nopasswd",
]


def _host_state():
    present = {p for p in HOST_PATHS if os.path.lexists(p)} | set(glob.glob("/etc/sudoers.d/020_*"))
    names = {
        line.split(":", 1)[0]
        for db in ("/etc/passwd", "/etc/shadow", "/etc/group")
        for line in pathlib.Path(db).read_text().splitlines()
    }
    return present, {"pi", ADMIN} & names


def _host_files():
    return {p: pathlib.Path(p).read_bytes() if os.path.exists(p) else None for p in HOST_FILES}


@pytest.fixture(scope="module")
def host_guard():
    present, users = _host_state()
    if present or users:
        pytest.skip(f"the test host already has {sorted(present | users)}: cannot prove it stays clean")
    files = _host_files()
    yield
    assert _host_state() == (set(), set()), "the bootstrap leaked onto the test host"
    assert _host_files() == files, "a host file changed"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("bootstrap-ssh")


@pytest.fixture(scope="module")
def loopback_inventory(work):
    text = INVENTORY.read_text(encoding="utf-8").replace("192.168.10.", f"{SUBNET}.")
    data = yaml.safe_load(text)
    assert data["cluster"]["nodes"][NODE]["ip"] == NODE_IP
    assert data["cluster"]["nodes"]["psi"]["ip"] == DEPLOYER_IP
    path = work / "inventory.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cluster_secrets(work, loopback_inventory):
    path = work / "cluster-secrets"
    make_secrets(path, "--inventory", loopback_inventory)
    return path


@pytest.fixture(scope="module")
def master_pub(work):
    """The master's public key the nodes pin (master_finger); no master runs."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = work / "master.pub"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


@pytest.fixture(scope="module")
def node(work, host_guard):
    """The sandboxed node: the pi user, mock init scripts, /opt/salt already installed."""
    sandbox = NodeSandbox(
        work / "node",
        NODE_IP,
        seeds=MOCK_INIT_SEEDS,
        remove=MOCK_INIT_REMOVE,
        # /opt/salt is the test's own venv (same pinned Salt): the state's `python3 -m venv`
        # (creates: /opt/salt/bin/python) and `pip install salt==` (unless: that version is
        # there) are then satisfied without a download from PyPI or a package cache
        symlinks={"/opt/salt": sys.prefix},
        setup=VANILLA_PI,
    )
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()
    assert not sandbox.processes()


@pytest.fixture(scope="module")
def ssh_master(salt_factories, work, loopback_inventory, cluster_secrets, master_pub):
    known_hosts = work / "known_hosts"
    known_hosts.touch()  # must exist, or salt-ssh -i writes ~/.ssh/known_hosts
    return salt_factories.salt_master_daemon(
        "bootstrap-ssh-master",
        overrides={
            "file_roots": {"base": [str(STATE_TREE)]},
            **cluster_pillar_opts(loopback_inventory),
            **secrets_opts(cluster_secrets),
            "cluster_master_pub": str(master_pub),
            # the venv's Salt: the pip step's `unless` holds (see the node fixture)
            "cluster_salt_version": importlib.metadata.version("salt"),
            "known_hosts_file": str(known_hosts),
            "ssh_log_file": str(work / "salt-ssh.log"),
        },
    )


def _roster(work, node, name, **entry):
    path = work / name
    entry = {"host": node.address, "port": node.port, "sudo": True, "set_path": SET_PATH, **entry}
    path.write_text(yaml.safe_dump({NODE: entry}), encoding="utf-8")
    return path


def _salt_ssh(ssh_master, work, roster, *args, timeout=240):
    # -w as the repo's Saltfile has it (ssh_wipe: the thin dir's state tarball carries the
    # rendered pillar, with the node's private key). salt-factories runs salt-ssh as
    # cli_salt_ssh.py, so no Saltfile's `salt-ssh:` section applies; an own --saltfile keeps
    # the repo's (ssh_log_file on the host) out even if that changes.
    saltfile = work / "Saltfile"
    saltfile.write_text(
        yaml.safe_dump({"salt-ssh": {"ssh_wipe": True, "ssh_log_file": str(work / "salt-ssh.log")}}),
        encoding="utf-8",
    )
    # the pillar (ext_pillar, top) imports rpicluster in salt-ssh's own process
    cli = ssh_master.salt_ssh_cli(roster_file=str(roster), timeout=timeout, environ=model_environ(work / "model-path"))
    started = time.monotonic()
    ret = cli.run(f"--saltfile={saltfile}", "-w", "-i", *args, minion_tgt=NODE)
    elapsed = time.monotonic() - started
    (work / f"{roster.name}.json").write_text(json.dumps(ret.data, indent=1, default=str), encoding="utf-8")
    return ret, elapsed


def _states(ret):
    assert ret.returncode == 0, ret
    assert isinstance(ret.data, dict), ret
    failed = {sid: r.get("comment") for sid, r in ret.data.items() if r.get("result") is not True}
    assert not failed, failed
    return ret.data


def _changed(states):
    return sorted(r["__id__"] for r in states.values() if r.get("changes"))


def _auth_methods(node, user):
    """The authentication methods the node's sshd offers ``user`` (without trying any)."""
    proc = subprocess.run(
        [
            "ssh",
            "-p",
            str(node.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=5",
            f"{user}@{node.address}",
            "true",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    found = re.search(r"Permission denied \(([^)]*)\)", proc.stderr)
    assert found, proc.stderr
    return set(found.group(1).split(","))


def _mode(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def test_bootstrap_minion_over_salt_ssh_init_system_mocked(
    node, ssh_master, work, cluster_secrets, master_pub
):
    import salt.utils.crypt  # pylint: disable=import-outside-toplevel

    assert "password" in _auth_methods(node, "pi")  # vanilla: password SSH open

    # -- first contact: the default user and password, as the deployer's roster does
    first = _roster(work, node, "roster.first-contact", user="pi", passwd="raspberry")
    ret, first_secs = _salt_ssh(ssh_master, work, first, "state.apply", "bootstrap.minion")
    states = _states(ret)
    changed = _changed(states)
    for sid in (
        "admin-user-present",
        "admin-keys-ssh-auth-manage",
        "admin-sudoers-file-managed",
        "admin-default-user-password-locked",
        "admin-default-user-not-in-sudo",
        "admin-default-user-nopasswd-file-absent",
        "sshd-config-dropin-file-managed",
        "sshd-service-running",  # reloaded
        "minion-config-file-managed",
        "minion-roles-grain-file-serialize",
        "minion-key-pem-file-managed",
        "minion-key-pub-file-managed",
        "minion-unit-file-managed",
        "minion-service-running",  # enabled and started
    ):
        assert sid in changed, (sid, changed)
    assert "minion-venv-cmd-run" not in changed and "minion-salt-pip-cmd-run" not in changed

    # -- the minion: configuration, pre-seeded key, modes
    pki = "/etc/salt/pki/minion"
    assert _mode(node.path(pki)) == (0o700, 0, 0)
    assert _mode(node.path(f"{pki}/minion.pem")) == (0o400, 0, 0)
    assert _mode(node.path(f"{pki}/minion.pub")) == (0o644, 0, 0)
    keys = cluster_secrets / "minion-keys"
    assert node.path(f"{pki}/minion.pem").read_text() == (keys / f"{NODE}.pem").read_text()
    assert node.path(f"{pki}/minion.pub").read_text() == (keys / f"{NODE}.pub").read_text()
    conf_path = "/etc/salt/minion.d/cluster.conf"
    assert _mode(node.path(conf_path)) == (0o644, 0, 0)
    conf = yaml.safe_load(node.path(conf_path).read_text())
    assert conf == {
        "master": DEPLOYER_IP,
        "id": NODE,
        "master_finger": salt.utils.crypt.pem_finger(str(master_pub), sum_type="sha256"),
        "start_event_grains": ["cluster_provisioned"],
        # Salt's loader as on the master (master.d/loader.conf); custom modules synced on change
        "lazy_loader_strict_matching": True,
        "autoload_dynamic_modules": False,
    }
    # the roles grain is in the grains file (no restart when it changes), not in the configuration
    assert _mode(node.path("/etc/salt/grains")) == (0o644, 0, 0)
    assert yaml.safe_load(node.path("/etc/salt/grains").read_text()) == {"roles": ["compute"]}
    assert re.fullmatch(r"([0-9a-f]{2}:){31}[0-9a-f]{2}", conf["master_finger"])
    # the file landed in the sandbox's overlay, not on the host
    assert node.upper(conf_path).is_file() and not os.path.exists(conf_path)
    # and Salt reads it as meant (what salt-minion loads at start)
    loaded = node.run(
        [
            "/opt/salt/bin/python",
            "-c",
            "import json, salt.config, salt.grains.extra as extra; o = salt.config.minion_config('/etc/salt/minion');"
            " extra.__opts__ = o;"  # the grains file where Salt's own grains loader reads it
            " print(json.dumps([o['id'], o['master'], o['master_finger'], extra.config()['roles'],"
            " o['lazy_loader_strict_matching'], o['autoload_dynamic_modules']]))",
        ]
    )
    assert json.loads(loaded.stdout) == [NODE, DEPLOYER_IP, conf["master_finger"], ["compute"], True, False], loaded.stderr

    # -- the minion service: enabled (the rc2.d link: Salt's service module is debian_service,
    # through the mocked insserv) and running the unit's ExecStart, i.e. the venv's salt-minion
    assert os.readlink(node.path("/etc/rc2.d/S01salt-minion")) == "../init.d/salt-minion"
    assert (
        "ExecStart=/opt/salt/bin/salt-minion"
        in node.path("/etc/systemd/system/salt-minion.service").read_text()
    )
    minions = [argv for argv in node.processes().values() if any("salt-minion" in a for a in argv)]
    assert minions, node.processes()

    # -- the admin account: key-only login, NOPASSWD sudo
    deployer_pub = (cluster_secrets / "ssh" / "deployer_ed25519.pub").read_text().strip()
    auth_keys = node.path(f"/home/{ADMIN}/.ssh/authorized_keys")
    assert deployer_pub.split()[1] in auth_keys.read_text()
    sudoers = node.path(f"/etc/sudoers.d/020_{ADMIN}-nopasswd")
    assert _mode(sudoers) == (0o440, 0, 0)
    assert sudoers.read_text().strip() == f"{ADMIN} ALL=(ALL) NOPASSWD: ALL"

    # -- locked down: no password SSH (the drop-in, live after the reload), pi neutralised
    dropin = node.path("/etc/ssh/sshd_config.d/10-cluster.conf").read_text()
    assert "PasswordAuthentication no" in dropin.splitlines()
    assert "PermitRootLogin no" in dropin.splitlines()
    effective = node.run(["/usr/sbin/sshd", "-T"]).stdout
    assert "passwordauthentication no" in effective and "permitrootlogin no" in effective
    assert "password" not in _auth_methods(node, "pi")  # the running sshd was reloaded
    assert node.run(["passwd", "-S", "pi"]).stdout.split()[1] == "L"
    assert "sudo" not in node.run(["id", "-nG", "pi"]).stdout.split()
    assert not node.path("/etc/sudoers.d/010_pi-nopasswd").exists()

    # -- salt-ssh -w: no thin dir (whose state tarball carries the private key) left behind
    assert not [p.name for p in node.path("/var/tmp").iterdir() if p.name.endswith("_salt")]

    # -- second run, as the admin with the deployer's key: zero changes
    admin = _roster(
        work, node, "roster.admin", user=ADMIN, priv=str(cluster_secrets / "ssh" / "deployer_ed25519")
    )
    ret, second_secs = _salt_ssh(ssh_master, work, admin, "state.apply", "bootstrap.minion")
    states = _states(ret)
    assert _changed(states) == [], {sid: states[sid]["changes"] for sid in states if states[sid]["changes"]}
    assert [argv for argv in node.processes().values() if any("salt-minion" in a for a in argv)]
    print(
        f"\nsalt-ssh bootstrap.minion: first contact {first_secs:.1f} s, rerun as admin {second_secs:.1f} s"
    )
