"""The tftpd state on the test host, applied in the node's own files (tests/functional/nodefs.py:
the network-boot tree at its real path, /srv/tftp; systemd mocked), then the real in.tftpd
serving it on the loopback in those files, checked with the tftpd status function."""

import filecmp
import shlex
import shutil
import socket

import pytest

from tests.conftest import INVENTORY
from tests.functional.lannet import Daemon, by_id, changed, failed, verify_unit, wait_for
from tests.functional.lanpair import scratch_root
from tests.functional.nodefs import changes_made, make_node

TREE = "/srv/tftp"
DEFAULTS = "/etc/default/tftpd-hpa"
UNIT = "/etc/systemd/system/tftpd-hpa.service"


def at(node, path):
    """Where the node's file ``path`` (a real path) is read by the test."""
    return node.root / path.lstrip("/")


@pytest.fixture(scope="module")
def root():
    # in.tftpd drops to the tftp account in the node's files: a traversable root
    with scratch_root("tftpd-alpha") as path:
        yield path


@pytest.fixture(scope="module")
def alpha(salt_factories, root, secrets_dir):
    return make_node(salt_factories, "alpha", root, secrets_dir)


@pytest.fixture(scope="module")
def applied(alpha):
    return alpha.dry_then_real("tftpd")


def read_defaults(path):
    return dict(
        (k, shlex.split(v)[0] if v else "") for k, v in
        (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    )





def test_test_mode_writes_nothing(applied):
    assert not failed(applied["dry"]), failed(applied["dry"])
    assert by_id(applied["dry"], "tftpd-loader-pxelinux-0-file-managed")["result"] is None
    assert applied["written_by_dry_run"] == []


def test_test_mode_starts_nothing_mocked_systemctl(applied):
    assert changes_made(applied["calls_dry"]) == []


def test_the_tree_has_the_boot_file_dhcp_hands_out(applied, alpha):
    assert not failed(applied["real"]), failed(applied["real"])
    tree = at(alpha, TREE)
    # the filename DHCP hands out (salt/dhcpd renders tftpd:boot_file) is the real loader
    assert filecmp.cmp(tree / "pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0", shallow=False)
    assert filecmp.cmp(tree / "ldlinux.c32", "/usr/lib/syslinux/modules/bios/ldlinux.c32", shallow=False)
    assert "LOCALBOOT 0" in (tree / "pxelinux.cfg/default").read_text()
    assert verify_unit(at(alpha, UNIT)) == []
    assert f"EnvironmentFile={DEFAULTS}\n" in at(alpha, UNIT).read_text()
    assert read_defaults(at(alpha, DEFAULTS)) == {
        "TFTP_USERNAME": "tftp", "TFTP_DIRECTORY": TREE, "TFTP_ADDRESS": "0.0.0.0:69",
        "TFTP_OPTIONS": "--secure", "TFTP_BOOT_FILE": "pxelinux.0"}


def test_the_service_runs_enabled_after_a_daemon_reload_mocked_systemctl(applied, alpha):
    assert alpha.fs.units()["tftpd-hpa.service"] == {"active": True, "enabled": True}, alpha.fs.units()
    # the new unit file: systemd re-reads it before the start
    calls = changes_made(applied["calls_first"])
    assert calls.index("daemon-reload") < calls.index("start tftpd-hpa.service"), calls
    assert "enable tftpd-hpa.service" in calls
    # the packages are on the host (tests/host-packages.txt): nothing to install
    assert "tftpd-pkg-installed" not in changed(applied["real"])


def test_one_pxelinux_config_per_inventory_node(applied, alpha):
    import yaml  # pylint: disable=import-outside-toplevel

    nodes = yaml.safe_load(INVENTORY.read_text())["cluster"]["nodes"]
    cfg = at(alpha, TREE) / "pxelinux.cfg"
    expected = {"default"} | {"01-" + n["mac"].replace(":", "-") for n in nodes.values()}
    assert {p.name for p in cfg.iterdir()} == expected
    delta = (cfg / "01-b8-27-eb-00-00-21").read_text()
    assert "delta.dc1.b3rry.clust0r (192.168.10.21, b8:27:eb:00:00:21, roles: compute)" in delta
    readme = (at(alpha, TREE) / "README.txt").read_text()
    for name, node in nodes.items():
        assert name in readme and node["ip"] in readme


def test_second_run_changes_nothing_and_stale_configs_go(applied, alpha):
    stale = at(alpha, TREE) / "pxelinux.cfg" / "01-de-ad-be-ef-00-01"
    stale.write_text("DEFAULT local\n")
    calls_before = len(alpha.fs.systemctl_calls())
    ret = alpha.sls("tftpd")
    assert not failed(ret)
    changes = changed(ret)
    assert list(changes) == ["tftpd-pxelinux-cfg-file-directory"]
    assert f"{TREE}/pxelinux.cfg/01-de-ad-be-ef-00-01" in changes["tftpd-pxelinux-cfg-file-directory"]
    assert not any("01-b8-27-eb" in path for path in changes["tftpd-pxelinux-cfg-file-directory"])
    assert not stale.exists()
    again = alpha.sls("tftpd")
    assert changed(again) == {}
    # nothing the service watches changed: no reload, no restart (systemctl mocked)
    assert changes_made(alpha.fs.systemctl_calls()[calls_before:]) == []


def test_boot_file_must_be_in_the_tree(salt_factories, tmp_path, secrets_dir):
    wrong = make_node(salt_factories, "alpha", tmp_path, secrets_dir, tftpd={"boot_file": "bootcode.bin"})
    ret = wrong.sls("tftpd")
    assert "DHCP would hand out a file the tree does not have" in str(ret.raw)
    assert not at(wrong, TREE).exists()
    assert wrong.fs.written() == []


def test_the_clean_plans_stop_purge_removal_reload_where_tftpd_is(applied, alpha):
    """tftpd.clean rendered (never applied: it would purge the host's packages) on the node
    the state was applied to: its real paths, the unit and the packages."""
    plan = alpha.call(lambda loaders: [(c["state"] + "." + c["fun"], c["name"])
                                       for c in loaders.modules.state.show_low_sls("tftpd.clean")])
    assert sorted(plan) == sorted([
        ("service.dead", "tftpd-hpa"),
        ("pkg.purged", "tftpd-clean-pkg-purged"),
        ("file.absent", TREE),
        ("file.absent", DEFAULTS),
        ("file.absent", UNIT),
        ("cmd.run", "systemctl daemon-reload"),
    ]), plan


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("in.tftpd") is None, reason="tftpd-hpa is not installed (tests/host-packages.txt)")
def test_real_tftpd_serves_the_tree(applied, alpha, tmp_path):
    port = free_udp_port()
    conf = read_defaults(at(alpha, DEFAULTS))
    tree = at(alpha, TREE)
    # what tftpd-hpa.service runs (its rendered defaults), in the node's files, on the
    # loopback and an unprivileged port
    daemon = Daemon(alpha.wrap(["in.tftpd", "--foreground", "--listen", "--user", conf["TFTP_USERNAME"],
                                "--address", f"127.0.0.1:{port}", *shlex.split(conf["TFTP_OPTIONS"]),
                                conf["TFTP_DIRECTORY"]]),
                    tmp_path / "tftpd.log")

    def tftpd(fn, *args, **kwargs):
        """A tftpd module function in the node's files (its /etc/default/tftpd-hpa, its tree)."""
        return alpha.call(lambda loaders: getattr(loaders.modules.tftpd, fn)(*args, **kwargs))

    try:
        status = wait_for(lambda: tftpd("status", port=port)["served"], 20, step=0.2,
                          what="in.tftpd serving pxelinux.0")
        assert status, daemon.output()
        out = tftpd("status", port=port)
        assert out["boot_file"] == "pxelinux.0" and out["size"] == (tree / "pxelinux.0").stat().st_size
        assert out["root"] == TREE and out["error"] is None
        cfg = tftpd("fetch", "pxelinux.cfg/01-b8-27-eb-00-00-21", port=port)
        assert cfg == (tree / "pxelinux.cfg/01-b8-27-eb-00-00-21").read_bytes()
        with pytest.raises(Exception, match="TFTP error 1"):
            tftpd("fetch", "no-such-file", port=port)
        # a file the tree does not serve is reported, not raised
        missing = tftpd("status", port=port, filename="nope.0")
        assert missing["served"] is False and "TFTP error" in missing["error"]
    finally:
        daemon.stop()
    down = tftpd("status", port=port, timeout=0.5)
    assert down["served"] is False and down["error"]
