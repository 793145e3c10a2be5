"""The chrony status function on chronyc output recorded from chrony 4.3
(tests/unit/fixtures/chrony; the orphan pair's lines below, recorded the same way from the
configs salt/chrony renders now)."""

import pytest

from tests.conftest import REPO, load_by_path

chrony = load_by_path("chrony_under_test", REPO / "_modules" / "chrony.py")
FIXTURES = REPO / "tests" / "unit" / "fixtures" / "chrony"


def fixture(name):
    return (FIXTURES / name).read_text()


@pytest.fixture
def configure_loader_modules():
    return {chrony: {"__salt__": {}}}


@pytest.fixture(autouse=True)
def chronyc_installed(monkeypatch):
    monkeypatch.setattr(chrony.salt.utils.path, "which", lambda name: f"/usr/bin/{name}")


def test_client_synchronised_to_a_server():
    track = chrony.parse_tracking(fixture("client-tracking.csv"))
    assert track["synchronised"] is True and track["local"] is False
    assert (track["ref_id"], track["ref_name"], track["stratum"]) == ("C0A80A06", "192.168.10.6", 9)
    assert track["leap_status"] == "Normal"
    assert isinstance(track["system_time"], float)


def test_server_on_its_local_clock():
    track = chrony.parse_tracking(fixture("server-local-tracking.csv"))
    assert track["local"] is True and track["synchronised"] is True and track["stratum"] == 8
    assert chrony.parse_sources(fixture("server-local-sources.csv")) == []


def test_unsynchronised_client():
    track = chrony.parse_tracking(fixture("client-unsynchronised-tracking.csv"))
    assert track["synchronised"] is False and track["stratum"] == 0
    assert track["leap_status"] == "Not synchronised"


def test_sources():
    (src,) = chrony.parse_sources(fixture("client-sources.csv"))
    assert (src["mode"], src["state"], src["name"], src["stratum"]) == ("server", "selected", "192.168.10.6", 8)
    assert src["reach"] == "17" and src["reachable"] is True
    unreachable = chrony.parse_sources(fixture("client-unreachable-sources.csv"))
    assert [(s["name"], s["state"], s["reachable"]) for s in unreachable] == [
        ("192.168.10.6", "unreachable", False), ("192.168.10.8", "unreachable", False),
    ]


def test_garbage_is_an_error():
    with pytest.raises(chrony.CommandExecutionError, match="unexpected 'chronyc -c tracking'"):
        chrony.parse_tracking("506 Cannot talk to daemon\n")
    with pytest.raises(chrony.CommandExecutionError, match="unexpected 'chronyc -c sources'"):
        chrony.parse_sources("^,*,x\n")


def test_status_combines_tracking_and_sources(monkeypatch):
    calls = []

    def run_all(cmd, python_shell=None, **_kw):
        assert python_shell is False
        calls.append(cmd)
        name = "client-tracking.csv" if cmd[-1] == "tracking" else "client-sources.csv"
        return {"retcode": 0, "stdout": fixture(name), "stderr": ""}

    monkeypatch.setitem(chrony.__salt__, "cmd.run_all", run_all)
    out = chrony.status(socket="/run/x.sock")
    assert calls[0] == ["chronyc", "-n", "-c", "-h", "/run/x.sock", "tracking"]
    assert out["synchronised"] and out["reference"] == "192.168.10.6" and out["selected"] == "192.168.10.6"
    assert (out["sources_reachable"], out["sources_total"], out["stratum"]) == (1, 1, 9)


def test_without_chronyc(monkeypatch):
    monkeypatch.setattr(chrony.salt.utils.path, "which", lambda _name: None)
    with pytest.raises(chrony.CommandExecutionError, match="chronyc is not installed"):
        chrony.status()


def test_a_dead_chronyd_is_an_actionable_error(monkeypatch):
    monkeypatch.setitem(
        chrony.__salt__, "cmd.run_all",
        lambda *_a, **_k: {"retcode": 1, "stdout": "506 Cannot talk to daemon", "stderr": ""},
    )
    with pytest.raises(chrony.CommandExecutionError, match="Cannot talk to daemon.*is chronyd running"):
        chrony.tracking()


# Recorded from chrony 4.3 (chronyd -x -d in network namespaces, the configs salt/chrony renders:
# alpha and beta in orphan mode with no upstream, delta a client of both and of the VIP).
# beta following alpha, the orphan parent:
FOLLOWER_TRACKING = (
    "C0A80A06,192.168.10.6,9,1796153771.242566679,0.000005470,0.000002111,0.000003207,-0.124,0.006,"
    "0.847,0.000033516,0.000005856,4.1,Normal\n"
)
FOLLOWER_SOURCES = "^,*,192.168.10.6,8,2,377,2,0.000002503,0.000004614,0.000016817\n"
# beta 40 s after alpha lost power: its last estimate of alpha (holdover), no source reachable
HOLDOVER_TRACKING = (
    "C0A80A06,192.168.10.6,9,1796153771.242566679,0.000010195,0.000002111,0.000003207,-0.124,0.006,"
    "0.847,0.000033516,0.000076561,4.1,Normal\n"
)
HOLDOVER_SOURCES = "^,?,192.168.10.6,8,2,0,40,0.000002503,0.000004614,0.000016817\n"
# delta: both servers preferred, the VIP (on alpha) a vote that is never combined
CLIENT_VIP_SOURCES = (
    "^,*,192.168.10.6,8,2,377,4,0.000000445,0.000000347,0.000022333\n"
    "^,+,192.168.10.8,9,2,377,0,-0.000001464,-0.000001464,0.000055393\n"
    "^,-,192.168.10.111,8,2,377,0,-0.000000378,-0.000000378,0.000013470\n"
)


def status_from(monkeypatch, tracking, sources):
    outputs = {"tracking": tracking, "sources": sources}
    monkeypatch.setitem(
        chrony.__salt__, "cmd.run_all",
        lambda cmd, **_kw: {"retcode": 0, "stdout": outputs[cmd[-1]], "stderr": ""},
    )
    return chrony.status()


def test_orphan_follower_is_synchronised_to_the_parent(monkeypatch):
    out = status_from(monkeypatch, FOLLOWER_TRACKING, FOLLOWER_SOURCES)
    assert out["synchronised"] and not out["local"]
    assert (out["reference"], out["stratum"], out["selected"]) == ("192.168.10.6", 9, "192.168.10.6")
    assert out["leap_status"] == "Normal" and isinstance(out["offset"], float)


def test_a_server_whose_parent_died_stays_synchronised_on_its_last_estimate(monkeypatch):
    out = status_from(monkeypatch, HOLDOVER_TRACKING, HOLDOVER_SOURCES)
    assert out["synchronised"] and not out["local"]
    assert (out["reference"], out["stratum"]) == ("192.168.10.6", 9)
    assert out["selected"] is None and (out["sources_reachable"], out["sources_total"]) == (0, 1)
    assert out["sources"][0]["state"] == "unreachable"


def test_client_with_the_vip_vote(monkeypatch):
    out = status_from(monkeypatch, fixture("client-tracking.csv"), CLIENT_VIP_SOURCES)
    assert out["synchronised"] and out["selected"] == "192.168.10.6"
    assert (out["sources_reachable"], out["sources_total"]) == (3, 3)
    assert [(s["name"], s["state"]) for s in out["sources"]] == [
        ("192.168.10.6", "selected"), ("192.168.10.8", "combined"), ("192.168.10.111", "not-combined"),
    ]
