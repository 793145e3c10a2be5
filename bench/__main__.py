"""python -m bench: run the parts, print one table, write it as JSON (see bench/__init__.py)."""

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import traceback

from lab import STATE

from . import REPO, cluster, lanservices, scale, statuspage
from . import __doc__ as bench_doc
from .common import BenchError, Nodes, Table, lab, log, now, status

PARTS = ("scale", "cold", "noop", "sshrerun", "dns", "vip", "rebuild", "zerotouch", "page")
LAB_FREE = ("scale",)  # parts that need no lab: they run first, with the lab up or down
ROWS = {  # the rows a part fills, for a part that does not run
    "scale": scale.FIGURES,
    "cold": ["cold `make lab` (caches kept)"],
    "noop": ["no-op highstate, all 7 nodes", "no-op highstate, one node (gamma)"],
    "sshrerun": ["salt-ssh rerun, all 7 nodes"],
    "dns": ["DNS propagation alpha -> beta (NOTIFY + TSIG XFR)"],
    "vip": ["VIP failover: power loss of alpha -> DNS on the VIP answers again",
            "DHCP lease, new client, both peers up",
            "DHCP lease, new client, alpha down"],
    "rebuild": ["rebuild MTTR: gamma", "rebuild MTTR: beta"],
    "zerotouch": ["zero-touch MTTR: epsilon"],
    "page": ["status page load (VIP, headless chromium)", "status page data age (deployer up)"],
}


def _args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=bench_doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--no-cold", action="store_true",
                        help="use the lab as it is: no `lab down` + `make lab` first (reported as not measured)")
    parser.add_argument("--only", nargs="+", choices=PARTS, metavar="PART",
                        help=f"run only these parts ({', '.join(PARTS)}); the others are reported as not measured")
    parser.add_argument("--noop-runs", type=int, default=3)
    parser.add_argument("--scale-runs", type=int, default=3, help="timed runs of the scale part (after a warm-up)")
    parser.add_argument("--dns-cycles", type=int, default=2, help="change + restore cycles (2 samples each)")
    parser.add_argument("--vip-runs", type=int, default=5)
    parser.add_argument("--page-runs", type=int, default=5, help="status page loads in chromium")
    parser.add_argument("--rebuild", nargs="+", default=["gamma", "beta"], choices=["gamma", "beta"])
    parser.add_argument("--json", help="where to write the table as JSON (default: STATE/bench/)")
    return parser.parse_args(argv)


def _ensure_running(table_notes):
    """Every node of the lab running (a fault or a failed part may have left one down)."""
    st = status()
    stopped = [n for n, s in st["nodes"].items() if s["state"] != "running"]
    if stopped:
        log(f"booting nodes that are down: {', '.join(stopped)}")
        lab("up", *stopped, timeout=900)
        table_notes.append(f"booted again at the end: {', '.join(stopped)}")
    return status()


