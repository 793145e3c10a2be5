"""Zone rendering and serial logic of _modules/dnszone.py, and the thin dnszone.managed state."""

import pytest

from rpicluster import model, views
from tests.conftest import INVENTORY, REPO, load_by_path

dnszone = load_by_path("dnszone_unit", REPO / "_modules" / "dnszone.py")
dnszone_state = load_by_path("dnszone_state_unit", REPO / "_states" / "dnszone.py")
INV = model.load_inventory(INVENTORY)
DOMAIN = INV["cluster"]["domain"]
NS = [f"alpha.{DOMAIN}.", f"beta.{DOMAIN}."]
RECORDS = views.dns_records(INV)


class FakeCommands:
    """cmd.run_all / cmd.which stand-ins: dig answers from ``served``, rndc from ``rndc``."""

    def __init__(self):
        self.served = {}  # "host#port" -> serial
        self.rndc = {"retcode": 0, "stdout": "zone reload queued", "stderr": ""}
        self.calls = []

    def run_all(self, cmd, python_shell=False, **_kwargs):
        assert python_shell is False
        self.calls.append(cmd)
        if cmd[0] == "dig":
            server = next(a[1:] for a in cmd if a.startswith("@"))
            port = cmd[cmd.index("-p") + 1]
            serial = self.served.get(f"{server}#{port}")
            if serial is None:
                return {"retcode": 9, "stdout": ";; connection timed out; no servers could be reached", "stderr": ""}
            return {"retcode": 0, "stdout": f"alpha.{DOMAIN}. hostmaster.{DOMAIN}. {serial} 3600 600 1209600 300",
                    "stderr": ""}
        if cmd[0] == "rndc":
            return dict(self.rndc)
        raise AssertionError(f"unexpected command {cmd}")


@pytest.fixture
def fake():
    return FakeCommands()


@pytest.fixture
def configure_loader_modules(fake):
    return {
        dnszone: {"__salt__": {"cmd.run_all": fake.run_all, "cmd.which": lambda _: "/usr/bin/x"},
                  # a lanservices node's cluster pillar (what the ext_pillar gives beta)
                  "__pillar__": {"cluster": INV["cluster"], "node": views.node_view(INV, "beta")}},
    }


def _render(serial, records=RECORDS):
    return dnszone.render(DOMAIN, records, serial, NS, contact="hostmaster")


def _plan(path, records=RECORDS, today="20240101", **kwargs):
    return dnszone.plan(DOMAIN, str(path), records, NS, contact="hostmaster", today=today, **kwargs)


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------


def test_forward_zone_from_the_model():
    text = _render(2024010100)
    lines = text.splitlines()
    assert f"$ORIGIN {DOMAIN}." in lines and "$TTL 3600" in lines
    assert f"@                       IN SOA   alpha.{DOMAIN}. hostmaster.{DOMAIN}. (" in lines
    assert dnszone.parse_serial(text) == 2024010100
    assert [line.split()[-1] for line in lines if " IN NS " in line] == NS
    a = {line.split()[0]: line.split()[-1] for line in lines if " IN A " in line}
    assert a == {"alpha": "192.168.10.6", "beta": "192.168.10.8", "psi": "192.168.10.10", "delta": "192.168.10.21",
                 "epsilon": "192.168.10.22", "gamma": "192.168.10.23", "zeta": "192.168.10.24", "ns": "192.168.10.111"}
    cnames = {line.split()[0]: line.split()[-1] for line in lines if " IN CNAME " in line}
    assert cnames == {"salt": "psi", "pkgcache": "psi", "status": "psi"}
    assert _render(2024010100) == text  # deterministic


def test_reverse_zone_from_the_model():
    zone = views.reverse_zone(INV)
    text = dnszone.render(zone, views.reverse_records(INV), 7, NS, mname=NS[0], contact=f"hostmaster.{DOMAIN}.")
    assert f"$ORIGIN {zone}." in text
    assert f"IN SOA   alpha.{DOMAIN}. hostmaster.{DOMAIN}. (" in text  # contact not under the reverse zone
    assert f"111                     IN PTR   ns.{DOMAIN}." in text
    assert f"24                      IN PTR   zeta.{DOMAIN}." in text


