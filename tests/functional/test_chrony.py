"""The chrony state on the test host for a server (alpha, beta) and a client (delta): files
under scratch roots, checked with the real ``chronyd -p``; the nspawn specifics only on nspawn;
the bounded chrony-wait drop-in and the time ordering of dhcpd and named (``systemd-analyze
verify``). Then the rendered configs run for real (three chronyd in private network
namespaces, clock control off, started as systemd starts them: forking) and read with the chrony
status function: orphan mode with no upstream, the chrony-wait gates, a power loss of the
orphan parent, its return with a clock of its own, and a server alone."""

import os
import shlex
import shutil
import signal
import subprocess
import threading
import time

import pytest
import yaml

from tests.conftest import INVENTORY
from tests.functional.lannet import (
    HAVE_NETNS,
    Switch,
    by_id,
    changed,
    failed,
    verify_unit,
    wait_for,
)
from tests.functional.nodefs import make_node

CONF = "etc/chrony/chrony.conf"
WAIT_DROPIN = "etc/systemd/system/chrony-wait.service.d/bounded.conf"
SERVE_DROPIN = "etc/systemd/system/chrony.service.d/serve.conf"
COMMAND_SOCKET = "/run/chrony/chronyd.sock"
DEBIAN_WAIT_UNIT = "/lib/systemd/system/chrony-wait.service"
DEBIAN_UNIT = "/lib/systemd/system/chrony.service"
INV = yaml.safe_load(INVENTORY.read_text())["cluster"]
ALPHA, BETA = INV["nodes"]["alpha"]["ip"], INV["nodes"]["beta"]["ip"]
DELTA, VIP = INV["nodes"]["delta"]["ip"], INV["network"]["vip"]
SUBNET = INV["network"]["subnet"]
LAN_OPTIONS = "iburst minpoll 2 maxpoll 4 maxsamples 8"
TAIL = ["driftfile /var/lib/chrony/chrony.drift", "makestep 1 3", "maxupdateskew 100.0"]


def lines(path):
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return {name: tmp_path_factory.mktemp(f"chrony-{name}") for name in ("alpha", "beta", "delta")}


@pytest.fixture(scope="module")
def runs(salt_factories, roots, secrets_dir):
    out = {}
    for name in roots:
        node = make_node(salt_factories, name, roots[name], secrets_dir)
        out[name] = {"node": node, **node.dry_then_real("chrony"), "again": node.sls("chrony")}
    return out


def test_test_mode_writes_nothing_real_mode_once(runs):
    for name, run in runs.items():
        assert not failed(run["dry"]) and not failed(run["real"]), (name, failed(run["dry"]), failed(run["real"]))
        assert by_id(run["dry"], "chrony-config-file-managed")["result"] is None
        assert by_id(run["dry"], "chrony-wait-dropin-file-managed")["result"] is None
        assert run["written_by_dry_run"] == []
        assert changed(run["again"]) == {}, name


def test_the_service_runs_enabled_and_chrony_wait_is_enabled_mocked_systemctl(runs):
    for name, run in runs.items():
        units = run["node"].fs.units()
        assert units["chrony.service"] == {"active": True, "enabled": True}, (name, units)
        assert units["chrony-wait.service"] == {"enabled": True}, (name, units)
        # the unit files changed in the first run: systemd re-read them before the start
        calls = run["node"].fs.systemctl_calls()
        assert calls.index("daemon-reload") < calls.index("start chrony.service"), (name, calls)


