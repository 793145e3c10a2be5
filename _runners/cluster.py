"""
The cluster model on the master, for orchestration and reporting.

Imports the same model (the ``rpicluster`` package) and reads the same inventory as the
pillar, so ``salt-run`` and ``state.orch`` see exactly what the minions see.

CLI Example:

.. code-block:: bash

    salt-run cluster.nodes role=compute
"""

import datetime
import fcntl
import json
import logging
import os
import subprocess
import sys
import time

import salt.client
import salt.minion
import salt.utils.files
import salt.utils.jid
from salt.exceptions import CommandExecutionError

try:
    from rpicluster import model, views

    HAS_MODEL = True
except ImportError:
    HAS_MODEL = False

log = logging.getLogger(__name__)

__virtualname__ = "cluster"


def __virtual__():
    if not HAS_MODEL:
        return (False, "the rpicluster package is not importable: bootstrap/deployer puts it on the master's Python path")
    return __virtualname__


def inventory():
    """
    The validated inventory (what the ``cluster`` pillar holds).

    CLI Example:

    .. code-block:: bash

        salt-run cluster.inventory
    """
    path = __opts__.get("cluster_inventory")
    if not path:
        raise CommandExecutionError("set cluster_inventory in the master config (master.d/cluster.conf)")
    return model.load_inventory(path)["cluster"]


def nodes(role=None):
    """
    Node names, ordered by IP, optionally of one role.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.nodes
        salt-run cluster.nodes role=lanservices
    """
    return views.nodes(inventory(), role)


def lanservices():
    """
    The lanservices pair: ``{"primary": ..., "secondary": ...}``.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.lanservices
    """
    return views.lanservices(inventory())


def k3s_server():
    """
    The compute node that runs the k3s server (the first compute node by IP).

    CLI Example:

    .. code-block:: bash

        salt-run cluster.k3s_server
    """
    return views.k3s_server(inventory())


# --------------------------------------------------------------------------------------
# Rebuild: the plan, the per-node build lock, the provisioned marker, the human step.
# The master keeps its records as small JSON files under <cachedir>/cluster/:
#   provisioned/NODE  the last successful build (the node carries the same time in its
#                     cluster_provisioned grain; a re-flashed card has no grain)
#   requested/NODE    cluster.rebuild asked for a build (cleared by the build)
#   failed/NODE       the last failed build
#   locks/NODE        a build in progress (expires by itself)
# --------------------------------------------------------------------------------------

PROVISIONED_GRAIN = "cluster_provisioned"
LOCK_TTL = 1800  # s: a build that died without unlocking frees its node after this
MAX_BUILDS = 2  # builds at once: two Pis highstating already load the deployer
HEALTH_TIMEOUT = {"lanservices": 900, "default": 300}  # s (lanservices: one DHCP MCLT + margin)


