"""
Unit tests of the Sense HAT status display: the LED mapping, staleness and failover message
of the driver (``salt/sensehat/files/cluster_leds.py``, pure functions, no Sense HAT library
needed) and the ``sense_hat`` grain (``_grains/sense_hat.py``) on fake device trees.
"""

import json
import logging
import os
import sys
import time

import pytest

from tests.conftest import REPO, load_by_path

DRIVER = REPO / "salt" / "sensehat" / "files" / "cluster_leds.py"
GRAIN = REPO / "_grains" / "sense_hat.py"

OFF, GREEN, AMBER, RED, BLUE = (0, 0, 0), (0, 255, 0), (255, 191, 0), (255, 0, 0), (0, 0, 128)


@pytest.fixture(scope="module")
def leds():
    return load_by_path("cluster_leds_under_test", DRIVER)


@pytest.fixture(autouse=True)
def driver_log(caplog):
    """The driver's log records go to caplog only: Salt's logging (loaded with the
    salt-factories plugin) would keep them and print them on a closed stream at exit."""
    logger = logging.getLogger("cluster-leds")
    logger.addHandler(caplog.handler)
    logger.propagate = False
    yield
    logger.removeHandler(caplog.handler)
    logger.propagate = True


@pytest.fixture
def grain():
    """A fresh copy of the grains module, so patched constants never leak."""
    return load_by_path("sense_hat_grains_under_test", GRAIN)


def node(up=True, result=True, changes=0, build=None, highstate=True):
    """One node of the cluster.status object."""
    return {
        "up": up,
        "roles": ["compute"],
        "provisioned": "2026-12-01T10:00:00+00:00",
        "last_highstate": {"time": "2026-12-01T10:00:00", "result": result, "jid": "20261201100000000000",
                           "changes": changes} if highstate else None,
        "build": {"state": build, "since": 1764583200} if build else None,
    }


# --- colours and their precedence ---------------------------------------------------------

@pytest.mark.parametrize(
    ("entry", "colour"),
    [
        (node(), GREEN),
        (node(highstate=False), GREEN),  # never highstated yet: nothing says it is not healthy
        (node(changes=3), AMBER),
        (node(build="building"), AMBER),
        (node(up=False), RED),
        (node(build="failed"), RED),
        (node(result=False), RED),
        # precedence: red over amber
        (node(up=False, build="building"), RED),
        (node(up=False, changes=5), RED),
        (node(result=False, changes=5), RED),
        (node(build="failed", changes=5), RED),
        # amber over green, whatever makes it amber
        (node(build="building", changes=0), AMBER),
        # malformed fields never make a node green by accident, nor crash
        ({**node(), "up": "yes"}, RED),
        ({**node(), "up": None}, RED),
        ({k: v for k, v in node().items() if k != "up"}, RED),
        ({**node(), "last_highstate": "garbage", "build": ["x"]}, GREEN),
        ({**node(), "last_highstate": {"result": True, "changes": "7"}}, GREEN),
        ({**node(), "last_highstate": {"result": True, "changes": True}}, GREEN),
        (None, BLUE),
        ("alpha", BLUE),
    ],
)
def test_node_colour(leds, entry, colour):
    assert leds.node_colour(entry) == colour


def test_the_colours_are_the_documented_ones(leds):
    assert (leds.GREEN, leds.AMBER, leds.RED, leds.OFF) == (GREEN, AMBER, RED, OFF)
    assert leds.NO_DATA == BLUE and leds.NO_DATA != GREEN


# --- one pixel per node, in order ---------------------------------------------------------

def status_of(nodes, vip_holder="alpha"):
    return {"nodes": dict(nodes), "vip_holder": vip_holder}


def test_one_pixel_per_node_row_major_in_the_given_order_the_rest_off(leds):
    names = [f"n{i}" for i in range(10)]
    nodes = {name: node() for name in names}
    nodes["n2"] = node(up=False)
    nodes["n8"] = node(changes=1)  # first pixel of the second row
    px = leds.pixels(status_of(nodes), names)
    assert len(px) == 64
    assert px[:10] == [GREEN, GREEN, RED, GREEN, GREEN, GREEN, GREEN, GREEN, AMBER, GREEN]
    assert px[10:] == [OFF] * 54
    assert all(isinstance(p, tuple) and len(p) == 3 for p in px)


