"""
``salt-run cluster.status`` (_runners/cluster.py): the status object assembled from the
answers of the LAN service modules, the table people read, a node that is down, k3s missing,
the one batch of jobs with one deadline, and the last highstate read from the job cache
(the default local cache and the Redis keys saltext-redis writes).

The canned answers are what the real modules return: chrony.status on recorded chronyc
output, dhcpd_failover on recorded omshell output, k3s on recorded kubectl JSON
(tests/unit/fixtures/), dnszone.parse_zonestatus on rndc zonestatus text.
"""

import copy
import fnmatch
import json
import time
from unittest import mock

import pytest

import salt.cache
import salt.config
import salt.loader
from tests.conftest import INVENTORY, REPO, load_by_path

runner = load_by_path("cluster_runner_status", REPO / "_runners" / "cluster.py")
chrony = load_by_path("chrony_for_status", REPO / "_modules" / "chrony.py")
dhcpd = load_by_path("dhcpd_failover_for_status", REPO / "_modules" / "dhcpd_failover.py")
dnszone = load_by_path("dnszone_for_status", REPO / "_modules" / "dnszone.py")
k3s = load_by_path("k3s_for_status", REPO / "_modules" / "k3s.py")
FIXTURES = REPO / "tests" / "unit" / "fixtures"

NODES = ["alpha", "beta", "psi", "delta", "epsilon", "gamma", "zeta"]  # the inventory, by IP
LAN = ["alpha", "beta"]
ZONES = ("dc1.b3rry.clust0r", "10.168.192.in-addr.arpa")
NOTE = "k3s not installed on delta (no artifact)"


def fixture(*parts):
    return (FIXTURES.joinpath(*parts)).read_text()


@pytest.fixture
def opts(tmp_path):
    return dict(
        copy.deepcopy(salt.config.DEFAULT_MASTER_OPTS),
        **{
        "file_roots": {"base": [str(REPO / "salt")]},
        "cluster_inventory": str(INVENTORY),
        "cachedir": str(tmp_path),
        "conf_file": str(tmp_path / "master"),
        "master_job_cache": "local_cache",
        "cache": "localfs",
        "hash_type": "sha256",
        "keep_jobs_seconds": 86400,
        "utc_jid": True,
        "output": None,
        "__role": "master",
        },
    )


@pytest.fixture
def configure_loader_modules(opts):
    return {runner: {"__opts__": opts, "__context__": {}}}


# --- canned module answers --------------------------------------------------------------


def chrony_status(tracking, sources):
    def run_all(cmd, **_):
        text = fixture("chrony", tracking if cmd[-1] == "tracking" else sources)
        return {"retcode": 0, "stdout": text, "stderr": ""}

    with mock.patch.object(chrony, "__salt__", {"cmd.run_all": run_all}, create=True), mock.patch.object(
        chrony.salt.utils.path, "which", lambda name: f"/usr/bin/{name}"
    ):
        return chrony.status()


CLIENT_NTP = chrony_status("client-tracking.csv", "client-sources.csv")
SERVER_NTP = chrony_status("server-local-tracking.csv", "server-local-sources.csv")
UNSYNCED_NTP = chrony_status("client-unsynchronised-tracking.csv", "client-unreachable-sources.csv")


def failover(role):
    obj = dhcpd.parse_omshell(fixture("dhcpd_failover", "primary-normal.txt"))["objects"][-1]
    obj = dict(obj, hierarchy=0 if role == "primary" else 1)
    return {"dhcp-failover": dhcpd.failover_state(obj)}


def zonestatus(serial, kind):
    return dnszone.parse_zonestatus(
        f"name: {ZONES[0]}\ntype: {kind}\nfiles: db\nserial: {serial}\nnodes: 12\n"
        "last loaded: Mon, 01 Dec 2025 10:00:00 GMT\nsecure: no\ndynamic: no\n"
    )


def dns(serial, kind):
    return {"running": True, "zones": {zone: zonestatus(serial, kind) for zone in ZONES}}


def vip(held, state):
    return {"vip": "192.168.10.111", "held": held, "interface": "eth0" if held else None,
            "instance": "VI_DNS", "state": state, "priority": 150 if held else 100,
            "since": 1764583200, "running": True}