def test_server_config(runs, roots, tmp_path):
    """Orphan mode: the other server as a LAN source, its time first on (re)start, the same
    local stratum on both; the subnet served only once chrony.service has started (after
    initstepslew), by the unit's ExecStartPost, never from chrony.conf."""
    assert lines(roots["alpha"] / CONF) == [
        f"server {BETA} {LAN_OPTIONS}",
        f"initstepslew 1 {BETA}",
        "local stratum 8 orphan",
        *TAIL,
    ]
    beta = lines(roots["beta"] / CONF)
    assert beta[:3] == [f"server {ALPHA} {LAN_OPTIONS}", f"initstepslew 1 {ALPHA}", "local stratum 8 orphan"]
    for name in ("alpha", "beta"):
        assert lines(roots[name] / SERVE_DROPIN) == [
            "[Service]",
            f"ExecStartPost=/usr/bin/chronyc -h {COMMAND_SOCKET} allow {SUBNET}",
        ], name
    assert not (roots["delta"] / SERVE_DROPIN).exists()
    if not os.path.exists(DEBIAN_UNIT):
        pytest.skip(f"no {DEBIAN_UNIT} (package chrony) to verify the drop-in against")
    assert verify_with_dropin(tmp_path, DEBIAN_UNIT, "chrony.service", roots["alpha"] / SERVE_DROPIN) == []


def test_client_config_uses_both_servers_the_vip_votes_and_serves_nobody(runs, roots):
    assert lines(roots["delta"] / CONF) == [
        f"server {ALPHA} {LAN_OPTIONS} prefer",
        f"server {BETA} {LAN_OPTIONS} prefer",
        f"server {VIP} {LAN_OPTIONS}",
        *TAIL,
    ]


def test_client_config_without_the_vip_vote(salt_factories, tmp_path, secrets_dir):
    node = make_node(salt_factories, "psi", tmp_path, secrets_dir, chrony={"vip_vote": False})
    assert not failed(node.sls("chrony"))
    assert lines(tmp_path / CONF) == [f"server {ALPHA} {LAN_OPTIONS}", f"server {BETA} {LAN_OPTIONS}", *TAIL]


def test_real_chronyd_accepts_the_rendered_configs(runs, roots):
    for name in roots:
        res = subprocess.run(["chronyd", "-p", "-f", str(roots[name] / CONF)], capture_output=True, text=True, check=False)
        assert res.returncode == 0, (name, res.stderr)


def test_not_on_nspawn_no_dropin_and_clock_control(runs, roots):
    assert not (roots["alpha"] / "etc/systemd/system/chrony.service.d/nspawn.conf").exists()
    assert lines(roots["alpha"] / "etc/default/chrony") == ['DAEMON_OPTS="-F 1"']


def test_on_nspawn_the_unit_runs_without_cap_sys_time_and_never_sets_the_clock(salt_factories, tmp_path, secrets_dir):
    node = make_node(salt_factories, "delta", tmp_path, secrets_dir, grains={"virtual": "systemd-nspawn"})
    ret = node.sls("chrony")
    assert not failed(ret), failed(ret)
    assert lines(tmp_path / "etc/default/chrony") == ['DAEMON_OPTS="-F 1 -x"']
    assert lines(tmp_path / "etc/systemd/system/chrony.service.d/nspawn.conf") == ["[Unit]", "ConditionCapability="]
    # chronyd -x never corrects the clock: chrony-wait does not look at the remaining correction
    assert "ExecStart=/usr/bin/chronyc -h 127.0.0.1,::1 waitsync 0 0 0 1" in lines(tmp_path / WAIT_DROPIN)


def test_upstream_servers_from_the_inventory(salt_factories, tmp_path, secrets_dir):
    inv = yaml.safe_load(INVENTORY.read_text())
    inv["cluster"]["network"]["ntp_upstream"] = ["192.0.2.123", "ntp.example.org"]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    server = make_node(salt_factories, "beta", tmp_path / "beta", secrets_dir, inventory=path)
    client = make_node(salt_factories, "zeta", tmp_path / "zeta", secrets_dir, inventory=path)
    assert not failed(server.sls("chrony")) and not failed(client.sls("chrony"))
    # upstream at chrony's own polling, first; the other server and orphan mode still there
    assert lines(tmp_path / "beta" / CONF)[:5] == [
        "server 192.0.2.123 iburst", "server ntp.example.org iburst", f"server {ALPHA} {LAN_OPTIONS}",
        f"initstepslew 1 {ALPHA}", "local stratum 8 orphan",
    ]
    assert not any("192.0.2.123" in line for line in lines(tmp_path / "zeta" / CONF))  # clients: the pair only


