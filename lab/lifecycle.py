"""build, up, down, status: the lab as a whole."""

import ipaddress
import pathlib
import shutil
import signal
import time
from concurrent.futures import ThreadPoolExecutor

from . import BRIDGE, STATE, LabError, access, cgroup, image, net, proc, repo, router
from .host import ensure_tools, log, preflight, require_root, run
from .mount import mounts_under, umount
from .node import Node, on_disk

NSPAWN_RUN = pathlib.Path("/run/systemd/nspawn")
NSPAWN_RUN_DIRS = [NSPAWN_RUN / d for d in ("propagate", "locks", "unix-export", "incoming")]


def _ready():
    require_root()
    reason = preflight()
    if reason:
        raise LabError(f"systemd-nspawn nodes cannot run here: {reason}")
    ensure_tools()


def nodes_of(inv, names=()):
    """Node objects for ``names`` (all inventory nodes when empty), in inventory order."""
    specs = inv["nodes"]
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise LabError(f"not in the lab inventory: {', '.join(unknown)} (nodes: {', '.join(specs)})")
    prefix = ipaddress.IPv4Network(inv["network"]["subnet"]).prefixlen
    return [Node(n, {**specs[n], "prefixlen": prefix}) for n in (names or specs)]


def build(force=False):
    """Base image + apt repository + wheelhouse (each cached); return the image path."""
    _ready()
    started = time.monotonic()
    root = image.build(force)
    repo.build(root, force)
    access.ensure_key()
    image.prune({n.meta().get("image") for n in map(Node, on_disk())})
    log(f"build done in {time.monotonic() - started:.1f} s")
    return root


def up(inv, names=()):
    """Bridge, package server, and every (or each named) node booted; waits for sshd. Idempotent."""
    _ready()
    selected = nodes_of(inv, names)
    root = build()  # a no-op when cached; rebuilds the repository when a package list changed
    net.bridge_up(inv)
    repo.serve(net.host_address(inv))
    _router_up(root, inv)
    todo = [n for n in selected if not n.running()]
    if not todo:
        log("all requested nodes are running")
        return {}
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda n: n.prepare(root, inv), todo))
    booted = {}
    for node in todo:
        node.boot()
        booted[node.name] = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(todo)) as pool:
        waited = dict(zip([n.name for n in todo], pool.map(lambda n: n.wait_ssh(), todo), strict=True))
    for node in todo:
        log(
            f"{node.name:8} {node.spec['ip']:15} up, sshd answered {booted[node.name] - started + waited[node.name]:.1f} s "
            f"after start ({waited[node.name]:.1f} s boot)"
        )
    log(f"{len(todo)} node(s) up in {time.monotonic() - started:.1f} s")
    return waited


def _router_up(root, inv):
    """The router stand-in first: the vanilla nodes ask it for their address (idempotent)."""
    rtr = router.router(inv)
    if rtr.running():
        return
    started = time.monotonic()
    rtr.prepare(root, inv)
    rtr.boot()
    rtr.wait_ssh()
    log(f"{rtr.name:8} {rtr.spec['ip']:15} up (dnsmasq: DHCP and DNS) in {time.monotonic() - started:.1f} s")


def down():
    """Remove everything the lab made: nodes, mounts, cgroups, links, bridge, server."""
    require_root()
    started = time.monotonic()
    names = on_disk()
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        list(pool.map(lambda n: Node(n).destroy(), names))
    for name in cgroup.leftovers():
        # a big process (the deployer's salt-master) can outlive its node's SIGKILL by seconds
        deadline = time.monotonic() + 90  # 30 s was seen too short on a loaded host
        while True:
            for pid in cgroup.pids(name):
                proc.kill(pid, signal.SIGKILL)
            left = cgroup.clean(name)
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if left:
            raise LabError(f"cgroups still in use: {', '.join(left)}")
    umount(STATE / "builder" / "root")
    shutil.rmtree(STATE / "builder", ignore_errors=True)
    repo.unserve()
    for link, record in net.links().items():
        if link.startswith("vb-") and record.get("master") == BRIDGE:
            run(["ip", "link", "del", link], check=False)
    net.bridge_down()
    shutil.rmtree(STATE / "run", ignore_errors=True)
    for empty in (STATE / "nodes", *NSPAWN_RUN_DIRS, NSPAWN_RUN):  # what nspawn left in /run
        try:
            empty.rmdir()
        except OSError:
            pass
    left = mounts_under(STATE)
    if left:
        raise LabError(f"still mounted: {', '.join(left)}")
    log(f"lab down in {time.monotonic() - started:.1f} s")


def status(inv):
    nodes = {}
    for node in nodes_of(inv):
        running = node.running()
        nodes[node.name] = {
            "ip": node.spec["ip"],
            "mac": node.spec["mac"],
            "roles": node.spec["roles"],
            "model": node.spec.get("model", ""),
            "state": "running" if running else "stopped",
            "link": (net.link_state(node.name) or "none") if running else "none",
            "pid": node.nspawn_pid() if running else None,
        }
    bridge = net.links().get(BRIDGE)
    rtr = router.router(inv)
    return {
        "bridge": BRIDGE,
        "bridge_up": bridge is not None,
        "bridge_mac": bridge.get("address") if bridge else None,
        "gateway": inv["network"]["gateway"],
        "subnet": inv["network"]["subnet"],
        "vip": inv["network"]["vip"],
        "domain": inv["domain"],
        "host": net.host_address(inv),
        "router": {
            "ip": rtr.spec["ip"],
            "mac": rtr.spec["mac"],
            "state": "running" if rtr.running() else "stopped",
            "dhcp": "serving" if rtr.running() and rtr.dhcp_serving() else "off",
        },
        "package_server": f"http://{net.host_address(inv)}:{repo.HTTP_PORT}/"
        if repo.server_pid()
        else None,
        "nodes": nodes,
    }
