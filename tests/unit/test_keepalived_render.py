"""keepalived rendering for the primary and the secondary (salt/keepalived/files/*.jinja with the
defaults and the node view the map builds), and the parsing behind vip.status."""

import ipaddress
import os
import re
import subprocess
import time

import jinja2
import pytest
import yaml

from rpicluster import model, views
from tests.conftest import INVENTORY, REPO, load_by_path

vip = load_by_path("vip_unit", REPO / "_modules" / "vip.py")
INV = model.load_inventory(INVENTORY)["cluster"]
DEFAULTS = yaml.safe_load((REPO / "salt" / "keepalived" / "defaults.yaml").read_text())["keepalived"]
PASSWORD = "s3cr3tPw"
ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(REPO / "salt")), undefined=jinja2.StrictUndefined)


def _keepalived(name, track=True, **overrides):
    """The dict salt/keepalived/map.jinja hands the templates, for node ``name`` (root ''),
    named's process tracked or not (``process.enabled``: process.track resolved)."""
    pair = views.lanservices(INV)
    role = "primary" if name == pair["primary"] else "secondary"
    peer = pair["secondary"] if role == "primary" else pair["primary"]
    return {
        **DEFAULTS,
        **overrides,
        "process": {**DEFAULTS["process"], **overrides.get("process", {}), "enabled": track},
        "node": {
            "role": role, "name": name, "ip": INV["nodes"][name]["ip"], "peer_ip": INV["nodes"][peer]["ip"],
            "vip": INV["network"]["vip"], "prefixlen": INV["network"]["subnet"].split("/")[1], "interface": "eth0",
            "priority": DEFAULTS["priority"][role], "domain": INV["domain"],
        },
    }


def _render(template, name, **keepalived):
    return ENV.get_template(f"keepalived/files/{template}").render(
        keepalived=_keepalived(name, **keepalived), vrrp_password=PASSWORD)


def _blocks(text):
    """``{block name: body}`` of the top-level blocks of a keepalived.conf (comments dropped)."""
    text = "\n".join(line.split("!")[0] for line in text.splitlines())
    assert text.count("{") == text.count("}"), "unbalanced braces"
    blocks, depth, name, body = {}, 0, None, []
    for line in text.splitlines():
        if depth == 0 and line.strip().endswith("{"):
            name, body = line.strip()[:-1].strip(), []
        elif depth > 0:
            body.append(line.strip())
        depth += line.count("{") - line.count("}")
        if depth == 0 and name:
            blocks[name] = "\n".join(b for b in body[:-1] if b)
            name = None
    return blocks


@pytest.mark.parametrize(
    "name, state, priority, src, peer",
    [("alpha", "MASTER", 150, "192.168.10.6", "192.168.10.8"), ("beta", "BACKUP", 100, "192.168.10.8", "192.168.10.6")],
)
def test_vrrp_instance_for_each_node(name, state, priority, src, peer):
    text = _render("keepalived.conf.jinja", name)
    blocks = _blocks(text)
    assert set(blocks) == {"global_defs", "vrrp_track_process proc_named", "vrrp_script chk_named",
                           "vrrp_track_file maintenance", "vrrp_instance VI_DNS"}
    instance = blocks["vrrp_instance VI_DNS"]
    assert f"state {state}" in instance
    assert f"priority {priority}\n" in instance
    assert "interface eth0" in instance
    assert "virtual_router_id 53" in instance
    assert "virtual_ipaddress {\n192.168.10.111/24 dev eth0\n}" in instance
    assert "track_process {\nproc_named\n}\ntrack_script {\nchk_named\n}\ntrack_file {\nmaintenance\n}" in instance
    assert "notify" not in instance  # the states go through the FIFO, in order
    assert "vrrp_notify_fifo /run/keepalived-cluster/vrrp.fifo" in blocks["global_defs"]
    assert "vrrp_notify_fifo_script /etc/keepalived/notify-state" in blocks["global_defs"]
    assert f"router_id {name}" in blocks["global_defs"]
    # script security on, scripts as root (keepalived 2.2.7 cannot config-test another user)
    assert "enable_script_security" in blocks["global_defs"] and "script_user root" in blocks["global_defs"]
    assert not re.search(r"^\s*user ", blocks["vrrp_script chk_named"], re.M)