def test_a_broken_config_is_rejected_and_the_live_one_stays(runs, salt_factories, roots, secrets_dir):
    conf = roots["delta"] / CONF
    before = conf.read_bytes()
    broken = make_node(salt_factories, "delta", roots["delta"], secrets_dir, chrony={"server_options": "iburst bogus"})
    ret = broken.sls("chrony")
    result = by_id(ret, "chrony-config-file-managed")
    assert result["result"] is False and "check_cmd execution failed" in result["comment"]
    assert conf.read_bytes() == before


# ------------------------------------------------------------------------------------------
# time ordering: chrony-wait (bounded), dhcpd and named after time-sync.target


def verify_with_dropin(tmp_path, unit_source, unit_name, dropin):
    """``systemd-analyze verify`` of ``unit_source`` (copied as ``unit_name``) with ``dropin`` in
    its ``.d`` directory; first proves that verify reads that directory (a bad key is reported)."""
    base = tmp_path / f"verify-{unit_name}"
    (base / f"{unit_name}.d").mkdir(parents=True)
    shutil.copy(unit_source, base / unit_name)
    probe = base / f"{unit_name}.d" / dropin.name
    if shutil.which("systemd-analyze"):
        probe.write_text(dropin.read_text() + "\n[Unit]\nNoSuchKey=1\n")
        assert any(str(probe) in line for line in verify_unit(base / unit_name)), "verify ignores drop-ins"
    shutil.copy(dropin, probe)
    return verify_unit(base / unit_name)


def wait_commands(dropin):
    """The ExecStart= lines of a chrony-wait drop-in (after its reset) as (may fail, argv), and
    TimeoutStartSec: what systemd runs, in order, within that time."""
    commands, timeout = [], None
    for line in dropin.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "TimeoutStartSec":
            timeout = float(value)
        elif key == "ExecStart":
            if not value:
                commands = []
                continue
            commands.append((value.startswith("-"), shlex.split(value.lstrip("-").replace("$$", "$"))))
    return commands, timeout


def test_chrony_wait_is_bounded_and_accepts_the_orphan_parent_on_servers(runs, roots, tmp_path):
    server = roots["alpha"] / WAIT_DROPIN
    commands, timeout = wait_commands(server)
    assert timeout == 60
    assert commands == [
        (True, ["/usr/bin/chronyc", "-h", "127.0.0.1,::1", "waitsync", "10", "0.1", "0", "1"]),
        (False, ["/bin/sh", "-c", '/usr/bin/chronyc -h 127.0.0.1,::1 -n -c tracking | /usr/bin/grep -Eqv '
                                  '"^00000000,|,Not synchronised$"']),
    ]
    client = roots["delta"] / WAIT_DROPIN
    assert wait_commands(client) == ([(False, ["/usr/bin/chronyc", "-h", "127.0.0.1,::1", "waitsync", "0", "0.1", "0", "1"])], 60)
    if not os.path.exists(DEBIAN_WAIT_UNIT):
        pytest.skip(f"no {DEBIAN_WAIT_UNIT} (package chrony) to verify the drop-ins against")
    for role, dropin in (("server", server), ("client", client)):
        assert verify_with_dropin(tmp_path / role, DEBIAN_WAIT_UNIT, "chrony-wait.service", dropin) == [], role


