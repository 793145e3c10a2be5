"""Cleans (salt/<svc>/clean.sls, salt/lib/clean.jinja): a node's top has the clean of every
service of the role table that none of its inventory roles has (salt/roles/map.jinja), never
master.clean on the deployer, never one for a minion outside the inventory or a test minion;
every clean renders on every node; tftpd and httpd applied in a node's own files
(tests/functional/nodefs.py; systemctl mocked), then cleaned: their files, units, packages and
account go, a second clean and the clean of an absent service change nothing."""

import time

import pytest
import yaml
from saltfactories.utils.functional import Loaders

from tests.conftest import INVENTORY, STATE_TREE, cluster_pillar_opts, secrets_opts
from tests.functional.lannet import changed, failed
from tests.functional.nodefs import make_node

DEPLOYER_CLEANS = {"master.clean", "distcc.client_clean", "ssh_ca.clean", "tls_ca.clean", "statusfeed.clean",
                   "sensehat.clean"}
LANSERVICES_CLEANS = {"bind.clean", "keepalived.clean", "dhcpd.clean", "tftpd.clean", "httpd.clean",
                      "statuspage.clean"}
COMPUTE_CLEANS = {"distcc.clean", "mpich.clean", "k3s.clean"}
ROLE_MARKERS = {"roles.clean"}  # the markers of the roles a node lacks, after the service cleans
ALL_CLEANS = DEPLOYER_CLEANS | LANSERVICES_CLEANS | COMPUTE_CLEANS | ROLE_MARKERS
NODES = sorted(yaml.safe_load(INVENTORY.read_text())["cluster"]["nodes"])
EMPTY_TABLE = {"every_node": [], "services": {"deployer": [], "lanservices": [], "compute": []}}


@pytest.fixture(scope="module")
def loaders_of(salt_factories, secrets_dir):
    made = []

    def loaders_of(minion_id, **overrides):
        factory = salt_factories.salt_minion_daemon(minion_id, overrides={
            "file_client": "local",
            "file_roots": {"base": [str(STATE_TREE)]},
            **cluster_pillar_opts(INVENTORY),
            **secrets_opts(secrets_dir),
            **overrides,
        })
        loaders = Loaders(factory.config.copy(), loaded_base_name=f"{__name__}.{minion_id}{len(made)}.loaded")
        made.append(loaders)
        return loaders

    yield loaders_of
    for loaders in made:
        loaders.reset_state()


def _top(loaders):
    top = loaders.modules.state.show_top()
    assert isinstance(top, dict), top  # a list would be render errors
    return top["base"]


def _cleans(loaders):
    return {sls for sls in _top(loaders) if sls.endswith("clean")}


# --- the top --------------------------------------------------------------------------------


@pytest.mark.parametrize("node, roles, expected", [
    ("delta", ["compute"], LANSERVICES_CLEANS | DEPLOYER_CLEANS - {"distcc.client_clean"} | ROLE_MARKERS),
    ("alpha", ["lanservices"], COMPUTE_CLEANS | DEPLOYER_CLEANS | ROLE_MARKERS),
    ("psi", ["deployer"], LANSERVICES_CLEANS | COMPUTE_CLEANS | ROLE_MARKERS),
])
def test_a_node_gets_the_cleans_of_the_services_its_roles_lack(loaders_of, node, roles, expected):
    loaders = loaders_of(node, grains={"roles": roles})
    top = _top(loaders)
    assert {sls for sls in top if sls.endswith("clean")} == expected
    # after common, before the role; the role markers after the service cleans
    assert top.index("common") < min(top.index(sls) for sls in expected) and top[-1] == f"roles.{roles[0]}"
    assert top.index("roles.clean") == max(top.index(sls) for sls in expected)
    # the markers of exactly the roles it lacks
    markers = {(c["fun"], *c["name"].rsplit("/", 2)[1:]) for c in loaders.modules.state.show_low_sls("roles.clean")}
    assert markers == {("absent", "roles.d", role) for role in ("deployer", "lanservices", "compute")
                       if role not in roles}


def test_the_deployer_never_gets_master_clean_and_refuses_it_by_hand(loaders_of):
    psi = loaders_of("psi", grains={"roles": ["deployer"]})
    assert "master.clean" not in _top(psi)
    chunks = psi.modules.state.show_low_sls("master.clean")
    assert [c["state"] + "." + c["fun"] for c in chunks] == ["test.fail_without_changes"]