def test_the_order_decides_the_positions_not_the_status(leds):
    nodes = {"alpha": node(), "beta": node(up=False), "psi": node(changes=2)}
    assert leds.pixels(status_of(nodes), ["psi", "beta", "alpha"])[:3] == [AMBER, RED, GREEN]
    assert leds.pixels(status_of(nodes), ["beta"])[:2] == [RED, OFF]


def test_a_node_of_the_order_missing_from_the_status_is_no_data(leds):
    assert leds.pixels(status_of({"alpha": node()}), ["alpha", "ghost"])[:3] == [GREEN, BLUE, OFF]


def test_pixels_accepts_the_whole_status_document(leds):
    doc = {"made": "2026-12-01T10:00:00+00:00", "cluster": status_of({"a": node(up=False)}), "history": []}
    assert leds.pixels(doc, ["a"])[0] == RED


def test_empty_and_malformed_status_give_no_green(leds):
    assert leds.pixels({}, []) == [OFF] * 64
    assert leds.pixels({"nodes": None}, ["a", "b"])[:3] == [BLUE, BLUE, OFF]
    assert leds.pixels(None, ["a"])[0] == BLUE


def test_64_nodes_fill_the_matrix(leds):
    names = [f"n{i:02d}" for i in range(64)]
    nodes = {name: node() for name in names}
    nodes["n63"] = node(up=False)
    px = leds.pixels(status_of(nodes), names)
    assert px[:63] == [GREEN] * 63 and px[63] == RED


@pytest.mark.parametrize(
    ("extra", "last"),
    [
        ({"n64": node(), "n65": node()}, GREEN),
        ({"n64": node(), "n65": node(changes=1)}, AMBER),
        ({"n64": node(up=False), "n65": node(changes=1)}, RED),
        ({"n64": node(), "n65": "garbage"}, BLUE),
    ],
)
def test_more_than_64_nodes_the_last_pixel_is_the_worst_of_the_rest(leds, extra, last):
    names = [f"n{i:02d}" for i in range(64)]
    nodes = {name: node() for name in names} | extra
    order = names + list(extra)
    px = leds.pixels(status_of(nodes), order)
    assert len(px) == 64
    assert px[:63] == [GREEN] * 63  # nodes 1..63 each have their pixel
    assert px[63] == last  # node 64 and all later ones share the last pixel: nothing hidden


def test_stale_pixels_are_blue_never_green(leds):
    assert leds.stale_pixels(["a", "b", "c"]) == [BLUE] * 3 + [OFF] * 61
    assert leds.stale_pixels([]) == [BLUE] + [OFF] * 63  # no node known: still "no data"
    assert len(leds.stale_pixels([f"n{i}" for i in range(70)])) == 64


# --- the status file: fresh, stale, missing, broken ---------------------------------------

def write_status(path, cluster, age=0):
    path.write_text(json.dumps({"made": "2026-12-01T10:00:00+00:00", "cluster": cluster, "history": []}))
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_load_status_fresh(leds, tmp_path):
    path = write_status(tmp_path / "status.json", status_of({"alpha": node(), "beta": node()}))
    cluster, problem = leds.load_status(str(path))
    assert problem is None and list(cluster["nodes"]) == ["alpha", "beta"] and cluster["vip_holder"] == "alpha"


def test_load_status_stale_keeps_the_order_but_draws_blue(leds, tmp_path):
    path = write_status(tmp_path / "status.json", status_of({"alpha": node(), "beta": node()}), age=121)
    cluster, problem = leds.load_status(str(path), max_age=120)
    assert "stale" in problem and list(cluster["nodes"]) == ["alpha", "beta"]
    px, order = leds.frame(cluster, problem)
    assert order == ["alpha", "beta"] and px[:3] == [BLUE, BLUE, OFF] and GREEN not in px
    # just inside the limit it is fresh
    write_status(path, status_of({"alpha": node()}), age=100)
    assert leds.load_status(str(path), max_age=120)[1] is None


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (None, "no status file"),
        ("{not json", "cannot read"),
        ("[1, 2]", "no cluster.nodes"),
        ('{"cluster": {"nodes": [1]}}', "no cluster.nodes"),
        ('{"cluster": "down"}', "no cluster.nodes"),
        ("\udcff", "cannot read"),
    ],
)
def test_load_status_unusable(leds, tmp_path, content, why):
    path = tmp_path / "status.json"
    if content is not None:
        path.write_bytes(content.encode("utf-8", errors="surrogateescape"))
    cluster, problem = leds.load_status(str(path))
    assert cluster is None and why in problem
    px, order = leds.frame(cluster, problem, ["alpha", "beta"])  # the last good order
    assert order == ["alpha", "beta"] and px[:3] == [BLUE, BLUE, OFF]


