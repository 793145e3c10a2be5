"""BIND on nodes of the inventory (``nodefs``: the states write their real paths in the node's
files): the dnszone state against a real named, the bind SLS for the primary and the secondary
(packages, files, the service with systemctl mocked), and the rendered configs running as a real
primary/secondary pair in two network namespaces, in the nodes' files (TSIG AXFR, unsigned AXFR
refused, NOTIFY propagation)."""

import ipaddress
import json
import os
import socket
import subprocess
import time

import pytest
import yaml
from saltfactories.utils.functional import StateResult

from rpicluster import model, views
from tests.conftest import INVENTORY
from tests.functional.lanpair import (
    HAVE_NETNS,
    NAMED,
    Pair,
    call_beside,
    changed,
    failed,
    lan_node,
    scratch_root,
    wait_for,
)

pytestmark = pytest.mark.skipif(not os.path.exists(NAMED), reason="needs named (bind9, tests/host-packages.txt)")

INV = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))["cluster"]
DOMAIN = INV["domain"]
ALPHA, BETA = INV["nodes"]["alpha"]["ip"], INV["nodes"]["beta"]["ip"]
REVERSE = "10.168.192.in-addr.arpa"
TODAY = time.strftime("%Y%m%d", time.gmtime())


def _free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port


def _dig(port, *args):
    res = subprocess.run(["dig", "+time=1", "+tries=1", "+short", "-p", str(port), "@127.0.0.1", *args],
                         capture_output=True, text=True, check=False)
    return res.stdout.split()


# --------------------------------------------------------------------------------------
# dnszone.managed against a named on the host's loopback (high ports)
# --------------------------------------------------------------------------------------

ZONE = "func.test"


@pytest.fixture(scope="module")
def alpha(salt_factories, secrets_dir):
    with scratch_root("alpha") as root:
        yield lan_node(salt_factories, "alpha", root, secrets_dir)


