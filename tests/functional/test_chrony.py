"""The chrony state on the test host for a server (alpha, beta) and a client (delta): files
under scratch roots, checked with the real ``chronyd -p``; the nspawn specifics only on nspawn;
then the rendered configs run for real (three chronyd in private network namespaces, clock
control off) and read with the chrony status function."""

import os
import subprocess

import pytest
import yaml

from tests.conftest import INVENTORY
from tests.functional.lannet import HAVE_NETNS, Switch, by_id, changed, failed, node_loaders, wait_for

CONF = "etc/chrony/chrony.conf"
ALPHA, BETA = "192.168.10.6", "192.168.10.8"


def lines(path):
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return {name: tmp_path_factory.mktemp(f"chrony-{name}") for name in ("alpha", "beta", "delta")}


@pytest.fixture(scope="module")
def runs(salt_factories, roots, secrets_dir):
    out = {}
    for name in roots:
        loaders = node_loaders(salt_factories, name, roots[name], secrets_dir)
        dry = loaders.modules.state.sls("chrony", test=True)
        written = sorted(str(p) for p in roots[name].rglob("*") if p.is_file())
        real = loaders.modules.state.sls("chrony")
        again = loaders.modules.state.sls("chrony")
        out[name] = {"loaders": loaders, "dry": dry, "written_by_dry_run": written, "real": real, "again": again}
    return out


def test_test_mode_writes_nothing_real_mode_once(runs):
    for name, run in runs.items():
        assert not failed(run["dry"]) and not failed(run["real"]), (name, failed(run["dry"]), failed(run["real"]))
        assert by_id(run["dry"], "chrony-config-file-managed")["result"] is None
        assert run["written_by_dry_run"] == []
        assert changed(run["again"]) == {}, name


def test_server_config(runs, roots):
    assert lines(roots["alpha"] / CONF) == [
        f"server {BETA} iburst",
        "local stratum 8 orphan",
        "allow 192.168.10.0/24",
        "driftfile /var/lib/chrony/chrony.drift",
        "makestep 1 3",
        "maxupdateskew 100.0",
    ]
    assert f"server {ALPHA} iburst" in lines(roots["beta"] / CONF)


def test_client_config_uses_both_servers_and_serves_nobody(runs, roots):
    assert lines(roots["delta"] / CONF) == [
        f"server {ALPHA} iburst",
        f"server {BETA} iburst",
        "driftfile /var/lib/chrony/chrony.drift",
        "makestep 1 3",
        "maxupdateskew 100.0",
    ]


def test_real_chronyd_accepts_the_rendered_configs(runs, roots):
    for name in roots:
        res = subprocess.run(["chronyd", "-p", "-f", str(roots[name] / CONF)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, (name, res.stderr)


def test_not_on_nspawn_no_dropin_and_clock_control(runs, roots):
    assert not (roots["alpha"] / "etc/systemd/system/chrony.service.d/nspawn.conf").exists()
    assert lines(roots["alpha"] / "etc/default/chrony") == ['DAEMON_OPTS="-F 1"']


def test_on_nspawn_the_unit_runs_without_cap_sys_time_and_never_sets_the_clock(salt_factories, tmp_path, secrets_dir):
    loaders = node_loaders(salt_factories, "delta", tmp_path, secrets_dir, grains={"virtual": "systemd-nspawn"})
    ret = loaders.modules.state.sls("chrony")
    assert not failed(ret), failed(ret)
    assert lines(tmp_path / "etc/default/chrony") == ['DAEMON_OPTS="-F 1 -x"']
    assert lines(tmp_path / "etc/systemd/system/chrony.service.d/nspawn.conf") == ["[Unit]", "ConditionCapability="]


def test_upstream_servers_from_the_inventory(salt_factories, tmp_path, secrets_dir):
    inv = yaml.safe_load(INVENTORY.read_text())
    inv["cluster"]["network"]["ntp_upstream"] = ["192.0.2.123", "ntp.example.org"]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    server = node_loaders(salt_factories, "beta", tmp_path / "beta", secrets_dir, inventory=path)
    client = node_loaders(salt_factories, "zeta", tmp_path / "zeta", secrets_dir, inventory=path)
    assert not failed(server.modules.state.sls("chrony")) and not failed(client.modules.state.sls("chrony"))
    assert lines(tmp_path / "beta" / CONF)[:3] == [
        "server 192.0.2.123 iburst", "server ntp.example.org iburst", f"server {ALPHA} iburst",
    ]
    assert not any("192.0.2.123" in line for line in lines(tmp_path / "zeta" / CONF))  # clients: the pair only


def test_a_broken_config_is_rejected_and_the_live_one_stays(runs, salt_factories, roots, secrets_dir):
    conf = roots["delta"] / CONF
    before = conf.read_bytes()
    broken = node_loaders(salt_factories, "delta", roots["delta"], secrets_dir, chrony={"server_options": "iburst bogus"})
    ret = broken.modules.state.sls("chrony")
    result = by_id(ret, "chrony-config-file-managed")
    assert result["result"] is False and "check_cmd execution failed" in result["comment"]
    assert conf.read_bytes() == before


@pytest.mark.skipif(not HAVE_NETNS, reason="needs root and `ip netns` (private network namespaces)")
def test_the_pair_serves_time_and_the_client_follows(runs, roots, tmp_path):
    """alpha and beta with no upstream: `local stratum 8 orphan` makes one lead and the other
    follow; delta syncs from them. chronyd runs with -x (never touches the host's clock)."""
    nodes = {"alpha": {"ip": f"{ALPHA}/24"}, "beta": {"ip": f"{BETA}/24"}, "delta": {"ip": "192.168.10.21/24"}}
    socks = {}
    with Switch(f"rpic-ch{os.getpid() % 100000}", nodes) as lan:
        for name in nodes:
            run = tmp_path / name
            run.mkdir(mode=0o700)
            socks[name] = str(run / "chronyd.sock")
            wrapper = run / "chrony.conf"
            # the rendered file, plus run-time paths of this test (later directives win)
            wrapper.write_text(
                f"include {roots[name] / CONF}\n"
                f"driftfile {run}/drift\npidfile {run}/chronyd.pid\nbindcmdaddress {socks[name]}\ncmdport 0\n"
            )
            lan.start(name, ["chronyd", "-d", "-x", "-u", "root", "-f", str(wrapper)], run / "chronyd.log")

        status = {name: runs[name]["loaders"].modules.chrony.status for name in nodes}

        def client_synced():
            out = status["delta"](socket=socks["delta"])
            return out["synchronised"] and out["reference"] in (ALPHA, BETA) and out

        delta = wait_for(client_synced, 60, step=0.5, what="delta synchronised to alpha or beta")
        assert delta["sources_total"] == 2 and delta["sources_reachable"] == 2
        assert {s["name"] for s in delta["sources"]} == {ALPHA, BETA}
        def orphan_settled():
            servers = {name: status[name](socket=socks[name]) for name in ("alpha", "beta")}
            leaders = [n for n, s in servers.items() if s["local"] and s["stratum"] == 8]
            followers = [n for n, s in servers.items() if not s["local"] and s["synchronised"] and s["stratum"] == 9]
            return len(leaders) == 1 and len(followers) == 1 and servers

        # one server serves its local clock at stratum 8, the other follows it at stratum 9
        servers = wait_for(orphan_settled, 60, step=0.5, what="one server leading, the other following")
        follower = next(n for n, s in servers.items() if not s["local"])
        assert servers[follower]["reference"] in (ALPHA, BETA)
        assert delta["stratum"] in (9, 10)
