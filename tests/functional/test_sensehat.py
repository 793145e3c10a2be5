"""
The Sense HAT status display for real: the driver (``salt/sensehat/files/cluster_leds.py``)
run as a program, ``--once --emulator``, against the Sense HAT emulator library (sense_emu),
its LED matrix read back through ``sense_emu.SenseHat().get_pixels()``; then the ``sensehat``
SLS rendered and applied through Salt's loaders, with and without a Sense HAT.

The emulator keeps its LED matrix in the file ``/dev/shm/rpi-sense-emu-screen`` (64 RGB565
pixels, then a gamma table), its sensors and joystick next to it, and a ``SenseHat()`` first
waits for ``/dev/shm/rpi-sense-emu-pid``, the lock of a running emulator GUI, and spawns
``sense_emu_gui`` when there is none. Here every emulator process runs in one private mount
namespace whose ``/dev/shm`` is a fresh tmpfs, and a ``sleep`` in it holds the lock in place of
the GUI: headless, and the host's ``/dev/shm`` (where a user's emulator may run) is never
read or written; the tmpfs goes with the namespace. That needs root (unshare, nsenter).
"""

import filecmp
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.functional.lannet import changed, failed, node_loaders, verify_unit

pytest.importorskip("sense_emu", reason="the Sense HAT emulator library (pip sense-emu, requirements.txt)")

DRIVER = REPO / "salt" / "sensehat" / "files" / "cluster_leds.py"
SHM_FILES = ("rpi-sense-emu-screen", "rpi-sense-emu-pid")
HAVE_NAMESPACES = os.geteuid() == 0 and bool(shutil.which("unshare")) and bool(shutil.which("nsenter"))

OFF, GREEN, AMBER, RED, BLUE = (0, 0, 0), (0, 255, 0), (255, 191, 0), (255, 0, 0), (0, 0, 128)
# the inventory order (pillar/cluster/inventory.yaml, by IP), as cluster.status lists the nodes
ORDER = ["alpha", "beta", "psi", "delta", "epsilon", "gamma", "zeta"]

# Read the matrix the way a program does: a SenseHat() of the emulator library.
READ = "import json, sense_emu; print(json.dumps(sense_emu.SenseHat().get_pixels()))"
# Every distinct frame of the matrix until the file argv[1] exists (ready once it watches).
WATCH = """
import json, os, sys, time, sense_emu
hat = sense_emu.SenseHat()
frames = [hat.get_pixels()]
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    pixels = hat.get_pixels()
    if pixels != frames[-1]:
        frames.append(pixels)
    time.sleep(0.001)
print(json.dumps(frames))
"""


def node(up=True, result=True, changes=0, build=None):
    return {
        "up": up,
        "roles": ["compute"],
        "provisioned": "2026-12-01T10:00:00+00:00",
        "last_highstate": {"time": "2026-12-01T10:00:00", "result": result, "jid": "20261201100000000000",
                           "changes": changes},
        "build": {"state": build, "since": 1764583200} if build else None,
    }


# alpha..zeta: green, green, amber (changed), red (down), amber (building), red (build failed),
# red (highstate failed)
NODES = {
    "alpha": node(),
    "beta": node(),
    "psi": node(changes=2),
    "delta": node(up=False),
    "epsilon": node(build="building"),
    "gamma": node(build="failed"),
    "zeta": node(result=False),
}
MAP = [GREEN, GREEN, AMBER, RED, AMBER, RED, RED] + [OFF] * 57
# after the failover: delta is back (green)
NODES_AFTER = {**NODES, "delta": node()}
MAP_AFTER = [GREEN, GREEN, AMBER, GREEN, AMBER, RED, RED] + [OFF] * 57


