"""
The pair's collector (_modules/statuspage.py): the page's data from this node's own view,
its peer's, and the deployer's feed, and what it remembers between runs (the last feed, the
last contact, since when the deployer is unreachable). Every document it writes must
validate against the page's schema (salt/statuspage/files/status.schema.json).
"""

import datetime
import json

import jsonschema
import pytest

from tests.conftest import REPO, load_by_path

statuspage = load_by_path("statuspage_collector", REPO / "_modules" / "statuspage.py")
SCHEMA = json.loads((REPO / "salt" / "statuspage" / "files" / "status.schema.json").read_text())
T0 = datetime.datetime(2026, 12, 1, 18, 50, 0, tzinfo=datetime.UTC)
VIP = "10.77.0.111"


def own(held, serial=2026120101):
    return {"made": T0.isoformat(), "vip_held": held, "vip_state": "MASTER" if held else "BACKUP",
            "dns_serials": {"lab.b3rry.clust0r": serial},
            "dhcp_failover": {"peer": "dhcp-failover", "state": "normal", "partner_state": "normal",
                              "role": "primary", "since": None},
            "ntp": {"synced": True, "offset": 0.00012, "reference": "beta", "stratum": 10}}


def feed(generated):
    node = {"up": True, "roles": ["compute"], "provisioned": "2026-12-01T18:40:00+00:00",
            "last_highstate": {"time": "2026-12-01T18:41:00+00:00", "result": True, "jid": "20261201184100000000",
                               "changes": 0}, "build": None}
    cluster = {"generated": generated.isoformat(), "nodes": {"gamma": node}, "vip_holder": "alpha",
               "vip": {"address": VIP, "state": {"alpha": "MASTER", "beta": "BACKUP"}},
               "dns_serials": {"alpha": {"lab.b3rry.clust0r": 2026120101}}, "dhcp_failover": {"alpha": None},
               "ntp": {"gamma": None}, "k3s": "no k3s", "problems": []}
    return {"made": generated.isoformat(), "cluster": cluster, "history": []}


def merge(feed_doc, memory, now, peer_view=None):
    return statuspage.merge("alpha", own(True), "beta", peer_view or own(False), feed_doc, "psi", memory, now, VIP)


def test_fresh_master_data_is_not_stale_and_names_the_vip_holder():
    doc, memory = merge(feed(T0), {}, T0 + datetime.timedelta(seconds=5))
    jsonschema.validate(doc, SCHEMA)
    assert doc["deployer"] == {"name": "psi", "reachable": True, "last_contact": "2026-12-01T18:50:05+00:00",
                               "unreachable_since": None}
    assert doc["age"] == 5.0 and doc["stale"] is False
    assert doc["vip"] == {"address": VIP, "holder": "alpha"} and set(doc["pair"]) == {"alpha", "beta"}
    assert doc["cluster"]["nodes"]["gamma"]["up"] is True and memory["feed"]["cluster"] == doc["cluster"]


def test_old_master_data_is_stale_even_when_the_deployer_answers():
    doc, _ = merge(feed(T0), {}, T0 + datetime.timedelta(seconds=61))
    assert doc["stale"] is True and doc["deployer"]["reachable"] is True


def test_deployer_down_keeps_the_last_data_and_the_first_failure_time():
    _, memory = merge(feed(T0), {}, T0 + datetime.timedelta(seconds=5))
    down1, memory = merge(None, memory, T0 + datetime.timedelta(seconds=15))
    down2, memory = merge(None, memory, T0 + datetime.timedelta(seconds=25))
    for doc in (down1, down2):
        jsonschema.validate(doc, SCHEMA)
        assert doc["stale"] is True and doc["deployer"]["reachable"] is False
        assert doc["deployer"]["unreachable_since"] == "2026-12-01T18:50:15+00:00"
        assert doc["deployer"]["last_contact"] == "2026-12-01T18:50:05+00:00"
        assert doc["cluster"]["nodes"]["gamma"]["up"] is True  # the last known data, shown as stale
    assert down2["age"] == 25.0
    back, _ = merge(feed(T0 + datetime.timedelta(seconds=30)), memory, T0 + datetime.timedelta(seconds=31))
    assert back["deployer"]["unreachable_since"] is None and back["stale"] is False


def test_no_master_data_ever():
    doc, _ = merge(None, {}, T0)
    jsonschema.validate(doc, SCHEMA)
    assert doc["cluster"] is None and doc["age"] is None and doc["stale"] is True and doc["history"] == []


@pytest.mark.parametrize(
    ("peer_view", "holder"),
    [({"error": "beta does not answer: timed out"}, "alpha"), (own(True), None)],
)
def test_vip_holder_from_the_pair_itself(peer_view, holder):
    doc, _ = merge(None, {}, T0, peer_view=peer_view)
    jsonschema.validate(doc, SCHEMA)
    assert doc["vip"]["holder"] == holder  # both claiming it: nobody is named
