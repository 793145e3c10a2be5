"""Whole-cluster figures: a cold `make lab`, a no-op highstate of every node, the rebuild MTTR
of a compute node (gamma) and of the secondary lanservices node (beta)."""

import json
import re
import time

from lab.probe import dig

from .common import BenchError, lab, last_json, log, now, spread, status, waited_for_lock

# --------------------------------------------------------------------------------------
# cold `make lab`
# --------------------------------------------------------------------------------------

COLD_STEPS = (("build", 3600), ("up", 900), ("bootstrap", 2400), ("orch", 2400), ("status", 120))


def cold_lab(table):
    """`python3 -m lab down`, then the steps of the Makefile's `lab` target, each timed; the
    image caches (base image, apt repository, wheelhouse) are kept by `down`."""
    figure = "cold `make lab` (caches kept)"
    method = (
        "`python3 -m lab down` (not counted; keeps the image caches), then `python3 -m lab build`, `up`, "
        "`bootstrap`, `orch`, `status` as the Makefile's `lab` target runs them, each timed by the lab host"
    )
    times, notes = {}, []
    try:
        times["down"], _ = lab("down", timeout=600)
        for step, timeout in COLD_STEPS:
            log(f"cold make lab: python3 -m lab {step}")
            times[step], proc = lab(step, timeout=timeout)
            if waited_for_lock(proc):
                notes.append(f"`{step}` waited for another lab command")
            rebuilt = re.findall(r"building the (base image|apt repository|wheelhouse)", proc.stdout + proc.stderr)
            if rebuilt:  # a cache was not valid (e.g. a package list changed): that time is in the figure
                notes.append(f"`{step}` rebuilt the {', '.join(sorted(set(rebuilt)))}")
            if step == "bootstrap":
                match = re.search(r"bootstrap times \(s\): (.*)", proc.stdout)
                if match:
                    times["bootstrap_parts"] = {
                        k: float(v) for k, v in (p.split() for p in match.group(1).split(", "))
                    }
    except BenchError as exc:
        done = ", ".join(f"{k} {v:.1f} s" for k, v in times.items() if isinstance(v, float))
        return table.add(figure, f"FAILED: {exc}"[:300], method + (f"; done: {done}" if done else ""),
                         measured=False, times=times)
    total = sum(times[step] for step, _ in COLD_STEPS)
    parts = times.get("bootstrap_parts", {})
    detail = ", ".join(f"{k} {v:.1f}" for k, v in parts.items()) + " s, as the lab reports them" if parts else ""
    table.add(figure, f"{total:.1f} s" + (f" ({'; '.join(notes)})" if notes else ""), method, times=times)
    for step, _ in COLD_STEPS:
        extra = f" ({detail})" if step == "bootstrap" and detail else ""
        what = {
            "build": "base image, apt repository and wheelhouse: cached unless a note says rebuilt",
            "up": "bridge, package server, the router stand-in, 7 nodes booted (addresses by DHCP) until sshd answers",
            "bootstrap": "checkout to psi, bootstrap/deployer, salt-ssh bootstrap.minion of every node, test.ping",
            "orch": "salt-run state.orch orch.cluster",
            "status": "lab status",
        }[step]
        table.add(f"  cold make lab: {step}", f"{times[step]:.1f} s{extra}", what)
    table.add("  cold make lab: down before it", f"{times['down']:.1f} s", "not counted in the total")
    return times


# --------------------------------------------------------------------------------------
# no-op highstate
# --------------------------------------------------------------------------------------


def _state_summary(ret, minions):
    """(changed {minion: [ids]}, failed {minion: [ids or message]}, missing [minions])."""
    changed, failed = {}, {}
    for minion, states in ret.items():
        if not isinstance(states, dict):
            failed[minion] = [str(states)[:200]]
            continue
        for sid, state in states.items():
            if not isinstance(state, dict):
                failed.setdefault(minion, []).append(str(state)[:200])
                continue
            name = sid.split("_|-")[1] if "_|-" in sid else sid
            if state.get("result") is False:
                failed.setdefault(minion, []).append(name)
            if state.get("changes"):
                changed.setdefault(minion, []).append(name)
    return changed, failed, sorted(set(minions) - set(ret))


NOOP_ONE_NODE = "gamma"  # a compute node: the role most of a real cluster's nodes have


