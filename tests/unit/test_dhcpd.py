"""dhcpd.conf of each failover peer rendered from the inventory, and the failover state read
over OMAPI (omshell output recorded from a real dhcpd pair, tests/unit/fixtures/dhcpd_failover)."""

import copy
import re

import jinja2
import pytest
import yaml

from rpicluster import model, views
from tests.conftest import INVENTORY, REPO, load_by_path

dhcpd = load_by_path("dhcpd_failover_under_test", REPO / "_modules" / "dhcpd_failover.py")
dhcpd_state = load_by_path("dhcpd_failover_state_under_test", REPO / "_states" / "dhcpd_failover.py")
INV = model.load_inventory(INVENTORY)
PARAMS = yaml.safe_load((REPO / "salt" / "dhcpd" / "defaults.yaml").read_text())["dhcpd"]
TEMPLATE = (REPO / "salt" / "dhcpd" / "files" / "dhcpd.conf.jinja").read_text()
FIXTURES = REPO / "tests" / "unit" / "fixtures" / "dhcpd_failover"
SECRET = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ="


def pillar(name, inventory=INV):
    """The cluster pillar of minion ``name``: what the ext_pillar (_pillar/cluster.py) gives it."""
    return {"cluster": inventory["cluster"], "node": views.node_view(inventory, name)}


@pytest.fixture
def configure_loader_modules():
    return {
        dhcpd: {"__salt__": {}, "__grains__": {"id": "alpha"}, "__pillar__": pillar("alpha")},
        dhcpd_state: {"__salt__": {}, "__opts__": {"test": False}},
    }


def peer_config(name, params=PARAMS, inventory=INV):
    """dhcpd_failover.peer_config with minion ``name``'s cluster pillar."""
    given = pillar(name, inventory)
    return dhcpd.peer_config(params, "pxelinux.0", node=given["node"], inventory=given["cluster"])


def render(name, params=PARAMS, inventory=INV):
    conf = peer_config(name, params, inventory)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(dhcpd=params, conf=conf)


def block(text, header):
    """The body of the ``header { ... }`` block (no nested braces inside)."""
    match = re.search(re.escape(header) + r"\s*\{(.*?)\n\}", text, re.S)
    assert match, f"no block {header!r} in:\n{text}"
    return match.group(1)


def statements(body):
    body = re.sub(r"#[^\n]*", "", body)
    return [s.strip() for s in body.split(";") if s.strip()]


# ------------------------------------------------------------------------------------------
# rendering


def test_primary_failover_section():
    text = render("alpha")
    assert statements(block(text, 'failover peer "dhcp-failover"')) == [
        "primary", "address 192.168.10.6", "port 647", "peer address 192.168.10.8", "peer port 847",
        "max-response-delay 10", "max-unacked-updates 10", "load balance max seconds 3",
        "mclt 60", "split 128",
    ]


def test_secondary_failover_section_has_no_mclt_or_split():
    text = render("beta")
    assert statements(block(text, 'failover peer "dhcp-failover"')) == [
        "secondary", "address 192.168.10.8", "port 847", "peer address 192.168.10.6", "peer port 647",
        "max-response-delay 10", "max-unacked-updates 10", "load balance max seconds 3",
    ]


def test_the_primary_is_the_model_s_not_a_name():
    inv = copy.deepcopy(INV)
    inv["cluster"]["nodes"]["beta"]["ip"] = "192.168.10.3"
    text = render("beta", inventory=inv)
    assert "\n  primary;" in text and "address 192.168.10.3;" in text
    assert "\n  secondary;" in render("alpha", inventory=inv)


def test_auto_partner_down_only_when_asked():
    assert "auto-partner-down" not in render("alpha")
    params = copy.deepcopy(PARAMS)
    params["failover"]["auto_partner_down"] = 3600
    assert "auto-partner-down 3600" in statements(block(render("beta", params), 'failover peer "dhcp-failover"'))


def test_pool_from_the_inventory_under_failover():
    subnet = block(render("alpha"), "subnet 192.168.10.0 netmask 255.255.255.0")
    pool = re.search(r"pool \{(.*?)\}", subnet, re.S).group(1)
    assert statements(pool) == ['failover peer "dhcp-failover"', "range 192.168.10.200 192.168.10.240"]