def _git():
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False).stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def main(argv=None):
    args = _args(argv)
    parts = [p for p in PARTS if (args.only is None or p in args.only)]
    if args.no_cold and "cold" in parts:
        parts.remove("cold")
    lab_parts = [p for p in parts if p not in LAB_FREE]
    if lab_parts and os.geteuid() != 0:
        print("bench: run as root (the lab needs it): sudo make bench", file=sys.stderr)
        return 2
    table, notes = Table(), []
    started_at = datetime.datetime.now(datetime.UTC)
    started = now()
    meta = {"started": started_at.isoformat(timespec="seconds"), "host_cpus": os.cpu_count(),
            "load_before": os.getloadavg(), "git": _git(), "parts": parts}
    log(f"parts: {', '.join(parts)}")

    done = set()

    def skipped(part, why, by_choice=False):
        done.add(part)
        table.part = part
        for figure in ROWS[part]:
            table.not_measured(figure, why, by_choice=by_choice)

    runners = {
        "scale": lambda nodes: scale.scale(table, args.scale_runs),
        "noop": lambda nodes: cluster.noop_highstate(nodes, table, args.noop_runs),
        "sshrerun": lambda nodes: cluster.salt_ssh_rerun(nodes, table, args.noop_runs),
        "dns": lambda nodes: lanservices.dns_propagation(nodes, table, args.dns_cycles),
        "vip": lambda nodes: lanservices.vip_failover(nodes, table, args.vip_runs),
        "rebuild": lambda nodes: cluster.rebuilds(nodes, table, args.rebuild),
        "zerotouch": lambda nodes: cluster.zero_touch(nodes, table),
        "page": lambda nodes: statuspage.statuspage(nodes, table, args.page_runs),
    }

    def run(part, nodes):
        log(f"--- {part}")
        done.add(part)
        table.part = part
        try:
            runners[part](nodes)
        except BenchError as exc:
            skipped(part, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in one part must not lose the whole table
            traceback.print_exc()
            skipped(part, f"bench error: {exc!r}")

    why_not = "not run"
    try:
        for part in parts:
            if part in LAB_FREE:
                run(part, None)
        if lab_parts:
            if "cold" in lab_parts:
                done.add("cold")
                table.part = "cold"
                if not isinstance(cluster.cold_lab(table), dict):
                    raise BenchError("cold `make lab` failed")
            st = status()
            down = [n for n, s in st["nodes"].items() if s["state"] != "running"]
            if down:
                raise BenchError(f"nodes not running: {', '.join(down)} (python3 -m lab up; make lab)")
            nodes = Nodes(st)
            for part in lab_parts:
                if part != "cold":
                    run(part, nodes)
    except BenchError as exc:
        notes.append(f"stopped: {exc}")
        log(f"stopped: {exc}")
        why_not = f"stopped before: {exc}"
    except KeyboardInterrupt:
        notes.append("interrupted")
        why_not = "interrupted"
    except Exception as exc:  # noqa: BLE001 - still print what was measured
        traceback.print_exc()
        notes.append(f"bench error: {exc!r}")
        why_not = f"bench error: {exc!r}"
    finally:
        try:
            if lab_parts:  # the lab as the bench found it: every node running
                _ensure_running(notes)
        except BenchError as exc:
            notes.append(f"could not boot every node again: {exc}")
    for part in PARTS:
        if part not in done:
            if part == "cold" and args.no_cold:
                skipped(part, "--no-cold (the lab was used as it was)", by_choice=True)
            elif part not in parts:
                skipped(part, "not selected (--only)", by_choice=True)
            else:
                skipped(part, why_not)
    table.rows.sort(key=lambda r: PARTS.index(r["part"]))  # stable: the order of the parts, then of the rows
    meta.update(seconds=round(now() - started, 1), load_after=os.getloadavg(), notes=notes)

    print()
    print(f"make bench on the virtual lab ({meta['host_cpus']} host CPUs, 7 nspawn nodes), "
          f"{meta['started']}, checkout {meta['git']['commit']}{' (dirty)' if meta['git']['dirty'] else ''}, "
          f"bench {meta['seconds']:.0f} s, load {meta['load_before'][0]:.1f} -> {meta['load_after'][0]:.1f}")
    print(table.render())
    for note in notes:
        print(f"note: {note}")
    try:
        path = _write_json(args.json, {"meta": meta, "rows": table.rows})
    except OSError as exc:  # e.g. the lab-free parts, not as root: the lab's directory is root's
        path = f"not written ({exc}; --json FILE)"
    print(f"table as JSON: {path}")
    failed = [r["figure"] for r in table.rows if not r["measured"] and not r["data"].get("by_choice")]
    if failed:
        print(f"bench: not measured or failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _write_json(where, doc):
    if where:
        path = where
    else:
        folder = STATE / "bench"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = str(folder / f"bench-{stamp}.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=2, default=str)
    if not where:
        last = STATE / "bench" / "last.json"
        tmp = last.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
        tmp.replace(last)
    return path


if __name__ == "__main__":
    sys.exit(main())