def noop_highstate(nodes, table, runs=3):
    """The whole cluster's no-op highstate, then one node's (issue 11: at most 2x one node's)."""
    minions = sorted(nodes.st["nodes"])
    _noop(nodes, table, f"no-op highstate, all {len(minions)} nodes", "'*'", minions, runs)
    _noop(nodes, table, f"no-op highstate, one node ({NOOP_ONE_NODE})", NOOP_ONE_NODE, [NOOP_ONE_NODE], runs)


def _noop(nodes, table, figure, target, minions, runs):
    method = (
        f"`salt -t 600 --out json {target} state.highstate` on psi, {runs} runs one after the other on the "
        "rolled-out cluster, timed on psi around the salt command; a run counts only with every minion "
        "answering, 0 failed and 0 changed states"
    )
    runs_out = []
    for run in range(1, runs + 1):
        log(f"{figure}: run {run}/{runs}")
        seconds, proc = nodes.timed("psi", f"sudo salt -t 600 --out json --static {target} state.highstate",
                                    timeout=900)
        try:
            ret = json.loads(proc.stdout or "{}")
        except ValueError:
            ret = {}
        changed, failed, missing = _state_summary(ret, minions)
        states = sum(len(v) for v in ret.values() if isinstance(v, dict))
        runs_out.append({"seconds": seconds, "states": states, "changed": changed, "failed": failed,
                         "missing": missing, "retcode": proc.returncode})
    good = [r for r in runs_out if not (r["changed"] or r["failed"] or r["missing"])]
    if len(good) == len(runs_out):
        states = runs_out[0]["states"]
        return table.add(figure, f"{spread([r['seconds'] for r in good], 's', 1)}, 0 changes",
                         method + f" ({states} states per run)", runs=runs_out)
    bad = []
    for i, r in enumerate(runs_out, 1):
        if r in good:
            bad.append(f"run {i}: {r['seconds']:.1f} s no-op")
            continue
        what = []
        if r["changed"]:
            what.append("CHANGED " + "; ".join(f"{m}: {', '.join(ids[:4])}" for m, ids in r["changed"].items()))
        if r["failed"]:
            what.append("FAILED " + "; ".join(f"{m}: {', '.join(ids[:4])}" for m, ids in r["failed"].items()))
        if r["missing"]:
            what.append("no answer from " + ", ".join(r["missing"]))
        bad.append(f"run {i}: {r['seconds']:.1f} s, " + " / ".join(what))
    return table.add(figure, "NOT a no-op: " + " | ".join(bad), method, measured=False, runs=runs_out)


def salt_ssh_rerun(nodes, table, runs=3):
    """The bootstrap's salt-ssh pass again on the bootstrapped cluster (what an admin reruns)."""
    figure = f"salt-ssh rerun, all {len(nodes.st['nodes'])} nodes"
    method = (
        f"`salt-ssh --out json '*' state.apply bootstrap.minion` from the checkout on psi, {runs} runs on the "
        "rolled-out cluster, timed on psi around the command; a run counts only with every node "
        "answering and 0 failed states"
    )
    minions = sorted(nodes.st["nodes"])
    runs_out = []
    for run in range(1, runs + 1):
        log(f"{figure}: run {run}/{runs}")
        seconds, proc = nodes.timed(
            "psi", "cd /srv/cluster && sudo salt-ssh --out json --static '*' state.apply bootstrap.minion",
            timeout=900)
        try:
            ret = json.loads(proc.stdout or "{}")
        except ValueError:
            ret = {}
        _, failed, missing = _state_summary(ret, minions)
        runs_out.append({"seconds": seconds, "failed": failed, "missing": missing, "retcode": proc.returncode})
    good = [r for r in runs_out if not (r["failed"] or r["missing"])]
    if len(good) == len(runs_out):
        return table.add(figure, spread([r["seconds"] for r in good], "s", 1), method, runs=runs_out)
    return table.add(figure, "FAILED: " + "; ".join(
        f"run {i}: failed {r['failed']} missing {r['missing']}" for i, r in enumerate(runs_out, 1)),
        method, measured=False, runs=runs_out)


# --------------------------------------------------------------------------------------
# rebuild MTTR
# --------------------------------------------------------------------------------------