def test_options_vip_first_both_servers_ntp_domain_and_network_boot():
    text = render("beta")
    assert "option domain-name-servers 192.168.10.111, 192.168.10.6, 192.168.10.8;" in text
    assert "option ntp-servers 192.168.10.6, 192.168.10.8;" in text
    assert 'option domain-name "dc1.b3rry.clust0r";' in text
    subnet = statements(block(text, "subnet 192.168.10.0 netmask 255.255.255.0"))
    assert "option routers 192.168.10.1" in subnet
    assert "option broadcast-address 192.168.10.255" in subnet
    assert "next-server 192.168.10.8" in subnet  # the answering server's own TFTP
    assert 'filename "pxelinux.0"' in subnet


def test_a_fixed_address_for_every_node_by_mac():
    text = render("alpha")
    hosts = {
        name: statements(body)
        for name, body in re.findall(r"^host (\S+) \{(.*?)\n\}", text, re.S | re.M)
    }
    assert set(hosts) == set(INV["cluster"]["nodes"])
    for name, node in INV["cluster"]["nodes"].items():
        assert hosts[name] == [
            f"hardware ethernet {node['mac']}", f"fixed-address {node['ip']}", f'option host-name "{name}"',
            # the lease is handed to the master (zero-touch rebuild): the node's name and address
            f'on commit {{ execute("/usr/local/sbin/cluster-dhcp-commit", "{name}", '
            'binary-to-ascii(10, 8, ".", leased-address))', "}",
        ]


def test_omapi_enabled_with_the_key_file():
    text = render("alpha")
    assert 'include "/etc/dhcp/omapi.key";' in text
    assert "omapi-port 7911;" in text
    assert "omapi-key omapi-key;" in text


def test_only_lanservices_nodes_are_peers():
    with pytest.raises(dhcpd.CommandExecutionError, match="'delta' is not a lanservices node"):
        peer_config("delta")


@pytest.mark.parametrize("key,value,match", [("split", 300, "split 300"), ("mclt", 0, "mclt")])
def test_bad_tunables_are_refused(key, value, match):
    params = copy.deepcopy(PARAMS)
    params["failover"][key] = value
    with pytest.raises(dhcpd.CommandExecutionError, match=match):
        peer_config("alpha", params)


def test_peer_config_defaults_to_this_minion_s_pillar():
    assert dhcpd.peer_config(params=PARAMS, boot_file="x")["node"] == "alpha"


def test_peer_config_without_the_cluster_pillar_says_why(monkeypatch):
    monkeypatch.setattr(dhcpd, "__pillar__", {}, raising=False)
    with pytest.raises(dhcpd.CommandExecutionError, match="no 'node' pillar: is this minion in pillar/cluster/inventory.yaml"):
        dhcpd.peer_config(params=PARAMS, boot_file="x")


# ------------------------------------------------------------------------------------------
# the live configuration


def test_parse_config_reads_omapi_settings_and_peers():
    text = render("alpha") + (
        "\nkey omapi-key {\n  algorithm hmac-sha256;\n" f'  secret "{SECRET}";\n' "};\n"
    )
    assert dhcpd.parse_config(text) == {
        "omapi_port": 7911, "key_name": "omapi-key", "algorithm": "hmac-sha256", "secret": SECRET,
        "peers": ["dhcp-failover"],
    }


def test_parse_config_ignores_comments_and_defaults_to_hmac_md5():
    text = '# omapi-port 1;\nomapi-port 9991; # the port\nomapi-key k;\nkey "k" { secret abc=; }\n'
    parsed = dhcpd.parse_config(text)
    assert (parsed["omapi_port"], parsed["algorithm"], parsed["secret"], parsed["peers"]) == (9991, "hmac-md5", "abc=", [])


def test_settings_follow_includes_and_need_omapi(tmp_path):
    key = tmp_path / "omapi.key"
    key.write_text(f'key omapi-key {{ algorithm hmac-sha256; secret "{SECRET}"; }};\n')
    conf = tmp_path / "dhcpd.conf"
    conf.write_text(f'include "{key}";\nomapi-port 7911;\nomapi-key omapi-key;\nfailover peer "fo" {{\n}}\n')
    assert dhcpd._settings(str(conf))["secret"] == SECRET
    conf.write_text("authoritative;\n")
    with pytest.raises(dhcpd.CommandExecutionError, match="no 'omapi-port'"):
        dhcpd._settings(str(conf))
    with pytest.raises(dhcpd.CommandExecutionError, match="cannot read"):
        dhcpd._settings(str(tmp_path / "missing.conf"))


