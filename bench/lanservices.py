#!/usr/bin/env python3
"""Benchmark the LAN services' high availability on the virtual lab; prints the figures.

    make bench        (= python3 bench/lanservices.py; root; builds/boots/bootstraps the lab first,
                       unless --no-prepare says that `make lab` just ran)

1. DNS propagation primary -> secondary: a changed inventory IP applied on the primary;
   time from the primary serving the new SOA serial to the secondary serving it (NOTIFY + TSIG AXFR).
2. VIP failover after a power loss of the primary: time until DNS on the VIP answers again,
   and how many of the DNS queries sent to the VIP every 100 ms (1 s timeout) failed meanwhile.
3. DHCP lease time for a new client with both peers up, and while the primary is down.
Bounded: every step has a timeout; the primary is booted again at the end.
"""

import json
import pathlib
import subprocess
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lab.probe import DhcpClient, dig  # noqa: E402

INVENTORY_ON_DEPLOYER = "/srv/cluster/lab/inventory.yaml"


def lab(*args, timeout=1800):
    proc = subprocess.run([sys.executable, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise SystemExit(f"python3 -m lab {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def on(node, cmd, timeout=900):
    return subprocess.run(
        [sys.executable, "-m", "lab", "ssh", node, "--", cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def serial(server, zone):
    answer = dig(server, zone, "SOA", timeout=1)
    return int(answer[0].split()[2]) if answer else None


def dns_propagation(st):
    zone, alpha, beta = st["domain"], st["nodes"]["alpha"]["ip"], st["nodes"]["beta"]["ip"]
    old_ip = st["nodes"]["zeta"]["ip"]
    before = serial(alpha, zone)
    on("psi", f"sudo sed -i.orig 's/ip: {old_ip},/ip: 10.77.0.29,/' {INVENTORY_ON_DEPLOYER}")
    seen = {}

    def watch():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and len(seen) < 2:
            for name, server in (("alpha", alpha), ("beta", beta)):
                if name not in seen and (serial(server, zone) or 0) > before:
                    seen[name] = time.monotonic()
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        on("psi", "sudo salt -t 300 alpha state.apply bind")
        watcher.join(timeout=310)
    finally:
        on("psi", f"sudo mv {INVENTORY_ON_DEPLOYER}.orig {INVENTORY_ON_DEPLOYER}")
        on("psi", "sudo salt -t 300 alpha state.apply bind")
    if len(seen) < 2:
        return None
    return seen["beta"] - seen["alpha"]


def failover(st):
    zone, vip = st["domain"], st["vip"]
    results = []
    stop = threading.Event()

    def query_loop():
        while not stop.is_set():
            sent = time.monotonic()
            results.append((sent, dig(vip, f"psi.{zone}", timeout=1) is not None))
            time.sleep(max(0.0, 0.1 - (time.monotonic() - sent)))

    with DhcpClient("02:77:00:00:00:98", tag="b") as client:
        normal = client.lease(timeout=40)
    loop = threading.Thread(target=query_loop)
    loop.start()
    time.sleep(2)
    lab("power-loss", "alpha")
    lost = time.monotonic()
    try:
        back = None
        while time.monotonic() - lost < 20:
            after = [ok for t, ok in results if t > lost]
            if after and after[-1]:
                back = [t for t, ok in results if t > lost and ok][0] - lost
                break
            time.sleep(0.05)
        time.sleep(2)
        stop.set()
        loop.join()
        failed = sum(1 for t, ok in results if not ok)
        with DhcpClient("02:77:00:00:00:97", tag="p") as client:
            degraded = client.lease(timeout=60)
    finally:
        stop.set()
        lab("up", "alpha")
    return back, failed, len(results), normal, degraded


def main():
    if "--no-prepare" not in sys.argv:  # skip when `make lab` just ran
        print("preparing the lab (build, up, bootstrap, orch.cluster) ...", flush=True)
        lab("build")
        lab("up")
        lab("bootstrap")
        lab("orch")
    st = json.loads(lab("status", "--json"))
    time.sleep(5)
    prop = dns_propagation(st)
    back, failed, sent, normal, degraded = failover(st)
    print("\nLAN services on the virtual lab (2 cores, 7 nspawn nodes)")
    print(f"  DNS propagation primary -> secondary (NOTIFY + TSIG AXFR): {prop * 1000:.0f} ms" if prop is not None
          else "  DNS propagation: not observed within 300 s")
    print(f"  VIP failover after power loss of the primary (DNS on the VIP answers again): "
          f"{back:.2f} s (target <= 3.7 s)" if back is not None else "  VIP failover: DNS on the VIP did not come back in 20 s")
    print(f"  DNS queries on the VIP during the failover: {failed} failed of {sent} (one every 100 ms, 1 s timeout)")
    print(f"  DHCP lease, both peers up: {normal['seconds']:.1f} s from {normal['server']}" if normal else "  DHCP lease, both up: none")
    print(f"  DHCP lease, primary down: {degraded['seconds']:.1f} s from {degraded['server']}" if degraded
          else "  DHCP lease, primary down: none within 60 s")


if __name__ == "__main__":
    main()