def multi(returns, failed=()):
    """A minion's return event data of a multi-function job."""
    return {"return": returns, "success": {fun: fun not in failed for fun in returns},
            "retcode": {fun: int(fun in failed) for fun in returns}}


def single(ret, success=True):
    return {"return": ret, "success": success, "retcode": 0 if success else 1}


def healthy_answers():
    client, server = copy.deepcopy(CLIENT_NTP), copy.deepcopy(SERVER_NTP)
    return {
        "ping": {n: single(True) for n in NODES},
        "node": {
            n: multi({"grains.get": "2025-12-01T10:00:00+00:00", "chrony.status": server if n in LAN else client})
            for n in NODES
        },
        "lan": {
            "alpha": multi({"vip.status": vip(True, "MASTER"), "dnszone.status": dns(2025120101, "primary"),
                            "dhcpd_failover.status": failover("primary")}),
            "beta": multi({"vip.status": vip(False, "BACKUP"), "dnszone.status": dns(2025120101, "secondary"),
                           "dhcpd_failover.status": failover("secondary")}),
        },
    }


@pytest.fixture
def view():
    return runner._status_view(runner.inventory())


# --- the status object ------------------------------------------------------------------


def test_the_view_comes_from_the_inventory(view):
    assert view["nodes"] == NODES
    assert view["lanservices"] == LAN
    assert view["k3s_server"] == "delta"
    assert view["roles"]["psi"] == ["deployer"] and view["roles"]["zeta"] == ["compute"]


def test_healthy_cluster(view):
    last = {n: {"time": "2025-12-01T09:59:00+00:00", "result": True, "jid": "20251201095900000000"} for n in NODES}
    report = runner._status_report(view, healthy_answers(), highstates=last, k3s_note=NOTE,
                                   generated="2025-12-01T10:05:00+00:00")
    json.dumps(report)  # --out=json can print it
    assert set(report) >= {"generated", "nodes", "vip_holder", "dns_serials", "dhcp_failover", "ntp", "k3s"}
    assert list(report["nodes"]) == NODES
    assert report["nodes"]["alpha"] == {
        "up": True, "roles": ["lanservices"], "provisioned": "2025-12-01T10:00:00+00:00",
        "last_highstate": last["alpha"], "build": None,
    }
    assert report["vip_holder"] == "alpha"
    assert report["vip"]["state"] == {"alpha": "MASTER", "beta": "BACKUP"}
    assert report["dns_serials"] == {n: {ZONES[0]: 2025120101, ZONES[1]: 2025120101} for n in LAN}
    assert {n: (d["state"], d["partner_state"], d["role"]) for n, d in report["dhcp_failover"].items()} == {
        "alpha": ("normal", "normal", "primary"), "beta": ("normal", "normal", "secondary")}
    assert report["dhcp_failover"]["alpha"]["peer"] == "dhcp-failover"
    assert report["ntp"]["delta"]["synced"] is True and report["ntp"]["delta"]["reference"] == "192.168.10.6"
    assert isinstance(report["ntp"]["delta"]["offset"], float)
    assert report["ntp"]["alpha"]["reference"] == "local"
    assert report["k3s"] == NOTE
    assert report["problems"] == []


def test_a_node_that_does_not_answer_is_down_with_its_cached_marker(view):
    answers = healthy_answers()
    for job in answers.values():
        job.pop("zeta", None)
        job.pop("beta", None)
    report = runner._status_report(view, answers, cached={"zeta": "2025-11-30T08:00:00+00:00", "beta": None},
                                   k3s_note=NOTE)
    assert [n for n, v in report["nodes"].items() if not v["up"]] == ["beta", "zeta"]
    assert report["nodes"]["zeta"]["provisioned"] == "2025-11-30T08:00:00+00:00"  # the master's cached grain
    assert report["nodes"]["beta"]["provisioned"] is None
    assert report["ntp"]["zeta"] is None and report["dns_serials"]["beta"] is None
    assert report["dhcp_failover"]["beta"] is None
    assert report["vip_holder"] == "alpha"
    assert report["problems"] == ["beta does not answer", "zeta does not answer"]


