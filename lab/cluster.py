"""Bootstrap the lab's cluster the way an admin bootstraps real Pis.

1. the checkout goes onto the deployer (/srv/cluster), with the lab's inventory;
2. ``bootstrap/deployer`` runs there as root (package cache: the lab's server; admin key: the lab's);
3. from the deployer, ``salt-ssh '*' state.apply bootstrap.minion`` reaches every node, vanilla or not;
4. wait until every minion answers ``test.ping``.
Every step is idempotent: ``python3 -m lab bootstrap`` twice changes nothing the second time.
"""

import json
import subprocess
import time

from rpicluster import views

from . import DEFAULT_INVENTORY, HTTP_PORT, REPO, LabError, access, net, router
from .host import log

CHECKOUT = "/srv/cluster"
DEPLOYER_KEY = "/etc/salt/cluster-secrets/ssh/deployer_ed25519"  # bootstrap/generate-secrets


def on_node(node, command, stdin=None, timeout=900):
    """Run a shell command on ``node`` as whoever can log in (pi while vanilla, then the admin)."""
    user = access.login_method(node)
    argv = access.METHODS[user](node.spec["ip"], [command])
    proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False)
    return proc


def _checked(node, command, what, stdin=None, timeout=900):
    proc = on_node(node, command, stdin=stdin, timeout=timeout)
    if proc.returncode != 0:
        out = (proc.stdout or b"").decode(errors="replace")[-3000:] + (proc.stderr or b"").decode(errors="replace")[-2000:]
        raise LabError(f"{what} failed on {node.name} (exit {proc.returncode}):\n{out}")
    return proc.stdout.decode(errors="replace")


def _checkout_tar():
    """The checkout as a tar stream: tracked and new files, not what .gitignore excludes."""
    files = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout
    existing = b"\0".join(f for f in files.split(b"\0") if f and (REPO / f.decode()).exists())
    return subprocess.run(
        ["tar", "-C", str(REPO), "--null", "-T", "-", "-cf", "-"], input=existing, capture_output=True, check=True
    ).stdout


def bootstrap(inv, nodes):
    """Bootstrap the whole lab cluster; return the seconds each step took."""
    by_name = {n.name: n for n in nodes}
    down = [n.name for n in nodes if not n.running()]
    if down:
        raise LabError(f"nodes not running: {', '.join(down)} (python3 -m lab up)")
    deployer = by_name[views.deployer(inv)]
    times = _install_deployer(inv, deployer)

    started = time.monotonic()
    log("salt-ssh '*' state.apply bootstrap.minion (from the deployer)")
    out = _checked(
        deployer,
        f"cd {CHECKOUT} && sudo salt-ssh --out json --static '*' state.apply bootstrap.minion",
        "salt-ssh bootstrap.minion",
        timeout=1800,
    )
    times["minions"] = time.monotonic() - started
    failed = _failed_states(out)
    if failed:
        raise LabError("bootstrap.minion failed:\n" + "\n".join(failed))

    started = time.monotonic()
    _wait_for_minions(deployer, sorted(by_name))
    times["ping"] = time.monotonic() - started
    log("every minion answers: " + ", ".join(sorted(by_name)))
    return times


def _install_deployer(inv, deployer, restore=None):
    """Copy the checkout onto the deployer and run bootstrap/deployer there (with ``restore``,
    ``(archive, passphrase file)`` on this host: copied too, and passed as --restore); return the
    seconds each step took."""
    cache = f"http://{net.host_address(inv)}:{HTTP_PORT}"
    times = {}
    started = time.monotonic()
    log(f"copying the checkout to {deployer.name}:{CHECKOUT}")
    _checked(
        deployer,
        f"sudo rm -rf {CHECKOUT}.new && sudo mkdir -p {CHECKOUT}.new && sudo tar -C {CHECKOUT}.new -xf - && "
        f"sudo rm -rf {CHECKOUT}.old && (sudo mv {CHECKOUT} {CHECKOUT}.old 2>/dev/null || true) && "
        f"sudo mv {CHECKOUT}.new {CHECKOUT} && sudo rm -rf {CHECKOUT}.old",
        "copying the checkout",
        stdin=_checkout_tar(),
    )
    _checked(deployer, f"sudo tee {CHECKOUT}/lab-admin.pub >/dev/null", "copying the lab admin key", stdin=access.KEY.with_suffix(".pub").read_bytes())
    args = ""
    if restore:
        for path, name in zip(restore, ("deployer-backup.tar.gpg", "backup-passphrase"), strict=True):
            with open(path, "rb") as handle:
                _checked(deployer, f"sudo install -d -m 0700 /root/restore && sudo tee /root/restore/{name} >/dev/null "
                                   f"&& sudo chmod 0600 /root/restore/{name}", f"copying {path}", stdin=handle.read())
        args = " --restore /root/restore/deployer-backup.tar.gpg --passphrase-file /root/restore/backup-passphrase"
    times["copy"] = time.monotonic() - started

    started = time.monotonic()
    log(f"bootstrap/deployer on {deployer.name}" + (" (restoring its backup)" if restore else ""))
    out = _checked(
        deployer,
        f"sudo {CHECKOUT}/bootstrap/deployer --package-cache {cache} --inventory {CHECKOUT}/{DEFAULT_INVENTORY.relative_to(REPO)} "
        f"--admin-key {CHECKOUT}/lab-admin.pub{args}",
        "bootstrap/deployer",
    )
    lines = out.strip().splitlines()
    for line in [ln for ln in lines if ln.startswith("restored ")] + lines[-1:]:
        log(line)
    # what an admin does once on the real router: let the deployer's key in (for the handover)
    router.router(inv).authorize(
        _checked(deployer, f"sudo cat {DEPLOYER_KEY}.pub", "reading the deployer's public key")
    )
    times["deployer"] = time.monotonic() - started
    return times