def test_the_cleans_follow_the_inventory_not_a_stale_grain(loaders_of):
    # alpha's grain still says compute: its cleans are those of a lanservices node
    assert _cleans(loaders_of("alpha", grains={"roles": ["compute"]})) == COMPUTE_CLEANS | DEPLOYER_CLEANS | ROLE_MARKERS


@pytest.mark.parametrize("overrides", [
    {},  # outside the inventory: no node pillar
], ids=["outside-the-inventory"])
def test_a_minion_outside_the_inventory_gets_no_clean(loaders_of, overrides):
    assert _cleans(loaders_of("stranger", grains={"roles": ["deployer"]}, **overrides)) == set()


def test_a_minion_with_an_emptied_role_table_gets_no_clean(loaders_of):
    assert _cleans(loaders_of("delta", grains={"roles": ["compute"]}, roles={"lookup": EMPTY_TABLE})) == set()


# --- every clean renders on every node -------------------------------------------------------


def test_every_clean_renders_on_every_node(loaders_of):
    for node in NODES:
        loaders = loaders_of(node)
        for sls in sorted(ALL_CLEANS):
            rendered = loaders.modules.state.show_sls(sls)
            assert isinstance(rendered, dict), (node, sls, rendered)


def test_each_clean_sls_is_a_file_of_the_tree():
    for sls in ALL_CLEANS:
        folder, name = sls.split(".")
        assert (STATE_TREE / folder / f"{name}.sls").is_file(), sls


# --- apply, clean, clean again (in the node's own files) -------------------------------------


@pytest.fixture(scope="module")
def alpha(salt_factories, tmp_path_factory, secrets_dir):
    return make_node(salt_factories, "alpha", tmp_path_factory.mktemp("clean-alpha") / "alpha", secrets_dir,
                     httpd={"port": 18082}, sensehat={"emulator": False})


def _low(node, sls):
    return node.call(lambda loaders: loaders.modules.state.show_low_sls(sls))


def _names(node, sls):
    return {(c["state"] + "." + c["fun"], c["name"]) for c in _low(node, sls)}


@pytest.mark.parametrize("svc, unit, files, pkgs, users", [
    ("tftpd", "tftpd-hpa", ["/srv/tftp/pxelinux.0", "/srv/tftp/README.txt", "/etc/default/tftpd-hpa",
                            "/etc/systemd/system/tftpd-hpa.service"],
     ["tftpd-hpa", "pxelinux", "syslinux-common"], []),
    ("httpd", "bbhttpd", ["/srv/bbhttpd/etc/httpd.conf", "/srv/bbhttpd/www/inventory.html", "/etc/default/bbhttpd",
                          "/etc/systemd/system/bbhttpd.service"], [], ["bbhttpd"]),
])
def test_apply_then_clean_removes_the_service_then_changes_nothing_mocked_systemctl(alpha, svc, unit, files, pkgs,
                                                                                     users):
    assert not failed(ret := alpha.sls(svc)), failed(ret)
    assert all((alpha.root / f.lstrip("/")).is_file() for f in files)
    assert alpha.fs.units()[f"{unit}.service"] == {"active": True, "enabled": True}
    # where the service is, its clean stops and disables it, purges its packages, removes its
    # files (the tree / chroot itself too), reloads systemd and removes its account
    planned = _names(alpha, f"{svc}.clean")
    assert ("service.dead", unit) in planned, planned
    tree = "/".join(files[0].split("/")[:3])  # /srv/tftp, /srv/bbhttpd
    assert {("file.absent", f) for f in [tree, *files[2:]]} <= planned, planned
    assert ("cmd.run", "systemctl daemon-reload") in planned
    assert {name for fun, name in planned if fun == "user.absent"} == set(users)
    purged = [c for c in _low(alpha, f"{svc}.clean") if c["fun"] == "purged"]
    assert [c["pkgs"] for c in purged] == ([pkgs] if pkgs else [])
    ret = alpha.sls(f"{svc}.clean")
    assert not failed(ret), failed(ret)
    assert changed(ret)
    assert [f for f in files if alpha.exists(f)] == []
    assert not alpha.exists(tree)
    assert alpha.fs.units()[f"{unit}.service"] == {"active": False, "enabled": False}
    again = alpha.sls(f"{svc}.clean")
    assert not failed(again) and changed(again) == {} and len(again.raw) == 0


