"""
statuspage.publish / statuspage.request (_runners/statuspage.py): the reactor only leaves a
mark; the scheduled publisher publishes when asked or when its last publish is old, and one
publisher at a time folds the calls that arrive meanwhile into one more round.
"""

import json
import os
import time

import pytest

from tests.conftest import REPO, load_by_path

statuspage = load_by_path("statuspage_runner", REPO / "_runners" / "statuspage.py")


@pytest.fixture
def built(tmp_path, monkeypatch):
    calls = []

    def build():
        calls.append(time.time())
        return {"made": "now", "cluster": {"nodes": {}}, "history": []}

    monkeypatch.setattr(statuspage, "build", build)
    return calls


@pytest.fixture
def configure_loader_modules(tmp_path):
    return {statuspage: {"__opts__": {"cluster_status_dir": str(tmp_path / "feed")}, "__context__": {}}}


def test_the_scheduler_publishes_only_when_asked_or_when_old(built, tmp_path):
    feed = tmp_path / "feed" / "status.json"
    assert statuspage.publish(every=20)["published"] is True  # nothing published yet
    assert json.loads(feed.read_text())["cluster"] == {"nodes": {}} and len(built) == 1
    assert statuspage.publish(every=20)["published"] is False  # fresh, nobody asked
    assert statuspage.request() == {"requested": True}
    assert statuspage.publish(every=20)["published"] is True and len(built) == 2
    assert statuspage.publish(every=20)["published"] is False  # the request was used up
    old = time.time() - 30
    os.utime(feed, (old, old))
    assert statuspage.publish(every=20)["published"] is True and len(built) == 3
    assert statuspage.publish()["published"] is True and len(built) == 4  # by hand: always


def test_a_call_while_one_runs_asks_it_for_one_more_round(built, tmp_path, monkeypatch):
    import fcntl  # pylint: disable=import-outside-toplevel

    folder = tmp_path / "feed"
    folder.mkdir()
    with open(folder / ".lock", "w", encoding="utf-8") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        out = statuspage.publish()
        assert out["published"] is False and (folder / ".again").exists() and built == []