def test_record_forms():
    text = dnszone.render("ex.test", [
        {"name": "@", "type": "mx", "value": "10 mail"},
        {"name": "_sip._udp", "type": "SRV", "value": "0 5 5060 sip.ex.test."},
        {"name": "t", "type": "TXT", "value": 'say "hi"; \\o/'},
        {"name": "short", "type": "A", "value": "10.0.0.1", "ttl": 60},
    ], 1, "ns1")
    assert "@                       IN MX    10 mail\n" in text
    assert "_sip._udp               IN SRV   0 5 5060 sip.ex.test.\n" in text
    assert 't                       IN TXT   "say \\"hi\\"; \\\\o/"\n' in text
    assert "short                   60 IN A     10.0.0.1\n" in text
    assert "IN NS    ns1.ex.test.\n" in text  # relative names are completed with the zone


@pytest.mark.parametrize(
    "record, message",
    [
        ({"name": "a b", "type": "A", "value": "10.0.0.1"}, "record 0.name: 'a b' is not usable"),
        ({"name": "x;y", "type": "A", "value": "10.0.0.1"}, "is not usable"),
        ({"name": "x", "type": "A", "value": "10.0.0.1\nevil IN A 1.2.3.4"}, "record 0.value: a value is one line"),
        ({"name": "x", "type": "CNAME", "value": "a b"}, "record 0.value: a CNAME value is one name"),
        ({"name": "x", "type": "A", "value": "(1)"}, "is not usable"),
        ({"name": "x", "type": "LOC", "value": "1"}, "record 0.type: 'LOC' is not one of"),
        ({"name": "x", "type": "A"}, "record 0: missing 'value'"),
        ({"name": "x", "type": "A", "value": "10.0.0.1", "tll": 5}, "unknown keys ['tll']"),
        ({"name": "x", "type": "A", "value": "10.0.0.1", "ttl": "1h"}, "record 0.ttl"),
        ({"name": "x", "type": "TXT", "value": "two\nlines"}, "a value is one line"),
        ({"name": "x", "type": "TXT", "value": 5}, "a TXT value is one line of text"),
    ],
)
def test_records_that_would_corrupt_the_file_are_refused(record, message):
    with pytest.raises(dnszone.CommandExecutionError, match=message.replace("(", r"\(").replace("[", r"\[")):
        dnszone.render("ex.test", [record], 1, ["ns1"])


def test_render_needs_ns_and_a_valid_serial():
    with pytest.raises(dnszone.CommandExecutionError, match="at least one NS"):
        dnszone.render("ex.test", [], 1, [])
    with pytest.raises(dnszone.CommandExecutionError, match="outside"):
        dnszone.render("ex.test", [], 2**32, ["ns1"])
    with pytest.raises(dnszone.CommandExecutionError, match=r"soa: unknown keys \['refrsh'\]"):
        dnszone.render("ex.test", [], 1, ["ns1"], soa={"refrsh": 5})


# --------------------------------------------------------------------------------------
# serials
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "current, today, expected",
    [
        (None, "20240315", 2024031500),  # first serial of a zone
        (2024031500, "20240315", 2024031501),  # same day: next number
        (2024031407, "20240315", 2024031500),  # date rollover: today's first
        (2024031599, "20240315", 2024031600),  # 100 changes in a day: still increasing
        (2099010100, "20240315", 2099010101),  # a serial "from the future" never goes back
        (5, "20240315", 2024031500),  # a hand-made small serial
    ],
)
def test_next_serial(current, today, expected):
    assert dnszone.next_serial(current, today) == expected
    assert expected > (current or 0)


def test_next_serial_limits():
    with pytest.raises(dnszone.CommandExecutionError, match="cannot be increased"):
        dnszone.next_serial(2**32 - 1, "20240101")
    with pytest.raises(dnszone.CommandExecutionError, match="today must be YYYYMMDD"):
        dnszone.next_serial(1, "2024-01-01")
    assert len(str(dnszone.next_serial())) == 10  # today, UTC