def rebuild_available(nodes):
    """True when the master knows the runner function cluster.rebuild (its docstring)."""
    proc = nodes.run("psi", "sudo salt-run -d cluster.rebuild", timeout=120)
    found = any(line.strip() == "cluster.rebuild:" for line in proc.stdout.splitlines())
    return found, (proc.stdout + proc.stderr).strip()[-300:]


def healthy_compute(nodes, node="gamma"):
    """mpiexec from delta reaches all 4 compute nodes, ``node`` among them: (ok, detail)."""
    proc = nodes.run(
        "delta", "sudo -u computeadm timeout 60 mpiexec -f /etc/mpich/hosts -n 4 hostname", timeout=120
    )
    hosts = proc.stdout.split()
    ok = proc.returncode == 0 and len(hosts) == 4 and node in hosts
    return ok, f"mpiexec exit {proc.returncode}: {' '.join(hosts) or proc.stderr.strip()[-200:]}"


def healthy_beta(nodes):
    """beta serves alpha's SOA serial, DHCP failover normal on both, the VIP on alpha: (ok, detail)."""
    st = nodes.st
    zone = st["domain"]
    serials = {}
    for name in ("alpha", "beta"):
        answer = dig(st["nodes"][name]["ip"], zone, "SOA", timeout=2)
        serials[name] = int(answer[0].split()[2]) if answer else None
    if serials["beta"] is None or serials["beta"] != serials["alpha"]:
        return False, f"SOA serials {serials}"
    normal, states = nodes.failover_normal()
    if not normal:
        return False, f"DHCP failover {states}"
    held = nodes.salt("-L alpha,beta vip.held", timeout=30)
    if held != {"alpha": True, "beta": False}:
        return False, f"vip.held {held}"
    return True, f"serials {serials['alpha']}, failover normal, VIP on alpha"


HEALTH = {
    "gamma": (
        healthy_compute,
        "`sudo -u computeadm mpiexec -f /etc/mpich/hosts -n 4 hostname` on delta prints 4 hostnames, gamma one",
    ),
    "beta": (
        healthy_beta,
        "`dig @beta SOA` serial = alpha's, `salt -L alpha,beta dhcpd_failover.status` normal/normal on both, "
        "`salt -L alpha,beta vip.held` true on alpha only",
    ),
}


def _poll_health(nodes, check, timeout, interval=2.0):
    """Run ``check`` until it passes: (start, end) of the check that passed (the node was
    healthy somewhere in between), or (None, None), and the last check's detail."""
    started = now()
    detail = ""
    while now() - started < timeout:
        began = now()
        ok, detail = check(nodes)
        if ok:
            return (began, now()), detail
        time.sleep(interval)
    return (None, None), detail


def rebuild_mttr(nodes, table, node, available):
    check, health_method = HEALTH[node]
    figure = f"rebuild MTTR: {node}"
    method = (
        f"`python3 -m lab reflash {node}` (not counted), then on psi `sudo salt-run --out json cluster.rebuild "
        f"{node}`; figure = from that call to provisioned (the call returned, result true) AND healthy, polled "
        f"every 2 s by the bench with real clients: {health_method}; lab host clock"
    )
    if not available[0]:
        return table.not_measured(figure, "cluster.rebuild does not exist on psi (nothing reflashed)", method)
    ok, detail = check(nodes)
    if not ok:  # a node that is not healthy first would give a meaningless MTTR
        (passed, _), detail = _poll_health(nodes, check, 120)
        if passed is None:
            return table.not_measured(figure, f"{node} not healthy before the reflash ({detail})", method)
    reflash, _ = lab("reflash", node, timeout=600)
    log(f"{node} reflashed in {reflash:.1f} s; salt-run cluster.rebuild {node}")
    started = now()
    proc = nodes.run("psi", f"sudo salt-run -t 1800 --out json cluster.rebuild {node}", timeout=2400)
    returned = now()
    ret = last_json(proc.stdout or "")
    if isinstance(ret, dict) and "result" in ret:
        result, comment = ret["result"], str(ret.get("comment", ""))
    else:  # a refusal is a plain string; a crash prints no report at all
        result, comment = None, (proc.stdout + proc.stderr).strip()[-300:]
    data = {"reflash": reflash, "rebuild_call": returned - started, "result": result, "comment": comment[-1000:],
            "exit": proc.returncode}
    if result is not True:
        return table.add(figure, f"FAILED: cluster.rebuild returned result={result} after "
                         f"{returned - started:.1f} s: {comment[:200]}", method, measured=False, **data)
    (check_began, healthy_at), detail = _poll_health(nodes, check, 600)
    if healthy_at is None:
        return table.add(figure, f"NOT healthy 600 s after cluster.rebuild returned ({returned - started:.1f} s): "
                         f"{detail}", method, measured=False, **data)
    data.update(mttr=healthy_at - started, healthy_after_return=healthy_at - returned,
                passing_check_seconds=healthy_at - check_began, health=detail)
    return table.add(
        figure,
        f"{healthy_at - started:.1f} s (cluster.rebuild {returned - started:.1f} s, then healthy "
        f"{healthy_at - returned:.1f} s later)",
        method + f"; the end of the first passing check counts (it took {healthy_at - check_began:.1f} s); "
        f"reflash took {reflash:.1f} s",
        **data,
    )