# ------------------------------------------------------------------------------------------
# omshell output


def fixture(name):
    return (FIXTURES / name).read_text()


def test_parse_primary_normal():
    parsed = dhcpd.parse_omshell(fixture("primary-normal.txt"))
    assert parsed["errors"] == []
    state = dhcpd.failover_state(parsed["objects"][-1])
    assert state["name"] == "dhcp-failover"
    assert (state["role"], state["local_state"], state["partner_state"]) == ("primary", "normal", "normal")
    assert (state["local_port"], state["partner_port"], state["mclt"]) == (647, 847, 60)
    assert (state["max_response_delay"], state["load_balance_max_seconds"]) == (10, 3)
    assert state["local_state_since"].startswith("20")


@pytest.mark.parametrize(
    "name,role,local,partner",
    [
        ("secondary-communications-interrupted.txt", "secondary", "communications-interrupted", "normal"),
        ("secondary-partner-down.txt", "secondary", "partner-down", "normal"),
        ("primary-recover-wait.txt", "primary", "recover-wait", "partner-down"),
        ("secondary-set-partner-down.txt", "secondary", "partner-down", "normal"),
    ],
)
def test_parse_failover_states(name, role, local, partner):
    parsed = dhcpd.parse_omshell(fixture(name))
    assert parsed["errors"] == []
    state = dhcpd.failover_state(parsed["objects"][-1])
    assert (state["role"], state["local_state"], state["partner_state"]) == (role, local, partner)


def test_every_state_code_has_a_name():
    for code, name in {1: "startup", 3: "communications-interrupted", 6: "recover", 9: "recover-done",
                       10: "resolution-interrupted", 254: "recover-wait"}.items():
        assert dhcpd.failover_state({"local-state": code})["local_state"] == name
    assert dhcpd.failover_state({"local-state": 99})["local_state"] == "unknown-99"


@pytest.mark.parametrize(
    "name,error",
    [
        ("wrong-key.txt", "can't open object: connection reset by peer"),
        ("unknown-peer.txt", "can't open object: not found"),
        ("no-server.txt", "dhcpctl_connect: no more"),
    ],
)
def test_parse_errors(name, error):
    assert error in dhcpd.parse_omshell(fixture(name))["errors"]


# ------------------------------------------------------------------------------------------
# talking to dhcpd (omshell mocked with the recorded output)


@pytest.fixture
def live(tmp_path, monkeypatch):
    """A dhcpd.conf with OMAPI, and an omshell that answers from fixtures in turn."""
    conf = tmp_path / "dhcpd.conf"
    conf.write_text(
        'omapi-port 7911;\nomapi-key omapi-key;\nkey omapi-key { algorithm hmac-sha256; secret "'
        + SECRET + '"; };\nfailover peer "dhcp-failover" {\n  primary;\n}\n'
    )
    calls = []
    answers = []

    def run_all(cmd, stdin=None, python_shell=None, **_kw):
        assert cmd == ["omshell"] and python_shell is False
        calls.append(stdin)
        return {"retcode": 0, "stdout": fixture(answers.pop(0)), "stderr": ""}

    monkeypatch.setitem(dhcpd.__salt__, "cmd.run_all", run_all)
    monkeypatch.setattr(dhcpd.salt.utils.path, "which", lambda _name: "/usr/bin/omshell")
    return {"config": str(conf), "calls": calls, "answers": answers}


def test_status_reports_every_peer_and_keeps_the_secret_off_the_command_line(live):
    live["answers"].append("primary-normal.txt")
    out = dhcpd.status(config=live["config"])
    assert out["dhcp-failover"]["local_state"] == "normal"
    script = live["calls"][0]
    assert "port 7911\nkey-algorithm hmac-sha256\n" in script
    assert f"key omapi-key {SECRET}\n" in script
    assert 'set name = "dhcp-failover"\nopen\n' in script