def test_dhcpd_and_named_start_after_time_sync(salt_factories, tmp_path, secrets_dir):
    dhcpd_root, bind_root = tmp_path / "dhcpd", tmp_path / "bind"
    dhcpd = make_node(salt_factories, "alpha", dhcpd_root, secrets_dir, dhcpd={"interface": "eth0"})
    for sid in ("dhcpd-unit-file-managed", "dhcpd-time-sync-dropin-file-managed"):
        ret = dhcpd.sls_id(sid, "dhcpd")
        assert not failed(ret), failed(ret)
    bind = make_node(salt_factories, "alpha", bind_root, secrets_dir, grains={"roles": ["lanservices"]})
    ret = bind.sls_id("bind-time-sync-dropin-file-managed", "bind")
    assert not failed(ret), failed(ret)
    unit = dhcpd_root / "etc/systemd/system/isc-dhcp-server.service"
    dhcpd_dropin = dhcpd_root / "etc/systemd/system/isc-dhcp-server.service.d/time-sync.conf"
    named_dropin = bind_root / "etc/systemd/system/named.service.d/time-sync.conf"
    for dropin in (dhcpd_dropin, named_dropin):
        assert [line for line in lines(dropin)] == ["[Unit]", "Wants=time-sync.target", "After=time-sync.target"]
    assert verify_with_dropin(tmp_path, unit, "isc-dhcp-server.service", dhcpd_dropin) == []
    named_unit = "/lib/systemd/system/named.service"
    if not os.path.exists(named_unit):
        pytest.skip(f"no {named_unit} (package bind9) to verify the named drop-in against")
    assert verify_with_dropin(tmp_path, named_unit, "named.service", named_dropin) == []


# ------------------------------------------------------------------------------------------
# real chronyd in network namespaces: alpha, beta (no upstream) and a client, delta


class NtpLan:
    """chronyd per node as systemd starts it (forking: the command returns once chronyd serves,
    i.e. after initstepslew), stopped by its pid file; the VIP as an address on one node."""

    def __init__(self, lan, runs, roots, base):
        self.lan, self.runs, self.roots, self.base = lan, runs, roots, base
        self.pids = {}

    def path(self, name, leaf):
        return self.base / name / leaf

    def prepare(self, name, drift=None):
        run = self.base / name
        run.mkdir(mode=0o700, exist_ok=True)
        if drift is not None:
            (run / "drift").write_text(drift)
        # the rendered file, plus run-time paths of this test (later directives win); the
        # command port stays on the namespace's loopback, for the chrony-wait commands. chronyd's
        # own logs of every sample, selection and clock update, for a post-mortem (basetemp)
        (run / "chrony.conf").write_text(
            f"include {self.roots[name] / CONF}\n"
            f"driftfile {run}/drift\npidfile {run}/chronyd.pid\nbindcmdaddress {run}/chronyd.sock\n"
            f"logdir {run}\nlog measurements selection tracking\n"
        )

    def start(self, name):
        """Start chronyd like chrony.service (Type=forking), then the rendered drop-in's
        ExecStartPost= commands (a server: the subnet allowed), on this node's command socket;
        seconds until systemd would see the unit started."""
        run = self.base / name
        started = time.monotonic()
        res = self.lan.run(name, "chronyd", "-x", "-u", "root", "-f", str(run / "chrony.conf"), "-l",
                           str(run / "chronyd.log"), timeout=90)
        assert res.returncode == 0, (name, res.stdout, res.stderr, self.log(name))
        self.pids[name] = int((run / "chronyd.pid").read_text())
        for argv in start_post_commands(self.roots[name] / SERVE_DROPIN):
            argv = [str(run / "chronyd.sock") if arg == COMMAND_SOCKET else arg for arg in argv]
            res = self.lan.run(name, *argv, timeout=30)
            assert res.returncode == 0, (name, argv, res.stdout, res.stderr)
        return time.monotonic() - started

    def kill(self, name, sig=signal.SIGKILL):
        pid = self.pids.pop(name, None)
        if pid:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
            for _ in range(100):
                if not os.path.exists(f"/proc/{pid}"):
                    break
                time.sleep(0.05)

    def log(self, name):
        path = self.base / name / "chronyd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def status(self, name):
        return self.runs[name]["node"].loaders.modules.chrony.status(socket=str(self.base / name / "chronyd.sock"))

    def gate(self, name):
        """Run the rendered chrony-wait drop-in's commands in the node as systemd would: in
        order, a failing '-' command ignored, all within TimeoutStartSec. (ok, seconds, why)."""
        commands, timeout = wait_commands(self.roots[name] / WAIT_DROPIN)
        started = time.monotonic()
        for may_fail, argv in commands:
            left = timeout - (time.monotonic() - started)
            try:
                res = self.lan.run(name, *argv, timeout=max(left, 0.1))
            except subprocess.TimeoutExpired:
                return False, time.monotonic() - started, f"TimeoutStartSec={timeout:g} s"
            if res.returncode != 0 and not may_fail:
                return False, time.monotonic() - started, f"{argv}: exit {res.returncode} {res.stdout}{res.stderr}"
        return True, time.monotonic() - started, ""

    def ip(self, name, *args):
        res = self.lan.run(name, "ip", *args)
        assert res.returncode == 0, (name, args, res.stderr)

    def stop_all(self):
        for name in list(self.pids):
            self.kill(name, signal.SIGTERM)