@pytest.fixture(scope="module")
def named_host(tmp_path_factory):
    """A named on 127.0.0.1 (free ports) with one primary zone, ``func.test``, not loaded yet."""
    d = tmp_path_factory.mktemp("named-host")
    (d / "zones").mkdir()
    port, control = _free_port(), _free_port()
    subprocess.run(["rndc-confgen", "-a", "-k", "rndc-key", "-c", str(d / "rndc.key")], check=True, capture_output=True)
    (d / "named.conf").write_text(
        f'include "{d}/rndc.key";\n'
        f'controls {{ inet 127.0.0.1 port {control} allow {{ 127.0.0.1; }} keys {{ "rndc-key"; }}; }};\n'
        f'options {{ directory "{d}"; pid-file "{d}/named.pid"; session-keyfile "{d}/session.key";\n'
        f"  listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; recursion no; dnssec-validation no; }};\n"
        f'zone "{ZONE}" {{ type primary; file "{d}/zones/db.{ZONE}"; }};\n'
    )
    log = open(d / "named.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([NAMED, "-g", "-c", str(d / "named.conf")], stdout=log, stderr=subprocess.STDOUT)
    rndc = ["rndc", "-k", str(d / "rndc.key"), "-s", "127.0.0.1", "-p", str(control)]
    wait_for(lambda: subprocess.run([*rndc, "status"], capture_output=True, check=False).returncode == 0,
             15, 0.1, "named's control channel")
    yield {"dir": d, "port": port, "control": control, "rndc": rndc, "path": d / "zones" / f"db.{ZONE}",
           "rndc_args": {"rndc_key": str(d / "rndc.key"), "rndc_server": "127.0.0.1", "rndc_port": control}}
    proc.terminate()
    proc.wait(10)
    log.close()


RECORDS = [
    {"name": "ns1", "type": "A", "value": "10.9.0.1"},
    {"name": "www", "type": "A", "value": "10.9.0.80"},
    {"name": "alias", "type": "CNAME", "value": "www"},
    {"name": "note", "type": "TXT", "value": 'a "quoted" note; with a semicolon'},
]


def _zone_state(alpha, named_host, records, test=False, **extra):
    """dnszone.managed applied on node alpha (its zone file is named_host's, in a host directory
    the node's files do not cover)."""
    return StateResult(alpha.call(lambda loaders: loaders.states.dnszone.managed(
        name=ZONE, path=str(named_host["path"]), records=records, ns=["ns1"], contact="hostmaster",
        user="root", group="root", test=test, **named_host["rndc_args"], **extra,
    ).raw))


def _leftovers(named_host):
    return sorted(p.name for p in named_host["path"].parent.iterdir() if p.name.endswith(".candidate"))


def test_zone_state_test_mode_writes_nothing(alpha, named_host):
    ret = _zone_state(alpha, named_host, RECORDS, test=True)
    assert ret.result is None, ret.comment
    assert ret.changes["serial"] == {"old": None, "new": int(TODAY) * 100}
    assert "+www" in ret.changes["diff"].replace(" ", "")
    assert "would write" in ret.comment
    assert not named_host["path"].exists()
    assert _leftovers(named_host) == []


def test_zone_state_writes_checks_and_reloads(alpha, named_host):
    ret = _zone_state(alpha, named_host, RECORDS)
    assert ret.result is True, ret.comment
    serial = int(TODAY) * 100
    assert ret.changes["serial"] == {"old": None, "new": serial}
    assert ret.changes["reloaded"] is True
    assert f"{serial}  ; serial" in named_host["path"].read_text()
    # named serves what was written: the reload happened
    port = named_host["port"]
    assert _dig(port, ZONE, "SOA")[2] == str(serial)
    assert _dig(port, "www." + ZONE, "A") == ["10.9.0.80"]
    assert _dig(port, "note." + ZONE, "TXT") == ['"a', '\\"quoted\\"', "note;", "with", "a", 'semicolon"']
    assert oct(named_host["path"].stat().st_mode & 0o777) == "0o644"


def test_zone_state_second_run_changes_nothing(alpha, named_host):
    before = named_host["path"].read_text()
    ret = _zone_state(alpha, named_host, RECORDS)
    assert ret.result is True
    assert ret.changes == {}
    assert "up to date" in ret.comment
    assert named_host["path"].read_text() == before


def test_changed_records_bump_the_serial_once(alpha, named_host):
    old = _dig(named_host["port"], ZONE, "SOA")[2]
    records = [*RECORDS, {"name": "mail", "type": "A", "value": "10.9.0.25"}]
    would = _zone_state(alpha, named_host, records, test=True)
    assert would.result is None and would.changes["serial"]["new"] == int(old) + 1
    assert _dig(named_host["port"], "mail." + ZONE, "A") == []  # test mode did not write
    ret = _zone_state(alpha, named_host, records)
    assert ret.result is True, ret.comment
    assert ret.changes["serial"] == {"old": int(old), "new": int(old) + 1}
    assert _dig(named_host["port"], ZONE, "SOA")[2] == str(int(old) + 1)
    assert _dig(named_host["port"], "mail." + ZONE, "A") == ["10.9.0.25"]
    again = _zone_state(alpha, named_host, records)
    assert again.changes == {}
    # back to the first record set: a change again, so a new serial (never an old one)
    back = _zone_state(alpha, named_host, RECORDS)
    assert back.changes["serial"] == {"old": int(old) + 1, "new": int(old) + 2}


def test_a_broken_record_is_rejected_and_the_serving_zone_stays(alpha, named_host):
    before = named_host["path"].read_bytes()
    serving = _dig(named_host["port"], ZONE, "SOA")[2]
    broken = [*RECORDS, {"name": "bad", "type": "A", "value": "300.1.2.3"}]
    would = _zone_state(alpha, named_host, broken, test=True)
    assert would.result is False
    assert "would be rejected" in would.comment and "bad dotted quad" in would.comment
    ret = _zone_state(alpha, named_host, broken)
    assert ret.result is False
    assert "named-checkzone rejected" in ret.comment and "left as it was" in ret.comment
    assert ret.changes == {}
    assert named_host["path"].read_bytes() == before
    assert _leftovers(named_host) == []
    assert _dig(named_host["port"], ZONE, "SOA")[2] == serving


def test_a_hand_edit_is_put_back_with_a_new_serial(alpha, named_host):
    path = named_host["path"]
    old = int(_dig(named_host["port"], ZONE, "SOA")[2])
    path.write_text(path.read_text().replace("10.9.0.80", "10.9.0.99"))
    ret = _zone_state(alpha, named_host, RECORDS)
    assert ret.changes["serial"] == {"old": old, "new": old + 1}
    assert "10.9.0.80" in path.read_text()


def test_a_lost_zone_file_never_goes_back_behind_the_served_serial(alpha, named_host):
    """A rebuilt primary (zone file gone) starts above what is still being served."""
    served = int(_dig(named_host["port"], ZONE, "SOA")[2])
    named_host["path"].unlink()
    ret = _zone_state(alpha, named_host, RECORDS, serial_servers=[f"127.0.0.1#{named_host['port']}"])
    assert ret.result is True, ret.comment
    assert ret.changes["serial"] == {"old": None, "new": served + 1}
    assert _dig(named_host["port"], ZONE, "SOA")[2] == str(served + 1)


def test_dns_status_reports_the_served_serial(alpha, named_host):
    status = alpha.call(lambda loaders: loaders.modules.dnszone.status(zones=[ZONE, "absent.test"],
                                                                       **named_host["rndc_args"]))
    assert status["running"] is True
    assert status["zones"][ZONE]["serial"] == int(_dig(named_host["port"], ZONE, "SOA")[2])
    assert status["zones"][ZONE]["type"] == "primary"
    assert status["zones"]["absent.test"]["serial"] is None
    port = _free_port()
    down = alpha.call(lambda loaders: loaders.modules.dnszone.status(
        zones=[ZONE], rndc_key=named_host["rndc_args"]["rndc_key"], rndc_server="127.0.0.1", rndc_port=port))
    assert down["running"] is False and down["zones"][ZONE]["serial"] is None


# --------------------------------------------------------------------------------------
# The bind SLS: primary and secondary rendered from the inventory into their real paths
# --------------------------------------------------------------------------------------

CONF = "etc/bind/named.conf"


@pytest.fixture(scope="module")
def beta(salt_factories, secrets_dir):
    with scratch_root("beta") as root:
        yield lan_node(salt_factories, "beta", root, secrets_dir)


def test_bind_sls_test_mode_writes_nothing(alpha):
    ret = alpha.sls("bind", test=True)
    assert not failed(ret), failed(ret)
    assert any(r["result"] is None for r in ret.raw.values())
    # nothing at all: no named.conf, no zone, no key, no drop-in
    assert alpha.fs.written() == []


def test_bind_sls_test_mode_starts_nothing_mocked_systemctl(alpha):
    # only the test run above has run on alpha: it asked, changed no unit
    assert alpha.fs.units() == {}
    assert not [c for c in alpha.fs.systemctl_calls() if c.split()[0] in ("start", "restart", "reload", "enable")]


def test_bind_sls_primary(alpha, secrets_dir):
    ret = alpha.sls("bind")
    assert not failed(ret), failed(ret)
    # the TSIG secret is in the key file, never in the state's output
    secret = (secrets_dir / "tsig.key").read_text().strip()
    assert secret and secret in (alpha.root / "etc" / "bind" / "cluster-transfer.key").read_text()
    assert secret not in json.dumps(ret.raw)
    conf = (alpha.root / CONF).read_text()
    assert "the BIND primary of dc1.b3rry.clust0r" in conf
    # the real paths: no scratch prefix anywhere in the config
    assert 'include "/etc/bind/rndc.key";' in conf and 'include "/etc/bind/cluster-transfer.key";' in conf
    assert 'directory "/var/cache/bind";' in conf and 'pid-file "/run/named/named.pid";' in conf
    assert f'file "/etc/bind/zones/db.{DOMAIN}";' in conf and str(alpha.root) not in conf
    # TSIG transfers and NOTIFY to the secondary, nothing unsigned
    assert f"server {BETA} {{\n    keys {{ \"cluster-transfer\"; }};" in conf
    assert conf.count('allow-transfer { key "cluster-transfer"; };') == 2
    assert conf.count(f'also-notify {{ {BETA} port 53 key "cluster-transfer"; }};') == 2
    assert conf.count("notify-delay 0;") == 2
    assert "allow-transfer { none; };" in conf  # the default, in options
    assert 'acl "cluster-net" { 192.168.10.0/24; 127.0.0.0/8; };' in conf
    assert 'allow-recursion { "cluster-net"; };' in conf
    assert "listen-on port 53 { any; };" in conf
    assert "forwarders" not in conf  # the inventory names none
    assert f'zone "{DOMAIN}" {{\n    type primary;' in conf and f'zone "{REVERSE}" {{\n    type primary;' in conf
    key = (alpha.root / "etc" / "bind" / "cluster-transfer.key")
    assert 'algorithm hmac-sha256;' in key.read_text()
    assert oct(key.stat().st_mode & 0o777) == "0o640"
    forward = (alpha.root / "etc" / "bind" / "zones" / f"db.{DOMAIN}").read_text()
    assert "delta                   IN A     192.168.10.21" in forward  # compute nodes too
    assert "ns                      IN A     192.168.10.111" in forward  # the VIP
    assert "salt                    IN CNAME psi" in forward
    assert f"@                       IN NS    beta.{DOMAIN}." in forward
    reverse = (alpha.root / "etc" / "bind" / "zones" / f"db.{REVERSE}").read_text()
    assert f"111                     IN PTR   ns.{DOMAIN}." in reverse
    # the files written, at their real paths (the drop-in ordering named after time-sync.target)
    written = alpha.fs.written()
    for path in (CONF, "etc/bind/cluster-transfer.key", f"etc/bind/zones/db.{DOMAIN}", f"etc/bind/zones/db.{REVERSE}",
                 "etc/systemd/system/named.service.d/time-sync.conf"):
        assert path in written, written
    # named-checkconf (with the zones) accepts what was written, in the node's files
    res = subprocess.run(alpha.wrap(["named-checkconf", "-z", "/" + CONF]), capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _changed_again(alpha) == {}


def _changed_again(node):
    return changed(node.sls("bind"))


def test_bind_sls_secondary(beta):
    ret = beta.sls("bind")
    assert not failed(ret), failed(ret)
    conf = (beta.root / CONF).read_text()
    assert "the BIND secondary of dc1.b3rry.clust0r" in conf
    assert f"server {ALPHA} {{\n    keys {{ \"cluster-transfer\"; }};" in conf
    assert conf.count(f'primaries {{ {ALPHA} port 53 key "cluster-transfer"; }};') == 2
    assert conf.count("type secondary;") == 2
    assert f'file "/var/cache/bind/db.{DOMAIN}";' in conf
    assert "type primary" not in conf and "also-notify" not in conf
    assert not [p for p in beta.fs.written() if p.startswith("etc/bind/zones")]  # the secondary's zones come by AXFR
    assert _changed_again(beta) == {}


@pytest.mark.parametrize("name", ["alpha", "beta"])
def test_bind_sls_enables_and_starts_named_mocked_systemctl(request, name):
    """The two runs above (apply, then nothing to change): named enabled and started, after the
    daemon-reload for its drop-in; the second run started, reloaded and reloaded nothing."""
    node = request.getfixturevalue(name)
    assert node.fs.units()["named.service"] == {"active": True, "enabled": True}
    calls = node.fs.systemctl_calls()
    acting = [c for c in calls if c.split()[0] in ("daemon-reload", "start", "restart", "reload", "enable")]
    assert acting.count("daemon-reload") == 1, calls
    assert acting[0] == "daemon-reload", calls  # the drop-in is known before named starts
    assert any(c.split()[0] == "start" and "named" in c for c in acting), calls
    assert any(c.split()[0] == "enable" and "named" in c for c in acting), calls
    # the second run: named asked about, nothing done to it
    again = _changed_again(node)
    assert again == {}
    assert node.fs.systemctl_calls()[len(calls):] and not [
        c for c in node.fs.systemctl_calls()[len(calls):] if c.split()[0] in ("daemon-reload", "start", "restart",
                                                                              "reload", "enable")]


def test_a_broken_named_conf_is_rejected_and_the_previous_one_stays(salt_factories, beta, secrets_dir):
    conf = beta.root / CONF
    before = conf.read_bytes()
    broken = lan_node(salt_factories, "beta", beta.root, secrets_dir, bind={"listen_on": ["300.1.2.3"]})
    ret = broken.sls("bind")
    errors = failed(ret)
    config = "file_|-bind-config-file-managed_|-/etc/bind/named.conf_|-managed"
    service = "service_|-bind-service-running_|-named_|-running"
    # the config is rejected; named, which watches it, is left alone (neither reloaded nor restarted)
    assert sorted(errors) == sorted([config, service]), errors
    assert "check_cmd" in errors[config]
    assert errors[service].startswith("One or more requisite failed"), errors[service]
    assert conf.read_bytes() == before


def test_forwarders_from_the_inventory(salt_factories, tmp_path, secrets_dir):
    inventory = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))
    inventory["cluster"]["network"]["dns_forwarders"] = ["9.9.9.9", "1.1.1.1"]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory))
    node = lan_node(salt_factories, "beta", tmp_path / "root", secrets_dir, inventory=path)
    ret = node.sls("bind")
    assert not failed(ret), failed(ret)
    conf = (node.root / CONF).read_text()
    assert "forwarders { 9.9.9.9; 1.1.1.1; };" in conf


