"""Every node of the project inventory rendered through Salt (conftest.py), then its configs
checked by the daemons' own checkers, on the node's paths (conftest.run_in_snapshot); and, per
checker, a corrupted copy it must reject, so a pass means something."""

import shutil

import pytest
import yaml

from tests.conftest import INVENTORY, STATE_TREE
from tests.render.conftest import NODES, need, run_in_snapshot

INV = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))["cluster"]
ROLE_SERVICES = yaml.safe_load((STATE_TREE / "roles" / "defaults.yaml").read_text(encoding="utf-8"))["roles"]
LANSERVICES = [name for name in NODES if "lanservices" in INV["nodes"][name]["roles"]]
PRIMARY = min(LANSERVICES, key=lambda name: tuple(int(x) for x in INV["nodes"][name]["ip"].split(".")))

# The configs a node's states validate with a checker (their file.managed check_cmd), by role.
# test_every_checked_config_is_in_the_table keeps this table complete.
CHECKED = {
    "*": ["/etc/chrony/chrony.conf"],
    "lanservices": ["/etc/bind/named.conf", "/etc/dhcp/dhcpd.conf", "/etc/dhcp/omapi.key",
                    "/etc/dhcp/omapi-localhost.nft", "/etc/keepalived/keepalived.conf"],
}
ZONES = [INV["domain"], "10.168.192.in-addr.arpa"]
# Failures a first render of a cluster reports by design: facts that exist only once another
# node's highstate ran (the deployer's TLS CA certificate, which its `tls_ca` publishes to the pillar).
RUN_ORDER_FAILURES = {"tls-ca-trust-missing-test-fail-without-changes"}
# Services that render no state without their hardware (the sense_hat grain of a node with a HAT).
HARDWARE_ONLY = {"sensehat"}


def expected_configs(name):
    paths = list(CHECKED["*"])
    for role in INV["nodes"][name]["roles"]:
        paths += CHECKED.get(role, [])
    return paths


NODE_CONFIGS = [(name, path) for name in NODES for path in expected_configs(name)]


def _output(res):
    return (res.stdout + res.stderr).strip()


def check(node, argv):
    """Run a checker (its binary found or the test skipped/failed, see conftest.need)."""
    need(argv[0])
    return run_in_snapshot(node.root, argv)


# --------------------------------------------------------------------------------------
# The highstate of every node renders
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NODES)
def test_highstate_renders_with_every_service_of_the_nodes_roles(rendered_nodes, name):
    node = rendered_nodes[name]
    assert isinstance(node.low, list) and node.low, node.low
    errors = [chunk for chunk in node.low if not isinstance(chunk, dict)]
    assert not errors, f"show_lowstate of {name} failed:\n" + "\n".join(map(str, errors))
    sls = {chunk["__sls__"] for chunk in node.low}
    services = list(ROLE_SERVICES["every_node"])
    for role in INV["nodes"][name]["roles"]:
        services += ROLE_SERVICES["services"][role]
        assert f"roles.{role}" in sls, f"{name}: its role {role} is not in its highstate"
    missing = [svc for svc in services if svc not in sls and svc not in HARDWARE_ONLY]
    assert not missing, f"{name}: services of its roles with no state in its highstate: {missing}"


@pytest.mark.parametrize("name", NODES)
def test_highstate_has_no_unconditional_failure(rendered_nodes, name):
    """A test.fail_without_changes with no onfail is a problem the render itself found (a
    missing secret, a node that is not what its role needs): none on any node of the inventory,
    except the run-order facts of a first render (RUN_ORDER_FAILURES)."""
    fails = {chunk["__id__"]: chunk.get("comment", "") for chunk in rendered_nodes[name].low
             if chunk["state"] == "test" and chunk["fun"].startswith("fail") and not any(chunk.get(cond) for cond in ("onfail", "unless", "onlyif"))}
    unexpected = {sid: comment for sid, comment in fails.items() if sid not in RUN_ORDER_FAILURES}
    assert not unexpected, f"{name}: states that always fail: {unexpected}"


# --------------------------------------------------------------------------------------
# The rendered configs pass their checkers
# --------------------------------------------------------------------------------------


def test_every_checked_config_is_in_the_table(rendered_nodes):
    """Each config a state validates with check_cmd is rendered and checked here (CHECKED)."""
    for name, node in rendered_nodes.items():
        assert sorted(node.checked()) == sorted(expected_configs(name)), name


def test_rendered_fixture_lays_each_node_out_like_its_filesystem(rendered):
    """What the daemon tests can be fed from: ``rendered[node] / "etc/..."``."""
    assert sorted(rendered) == sorted(NODES)
    for name, path in NODE_CONFIGS:
        assert (rendered[name] / path.lstrip("/")).is_file(), f"{name}: no {path} in {rendered[name]}"
    assert (rendered[PRIMARY] / f"etc/bind/zones/db.{INV['domain']}").is_file()


@pytest.mark.parametrize(("name", "path"), NODE_CONFIGS, ids=[f"{n}:{p}" for n, p in NODE_CONFIGS])
def test_rendered_config_passes_the_check_its_state_runs(rendered_nodes, name, path):
    """The check_cmd of the config's file.managed, on the rendered file at its node path."""
    node = rendered_nodes[name]
    assert path in node.checked(), f"{name}: {path} was not rendered with a check_cmd"
    res = check(node, [*node.checked()[path], path])
    assert res.returncode == 0, f"{name}: {' '.join(node.checked()[path])} {path} rejects it:\n{_output(res)}"


