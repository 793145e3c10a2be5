"""
The live status page (salt/statuspage/files/index.html, issue 13) in a real headless chromium:
the page and a fixture status.json served by Python's http.server from a temporary directory,
looked at through tests/browser.py as a person would (names, states, banners, the run history).

Fixtures (tests/functional/statuspage/): a healthy 7-node cluster; gamma down after a failed
highstate while epsilon is rebuilding; the deployer (and alpha) unreachable. Their times are moved
to now when served, so that "fresh" is fresh whatever the date of the test.
"""

import datetime
import functools
import http.server
import json
import os
import pathlib
import re
import shutil
import threading

import pytest

from tests.conftest import REPO

try:
    from tests import browser as web
except ImportError as exc:  # selenium missing
    web, MISSING = None, f"selenium cannot be imported ({exc})"
else:
    MISSING = web.missing()

PAGE = REPO / "salt" / "statuspage" / "files" / "index.html"
FIXTURES = pathlib.Path(__file__).parent / "statuspage"
NODES = ["alpha", "beta", "psi", "delta", "epsilon", "gamma", "zeta"]
FAILED_JID = "20261201184501123456"
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def read_fixture(name):
    return json.loads((FIXTURES / f"{name}.json").read_text())


def shifted(doc, delta):
    """doc with every ISO 8601 time moved by delta."""
    if isinstance(doc, dict):
        return {key: shifted(value, delta) for key, value in doc.items()}
    if isinstance(doc, list):
        return [shifted(value, delta) for value in doc]
    if isinstance(doc, str) and ISO.match(doc):
        return (datetime.datetime.fromisoformat(doc) + delta).isoformat()
    return doc


def fresh(doc):
    """doc as if its status.json had been written just now."""
    made = datetime.datetime.fromisoformat(doc["made"])
    return shifted(doc, datetime.datetime.now(datetime.UTC).replace(microsecond=0) - made)


class Site:
    """A directory served over HTTP on 127.0.0.1: index.html and the status.json of publish()."""

    def __init__(self, root):
        self.root = root
        shutil.copy(PAGE, root / "index.html")
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        self.thread = threading.Thread(target=self.server.serve_forever, name="statuspage-http", daemon=True)
        self.thread.start()

    def publish(self, doc):
        """Replace status.json at once (as the collector does: a new file renamed over the old)."""
        tmp = self.root / "status.json.tmp"
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, self.root / "status.json")

    def stop(self):
        if self.thread.is_alive():
            self.server.shutdown()
            self.thread.join()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@pytest.fixture(scope="module")
def driver():
    if MISSING:
        if os.geteuid() == 0:  # CI runs as root: a missing browser is a broken test host, not a skip
            pytest.fail(f"no browser for the status page tests: {MISSING} (run `make host-packages venv`)")
        pytest.skip(MISSING)
    with web.browser() as drv:
        yield drv


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    served = Site(root)
    yield served
    served.stop()


def load(driver, site, name):
    site.publish(fresh(read_fixture(name)))
    return web.open_status_page(driver, site.url)


def test_healthy_cluster(driver, site):
    cold = load(driver, site, "healthy")  # the browser's first page: its renderer starts too
    seconds = web.open_status_page(driver, site.url)
    print(f"status page load time: {seconds * 1000:.0f} ms (first load of the browser: {cold * 1000:.0f} ms)")
    assert seconds < 1.0
    assert driver.title == "rpi cluster status"
    age = driver.find_element("id", "age").text
    assert re.fullmatch(r"\d+ s", age)
    web.wait_until(lambda: driver.find_element("id", "age").text != age, timeout=3)  # it counts on
    assert web.node_names(driver) == NODES
    assert {name: web.node_state(driver, name) for name in NODES} == dict.fromkeys(NODES, "up")
    assert web.vip_holder(driver) == "alpha"
    assert web.stale_banner(driver) is None
    assert web.fetch_error(driver) is None
    runs = web.history_rows(driver)
    assert {(r["jid"], r["node"]) for r in runs if r["jid"] == FAILED_JID} == {(FAILED_JID, n) for n in NODES}
    assert {r["result"] for r in runs} == {"ok"}
    assert driver.find_element("id", "problems").text == "none"