def test_a_node_that_answers_ping_but_not_in_time_is_up_with_late_sections(view):
    answers = healthy_answers()
    del answers["node"]["gamma"], answers["lan"]["beta"]
    report = runner._status_report(view, answers, cached={"gamma": "2025-11-30T08:00:00+00:00"}, k3s_note=NOTE)
    assert report["nodes"]["gamma"]["up"] is True and report["nodes"]["beta"]["up"] is True
    assert report["nodes"]["gamma"]["provisioned"] == "2025-11-30T08:00:00+00:00"
    late = "no answer within the status timeout"
    assert report["ntp"]["gamma"] == {"error": late}
    assert report["dns_serials"]["beta"] == {"error": late} and report["dhcp_failover"]["beta"] == {"error": late}
    assert report["problems"] == [
        f"gamma: NTP: {late}", f"beta: DNS: {late}", f"beta: DHCP failover: {late}"]


def test_failures_are_reported_not_raised(view):
    answers = healthy_answers()
    trace = ("Traceback (most recent call last):\n  File \"x\", line 1\n"
             "salt.exceptions.CommandExecutionError: chronyc tracking failed: 506 Cannot talk to daemon")
    answers["node"]["gamma"] = multi({"grains.get": "", "chrony.status": trace}, failed=["chrony.status"])
    answers["lan"]["beta"] = multi(
        {"vip.status": vip(True, "MASTER"), "dnszone.status": dns(2025120100, "secondary"),
         "dhcpd_failover.status": {"dhcp-failover": dict(failover("secondary")["dhcp-failover"],
                                                         local_state="communications-interrupted")}})
    answers["node"]["delta"]["return"]["chrony.status"] = copy.deepcopy(UNSYNCED_NTP)
    report = runner._status_report(view, answers, k3s_note=NOTE)
    assert report["ntp"]["gamma"] == {"error": "chronyc tracking failed: 506 Cannot talk to daemon"}
    assert report["ntp"]["delta"]["synced"] is False
    assert report["nodes"]["gamma"]["provisioned"] is None
    assert report["dhcp_failover"]["beta"]["state"] == "communications-interrupted"
    unsynced = f"delta: NTP not synchronised (reference {UNSYNCED_NTP['reference']})"
    assert report["problems"] == [
        unsynced,
        "gamma is not provisioned",
        "gamma: NTP: chronyc tracking failed: 506 Cannot talk to daemon",
        "the VIP 192.168.10.111 is held by alpha and beta",
        f"DNS zone {ZONES[0]}: serials differ (alpha 2025120101, beta 2025120100)",
        f"DNS zone {ZONES[1]}: serials differ (alpha 2025120101, beta 2025120100)",
        "beta: DHCP failover communications-interrupted",
    ]


def test_k3s_nodes_and_readiness_or_why_absent(view):
    answers = healthy_answers()
    assert runner._status_report(view, answers)["k3s"] == "k3s on delta: no answer within the status timeout"
    down = {key: {n: v for n, v in job.items() if n != "delta"} for key, job in answers.items()}
    assert runner._status_report(view, down)["k3s"] == "k3s server delta does not answer"
    answers["k3s"] = {"delta": single("ERROR: /usr/local/bin/k3s is not installed: apply the k3s state first", False)}
    assert runner._status_report(view, answers)["k3s"] == (
        "k3s on delta: /usr/local/bin/k3s is not installed: apply the k3s state first")
    answers["k3s"] = {"delta": single(k3s.parse_nodes(fixture("k3s", "nodes-degraded.json")))}
    report = runner._status_report(view, answers)
    assert report["k3s"]["server"] == "delta"
    assert sorted(report["k3s"]["nodes"]) == ["delta", "epsilon", "gamma", "zeta"]
    not_ready = [n for n, v in report["k3s"]["nodes"].items() if not v["ready"]]
    assert not_ready and all(f"k3s node {n} is {report['k3s']['nodes'][n]['status']}" in report["problems"]
                             for n in not_ready)
    answers["k3s"] = {"delta": single(k3s.parse_nodes(fixture("k3s", "nodes-all-ready.json")))}
    report = runner._status_report(view, answers)
    assert all(v["ready"] for v in report["k3s"]["nodes"].values()) and report["problems"] == []