# --- the failover message -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("previous", "holder", "message"),
    [
        ("alpha", "beta", "VIP beta"),
        ("beta", "alpha", "VIP alpha"),
        ("alpha", "alpha", None),
        (None, "alpha", None),  # first sight: nothing moved
        ("alpha", None, None),  # nobody holds it now: the red nodes say why, no message
        (None, None, None),
        ("alpha", "", None),
        ("alpha", 42, None),
    ],
)
def test_failover_message(leds, previous, holder, message):
    assert leds.failover_message(previous, holder) == message


class FakeHat:
    """Records what the driver does with the LED matrix."""

    def __init__(self, fail=False):
        self.calls = []
        self.fail = fail

    def show_message(self, text, **kwargs):
        self.calls.append(("show_message", text, kwargs))

    def set_pixels(self, pixels):
        if self.fail:
            raise OSError("no frame buffer")
        self.calls.append(("set_pixels", [tuple(p) for p in pixels]))

    def clear(self):
        self.calls.append(("clear",))


def test_driver_scrolls_a_failover_also_through_a_null_holder(leds, tmp_path, caplog):
    hat = FakeHat()
    path = tmp_path / "status.json"
    state = tmp_path / "vip-holder"
    driver = leds.Driver(str(path), state_path=str(state), backend_factory=lambda emulator: hat)
    nodes = {"alpha": node(), "beta": node(up=False)}
    caplog.set_level(logging.INFO, logger="cluster-leds")
    for holder in ["alpha", None, "alpha", None, "beta"]:
        write_status(path, status_of(nodes, vip_holder=holder))
        assert driver.step() is True
    messages = [c for c in hat.calls if c[0] == "show_message"]
    assert [m[1] for m in messages] == ["VIP beta"]
    assert messages[0][2]["text_colour"] == list(AMBER)
    assert hat.calls[-1] == ("set_pixels", [GREEN, RED] + [OFF] * 62)  # the map again after the message
    assert "failover: VIP beta (was alpha)" in caplog.text
    assert json.loads(state.read_text()) == {"vip_holder": "beta"}
    # a new driver (a restart, or the next --once) remembers the holder
    again = leds.Driver(str(path), state_path=str(state), backend_factory=lambda emulator: hat)
    assert again.holder == "beta"


def test_driver_ignores_the_vip_of_stale_data(leds, tmp_path):
    hat = FakeHat()
    path = write_status(tmp_path / "status.json", status_of({"alpha": node()}, vip_holder="alpha"))
    driver = leds.Driver(str(path), backend_factory=lambda emulator: hat)
    driver.step()
    write_status(path, status_of({"alpha": node()}, vip_holder="beta"), age=600)
    driver.step()
    assert not [c for c in hat.calls if c[0] == "show_message"]
    assert hat.calls[-1] == ("set_pixels", [BLUE] + [OFF] * 63)


def test_driver_survives_a_missing_device_and_retries(leds, tmp_path, caplog):
    path = write_status(tmp_path / "status.json", status_of({"alpha": node()}))
    opened = []

    def factory(emulator):
        opened.append(emulator)
        if len(opened) == 1:
            raise OSError("Cannot detect RPi-Sense FB device")
        return FakeHat()

    driver = leds.Driver(str(path), emulator=True, backend_factory=factory)
    caplog.set_level(logging.INFO, logger="cluster-leds")
    assert driver.step() is False
    assert "cannot drive the LED matrix" in caplog.text
    assert driver.step() is True
    assert opened == [True, True]
    assert driver.hat.calls[-1] == ("set_pixels", [GREEN] + [OFF] * 63)


