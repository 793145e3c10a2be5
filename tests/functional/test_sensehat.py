"""
The Sense HAT status display for real: the driver (``salt/sensehat/files/cluster_leds.py``)
run as a program, ``--once --emulator``, against the Sense HAT emulator library (sense_emu),
its LED matrix read back through ``sense_emu.SenseHat().get_pixels()``; then the ``sensehat``
SLS rendered and applied on nodes with and without a Sense HAT (``nodefs.make_node``: the states
write their real paths into the node's overlays, ``systemctl`` is a recording stub).

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
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.functional.lannet import changed, failed, verify_unit
from tests.functional.nodefs import changes_made, make_node

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


# --- the sensehat SLS applied on a node (tests/functional/nodefs.py) --------------------------
# The states write their real paths in the node's overlays (read back under node.root); systemd
# is the recording stub. The HAT's library (python3-sense-hat) is a Raspberry Pi OS package this
# host cannot have: the hardware node's library_pkgs name one it has (python3), so pkg.installed
# runs and has nothing to do, as nodefs.py does for every service's packages.

HOST_PKGS = ["python3"]
UNIT = "etc/systemd/system/cluster-leds.service"
INSTALLED_DRIVER = "usr/local/lib/cluster-leds/cluster_leds.py"


@pytest.fixture(scope="module")
def make(salt_factories, secrets_dir, tmp_path_factory):
    def make(name, grains, **lookup):
        root = tmp_path_factory.mktemp(f"sensehat-{name}")
        return make_node(salt_factories, name, root, secrets_dir, grains=grains, sensehat=lookup)

    return make


def ids(rendered):
    assert isinstance(rendered, dict), rendered  # a list would be render errors
    return sorted(rendered)


def show_sls(node):
    return node.call(lambda loaders: dict(loaders.modules.state.show_sls("sensehat")))


ACCOUNT_FILES = ("etc/.pwd.lock", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")



def test_without_a_sense_hat_the_sls_renders_to_nothing(make):
    gamma = make("gamma", {"sense_hat": False, "roles": ["compute"]})
    assert ids(show_sls(gamma)) == []
    ret = gamma.sls("sensehat")
    assert not failed(ret) and changed(ret) == {}
    assert gamma.fs.written() == []
    assert changes_made(gamma.fs.systemctl_calls()) == []


def test_with_a_sense_hat_the_sls_renders_package_user_driver_unit_service(make):
    psi = make("psi", {"sense_hat": True, "roles": ["deployer"]})
    rendered = show_sls(psi)
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
    assert {"name": "/usr/local/lib/cluster-leds/cluster_leds.py"} in rendered["sensehat-driver-file-managed"]["file"]
    assert {"name": "/etc/systemd/system/cluster-leds.service"} in rendered["sensehat-unit-file-managed"]["file"]


def test_the_emulator_option_needs_no_hat_and_installs_no_package(make):
    beta = make("beta", {"sense_hat": False}, emulator=True, python=sys.executable)
    assert ids(show_sls(beta)) == [
        "sensehat-driver-file-managed",
        "sensehat-emulator-library-test-fail-without-changes",
        "sensehat-service-running",
        "sensehat-systemd-daemon-reload-cmd-run",
        "sensehat-unit-file-managed",
        "sensehat-user-present",
    ]


def test_in_test_mode_the_sls_writes_nothing_and_starts_nothing_mocked_systemctl(make):
    psi = make("psi", {"sense_hat": True}, library_pkgs=HOST_PKGS)
    ret = psi.sls("sensehat", test=True)
    assert not failed(ret), failed(ret)
    assert psi.fs.written() == []
    assert changes_made(psi.fs.systemctl_calls()) == [] and psi.fs.units() == {}


@pytest.fixture(scope="module")
def applied(make):
    """The SLS applied twice on a HAT node: package (one the host has), account, driver, unit,
    daemon-reload and the service (systemctl mocked)."""
    psi = make("psi", {"sense_hat": True}, library_pkgs=HOST_PKGS)
    first = psi.sls("sensehat")
    calls_first = psi.fs.systemctl_calls()
    again = psi.sls("sensehat")
    return {"node": psi, "first": first, "again": again, "calls_first": calls_first}


def test_applied_writes_the_driver_and_its_unit_then_changes_nothing(applied):
    psi = applied["node"]
    assert not failed(applied["first"]), failed(applied["first"])
    assert sorted(changed(applied["first"])) == [
        "sensehat-driver-file-managed",
        "sensehat-service-running",
        "sensehat-systemd-daemon-reload-cmd-run",
        "sensehat-unit-file-managed",
        "sensehat-user-present",
    ]
    assert "sensehat-pkg-installed" not in changed(applied["first"])  # the host has it
    driver = psi.root / INSTALLED_DRIVER
    assert filecmp.cmp(driver, DRIVER, shallow=False) and driver.stat().st_mode & 0o777 == 0o755
    assert (psi.root / UNIT).stat().st_mode & 0o777 == 0o644
    # the driver and its unit; besides them only the account databases (useradd)
    assert [f for f in psi.fs.written() if not f.startswith(ACCOUNT_FILES)] == [UNIT, INSTALLED_DRIVER]
    assert not failed(applied["again"]) and changed(applied["again"]) == {}


def test_the_unit_runs_the_driver_on_the_status_file(applied):
    unit = applied["node"].root / UNIT
    text = unit.read_text()
    assert ("ExecStart=/usr/bin/python3 /usr/local/lib/cluster-leds/cluster_leds.py"
            " --status /var/lib/cluster-status/status.json --interval 5 --max-age 120 --rotation 0"
            " --state %S/cluster-leds/vip-holder\n") in text
    assert "ConditionPathExists=/usr/local/lib/cluster-leds/cluster_leds.py\n" in text
    assert "User=cluster-leds\n" in text and "StateDirectory=cluster-leds\n" in text
    assert "--emulator" not in text
    assert verify_unit(unit) == []


def test_the_installed_driver_runs_as_the_unit_says(applied, tmp_path):
    """The unit's ExecStart, once, in the node's files: no Sense HAT library on this host, so
    it logs and exits 1 (no traceback); no status file on the node, so no data."""
    psi = applied["node"]
    exec_start = next(line for line in (psi.root / UNIT).read_text().splitlines() if line.startswith("ExecStart="))
    argv = exec_start.removeprefix("ExecStart=").replace("%S", str(tmp_path)).split() + ["--once"]
    (tmp_path / "cluster-leds").mkdir()
    res = subprocess.run(psi.wrap(argv), capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 1, res.stderr
    assert "no status file /var/lib/cluster-status/status.json" in res.stderr
    assert "cannot drive the LED matrix" in res.stderr and "Traceback" not in res.stderr


def test_applied_creates_the_drivers_account(applied):
    passwd = (applied["node"].root / "etc/passwd").read_text().splitlines()
    entry = next(line.split(":") for line in passwd if line.startswith("cluster-leds:"))
    assert entry[5:] == ["/var/lib/cluster-leds", "/usr/sbin/nologin"]
    assert not (applied["node"].root / "var/lib/cluster-leds").exists()  # the unit's StateDirectory makes it
    groups = {line.split(":")[0]: line.split(":")[3].split(",")
              for line in (applied["node"].root / "etc/group").read_text().splitlines()}
    # of video, i2c, input: those this host has
    for group in ("video", "i2c", "input"):
        if subprocess.run(["getent", "group", group], capture_output=True, check=False).returncode == 0:
            assert "cluster-leds" in groups[group], group


def test_applied_reloads_systemd_then_enables_and_starts_the_service_mocked_systemctl(applied):
    psi = applied["node"]
    assert psi.fs.units() == {"cluster-leds.service": {"active": True, "enabled": True}}
    # the new unit file: reload first, then start and enable the unit
    assert changes_made(applied["calls_first"]) == [
        "daemon-reload", "start cluster-leds.service", "enable cluster-leds.service"]
    # the second run: nothing changed, so no reload, no restart
    again = psi.fs.systemctl_calls()[len(applied["calls_first"]):]
    assert again and changes_made(again) == [], again


def test_the_emulator_check_fails_clearly_without_the_library_mocked_systemctl(make):
    node = make("epsilon", {"sense_hat": False}, emulator=True, python="/bin/false")
    ret = node.sls("sensehat")
    fails = failed(ret)
    assert fails.pop("sensehat-emulator-library-test-fail-without-changes") == (
        "sensehat: /bin/false cannot import sense_emu; install the Sense HAT emulator (pip install sense-emu)"
        " or point sensehat:lookup:python at a Python that has it")
    # the service is never started on a Python that cannot drive the emulator
    assert list(fails) == ["sensehat-service-running"] and "requisite" in fails["sensehat-service-running"]
    assert node.fs.units().get("cluster-leds.service", {}).get("active") is not True
    with_lib = make("epsilon", {"sense_hat": False}, emulator=True, python=sys.executable)
    ret = with_lib.sls("sensehat")
    assert not failed(ret), failed(ret)
    text = (with_lib.root / UNIT).read_text()
    assert "--emulator\n" in text and f"ExecStart={sys.executable} /usr/local/lib/cluster-leds/" in text
    assert with_lib.fs.units() == {"cluster-leds.service": {"active": True, "enabled": True}}


def test_on_the_applied_node_the_clean_plans_stop_purge_removal_reload_account(applied):
    """sensehat.clean rendered (never applied: it would purge the host's python3) where the SLS
    was applied: its real paths, the unit, the library and the account."""
    plan = applied["node"].call(lambda loaders: [(c["state"] + "." + c["fun"], c["name"])
                                                 for c in loaders.modules.state.show_low_sls("sensehat.clean")])
    assert sorted(plan) == sorted([
        ("service.dead", "cluster-leds"),
        ("pkg.purged", "sensehat-clean-pkg-purged"),
        ("file.absent", "/usr/local/lib/cluster-leds"),
        ("file.absent", "/etc/systemd/system/cluster-leds.service"),
        ("cmd.run", "systemctl daemon-reload"),
        ("user.absent", "cluster-leds"),
    ]), plan