# --- the table --------------------------------------------------------------------------


def test_table_for_people(view):
    answers = healthy_answers()
    for job in answers.values():
        job.pop("zeta", None)
    last = {"alpha": {"time": "2025-12-01T09:59:00+00:00", "result": True, "jid": "1"},
            "delta": {"time": "2025-12-01T09:58:00+00:00", "result": False, "jid": "2"}}
    report = runner._status_report(view, answers, highstates=last, k3s_note=NOTE,
                                   builds={"gamma": {"state": "building", "since": "2025-12-01T10:04:00+00:00"}},
                                   generated="2025-12-01T10:05:00+00:00")
    table = runner._status_table(report)
    lines = table.splitlines()
    assert lines[0] == "cluster status at 2025-12-01T10:05:00+00:00"
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE"))
    rows = {line.split()[0]: line for line in lines[header + 1: header + 1 + len(NODES)]}
    assert list(rows) == NODES
    assert rows["zeta"].split()[1] == "DOWN" and all(rows[n].split()[1] == "up" for n in NODES if n != "zeta")
    assert "2025-12-01T09:59:00+00:00 ok" in rows["alpha"] and "2025-12-01T09:58:00+00:00 FAILED" in rows["delta"]
    assert "[building]" in rows["gamma"]
    assert "synced" in rows["delta"] and "(192.168.10.6)" in rows["delta"] and "(local)" in rows["alpha"]
    column = lines[header].index("LAST HIGHSTATE")  # aligned columns
    assert rows["alpha"].index("2025-12-01T09:59") == rows["delta"].index("2025-12-01T09:58") == column
    assert rows["zeta"][column:].startswith("- ")
    assert "VIP 192.168.10.111: held by alpha (alpha MASTER, beta BACKUP)" in lines
    assert f"DNS {ZONES[0]}: alpha 2025120101, beta 2025120101" in lines
    assert "DHCP failover: alpha normal (primary, partner normal); beta normal (secondary, partner normal)" in lines
    assert f"k3s: {NOTE}" in lines
    assert lines[lines.index("problems:"):] == [
        "problems:", "  - zeta does not answer", "  - delta: last highstate failed (2025-12-01T09:58:00+00:00)"]
    answers = healthy_answers()
    for job in answers.values():
        job.pop("beta", None)
    lines = runner._status_table(runner._status_report(view, answers, k3s_note=NOTE)).splitlines()
    assert "VIP 192.168.10.111: held by alpha (alpha MASTER, beta -)" in lines
    assert f"DNS {ZONES[0]}: alpha 2025120101" in lines and "DNS on beta: down" in lines
    assert "DHCP failover: alpha normal (primary, partner normal); beta down" in lines


# --- one batch, one deadline ------------------------------------------------------------


class FakeClient:
    """LocalClient: run_job publishes, event.get_event hands out the answers of the minions that are up."""

    def __init__(self, answers, up):
        self.answers, self.up = answers, set(up)
        self.published, self.queue, self.destroyed = [], [], False
        self.event = self

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.destroyed = True

    def run_job(self, tgt, fun, arg=(), tgt_type="glob", timeout=None, listen=False, **kwargs):
        assert tgt_type == "list" and listen is True and timeout and timeout <= 10
        jid = f"2025120110050000{len(self.published):04d}"
        self.published.append((list(tgt), fun, list(arg)))
        self.queue.append({"tag": "salt/job/20990101000000000000/ret/alpha", "data": {}})  # someone else's job
        self.queue.append({"tag": f"salt/job/{jid}/new", "data": {"minions": list(tgt)}})
        assert isinstance(fun, str), "a multi-function job: Salt's saltutil.is_running fails on it"
        key = {"test.ping": "ping", "k3s.nodes": "k3s"}.get(fun) or (
            "lan" if fun in ("vip.status", "dnszone.status", "dhcpd_failover.status") else "node")
        for minion in tgt:
            if minion in self.up and minion in self.answers.get(key, {}):
                data = self.answers[key][minion]
                if key in ("node", "lan"):  # the canned multi-function answer, one function of it
                    data = {"return": data["return"][fun], "success": data["success"][fun]}
                self.queue.append({"tag": f"salt/job/{jid}/ret/{minion}", "data": data})
        return {"jid": jid, "minions": list(tgt)}

    def get_event(self, wait=5, tag="", match_type=None, full=False, auto_reconnect=False):
        assert full and tag == "salt/job/" and match_type == "startswith"
        if self.queue:
            return self.queue.pop(0)
        time.sleep(wait)
        return None