def test_a_lasting_problem_is_logged_once_not_at_every_read(leds, tmp_path, caplog):
    path = write_status(tmp_path / "status.json", status_of({"a": node()}), age=300)
    driver = leds.Driver(str(path), backend_factory=lambda emulator: FakeHat())
    caplog.set_level(logging.INFO, logger="cluster-leds")
    for _ in range(3):
        driver.step()
        write_status(path, status_of({"a": node()}), age=400)
    assert caplog.text.count("is stale") == 1
    write_status(path, status_of({"a": node()}))
    driver.step()
    assert "status: 1 nodes: 1 green" in caplog.text


def test_driver_keeps_the_last_order_when_the_file_goes_away(leds, tmp_path):
    hat = FakeHat()
    path = write_status(tmp_path / "status.json", status_of({"a": node(), "b": node(), "c": node()}))
    driver = leds.Driver(str(path), backend_factory=lambda emulator: hat)
    driver.step()
    path.unlink()
    driver.step()
    assert hat.calls[-1] == ("set_pixels", [BLUE] * 3 + [OFF] * 61)


def test_once_without_any_sense_hat_library_exits_1_without_a_traceback(leds, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sense_hat", None)  # import fails
    path = write_status(tmp_path / "status.json", status_of({"a": node()}))
    assert leds.main(["--status", str(path), "--once"]) == 1


# --- the grain ------------------------------------------------------------------------------

def fake_hat(base, **props):
    base.mkdir(parents=True)
    for name, value in props.items():
        (base / name).write_bytes(value.encode() + b"\x00")
    return base


def test_grain_sense_hat_present(grain, tmp_path, monkeypatch):
    hat = fake_hat(tmp_path / "hat", product="Sense HAT", vendor="Raspberry Pi", uuid="9f1a2b3c-4d5e-4f60-8a7b-6c5d4e3f2a1b",
                   product_id="0x0001", product_ver="0x0001")
    monkeypatch.setattr(grain, "HAT_DIRS", (str(hat),))
    assert grain.sense_hat() == {"sense_hat": True, "sense_hat_product": "Sense HAT"}


def test_grain_no_hat(grain, tmp_path, monkeypatch):
    monkeypatch.setattr(grain, "HAT_DIRS", (str(tmp_path / "hat"),))
    assert grain.sense_hat() == {"sense_hat": False}


def test_grain_another_hat(grain, tmp_path, monkeypatch):
    hat = fake_hat(tmp_path / "hat", product="Unicorn HAT", vendor="Pimoroni Ltd.")
    monkeypatch.setattr(grain, "HAT_DIRS", (str(hat),))
    assert grain.sense_hat() == {"sense_hat": False, "sense_hat_product": "Unicorn HAT"}


def test_grain_same_product_name_from_another_vendor_is_not_a_sense_hat(grain, tmp_path, monkeypatch):
    hat = fake_hat(tmp_path / "hat", product="Sense HAT", vendor="Someone Else")
    monkeypatch.setattr(grain, "HAT_DIRS", (str(hat),))
    assert grain.sense_hat()["sense_hat"] is False


def test_grain_falls_back_to_the_second_device_tree_path(grain, tmp_path, monkeypatch):
    hat = fake_hat(tmp_path / "sys" / "hat", product="Sense HAT", vendor="Raspberry Pi")
    monkeypatch.setattr(grain, "HAT_DIRS", (str(tmp_path / "proc" / "hat"), str(hat)))
    assert grain.sense_hat()["sense_hat"] is True


def test_grain_empty_or_unreadable_eeprom_is_no_hat(grain, tmp_path, monkeypatch):
    hat = tmp_path / "hat"
    hat.mkdir()
    (hat / "product").write_bytes(b"\x00")
    (hat / "vendor").mkdir()  # a directory where a string should be
    monkeypatch.setattr(grain, "HAT_DIRS", (str(hat),))
    assert grain.sense_hat() == {"sense_hat": False}


def test_grain_never_raises(grain, monkeypatch):
    monkeypatch.setattr(grain, "HAT_DIRS", None)  # iterating it raises TypeError
    assert grain.sense_hat() == {"sense_hat": False}


def test_grain_virtual(grain):
    assert grain.__virtual__() == "sense_hat"
