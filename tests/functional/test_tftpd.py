"""The tftpd state on the test host (the network-boot tree under a scratch root), then the real
in.tftpd serving it on the loopback, checked with the tftpd status function."""

import filecmp
import shlex
import shutil
import socket

import pytest

from tests.conftest import INVENTORY
from tests.functional.lannet import Daemon, by_id, changed, failed, node_loaders, verify_unit, wait_for

TREE = "srv/tftp"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("tftpd-alpha")


@pytest.fixture(scope="module")
def alpha(salt_factories, root, secrets_dir):
    return node_loaders(salt_factories, "alpha", root, secrets_dir)


@pytest.fixture(scope="module")
def applied(alpha, root):
    dry = alpha.modules.state.sls("tftpd", test=True)
    written = sorted(str(p) for p in root.rglob("*") if p.is_file())
    real = alpha.modules.state.sls("tftpd")
    return {"dry": dry, "written_by_dry_run": written, "real": real}


def test_test_mode_writes_nothing(applied):
    assert not failed(applied["dry"]), failed(applied["dry"])
    assert by_id(applied["dry"], "tftpd-loader-pxelinux-0-file-managed")["result"] is None
    assert applied["written_by_dry_run"] == []


def test_the_tree_has_the_boot_file_dhcp_hands_out(applied, root):
    assert not failed(applied["real"]), failed(applied["real"])
    tree = root / TREE
    # the filename DHCP hands out (salt/dhcpd renders tftpd:boot_file) is the real loader
    assert filecmp.cmp(tree / "pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0", shallow=False)
    assert filecmp.cmp(tree / "ldlinux.c32", "/usr/lib/syslinux/modules/bios/ldlinux.c32", shallow=False)
    assert "LOCALBOOT 0" in (tree / "pxelinux.cfg/default").read_text()
    defaults = dict(
        (k, shlex.split(v)[0]) for k, v in
        (line.split("=", 1) for line in (root / "etc/default/tftpd-hpa").read_text().splitlines()
         if line and not line.startswith("#"))
    )
    assert verify_unit(root / "etc/systemd/system/tftpd-hpa.service") == []
    assert defaults == {"TFTP_USERNAME": "tftp", "TFTP_DIRECTORY": str(tree), "TFTP_ADDRESS": "0.0.0.0:69",
                        "TFTP_OPTIONS": "--secure", "TFTP_BOOT_FILE": "pxelinux.0"}


def test_one_pxelinux_config_per_inventory_node(applied, root):
    import yaml  # pylint: disable=import-outside-toplevel

    nodes = yaml.safe_load(INVENTORY.read_text())["cluster"]["nodes"]
    cfg = root / TREE / "pxelinux.cfg"
    expected = {"default"} | {"01-" + n["mac"].replace(":", "-") for n in nodes.values()}
    assert {p.name for p in cfg.iterdir()} == expected
    delta = (cfg / "01-b8-27-eb-00-00-21").read_text()
    assert "delta.dc1.b3rry.clust0r (192.168.10.21, b8:27:eb:00:00:21, roles: compute)" in delta
    readme = (root / TREE / "README.txt").read_text()
    for name, node in nodes.items():
        assert name in readme and node["ip"] in readme


def test_second_run_changes_nothing_and_stale_configs_go(applied, alpha, root):
    stale = root / TREE / "pxelinux.cfg" / "01-de-ad-be-ef-00-01"
    stale.write_text("DEFAULT local\n")
    ret = alpha.modules.state.sls("tftpd")
    assert not failed(ret)
    changes = changed(ret)
    assert list(changes) == ["tftpd-pxelinux-cfg-file-directory"]
    assert str(stale) in changes["tftpd-pxelinux-cfg-file-directory"]
    assert not any("01-b8-27-eb" in path for path in changes["tftpd-pxelinux-cfg-file-directory"])
    assert not stale.exists()
    again = alpha.modules.state.sls("tftpd")
    assert changed(again) == {}


def test_boot_file_must_be_in_the_tree(salt_factories, tmp_path, secrets_dir):
    wrong = node_loaders(salt_factories, "alpha", tmp_path, secrets_dir, tftpd={"boot_file": "bootcode.bin"})
    ret = wrong.modules.state.sls("tftpd")
    assert "DHCP would hand out a file the tree does not have" in str(ret.raw)
    assert not (tmp_path / TREE).exists()


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(shutil.which("in.tftpd") is None, reason="tftpd-hpa is not installed (tests/host-packages.txt)")
def test_real_tftpd_serves_the_tree(applied, alpha, root, tmp_path):
    port = free_udp_port()
    tree = root / TREE
    # what tftpd-hpa.service runs, on the loopback and an unprivileged port
    daemon = Daemon(["in.tftpd", "--foreground", "--listen", "--user", "tftp", "--address", f"127.0.0.1:{port}",
                     "--secure", str(tree)], tmp_path / "tftpd.log")
    try:
        defaults = str(root / "etc/default/tftpd-hpa")
        status = wait_for(lambda: alpha.modules.tftpd.status(port=port, defaults_file=defaults)["served"], 10,
                          what="in.tftpd serving pxelinux.0")
        assert status
        out = alpha.modules.tftpd.status(port=port, defaults_file=defaults)
        assert out["boot_file"] == "pxelinux.0" and out["size"] == (tree / "pxelinux.0").stat().st_size
        assert out["error"] is None
        cfg = alpha.modules.tftpd.fetch("pxelinux.cfg/01-b8-27-eb-00-00-21", port=port)
        assert cfg == (tree / "pxelinux.cfg/01-b8-27-eb-00-00-21").read_bytes()
        with pytest.raises(Exception, match="TFTP error 1"):
            alpha.modules.tftpd.fetch("no-such-file", port=port)
        # a file the tree does not serve is reported, not raised
        missing = alpha.modules.tftpd.status(port=port, defaults_file=defaults, filename="nope.0")
        assert missing["served"] is False and "TFTP error" in missing["error"]
    finally:
        daemon.stop()
    down = alpha.modules.tftpd.status(port=port, defaults_file=defaults, timeout=0.5)
    assert down["served"] is False and down["error"]