def run_status(monkeypatch, client, **kwargs):
    monkeypatch.setattr(runner.salt.client, "get_local_client", lambda *a, **k: client)
    started = time.monotonic()
    out = runner.status(**kwargs)
    return out, time.monotonic() - started


def test_status_is_one_batch_of_list_targeted_jobs_and_shows_a_down_node_without_waiting(monkeypatch, opts):
    cache = salt.cache.factory(opts)
    cache.store("grains", "zeta", {"id": "zeta", "cluster_provisioned": "2025-11-30T08:00:00+00:00"})
    client = FakeClient(healthy_answers(), up=[n for n in NODES if n != "zeta"])
    report, took = run_status(monkeypatch, client, timeout=1.5, table=False)
    assert client.destroyed
    assert client.published == [
        (NODES, "test.ping", []),
        (NODES, "grains.get", ["cluster_provisioned"]),
        (NODES, "chrony.status", []),
        (LAN, "vip.status", []),
        (LAN, "dnszone.status", []),
        (LAN, "dhcpd_failover.status", []),
    ]  # one function per job; no k3s job: there is no k3s artifact on the fileserver
    assert 1.4 < took < 4, took  # waited the deadline for zeta, not longer
    assert {n: v["up"] for n, v in report["nodes"].items()} == {n: n != "zeta" for n in NODES}
    assert report["nodes"]["zeta"]["provisioned"] == "2025-11-30T08:00:00+00:00"
    assert report["k3s"].startswith("k3s not installed on delta (no artifact")
    assert report["vip_holder"] == "alpha" and report["problems"] == ["zeta does not answer"]


def test_a_node_without_connection_to_the_master_is_awaited_only_a_moment(monkeypatch):
    monkeypatch.setattr(runner, "_status_connected", lambda nodes: {n for n in nodes if n != "zeta"})
    client = FakeClient(healthy_answers(), up=[n for n in NODES if n != "zeta"])
    report, took = run_status(monkeypatch, client, timeout=5, table=False)
    assert runner.STATUS_GRACE - 0.1 < took < runner.STATUS_GRACE + 1.5, took
    assert [n for n, v in report["nodes"].items() if not v["up"]] == ["zeta"]


def test_a_connected_node_that_does_not_answer_is_awaited_until_the_deadline(monkeypatch):
    monkeypatch.setattr(runner, "_status_connected", lambda nodes: set(nodes))  # e.g. a power loss
    client = FakeClient(healthy_answers(), up=[n for n in NODES if n != "zeta"])
    report, took = run_status(monkeypatch, client, timeout=3, table=False)
    assert 2.9 < took < 4.5, took
    assert [n for n, v in report["nodes"].items() if not v["up"]] == ["zeta"]


def test_status_returns_as_soon_as_everyone_answered(monkeypatch):
    client = FakeClient(healthy_answers(), up=NODES)
    report, took = run_status(monkeypatch, client, timeout=5, table=False)
    assert took < 2, took
    assert all(v["up"] for v in report["nodes"].values()) and report["problems"] == []


def test_status_queries_k3s_on_the_server_when_the_artifact_exists(monkeypatch, opts, tmp_path):
    (tmp_path / "k3s" / "files" / "artifacts").mkdir(parents=True)
    (tmp_path / "k3s" / "files" / "artifacts" / "k3s").write_text("")
    opts["file_roots"] = {"base": [str(REPO / "salt"), str(tmp_path)]}
    answers = healthy_answers()
    answers["k3s"] = {"delta": single(k3s.parse_nodes(fixture("k3s", "nodes-all-ready.json")))}
    client = FakeClient(answers, up=NODES)
    report, _ = run_status(monkeypatch, client, timeout=2, table=False)
    assert client.published[-1] == (["delta"], "k3s.nodes", [])
    assert set(report["k3s"]["nodes"]) == {"delta", "epsilon", "gamma", "zeta"}