def test_the_clean_of_an_absent_service_is_no_state_at_all(alpha):
    # bind, keepalived, dhcpd and sensehat were never applied on this node
    started = time.monotonic()
    for sls in ["bind.clean", "keepalived.clean", "dhcpd.clean", "sensehat.clean"]:
        ret = alpha.sls(sls)
        assert not failed(ret) and len(ret.raw) == 0, (sls, ret.raw)
    assert time.monotonic() - started < 30


# --- what a clean would do where its service is (rendered only: nothing is applied) ---------


def _plan(loaders, sls):
    return [(c["state"] + "." + c["fun"], c["name"]) for c in loaders.modules.state.show_low_sls(sls)]


def test_where_the_lan_services_are_their_cleans_stop_purge_and_remove(salt_factories, secrets_dir, tmp_path):
    # the services' marks in a node's own files (rendered there, never applied)
    beta = make_node(salt_factories, "beta", tmp_path / "beta", secrets_dir)
    marks = {"bind.clean": ("etc/bind/cluster-transfer.key", "named", ["bind9", "bind9-utils"]),
             "keepalived.clean": ("etc/keepalived/notify-state", "keepalived", ["keepalived"]),
             "dhcpd.clean": ("etc/dhcp/omapi.key", "isc-dhcp-server", ["isc-dhcp-server"]),
             "sensehat.clean": ("etc/systemd/system/cluster-leds.service", "cluster-leds", None)}
    for mark, _, _ in marks.values():
        (beta.root / mark).parent.mkdir(parents=True, exist_ok=True)
        (beta.root / mark).write_text("")
    for sls, (mark, unit, pkgs) in marks.items():
        low = _low(beta, sls)
        plan = {(c["state"] + "." + c["fun"], c["name"]) for c in low}
        assert ("service.dead", unit) in plan, (sls, plan)
        removed = [name for fun, name in plan if fun == "file.absent"]
        assert any(f"/{mark}" == name or f"/{mark}".startswith(f"{name}/") for name in removed), (sls, removed)
        if pkgs is not None:
            assert [c["pkgs"] for c in low if c["fun"] == "purged"] == [pkgs], sls


def test_where_the_service_is_a_clean_stops_purges_removes_and_reloads(loaders_of, tmp_path):
    # marks pointed at scratch files: the plan of a real node's clean (rendered, never applied)
    for name in ["dropin", "hosts", "hostfile", "k3s", "feed.service", "master.service"]:
        (tmp_path / name).write_text("")
    delta_like = loaders_of("alpha", distcc={"lookup": {"dropin": f"{tmp_path}/dropin", "hosts_file": f"{tmp_path}/hosts"}},
                            mpich={"lookup": {"hostfile": f"{tmp_path}/hostfile"}},
                            k3s={"lookup": {"bin": f"{tmp_path}/k3s"}},
                            statusfeed={"lookup": {"unit_file": f"{tmp_path}/feed.service"}},
                            master={"lookup": {"unit_file": f"{tmp_path}/master.service"}})
    plans = {sls: _plan(delta_like, sls) for sls in ["distcc.clean", "distcc.client_clean", "mpich.clean", "k3s.clean",
                                                     "statusfeed.clean", "master.clean"]}
    funs = {sls: {fun for fun, _ in plan} for sls, plan in plans.items()}
    assert ("service.dead", "distcc") in plans["distcc.clean"] and "pkg.purged" not in funs["distcc.clean"]
    assert {"pkg.purged", "file.absent"} == funs["distcc.client_clean"]
    assert {"pkg.purged", "user.absent", "cmd.run", "file.absent"} == funs["mpich.clean"]
    assert ("service.dead", "k3s-agent") in plans["k3s.clean"] and ("file.absent", "/etc/rancher/k3s") in plans["k3s.clean"]
    assert ("cmd.run", "systemctl daemon-reload") in plans["statusfeed.clean"]
    assert ("service.dead", "salt-master") in plans["master.clean"] and ("service.dead", "redis-server") in plans["master.clean"]
    # kept: the master's keys, the minion's venv, the shared toolchain, ssh
    removed = " ".join(name for plan in plans.values() for _, name in plan)
    for kept in ["/etc/salt/pki", "/opt/salt", "gcc", "libc6-dev", "openssh-client"]:
        assert kept not in removed
    chunks = delta_like.modules.state.show_low_sls("mpich.clean")
    purged = [c for c in chunks if c["fun"] == "purged"]
    assert purged[0]["pkgs"] == ["mpich", "libmpich-dev"]
