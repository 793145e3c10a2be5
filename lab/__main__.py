"""python3 -m lab COMMAND: the virtual lab's command line (see lab/README.md)."""

import argparse
import fcntl
import json
import sys

from . import DEFAULT_INVENTORY, STATE, LabError, access, cluster, faults, lifecycle
from .host import require_root
from .inventory import load


def _status(inv, as_json):
    st = lifecycle.status(inv)
    if as_json:
        print(json.dumps(st, indent=2))
        return 0
    server = st["package_server"] or "not running"
    print(
        f"bridge {st['bridge']} ({'up' if st['bridge_up'] else 'absent'})  subnet {st['subnet']}  "
        f"vip {st['vip']}  domain {st['domain']}  packages {server}"
    )
    rtr = st["router"]
    print(f"router {rtr['ip']} ({rtr['state']}, DHCP {rtr['dhcp']})  host {st['host']}")
    print(f"{'NODE':9}{'IP':15}{'MAC':19}{'ROLES':13}{'STATE':9}{'LINK':6}PID")
    for name, n in st["nodes"].items():
        print(
            f"{name:9}{n['ip']:15}{n['mac']:19}{','.join(n['roles']):13}{n['state']:9}{n['link']:6}"
            f"{n['pid'] or '-'}"
        )
    return 0


def _lock():
    """One changing lab command at a time (tests and people may drive the lab concurrently)."""
    require_root()
    STATE.mkdir(parents=True, exist_ok=True)
    handle = open(STATE / "lab.lock", "w", encoding="ascii")  # kept open until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("lab: waiting for another lab command to finish ...", file=sys.stderr, flush=True)
        fcntl.flock(handle, fcntl.LOCK_EX)
    _LOCKS.append(handle)


_LOCKS = []


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m lab", description="The rpi-cluster virtual lab.")
    parser.add_argument(
        "--inventory", default=str(DEFAULT_INVENTORY), help="lab inventory (default: %(default)s)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p_build = sub.add_parser("build", help="base image, apt repository and wheelhouse (cached)")
    p_build.add_argument("--force", action="store_true", help="rebuild even when cached")
    sub.add_parser("up", help="bridge, package server and nodes (all, or the named ones)").add_argument(
        "nodes", nargs="*", metavar="NODE"
    )
    sub.add_parser("down", help="remove everything the lab made")
    sub.add_parser("bootstrap", help="the deployer, then every node over salt-ssh (all nodes must be up)")
    p_restore = sub.add_parser("restore-deployer", help="rebuild the re-flashed deployer from salt-run cluster.backup's archive")
    p_restore.add_argument("archive")
    p_restore.add_argument("passphrase_file")
    sub.add_parser("orch", help="salt-run state.orch orch.cluster on the deployer (after bootstrap)")
    sub.add_parser("status", help="nodes and their state").add_argument("--json", action="store_true")
    p_ssh = sub.add_parser("ssh", help="a shell or a command on a node (pi while vanilla, then the admin, through the deployer)")
    p_ssh.add_argument("node")
    p_ssh.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD...")
    for name, what in (
        ("power-off", "clean shutdown"),
        ("power-loss", "kill every process of the node at once"),
        ("unplug", "network link down"),
        ("plug", "network link up"),
        ("reflash", "wipe back to the vanilla image (new host keys, machine-id) and boot"),
    ):
        sub.add_parser(name, help=what).add_argument("node")
    args = parser.parse_args(argv)

    try:
        if args.command not in ("status", "ssh"):
            _lock()
        if args.command == "build":
            lifecycle.build(force=args.force)
            return 0
        if args.command == "down":
            lifecycle.down()
            return 0
        inv = load(args.inventory)
        if args.command == "up":
            lifecycle.up(inv, args.nodes)
            return 0
        if args.command == "status":
            return _status(inv, args.json)
        if args.command == "orch":
            print(f"orch.cluster: {cluster.orchestrate(inv, lifecycle.nodes_of(inv)):.1f} s")
            return 0
        if args.command == "restore-deployer":
            times = cluster.restore_deployer(inv, lifecycle.nodes_of(inv), args.archive, args.passphrase_file)
            print("restore times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
            return 0
        if args.command == "bootstrap":
            times = cluster.bootstrap(inv, lifecycle.nodes_of(inv))
            print("bootstrap times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
            return 0
        if args.command == "ssh":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            (node,) = lifecycle.nodes_of(inv, [args.node])
            if not node.running():
                raise LabError(f"node {node.name} is not running: python3 -m lab up {node.name}")
            access.exec_ssh(node, cmd)
        action = {
            "power-off": faults.power_off,
            "power-loss": faults.power_loss,
            "unplug": faults.unplug,
            "plug": faults.plug,
            "reflash": faults.reflash,
        }[args.command]
        action(inv, args.node)
        return 0
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `status | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