def start_post_commands(dropin):
    """The ExecStartPost= command lines of a chrony.service drop-in (none when it is absent)."""
    if not dropin.exists():
        return []
    commands = [line.partition("=")[2] for line in lines(dropin) if line.startswith("ExecStartPost=")]
    return [shlex.split(command) for command in commands]


def in_threads(**calls):
    """Run the callables at once; {name: result}."""
    out = {}

    def run(name, call):
        out[name] = call()

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


def watch_client(ntp, until, timeout, also=None):
    """Poll delta's status (and ``also``'s) every 0.5 s until ``until(samples)`` is truthy;
    (seconds, every sample of delta). Fails after ``timeout`` seconds."""
    started = time.monotonic()
    samples = []
    while True:
        now = time.monotonic() - started
        try:
            st = ntp.status("delta")
            samples.append((round(now, 1), st["synchronised"], st["reference"], st["stratum"]))
        except Exception as exc:  # pylint: disable=broad-except
            samples.append((round(now, 1), None, str(exc), None))
        if until(samples):
            return now, samples
        if now > timeout:
            raise AssertionError(f"timed out after {timeout} s; delta: {samples[-10:]}; {also and also()}")
        time.sleep(0.5)


def unsynchronised(samples):
    return [s for s in samples if s[1] is not True]


def synchronisation(samples):
    """How delta fared over ``samples``, for the printed summary: the truth either way."""
    bad = unsynchronised(samples)
    if not bad:
        return f"delta never unsynchronised ({len(samples)} samples)"
    return f"delta UNSYNCHRONISED in {len(bad)} of {len(samples)} samples: {bad[:5]}"


def log_times(text, needle):
    """The timestamps (ISO, UTC: they sort as text) of the chronyd log lines containing ``needle``."""
    return [line.split(" ", 1)[0] for line in text.splitlines() if needle in line]


@pytest.fixture(scope="module")
def ntp(runs, roots, tmp_path_factory):
    if not HAVE_NETNS:
        pytest.skip("needs root and `ip netns` (private network namespaces)")
    nodes = {"alpha": {"ip": f"{ALPHA}/24"}, "beta": {"ip": f"{BETA}/24"}, "delta": {"ip": f"{DELTA}/24"}}
    base = tmp_path_factory.mktemp("chronyd")
    with Switch(f"rpic-ch{os.getpid() % 100000}", nodes) as lan:
        ntp = NtpLan(lan, runs, roots, base)
        try:
            # alpha's clock runs 50 ppm off the host's while it leads (chronyd -x keeps its own
            # clock). A restart starts it from the host's clock again: the lab's restarted
            # parent, or a Pi without RTC booting with the time it saved, disagrees with the
            # survivor by a few ms after a minute or two
            ntp.prepare("alpha", drift="50.000000 1.000000\n")
            ntp.prepare("beta")
            ntp.prepare("delta")
            yield ntp
        finally:
            ntp.stop_all()


