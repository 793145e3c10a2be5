"""The httpd state on the test host, applied in the node's own files (tests/functional/nodefs.py:
the chroot and the cluster page at their real path, /srv/bbhttpd; the account in the node's
/etc/passwd; systemd mocked), then BusyBox httpd run from that chroot as that account on the
loopback, the way bbhttpd.service runs it (systemd RootDirectory= + User=; here chroot
--userspec, in the node's files)."""

import filecmp
import json
import os
import shutil
import socket

import pytest
import yaml

from tests.conftest import INVENTORY
from tests.functional.lannet import Daemon, by_id, changed, failed, verify_unit, wait_for
from tests.functional.lanpair import scratch_root
from tests.functional.nodefs import changes_made, make_node

CHROOT = "/srv/bbhttpd"
DEFAULTS = "/etc/default/bbhttpd"
UNIT = "/etc/systemd/system/bbhttpd.service"
NODES = yaml.safe_load(INVENTORY.read_text())["cluster"]["nodes"]
ACCOUNT_FILES = ("etc/.pwd.lock", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")


def at(node, path):
    """Where the node's file ``path`` (a real path) is read by the test."""
    return node.root / path.lstrip("/")



def account(node, name):
    """``name``'s entry in the node's /etc/passwd, split."""
    return next(line.split(":") for line in at(node, "/etc/passwd").read_text().splitlines()
                if line.startswith(f"{name}:"))


@pytest.fixture(scope="module")
def root():
    # busybox httpd runs as the bbhttpd account in the node's files: a traversable root
    with scratch_root("httpd-alpha") as path:
        yield path


@pytest.fixture(scope="module")
def alpha(salt_factories, root, secrets_dir):
    return make_node(salt_factories, "alpha", root, secrets_dir, httpd={"port": 18081})


@pytest.fixture(scope="module")
def applied(alpha):
    return alpha.dry_then_real("httpd")


def test_test_mode_writes_nothing(applied):
    assert not failed(applied["dry"]), failed(applied["dry"])
    assert by_id(applied["dry"], "httpd-page-inventory-file-managed")["result"] is None
    assert by_id(applied["dry"], "httpd-user-present")["result"] is None
    assert applied["written_by_dry_run"] == []


def test_test_mode_starts_nothing_mocked_systemctl(applied):
    assert changes_made(applied["calls_dry"]) == []


def test_the_chroot_holds_only_busybox_its_config_and_the_page(applied, alpha):
    assert not failed(applied["real"]), failed(applied["real"])
    chroot = at(alpha, CHROOT)
    files = sorted(str(p.relative_to(chroot)) for p in chroot.rglob("*") if p.is_file())
    assert files == ["bin/busybox", "etc/httpd.conf", "www/cluster.json", "www/inventory.html"]
    assert filecmp.cmp(chroot / "bin/busybox", "/bin/busybox", shallow=False)
    for path in [chroot, *chroot.rglob("*")]:
        stat = path.stat()
        assert stat.st_uid == 0 and not stat.st_mode & 0o022, f"{path} is writable by someone else than root"
    # besides the chroot, the defaults and the unit: only the account databases (useradd)
    assert [f for f in alpha.fs.written() if not f.startswith(ACCOUNT_FILES + (CHROOT.lstrip("/") + "/",))] == [
        DEFAULTS.lstrip("/"), UNIT.lstrip("/")]
    calls_before = len(alpha.fs.systemctl_calls())
    again = alpha.sls("httpd")
    assert not failed(again) and changed(again) == {}
    # nothing the service watches changed: no reload, no restart (systemctl mocked)
    assert changes_made(alpha.fs.systemctl_calls()[calls_before:]) == []


def test_the_port_comes_from_pillar(applied, alpha):
    assert "BBHTTPD_PORT=18081\n" in at(alpha, DEFAULTS).read_text()
    assert f"BBHTTPD_ROOT={CHROOT}\n" in at(alpha, DEFAULTS).read_text()
    unit = at(alpha, UNIT).read_text()
    assert f"RootDirectory={CHROOT}\n" in unit
    assert f"EnvironmentFile={DEFAULTS}\n" in unit
    assert f"ConditionPathExists={CHROOT}/bin/busybox\n" in unit
    assert "User=bbhttpd\n" in unit
    assert "ExecStart=/bin/busybox httpd -f -p ${BBHTTPD_PORT} -h /www -c /etc/httpd.conf\n" in unit
    assert verify_unit(at(alpha, UNIT)) == []


def test_the_page_is_generated_from_the_inventory(applied, alpha):
    page = (at(alpha, CHROOT) / "www/inventory.html").read_text()
    for name, node in NODES.items():
        assert f"<td>{name}.dc1.b3rry.clust0r</td><td>{node['ip']}</td><td>{node['mac']}</td>" in page
    assert "VIP 192.168.10.111 (ns.dc1.b3rry.clust0r)" in page
    data = json.loads((at(alpha, CHROOT) / "www/cluster.json").read_text())
    assert [n["name"] for n in data["nodes"]] == ["alpha", "beta", "psi", "delta", "epsilon", "gamma", "zeta"]
    assert data["lanservices"] == {"primary": "alpha", "secondary": "beta"}
    assert data["boot_file"] == "pxelinux.0"


def test_applied_creates_the_servers_account(applied, alpha):
    entry = account(alpha, "bbhttpd")
    assert int(entry[2]) < 1000  # a system account
    assert entry[5:] == ["/nonexistent", "/usr/sbin/nologin"]
    group = next(line.split(":") for line in at(alpha, "/etc/group").read_text().splitlines()
                 if line.startswith("bbhttpd:"))
    assert group[2] == entry[3]  # its own group
    assert not at(alpha, "/nonexistent").exists()


def test_the_service_runs_enabled_after_a_daemon_reload_mocked_systemctl(applied, alpha):
    assert alpha.fs.units()["bbhttpd.service"] == {"active": True, "enabled": True}, alpha.fs.units()
    # the new unit file: systemd re-reads it before the start
    calls = changes_made(applied["calls_first"])
    assert calls.index("daemon-reload") < calls.index("start bbhttpd.service"), calls
    assert "enable bbhttpd.service" in calls
    # busybox-static is on the host (tests/host-packages.txt): nothing to install
    assert "httpd-pkg-installed" not in changed(applied["real"])


def test_the_clean_plans_stop_removal_reload_account_where_httpd_is(applied, alpha):
    """httpd.clean and statuspage.clean rendered (never applied) on the node the state was
    applied to: real paths, the unit, the account; busybox-static is never purged. The
    status page's clean, once its index.html is in the chroot, also drops the collector's
    schedule."""
    def plan(sls):
        return alpha.call(lambda loaders: sorted((c["state"] + "." + c["fun"], c["name"])
                                                 for c in loaders.modules.state.show_low_sls(sls)))

    assert plan("httpd.clean") == sorted([
        ("service.dead", "bbhttpd"),
        ("file.absent", CHROOT),
        ("file.absent", DEFAULTS),
        ("file.absent", UNIT),
        ("cmd.run", "systemctl daemon-reload"),
        ("user.absent", "bbhttpd"),
    ])
    assert plan("statuspage.clean") == []  # no page in the chroot: nothing to clean
    index = at(alpha, CHROOT) / "www/index.html"
    index.write_text("<!DOCTYPE html>\n")
    try:
        www = f"{CHROOT}/www"
        assert plan("statuspage.clean") == sorted([
            ("schedule.absent", "statuspage-collect"),
            *(("file.absent", f"{www}/{name}") for name in ("index.html", "status.schema.json", "status.json",
                                                             "self.json")),
        ])
    finally:
        index.unlink()


def free_tcp_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("chroot") is None, reason="needs root for chroot")
def test_busybox_httpd_serves_the_page_from_the_chroot_unprivileged(applied, alpha, tmp_path):
    port = free_tcp_port()
    user = account(alpha, "bbhttpd")
    uid, gid = user[2], user[3]
    # the chroot is the node's /srv/bbhttpd: chroot() in the node's files, then the account
    daemon = Daemon(alpha.wrap(["chroot", f"--userspec={uid}:{gid}", CHROOT,
                                "/bin/busybox", "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www",
                                "-c", "/etc/httpd.conf"]),
                    tmp_path / "httpd.log")

    def bbhttpd(fn, *args, **kwargs):
        """A bbhttpd module function in the node's files (its /etc/default/bbhttpd)."""
        return alpha.call(lambda loaders: getattr(loaders.modules.bbhttpd, fn)(*args, **kwargs))

    try:
        status = wait_for(lambda: bbhttpd("status", port=port)["serves_page"], 20, step=0.2,
                          what="busybox httpd answering")
        assert status, daemon.output()
        out = bbhttpd("status", port=port)
        assert out["http_status"] == 200 and out["error"] is None
        data = json.loads(bbhttpd("get", "/cluster.json", port=port)["body"])
        assert data["domain"] == "dc1.b3rry.clust0r"
        # nothing outside /www, let alone outside the chroot
        assert bbhttpd("get", "/../etc/httpd.conf", port=port)["status"] != 200
        assert bbhttpd("get", "/../../../../etc/passwd", port=port)["status"] != 200
        # the server runs as the state's account, chrooted in the node's /srv/bbhttpd
        pid = daemon.proc.pid
        uids = next(line for line in open(f"/proc/{pid}/status", encoding="ascii") if line.startswith("Uid:"))
        assert uids.split()[1:] == [uid] * 4
        assert os.readlink(f"/proc/{pid}/root") == CHROOT
        # ... the node's chroot (seen through its own mount namespace)
        assert filecmp.cmp(f"/proc/{pid}/root/www/inventory.html", at(alpha, CHROOT) / "www/inventory.html",
                           shallow=False)
    finally:
        daemon.stop()
    down = bbhttpd("status", port=port, timeout=0.5)
    assert down["serves_page"] is False and "no HTTP answer" in down["error"]
    # the port from the rendered defaults, when none is given
    assert bbhttpd("status", timeout=0.5)["port"] == 18081