def _now():
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _records(kind):
    path = os.path.join(__opts__["cachedir"], "cluster", kind)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _read(kind, node):
    try:
        with open(os.path.join(_records(kind), node), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write(kind, node, data):
    path = os.path.join(_records(kind), node)
    with salt.utils.files.fopen(path + ".new", "w") as handle:
        json.dump(data, handle)
    os.replace(path + ".new", path)


def _remove(kind, node):
    try:
        os.remove(os.path.join(_records(kind), node))
    except FileNotFoundError:
        pass


def _fail(message):
    """A refusal the caller sees: a salt.runner orchestration step fails; salt-run exits 1
    when ``message`` is a report (salt-run takes its exit code from a ``retcode`` key)."""
    __context__["retcode"] = 1
    log.info("cluster: %s", message)
    if isinstance(message, dict):
        message["retcode"] = 1
    return message


def _progress(message, audit=False):
    """A line on the salt-run console while the runner works. ``audit``: also appended to
    cluster-audit.log beside the master's log (the trust decisions an admin declared)."""
    log.info("cluster: %s", message)
    if audit:
        path = os.path.join(os.path.dirname(__opts__.get("log_file") or "/var/log/salt/master"), "cluster-audit.log")
        with salt.utils.files.fopen(path, "a") as handle:
            handle.write(f"{_now()} {message}\n")
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def _local():
    return salt.client.get_local_client(__opts__["conf_file"])


def _call(tgt, fun, arg=(), timeout=30, tgt_type="glob"):
    """``fun`` on the minions ``tgt``: {minion: return}; a minion that does not answer is missing."""
    out = {}
    for ret in _local().cmd_iter(tgt, fun, arg=list(arg), timeout=timeout, tgt_type=tgt_type):
        for minion, data in ret.items():
            if isinstance(data, dict) and "ret" in data:
                out[minion] = data["ret"]
    return out


def orchestrate(mods, pillar=None):
    """
    ``state.orchestrate`` that runs beside other orchestrations. Salt's own refuses to start
    while any state job runs on the master (another node's build, a salt-ssh run), so a
    second re-flashed node would never be built; the per-node build lock keeps two builds of
    one node apart instead. Used by the reactor and by ``cluster.rebuild``.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.orchestrate orch.rebuild pillar='{"node": "gamma"}'
    """
    if pillar is not None and not isinstance(pillar, dict):
        raise CommandExecutionError("pillar must be a dictionary")
    opts = dict(__opts__, file_client="local")
    jid = salt.utils.jid.gen_jid(opts)
    with salt.minion.MasterMinion(opts) as minion:
        running = minion.functions["state.sls"](
            mods, pillar=pillar, concurrent=True, __pub_jid=jid, orchestration_jid=jid
        )
        ret = {"data": {minion.opts["id"]: running}, "outputter": "highstate"}
    ok = isinstance(running, dict) and all(isinstance(s, dict) and s.get("result") is not False for s in running.values())
    ret["retcode"] = 0 if ok else 1
    if not ok:
        __context__["retcode"] = 1
    return ret


def _orchestration_failures(ret):
    """``state id: comment`` of each step of an orchestration return that failed by itself."""
    steps = next(iter((ret.get("data") or {}).values()), None) if isinstance(ret, dict) else None
    if not isinstance(steps, dict):
        return [f"the orchestration did not run: {steps}"]
    out = []
    for sid, step in steps.items():
        comment = str(step.get("comment")) if isinstance(step, dict) else str(step)
        if isinstance(step, dict) and (step.get("result") is not False or comment.startswith("One or more requisite")):
            continue
        said = (step.get("changes") or {}).get("return") if isinstance(step, dict) else None
        if isinstance(said, str):  # a salt.runner step: what the runner said
            comment = f"{comment} {said}"
        out.append(f"{sid.split('_|-')[1]}: {' '.join(comment.split())[:400]}")
    return out


def _dependents(node, inv):
    """
    What to re-apply on other nodes once ``node`` is rebuilt: [{"name", "tgt", "sls"}].
    Everything they derive from a node comes from the inventory (DNS records, DHCP
    reservations, the distcc and MPI host lists), so they are refreshed only when the
    node's inventory entry changed since it was last provisioned (or it never was).
    """
    before = (_read("provisioned", node) or {}).get("entry")
    now = inv["nodes"][node]
    if before == now:
        return []
    others = lambda role: [n for n in views.nodes(inv, role) if n != node]  # noqa: E731
    deps = [{"name": "dns-dhcp", "tgt": others("lanservices"), "sls": ["bind", "dhcpd"]}]
    if "compute" in now["roles"] or "compute" in (before or {}).get("roles", []):
        deps.append({"name": "compute-hosts", "tgt": others("compute"), "sls": ["distcc", "mpich"]})
        deps.append({"name": "distcc-client", "tgt": others("deployer"), "sls": ["distcc.client"]})
    return [d for d in deps if d["tgt"]]


K3S_ARTIFACT = ("k3s", "files", "artifacts", "k3s")  # salt/k3s: no artifact, no k3s


def _k3s_installed():
    """True when the k3s artifact is on the fileserver (else the compute highstate skips k3s)."""
    return any(os.path.isfile(os.path.join(root, *K3S_ARTIFACT)) for root in __opts__["file_roots"]["base"])


def build_plan(node, provisioned=None):
    """
    What a (re)started minion ``node`` needs: ``{"action", "reason", ...}``. ``action`` is

    - ``ignore``: not in the inventory, or a node never provisioned that nobody asked to
      build (the first bring-up is ``orch.cluster``'s, or ``cluster.rebuild``'s);
    - ``refresh``: provisioned already (``provisioned`` is its ``cluster_provisioned``
      grain): a plain restart, only its mine data is refreshed;
    - ``build``: re-flashed (the master provisioned it before, the node has no marker) or
      asked for by ``cluster.rebuild``; then also ``roles``, ``survivor`` (the lanservices
      peer that takes the DHCP pool meanwhile), ``k3s_server`` and ``machine_id`` (to forget
      the old k3s Node), and ``dependents`` (states re-applied on other nodes).

    CLI Example:

    .. code-block:: bash

        salt-run cluster.build_plan gamma
    """
    inv = inventory()
    if node not in inv["nodes"]:
        return {"action": "ignore", "reason": "not a node of the inventory: nothing to do"}
    if provisioned:
        return {"action": "refresh", "reason": f"provisioned ({provisioned}): its mine data only"}
    before, requested = _read("provisioned", node), _read("requested", node)
    if not (before or requested):
        return {
            "action": "ignore",
            "reason": "never provisioned: salt-run state.orch orch.cluster or salt-run cluster.rebuild builds it",
        }
    roles = views.roles(inv, node)
    plan = {
        "action": "build",
        "reason": (
            f"rebuild asked for at {requested['time']}" if requested
            else f"provisioned at {before['time']}, no marker now (re-flashed)"
        ),
        "roles": roles,
        "survivor": None,
        "k3s_server": None,
        "machine_id": None,
        "dependents": _dependents(node, inv),
    }
    if "lanservices" in roles:
        plan["survivor"] = next(n for n in views.nodes(inv, "lanservices") if n != node)
    if "compute" in roles and _k3s_installed():
        server = views.k3s_server(inv)
        if server != node:
            plan["k3s_server"] = server
            plan["machine_id"] = _call(node, "grains.get", ["machine_id"]).get(node)
    return plan


def build_lock(node, owner, ttl=LOCK_TTL, max_builds=MAX_BUILDS, wait=LOCK_TTL):
    """
    Take the build lock of ``node`` for ``owner`` (an orchestration run). Refused when
    another owner builds the node now; waits (up to ``wait`` seconds) while ``max_builds``
    other nodes are being built. The lock expires after ``ttl`` seconds.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.build_lock gamma owner=manual
    """
    deadline = time.monotonic() + float(wait)
    guard = os.path.join(_records("locks"), ".guard")
    while True:
        with salt.utils.files.fopen(guard, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            now = time.time()
            held = _live_locks(prune=True)
            mine = held.get(node)
            if mine and mine.get("owner") != owner:
                return _fail(f"{node} is already being built (since {mine['since']}): not building it twice")
            if mine or len(held) < int(max_builds):
                lock = {"node": node, "owner": owner, "since": _now(), "expires": now + float(ttl)}
                _write("locks", node, lock)
                return lock
        if time.monotonic() > deadline:
            return _fail(f"{node}: {len(held)} builds in progress ({', '.join(sorted(held))}), waited {wait} s")
        time.sleep(5)


def build_unlock(node, owner=None, failed=False):
    """
    Release the build lock of ``node`` (only ``owner``'s lock, when given). ``failed``
    records a failed build (shown by ``cluster.status``).

    CLI Example:

    .. code-block:: bash

        salt-run cluster.build_unlock gamma
    """
    lock = _read("locks", node)
    # a run refused the lock (another run builds the node) built nothing: no failed build
    theirs = lock is not None and owner is not None and lock.get("owner") != owner
    if failed and not theirs:
        _write("failed", node, {"time": _now()})
    if lock and (owner is None or lock.get("owner") == owner):
        _remove("locks", node)
        return f"{node}: build lock released"
    return f"{node}: no build lock of this owner"


def building():
    """
    The builds in progress: ``{node: {"since", "expires", "owner"}}``.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.building
    """
    return _live_locks()


def _live_locks(prune=False):
    """The unexpired build locks: {node: lock}; ``prune`` removes the expired ones."""
    now = time.time()
    out = {}
    for name in os.listdir(_records("locks")):
        lock = _read("locks", name) if not name.startswith(".") else None
        if lock and lock.get("expires", 0) > now:
            out[name] = lock
        elif lock and prune:
            _remove("locks", name)
    return out


def mark_provisioned(nodes):
    """
    The provisioned marker, written at the end of a successful build: the grain
    ``cluster_provisioned`` (the time) on each node, and the master's record. From then on
    a restart of the node's minion is not a rebuild.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.mark_provisioned '[gamma]'
    """
    if isinstance(nodes, str):
        nodes = [n for n in nodes.split(",") if n]
    when = _now()
    done = _call(",".join(nodes), "grains.setval", [PROVISIONED_GRAIN, when], tgt_type="list")
    missing = [n for n in nodes if not isinstance(done.get(n), dict)]
    if missing:
        return _fail(f"no provisioned marker on {', '.join(missing)}: no answer ({done})")
    inv = inventory()
    for node in nodes:  # the entry it was built from: dependents are refreshed when it changes
        _write("provisioned", node, {"time": when, "entry": inv["nodes"].get(node)})
        _remove("requested", node)
        _remove("failed", node)
    return {node: when for node in nodes}


def dhcp_survivor_takes_over(survivor):
    """
    Before its peer is rebuilt (its lease database is gone), ``survivor`` serves the whole
    DHCP pool: partner-down, but only from communications-interrupted (the peer is down);
    a survivor in ``normal`` is left alone. Both return to ``normal`` once the rebuilt peer
    has recovered (``cluster.wait_healthy``).

    CLI Example:

    .. code-block:: bash

        salt-run cluster.dhcp_survivor_takes_over alpha
    """
    states = _call(survivor, "dhcpd_failover.status").get(survivor)
    if not isinstance(states, dict):
        return _fail(f"{survivor}: no DHCP failover status ({states})")
    interrupted = ("communications-interrupted", "resolution-interrupted")
    out = {}
    for peer, state in states.items():
        if state.get("local_state") in interrupted:
            out[peer] = _call(survivor, "dhcpd_failover.partner_down", [peer]).get(survivor)
            _progress(f"{survivor}: DHCP failover {peer}: partner-down while its peer is rebuilt")
        else:
            out[peer] = {"changed": False, "old": state.get("local_state")}
    return out


def _health(node, roles, inv, clock=False):
    """The checks that say ``node`` serves again: {check: (ok, detail)}."""
    checks = {"minion answers": (bool(_call(node, "test.ping", timeout=10).get(node)), "test.ping")}
    if clock:
        sync = _call(node, "chrony.status", timeout=10).get(node)
        checks["clock synchronised"] = (isinstance(sync, dict) and bool(sync.get("synchronised")),
                                        {k: sync.get(k) for k in ("reference", "stratum", "offset")}
                                        if isinstance(sync, dict) else sync)
    if "lanservices" in roles:
        pair = views.lanservices(inv)
        both = [pair["primary"], pair["secondary"]]
        zones = _call(",".join(both), "dnszone.status", tgt_type="list")
        serials = {n: {z: v.get("serial") for z, v in (zones.get(n) or {}).get("zones", {}).items()} for n in both}
        ok = all(serials[n] for n in both) and serials[both[0]] == serials[both[1]] and all(
            all(s for s in serials[n].values()) for n in both
        )
        checks["zones transferred"] = (ok, serials)
        dhcp = _call(",".join(both), "dhcpd_failover.status", tgt_type="list")
        states = {n: sorted({p.get("local_state") for p in (dhcp.get(n) or {}).values()}) if isinstance(dhcp.get(n), dict) else dhcp.get(n) for n in both}
        checks["dhcp failover normal"] = (all(states[n] == ["normal"] for n in both), states)
        vip = _call(",".join(both), "vip.held", tgt_type="list")
        checks["vip on the primary"] = (vip.get(pair["primary"]) is True and vip.get(pair["secondary"]) is False, vip)
    if "compute" in roles:
        peers = [n for n in views.nodes(inv, "compute") if n != node]
        if peers:  # mpiexec's path: the MPI user of another compute node logs in to this one
            ip = inv["nodes"][node]["ip"]
            out = _call(peers[0], "cmd.run_all", [f"su -s /bin/sh -c 'ssh {ip} hostname' computeadm"], timeout=30).get(peers[0])
            ok = isinstance(out, dict) and out.get("retcode") == 0 and out.get("stdout", "").strip() == node
            checks[f"mpi ssh from {peers[0]}"] = (ok, (out or {}).get("stderr", "")[-300:] if isinstance(out, dict) else out)
    return checks


def wait_healthy(node, timeout=None, interval=5, clock=False):
    """
    Wait until ``node`` serves again, by role: its minion answers (and with ``clock``, as
    orch.maintenance asks after a reboot, its clock is synchronised: chrony); lanservices: zones
    transferred (equal serials on both servers), DHCP failover ``normal`` on both peers
    (a rebuilt peer first waits one MCLT in recover-wait), the VIP on the primary; compute:
    the MPI user of another compute node logs in to it (the cluster's SSH host trust).
    Fails naming the checks still failing after ``timeout`` seconds.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.wait_healthy beta
        salt-run cluster.wait_healthy beta clock=True
    """
    inv = inventory()
    roles = views.roles(inv, node)
    if timeout is None:
        timeout = HEALTH_TIMEOUT["lanservices" if "lanservices" in roles else "default"]
    deadline = time.monotonic() + float(timeout)
    while True:
        checks = _health(node, roles, inv, clock=clock)
        failing = {name: detail for name, (ok, detail) in checks.items() if not ok}
        if not failing:
            return {name: "ok" for name in checks}
        if time.monotonic() > deadline:
            return _fail(f"{node} not healthy after {timeout} s: " + "; ".join(f"{k}: {v}" for k, v in failing.items()))
        time.sleep(float(interval))


def _wait_for(check, seconds, interval=2):
    """Poll ``check`` until it is true or ``seconds`` have passed; its last value."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def _repo():
    """The checkout the master serves (file_roots holds <repo>/salt)."""
    for root in __opts__["file_roots"]["base"]:
        if os.path.isfile(os.path.join(root, "..", "Saltfile")):
            return os.path.realpath(os.path.join(root, ".."))
    raise CommandExecutionError("no checkout with a Saltfile above file_roots:base")


def _host_keys(ip, wait=120):
    """The host keys ``ip`` presents now (ssh-keyscan lines); waits up to ``wait`` seconds for
    sshd (a card that just booted may still be making its keys)."""
    deadline = time.monotonic() + wait
    while True:
        proc = subprocess.run(
            ["ssh-keyscan", "-T", "5", "-t", "ed25519,ecdsa,rsa", ip],
            capture_output=True, text=True, timeout=60, check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln and not ln.startswith("#")]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(3)


def _known_hosts():
    """salt-ssh's known_hosts on the deployer (the roster's too)."""
    return __opts__.get("known_hosts_file", "/etc/salt/pki/ssh_known_hosts")


def _fingerprint(line):
    proc = subprocess.run(
        ["ssh-keygen", "-l", "-f", "-"], input=line.split(None, 1)[1], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip()


def _trust_host_key(node, ip, known_hosts):
    """
    Declared trust on first use, for ``node`` only: the host keys the card presents now
    replace the node's old entries in salt-ssh's known_hosts. A key already known is kept.
    Returns the fingerprint of the ed25519 key.
    """
    keys = _host_keys(ip)
    if not keys:
        raise CommandExecutionError(f"{node} ({ip}) presents no SSH host key: is it powered on and on the LAN?")
    known = ""
    if os.path.isfile(known_hosts):
        with salt.utils.files.fopen(known_hosts) as handle:
            known = handle.read()
    main = next((ln for ln in keys if ln.split()[1] == "ssh-ed25519"), keys[0])
    fingerprint = _fingerprint(main)
    if all(" ".join(ln.split()[1:3]) in known for ln in keys):
        return fingerprint, False
    for name in (ip, node):
        subprocess.run(["ssh-keygen", "-R", name, "-f", known_hosts], capture_output=True, check=False)
    with salt.utils.files.fopen(known_hosts, "a") as handle:
        for line in keys:
            handle.write(f"{ip} {' '.join(line.split()[1:3])}\n")
    try:
        os.remove(known_hosts + ".old")
    except FileNotFoundError:
        pass
    return fingerprint, True


def _bootstrap(node, timeout=900):
    """``salt-ssh NODE state.apply bootstrap.minion`` from the checkout: number of changes."""
    salt_ssh = os.path.join(os.path.dirname(sys.executable), "salt-ssh")
    proc = subprocess.run(
        [salt_ssh, "--out", "json", "--static", "--no-color", node, "state.apply", "bootstrap.minion"],
        cwd=_repo(), capture_output=True, text=True, timeout=timeout, check=False,
    )
    try:
        states = json.loads(proc.stdout)[node]
    except (ValueError, KeyError, TypeError):
        raise CommandExecutionError(
            f"salt-ssh {node} state.apply bootstrap.minion failed (exit {proc.returncode}): "
            f"{(proc.stdout + proc.stderr)[-1500:]}"
        ) from None
    if not isinstance(states, dict) or any(
        not isinstance(s, dict) or s.get("result") is False for s in states.values()
    ):
        failed = states if not isinstance(states, dict) else {
            k.split("_|-")[1]: v.get("comment") for k, v in states.items() if not isinstance(v, dict) or v.get("result") is False
        }
        raise CommandExecutionError(f"bootstrap.minion failed on {node}: {failed}")
    return sum(1 for s in states.values() if s.get("changes"))


def rebuild(node, timeout=1800):
    """
    Bring a re-flashed (or broken) node back: the one human step.

    1. refuses a node that is not in the inventory;
    2. trusts the host key the card presents now, for this node only (trust on first use,
       declared by you: the fingerprint is printed and logged; a key already known is kept);
    3. ``salt-ssh NODE state.apply bootstrap.minion`` (admin account, password SSH off, the
       node's own pre-seeded minion key, the master's fingerprint pinned);
    4. the build, ``orch.rebuild`` (the reactor starts it when the new minion starts; else
       this runner does): highstate, what depends on the node, health gate, provisioned
       marker. Returns when the node is provisioned and healthy, or says why not.

    A node that is provisioned and healthy is left as it is (nothing changes).

    CLI Example:

    .. code-block:: bash

        salt-run cluster.rebuild gamma
    """
    return _rebuild(node, timeout, trusted_by="declared by cluster.rebuild")


def _rebuild(node, timeout=1800, trusted_by="declared by cluster.rebuild"):
    """cluster.rebuild; ``trusted_by`` says in the audit log who trusted the card's new host key."""
    started = time.monotonic()
    inv = inventory()
    report = {"node": node, "result": False}
    if node not in inv["nodes"]:
        report["comment"] = f"{node!r} is not a node of the inventory ({', '.join(views.nodes(inv))})"
        return _fail(report)
    if "deployer" in inv["nodes"][node]["roles"]:
        report["comment"] = f"{node} is the deployer (this salt-master): bootstrap/deployer rebuilds it, not itself"
        return _fail(report)
    ip = inv["nodes"][node]["ip"]
    known_hosts = _known_hosts()
    try:
        fingerprint, trusted_now = _trust_host_key(node, ip, known_hosts)
        report["host_key"] = fingerprint
        _remove("waiting", node)  # a node that waited for this command (cluster.dhcp_lease)
        if trusted_now:
            _progress(f"{node} ({ip}): trusting its new host key {fingerprint} ({trusted_by})", audit=True)
        if not _read("provisioned", node) or not _call(node, "grains.get", [PROVISIONED_GRAIN], timeout=10).get(node):
            _write("requested", node, {"time": _now()})
        _progress(f"{node}: salt-ssh state.apply bootstrap.minion")
        report["bootstrap_changes"] = _bootstrap(node)
    except (CommandExecutionError, subprocess.SubprocessError, OSError) as exc:
        report["comment"] = str(exc)
        return _fail(report)

    deadline = time.monotonic() + float(timeout)
    ran_build = waited = False
    while time.monotonic() < deadline:
        if node in building():  # the reactor's build (or another rebuild) is running
            time.sleep(5)
            continue
        marker = _call(node, "grains.get", [PROVISIONED_GRAIN], timeout=10).get(node)
        requested, failed = _read("requested", node), _read("failed", node)
        if marker and not requested:
            rebuilt = trusted_now or report["bootstrap_changes"] or ran_build or waited
            report.update(result=True, provisioned=marker, seconds=round(time.monotonic() - started, 1))
            report["comment"] = f"{node} is provisioned and healthy" + (" (rebuilt)" if rebuilt else ": nothing to do")
            return report
        if requested and failed and failed["time"] >= requested["time"]:
            report["comment"] = f"the build of {node} failed ({failed['time']}): salt-run jobs.list_jobs shows it"
            return _fail(report)
        if not waited:  # the reactor starts the build once the new minion has connected
            waited = True
            _wait_for(lambda: _call(node, "test.ping", timeout=5).get(node), 180)
            _wait_for(lambda: node in building(), 20)
            continue
        if ran_build:
            report["comment"] = f"orch.rebuild ran but {node} carries no provisioned marker"
            return _fail(report)
        _progress(f"{node}: orch.rebuild")
        failures = _orchestration_failures(orchestrate("orch.rebuild", pillar={"node": node}))
        if failures and all("already being built" in f for f in failures):
            continue  # the reactor's build took the lock first: wait for it above
        ran_build = True
        if failures:
            report["comment"] = f"the build of {node} failed at: " + " | ".join(failures)
            return _fail(report)
    report["comment"] = f"{node} was not provisioned within {timeout} s"
    return _fail(report)


# --------------------------------------------------------------------------------------
# The bootstrap router: its DHCP served the vanilla cards until the lanservices pair serves
# --------------------------------------------------------------------------------------

# How each kind of router stops its DHCP and keeps its DNS, run there as root over SSH. Each
# prints "changed" or "unchanged" last. Both end in dnsmasq's no-dhcp-interface.
ROUTER_DHCP_OFF = {
    # OpenWRT's own tools: dhcp.lan.ignore=1 (unproven here: the lab has no OpenWRT)
    "openwrt": (
        'if [ "$(uci -q get dhcp.lan.ignore)" = 1 ]; then echo unchanged; else '
        "uci set dhcp.lan.ignore=1 && uci commit dhcp && /etc/init.d/dnsmasq reload && echo changed; fi"
    ),
    # a Linux router with dnsmasq under systemd (the lab's stand-in), on the interface that
    # holds the router's address; a dnsmasq that does not restart with it gets its old config back
    "dnsmasq": (
        "i=$(ip -o -4 addr show to {ip}/32 | awk '{{print $2; exit}}'); "
        '[ -n "$i" ] || {{ echo "no interface holds {ip}" >&2; exit 1; }}; '
        'f=/etc/dnsmasq.d/zz-cluster-handover.conf; line="no-dhcp-interface=$i"; '
        'if [ "$(cat $f 2>/dev/null)" = "$line" ]; then echo unchanged; exit 0; fi; '
        'echo "$line" > $f; '
        "if systemctl restart dnsmasq; then echo changed; else rm -f $f; systemctl restart dnsmasq; exit 1; fi"
    ),
}
DHCP_SERVING = ("normal", "communications-interrupted", "partner-down")  # a peer in these answers


def router_handover(wait=120):
    """
    Hand DHCP over from the bootstrap router (``cluster.network.router``) to the lanservices
    pair, once a peer of the pair serves (its failover state, waited for up to ``wait``
    seconds): over SSH as root with the deployer's key, the router's own tools turn its DHCP
    off and keep its DNS. Its host key is trusted on first use (a changed key is refused).
    Nothing to do without a router in the inventory, or when its DHCP is already off.
    ``orch.cluster`` runs it after the pair's highstate.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.router_handover
    """
    inv = inventory()
    router = inv["network"].get("router")
    if not router:
        return {"result": True, "changed": False, "comment": "no router in the inventory: nothing to hand over"}
    ip, kind = router["ip"], router["kind"]
    pair = views.lanservices(inv)
    both = ",".join([pair["primary"], pair["secondary"]])

    def serving():
        states = _call(both, "dhcpd_failover.status", tgt_type="list")
        return sorted(n for n, peers in states.items() if isinstance(peers, dict) and any(
            isinstance(p, dict) and p.get("local_state") in DHCP_SERVING for p in peers.values()))

    servers = _wait_for(serving, float(wait), interval=3)
    if not servers:
        return _fail({"result": False, "comment": f"no peer of the lanservices pair ({both}) serves DHCP "
                      f"after {wait} s: the router {ip} keeps serving"})
    key = os.path.join(__opts__.get("cluster_secrets_dir", "/etc/salt/cluster-secrets"), "ssh", "deployer_ed25519")
    known_hosts = _known_hosts()
    proc = subprocess.run(
        ["ssh", "-i", key, "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "StrictHostKeyChecking=accept-new",
         "-o", f"UserKnownHostsFile={known_hosts}", "-o", "LogLevel=ERROR", f"root@{ip}",
         ROUTER_DHCP_OFF[kind].format(ip=ip)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    said = proc.stdout.split()
    if proc.returncode != 0 or not said or said[-1] not in ("changed", "unchanged"):
        return _fail({"result": False, "comment": f"the handover on the router {ip} ({kind}) failed "
                      f"(exit {proc.returncode}): {(proc.stderr or proc.stdout).strip()[-500:]}"})
    changed = said[-1] == "changed"
    if changed:
        _progress(f"router {ip} ({kind}): DHCP handed over to {both} (the router's DHCP is off)", audit=True)
    return {"result": True, "changed": changed, "router": ip, "kind": kind, "serving": servers,
            "comment": f"DHCP is served by {', '.join(servers)}; the router {ip} answers no DHCP"
            + ("" if changed else " (already)")}


# --------------------------------------------------------------------------------------
# Zero-touch rebuild: a DHCP lease for a node whose minion is gone (the dhcp_commits beacon
# of the lanservices pair, through salt/reactor/dhcp-lease.sls)
# --------------------------------------------------------------------------------------

ZERO_TOUCH_INTERVAL = 900  # s: at most one zero-touch rebuild of a node started in this time


def zero_touch_decision(node, inv, connected, last_started, now, interval=ZERO_TOUCH_INTERVAL):
    """
    What a DHCP lease for ``node`` means, as ``(action, why)``: ``ignore`` (not an inventory
    node, the deployer, a node whose minion is connected: a renewal, or a rebuild started less
    than ``interval`` s ago), ``wait`` (a node with ``rebuild: manual`` whose minion is gone:
    it waits for ``salt-run cluster.rebuild``) or ``rebuild`` (``rebuild: auto``).

    CLI Example:

    .. code-block:: bash

        salt-run cluster.zero_touch_decision gamma "$(salt-run cluster.inventory --out=json)" "[]" 0 0
    """
    spec = (inv.get("nodes") or {}).get(node)
    if spec is None:
        return "ignore", f"{node!r} is not a node of the inventory"
    if "deployer" in spec["roles"]:
        return "ignore", f"{node} is the deployer: bootstrap/deployer rebuilds it"
    if node in connected:
        return "ignore", f"{node}'s minion is connected (a lease renewal)"
    if spec.get("rebuild", "manual") != "auto":
        return "wait", f"{node}'s minion is gone and it has rebuild: manual: salt-run cluster.rebuild {node}"
    if last_started is not None and now - last_started < interval:
        return "ignore", (f"a zero-touch rebuild of {node} started {int(now - last_started)} s ago "
                          f"(one per {interval} s at most)")
    return "rebuild", f"{node}'s minion is gone and it has rebuild: auto"


def _minion_answers(node):
    """True when ``node``'s minion is connected and answers now (a connection the master still
    sees may belong to a card that was pulled)."""
    import salt.utils.minions  # pylint: disable=import-outside-toplevel

    try:
        if node not in salt.utils.minions.CkMinions(__opts__).connected_ids(subset=[node]):
            return False
    except Exception as exc:  # pylint: disable=broad-except
        log.info("cluster.dhcp_lease: cannot tell whether %s is connected: %s", node, exc)
    return bool(_call(node, "test.ping", timeout=5).get(node))


def dhcp_lease(node, server=None, address=None):
    """
    A lease the DHCP pair gave inventory node ``node`` (the reactor calls it for each event of
    the pair's dhcp_commits beacon; ``server`` is the minion that sent it). When the node's
    minion is gone: with ``rebuild: auto``, the same rebuild as ``salt-run cluster.rebuild
    NODE`` (same lock, at most one start per ZERO_TOUCH_INTERVAL s), logged with the MAC, the
    node and the new host key's fingerprint; with ``rebuild: manual``, a record that
    ``cluster.status`` shows (waiting for cluster.rebuild). Anything else changes nothing.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.dhcp_lease gamma server=alpha address=10.77.0.23
    """
    inv = inventory()
    report = {"node": node, "server": server, "address": address}
    if server is not None and server not in views.nodes(inv, "lanservices"):
        report.update(action="ignore", comment=f"{server!r} is not a lanservices node: its lease events are not trusted")
        log.warning("cluster.dhcp_lease: %s", report["comment"])
        return report
    connected = [node] if node in inv["nodes"] and _minion_answers(node) else []
    last = (_read("zero_touch", node) or {}).get("started") if node in inv["nodes"] else None
    action, why = zero_touch_decision(node, inv, connected, last, time.time())
    report.update(action=action, comment=why)
    mac = inv["nodes"].get(node, {}).get("mac")
    if action == "wait":
        _write("waiting", node, {"time": _now(), "mac": mac, "address": address, "server": server})
        _progress(f"DHCP lease for {mac} ({node}) at {address} from {server}: {why}", audit=True)
    if action != "rebuild":
        return report
    _write("zero_touch", node, {"started": time.time(), "time": _now(), "mac": mac, "server": server})
    _remove("waiting", node)
    _progress(f"zero-touch: DHCP lease for {mac} ({node}) at {address} from {server}; {why}: rebuilding", audit=True)
    report["rebuild"] = _rebuild(node, trusted_by=f"zero-touch: rebuild: auto and a DHCP lease for {mac}")
    _progress(f"zero-touch: {node} ({mac}) host key {report['rebuild'].get('host_key')}: "
              f"{report['rebuild'].get('comment')}", audit=True)
    return report


# --------------------------------------------------------------------------------------
# Status: salt-run cluster.status
# One batch: every job below is published at once, to inventory node names (list targets,
# never grains), and the answers are gathered from the master's event bus until ONE
# deadline, so a node that is down is shown as down, not waited for. Then what the master
# knows by itself: the job cache (last highstate), the minion data cache (the provisioned
# grain of a node that does not answer), the build records of cluster.rebuild.
# --------------------------------------------------------------------------------------

# s: how long the batch waits for the answers of minions connected to the master. A node whose
# connection is gone (powered off) is not waited for (STATUS_GRACE); a connected node that is
# merely slow (a loaded host: seen at 5 s in CI) is waited for rather than shown down.
STATUS_TIMEOUT = 10
STATUS_GRACE = 1.5  # s: how long it waits for minions that have no connection to the master
# the job caches in Redis that these functions read directly (same keys: _returners/redis_jobcache.py
# is saltext-redis's returner that also stores bytes)
REDIS_JOB_CACHES = ("redis", "redis_jobcache")
STATUS_MAX_JOBS = 300  # local job cache: the newest jobs read to find each node's last highstate
_STATUS_HIGHSTATE_FUNS = ("state.highstate", "state.apply")
_STATUS_LATE = {"return": "no answer within the status timeout", "success": False}  # up, but slow


# One function per job, never a multi-function job: Salt 3008.4's saltutil.is_running, which
# every state run calls, raises on a running job whose fun is a list (fnmatch on a list:
# "Passed invalid arguments to state.highstate: expected str, bytes or os.PathLike object, not
# list"), so a highstate that started while the status batch ran failed (seen on the lab).
_STATUS_GROUPS = {
    "node": (("grains.get", [PROVISIONED_GRAIN]), ("chrony.status", [])),
    "lan": (("vip.status", []), ("dnszone.status", []), ("dhcpd_failover.status", [])),
}


def _status_jobs(view, query_k3s):
    """The batch: {key: (minions, fun, arg)}, one function each ("node:chrony.status", ...)."""
    jobs = {"ping": (view["nodes"], "test.ping", [])}
    for group, minions in (("node", view["nodes"]), ("lan", view["lanservices"])):
        for fun, arg in _STATUS_GROUPS[group]:
            jobs[f"{group}:{fun}"] = (minions, fun, arg)
    if query_k3s:
        jobs["k3s"] = ([view["k3s_server"]], "k3s.nodes", [])
    return {key: job for key, job in jobs.items() if job[0]}


def _status_combine(answers):
    """The single-function answers of a group as one {fun: return} per minion (the shape of a
    multi-function job's return, which _status_report reads)."""
    out = {key: value for key, value in answers.items() if ":" not in key}
    for group, funs in _STATUS_GROUPS.items():
        combined = {}
        for fun, _ in funs:
            for minion, data in (answers.get(f"{group}:{fun}") or {}).items():
                entry = combined.setdefault(minion, {"return": {}, "success": {}})
                entry["return"][fun] = (data or {}).get("return")
                entry["success"][fun] = bool((data or {}).get("success", True))
        out[group] = combined
    return out


def _status_connected(nodes):
    """
    The nodes whose minion holds a connection to the master's publisher now (the master's
    own view, from its TCP connections and the cached grains), or None when it cannot tell.
    A node powered off cleanly has none: the batch does not wait for its answer.
    """
    import salt.utils.minions  # pylint: disable=import-outside-toplevel

    try:
        connected = salt.utils.minions.CkMinions(__opts__).connected_ids(subset=list(nodes))
    except Exception as exc:  # pylint: disable=broad-except
        log.info("cluster.status: cannot tell which minions are connected: %s", exc)
        return None
    return set(connected) or None


def _status_gather(client, jobs, timeout, connected=None, grace=STATUS_GRACE):
    """
    Publish every job of ``jobs`` at once and collect the answers until every targeted
    minion answered every job, or ``timeout`` seconds have passed, or (after ``grace``
    seconds) only minions outside ``connected`` are still awaited: {key: {minion: data}}.
    """
    started = time.monotonic()
    deadline = started + float(timeout)
    out = {key: {} for key in jobs}
    waiting = {}
    for key, (minions, fun, arg) in jobs.items():
        pub = client.run_job(
            list(minions), fun, arg=arg, tgt_type="list", timeout=int(timeout) or 1, listen=True
        )
        if pub and pub.get("jid"):
            waiting[str(pub["jid"])] = (key, set(pub.get("minions") or []))
    while True:
        pending = set().union(*(minions for _, minions in waiting.values()))
        now = time.monotonic()
        if not pending or now >= deadline:
            break
        if connected is not None and not pending & connected and now - started >= grace:
            break  # only minions without a connection to the master are left: down
        event = client.event.get_event(
            wait=min(deadline - now, 0.25), tag="salt/job/", match_type="startswith", full=True, auto_reconnect=True
        )
        if not event:
            continue
        parts = str(event.get("tag", "")).split("/")
        if len(parts) < 5 or parts[3] != "ret" or parts[2] not in waiting:
            continue
        key, minions = waiting[parts[2]]
        minion = parts[4]
        if minion in minions:
            minions.discard(minion)
            out[key][minion] = event.get("data") or {}
    return out


def _status_message(ret):
    """The one line that says why a call failed (minion error text or traceback)."""
    text = str(ret).strip()
    if "Traceback (most recent call last)" in text:  # an exception in a multi-function job
        text = text.splitlines()[-1]
        name, sep, rest = text.partition(": ")
        if sep and "." in name and " " not in name:
            text = rest
    return text.removeprefix("ERROR: ") or "failed without a message"


def _status_answer(data, fun=None):
    """
    ``(value, error)`` of one minion's return ``data`` (for ``fun`` of a multi-function
    job): ``(None, None)`` when it did not answer, ``(None, message)`` when the call failed.
    """
    if data is None:
        return None, None
    ret, success = data.get("return"), data.get("success", True)
    if fun is not None:
        ret = ret.get(fun) if isinstance(ret, dict) else ret
        success = success.get(fun, False) if isinstance(success, dict) else bool(success)
    if not success and (ret is None or isinstance(ret, str)):
        return None, _status_message(ret)
    return ret, None


def _status_jid_time(jid):
    """ISO time of a job id (a jid is the time the job was published, local time or UTC)."""
    try:
        when = datetime.datetime.strptime(str(jid)[:20], "%Y%m%d%H%M%S%f")
    except ValueError:
        return None
    when = when.replace(tzinfo=datetime.UTC) if __opts__.get("utc_jid") else when.astimezone()
    return when.replace(microsecond=0).isoformat()


def _status_is_highstate(fun, args):
    """A highstate run: state.highstate, or state.apply without mods; a test=True run is not."""
    if fun not in _STATUS_HIGHSTATE_FUNS or (args is None and fun == "state.apply"):
        return False  # (a state.apply whose arguments are unknown may have had mods)
    for arg in args or []:
        if isinstance(arg, dict):
            if str(arg.get("test")).lower() == "true" or (fun == "state.apply" and arg.get("mods")):
                return False
        elif isinstance(arg, str) and "=" in arg:  # key=value as typed on a command line
            key, _, value = arg.partition("=")
            if (key == "test" and value.lower() == "true") or (key == "mods" and value):
                return False
        elif fun == "state.apply" and arg not in (None, "", []):
            return False  # positional mods
    return True


def _status_highstate_ok(ret):
    """True only when every state of a highstate return succeeded."""
    if isinstance(ret, dict) and {"jid", "retcode", "return"} <= set(ret):  # salt-ssh's wrapper
        ret = ret["return"]
    return isinstance(ret, dict) and bool(ret) and all(
        isinstance(state, dict) and state.get("result") is True for state in ret.values()
    )


def _status_newest(found, node, jid, fun, args, ret):
    """Keep in ``found`` the newest highstate run of ``node``."""
    if not _status_is_highstate(fun, args):
        return
    if node not in found or str(jid) > found[node]["jid"]:
        found[node] = {"time": _status_jid_time(jid), "result": _status_highstate_ok(ret), "jid": str(jid),
                       "changes": _history_states(ret)["changes"]}


def _redis():
    """A client of the Redis job cache, configured as the master's returner is."""
    import redis  # pylint: disable=import-outside-toplevel

    return redis.Redis(
        host=__opts__.get("redis.host", "salt"),
        port=int(__opts__.get("redis.port", 6379)),
        db=int(__opts__.get("redis.db", 0)),
        password=__opts__.get("redis.password") or None,
        unix_socket_path=__opts__.get("redis.unix_socket_path") or None,
        decode_responses=True,
        socket_timeout=3,
        socket_connect_timeout=3,
    )


def _status_highstates_redis(nodes, max_jobs):
    """
    Redis job cache (saltext-redis): the returner keeps, per minion and function, the jid of
    its last run (``<minion>:<fun>``), each job's load in ``load:<jid>`` and its returns in
    ``ret:<jid>``. A node whose newest ``state.highstate``/``state.apply`` was a highstate
    costs three round trips, whatever the number of jobs. When a newer one was not
    (``state.apply <sls>``, ``test=True``, salt-ssh's ``bootstrap.minion``), it may hide a
    plain ``state.apply``: then the jobs since the node's last known highstate, among the
    ``max_jobs`` newest (listed with SCAN), are read too: loads first, returns only of
    ``state.highstate``/``state.apply`` jobs.
    """
    serv = _redis()
    try:
        index = [(node, fun) for node in nodes for fun in _STATUS_HIGHSTATE_FUNS]
        latest = {}
        for (node, _), jid in zip(index, serv.mget([f"{node}:{fun}" for node, fun in index]), strict=True):
            if jid:
                latest.setdefault(node, []).append(jid)
        found = _status_redis_read(serv, [(node, jid) for node, jids in latest.items() for jid in jids])
        unsure = {
            node: found.get(node, {}).get("jid", "")
            for node, jids in latest.items()
            if found.get(node, {}).get("jid", "") < max(jids)
        }
        if unsure:
            jids = sorted({key[4:] for key in serv.scan_iter(match="ret:*", count=1000)}, reverse=True)
            candidates = [(node, jid) for jid in jids[: int(max_jobs)] for node, since in unsure.items() if jid > since]
            for node, last in _status_redis_read(serv, candidates).items():
                if last["jid"] > found.get(node, {}).get("jid", ""):
                    found[node] = last
    finally:
        serv.close()
    return found


def _status_json(text):
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def _status_redis_read(serv, candidates):
    """The newest highstate per node among ``candidates`` [(node, jid)] (two round trips)."""
    jids = sorted({jid for _, jid in candidates})
    if not jids:
        return {}
    loads = dict(zip(jids, map(_status_json, serv.mget([f"load:{jid}" for jid in jids])), strict=True))
    # a job's load may be gone before its returns (or be a return: the master saves each one)
    candidates = [(n, j) for n, j in candidates if (loads[j] or {}).get("fun", _STATUS_HIGHSTATE_FUNS[0])
                  in _STATUS_HIGHSTATE_FUNS]
    pipe = serv.pipeline(transaction=False)
    for node, jid in candidates:
        pipe.hget(f"ret:{jid}", node)
    found = {}
    for (node, jid), doc in zip(candidates, pipe.execute() if candidates else [], strict=True):
        ret = _status_json(doc)
        if isinstance(ret, dict):  # None: no return of this node, or it expired (keep_jobs)
            load = loads[jid] or {}
            # salt-ssh stores its returns without fun_args: its load has them
            args = ret["fun_args"] if "fun_args" in ret else load.get("arg", load.get("fun_args"))
            _status_newest(found, node, jid, ret.get("fun"), args, ret.get("return"))
    return found


def _status_highstates_local(nodes, max_jobs):
    """
    The default local job cache: the job directories are listed (a stat each) and only the
    ``max_jobs`` most recently written are read, through the local_cache returner's own
    get_load (every one) and get_jid (highstate jobs only).
    """
    import salt.loader  # pylint: disable=import-outside-toplevel

    jobs_dir = os.path.join(__opts__["cachedir"], "jobs")
    entries = []
    try:
        for top in os.scandir(jobs_dir):
            if top.is_dir():
                entries.extend((job.stat().st_mtime, job.path) for job in os.scandir(top.path) if job.is_dir())
    except OSError:
        return {}
    entries.sort(reverse=True)
    returners = salt.loader.returners(__opts__, {})
    found = {}
    try:
        for _, path in entries[: int(max_jobs)]:
            try:
                with salt.utils.files.fopen(os.path.join(path, "jid")) as handle:
                    jid = handle.read().strip()
            except OSError:
                continue
            load = returners["local_cache.get_load"](jid) or {}
            if not _status_is_highstate(load.get("fun"), load.get("arg")):
                continue
            for node, ret in (returners["local_cache.get_jid"](jid) or {}).items():
                if node in nodes and isinstance(ret, dict):
                    _status_newest(found, node, jid, load.get("fun"), load.get("arg"), ret.get("return"))
    finally:
        if hasattr(returners, "destroy"):
            returners.destroy()
    return found


def _status_highstates(nodes, max_jobs=STATUS_MAX_JOBS):
    """{node: {"time", "result", "jid"}}: the newest highstate of each node in the job cache."""
    cache = __opts__.get("master_job_cache", "local_cache")
    try:
        if cache in REDIS_JOB_CACHES:
            return _status_highstates_redis(nodes, max_jobs)
        if cache == "local_cache":
            return _status_highstates_local(nodes, max_jobs)
    except Exception as exc:  # pylint: disable=broad-except
        log.warning("cluster.status: job cache %s not readable: %s", cache, exc)
        return {}
    log.info("cluster.status: last highstate not read from the %s job cache", cache)
    return {}


def _status_cached_grain(nodes):
    """{node: the provisioned grain in the master's minion data cache} (nodes that did not answer)."""
    if not nodes:
        return {}
    import salt.cache  # pylint: disable=import-outside-toplevel

    out = {}
    cache = salt.cache.factory(__opts__)
    try:
        for node in nodes:
            try:
                grains = cache.fetch("grains", node) or {}
            except Exception as exc:  # pylint: disable=broad-except
                log.info("cluster.status: no cached grains of %s: %s", node, exc)
                grains = {}
            out[node] = grains.get(PROVISIONED_GRAIN) if isinstance(grains, dict) else None
    finally:
        cache.destroy()
    return out


def _status_build_records(nodes):
    """{node: {"state": "building"|"waiting"|"failed", ...}} from the master's build records
    (waiting: a DHCP lease came for the node while its minion was gone, and it has
    rebuild: manual; cluster.dhcp_lease)."""
    base = os.path.join(__opts__["cachedir"], "cluster")

    def read(kind, node):
        try:
            with salt.utils.files.fopen(os.path.join(base, kind, node)) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    out = {}
    now = time.time()
    for node in nodes:
        lock, failed, waiting = read("locks", node), read("failed", node), read("waiting", node)
        if lock and lock.get("expires", 0) > now:
            out[node] = {"state": "building", "since": lock.get("since")}
        elif waiting:
            out[node] = {"state": "waiting", "time": waiting.get("time"), "mac": waiting.get("mac"),
                         "address": waiting.get("address"), "server": waiting.get("server")}
        elif failed:
            out[node] = {"state": "failed", "time": failed.get("time")}
    return out


def _status_view(inv):
    """What the status needs from the inventory."""
    names = views.nodes(inv)
    return {
        "nodes": names,
        "roles": {name: list(inv["nodes"][name].get("roles", [])) for name in names},
        "lanservices": views.nodes(inv, "lanservices"),
        "k3s_server": views.k3s_server(inv) if views.nodes(inv, "compute") else None,
        "vip": inv["network"]["vip"],
    }


def _status_report(view, answers, highstates=None, cached=None, builds=None, k3s_note=None, generated=None):
    """
    Assemble the status object from the batch's answers (``{job key: {minion: return
    data}}``, see :func:`_status_jobs`) and the master's own records. Pure: no I/O.
    """
    highstates, cached, builds = highstates or {}, cached or {}, builds or {}
    answers = {key: answers.get(key) or {} for key in ("ping", "node", "lan", "k3s")}
    up = {n: any(n in answers[key] for key in answers) for n in view["nodes"]}
    problems = [f"{n} does not answer" for n in view["nodes"] if not up[n]]

    nodes, ntp = {}, {}
    for name in view["nodes"]:
        data = answers["node"].get(name, _STATUS_LATE if up[name] else None)
        grain, error = _status_answer(data, "grains.get")
        answered = data is not None and error is None
        provisioned = (grain or None) if answered else (cached.get(name) or None)
        build = builds.get(name)
        if (build or {}).get("state") == "waiting" and up[name]:
            build = None  # its minion is back: the lease was not a re-flash after all
        nodes[name] = {
            "up": up[name],
            "roles": view["roles"][name],
            "provisioned": provisioned,
            "last_highstate": highstates.get(name),
            "build": build,
        }
        if (build or {}).get("state") == "waiting":
            problems.append(f"{name} was re-flashed (DHCP lease for {build.get('mac')} at {build.get('time')} from "
                            f"{build.get('server')}): waiting for salt-run cluster.rebuild {name}")
        if answered and not provisioned:
            problems.append(f"{name} is not provisioned")
        if (highstates.get(name) or {}).get("result") is False:
            problems.append(f"{name}: last highstate failed ({highstates[name]['time']})")
        if (build or {}).get("state") == "failed":
            problems.append(f"{name}: last build failed ({build.get('time')})")
        chrony, error = _status_answer(data, "chrony.status")
        if data is None:
            ntp[name] = None
        elif error or not isinstance(chrony, dict):
            ntp[name] = {"error": error or f"unexpected answer {chrony!r}"}
        else:
            ntp[name] = {
                "synced": bool(chrony.get("synchronised")),
                "offset": chrony.get("offset"),
                "reference": chrony.get("reference"),
                "stratum": chrony.get("stratum"),
            }
        if isinstance(ntp[name], dict) and "error" in ntp[name]:
            problems.append(f"{name}: NTP: {ntp[name]['error']}")
        elif isinstance(ntp[name], dict) and not ntp[name]["synced"]:
            problems.append(f"{name}: NTP not synchronised (reference {ntp[name]['reference']})")

    vip_state, holders, dns, dhcp = {}, [], {}, {}
    for name in view["lanservices"]:
        data = answers["lan"].get(name, _STATUS_LATE if up[name] else None)
        vip, error = _status_answer(data, "vip.status")
        vip_state[name] = None if data is None else (vip.get("state") if isinstance(vip, dict) else f"error: {error}")
        if isinstance(vip, dict) and vip.get("held"):
            holders.append(name)

        zones, error = _status_answer(data, "dnszone.status")
        if data is None:
            dns[name] = None
        elif error or not isinstance(zones, dict):
            dns[name] = {"error": error or f"unexpected answer {zones!r}"}
        else:
            dns[name] = {zone: (z or {}).get("serial") for zone, z in (zones.get("zones") or {}).items()}

        peers, error = _status_answer(data, "dhcpd_failover.status")
        if data is None:
            dhcp[name] = None
        elif error or not isinstance(peers, dict) or not peers:
            dhcp[name] = {"error": error or f"no failover peer ({peers!r})"}
        else:
            flat = {
                peer: {
                    "state": p.get("local_state"),
                    "partner_state": p.get("partner_state"),
                    "role": p.get("role"),
                    "since": p.get("local_state_since"),
                }
                for peer, p in peers.items()
            }
            dhcp[name] = dict(peer=next(iter(flat)), **flat[next(iter(flat))]) if len(flat) == 1 else flat
    if len(holders) > 1:
        problems.append(f"the VIP {view['vip']} is held by {' and '.join(holders)}")
    elif not holders and any(answers["lan"].get(n) for n in view["lanservices"]):
        problems.append(f"no lanservices node holds the VIP {view['vip']}")
    serials = {}
    for name, zones in dns.items():
        if zones is None or "error" in zones:  # a node that is down is listed already
            if zones is not None:
                problems.append(f"{name}: DNS: {zones['error']}")
            continue
        for zone, serial in zones.items():
            serials.setdefault(zone, {})[name] = serial
    for zone, by_server in serials.items():
        if None in by_server.values():
            problems.append(f"DNS zone {zone} not served by {', '.join(n for n, s in by_server.items() if s is None)}")
        elif len(set(by_server.values())) > 1:
            problems.append(f"DNS zone {zone}: serials differ ({', '.join(f'{n} {s}' for n, s in by_server.items())})")
    for name, state in dhcp.items():
        if isinstance(state, dict) and "error" in state:
            problems.append(f"{name}: DHCP failover: {state['error']}")
        elif isinstance(state, dict) and state.get("state") != "normal":
            problems.append(f"{name}: DHCP failover {state.get('state') or state}")

    server = view.get("k3s_server")
    if k3s_note:
        k3s = k3s_note
    elif not server:
        k3s = "no compute node: no k3s"
    elif not up.get(server):
        k3s = f"k3s server {server} does not answer"
    else:
        found, error = _status_answer(answers["k3s"].get(server, _STATUS_LATE))
        if error or not isinstance(found, list):
            k3s = f"k3s on {server}: {error or found}"
        else:
            k3s = {
                "server": server,
                "nodes": {
                    n.get("name"): {"ready": n.get("ready"), "status": n.get("status"),
                                    "roles": n.get("roles"), "version": n.get("version")}
                    for n in found
                },
            }
            problems.extend(f"k3s node {n} is {v['status']}" for n, v in k3s["nodes"].items() if not v["ready"])

    return {
        "generated": generated or datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat(),
        "nodes": nodes,
        "vip_holder": holders[0] if holders else None,
        "vip": {"address": view["vip"], "state": vip_state},
        "dns_serials": dns,
        "dhcp_failover": dhcp,
        "ntp": ntp,
        "k3s": k3s,
        "problems": problems,
    }


def _status_cell(value):
    return "-" if value in (None, "") else str(value)


def _status_table(report):
    """The status object as the table people read (``salt-run cluster.status`` without ``--out``)."""
    rows = [("NODE", "UP", "ROLES", "PROVISIONED", "LAST HIGHSTATE", "NTP")]
    for name, node in report["nodes"].items():
        last = node["last_highstate"]
        ntp = report["ntp"].get(name)
        if ntp is None:
            ntp_text = "-"
        elif "error" in ntp:
            ntp_text = f"error: {ntp['error']}"
        else:
            offset = ntp.get("offset")
            ntp_text = ("synced" if ntp["synced"] else "NOT synced") + (
                f" {offset * 1000:+.3f} ms" if isinstance(offset, int | float) else ""
            ) + f" ({ntp.get('reference') or '?'})"
        build = node.get("build") or {}
        rows.append((
            name,
            "up" if node["up"] else "DOWN",
            ",".join(node["roles"]),
            _status_cell(node["provisioned"]) + (f" [{build['state']}]" if build else ""),
            f"{last['time']} {'ok' if last['result'] else 'FAILED'}" if last else "-",
            ntp_text,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [f"cluster status at {report['generated']}", ""]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1] for row in rows]
    lines.append("")
    vip = report["vip"]
    states = ", ".join(f"{n} {_status_cell(s)}" for n, s in vip["state"].items())
    lines.append(f"VIP {vip['address']}: held by {report['vip_holder'] or 'NOBODY'} ({states})")
    zones, silent = {}, []
    for name, served in report["dns_serials"].items():
        if served is None or "error" in served:
            silent.append(f"DNS on {name}: {'down' if served is None else served['error']}")
            continue
        for zone, serial in served.items():
            zones.setdefault(zone, []).append(f"{name} {_status_cell(serial)}")
    lines += [f"DNS {zone}: {', '.join(servers)}" for zone, servers in zones.items()] + silent
    dhcp = []
    for name, state in report["dhcp_failover"].items():
        if state is None:
            dhcp.append(f"{name} down")
        elif "error" in state:
            dhcp.append(f"{name} error: {state['error']}")
        elif "state" in state:
            dhcp.append(f"{name} {state['state']} ({state.get('role')}, partner {state.get('partner_state')})")
        else:
            dhcp.append(f"{name} " + ", ".join(f"{peer}: {p['state']}" for peer, p in state.items()))
    lines.append("DHCP failover: " + "; ".join(dhcp))
    k3s = report["k3s"]
    if isinstance(k3s, dict):
        ready = ", ".join(f"{n} {v['status']}" for n, v in k3s["nodes"].items()) or "no node"
        lines.append(f"k3s (server {k3s['server']}): {ready}")
    else:
        lines.append(f"k3s: {k3s}")
    lines.append("")
    lines.append("problems:" if report["problems"] else "problems: none")
    lines += [f"  - {problem}" for problem in report["problems"]]
    return "\n".join(lines)


def status(timeout=STATUS_TIMEOUT, table=None):
    """
    The state of the cluster: every node (answers now, roles, provisioned marker, last
    highstate), the VIP holder, the DNS serials of each server, the DHCP failover state of
    each peer, NTP on every node, k3s nodes and readiness (or why there are none), and the
    problems found. A table for people; an object with ``--out=json`` (or ``table=False``).

    One batch of jobs, answers awaited ``timeout`` seconds at most, and only a moment for
    minions that have no connection to the master: a node that is down is shown as down,
    not waited for.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.status
        salt-run cluster.status --out=json
        salt-run cluster.status timeout=10
    """
    started = time.monotonic()
    view = _status_view(inventory())
    query_k3s = bool(view["k3s_server"]) and _k3s_installed()
    k3s_note = None
    if view["k3s_server"] and not query_k3s:
        k3s_note = (
            f"k3s not installed on {view['k3s_server']} (no artifact at "
            f"salt://{'/'.join(K3S_ARTIFACT)}: the compute highstate skips k3s)"
        )
    connected = _status_connected(view["nodes"])
    with salt.client.get_local_client(__opts__["conf_file"]) as client:
        answers = _status_combine(_status_gather(client, _status_jobs(view, query_k3s), timeout, connected))
    silent = [n for n in view["nodes"] if n not in answers.get("node", {})]  # no live grain
    report = _status_report(
        view,
        answers,
        highstates=_status_highstates(view["nodes"]),
        cached=_status_cached_grain(silent),
        builds=_status_build_records(view["nodes"]),
        k3s_note=k3s_note,
    )
    report["seconds"] = round(time.monotonic() - started, 1)
    if table is None:
        table = not __opts__.get("output")
    return _status_table(report) if table else report


# --------------------------------------------------------------------------------------
# Job history: the highstates and orchestrations in the Redis job cache (what ARA gave the
# original), kept in a small index on the master so that each call reads only the jobs
# published since the last one (the status batch itself publishes a few jobs a minute).
# --------------------------------------------------------------------------------------

HISTORY_LIMIT = 30  # runs returned
HISTORY_KEEP = 200  # jobs kept in the index
HISTORY_REVISIT = 900  # s: jobs this recent are read again (their returns may still come)
HISTORY_WINDOW = 3600  # s: a job that returns this long after newer ones is still found
_HISTORY_ORCH_FUNS = ("runner.state.orchestrate", "runner.state.orch", "runner.cluster.orchestrate")
_HISTORY_TEXT = 300  # characters of a failed state's comment


def _history_states(ret):
    """Counts and lists of one state return {state key: state} (or a list of render errors)."""
    out = {"states": 0, "changes": 0, "failures": 0, "failed": [], "changed": [], "duration": None}
    if isinstance(ret, dict) and {"jid", "retcode", "return"} <= set(ret):  # salt-ssh's wrapper
        ret = ret["return"]
    if isinstance(ret, list | str):  # the states did not even compile: render errors
        errors = [ret] if isinstance(ret, str) else ret
        out.update(failures=len(errors) or 1, failed=[
            {"id": "(render)", "function": "", "name": "", "comment": str(e)[:_HISTORY_TEXT]} for e in errors
        ] or [{"id": "(render)", "function": "", "name": "", "comment": "no state ran"}])
        return out
    if not isinstance(ret, dict):
        return out
    spans = []
    for key, state in ret.items():
        if not isinstance(state, dict):
            continue
        parts = str(key).split("_|-")
        entry = {
            "id": state.get("__id__") or (parts[1] if len(parts) > 1 else key),
            "function": f"{parts[0]}.{parts[3]}" if len(parts) > 3 else "",
            "name": str(state.get("name", "")),
        }
        out["states"] += 1
        if state.get("result") is False:
            out["failures"] += 1
            out["failed"].append(dict(entry, comment=str(state.get("comment", ""))[:_HISTORY_TEXT]))
        if state.get("changes"):
            out["changes"] += 1
            # the keys only: values may be file diffs, and a diff may hold a secret
            out["changed"].append(dict(entry, keys=sorted(str(k) for k in state["changes"])))
        try:
            start = datetime.datetime.strptime(str(state["start_time"]), "%H:%M:%S.%f")
            spans.append((start, start + datetime.timedelta(milliseconds=float(state["duration"]))))
        except (KeyError, TypeError, ValueError):
            pass
    if spans:
        seconds = (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()
        out["duration"] = round(seconds % 86400, 1)  # a run across midnight
    return out


def _history_job(load):
    """{"kind", "fun", "mods"} of a job the history shows, from its load; None for other jobs."""
    load = load or {}
    fun = load.get("fun")
    if fun in _HISTORY_ORCH_FUNS:
        args = (load.get("return") or {}).get("fun_args") or load.get("fun_args") or load.get("arg") or []
        mods = next((a.get("mods") for a in args if isinstance(a, dict) and a.get("mods")), None)
        mods = mods or next((a for a in args if isinstance(a, str) and "=" not in a), None)
        # an orchestration about one node (orch.rebuild's pillar node) is listed under that node
        about = next((a["pillar"].get("node") for a in args if isinstance(a, dict)
                      and isinstance(a.get("pillar"), dict) and isinstance(a["pillar"].get("node"), str)), None)
        return {"kind": "orchestration", "fun": fun.removeprefix("runner."), "mods": mods, "about": about}
    if _status_is_highstate(fun, load.get("arg", load.get("fun_args"))):
        return {"kind": "highstate", "fun": fun, "mods": None}
    return None


def _history_run(jid, job, minion, doc, redact):
    """One run (a job's return of one minion) as the page shows it."""
    if job["kind"] == "orchestration":
        inner = (doc.get("return") or {}) if isinstance(doc.get("return"), dict) else {}
        data = (inner.get("return") or {}).get("data") if isinstance(inner.get("return"), dict) else None
        ret = next(iter(data.values())) if isinstance(data, dict) and data else inner.get("return")
        result = inner.get("success", doc.get("success")) is not False and not inner.get("retcode")
        node = job.get("about") or "master"
    else:
        ret, node = doc.get("return"), minion
        result = None
    states = _history_states(ret)
    if result is None:
        result = _status_highstate_ok(ret)
    job = {k: v for k, v in job.items() if k != "about"}
    run = dict(jid=str(jid), node=node, started=_status_jid_time(jid), result=bool(result) and not states["failures"],
               **job, **states)
    for entry in run["failed"]:
        entry["comment"] = redact(entry["comment"])
        entry["name"] = redact(entry["name"])
    for entry in run["changed"]:
        entry["name"] = redact(entry["name"])
    return run


def _history_redactor():
    """A function that blanks every secret the master holds (cluster_secrets_dir) in a text."""
    found = set()
    top = __opts__.get("cluster_secrets_dir", "/etc/salt/cluster-secrets")
    for folder, _, files in os.walk(top):
        for name in files:
            if name.endswith(".pub"):
                continue  # public keys and certificates: nothing to hide
            try:
                with salt.utils.files.fopen(os.path.join(folder, name)) as handle:
                    text = handle.read()
            except (OSError, UnicodeDecodeError):
                continue
            found.update(line.strip() for line in text.splitlines() if len(line.strip()) >= 8
                         and not line.startswith("-----"))
            if len(text.strip()) >= 8:
                found.add(text.strip())
    secrets = sorted(found, key=len, reverse=True)

    def redact(text):
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, "[secret]")
        return text

    return redact


def _history_index_path():
    return os.path.join(__opts__["cachedir"], "cluster", "history.json")


def _history_floor(now, seconds):
    """The jid of the moment ``seconds`` before ``now`` (jids are local time unless utc_jid)."""
    tz = datetime.UTC if __opts__.get("utc_jid") else None
    return datetime.datetime.fromtimestamp(now - seconds, tz).strftime("%Y%m%d%H%M%S%f")


def _history_update(serv, index, now):
    """
    Add the jobs that returned since the last call to ``index``; re-read the recent ones. A
    job is classified when its first return is in the cache (a long highstate returns after
    many newer jobs): the jids already looked at within HISTORY_WINDOW are remembered.
    """
    jids = sorted(key[4:] for key in serv.scan_iter(match="ret:*", count=1000))
    floor = _history_floor(now, HISTORY_WINDOW)
    first = "checked" not in index
    checked = set(index.get("checked", []))
    new = [jid for jid in jids if jid not in checked and (first or jid >= floor)]
    jobs = index.setdefault("jobs", {})
    for start in range(0, len(new), 500):
        chunk = new[start : start + 500]
        for jid, load in zip(chunk, map(_status_json, serv.mget([f"load:{j}" for j in chunk])), strict=True):
            job = _history_job(load)
            if job:
                jobs[jid] = dict(job, runs={})
    index["checked"] = sorted(jid for jid in checked.union(new) if jid >= floor)
    live = set(jids)
    recent = []
    for jid in sorted(jobs, reverse=True):
        if jid not in live:
            continue  # expired from the cache (keep_jobs): its runs stay as read
        when = _status_jid_time(jid)
        try:
            age = now - datetime.datetime.fromisoformat(when).timestamp()
        except (TypeError, ValueError):
            age = 0
        if jid in new or not jobs[jid]["runs"] or age < HISTORY_REVISIT:
            recent.append(jid)
    pipe = serv.pipeline(transaction=False)
    for jid in recent:
        pipe.hgetall(f"ret:{jid}")
    redact = _history_redactor()
    for jid, rets in zip(recent, pipe.execute() if recent else [], strict=True):
        job = {k: v for k, v in jobs[jid].items() if k != "runs"}
        for minion, text in (rets or {}).items():
            doc = _status_json(text)
            if isinstance(doc, dict):
                jobs[jid]["runs"][minion] = _history_run(jid, job, minion, doc, redact)
    for jid in sorted(jobs, reverse=True)[HISTORY_KEEP:]:
        del jobs[jid]
    return index


def history(limit=HISTORY_LIMIT, node=None):
    """
    The newest highstates and orchestrations in the job cache, newest first, one entry per
    run of a node (an orchestration's node is the node it is about, orch.rebuild's, or
    ``master``): when it started, how long its
    states took, its result, how many states changed and failed, and which (state ID, name,
    function; a failed state's comment; only the keys of a change, never its values, and
    every secret of the master blanked). The page on the VIP shows it (statuspage.publish).

    CLI Example:

    .. code-block:: bash

        salt-run cluster.history
        salt-run cluster.history limit=5 node=gamma --out=json
    """
    if __opts__.get("master_job_cache", "local_cache") not in REDIS_JOB_CACHES:
        return _fail("cluster.history reads the Redis job cache (master_job_cache: redis_jobcache)")
    path = _history_index_path()
    try:
        with salt.utils.files.fopen(path) as handle:
            index = json.load(handle)
    except (OSError, ValueError):
        index = {}
    serv = _redis()
    try:
        index = _history_update(serv, index, time.time())
    finally:
        serv.close()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with salt.utils.files.fopen(path + ".new", "w") as handle:
        json.dump(index, handle)
    os.replace(path + ".new", path)
    runs = [run for jid in sorted(index["jobs"], reverse=True) for _, run in sorted(index["jobs"][jid]["runs"].items())
            if node in (None, run["node"])]
    return runs[: int(limit)]


# --------------------------------------------------------------------------------------
# Backup of the deployer: everything a rebuilt deployer needs that is not in the repository,
# in one archive encrypted with a passphrase (it holds the GPG key the repository's secrets are
# encrypted to, so it cannot be encrypted to that key). bootstrap/restore-backup reads it:
# bootstrap/deployer --restore ARCHIVE --passphrase-file FILE.
# --------------------------------------------------------------------------------------

BACKUP_FORMAT = 1
BACKUP_PASSPHRASE = "backup.passphrase"  # in the secrets dir unless the admin names a file
_BACKUP_SKIP = ("S.", ".#", "random_seed")  # gpg-agent sockets, lock files


def _backup_dirs():
    """{what: directory} of the deployer's state that the archive carries."""
    dirs = {
        "master keys (accepted minion keys included)": __opts__.get("pki_dir", "/etc/salt/pki/master"),
        "secrets, SSH CA, minion keys": __opts__.get("cluster_secrets_dir", "/etc/salt/cluster-secrets"),
        "GPG keyring of the encrypted secrets": __opts__.get("gpg_keydir") or "/etc/salt/gpgkeys",
        # without them a restored master takes every node for never provisioned, and a card
        # re-flashed after the restore waits for orch.cluster instead of being rebuilt
        "provisioned records": _records("provisioned"),
    }
    return {what: path for what, path in dirs.items() if path and os.path.isdir(path)}


def _backup_files(directory, skip=()):
    """The regular files under ``directory`` (no sockets, no lock files, none named in
    ``skip``), sorted."""
    out = []
    for root, subdirs, files in os.walk(directory):
        subdirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if (not name.startswith(_BACKUP_SKIP) and name not in skip and os.path.isfile(path)
                    and not os.path.islink(path)):
                out.append(path)
    return out


def _backup_passphrase(passphrase_file):
    """The passphrase file: the admin's, or one made once in the secrets dir (0600)."""
    import secrets  # pylint: disable=import-outside-toplevel

    if passphrase_file:
        if not os.path.isfile(passphrase_file):
            raise CommandExecutionError(f"passphrase_file {passphrase_file}: no such file")
        return passphrase_file
    path = os.path.join(__opts__.get("cluster_secrets_dir", "/etc/salt/cluster-secrets"), BACKUP_PASSPHRASE)
    if not os.path.isfile(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        _progress(f"made the backup passphrase {path}: keep a copy off this card, the archive needs it")
    return path


def _backup_leases(inv):
    """{node: text} of the DHCP lease database of each lanservices node that answers."""
    pair = views.nodes(inv, "lanservices")
    if not pair:
        return {}
    got = _call(pair, "file.read", ["/var/lib/dhcp/dhcpd.leases"], timeout=30, tgt_type="list")
    return {node: text for node, text in got.items() if isinstance(text, str) and "lease" in text}


def backup(path, passphrase_file=None, leases=True):
    """
    Write one encrypted archive of everything the deployer holds that the repository does not:
    the master's keys and the minion keys it accepted, the secrets directory (secrets, SSH CA,
    each node's minion key, admin certificates, the TLS CA when there is one), the GPG keyring
    the repository's secrets are encrypted to, the master's provisioned records of the other
    nodes (so a node re-flashed after a restore is still rebuilt), and the DHCP lease databases
    of the lanservices pair. Encrypted (gpg, AES256) with the passphrase in ``passphrase_file``,
    else with one made once in the secrets directory (``backup.passphrase``: copy it off the
    card). The archive is written 0600, atomically; ``bootstrap/deployer --restore ARCHIVE
    --passphrase-file FILE`` rebuilds a deployer from it.

    CLI Example:

    .. code-block:: bash

        salt-run cluster.backup /media/usb/deployer.tar.gpg
        salt-run cluster.backup /root/deployer.tar.gpg passphrase_file=/root/backup-passphrase
    """
    import hashlib  # pylint: disable=import-outside-toplevel
    import io  # pylint: disable=import-outside-toplevel
    import tarfile  # pylint: disable=import-outside-toplevel
    import tempfile  # pylint: disable=import-outside-toplevel

    path = os.path.abspath(path)
    if not os.path.isdir(os.path.dirname(path)):
        return _fail(f"cluster.backup: {os.path.dirname(path)} is not a directory")
    inv = inventory()
    passphrase = _backup_passphrase(passphrase_file)
    dirs = _backup_dirs()
    manifest = {"format": BACKUP_FORMAT, "created": _now(), "deployer": views.deployer(inv),
                "dirs": sorted(dirs.values()), "files": {}, "dhcp_leases": {}}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name, data, mode=0o600):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
            return hashlib.sha256(data).hexdigest()

        for directory in dirs.values():
            # the deployer's own record stays out: its reactor cannot rebuild the card it runs
            # on (this archive does); restored, it would send the restored deployer's first
            # minion start to orch.rebuild
            skip = (views.deployer(inv),) if directory == _records("provisioned") else ()
            for file in _backup_files(directory, skip):
                with salt.utils.files.fopen(file, "rb") as handle:
                    data = handle.read()
                mode = os.stat(file).st_mode & 0o7777
                manifest["files"][file] = {"sha256": add("files" + file, data, mode), "mode": f"{mode:04o}"}
        if leases:
            for node, text in sorted(_backup_leases(inv).items()):
                manifest["dhcp_leases"][node] = add(f"dhcp/{node}.leases", text.encode())
        add("MANIFEST.json", json.dumps(manifest, indent=1, sort_keys=True).encode(), 0o644)
    tmp = f"{path}.tmp{os.getpid()}"
    umask = os.umask(0o077)  # the archive is never readable by others, not even while gpg writes it
    with tempfile.TemporaryDirectory() as home:  # symmetric: gpg needs no keyring, only a home
        proc = subprocess.run(
            ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", home, "--symmetric", "--cipher-algo", "AES256",
             "--pinentry-mode", "loopback", "--passphrase-file", passphrase, "--output", tmp],
            input=buf.getvalue(), capture_output=True, check=False,
        )
    os.umask(umask)
    if proc.returncode != 0:
        if os.path.exists(tmp):
            os.unlink(tmp)
        return _fail(f"cluster.backup: gpg failed: {proc.stderr.decode(errors='replace').strip()}")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return {
        "archive": path,
        "bytes": os.path.getsize(path),
        "files": len(manifest["files"]),
        "dirs": sorted(dirs.values()),
        "dhcp_leases": sorted(manifest["dhcp_leases"]),
        "passphrase_file": passphrase,
    }