def _wait_for_minions(deployer, names, tries=60):
    answered = []
    for _ in range(tries):
        out = on_node(deployer, "sudo salt --out json --static --timeout 10 '*' test.ping").stdout.decode()
        try:
            answered = sorted(k for k, v in json.loads(out or "{}").items() if v is True)
        except ValueError:
            answered = []
        if answered == names:
            return
        time.sleep(2)
    raise LabError(f"minions answering test.ping: {answered}, expected {names}")


def restore_deployer(inv, nodes, archive, passphrase):
    """Rebuild the (re-flashed) deployer from its backup the way an admin does: the checkout and
    the archive onto the card, ``bootstrap/deployer --restore``; then wait until every minion
    answers (with the key it had: nothing is accepted by hand). Seconds per step."""
    by_name = {n.name: n for n in nodes}
    deployer = by_name[views.deployer(inv)]
    if not deployer.running():
        raise LabError(f"{deployer.name} is not running (python3 -m lab up {deployer.name})")
    times = _install_deployer(inv, deployer, restore=(archive, passphrase))
    started = time.monotonic()
    _wait_for_minions(deployer, sorted(by_name))
    times["ping"] = time.monotonic() - started
    log("every minion answers: " + ", ".join(sorted(by_name)))
    return times


def _failed_states(out):
    try:
        data = json.loads(out)
    except ValueError:
        return [f"unreadable salt-ssh output: {out[-2000:]}"]
    failed = []
    for minion, ret in data.items():
        if not isinstance(ret, dict):
            failed.append(f"{minion}: {ret}")
            continue
        for sid, state in ret.items():
            if isinstance(state, dict) and state.get("result") is False:
                failed.append(f"{minion}: {sid}: {state.get('comment')}")
            elif not isinstance(state, dict):
                failed.append(f"{minion}: {ret}")
                break
    return failed


def orchestrate(inv, nodes):
    """``salt-run state.orch orch.cluster`` on the deployer; return the seconds it took."""
    deployer = {n.name: n for n in nodes}[views.deployer(inv)]
    started = time.monotonic()
    log("salt-run state.orch orch.cluster (on the deployer)")
    # a failed run exits 1: its steps are still read, to say which node and state failed
    proc = on_node(deployer, "sudo salt-run -t 900 --out json state.orch orch.cluster 2>/dev/null", timeout=1800)
    out = proc.stdout.decode(errors="replace")
    try:
        steps = next(iter(json.loads(out)["data"].values()))
    except (ValueError, KeyError, StopIteration, AttributeError):
        raise LabError(f"orch.cluster failed (exit {proc.returncode}), unreadable output:\n{out[-3000:]}") from None
    for sid, step in sorted(steps.items(), key=lambda kv: kv[1].get("__run_num__", 0)):
        log(f"{'ok' if step.get('result') else 'FAILED':6} {sid.split('_|-')[1]}: {step.get('comment', '')[:120]}")
        for line in _failed_in_step(step):
            log(f"       {line}")
    if not all(step.get("result") for step in steps.values()):
        raise LabError("orch.cluster failed (see above)")
    return time.monotonic() - started


def _failed_in_step(step):
    """`node: state id: comment` for each failed state inside a failed salt.state step."""
    if step.get("result") is not False:
        return []
    returns = (step.get("changes") or {}).get("ret") or {}
    lines = []
    for minion, states in returns.items():
        for sid, state in (states.items() if isinstance(states, dict) else []):
            comment = str(state.get("comment")) if isinstance(state, dict) else ""
            # the states that failed by themselves, not those skipped for a failed requisite
            if state.get("result") is False and not comment.startswith("One or more requisite failed"):
                lines.append(f"{minion}: {sid.split('_|-')[1]}: {' '.join(comment.split())[:300]}")
    return lines