# --------------------------------------------------------------------------------------
# The rendered pair, for real: two named in two network namespaces, each in its node's files
# --------------------------------------------------------------------------------------

RNDC = ["rndc", "-k", "/etc/bind/rndc.key"]


@pytest.fixture(scope="module")
def pair(alpha, beta):
    """The primary and secondary running the configs the SLS rendered (tests above ran it);
    ``pair.named``: their named daemons."""
    if not HAVE_NETNS:
        pytest.skip("needs root and iproute2 for network namespaces")
    prefix = ipaddress.IPv4Network(INV["network"]["subnet"]).prefixlen
    nodes = {"alpha": alpha, "beta": beta}
    with Pair(f"rpic{os.getpid()}", {"alpha": ALPHA, "beta": BETA}, prefix) as net:
        net.named = {}
        for name, node in nodes.items():
            if not (node.root / CONF).exists():  # unless the tests above did
                ret = node.sls("bind")
                assert not failed(ret), failed(ret)
            net.named[name] = net.start(name, [NAMED, "-g", "-u", "bind", "-c", "/" + CONF], node.root / "named.log",
                                        node=node)
        for name, node in nodes.items():
            wait_for(lambda n=name, nd=node: net.run(n, *RNDC, "status", node=nd).returncode == 0,
                     15, 0.1, f"named on {name}")
        yield net