def rebuilds(nodes, table, which=("gamma", "beta")):
    available = rebuild_available(nodes)
    if not available[0]:
        log(f"cluster.rebuild is not on psi: {available[1]}")
    for node in HEALTH:
        if node not in which:
            table.not_measured(f"rebuild MTTR: {node}", f"not selected (--rebuild {' '.join(which)})", by_choice=True)
            continue
        try:
            rebuild_mttr(nodes, table, node, available)
        except BenchError as exc:
            table.not_measured(f"rebuild MTTR: {node}", str(exc))
        nodes.st = status()  # a reflashed node may have come back with another pid; keep the view fresh
    return available


# --------------------------------------------------------------------------------------
# zero-touch MTTR: a re-flashed node with rebuild: auto comes back with no command
# --------------------------------------------------------------------------------------

ZERO_TOUCH_NODE = "epsilon"  # rebuild: auto in lab/inventory.yaml


def _provisioned(nodes, node):
    return nodes.salt(f"-t 10 {node} grains.get cluster_provisioned", timeout=60).get(node) or None


def zero_touch_mttr(nodes, table, node=ZERO_TOUCH_NODE, timeout=900):
    figure = f"zero-touch MTTR: {node}"
    method = (
        f"`python3 -m lab reflash {node}` and nothing else ({node} has rebuild: auto in lab/inventory.yaml: "
        "its DHCP lease from the pair starts cluster.rebuild through the reactor); figure = from the reflash "
        "command (old card off, wiped, powered on) to provisioned (a new cluster_provisioned grain) AND healthy "
        f"(`mpiexec -n 4 hostname` on delta prints 4 hostnames, {node} one), polled every 5 s; lab host clock"
    )
    if (nodes.st["nodes"].get(node) or {}).get("state") != "running":
        return table.not_measured(figure, f"{node} is not running", method)
    ok, detail = healthy_compute(nodes, node)
    old = _provisioned(nodes, node)
    if not ok or not old:
        return table.not_measured(figure, f"{node} not provisioned and healthy before the reflash ({detail})", method)
    started = now()
    reflash, _ = lab("reflash", node, timeout=600)
    booted = now()
    log(f"{node} reflashed and powered on in {reflash:.1f} s; waiting for the zero-touch rebuild (no command)")
    provisioned_at = None
    while now() - started < timeout:
        marker = _provisioned(nodes, node)
        if marker and marker != old:
            provisioned_at = provisioned_at or now()
            ok, detail = healthy_compute(nodes, node)
            if ok:
                end = now()
                return table.add(
                    figure,
                    f"{end - started:.1f} s (reflash and power-on {reflash:.1f} s, then provisioned "
                    f"{provisioned_at - booted:.1f} s and healthy {end - booted:.1f} s later)",
                    method, reflash=reflash, mttr=end - started, provisioned_after_boot=provisioned_at - booted,
                    healthy_after_boot=end - booted, health=detail,
                )
        time.sleep(5)
    return table.add(figure, f"NOT provisioned and healthy {timeout} s after the reflash: {detail}", method,
                     measured=False, reflash=reflash, provisioned_at=provisioned_at)


def zero_touch(nodes, table):
    try:
        zero_touch_mttr(nodes, table)
    except BenchError as exc:
        table.not_measured(f"zero-touch MTTR: {ZERO_TOUCH_NODE}", str(exc))
    nodes.st = status()