@pytest.mark.parametrize("name, src, peer", [("alpha", "192.168.10.6", "192.168.10.8"), ("beta", "192.168.10.8", "192.168.10.6")])
def test_vrrp_version_3_sub_second_adverts_unicast_peer_only_no_authentication(name, src, peer):
    text = _render("keepalived.conf.jinja", name)
    blocks = _blocks(text)
    assert "vrrp_version 3" in blocks["global_defs"].splitlines()
    instance = blocks["vrrp_instance VI_DNS"].splitlines()
    assert DEFAULTS["vrrp_version"] == 3 and 0 < DEFAULTS["advert_int"] < 1
    assert f"advert_int {DEFAULTS['advert_int']}" in instance
    assert f"unicast_src_ip {src}\nunicast_peer {{\n{peer}\n}}\ncheck_unicast_src" in blocks["vrrp_instance VI_DNS"]
    # the master's advert timer is not restarted by adverts coming in (a stranger's included)
    assert "lower_prio_no_advert" in instance
    # VRRPv3 has no authentication: the pillar's VRRP password is not rendered
    assert not any(line.startswith(("authentication", "auth_")) for line in instance)
    assert PASSWORD not in text


def test_vrrp_version_2_keeps_the_pass_authentication():
    instance = _blocks(_render("keepalived.conf.jinja", "beta", vrrp_version=2, advert_int=1))["vrrp_instance VI_DNS"]
    assert f"authentication {{\nauth_type PASS\nauth_pass {PASSWORD}\n}}" in instance
    assert "advert_int 1\n" in instance and "check_unicast_src" in instance


def test_named_process_tracked_at_once():
    process = _blocks(_render("keepalived.conf.jinja", "alpha"))["vrrp_track_process proc_named"]
    assert process == 'process "named"\nweight -60'
    blocks = _blocks(_render("keepalived.conf.jinja", "alpha", track=False))  # e.g. in a container
    assert "vrrp_track_process proc_named" not in blocks
    assert "track_process" not in blocks["vrrp_instance VI_DNS"]
    assert "track_script {\nchk_named\n}" in blocks["vrrp_instance VI_DNS"]
    # a command line (the functional tests: both nodes' named on one host)
    argv = ["/usr/sbin/named", "-g", "-c", "/tmp/x/named.conf"]
    text = _render("keepalived.conf.jinja", "alpha", process={"match": argv})
    assert 'process "/usr/sbin/named" "-g" "-c" "/tmp/x/named.conf"\n' in text


def test_a_node_whose_named_is_dead_or_hung_drops_below_its_peer():
    blocks = _blocks(_render("keepalived.conf.jinja", "alpha"))
    script = blocks["vrrp_script chk_named"]
    assert 'script "/etc/keepalived/check-named"' in script
    fields = dict(line.split(None, 1) for line in script.splitlines() if not line.startswith("script"))
    # keepalived 2.2.7: whole seconds only (1 is the shortest interval and timeout)
    assert fields == {"interval": "1", "timeout": "1", "fall": "1", "rise": "2", "weight": "-60"}
    process_weight = int(blocks["vrrp_track_process proc_named"].split("weight ")[1])
    primary, secondary = DEFAULTS["priority"]["primary"], DEFAULTS["priority"]["secondary"]
    assert primary > secondary  # the primary wins the election (the original had them inverted)
    for weight in (int(fields["weight"]), process_weight):
        assert primary + weight < secondary  # ... and loses it when its named is dead or hung
    # both dead (process gone, no answer): the primary keeps it (keepalived's floor is 1)
    both = int(fields["weight"]) + process_weight
    assert max(secondary + both, 1) < max(primary + both, 1)
    assert secondary + int(fields["weight"]) < primary + int(fields["weight"])  # both hung