def _secret(node):
    text = (node.root / "etc" / "bind" / "cluster-transfer.key").read_text()
    return text.split('secret "')[1].split('"')[0]


def _serial(net, node, server, zone=DOMAIN):
    answer = net.dig(node, f"@{server}", zone, "SOA")
    return int(answer[0].split()[2]) if answer and answer[0] else None


def test_secondary_gets_both_zones_by_signed_transfer(pair, alpha, beta):
    for zone in (DOMAIN, REVERSE):
        serial, _ = wait_for(lambda z=zone: _serial(pair, "beta", BETA, z), 10, 0.05, f"{zone} on the secondary")
        assert serial == _serial(pair, "alpha", ALPHA, zone)
    log = (beta.root / "named.log").read_text()
    assert f"transfer of '{DOMAIN}/IN' from {ALPHA}#53: Transfer completed" in log
    assert "TSIG 'cluster-transfer'" in log
    # the secondary's copies, in its working directory (its real path, in beta's files)
    assert (beta.root / "var" / "cache" / "bind" / f"db.{DOMAIN}").is_file()
    # every inventory name resolves the same on both servers
    for name in ("alpha", "beta", "psi", "delta", "zeta", "ns", "salt"):
        fqdn = f"{name}.{DOMAIN}"
        assert pair.dig("beta", f"@{ALPHA}", fqdn) == pair.dig("beta", f"@{BETA}", fqdn) != []
    assert pair.dig("alpha", f"@{BETA}", "-x", "192.168.10.111") == [f"ns.{DOMAIN}."]