def test_down_node_rebuilding_node_and_failed_highstate(driver, site, tmp_path):
    load(driver, site, "gamma-down")
    assert web.node_state(driver, "gamma") == "DOWN"
    assert web.node_state(driver, "epsilon") == "rebuilding"
    assert web.node_state(driver, "delta") == "up"
    assert "FAILED" in driver.find_element("css selector", '#nodes tr[data-node="gamma"] .highstate').text
    failed = [r for r in web.history_rows(driver) if r["result"] == "FAILED"]
    assert failed == [{"jid": FAILED_JID, "node": "gamma", "kind": "highstate", "result": "FAILED"}]
    details = web.open_run(driver, FAILED_JID, "gamma")
    assert "mpich-hosts-file-managed" in details
    assert "/etc/mpich/hosts" in details
    assert "No space left on device" in details
    assert "distcc-hosts-file-managed" in details  # a changed state, with its changed keys
    assert "gamma does not answer" in driver.find_element("id", "problems").text
    shot = web.screenshot(driver, tmp_path / "statuspage-gamma-down.png")
    print(f"screenshot: {shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_deployer_unreachable(driver, site):
    load(driver, site, "deployer-down")
    banner = web.stale_banner(driver)
    assert banner is not None and banner.startswith("STALE: deployer psi unreachable since ")
    assert "last contact" in banner
    assert web.node_names(driver) == NODES  # the last known data is still shown
    assert web.vip_holder(driver) == "beta"  # the pair's own knowledge, not the deployer's last "alpha"
    dhcp = driver.find_element("id", "dhcp").text
    assert "communications-interrupted" in dhcp and "alpha: not answering" in dhcp


def test_no_data_from_the_deployer_yet(driver, site):
    doc = fresh(read_fixture("healthy"))
    doc.update(cluster=None, age=None, history=[], stale=True)
    doc["deployer"].update(reachable=False, last_contact=None, unreachable_since=doc["made"])
    site.publish(doc)
    web.open_status_page(driver, site.url)
    assert web.node_names(driver) == ["alpha", "beta"]  # the pair knows itself
    assert web.node_state(driver, "beta") == "up"
    assert "no data from the deployer yet" in driver.find_element("id", "nodes-note").text
    assert "(last contact never)" in web.stale_banner(driver)
    assert web.vip_holder(driver) == "alpha"
    assert web.history_rows(driver) == []


def test_follows_status_json_without_reload(driver, site):
    load(driver, site, "healthy")
    driver.execute_script("window.sameDocument = true")
    web.open_run(driver, FAILED_JID, "gamma")
    assert web.stale_banner(driver) is None
    site.publish(fresh(read_fixture("gamma-down")))
    web.wait_until(lambda: web.node_state(driver, "gamma") == "DOWN", timeout=10)
    assert driver.execute_script("return window.sameDocument") is True
    # the run opened before the redraw stays open, now with its failure
    details = driver.find_element("css selector", f'#history tr.run-details[data-jid="{FAILED_JID}"]').text
    assert "mpich-hosts-file-managed" in details
    site.publish(fresh(read_fixture("deployer-down")))
    banner = web.wait_until(lambda: web.stale_banner(driver), timeout=10)
    assert "unreachable since" in banner
    assert driver.execute_script("return window.sameDocument") is True


def test_page_server_gone_keeps_last_data(driver, site):
    load(driver, site, "healthy")
    site.stop()
    error = web.wait_until(lambda: web.fetch_error(driver), timeout=10)
    assert error.startswith("page server not answering")
    assert web.node_names(driver) == NODES
    assert web.node_state(driver, "gamma") == "up"


def test_data_is_text_not_html(driver, site):
    doc = fresh(read_fixture("healthy"))
    doc["cluster"]["problems"] = ['<img src=x onerror="document.body.dataset.owned=1">gamma <b>is</b> odd']
    site.publish(doc)
    web.open_status_page(driver, site.url)
    assert driver.find_element("id", "problems").text == doc["cluster"]["problems"][0]
    assert driver.find_elements("css selector", "#problems img, #problems b") == []
    assert driver.execute_script("return document.body.dataset.owned") is None