def test_the_vip_is_in_the_subnet_and_the_password_fits_vrrp():
    assert ipaddress.IPv4Address(INV["network"]["vip"]) in ipaddress.IPv4Network(INV["network"]["subnet"])
    assert len(PASSWORD) <= 8


def test_multicast_when_unicast_is_off():
    text = _render("keepalived.conf.jinja", "alpha", unicast=False)
    assert "unicast" not in _blocks(text)["vrrp_instance VI_DNS"]  # check_unicast_src included


def test_health_check_script():
    text = _render("check-named.jinja", "beta")
    assert text.startswith("#!/bin/sh\n")
    assert "setpriv --reuid=nobody --regid=nogroup --clear-groups" in text
    assert "dig +norecurse +time=1 +tries=1 +short -p 53 @127.0.0.1 dc1.b3rry.clust0r SOA) || exit 1" in text
    assert text.rstrip().endswith('[ -n "$out" ]')


def _run_notify_reader(tmp_path, events):
    """The rendered FIFO reader run by /bin/sh as keepalived runs it (the FIFO last), fed
    ``events`` in one write; returns the state dir once the reader saw the end of the FIFO."""
    state_dir = tmp_path / "state"
    script = tmp_path / "notify-state"
    script.write_text(_render("notify-state.jinja", "alpha", paths={**DEFAULTS["paths"], "state_dir": str(state_dir)}))
    fifo = tmp_path / "vrrp.fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["/bin/sh", str(script), str(fifo)])
    with open(fifo, "w", encoding="ascii") as writer:
        writer.write("".join(f"{line}\n" for line in events))
    assert reader.wait(timeout=10) == 0
    return state_dir


def test_notify_reader_records_transitions_in_their_order(tmp_path):
    # a start (BACKUP) then MASTER a few ms later: as two notify scripts racing, the BACKUP could
    # be written last (a CI run saw beta MASTER in its file while keepalived said BACKUP)
    text = _render("notify-state.jinja", "alpha")
    assert "dir=/run/keepalived-cluster\n" in text
    before = int(time.time())
    state_dir = _run_notify_reader(tmp_path, [
        'INSTANCE "VI_DNS" BACKUP 100', 'INSTANCE "VI_DNS" MASTER 100', 'INSTANCE "VI_DNS" MASTER_RX_LOWER_PRI 100',
        'INSTANCE "VI_DNS" BACKUP 100', 'GROUP "G1" MASTER 100', 'INSTANCE "VI_OTHER" FAULT 90',
    ])
    assert sorted(p.name for p in state_dir.iterdir()) == ["VI_DNS.state", "VI_OTHER.state"]  # no .new left
    dns = vip.read_state(str(state_dir / "VI_DNS.state"))
    assert dns["state"] == "BACKUP" and dns["priority"] == 100 and before <= dns["since"] <= time.time()
    assert vip.read_state(str(state_dir / "VI_OTHER.state"))["state"] == "FAULT"


def test_notify_reader_keeps_the_last_state_when_a_burst_ends_in_master(tmp_path):
    state_dir = _run_notify_reader(tmp_path, ['INSTANCE "VI_DNS" MASTER 150', 'INSTANCE "VI_DNS" BACKUP 150'] * 20
                                   + ['INSTANCE "VI_DNS" MASTER 150'])
    assert vip.read_state(str(state_dir / "VI_DNS.state"))["state"] == "MASTER"


# --------------------------------------------------------------------------------------
# vip.status
# --------------------------------------------------------------------------------------