@pytest.mark.parametrize(
    "text, serial",
    [
        ("@ IN SOA ns. host. ( 2024010100 ; serial\n 1 2 3 4 )", 2024010100),
        ("$TTL 1\n@ 3600 IN SOA ns. host. 42 1 2 3 4\n", 42),
        ("; SOA 99 in a comment ( first\nex. IN SOA ns. host. (\n ; 7 not this\n 8 1 2 3 4 )", 8),
        ("x IN A 10.0.0.1\n", None),
        ("@ IN SOA ns. host. ( notanumber 1 2 3 4 )", None),
        ("", None),
    ],
)
def test_parse_serial(text, serial):
    assert dnszone.parse_serial(text) == serial


def test_serial_of_a_missing_file_is_none(tmp_path):
    assert dnszone.serial(str(tmp_path / "absent")) is None


# --------------------------------------------------------------------------------------
# plan: the serial follows the data
# --------------------------------------------------------------------------------------


def test_same_records_keep_the_serial_even_days_later(tmp_path):
    path = tmp_path / "db"
    path.write_text(_render(2023120503))
    plan = _plan(path, today="20240101")
    assert plan["changed"] is False
    assert plan["serial"] == plan["old_serial"] == 2023120503
    assert plan["diff"] == ""


def test_changed_records_bump_the_serial_once(tmp_path):
    path = tmp_path / "db"
    path.write_text(_render(2024010100))
    records = [*RECORDS, {"name": "extra", "type": "A", "value": "192.168.10.99"}]
    plan = _plan(path, records, today="20240101")
    assert plan["changed"] is True
    assert (plan["old_serial"], plan["serial"]) == (2024010100, 2024010101)
    assert "+extra" in plan["diff"].replace(" ", "")
    path.write_text(plan["text"])  # what dnszone.write does after the check
    again = _plan(path, records, today="20240101")
    assert again["changed"] is False and again["serial"] == 2024010101


def test_date_rollover_and_never_decreasing(tmp_path):
    path = tmp_path / "db"
    path.write_text(_render(2024010105))
    changed = [*RECORDS, {"name": "x", "type": "A", "value": "192.168.10.98"}]
    assert _plan(path, changed, today="20240102")["serial"] == 2024010200
    path.write_text(_render(2099010100))
    assert _plan(path, changed, today="20240102")["serial"] == 2099010101


def test_a_new_zone_starts_today_and_a_hand_edit_is_a_change(tmp_path):
    path = tmp_path / "db"
    plan = _plan(path, today="20240607")
    assert plan["changed"] is True and plan["old_serial"] is None and plan["serial"] == 2024060700
    path.write_text(plan["text"].replace("192.168.10.21", "192.168.10.121"))
    drifted = _plan(path, today="20240607")
    assert drifted["changed"] is True and drifted["serial"] == 2024060701
    assert drifted["text"] == _render(2024060701)


def test_a_new_serial_exceeds_what_the_servers_serve(tmp_path, fake):
    """A rebuilt primary (no zone file) must not go back behind its secondary."""
    fake.served = {"127.0.0.1#53": 2024010203, "192.168.10.8#53": 2024010209}
    plan = _plan(tmp_path / "db", today="20240102", serial_servers=["127.0.0.1#53", "192.168.10.8", "192.168.10.9#5353"])
    assert plan["serial"] == 2024010210
    digs = [c for c in fake.calls if c[0] == "dig"]
    assert [c[c.index("-p") + 1] for c in digs] == ["53", "53", "5353"]
    assert all("+time=1" in c and "+tries=1" in c for c in digs)


def test_servers_are_not_asked_when_nothing_changed(tmp_path, fake):
    path = tmp_path / "db"
    path.write_text(_render(2024010100))
    assert _plan(path, serial_servers=["192.168.10.8"])["changed"] is False
    assert fake.calls == []


def test_permissions_are_part_of_the_plan(tmp_path):
    path = tmp_path / "db"
    path.write_text(_render(2024010100))
    path.chmod(0o600)
    plan = _plan(path, mode="0644")
    assert plan["changed"] is False
    assert plan["perms"] == {"mode": {"old": "0600", "new": "0644"}}
    assert dnszone.fix_perms(str(path), user=None, group=None, mode="0644") == plan["perms"]
    assert path.stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------------------
# rndc: reload and status
# --------------------------------------------------------------------------------------