def write_status(path, nodes, vip_holder, age=0):
    doc = {"made": "2026-12-01T10:00:00+00:00", "history": [],
           "cluster": {"generated": "2026-12-01T10:00:00+00:00", "nodes": nodes, "vip_holder": vip_holder,
                       "problems": []}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    if age:
        os.utime(tmp, (time.time() - age, time.time() - age))
    tmp.replace(path)


def near(pixels, expected, tolerance=8):
    """The emulator stores RGB565 (5-6-5 bits): 255 reads back as 248, 191 as 188."""
    return len(pixels) == len(expected) and all(
        abs(a - b) <= tolerance for got, want in zip(pixels, expected, strict=True)
        for a, b in zip(got, want, strict=True))


def is_text_frame(pixels):
    """A frame of the scrolled message: some amber pixels, nothing else lit."""
    lit = [p for p in pixels if tuple(p) != OFF]
    return bool(lit) and all(near([p], [AMBER]) for p in lit)


class Emulator:
    """A private mount namespace with a fresh /dev/shm holding the emulator's lock."""

    def __init__(self, workdir):
        self.env = {**os.environ, "HOME": str(workdir / "home"), "PYTHONDONTWRITEBYTECODE": "1"}
        (workdir / "home").mkdir()
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec",
             "mount -t tmpfs -o size=4m,mode=1777 cluster-leds-test /dev/shm\n"
             "echo $$ > /dev/shm/rpi-sense-emu-pid\n"  # this shell, then the sleep: the lock is held
             "echo ready\n"
             "exec sleep 3600\n"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        if self.holder.stdout.readline().strip() != "ready":
            self.close()
            pytest.skip(f"no private mount namespace for the emulator: {self.holder.stderr.read().strip()}")

    def cmd(self, *argv):
        return ["nsenter", f"--target={self.holder.pid}", "--mount", "--", *argv]

    def run(self, *argv, timeout=60):
        return subprocess.run(self.cmd(*argv), env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def popen(self, *argv):
        return subprocess.Popen(self.cmd(*argv), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def read(self):
        res = self.run(sys.executable, "-c", READ)
        assert res.returncode == 0, res.stderr
        return [tuple(p) for p in json.loads(res.stdout)]

    def close(self):
        if self.holder.poll() is None:
            self.holder.kill()
        self.holder.communicate(timeout=10)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    if not HAVE_NAMESPACES:
        pytest.skip("needs root with unshare and nsenter: the emulator's /dev/shm must be private")
    before = {name: os.path.exists(f"/dev/shm/{name}") for name in SHM_FILES}
    emu = Emulator(tmp_path_factory.mktemp("sense-emu"))
    yield emu
    emu.close()
    # nothing leaked onto the host's /dev/shm
    assert {name: os.path.exists(f"/dev/shm/{name}") for name in SHM_FILES} == before


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster-leds")
    return {"status": work / "status.json", "state": work / "vip-holder", "stop": work / "stop"}


def drive(emulator, files, *extra):
    return emulator.run(sys.executable, str(DRIVER), "--status", str(files["status"]), "--emulator", "--once",
                        "--state", str(files["state"]), "--scroll-speed", "0.02", *extra)


def test_once_draws_one_pixel_per_node_in_inventory_order(emulator, files):
    write_status(files["status"], NODES, "alpha")
    res = drive(emulator, files)
    assert res.returncode == 0, res.stderr
    assert "No emulator detected" not in res.stderr  # the lock holder stood in for the GUI
    assert "status: 7 nodes: 2 amber, 2 green, 3 red" in res.stderr
    assert "failover" not in res.stderr  # the first holder seen is no failover
    pixels = emulator.read()
    assert near(pixels, MAP), pixels[:8]
    assert pixels[7:] == [OFF] * 57  # exactly 7 pixels lit


def test_a_failover_scrolls_vip_beta_then_redraws_the_map(emulator, files):
    write_status(files["status"], NODES, "alpha")
    assert drive(emulator, files).returncode == 0  # alpha holds the VIP, as last seen
    write_status(files["status"], NODES_AFTER, "beta")
    watcher = emulator.popen(sys.executable, "-c", WATCH, str(files["stop"]))
    try:
        assert watcher.stdout.readline().strip() == "ready", watcher.stderr.read()
        res = drive(emulator, files)
    finally:
        files["stop"].touch()
        out, err = watcher.communicate(timeout=30)
    assert res.returncode == 0, res.stderr
    assert "failover: VIP beta (was alpha)" in res.stderr
    frames = json.loads(out.splitlines()[-1])
    assert near(frames[0], MAP)  # what the first run left
    text = [f for f in frames if is_text_frame(f)]
    # show_message of the real library scrolled: many distinct amber-only frames...
    assert len(text) >= 20, f"{len(text)} text frames of {len(frames)}"
    # ...wider than one character: the text moved across all 8 columns
    assert {i % 8 for f in text for i, p in enumerate(f) if tuple(p) != OFF} == set(range(8))
    assert near(frames[-1], MAP_AFTER)  # and the node map is back
    assert near(emulator.read(), MAP_AFTER)
    assert json.loads(files["state"].read_text()) == {"vip_holder": "beta"}


def test_the_same_holder_again_scrolls_nothing(emulator, files):
    write_status(files["status"], NODES_AFTER, "beta")
    assert drive(emulator, files).returncode == 0  # beta seen (whatever was seen before)
    res = drive(emulator, files)
    assert res.returncode == 0 and "failover" not in res.stderr, res.stderr
    assert near(emulator.read(), MAP_AFTER)


def test_stale_status_is_blue_not_green(emulator, files):
    write_status(files["status"], NODES_AFTER, "alpha", age=600)
    res = drive(emulator, files)
    assert res.returncode == 0, res.stderr
    assert "is stale" in res.stderr and "failover" not in res.stderr  # a stale VIP counts for nothing
    pixels = emulator.read()
    assert near(pixels, [BLUE] * 7 + [OFF] * 57), pixels[:8]
    assert not any(near([p], [GREEN]) for p in pixels)


def test_missing_status_shows_no_data(emulator, files):
    res = emulator.run(sys.executable, str(DRIVER), "--status", str(files["status"]) + ".missing", "--emulator",
                       "--once")
    assert res.returncode == 0, res.stderr
    assert "no status file" in res.stderr and "Traceback" not in res.stderr
    assert near(emulator.read(), [BLUE] + [OFF] * 63)


def wait_for_pixels(emulator, expected, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        pixels = emulator.read()
        if near(pixels, expected) or time.monotonic() > deadline:
            return pixels
        time.sleep(0.1)


def test_the_service_loop_follows_the_file_and_clears_the_matrix_on_stop(emulator, files, tmp_path):
    """What cluster-leds.service runs: the loop, here every 0.2 s instead of 5."""
    status = tmp_path / "status.json"
    write_status(status, NODES, "alpha")
    loop = emulator.popen(sys.executable, str(DRIVER), "--status", str(status), "--emulator", "--interval", "0.2")
    try:
        assert near(wait_for_pixels(emulator, MAP), MAP)
        write_status(status, NODES_AFTER, "alpha")
        assert near(wait_for_pixels(emulator, MAP_AFTER), MAP_AFTER)
        status.write_text("{broken")  # half a file: no data, no crash
        assert near(wait_for_pixels(emulator, [BLUE] * 7 + [OFF] * 57), [BLUE] * 7 + [OFF] * 57)
        write_status(status, NODES, "alpha")
        assert near(wait_for_pixels(emulator, MAP), MAP)
        assert loop.poll() is None
    finally:
        loop.terminate()  # SIGTERM, as systemd stops it
        _, err = loop.communicate(timeout=30)
    assert loop.returncode == 0, err
    assert "stopped, LED matrix cleared" in err and "Traceback" not in err
    assert emulator.read() == [OFF] * 64


def test_without_a_matrix_once_exits_1_without_a_traceback(tmp_path):
    """On this host there is no Sense HAT library (python3-sense-hat): logged, no crash."""
    write_status(tmp_path / "status.json", NODES, "alpha")
    res = subprocess.run([sys.executable, str(DRIVER), "--status", str(tmp_path / "status.json"), "--once"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1
    assert "cannot drive the LED matrix" in res.stderr and "Traceback" not in res.stderr


# --- the sensehat SLS through Salt's loaders ----------------------------------------------

@pytest.fixture(scope="module")
def make_loaders(salt_factories, secrets_dir):
    made = []

    def make(name, root, grains, **lookup):
        made.append(node_loaders(salt_factories, name, root, secrets_dir, grains=grains,
                                 sensehat={"root": str(root), **lookup}))
        return made[-1]

    yield make
    for loaders in made:
        loaders.reset_state()


def ids(rendered):
    assert isinstance(rendered, dict), rendered  # a list would be render errors
    return sorted(rendered)


def test_without_a_sense_hat_the_sls_renders_to_nothing(make_loaders, tmp_path):
    gamma = make_loaders("gamma", tmp_path, {"sense_hat": False, "roles": ["compute"]})
    assert ids(gamma.modules.state.show_sls("sensehat")) == []
    ret = gamma.modules.state.sls("sensehat")
    assert not failed(ret) and changed(ret) == {}
    assert list(tmp_path.iterdir()) == []


def test_with_a_sense_hat_the_sls_renders_package_user_driver_unit_service(make_loaders, tmp_path):
    psi = make_loaders("psi", tmp_path, {"sense_hat": True, "roles": ["deployer"]})
    rendered = psi.modules.state.show_sls("sensehat")
    assert ids(rendered) == [
        "sensehat-driver-file-managed",
        "sensehat-pkg-installed",
        "sensehat-service-running",
        "sensehat-systemd-daemon-reload-cmd-run",
        "sensehat-unit-file-managed",
        "sensehat-user-present",
    ]
    assert rendered["sensehat-pkg-installed"]["pkg"][0]["pkgs"] == ["python3-sense-hat"]
    assert {"name": "cluster-leds"} in rendered["sensehat-service-running"]["service"]


def test_the_emulator_option_needs_no_hat_and_installs_no_package(make_loaders, tmp_path):
    beta = make_loaders("beta", tmp_path, {"sense_hat": False}, emulator=True, python=sys.executable)
    assert ids(beta.modules.state.show_sls("sensehat")) == [
        "sensehat-driver-file-managed",
        "sensehat-emulator-library-test-fail-without-changes",
        "sensehat-service-running",
        "sensehat-systemd-daemon-reload-cmd-run",
        "sensehat-unit-file-managed",
        "sensehat-user-present",
    ]


@pytest.fixture(scope="module")
def applied(make_loaders, tmp_path_factory):
    """The SLS applied on a HAT node whose files go under a scratch root (no package, account,
    systemd or service: manage_service false)."""
    root = tmp_path_factory.mktemp("sensehat-psi")
    psi = make_loaders("psi", root, {"sense_hat": True}, manage_service=False, library_pkgs=[])
    return {"root": root, "first": psi.modules.state.sls("sensehat"), "again": psi.modules.state.sls("sensehat")}


def test_applied_writes_the_driver_and_its_unit_then_changes_nothing(applied):
    root = applied["root"]
    assert not failed(applied["first"]), failed(applied["first"])
    assert sorted(changed(applied["first"])) == ["sensehat-driver-file-managed", "sensehat-unit-file-managed"]
    driver = root / "usr/local/lib/cluster-leds/cluster_leds.py"
    assert filecmp.cmp(driver, DRIVER, shallow=False) and driver.stat().st_mode & 0o777 == 0o755
    assert not failed(applied["again"]) and changed(applied["again"]) == {}


def test_the_unit_runs_the_driver_on_the_status_file(applied):
    root = applied["root"]
    unit = root / "etc/systemd/system/cluster-leds.service"
    text = unit.read_text()
    assert (f"ExecStart=/usr/bin/python3 {root}/usr/local/lib/cluster-leds/cluster_leds.py"
            f" --status {root}/var/lib/cluster-status/status.json --interval 5 --max-age 120 --rotation 0"
            " --state %S/cluster-leds/vip-holder\n") in text
    assert "User=cluster-leds\n" in text and "StateDirectory=cluster-leds\n" in text
    assert "--emulator" not in text
    assert verify_unit(unit) == []


def test_the_emulator_check_fails_clearly_without_the_library(make_loaders, tmp_path):
    node = make_loaders("epsilon", tmp_path, {"sense_hat": False}, emulator=True, python="/bin/false",
                        manage_service=False)
    ret = node.modules.state.sls("sensehat")
    assert failed(ret) == {"sensehat-emulator-library-test-fail-without-changes": (
        "sensehat: /bin/false cannot import sense_emu; install the Sense HAT emulator (pip install sense-emu)"
        " or point sensehat:lookup:python at a Python that has it")}
    with_lib = make_loaders("epsilon", tmp_path / "ok", {"sense_hat": False}, emulator=True,
                            python=sys.executable, manage_service=False)
    ret = with_lib.modules.state.sls("sensehat")
    assert not failed(ret), failed(ret)
    assert "--emulator\n" in pathlib.Path(tmp_path / "ok/etc/systemd/system/cluster-leds.service").read_text()