IP_ADDR = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 192.168.10.6/24 brd 192.168.10.255 scope global eth0\\       valid_lft forever preferred_lft forever
2: eth0    inet 192.168.10.111/24 scope global secondary eth0\\       valid_lft forever preferred_lft forever
"""


def test_parse_addresses():
    assert vip.parse_addresses(IP_ADDR) == {"127.0.0.1": "lo", "192.168.10.6": "eth0", "192.168.10.111": "eth0"}
    assert vip.parse_addresses("") == {}
    # the VIP kept on lo of both peers: on the holder it maps to the LAN interface
    on_lo = "1: lo    inet 192.168.10.111/32 scope global lo\\       valid_lft forever preferred_lft forever\n"
    assert vip.parse_addresses(on_lo + IP_ADDR)["192.168.10.111"] == "eth0"
    assert vip.parse_addresses(IP_ADDR + on_lo)["192.168.10.111"] == "eth0"
    assert vip.parse_addresses(on_lo)["192.168.10.111"] == "lo"


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A node: `ip` output, a state dir and a pid file pointing at a process named keepalived or not."""
    state = {"ip": IP_ADDR}
    monkeypatch.setattr(vip, "__salt__", {"cmd.run_all": lambda cmd, **kw: {"retcode": 0, "stdout": state["ip"], "stderr": ""}},
                        raising=False)
    monkeypatch.setattr(vip, "__pillar__", {"cluster": {"network": {"vip": "192.168.10.111"}}}, raising=False)
    monkeypatch.setattr(vip, "_running", lambda pidfile: state.get("running", True))
    (tmp_path / "VI_DNS.state").write_text("MASTER 150 1764252000\n")
    state["kwargs"] = {"state_dir": str(tmp_path), "pidfile": str(tmp_path / "pid")}
    return state


def test_status_of_the_holder(node):
    assert vip.status(**node["kwargs"]) == {
        "vip": "192.168.10.111", "held": True, "interface": "eth0", "instance": "VI_DNS", "state": "MASTER",
        "priority": 150, "since": 1764252000, "running": True,
    }


def test_status_of_a_node_without_the_vip_or_keepalived(node, tmp_path):
    node["ip"] = IP_ADDR.splitlines()[0] + "\n" + IP_ADDR.splitlines()[1]
    (tmp_path / "VI_DNS.state").write_text("BACKUP 100 1764252001\n")
    assert vip.status(**node["kwargs"])["held"] is False
    assert vip.status(**node["kwargs"])["state"] == "BACKUP"
    node["running"] = False  # e.g. after a power loss the file may say anything
    down = vip.status(**node["kwargs"])
    assert (down["state"], down["running"], down["priority"]) == ("STOPPED", False, None)
    (tmp_path / "VI_DNS.state").unlink()
    node["running"] = True
    assert vip.status(**node["kwargs"])["state"] == "UNKNOWN"


def test_the_vip_on_lo_alone_is_not_held(node):
    node["ip"] = IP_ADDR.splitlines()[0] + "\n" + IP_ADDR.splitlines()[1] + "\n" + (
        "1: lo    inet 192.168.10.111/32 scope global lo\\       valid_lft forever preferred_lft forever\n")
    status = vip.status(**node["kwargs"])
    assert (status["held"], status["interface"]) == (False, None)
    assert vip.held("192.168.10.111") is False
    node["ip"] += IP_ADDR.splitlines()[2] + "\n"
    assert vip.held("192.168.10.111") is True and vip.status(**node["kwargs"])["interface"] == "eth0"


def test_read_state_ignores_garbage(tmp_path):
    (tmp_path / "x").write_text("hello\n")
    assert vip.read_state(str(tmp_path / "x")) is None
    assert vip.read_state(str(tmp_path / "absent")) is None


def test_running_checks_the_process_name(tmp_path):
    pidfile = tmp_path / "pid"
    assert vip._running(str(pidfile)) is False
    pidfile.write_text("1\n")  # pid 1 exists but is not keepalived
    assert vip._running(str(pidfile)) is False


@pytest.mark.parametrize("name, priority, peer_priority", [("alpha", 150, 100), ("beta", 100, 150)])
def test_a_drained_node_falls_below_its_peer(name, priority, peer_priority):
    """maintenance.drain writes 1 into the track file: this node's priority drops below its peer's
    (the peer takes the VIP first, by preemption, then this node lets it go)."""
    blocks = _blocks(_render("keepalived.conf.jinja", name))
    track = blocks["vrrp_track_file maintenance"]
    assert 'file "/var/lib/keepalived/maintenance"' in track
    weight = int(track.split("weight ")[1].split()[0])
    assert priority + 1 * weight < peer_priority