def test_reload_outcomes(fake):
    assert dnszone.reload_(DOMAIN) == {"reloaded": True, "comment": "zone reload queued"}
    fake.rndc = {"retcode": 1, "stdout": "", "stderr": "rndc: connect failed: 127.0.0.1#953: connection refused"}
    down = dnszone.reload_(DOMAIN)
    assert down["reloaded"] is False and "named is not running" in down["comment"]
    fake.rndc = {"retcode": 1, "stdout": "",
                 "stderr": f"rndc: 'reload' failed: not found\nno matching zone '{DOMAIN}' in any view"}
    assert "next reconfiguration" in dnszone.reload_(DOMAIN)["comment"]
    fake.rndc = {"retcode": 1, "stdout": "", "stderr": "rndc: 'reload' failed: permission denied"}
    with pytest.raises(dnszone.CommandExecutionError, match="rndc reload .* failed: rndc: 'reload' failed: permission denied"):
        dnszone.reload_(DOMAIN)
    assert fake.calls[0] == ["rndc", "reload", DOMAIN]
    fake.rndc = {"retcode": 0, "stdout": "zone reload up-to-date", "stderr": ""}
    dnszone.reload_(DOMAIN + ".", rndc_key="/k", rndc_server="127.0.0.1", rndc_port=9953)
    assert fake.calls[-1] == ["rndc", "-k", "/k", "-s", "127.0.0.1", "-p", "9953", "reload", DOMAIN]


PRIMARY_STATUS = f"""name: {DOMAIN}
type: primary
files: /etc/bind/zones/db.{DOMAIN}
serial: 2025112700
nodes: 12
last loaded: Fri, 27 Nov 2026 14:26:28 GMT
secure: no
dynamic: no
reconfigurable via modzone: no
"""

SECONDARY_STATUS = f"""name: {DOMAIN}
type: secondary
files: /var/cache/bind/db.{DOMAIN}
serial: 2025112700
nodes: 12
last loaded: Fri, 27 Nov 2026 14:26:34 GMT
next refresh: Fri, 27 Nov 2026 15:18:41 GMT
expires: Fri, 11 Dec 2026 14:26:34 GMT
secure: no
dynamic: no
reconfigurable via modzone: no
"""


def test_parse_zonestatus():
    assert dnszone.parse_zonestatus(PRIMARY_STATUS) == {
        "serial": 2025112700, "type": "primary", "loaded": "Fri, 27 Nov 2026 14:26:28 GMT"}
    assert dnszone.parse_zonestatus(SECONDARY_STATUS) == {
        "serial": 2025112700, "type": "secondary", "loaded": "Fri, 27 Nov 2026 14:26:34 GMT",
        "expires": "Fri, 11 Dec 2026 14:26:34 GMT", "refresh": "Fri, 27 Nov 2026 15:18:41 GMT"}


def test_status_defaults_to_the_cluster_zones(fake, monkeypatch):
    answers = {DOMAIN: {"retcode": 0, "stdout": SECONDARY_STATUS, "stderr": ""},
               "10.168.192.in-addr.arpa": {"retcode": 1, "stdout": "", "stderr": "rndc: 'zonestatus' failed: zone not loaded"}}
    monkeypatch.setitem(dnszone.__salt__, "cmd.run_all", lambda cmd, **kw: answers[cmd[-1]])
    status = dnszone.status()
    assert status["running"] is True
    assert status["zones"][DOMAIN]["serial"] == 2025112700
    assert status["zones"]["10.168.192.in-addr.arpa"] == {
        "serial": None, "type": None, "loaded": None, "error": "rndc: 'zonestatus' failed: zone not loaded"}


def test_status_when_named_is_down(fake):
    fake.rndc = {"retcode": 1, "stdout": "", "stderr": "rndc: connect failed: 127.0.0.1#953: connection refused"}
    status = dnszone.status(zones="a.test,b.test")
    assert status["running"] is False
    assert set(status["zones"]) == {"a.test", "b.test"}


# --------------------------------------------------------------------------------------
# the state: thin, test mode first
# --------------------------------------------------------------------------------------


