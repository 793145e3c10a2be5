"""
status.schema.json (salt/statuspage/files/, issue 13): the contract between the collector that
writes status.json on the lanservices nodes and the status page that reads it. It accepts the
page's test fixtures (tests/functional/statuspage/) and rejects a wrong type or a missing key.
"""

import copy
import json

import jsonschema
import pytest

from tests.conftest import REPO

SCHEMA = json.loads((REPO / "salt" / "statuspage" / "files" / "status.schema.json").read_text())
FIXTURES = sorted((REPO / "tests" / "functional" / "statuspage").glob("*.json"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def healthy():
    return json.loads((REPO / "tests" / "functional" / "statuspage" / "healthy.json").read_text())


def errors(doc):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(doc)]


def test_schema_is_draft_2020_12():
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_there_are_fixtures():
    assert {path.stem for path in FIXTURES} >= {"healthy", "gamma-down", "deployer-down"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda path: path.stem)
def test_fixture_is_valid(path):
    assert errors(json.loads(path.read_text())) == []


def _set(doc, where, value):
    *parents, last = where
    for key in parents:
        doc = doc[key]
    doc[last] = value


def _delete(doc, where):
    *parents, last = where
    for key in parents:
        doc = doc[key]
    del doc[last]


NOT_ACCEPTED = {
    # wrong types
    "schema version 2": (("schema",), 2),
    "made not a time": (("made",), "18:50:00"),
    "made without offset": (("made",), "2026-12-01T18:50:00"),
    "stale as a string": (("stale",), "false"),
    "age as a string": (("age",), "3"),
    "reachable as a string": (("deployer", "reachable"), "yes"),
    "node up as 1": (("cluster", "nodes", "gamma", "up"), 1),
    "roles as a string": (("cluster", "nodes", "gamma", "roles"), "compute"),
    "highstate result as a string": (("cluster", "nodes", "gamma", "last_highstate", "result"), "ok"),
    "highstate changes negative": (("cluster", "nodes", "gamma", "last_highstate", "changes"), -1),
    "unknown build state": (("cluster", "nodes", "gamma", "build"), {"state": "queued", "since": None}),
    "building without since": (("cluster", "nodes", "gamma", "build"), {"state": "building"}),
    "waiting without its lease": (("cluster", "nodes", "gamma", "build"), {"state": "waiting", "time": None}),
    "dns serial as a string": (("cluster", "dns_serials", "alpha", "cluster.lan"), "2026120103"),
    "dhcp state as a number": (("cluster", "dhcp_failover", "alpha", "state"), 2),
    "ntp synced as a string": (("cluster", "ntp", "gamma", "synced"), "yes"),
    "ntp entry as a string": (("cluster", "ntp", "gamma"), "synced"),
    "k3s as a list": (("cluster", "k3s"), []),
    "k3s node ready as a string": (("cluster", "k3s", "nodes", "gamma", "ready"), "True"),
    "problems as a string": (("cluster", "problems"), "none"),
    "history as an object": (("history",), {}),
    "run kind unknown": (("history", 0, "kind"), "state.sls"),
    "run result as a string": (("history", 0, "result"), "True"),
    "run changes as a string": (("history", 0, "changes"), "0"),
    "run jid not a jid": (("history", 0, "jid"), "gamma"),
    "failed state without comment": (("history", 0, "failed"), [{"id": "x", "function": "file.managed", "name": "/x"}]),
    "changed keys as a string": (("history", 0, "changed"), [{"id": "x", "function": "f", "name": "n", "keys": "diff"}]),
    "pair node as null": (("pair", "beta"), None),
    "pair vip_held as a string": (("pair", "beta", "vip_held"), "no"),
    "pair dns error not a string": (("pair", "beta", "dns_serials"), {"error": 3}),
    "vip holder as a list": (("vip", "holder"), ["alpha"]),
    # the rules between fields
    "reachable with unreachable_since": (("deployer", "unreachable_since"), "2026-12-01T18:47:32+00:00"),
    "old data not stale": (("age",), 61.0),
}

REQUIRED = [
    ("schema",), ("made",), ("served_by",), ("deployer",), ("age",), ("stale",), ("cluster",), ("history",),
    ("pair",), ("vip",), ("deployer", "reachable"), ("deployer", "last_contact"), ("cluster", "generated"),
    ("cluster", "nodes", "gamma", "up"), ("cluster", "nodes", "gamma", "build"), ("cluster", "vip_holder"),
    ("cluster", "problems"), ("cluster", "k3s"), ("history", 0, "failed"), ("history", 0, "duration"),
    ("pair", "alpha", "vip_held"), ("pair", "alpha", "dns_serials"), ("vip", "holder"),
]


def test_a_node_waiting_for_cluster_rebuild_is_accepted():
    doc = healthy()
    doc["cluster"]["nodes"]["gamma"]["build"] = {"state": "waiting", "time": "2026-12-01T18:47:32+00:00",
                                                 "mac": "b8:27:eb:00:00:23", "address": "192.168.10.23", "server": "alpha"}
    assert errors(doc) == []


@pytest.mark.parametrize(("where", "value"), NOT_ACCEPTED.values(), ids=NOT_ACCEPTED.keys())
def test_wrong_value_is_rejected(where, value):
    doc = healthy()
    _set(doc, where, value)
    assert errors(doc), f"accepted {where} = {value!r}"


@pytest.mark.parametrize("where", REQUIRED, ids=lambda where: ".".join(map(str, where)))
def test_missing_key_is_rejected(where):
    doc = healthy()
    _delete(doc, where)
    assert errors(doc), f"accepted without {where}"


def test_deployer_unreachable_must_be_stale():
    doc = json.loads((REPO / "tests" / "functional" / "statuspage" / "deployer-down.json").read_text())
    doc["stale"] = False
    assert errors(doc)


def test_no_master_data_yet_is_valid_and_has_no_age():
    doc = healthy()
    doc.update(cluster=None, age=None, history=[])
    doc["deployer"].update(reachable=False, last_contact=None, unreachable_since=doc["made"])
    doc["stale"] = True
    assert errors(doc) == []
    doc["age"] = 3.0
    assert errors(doc)


def test_open_for_new_keys():
    doc = copy.deepcopy(healthy())
    doc["leds"] = {"alpha": "green"}
    doc["cluster"]["nodes"]["gamma"]["temperature"] = 51.2
    doc["history"][0]["user"] = "admin"
    assert errors(doc) == []


def test_variants_of_the_runner_are_valid():
    """What salt-run cluster.status also returns: errors, down nodes, several failover peers, k3s as text."""
    doc = healthy()
    cluster = doc["cluster"]
    cluster["dns_serials"] = {"alpha": {"error": "rndc: connect failed"}, "beta": None}
    cluster["dhcp_failover"] = {
        "alpha": {"dhcp-failover": {"state": "normal", "partner_state": "normal", "role": "primary", "since": None},
                  "dhcp-failover-2": {"state": "recover", "partner_state": None, "role": None, "since": None}},
        "beta": {"error": "no failover peer ({})"},
    }
    cluster["ntp"]["gamma"] = {"error": "chronyc: 506 Cannot talk to daemon"}
    cluster["ntp"]["delta"] = {"synced": False, "offset": None, "reference": None, "stratum": None}
    cluster["k3s"] = "k3s server delta does not answer"
    cluster["nodes"]["gamma"]["build"] = {"state": "failed", "time": "2026-12-01T18:40:00+00:00"}
    cluster["vip_holder"] = None
    del cluster["seconds"]
    doc["pair"]["alpha"] = {"error": "no answer from alpha"}
    doc["vip"]["holder"] = None
    assert errors(doc) == []
