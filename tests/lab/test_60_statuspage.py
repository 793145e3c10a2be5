"""End to end on the lab: the live status page on the VIP, in a real headless browser (issue 13).

Debian's chromium loads http://<vip>/ from the lab host, as a person's browser would, and the
test checks what that person sees: every node; gamma shown down within 60 s of a power-off
and up again after it boots; the VIP holder after a failover (keepalived stopped on alpha);
a failed highstate of gamma in the history with its failing state's name; and the page still
loading, marked stale with since when the deployer is unreachable, while psi is powered off.
/status.json validates against the page's schema. Screenshots are saved as artifacts under
<lab state>/artifacts/. Every fault is undone, and the cluster awaited, before the test ends.
"""

import json
import time
import urllib.request

import jsonschema
import pytest

from lab import STATE
from tests import browser as page
from tests.lab.conftest import REPO, salt

pytestmark = pytest.mark.lab

NODES = ["alpha", "beta", "psi", "delta", "epsilon", "gamma", "zeta"]  # inventory order (by IP)
SCHEMA = json.loads((REPO / "salt" / "statuspage" / "files" / "status.schema.json").read_text())
ARTIFACTS = STATE / "artifacts"
DOWN_WITHIN = 60  # s: the page shows a powered-off node down (issue 13)
FAILING_STATE = "mpich-hostfile-file-managed"  # /etc/mpich/hosts, with /etc/mpich made a file


@pytest.fixture(scope="module")
def url(rolled_out):
    address = rolled_out.status()["vip"]
    # the collectors run every 10 s from the pair's minions: wait for a page with master data
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://{address}/status.json", timeout=3) as resp:
                doc = json.loads(resp.read())
            if doc.get("cluster") and not doc.get("stale"):
                break
        except (OSError, ValueError):
            doc = None
        assert time.monotonic() < deadline, f"no fresh status.json on the VIP: {doc}"
        time.sleep(3)
    return f"http://{address}/"


@pytest.fixture(scope="module")
def driver(url):
    reason = page.missing()
    if reason:
        pytest.fail(reason)  # make test installs chromium: a missing browser is a failure here
    with page.browser() as drv:
        yield drv