def test_default_output_is_the_table_and_json_is_the_object(monkeypatch, opts):
    table, _ = run_status(monkeypatch, FakeClient(healthy_answers(), up=NODES), timeout=2)
    assert isinstance(table, str) and table.startswith("cluster status at ") and "problems: none" in table
    opts["output"] = "json"
    report, _ = run_status(monkeypatch, FakeClient(healthy_answers(), up=NODES), timeout=2)
    assert isinstance(report, dict) and report["vip_holder"] == "alpha"


# --- last highstate from the job cache --------------------------------------------------


@pytest.mark.parametrize(
    ("fun", "args", "counts"),
    [
        ("state.highstate", [], True),
        ("state.apply", [], True),
        ("state.apply", [{"queue": True, "__kwarg__": True}], True),
        ("state.highstate", [{"test": True, "__kwarg__": True}], False),
        ("state.apply", ["test=True"], False),
        ("state.apply", ["bind"], False),
        ("state.apply", [{"mods": "bind", "__kwarg__": True}], False),
        ("state.sls", ["bind"], False),
        ("state.apply", None, False),  # unknown arguments: maybe mods
        ("state.highstate", None, True),
        ("test.ping", [], False),
    ],
)
def test_what_counts_as_a_highstate(fun, args, counts):
    assert runner._status_is_highstate(fun, args) is counts


OK_STATES = {"file_|-a_|-/a_|-managed": {"result": True}, "pkg_|-b_|-b_|-installed": {"result": True}}
FAILED_STATES = {"file_|-a_|-/a_|-managed": {"result": True}, "pkg_|-b_|-b_|-installed": {"result": False}}


def ssh(states):
    """What salt-ssh stores as a minion's return (its wrapper around the state returns)."""
    return {"jid": "20251201095959000000", "return": states, "retcode": 0, "id": "x", "fun": "state.pkg",
            "fun_args": ["/var/tmp/salt_state.tgz", "test=None"], "out": "highstate"}


# (jid, fun, args, {minion: return}, by salt-ssh) oldest first
JOBS = [
    ("20251201080000000000", "state.highstate", [], {"alpha": OK_STATES, "beta": OK_STATES}, False),
    ("20251201090000000000", "state.apply", [], {"beta": FAILED_STATES}, False),
    ("20251201093000000000", "state.apply", ["bind"], {"alpha": FAILED_STATES}, False),
    ("20251201094000000000", "state.highstate", [{"test": True, "__kwarg__": True}], {"alpha": {"x": {"result": None}}},
     False),
    ("20251201095000000000", "test.ping", [], {"alpha": True, "beta": True}, False),
    ("20251201095500000000", "state.apply", ["bootstrap.minion"], {"alpha": ssh(OK_STATES), "beta": ssh(OK_STATES)},
     True),
    ("20251201095700000000", "state.apply", [], {"psi": ssh(OK_STATES)}, True),
]


def expect():
    return {
        "alpha": {"time": "2025-12-01T08:00:00+00:00", "result": True, "jid": "20251201080000000000", "changes": 0},
        "beta": {"time": "2025-12-01T09:00:00+00:00", "result": False, "jid": "20251201090000000000", "changes": 0},
        "psi": {"time": "2025-12-01T09:57:00+00:00", "result": True, "jid": "20251201095700000000", "changes": 0},
    }


def store(save_load, returner):
    """Write JOBS the way the master (or salt-ssh) does, through a job cache returner."""
    for jid, fun, args, rets, by_ssh in JOBS:
        save_load(jid, {"jid": jid, "fun": fun, "arg": args, "tgt": list(rets), "tgt_type": "list"})
        for minion, ret in rets.items():
            doc = {"jid": jid, "id": minion, "fun": fun, "return": ret}
            returner(doc if by_ssh else dict(doc, fun_args=args, success=True))