@pytest.mark.parametrize(
    "answer,match",
    [
        ("no-server.txt", "cannot connect to dhcpd OMAPI on 127.0.0.1:7911.*isc-dhcp-server running"),
        ("wrong-key.txt", "refused the key 'omapi-key'"),
        ("unknown-peer.txt", "has no failover peer 'dhcp-failover'"),
    ],
)
def test_errors_are_actionable(live, answer, match):
    live["answers"].append(answer)
    with pytest.raises(dhcpd.CommandExecutionError, match=match):
        dhcpd.peer_state(config=live["config"])


def test_an_undeclared_peer_is_refused_before_omshell(live):
    with pytest.raises(dhcpd.CommandExecutionError, match="no failover peer 'other'.*declared: dhcp-failover"):
        dhcpd.peer_state("other", config=live["config"])
    assert live["calls"] == []


def test_partner_down_from_communications_interrupted(live):
    live["answers"] += [
        "secondary-communications-interrupted.txt", "secondary-set-partner-down.txt", "secondary-partner-down.txt",
    ]
    out = dhcpd.partner_down(config=live["config"])
    assert out == {"name": "dhcp-failover", "changed": True, "old": "communications-interrupted",
                   "new": "partner-down"}
    assert "set local-state = 4\nupdate\n" in live["calls"][1]


def test_partner_down_is_refused_while_the_partner_talks(live):
    live["answers"].append("primary-normal.txt")
    with pytest.raises(dhcpd.CommandExecutionError, match="refusing partner-down.*local state is normal"):
        dhcpd.partner_down(config=live["config"])
    assert len(live["calls"]) == 1  # nothing was set


def test_partner_down_twice_changes_nothing(live):
    live["answers"].append("secondary-partner-down.txt")
    assert dhcpd.partner_down(config=live["config"])["changed"] is False
    assert len(live["calls"]) == 1


def test_partner_down_fails_when_dhcpd_does_not_follow(live):
    live["answers"] += [
        "secondary-communications-interrupted.txt", "secondary-set-partner-down.txt",
        "secondary-communications-interrupted.txt",
    ]
    with pytest.raises(dhcpd.CommandExecutionError, match="is in communications-interrupted, not partner-down"):
        dhcpd.partner_down(config=live["config"])


# ------------------------------------------------------------------------------------------
# the state


def state_salt(local, calls):
    def peer_state(name, config=None):
        calls.append(("peer_state", name))
        return {"local_state": local, "partner_state": "normal"}

    def partner_down(name, force=False, config=None):
        calls.append(("partner_down", name, force))
        return {"name": name, "changed": True, "old": local, "new": "partner-down"}

    return {
        "dhcpd_failover.peer_state": peer_state,
        "dhcpd_failover.partner_down": partner_down,
        "dhcpd_failover.interrupted_states": dhcpd.interrupted_states,
    }


def test_state_test_mode_says_what_it_would_do(monkeypatch):
    calls = []
    monkeypatch.setattr(dhcpd_state, "__salt__", state_salt("communications-interrupted", calls))
    monkeypatch.setitem(dhcpd_state.__opts__, "test", True)
    ret = dhcpd_state.partner_down("dhcp-failover")
    assert ret["result"] is None and "would move dhcp-failover" in ret["comment"]
    assert ret["changes"] == {"local_state": {"old": "communications-interrupted", "new": "partner-down"}}
    assert [c[0] for c in calls] == ["peer_state"]


def test_state_real_mode_acts(monkeypatch):
    calls = []
    monkeypatch.setattr(dhcpd_state, "__salt__", state_salt("communications-interrupted", calls))
    ret = dhcpd_state.partner_down("dhcp-failover")
    assert ret["result"] is True and ret["changes"]["local_state"]["new"] == "partner-down"
    assert ("partner_down", "dhcp-failover", False) in calls


@pytest.mark.parametrize("local,result,acted", [("partner-down", True, False), ("normal", False, False)])
def test_state_no_change_or_refusal(monkeypatch, local, result, acted):
    calls = []
    monkeypatch.setattr(dhcpd_state, "__salt__", state_salt(local, calls))
    ret = dhcpd_state.partner_down("dhcp-failover")
    assert ret["result"] is result and ret["changes"] == {}
    assert any(c[0] == "partner_down" for c in calls) is acted