def test_unsigned_axfr_is_refused_signed_axfr_works(pair, alpha):
    unsigned = pair.run("beta", "dig", "+time=2", "+tries=1", f"@{ALPHA}", DOMAIN, "AXFR")
    assert "Transfer failed." in unsigned.stdout
    assert "IN\tA" not in unsigned.stdout
    from_secondary = pair.run("alpha", "dig", "+time=2", "+tries=1", f"@{BETA}", DOMAIN, "AXFR")
    assert "Transfer failed." in from_secondary.stdout  # the secondary hands its copy to nobody
    key = f"hmac-sha256:cluster-transfer:{_secret(alpha)}"
    signed = pair.run("beta", "dig", "+time=2", "+tries=1", "-y", key, f"@{ALPHA}", DOMAIN, "AXFR")
    assert "Transfer failed." not in signed.stdout
    assert f"zeta.{DOMAIN}.\t3600\tIN\tA\t192.168.10.24" in signed.stdout


def _flags(output):
    return output.split("flags:")[1].split(";")[0].split()


def test_recursion_only_for_the_cluster_subnet(pair):
    inside = pair.run("beta", "dig", "+time=1", "+tries=1", f"@{ALPHA}", DOMAIN, "SOA")
    assert {"aa", "ra"} <= set(_flags(inside.stdout))
    # a client outside the subnet (an extra address on beta, routed back by alpha)
    pair.run("beta", "ip", "addr", "add", "10.200.0.1/32", "dev", "eth0")
    pair.run("alpha", "ip", "route", "add", "10.200.0.1/32", "dev", "eth0")
    try:
        outside = pair.run("beta", "dig", "+time=2", "+tries=1", "-b", "10.200.0.1", f"@{ALPHA}", DOMAIN, "SOA")
        assert "status: NOERROR" in outside.stdout  # authoritative answers for anyone
        assert "aa" in _flags(outside.stdout) and "ra" not in _flags(outside.stdout)
        refused = pair.run("beta", "dig", "+time=2", "+tries=1", "-b", "10.200.0.1", f"@{ALPHA}", "example.org", "A")
        assert "status: REFUSED" in refused.stdout
    finally:
        pair.run("alpha", "ip", "route", "del", "10.200.0.1/32", "dev", "eth0")
        pair.run("beta", "ip", "addr", "del", "10.200.0.1/32", "dev", "eth0")