def test_last_highstate_from_the_local_job_cache(opts):
    returners = salt.loader.returners(opts, {})

    def save_load(jid, load):
        returners["local_cache.prep_jid"](passed_jid=jid)
        returners["local_cache.save_load"](jid, load, minions=load["tgt"])

    store(save_load, returners["local_cache.returner"])
    assert runner._status_highstates(NODES) == expect()
    # bounded: only the newest jobs are read (here no highstate of alpha or beta among them)
    assert set(runner._status_highstates_local(NODES, max_jobs=4)) == {"psi"}


class FakeRedis:
    """The few Redis commands saltext-redis's returner and the status use, in memory."""

    store = {}

    def __init__(self, **kwargs):
        self.kwargs, self.ops = kwargs, []

    def pipeline(self, transaction=True):
        return self

    def execute(self):
        out, self.ops = [op() for op in self.ops], []
        return out

    def hset(self, key, field, value):
        self.ops.append(lambda: self.store.setdefault(key, {}).__setitem__(field, value))

    def hget(self, key, field):
        self.ops.append(lambda: self.store.get(key, {}).get(field))

    def expire(self, key, ttl):
        self.ops.append(lambda: True)

    def set(self, key, value, ex=None):
        self.ops.append(lambda: self.store.__setitem__(key, value))

    def setex(self, key, ttl, value):
        self.store[key] = value

    def sadd(self, key, value):
        self.ops.append(lambda: self.store.setdefault(key, set()).add(value))

    def get(self, key):
        self.ops.append(lambda: self.store.get(key))

    def mget(self, keys):
        return [self.store.get(k) for k in keys]

    def scan_iter(self, match=None, count=None):
        return iter([k for k in self.store if fnmatch.fnmatchcase(k, match or "*")])

    def close(self):
        pass


def test_last_highstate_from_the_redis_job_cache(opts, monkeypatch):
    """Jobs written by the master's job cache returner (saltext-redis underneath), read back by the status."""
    redis = pytest.importorskip("redis")
    monkeypatch.setattr(redis, "StrictRedis", FakeRedis)
    monkeypatch.setattr(redis, "Redis", FakeRedis)
    FakeRedis.store = {}
    opts.update({"master_job_cache": "redis_jobcache", "returner_dirs": [str(REPO / "_returners")],
                 "redis.host": "127.0.0.1", "redis.port": 6379, "redis.db": "0"})
    returners = salt.loader.returners(opts, {"config.option": lambda key, default=None, **_: opts.get(key, default)})
    store(returners["redis_jobcache.save_load"], returners["redis_jobcache.returner"])
    assert "alpha:state.highstate" in FakeRedis.store and "ret:20251201080000000000" in FakeRedis.store
    assert FakeRedis.store["alpha:state.apply"] == "20251201095500000000"  # the index shows salt-ssh's bootstrap
    assert runner._status_highstates(NODES) == expect()
    # the index alone (the newest state.highstate/state.apply of the node was a highstate): no scan
    monkeypatch.setattr(FakeRedis, "scan_iter", None)
    assert runner._status_highstates(["psi"]) == {"psi": expect()["psi"]}


def test_a_reflashed_node_without_rebuild_auto_shows_as_waiting_for_cluster_rebuild(view):
    """cluster.dhcp_lease's waiting record: shown (and a problem) while the node is gone, dropped
    once its minion answers again (the lease was a renewal after all)."""
    waiting = {"state": "waiting", "time": "2025-12-01T10:04:00+00:00", "mac": "b8:27:eb:00:00:24",
               "address": "192.168.10.24", "server": "alpha"}
    answers = healthy_answers()
    for job in answers.values():
        job.pop("zeta", None)
    report = runner._status_report(view, answers, builds={"zeta": waiting}, k3s_note=NOTE)
    assert report["nodes"]["zeta"]["build"] == waiting
    assert ("zeta was re-flashed (DHCP lease for b8:27:eb:00:00:24 at 2025-12-01T10:04:00+00:00 from alpha): "
            "waiting for salt-run cluster.rebuild zeta") in report["problems"]
    assert "[waiting]" in next(line for line in runner._status_table(report).splitlines() if line.startswith("zeta "))
    back = runner._status_report(view, healthy_answers(), builds={"zeta": waiting}, k3s_note=NOTE)
    assert back["nodes"]["zeta"]["build"] is None and not any("re-flashed" in p for p in back["problems"])