class StateSalt(dict):
    """__salt__ of the state: the execution module's functions, recording what was called."""

    def __init__(self, plan, check_error=None, write_error=None, reload_result=None):
        super().__init__()
        self.called = []
        self["dnszone.plan"] = lambda *a, **k: plan
        self["dnszone.check"] = self._record("check", error=check_error)
        self["dnszone.write"] = self._record("write", error=write_error)
        self["dnszone.fix_perms"] = self._record("fix_perms")
        self["dnszone.reload"] = self._record("reload", value=reload_result or {"reloaded": True, "comment": "queued"})
        self["cmd.which"] = lambda binary: f"/usr/bin/{binary}"

    def _record(self, name, error=None, value=None):
        def func(*args, **kwargs):
            self.called.append(name)
            if error:
                raise dnszone.CommandExecutionError(error)
            return value

        return func


CHANGED = {"changed": True, "old_serial": 2024010100, "serial": 2024010101, "text": "zone", "diff": "+x", "perms": {}}
SAME = {"changed": False, "old_serial": 2024010100, "serial": 2024010100, "text": "zone", "diff": "", "perms": {}}


def _managed(monkeypatch, salt, test):
    monkeypatch.setattr(dnszone_state, "__salt__", salt, raising=False)
    monkeypatch.setattr(dnszone_state, "__opts__", {"test": test}, raising=False)
    return dnszone_state.managed(DOMAIN, "/z/db", RECORDS, NS)


def test_state_test_mode_reports_and_writes_nothing(monkeypatch):
    salt = StateSalt(CHANGED)
    ret = _managed(monkeypatch, salt, test=True)
    assert ret["result"] is None
    assert ret["changes"] == {"serial": {"old": 2024010100, "new": 2024010101}, "diff": "+x"}
    assert "would write /z/db with serial 2024010101 (was 2024010100)" in ret["comment"]
    assert salt.called == ["check"]  # the candidate is checked, nothing written or reloaded


def test_state_test_mode_before_bind_is_installed(monkeypatch):
    salt = StateSalt(CHANGED)
    salt["cmd.which"] = lambda binary: None
    ret = _managed(monkeypatch, salt, test=True)
    assert ret["result"] is None and "not checked: named-checkzone is not installed yet" in ret["comment"]
    assert salt.called == []


def test_state_test_mode_reports_a_candidate_that_would_be_rejected(monkeypatch):
    ret = _managed(monkeypatch, StateSalt(CHANGED, check_error="named-checkzone rejected zone x: bad"), test=True)
    assert ret["result"] is False and "would be rejected" in ret["comment"]


def test_state_up_to_date(monkeypatch):
    salt = StateSalt(SAME)
    for test in (True, False):
        ret = _managed(monkeypatch, salt, test=test)
        assert ret == {"name": DOMAIN, "changes": {}, "result": True,
                       "comment": f"zone {DOMAIN} is up to date (serial 2024010100)"}
    assert salt.called == []


def test_state_writes_then_reloads(monkeypatch):
    salt = StateSalt(CHANGED)
    ret = _managed(monkeypatch, salt, test=False)
    assert ret["result"] is True
    assert ret["changes"]["serial"] == {"old": 2024010100, "new": 2024010101}
    assert ret["changes"]["reloaded"] is True
    assert salt.called == ["write", "reload"]


def test_state_a_rejected_zone_is_a_failure_with_no_changes(monkeypatch):
    salt = StateSalt(CHANGED, write_error="named-checkzone rejected zone x: bad dotted quad")
    ret = _managed(monkeypatch, salt, test=False)
    assert ret["result"] is False and ret["changes"] == {}
    assert "left as it was" in ret["comment"] and "bad dotted quad" in ret["comment"]
    assert salt.called == ["write"]  # no reload


def test_state_named_down_is_not_a_failure(monkeypatch):
    salt = StateSalt(CHANGED, reload_result={"reloaded": False, "comment": "named is not running"})
    ret = _managed(monkeypatch, salt, test=False)
    assert ret["result"] is True and ret["changes"]["reloaded"] is False
    assert "not reloaded: named is not running" in ret["comment"]


def test_state_fixes_permissions_without_a_new_serial(monkeypatch):
    salt = StateSalt({**SAME, "perms": {"mode": {"old": "0600", "new": "0644"}}})
    would = _managed(monkeypatch, salt, test=True)
    assert would["result"] is None and salt.called == []
    ret = _managed(monkeypatch, salt, test=False)
    assert ret["result"] is True and ret["changes"] == {"mode": {"old": "0600", "new": "0644"}}
    assert salt.called == ["fix_perms"]