def test_notify_propagates_a_change_within_a_second(pair, alpha, beta):
    records = [*views.dns_records(model.load_inventory(INVENTORY)), {"name": "fresh", "type": "A", "value": "192.168.10.77"}]
    path = f"/etc/bind/zones/db.{DOMAIN}"
    before = _serial(pair, "beta", BETA)
    # the zone file rewritten where alpha's named reads it (lanpair.call_beside)
    res = call_beside(alpha, pair.named["alpha"], lambda loaders: loaders.modules.dnszone.manage(
        DOMAIN, path, records, [f"alpha.{DOMAIN}.", f"beta.{DOMAIN}."], mname=f"alpha.{DOMAIN}.",
        contact=f"hostmaster.{DOMAIN}.", user="root", group="bind", reload_zone=False,
    ))
    assert res["changed"] and res["serial"] == before + 1
    start = time.monotonic()
    reload = pair.run("alpha", *RNDC, "reload", DOMAIN, node=alpha)
    assert reload.returncode == 0, reload.stderr
    answer, _ = wait_for(lambda: pair.dig("beta", f"@{BETA}", f"fresh.{DOMAIN}") == ["192.168.10.77"], 5, 0.01,
                         "the new record on the secondary")
    elapsed = time.monotonic() - start
    print(f"DNS propagation primary -> secondary (rndc reload to answer): {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0, f"NOTIFY + AXFR took {elapsed:.3f} s"
    assert _serial(pair, "beta", BETA) == before + 1
    # dnszone.status on each server (the node's loaders, rndc in its namespace and its files,
    # the default key) reports the same serial
    for name, node, kind in (("alpha", alpha, "primary"), ("beta", beta, "secondary")):
        status = node.call(lambda loaders: loaders.modules.dnszone.status(zones=[DOMAIN]), netns=pair.ns[name])
        assert status["running"] is True
        assert status["zones"][DOMAIN]["serial"] == before + 1, status
        assert status["zones"][DOMAIN]["type"] == kind
