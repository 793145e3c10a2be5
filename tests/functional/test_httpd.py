"""The httpd state on the test host (the chroot and the cluster page under a scratch root), then
BusyBox httpd run from that chroot as an unprivileged user on the loopback, the way
bbhttpd.service runs it (systemd RootDirectory= + User=; here chroot --userspec)."""

import filecmp
import json
import os
import pwd
import shutil
import socket

import pytest
import yaml

from tests.conftest import INVENTORY
from tests.functional.lannet import Daemon, by_id, changed, failed, node_loaders, verify_unit, wait_for

CHROOT = "srv/bbhttpd"
NODES = yaml.safe_load(INVENTORY.read_text())["cluster"]["nodes"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("httpd-alpha")


@pytest.fixture(scope="module")
def alpha(salt_factories, root, secrets_dir):
    return node_loaders(salt_factories, "alpha", root, secrets_dir, httpd={"port": 18081})


@pytest.fixture(scope="module")
def applied(alpha, root):
    dry = alpha.modules.state.sls("httpd", test=True)
    written = sorted(str(p) for p in root.rglob("*") if p.is_file())
    real = alpha.modules.state.sls("httpd")
    return {"dry": dry, "written_by_dry_run": written, "real": real}


def test_test_mode_writes_nothing(applied):
    assert not failed(applied["dry"]), failed(applied["dry"])
    assert by_id(applied["dry"], "httpd-page-inventory-file-managed")["result"] is None
    assert applied["written_by_dry_run"] == []


def test_the_chroot_holds_only_busybox_its_config_and_the_page(applied, alpha, root):
    assert not failed(applied["real"]), failed(applied["real"])
    chroot = root / CHROOT
    files = sorted(str(p.relative_to(chroot)) for p in chroot.rglob("*") if p.is_file())
    assert files == ["bin/busybox", "etc/httpd.conf", "www/cluster.json", "www/inventory.html"]
    assert filecmp.cmp(chroot / "bin/busybox", "/bin/busybox", shallow=False)
    for path in [chroot, *chroot.rglob("*")]:
        stat = path.stat()
        assert stat.st_uid == 0 and not stat.st_mode & 0o022, f"{path} is writable by someone else than root"
    again = alpha.modules.state.sls("httpd")
    assert not failed(again) and changed(again) == {}


def test_the_port_comes_from_pillar(applied, root):
    assert "BBHTTPD_PORT=18081\n" in (root / "etc/default/bbhttpd").read_text()
    unit = (root / "etc/systemd/system/bbhttpd.service").read_text()
    assert f"RootDirectory={root / CHROOT}\n" in unit
    assert "User=bbhttpd\n" in unit
    assert "ExecStart=/bin/busybox httpd -f -p ${BBHTTPD_PORT} -h /www -c /etc/httpd.conf\n" in unit
    assert verify_unit(root / "etc/systemd/system/bbhttpd.service") == []


def test_the_page_is_generated_from_the_inventory(applied, root):
    page = (root / CHROOT / "www/inventory.html").read_text()
    for name, node in NODES.items():
        assert f"<td>{name}.dc1.b3rry.clust0r</td><td>{node['ip']}</td><td>{node['mac']}</td>" in page
    assert "VIP 192.168.10.111 (ns.dc1.b3rry.clust0r)" in page
    data = json.loads((root / CHROOT / "www/cluster.json").read_text())
    assert [n["name"] for n in data["nodes"]] == ["alpha", "beta", "psi", "delta", "epsilon", "gamma", "zeta"]
    assert data["lanservices"] == {"primary": "alpha", "secondary": "beta"}
    assert data["boot_file"] == "pxelinux.0"


def free_tcp_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chroot") is None, reason="needs root for chroot")
def test_busybox_httpd_serves_the_page_from_the_chroot_unprivileged(applied, alpha, root, tmp_path):
    port = free_tcp_port()
    chroot = root / CHROOT
    nobody = pwd.getpwnam("nobody")
    daemon = Daemon(["chroot", f"--userspec={nobody.pw_uid}:{nobody.pw_gid}", str(chroot),
                     "/bin/busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www", "-c", "/etc/httpd.conf"],
                    tmp_path / "httpd.log")
    try:
        defaults = str(root / "etc/default/bbhttpd")
        status = wait_for(lambda: alpha.modules.bbhttpd.status(port=port, defaults_file=defaults)["serves_page"],
                          10, what="busybox httpd answering")
        assert status
        out = alpha.modules.bbhttpd.status(port=port, defaults_file=defaults)
        assert out["http_status"] == 200 and out["error"] is None
        data = json.loads(alpha.modules.bbhttpd.get("/cluster.json", port=port)["body"])
        assert data["domain"] == "dc1.b3rry.clust0r"
        # nothing outside /www, let alone outside the chroot
        assert alpha.modules.bbhttpd.get("/../etc/httpd.conf", port=port)["status"] != 200
        assert alpha.modules.bbhttpd.get("/../../../../etc/passwd", port=port)["status"] != 200
        # the server runs as nobody, chrooted
        pid = daemon.proc.pid
        uids = next(line for line in open(f"/proc/{pid}/status", encoding="ascii") if line.startswith("Uid:"))
        assert uids.split()[1:] == [str(nobody.pw_uid)] * 4
        assert os.readlink(f"/proc/{pid}/root") == str(chroot)
    finally:
        daemon.stop()
    down = alpha.modules.bbhttpd.status(port=port, defaults_file=defaults, timeout=0.5)
    assert down["serves_page"] is False and "no HTTP answer" in down["error"]
