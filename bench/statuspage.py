"""The live status page on the VIP (issue 13): how fast a person's browser shows it, and how
old the data it shows is.

- load: Debian's headless chromium (the tests' harness, tests/browser.py) opens
  http://<vip>/ ``runs`` times after one warm-up; each time from navigation start to the
  nodes table drawn from status.json (performance.now() in the page).
- data age: status.json on the VIP read every 2 s for ``seconds``; its ``age`` (seconds
  between the master's cluster.status and the pair's file) as the page shows it.
"""

import json
import statistics
import time
import urllib.request

from .common import BenchError, log, spread


def page_load(nodes, table, runs=5):
    from tests import browser  # pylint: disable=import-outside-toplevel

    reason = browser.missing()
    if reason:
        raise BenchError(reason)
    url = f"http://{nodes.st['vip']}/"
    with browser.browser() as driver:
        browser.open_status_page(driver, url)
        loads = [browser.open_status_page(driver, url) for _ in range(runs)]
    table.add("status page load (VIP, headless chromium)", spread(loads, "s", 3),
              f"{url} in Debian's chromium, {runs} loads after one warm-up: navigation start to the nodes "
              "table drawn from status.json", loads=loads)


def data_age(nodes, table, seconds=60):
    url = f"http://{nodes.st['vip']}/status.json"
    ages, errors, deadline = [], 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                doc = json.loads(resp.read())
            if doc.get("age") is not None:
                ages.append(float(doc["age"]))
        except (OSError, ValueError):
            errors += 1
        time.sleep(2)
    if not ages:
        raise BenchError(f"no status.json with master data on the VIP ({errors} failed reads)")
    log(f"status.json ages: {ages}")
    table.add("status page data age (deployer up)",
              f"median {statistics.median(ages):.0f} s, max {max(ages):.0f} s (n={len(ages)})",
              f"{url} read every 2 s for {seconds} s: `age`, master's cluster.status to the pair's file "
              f"(publish every 20 s + on events, collector every 10 s); {errors} failed reads",
              ages=ages, errors=errors)


def statuspage(nodes, table, runs=5):
    page_load(nodes, table, runs)
    data_age(nodes, table)