@pytest.mark.parametrize("name", LANSERVICES)
def test_named_loads_the_config_with_its_zones(rendered_nodes, name):
    """named-checkconf -z: the whole config, includes and the primary's zone files loaded."""
    node = rendered_nodes[name]
    res = check(node, ["named-checkconf", "-z", "/etc/bind/named.conf"])
    assert res.returncode == 0, _output(res)
    loaded = [zone for zone in ZONES if f"zone {zone}/IN: loaded serial" in res.stdout]
    assert loaded == (ZONES if name == PRIMARY else []), _output(res)


@pytest.mark.parametrize("zone", ZONES)
def test_primary_zone_passes_named_checkzone(rendered_nodes, zone):
    """The zone file as dnszone.managed writes it, with dnszone.check's flags."""
    node = rendered_nodes[PRIMARY]
    path = node.zones()[zone]
    res = check(node, ["named-checkzone", "-k", "fail", "-i", "local", zone, path])
    assert res.returncode == 0 and res.stdout.rstrip().endswith("OK"), _output(res)


# --------------------------------------------------------------------------------------
# Negative controls: each checker rejects a broken copy of what it passed
# --------------------------------------------------------------------------------------


def _drop_last_brace(text):
    i = text.rindex("}")
    return text[:i] + text[i + 1:]


def _append(line):
    return lambda text: text + line + "\n"


# (what is broken, the file, how, the checker, what its complaint names). Where a config
# includes a file, the include is broken: that also proves the checker read the snapshot's.
BROKEN = [
    ("named-include", "/etc/bind/cluster-transfer.key", _drop_last_brace,
     ["named-checkconf", "/etc/bind/named.conf"], "/etc/bind/cluster-transfer.key"),
    ("named-conf", "/etc/bind/named.conf", _drop_last_brace,
     ["named-checkconf", "/etc/bind/named.conf"], "/etc/bind/named.conf"),
    ("named-zone", f"/etc/bind/zones/db.{INV['domain']}", _append("broken IN A 999.1.2.3"),
     ["named-checkzone", "-k", "fail", "-i", "local", INV["domain"], f"/etc/bind/zones/db.{INV['domain']}"],
     "bad dotted quad"),
    ("named-zone-in-config", f"/etc/bind/zones/db.{INV['domain']}", _append("broken IN A 999.1.2.3"),
     ["named-checkconf", "-z", "/etc/bind/named.conf"], "bad dotted quad"),
    ("dhcpd-include", "/etc/dhcp/omapi.key", _drop_last_brace,
     ["/usr/sbin/dhcpd", "-4", "-t", "-cf", "/etc/dhcp/dhcpd.conf"], "/etc/dhcp/omapi.key: bad parse"),
    ("dhcpd-conf", "/etc/dhcp/dhcpd.conf", _drop_last_brace,
     ["/usr/sbin/dhcpd", "-4", "-t", "-cf", "/etc/dhcp/dhcpd.conf"], "unexpected end of file"),
    ("nft-guard", "/etc/dhcp/omapi-localhost.nft", _drop_last_brace,
     ["/usr/sbin/nft", "-c", "-f", "/etc/dhcp/omapi-localhost.nft"], "syntax error"),
    ("keepalived-brace", "/etc/keepalived/keepalived.conf", _drop_last_brace,
     ["keepalived", "-t", "-f", "/etc/keepalived/keepalived.conf"], "missing '}'"),
    ("keepalived-vrid", "/etc/keepalived/keepalived.conf", lambda t: t.replace("virtual_router_id 53", "virtual_router_id 300"),
     ["keepalived", "-t", "-f", "/etc/keepalived/keepalived.conf"], "VRID '300' not valid"),
    ("chrony-directive", "/etc/chrony/chrony.conf", _append("not_a_directive 1"),
     ["/usr/sbin/chronyd", "-p", "-f", "/etc/chrony/chrony.conf"], "Invalid directive"),
    ("chrony-value", "/etc/chrony/chrony.conf", lambda t: t.replace("makestep 1 3", "makestep one 3"),
     ["/usr/sbin/chronyd", "-p", "-f", "/etc/chrony/chrony.conf"], "Could not parse makestep"),
]


@pytest.mark.parametrize(("path", "breaks", "argv", "complaint"), [case[1:] for case in BROKEN],
                         ids=[case[0] for case in BROKEN])
def test_checker_rejects_a_broken_copy_of_the_rendered_file(rendered_nodes, tmp_path, path, breaks, argv, complaint):
    node = rendered_nodes[PRIMARY]
    need(argv[0])
    copy = tmp_path / PRIMARY
    shutil.copytree(node.root, copy)
    target = copy / path.lstrip("/")
    text = target.read_text(encoding="utf-8")
    broken = breaks(text)
    assert broken != text, f"the corruption did not apply to {path}"
    target.write_text(broken, encoding="utf-8")
    assert run_in_snapshot(node.root, argv).returncode == 0, "the intact file must pass first"
    res = run_in_snapshot(copy, argv)
    assert res.returncode != 0, f"{' '.join(argv)} accepted a broken {path}:\n{_output(res)}"
    assert complaint in _output(res), _output(res)