def test_the_pair_serves_time_and_the_client_follows(ntp):
    """Cold start, no upstream: both servers start at once and neither waits for the other;
    `local stratum 8 orphan` makes alpha (the smaller reference ID) lead and beta follow it;
    delta syncs from them. The chrony-wait gates pass well within their bound."""
    ntp.ip("alpha", "addr", "add", f"{VIP}/24", "dev", "eth0")
    t0 = time.monotonic()
    starts = in_threads(alpha=lambda: ntp.start("alpha"), beta=lambda: ntp.start("beta"))
    starts["delta"] = ntp.start("delta")
    gates = in_threads(**{name: (lambda name=name: ntp.gate(name)) for name in ("alpha", "beta", "delta")})
    print(f"\ncold start: chronyd started (initstepslew done) in {', '.join(f'{n} {s:.1f} s' for n, s in starts.items())}")
    print("chrony-wait passed in " + ", ".join(f"{n} {g[1]:.1f} s" for n, g in gates.items()))
    assert max(starts.values()) < 30, starts
    assert all(ok for ok, _, _ in gates.values()), gates
    assert all(took < 60 for _, took, _ in gates.values()), gates

    def client_synced():
        out = ntp.status("delta")
        return out["synchronised"] and out["reference"] in (ALPHA, BETA) and out

    delta = wait_for(client_synced, 60, step=0.5, what="delta synchronised to alpha or beta")
    assert delta["sources_total"] == 3
    assert {s["name"] for s in delta["sources"]} == {ALPHA, BETA, VIP}

    def orphan_settled():
        servers = {name: ntp.status(name) for name in ("alpha", "beta")}
        leaders = [n for n, s in servers.items() if s["local"] and s["stratum"] == 8]
        followers = [n for n, s in servers.items() if not s["local"] and s["synchronised"] and s["stratum"] == 9]
        return len(leaders) == 1 and len(followers) == 1 and servers

    # one server serves its local clock at stratum 8, the other follows it at stratum 9
    servers = wait_for(orphan_settled, 60, step=0.5, what="one server leading, the other following")
    print(f"orphan pair settled and delta synchronised {time.monotonic() - t0:.1f} s after the cold start")
    assert servers["alpha"]["local"] and servers["beta"]["reference"] == ALPHA  # the smaller reference ID leads
    delta = wait_for(lambda: (s := ntp.status("delta"))["sources_reachable"] == 3 and s, 60, step=0.5,
                     what="delta reaching alpha, beta and the VIP")
    assert delta["synchronised"] and delta["stratum"] in (9, 10)


def test_the_client_stays_synchronised_when_the_orphan_parent_loses_power(ntp):
    """alpha's plug pulled: chronyd killed, its link down, the VIP on beta (keepalived). delta
    never loses synchronisation and moves to beta; beta, alone, stays synchronised."""
    wait_for(lambda: ntp.status("delta")["synchronised"], 60, step=0.5, what="delta synchronised")
    ntp.kill("alpha")
    ntp.ip("alpha", "link", "set", "eth0", "down")
    ntp.ip("alpha", "addr", "del", f"{VIP}/24", "dev", "eth0")
    ntp.ip("beta", "addr", "add", f"{VIP}/24", "dev", "eth0")
    took, samples = watch_client(ntp, lambda s: s[-1][1] and s[-1][2] == BETA, 240, also=lambda: ntp.status("beta"))
    print(
        f"\nalpha lost power: delta on beta after {took:.1f} s, {synchronisation(samples)}: "
        f"{samples[0]} ... {samples[-1]}"
    )
    assert unsynchronised(samples) == [], unsynchronised(samples)
    beta = ntp.status("beta")
    # its last estimate of the dead parent (until its root distance reaches 1 s), or its own clock
    print(f"beta alone: reference {beta['reference']}, stratum {beta['stratum']}")
    assert beta["synchronised"]
    assert (beta["reference"], beta["stratum"]) in ((ALPHA, 9), ("local", 8)), beta


