"""End-to-end fixtures for the virtual lab (lab/): the whole inventory booted once per session.

Other end-to-end tests (bootstrap, DNS, ...) reuse the session fixture ``lab``:

    def test_something(lab):
        assert lab.run("alpha", "hostname").stdout.strip() == "alpha"

They skip (one line) only when not root or when systemd-nspawn nodes cannot run here (as root a
skip fails the run: tests/conftest.py).
Set LAB_KEEP=1 to leave the lab running after the session (for debugging).
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# LAB_INSTANCE is set by tests/conftest.py (the tests' own lab), before anything imports lab.
from lab import DEFAULT_INVENTORY, STATE, access, host  # noqa: E402
from lab import node as node_mod  # noqa: E402  pylint: disable=wrong-import-position
from lab.inventory import load as load_inventory  # noqa: E402  pylint: disable=wrong-import-position
from lab.router import NAME as ROUTER  # noqa: E402  pylint: disable=wrong-import-position


def _skip_reason():
    if os.geteuid() != 0:
        return "lab tests need root (namespaces, mounts, a bridge)"
    reason = host.preflight()
    return f"systemd-nspawn nodes cannot run here: {reason}" if reason else None


# where the bootstrap put the lab's inventory on the deployer (lab/cluster.py copies the checkout)
INVENTORY_ON_DEPLOYER = f"/srv/cluster/{DEFAULT_INVENTORY.relative_to(REPO)}"
NETWORK = load_inventory(DEFAULT_INVENTORY)["network"]  # the lab's subnet, VIP, pool, router


class Lab:
    """Drive the lab: ``cli(*args)``, ``status()``, ``run(node, cmd)``."""

    state = STATE

    def cli(self, *args, check=True, timeout=900):
        """``python3 -m lab ARGS`` from the repo root; CompletedProcess (text)."""
        proc = subprocess.run(
            [sys.executable, "-m", "lab", *map(str, args)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"python3 -m lab {' '.join(map(str, args))} exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def status(self):
        return json.loads(self.cli("status", "--json").stdout)

    @property
    def nodes(self):
        return list(self.status()["nodes"])

    def ip(self, node):
        return self.status()["nodes"][node]["ip"]

    @staticmethod
    def on_router(cmd):
        """Run ``cmd`` inside the router stand-in (nsenter: the lab has no login there); stdout."""
        return node_mod.run_in(node_mod.Node(ROUTER), ["sh", "-c", cmd]).stdout

    def run(self, node, cmd, timeout=60, check=False):
        """Run the shell command ``cmd`` on ``node`` over SSH: as the admin with the lab key through
        the deployer (the nodes' firewalls take SSH from cluster nodes only), or as pi with the
        default password while the node is vanilla (no firewall yet). CompletedProcess (text)."""
        ip = node if node[0].isdigit() else self.ip(node)
        proc = None
        for argv in (access.as_admin(ip, [cmd]), access.as_pi(ip, [cmd])):
            try:
                proc = subprocess.run(
                    argv, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
                )
            except subprocess.TimeoutExpired as exc:
                # a node that lost power: the deployer's connection to it (ssh -W) waits for TCP's
                # own timeout (minutes) where a direct ssh gave up after ConnectTimeout; a failure
                out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
                proc = subprocess.CompletedProcess(argv, 255, out, f"no answer within {timeout} s")
                break
            if not access.auth_failed(proc):
                break
        if check and proc.returncode != 0:
            raise AssertionError(f"{node}: {cmd!r} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc


@pytest.fixture(scope="session")
def lab_cli():
    """The lab's command line, nothing started (skips when the lab cannot run here)."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    return Lab()


@pytest.fixture(scope="session")
def lab(lab_cli):  # pylint: disable=redefined-outer-name
    """Every node of the lab's inventory built, booted and answering SSH (once per session)."""
    lab_cli.cli("build", timeout=1800)
    lab_cli.cli("up", timeout=600)
    st = lab_cli.status()
    down = [n for n, s in st["nodes"].items() if s["state"] != "running"]
    assert not down, f"nodes not running after up: {down}"
    yield lab_cli
    if not os.environ.get("LAB_KEEP"):
        lab_cli.cli("down", check=False, timeout=300)


@pytest.fixture(scope="session")
def cluster(lab):  # pylint: disable=redefined-outer-name
    """The lab bootstrapped: salt-master on psi, every node a connected minion (once per session).
    LAB_REUSE=1 takes the running lab as it is (a developer re-running one module)."""
    if os.environ.get("LAB_REUSE"):
        return lab
    started = time.monotonic()
    proc = lab.cli("bootstrap", timeout=1800)
    print(f"\nlab bootstrap: {time.monotonic() - started:.1f} s\n{proc.stdout[-600:]}")
    return lab


@pytest.fixture(scope="session")
def rolled_out(cluster):  # pylint: disable=redefined-outer-name
    """The bootstrapped lab rolled out once per session: `salt-run state.orch orch.cluster` on psi
    (every node highstated in order and marked provisioned). Not with LAB_REUSE=1."""
    if os.environ.get("LAB_REUSE"):
        return cluster
    started = time.monotonic()
    proc = cluster.cli("orch", timeout=1800)
    print(f"\norch.cluster: {time.monotonic() - started:.1f} s\n{proc.stderr[-1500:]}")
    return cluster


def salt_run(lab, args, timeout=600):  # pylint: disable=redefined-outer-name
    """`salt-run ARGS` on the deployer: (exit code, JSON output parsed, stderr)."""
    proc = lab.run("psi", f"sudo salt-run -t {timeout} --out json {args}", timeout=timeout + 60)
    try:
        data = json.loads(proc.stdout or "null")
    except ValueError:
        data = proc.stdout
    return proc.returncode, data, proc.stderr


def salt(lab, args, timeout=300):  # pylint: disable=redefined-outer-name
    """`salt ARGS` on the deployer, JSON output parsed."""
    # -t: on 2 cores, busy minions miss the find_job polls of the default 5 s timeout
    proc = lab.run("psi", f"sudo salt -t {timeout} --out json --static {args}", timeout=timeout + 30)
    try:
        return json.loads(proc.stdout or "{}")
    except ValueError:
        raise AssertionError(f"salt {args}: {proc.stdout}\n{proc.stderr}") from None


def changes(state_returns):
    """{minion: [state ids that changed]} from a state run's JSON (a failure is an error)."""
    out = {}
    for minion, ret in state_returns.items():
        assert isinstance(ret, dict), f"{minion}: {ret}"
        failed = {sid: s.get("comment") for sid, s in ret.items() if s.get("result") is False}
        assert not failed, f"{minion}: {failed}"
        out[minion] = sorted(sid.split("_|-")[1] for sid, s in ret.items() if s.get("changes"))
    return out


class DnsLoad:
    """DNS-OARC's dnsperf at ``qps`` queries/s (the A records of ``names``) through the VIP until
    stopped; its counters parsed (sent, completed, lost)."""

    def __init__(self, vip, domain, tmp_path, names, qps):
        self.data = tmp_path / "queries"
        self.data.write_text("".join(f"{n}.{domain} A\n" for n in names))
        self.vip, self.qps = vip, qps

    def __enter__(self):
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ["dnsperf", "-s", self.vip, "-d", str(self.data), "-Q", str(self.qps), "-l", "3600", "-t", "2", "-c", "1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.started = time.monotonic()
        return self

    def stop(self):
        self.proc.send_signal(signal.SIGINT)  # dnsperf stops sending, waits for the timeout, reports
        out, _ = self.proc.communicate(timeout=60)
        self.seconds = time.monotonic() - self.started

        def count(label):
            found = re.search(rf"{label}:\s+(\d+)", out)
            assert found, f"dnsperf printed no '{label}':\n{out}"
            return int(found.group(1))

        self.sent, self.completed, self.lost = count("Queries sent"), count("Queries completed"), count("Queries lost")
        return out

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