def shot(driver, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = page.screenshot(driver, ARTIFACTS / f"statuspage-{name}.png")
    print(f"\nscreenshot: {path}")
    return path


def wait_shown(driver, what, check, timeout):
    """Seconds until ``check()`` holds on the (self-refreshing) page; fails naming ``what``."""
    started = time.monotonic()
    try:
        page.wait_until(check, timeout=timeout, interval=0.5)
    except AssertionError:
        shot(driver, "failed-" + what.replace(" ", "-"))
        raise AssertionError(f"the page did not show {what} within {timeout} s") from None
    return time.monotonic() - started


def test_the_page_shows_every_node_up_and_loads_in_under_a_second(driver, url):
    page.open_status_page(driver, url)  # the browser's first page: includes its own start
    seconds = page.open_status_page(driver, url)
    print(f"\nstatus page load on the lab (navigation start to the nodes drawn): {seconds * 1000:.0f} ms")
    assert seconds < 1.0
    assert page.node_names(driver) == NODES
    wait_shown(driver, "every node up", lambda: all(page.node_state(driver, n) == "up" for n in NODES), 60)
    assert page.vip_holder(driver) == "alpha"
    assert page.stale_banner(driver) is None
    assert len(page.history_rows(driver)) > 0  # orch.cluster and the highstates of the roll-out
    shot(driver, "healthy")


def test_status_json_validates_and_names_its_age(url):
    with urllib.request.urlopen(url + "status.json", timeout=5) as resp:
        doc = json.loads(resp.read())
    jsonschema.validate(doc, SCHEMA)
    assert doc["deployer"]["reachable"] is True and doc["stale"] is False and doc["age"] <= 60
    assert set(doc["pair"]) == {"alpha", "beta"} and doc["vip"]["holder"] == "alpha"


def test_no_secret_reaches_the_page(url, rolled_out):
    """Every secret the deployer holds (TSIG, OMAPI, VRRP, k3s token, private keys): none is in
    the page's data (history included), nor in the deployer's feed."""
    proc = rolled_out.run("psi", "sudo find /etc/salt/cluster-secrets -type f ! -name '*.pub' -exec cat {} +",
                          timeout=30, check=True)
    secrets = {line.strip() for line in proc.stdout.splitlines()
               if len(line.strip()) >= 8 and not line.startswith("-----")}
    assert len(secrets) > 10, "the secrets were not read"
    with urllib.request.urlopen(url + "status.json", timeout=5) as resp:
        served = resp.read().decode()
    feed = rolled_out.run("psi", "cat /var/lib/cluster-status/status.json", timeout=30, check=True).stdout
    assert json.loads(served)["history"], "no run history to look into"
    for where, text in (("status.json on the VIP", served), ("the deployer's feed", feed)):
        leaked = [s[:6] + "..." for s in secrets if s in text]
        assert not leaked, f"secrets in {where}: {leaked}"


def test_a_powered_off_node_is_shown_down_within_60_s_and_up_after_it_boots(driver, url, rolled_out):
    page.open_status_page(driver, url)
    rolled_out.cli("power-off", "gamma")
    try:
        took = wait_shown(driver, "gamma down", lambda: page.node_state(driver, "gamma") == "DOWN", DOWN_WITHIN)
        print(f"\ngamma shown down {took:.1f} s after its power-off")
        shot(driver, "gamma-down")
    finally:
        rolled_out.cli("up", "gamma")
    took = wait_shown(driver, "gamma up again", lambda: page.node_state(driver, "gamma") == "up", 180)
    print(f"gamma shown up {took:.1f} s after it was powered on")


def test_the_vip_holder_after_a_failover(driver, url, rolled_out):
    page.open_status_page(driver, url)
    rolled_out.run("alpha", "sudo systemctl stop keepalived", check=True)
    try:
        # the page is now served by beta: the browser keeps polling the same address
        took = wait_shown(driver, "beta holding the VIP", lambda: page.vip_holder(driver) == "beta", 60)
        print(f"\nVIP holder beta shown {took:.1f} s after keepalived stopped on alpha")
        shot(driver, "failover")
    finally:
        rolled_out.run("alpha", "sudo systemctl start keepalived", check=True)
    wait_shown(driver, "alpha holding the VIP again", lambda: page.vip_holder(driver) == "alpha", 60)


def test_a_failed_highstate_is_in_the_history_with_its_failing_state(driver, url, rolled_out):
    rolled_out.run("gamma", "sudo mv /etc/mpich /etc/mpich.saved && sudo touch /etc/mpich", check=True)
    try:
        ret = salt(rolled_out, "gamma state.apply", timeout=300)
        failed = [sid for sid, s in ret["gamma"].items() if s.get("result") is False]
        assert any(FAILING_STATE in sid for sid in failed), failed
    finally:
        rolled_out.run("gamma", "sudo rm -f /etc/mpich && sudo mv /etc/mpich.saved /etc/mpich", check=True)
    page.open_status_page(driver, url)

    def failed_run():
        return next((r for r in page.history_rows(driver)
                     if r["node"] == "gamma" and r["kind"] == "highstate" and r["result"] == "FAILED"), None)

    wait_shown(driver, "gamma's failed highstate", failed_run, 60)
    details = page.open_run(driver, failed_run()["jid"], node="gamma")
    assert FAILING_STATE in details, details
    shot(driver, "failed-highstate")
    # mended: the next highstate succeeds and the page says so
    ret = salt(rolled_out, "gamma state.apply", timeout=300)
    assert not [sid for sid, s in ret["gamma"].items() if s.get("result") is False]
    wait_shown(driver, "gamma's highstate ok again", lambda: "ok" in (driver.execute_script(
        "const r = document.querySelector('#nodes tr[data-node=\"gamma\"] .highstate'); return r && r.innerText")
        or ""), 60)


def test_with_the_deployer_down_the_page_loads_and_says_since_when(driver, url, rolled_out):
    rolled_out.cli("power-off", "psi")
    try:
        time.sleep(2)
        seconds = page.open_status_page(driver, url)  # a fresh load, not the old tab
        banner = page.wait_until(lambda: page.stale_banner(driver), timeout=30, interval=0.5)
        print(f"\nwith psi off: page load {seconds * 1000:.0f} ms, banner: {banner}")
        assert "unreachable since" in banner and "psi" in banner, banner
        assert page.node_names(driver) == NODES  # the last known data, still shown
        assert page.vip_holder(driver) == "alpha"  # what the pair knows itself
        shot(driver, "deployer-down")
    finally:
        rolled_out.cli("up", "psi")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        answers = salt(rolled_out, "'*' test.ping", timeout=15) if _master_up(rolled_out) else {}
        if sorted(n for n, ok in answers.items() if ok is True) == sorted(NODES):
            break
        time.sleep(5)
    else:
        raise AssertionError("the minions did not all reconnect to psi's master")
    wait_shown(driver, "fresh data again", lambda: page.stale_banner(driver) is None, 120)


def _master_up(cluster):
    return cluster.run("psi", "systemctl is-active salt-master", timeout=30).stdout.strip() == "active"