def test_the_parent_comes_back_without_unsynchronising_the_client(ntp):
    """The flake of issue 12: alpha comes back with a clock that disagrees with beta's. It takes
    beta's time (initstepslew) before it answers anyone: beta, which follows the orphan parent's
    first answer, takes alpha's clock only once aligned. The VIP (delta's third vote) is still on
    beta until alpha's gate opened (named, then keepalived). delta stays synchronised all along;
    alpha leads again and beta follows it."""
    ntp.ip("alpha", "link", "set", "eth0", "up")
    done = {}
    starter = threading.Thread(target=lambda: done.update(start=ntp.start("alpha"), gate=ntp.gate("alpha")))
    starter.start()
    took, samples = watch_client(ntp, lambda s: "gate" in done, 120)
    starter.join()
    ntp.ip("beta", "addr", "del", f"{VIP}/24", "dev", "eth0")
    ntp.ip("alpha", "addr", "add", f"{VIP}/24", "dev", "eth0")

    def settled(_samples):
        # beta has selected alpha again (not only its last estimate of the dead parent)
        alpha, beta = ntp.status("alpha"), ntp.status("beta")
        return (
            alpha["local"]
            and alpha["stratum"] == 8
            and beta["selected"] == ALPHA
            and beta["reference"] == ALPHA
            and beta["stratum"] == 9
        )

    took2, more = watch_client(ntp, settled, 120, also=lambda: (ntp.status("alpha"), ntp.status("beta")))
    offset = [line for line in ntp.log("alpha").splitlines() if "initial offset" in line or "initstepslew" in line]
    # beta's selections of alpha since alpha's restart (none logged if beta never dropped it)
    restarted = log_times(ntp.log("alpha"), "chronyd version")[-1]
    taken = [t for t in log_times(ntp.log("beta"), f"Selected source {ALPHA}") if t >= restarted]
    print(
        f"\nalpha back: chronyd started in {done['start']:.1f} s "
        f"({offset[-1] if offset else 'no initstepslew line'}), chrony-wait passed {done['gate'][1]:.1f} s later; "
        f"beta took alpha again at {taken or '-'}; alpha leading, beta following {took + took2:.1f} s after the "
        f"start; {synchronisation(samples + more)}"
    )
    assert done["gate"][0], done["gate"]
    assert offset and "initial offset" in offset[-1], ntp.log("alpha")
    aligned = log_times(offset[-1], "initial offset")[0]
    assert all(t >= aligned for t in taken), ("beta took alpha's clock before it was aligned", aligned, taken)
    assert unsynchronised(samples + more) == [], unsynchronised(samples + more)


def test_a_server_alone_serves_its_own_clock_within_the_bound(ntp):
    """Both servers down, beta starts alone: initstepslew gives up on alpha within seconds,
    chrony-wait passes on its own clock, and delta synchronises to it."""
    ntp.kill("alpha")
    ntp.kill("beta")
    started = ntp.start("beta")
    ok, took, why = ntp.gate("beta")
    print(f"\nbeta alone: chronyd started in {started:.1f} s, chrony-wait passed {took:.1f} s later")
    assert started < 30 and ok and took < 60, (started, ok, took, why)
    beta = ntp.status("beta")
    assert beta["synchronised"] and beta["local"] and beta["stratum"] == 8, beta

    def on_the_new_beta():
        out = ntp.status("delta")
        src = {s["name"]: s for s in out["sources"]}[BETA]
        return out["synchronised"] and out["selected"] == BETA and src["last_rx"] < 16 and out

    started = time.monotonic()
    wait_for(on_the_new_beta, 120, step=0.5, what="delta synchronised to the restarted beta")
    print(f"delta on the restarted beta {time.monotonic() - started:.1f} s after its gate")
