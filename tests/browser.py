"""
Headless chromium for the tests that look at the live status page
(salt/statuspage/files/index.html): the functional test serves it with fixtures, the lab end to
end test loads it from the VIP.

    from tests.browser import browser, open_status_page, node_state

    with browser() as driver:
        seconds = open_status_page(driver, "http://10.77.0.111/")
        assert node_state(driver, "gamma") == "DOWN"

Debian's chromium and chromedriver (packages chromium, chromium-driver) at fixed paths: with
both paths given, selenium does not run selenium-manager and downloads nothing. The helpers read
the page in one script call each (what a person sees: innerText of visible elements), so a
redraw of the page between two calls cannot leave them holding a stale element.
"""

import contextlib
import os
import pathlib
import time

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 1000)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage")


def missing():
    """Why no browser can be started here (a sentence), or None."""
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    return f"no {' and no '.join(absent)} (Debian packages chromium, chromium-driver)" if absent else None


@contextlib.contextmanager
def browser():
    """A headless chromium (WebDriver), 1280x1000, quit at the end."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def wait_until(fn, timeout=10, interval=0.1):
    """fn()'s first true value, polled every interval seconds; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = fn()
        except (NoSuchElementException, StaleElementReferenceException) as exc:  # the page was redrawn
            value = exc
        else:
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s (last: {value!r})")
        time.sleep(interval)


def open_status_page(driver, url, timeout=10):
    """
    Load the page and wait for its first render; the load time in seconds: navigation start to
    the moment the nodes table was filled from status.json, measured by the page itself
    (window.statusRenderedAt, performance.now() of its last render).
    """
    driver.get(url)
    wait_until(lambda: driver.execute_script("return document.body && document.body.dataset.rendered"), timeout)
    return driver.execute_script("return window.statusRenderedAt") / 1000


def renders(driver):
    """How many times the page has drawn status.json (it redraws only when the file changed)."""
    return int(driver.execute_script("return document.body.dataset.rendered || 0"))


# innerText of the first element of a selector when it is shown, else null
_VISIBLE_TEXT = """
const el = document.querySelector(arguments[0]);
return el && el.checkVisibility() ? el.innerText.trim() : null;
"""


def _visible_text(driver, selector):
    return driver.execute_script(_VISIBLE_TEXT, selector)


def node_names(driver):
    """The node names in the nodes table, in its order."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#nodes tr[data-node] .name')].map(td => td.innerText.trim())"
    )


def node_state(driver, name):
    """The state a person reads for node name ("up", "DOWN", "rebuilding", ...), None without a row."""
    return driver.execute_script(
        """
        const row = [...document.querySelectorAll('#nodes tr[data-node]')].find(r => r.dataset.node === arguments[0]);
        return row ? row.querySelector('.state').innerText.trim() : null;
        """,
        name,
    )


def vip_holder(driver):
    """The node holding the VIP as the page shows it ("NOBODY" when none)."""
    return _visible_text(driver, "#vip-holder .holder")


def stale_banner(driver):
    """The text of the red STALE banner, None when it is not shown."""
    return _visible_text(driver, "#stale")


def fetch_error(driver):
    """The text of the "page server not answering" banner, None when it is not shown."""
    return _visible_text(driver, "#fetch-error")


def history_rows(driver):
    """The runs of the history table: [{"jid", "node", "kind", "result"}] ("ok"/"FAILED"), newest first."""
    return driver.execute_script(
        """
        const text = (row, cls) => row.querySelector(cls).innerText.trim();
        return [...document.querySelectorAll('#history tr.run')].map(row => ({
            jid: row.dataset.jid, node: row.dataset.node, kind: text(row, '.kind'), result: text(row, '.result')}));
        """
    )


_RUN_DETAILS = """
const rows = [...document.querySelectorAll('#history tr.run-details')];
const row = rows.find(r => r.dataset.jid === arguments[0] && r.dataset.node === arguments[1]);
return row && row.checkVisibility() ? row.innerText.trim() : null;
"""


def open_run(driver, jid, node=None, timeout=5):
    """Click the run jid (of node, or its first row) open unless it is; the text of its details."""

    def click():
        for row in driver.find_elements(By.CSS_SELECTOR, "#history tr.run"):
            if row.get_attribute("data-jid") == jid and node in (None, row.get_attribute("data-node")):
                which = row.get_attribute("data-node")
                if driver.execute_script(_RUN_DETAILS, jid, which) is None:
                    row.click()
                return which
        return None

    which = wait_until(click, timeout)
    return wait_until(lambda: driver.execute_script(_RUN_DETAILS, jid, which), timeout)


def screenshot(driver, path):
    """A PNG of the whole page (the window is stretched to its height for the shot); its path."""
    path = pathlib.Path(path)
    height = driver.execute_script(
        "window.scrollTo(0, 0); return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight"
    )
    driver.set_window_size(WINDOW[0], max(WINDOW[1], height))
    try:
        if not driver.save_screenshot(str(path)):
            raise AssertionError(f"no screenshot written to {path}")
    finally:
        driver.set_window_size(*WINDOW)
    return path
