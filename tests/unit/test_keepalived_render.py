"""keepalived rendering for the primary and the secondary (salt/keepalived/files/*.jinja with the
defaults and the node view the map builds), and the parsing behind vip.status."""

import ipaddress
import re

import jinja2
import pytest
import yaml

from tests.conftest import INVENTORY, REPO, load_by_path

model = load_by_path("cluster_model_keepalived", REPO / "_modules" / "cluster.py")
vip = load_by_path("vip_unit", REPO / "_modules" / "vip.py")
INV = model.load_inventory(INVENTORY)["cluster"]
DEFAULTS = yaml.safe_load((REPO / "salt" / "keepalived" / "defaults.yaml").read_text())["keepalived"]
PASSWORD = "s3cr3tPw"
ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(str(REPO / "salt")), undefined=jinja2.StrictUndefined)


def _keepalived(name):
    """The dict salt/keepalived/map.jinja hands the templates, for node ``name`` (root '')."""
    pair = model.lanservices(inventory=INV)
    role = "primary" if name == pair["primary"] else "secondary"
    peer = pair["secondary"] if role == "primary" else pair["primary"]
    return {
        **DEFAULTS,
        "node": {
            "role": role, "name": name, "ip": INV["nodes"][name]["ip"], "peer_ip": INV["nodes"][peer]["ip"],
            "vip": INV["network"]["vip"], "prefixlen": INV["network"]["subnet"].split("/")[1], "interface": "eth0",
            "priority": DEFAULTS["priority"][role], "domain": INV["domain"],
        },
    }


def _render(template, name):
    return ENV.get_template(f"keepalived/files/{template}").render(
        keepalived=_keepalived(name), pillar={"secrets": {"vrrp_password": PASSWORD}})


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
    blocks = _blocks(_render("keepalived.conf.jinja", name))
    assert set(blocks) == {"global_defs", "vrrp_script chk_named", "vrrp_instance VI_DNS"}
    instance = blocks["vrrp_instance VI_DNS"]
    assert f"state {state}" in instance
    assert f"priority {priority}\n" in instance
    assert "interface eth0" in instance
    assert "virtual_router_id 53" in instance
    assert "advert_int 1\n" in instance
    assert f"unicast_src_ip {src}\nunicast_peer {{\n{peer}\n}}" in instance
    assert f"authentication {{\nauth_type PASS\nauth_pass {PASSWORD}\n}}" in instance
    assert "virtual_ipaddress {\n192.168.10.111/24 dev eth0\n}" in instance
    assert "track_script {\nchk_named\n}" in instance
    assert 'notify "/etc/keepalived/notify-state"' in instance
    assert f"router_id {name}" in blocks["global_defs"]
    # script security on, scripts as root (keepalived 2.2.7 cannot config-test another user)
    assert "enable_script_security" in blocks["global_defs"] and "script_user root" in blocks["global_defs"]
    assert not re.search(r"^\s*user ", blocks["vrrp_script chk_named"], re.M)


def test_a_node_whose_named_is_dead_drops_below_its_peer():
    script = _blocks(_render("keepalived.conf.jinja", "alpha"))["vrrp_script chk_named"]
    assert 'script "/etc/keepalived/check-named"' in script
    fields = dict(line.split(None, 1) for line in script.splitlines() if not line.startswith("script"))
    assert fields == {"interval": "1", "timeout": "2", "fall": "2", "rise": "2", "weight": "-60"}
    primary, secondary, weight = DEFAULTS["priority"]["primary"], DEFAULTS["priority"]["secondary"], int(fields["weight"])
    assert primary > secondary  # the primary wins the election (the original had them inverted)
    assert primary + weight < secondary  # ... and loses it when its named is dead
    assert secondary + weight < primary + weight  # both dead: the primary keeps it


def test_the_vip_is_in_the_subnet_and_the_password_fits_vrrp():
    assert ipaddress.IPv4Address(INV["network"]["vip"]) in ipaddress.IPv4Network(INV["network"]["subnet"])
    assert len(PASSWORD) <= 8


def test_multicast_when_unicast_is_off():
    keepalived = {**_keepalived("alpha"), "unicast": False}
    text = ENV.get_template("keepalived/files/keepalived.conf.jinja").render(
        keepalived=keepalived, pillar={"secrets": {"vrrp_password": PASSWORD}})
    assert "unicast" not in _blocks(text)["vrrp_instance VI_DNS"]


def test_health_check_script():
    text = _render("check-named.jinja", "beta")
    assert text.startswith("#!/bin/sh\n")
    assert "setpriv --reuid=nobody --regid=nogroup --clear-groups" in text
    assert "dig +norecurse +time=1 +tries=1 +short -p 53 @127.0.0.1 dc1.b3rry.clust0r SOA) || exit 1" in text
    assert text.rstrip().endswith('[ -n "$out" ]')


def test_notify_script():
    text = _render("notify-state.jinja", "alpha")
    assert "dir=/run/keepalived-cluster\n" in text
    assert 'mv -f "$dir/$2.state.new" "$dir/$2.state"' in text  # atomic: vip.status never reads half a file


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


def test_read_state_ignores_garbage(tmp_path):
    (tmp_path / "x").write_text("hello\n")
    assert vip.read_state(str(tmp_path / "x")) is None
    assert vip.read_state(str(tmp_path / "absent")) is None


def test_running_checks_the_process_name(tmp_path):
    pidfile = tmp_path / "pid"
    assert vip._running(str(pidfile)) is False
    pidfile.write_text("1\n")  # pid 1 exists but is not keepalived
    assert vip._running(str(pidfile)) is False
