"""LAN services figures: DNS propagation primary -> secondary, VIP failover on a power loss of
the primary (5 runs), DHCP lease times with both peers up and with the primary down.

Every time is taken on ONE clock, the lab host's monotonic clock: the host itself queries
alpha, beta and the VIP over the lab bridge, from the moment it triggers the change or the fault.
"""

import os
import socket
import statistics
import struct
import subprocess
import threading
import time

from lab.probe import DhcpClient, dig

from .common import BenchError, dns_parse, dns_query, lab, log, now, soa_serial, spread, wait_until

INVENTORY_ON_DEPLOYER = "/srv/cluster/lab/inventory.yaml"
NEW_ZETA_IP = "10.77.0.29"

# --------------------------------------------------------------------------------------
# DNS propagation
# --------------------------------------------------------------------------------------


class SerialWatch(threading.Thread):
    """Query ``server`` for the zone's SOA every ``interval`` s; remember, on the host's clock,
    the last query answered with a serial <= ``old`` and the first answered with a greater one.
    The server changed its serial after the first sent and before the second was answered."""

    def __init__(self, server, zone, old, interval=0.001, deadline=300):
        super().__init__(daemon=True)
        self.server, self.zone, self.old = server, zone, old
        self.interval, self.deadline = interval, deadline
        self.last_old = None  # (sent, received)
        self.first_new = None  # (sent, received, serial)
        self.queries = 0
        self.stop = threading.Event()

    def run(self):
        end = now() + self.deadline
        qid = 0
        while not self.stop.is_set() and now() < end and self.first_new is None:
            qid = (qid + 1) & 0xFFFF
            sent, got, serial = soa_serial(self.server, self.zone, timeout=0.3, qid=qid)
            self.queries += 1
            if serial is not None:
                if serial <= self.old:
                    self.last_old = (sent, got)
                else:
                    self.first_new = (sent, got, serial)
            time.sleep(max(0.0, self.interval - (now() - sent)))


def _propagation_once(nodes, zone, alpha, beta, sed, what):
    before_a = soa_serial(alpha, zone)[2]
    before_b = soa_serial(beta, zone)[2]
    if before_a is None or before_a != before_b:
        raise BenchError(f"alpha and beta do not serve one serial before the change ({before_a} / {before_b})")
    watches = {name: SerialWatch(ip, zone, before_a) for name, ip in (("alpha", alpha), ("beta", beta))}
    for watch in watches.values():
        watch.start()
    try:
        proc = nodes.run("psi", sed, timeout=60)
        if proc.returncode:
            raise BenchError(f"editing the inventory on psi failed: {proc.stderr.strip()}")
        trigger = now()
        apply = nodes.run("psi", "sudo salt -t 300 --out json --static alpha state.apply bind", timeout=400)
        applied = now()
        if apply.returncode:
            raise BenchError(f"state.apply bind on alpha exited {apply.returncode}: {apply.stderr[-500:]}")
        for watch in watches.values():
            watch.join(timeout=max(1, 120 - (now() - applied)))
    finally:
        for watch in watches.values():
            watch.stop.set()
    a, b = watches["alpha"], watches["beta"]
    for name, watch in watches.items():
        if watch.first_new is None:
            raise BenchError(f"{name} did not serve a new serial within 120 s after state.apply bind ({what})")
        if watch.last_old is None:
            raise BenchError(f"{name}: no answer with the old serial was seen before the new one ({what})")
    if b.first_new[2] != a.first_new[2]:
        log(f"note: beta's first new serial {b.first_new[2]} differs from alpha's {a.first_new[2]}")
    # alpha changed in (a.last_old.sent, a.first_new.received), beta in (b.last_old.sent, b.first_new.received)
    low = b.last_old[0] - a.first_new[1]
    high = b.first_new[1] - a.last_old[0]
    if high <= 0:
        raise BenchError(
            f"measurement bug: beta served the new serial before alpha (upper bound {high * 1000:.1f} ms)"
        )
    return {
        "what": what,
        "serial_before": before_a,
        "serial_after": a.first_new[2],
        "seconds": (low + high) / 2,
        "low": low,
        "high": high,
        "alpha_after_trigger": a.first_new[1] - trigger,
        "beta_after_trigger": b.first_new[1] - trigger,
        "state_apply_seconds": applied - trigger,
        "queries": {"alpha": a.queries, "beta": b.queries},
    }


def dns_propagation(nodes, table, cycles=2):
    """``cycles`` x (zeta's IP changed in the inventory on psi, then restored), each change
    applied with ``salt alpha state.apply bind``: 2 samples per cycle."""
    st = nodes.st
    zone, alpha, beta = st["domain"], st["nodes"]["alpha"]["ip"], st["nodes"]["beta"]["ip"]
    old_ip = st["nodes"]["zeta"]["ip"]
    figure = "DNS propagation alpha -> beta (NOTIFY + TSIG XFR)"
    method = (
        "zeta's IP changed in the inventory on psi, `salt alpha state.apply bind`, then restored "
        "(2 samples per cycle); the lab host polls the SOA serial of alpha and beta itself, each every "
        "1 ms over UDP, on its one monotonic clock; a server changed between its last old answer's query "
        "and its first new answer; the figure is beta's change minus alpha's (midpoint, +-half the "
        "uncertainty)"
    )
    samples, error = [], None
    change = f"sudo sed -i.bench-orig 's/ip: {old_ip},/ip: {NEW_ZETA_IP},/' {INVENTORY_ON_DEPLOYER}"
    restore = f"sudo mv {INVENTORY_ON_DEPLOYER}.bench-orig {INVENTORY_ON_DEPLOYER}"
    try:
        for cycle in range(cycles):
            check = nodes.run("psi", f"sudo grep -c 'ip: {old_ip},' {INVENTORY_ON_DEPLOYER}", timeout=30)
            if check.stdout.strip() != "1":
                raise BenchError(f"psi's {INVENTORY_ON_DEPLOYER} does not hold zeta's ip {old_ip} once")
            samples.append(_propagation_once(nodes, zone, alpha, beta, change, f"cycle {cycle + 1}: change"))
            samples.append(_propagation_once(nodes, zone, alpha, beta, restore, f"cycle {cycle + 1}: restore"))
    except BenchError as exc:
        log(f"DNS propagation: {exc}")
        error = str(exc)
    finally:
        # psi's inventory is its own again whatever happened, and alpha serves it
        nodes.run("psi", f"test -e {INVENTORY_ON_DEPLOYER}.bench-orig && {restore}", timeout=60)
        if dig(alpha, f"zeta.{zone}") != [old_ip]:
            log(f"alpha does not serve zeta's own address {old_ip}: applying bind on alpha again")
            nodes.run("psi", "sudo salt -t 300 --out json --static alpha state.apply bind", timeout=400)
            if dig(alpha, f"zeta.{zone}") != [old_ip]:
                still = f"alpha STILL does not serve zeta's address {old_ip}: check psi's inventory"
                error = f"{error}; {still}" if error else still
    if not samples:
        return table.not_measured(figure, error or "no sample", method)
    mids = [s["seconds"] * 1000 for s in samples]
    half = max((s["high"] - s["low"]) / 2 for s in samples) * 1000
    value = f"{spread(mids, 'ms', 1)}, +-{half:.1f} ms"
    if error:
        value += f"; stopped early: {error}"
    trig = statistics.median(s["beta_after_trigger"] for s in samples)
    return table.add(
        figure, value,
        method + f"; beta serves the new serial a median {trig:.1f} s after the `salt` call starts",
        samples=samples,
    )


# --------------------------------------------------------------------------------------
# VIP failover and DHCP
# --------------------------------------------------------------------------------------


class QueryStream:
    """DNS queries (A ``name``) to ``server`` at a fixed rate from one UDP socket, answers
    collected by a second thread, all on the host's monotonic clock: what dnsperf -Q does.
    A query is lost when no correct answer (NOERROR, A = ``expect``) came within ``timeout``."""

    def __init__(self, server, name, expect, interval=0.02, timeout=1.0):
        self.server, self.name, self.expect = server, name, expect
        self.interval, self.timeout = interval, timeout
        self.sent = []  # send times, index = query number
        self.answered = {}  # query number -> receive time of a correct answer
        self.wrong = 0
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(0.1)
        self.threads = [threading.Thread(target=self._send, daemon=True), threading.Thread(target=self._recv, daemon=True)]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        self.sock.close()

    def _send(self):
        start = now()
        while not self.stop.is_set():
            n = len(self.sent)
            self.sent.append(now())
            try:
                self.sock.sendto(dns_query(n & 0xFFFF, self.name, "A"), (self.server, 53))
            except OSError:
                pass  # no route for a moment: the query is lost, as it would be for a client
            time.sleep(max(0.0, start + (n + 1) * self.interval - now()))

    def _recv(self):
        while not self.stop.is_set():
            try:
                msg, _ = self.sock.recvfrom(4096)
            except (TimeoutError, ConnectionRefusedError):
                continue
            except OSError:
                return
            got = now()
            try:
                qid, rcode, answers = dns_parse(msg)
            except (struct.error, IndexError, UnicodeDecodeError):  # a malformed datagram: a wrong answer
                self.wrong += 1
                continue
            # the query with this id sent last before now (ids wrap every 65536 queries)
            n = len(self.sent) - 1
            n -= (n - qid) & 0xFFFF
            if n < 0 or got - self.sent[n] > self.timeout:
                continue
            if rcode == 0 and ("A", self.expect) in answers:
                self.answered.setdefault(n, got)
            else:
                self.wrong += 1

    def answered_since(self, t):
        return any(self.sent[n] >= t for n in list(self.answered))

    def lost_between(self, t0, t1):
        """(lost, sent) among the queries sent in [t0, t1)."""
        idx = [n for n, t in enumerate(self.sent) if t0 <= t < t1]
        return sum(1 for n in idx if n not in self.answered), len(idx)

    def outage_after(self, t0, steady=25):
        """The outage that starts from ``t0`` on: the last answered query before the first lost
        one, and the first answered query after which ``steady`` queries in a row are answered
        (service back for good, not one lucky answer); their send times, the queries lost in
        between, and every run of lost queries in between as (start, count). None when no
        query was lost or the service did not come back steadily."""
        sent, ok = list(self.sent), set(self.answered)
        count = len(sent)
        first_lost = next((n for n in range(count) if sent[n] >= t0 and n not in ok), None)
        if first_lost is None:
            return None
        before = next((n for n in range(first_lost - 1, -1, -1) if n in ok), None)
        after = next(
            (n for n in range(first_lost, count - steady) if all(m in ok for m in range(n, n + steady))), None
        )
        if before is None or after is None:
            return None
        runs, n = [], before + 1
        while n < after:
            if n not in ok:
                start = n
                while n < after and n not in ok:
                    n += 1
                runs.append((sent[start], n - start))
            n += 1
        return {"last_ok": sent[before], "first_ok": sent[after], "lost": sum(c for _, c in runs), "runs": runs}


def _new_mac():
    """A locally administered MAC no client used before: a new client for dhcpd."""
    return "02:77:be:" + ":".join(f"{b:02x}" for b in os.urandom(3))


def _lease(tag, timeout):
    """A lease for a new client (a MAC never seen), released again so that benches do not
    use up the pool; the lease dict (with ``mac``, ``release_exit``) or None."""
    mac = _new_mac()
    with DhcpClient(mac, tag=tag) as client:
        lease = client.lease(timeout=timeout)
        if lease:
            lease["mac"] = mac
            # DHCPRELEASE goes by unicast from the leased address: give it to the namespace's
            # interface first (the probe configures nothing); dhclient's files are in client.tmp
            tmp, netns = client.tmp, ["ip", "netns", "exec", client.ns]
            subprocess.run([*netns, "ip", "addr", "add", f"{lease['ip']}/32", "dev", "eth0"],
                           capture_output=True, timeout=10, check=False)
            subprocess.run([*netns, "ip", "route", "add", lease["server"], "dev", "eth0"],
                           capture_output=True, timeout=10, check=False)
            proc = subprocess.run(
                [*netns, "dhclient", "-r", "-cf", f"{tmp}/dhclient.conf", "-lf", f"{tmp}/leases",
                 "-pf", f"{tmp}/pid", "-sf", f"{tmp}/script", "eth0"],
                capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL,
            )
            lease["release_exit"] = proc.returncode
    return lease


def _back_to_normal(nodes, timeout):
    """Wait until alpha holds the VIP (and beta not) and the DHCP failover pair is normal on
    both; (seconds to the VIP on alpha, seconds to failover normal), from now."""
    started = now()
    wait_until("VIP on alpha only", lambda: nodes.vip_holders() == ["alpha"], timeout, interval=0.5)
    vip_back = now() - started
    wait_until("alpha's minion answers", lambda: nodes.salt("alpha test.ping", timeout=10).get("alpha") is True,
               max(10, timeout - (now() - started)), interval=2)
    wait_until("DHCP failover normal on alpha and beta", lambda: nodes.failover_normal()[0],
               max(10, timeout - (now() - started)), interval=2)
    return vip_back, now() - started


def _master_times(nodes, node, since_epoch):
    """Wall-clock times (epoch s) at which ``node``'s keepalived logged "Entering MASTER STATE"
    since ``since_epoch`` (the nodes share the lab host's kernel clock)."""
    proc = nodes.run(node, f"sudo journalctl -u keepalived --since @{since_epoch:.0f} -o short-unix --no-pager",
                     timeout=30)
    return [float(line.split()[0]) for line in proc.stdout.splitlines() if "Entering MASTER STATE" in line]


def _vip_run(nodes, run):
    st = nodes.st
    vip, zone = st["vip"], st["domain"]
    psi = st["nodes"]["psi"]["ip"]
    rec = {"run": run, "lease_both_up": _lease("b", 40)}
    wall = time.time() - now()  # monotonic -> wall clock, for the journals' times
    with QueryStream(vip, f"psi.{zone}", psi) as stream:
        time.sleep(2)
        lost, sent = stream.lost_between(now() - 1.5 - stream.timeout, now() - stream.timeout)
        if sent == 0 or lost:
            raise BenchError(f"DNS on the VIP lost {lost} of {sent} queries before the fault: not a clean start")
        t_cmd = now()
        took, _ = lab("power-loss", "alpha", timeout=120)
        t_killed = now()
        rec["power_loss_command"] = took
        try:
            wait_until("an answer on the VIP after the power loss", lambda: stream.answered_since(t_killed), 30, 0.05)
            time.sleep(stream.timeout + 0.6)  # queries in flight answered or timed out, and `steady` more sent
            outage = stream.outage_after(t_cmd)
            if outage is None:
                raise BenchError("no outage with a steady return after the power loss (see the JSON)")
            rec.update(
                gap=outage["first_ok"] - outage["last_ok"],
                lost_in_gap=outage["lost"],
                lost_runs=[(round(t - outage["last_ok"], 3), c) for t, c in outage["runs"]],
                answer_after_kill_returned=outage["first_ok"] - t_killed,
                last_answer_after_command_start=outage["last_ok"] - t_cmd,
                last_answer_wall=outage["last_ok"] + wall,
            )
            rec["lease_primary_down"] = _lease("p", 60)
        finally:
            up_took, _ = lab("up", "alpha", timeout=600)
        t_up = now()
        rec["lab_up_alpha"] = up_took
        vip_back, normal = _back_to_normal(nodes, 300)
        rec["vip_on_alpha_after_up"] = vip_back
        rec["failover_normal_after_up"] = normal
        time.sleep(stream.timeout + 0.2)
        rec["lost_during_return"] = stream.lost_between(t_up - up_took, now() - stream.timeout)
        rec["wrong_answers"] = stream.wrong
        rec["interval"] = stream.interval
    masters = [t for t in _master_times(nodes, "beta", t_cmd + wall - 5) if t >= t_cmd + wall - 1]
    if masters:  # cross-check on another clock reading: beta's own log of its takeover
        rec["beta_master_after_last_answer"] = masters[0] - rec["last_answer_wall"]
    return rec


def vip_failover(nodes, table, runs=5):
    """``runs`` power losses of alpha, DNS on the VIP probed at 50 q/s from the host; DHCP leases
    with both peers up (before each fault) and with alpha down (during each)."""
    fig_gap = "VIP failover: power loss of alpha -> DNS on the VIP answers again"
    method_gap = (
        "`python3 -m lab power-loss alpha` (SIGKILL of the node) while the lab host sends an A query for "
        "psi to the VIP every 20 ms over UDP (1 s timeout, correct answer required); figure = send time "
        "of the first answered query after the fault (followed by 25 answered in a row) minus that of the "
        "last answered before it (one clock, +-20 ms); between runs alpha is booted again and the bench "
        "waits (<= 300 s) until alpha alone holds the VIP and DHCP failover is normal on both peers"
    )
    try:
        wait_until("the VIP on alpha only and DHCP failover normal before the first run",
                   lambda: nodes.vip_holders() == ["alpha"] and nodes.failover_normal()[0], 120, interval=2)
    except BenchError as exc:
        table.not_measured(fig_gap, str(exc), method_gap)
        return []
    recs, error = [], None
    for run in range(1, runs + 1):
        log(f"VIP failover run {run}/{runs}")
        try:
            recs.append(_vip_run(nodes, run))
        except BenchError as exc:
            error = f"run {run}: {exc}"
            log(f"VIP failover {error}")
            break
    gaps = [r["gap"] for r in recs if "gap" in r]
    if gaps:
        value = spread(gaps)
        if len(gaps) < runs:
            value += f"; only {len(gaps)} of {runs} runs: {error}"
        lost = [r["lost_in_gap"] for r in recs if "gap" in r]
        method = method_gap + f"; queries lost per run: {', '.join(map(str, lost))}"
        split = [r for r in recs if len(r.get("lost_runs", [])) > 1]
        if split:
            method += f"; the outage came in several pieces in {len(split)} run(s) (see the JSON)"
        master = [r["beta_master_after_last_answer"] for r in recs if "beta_master_after_last_answer" in r]
        if master:
            method += ("; cross-check: beta's keepalived logged MASTER "
                       f"{', '.join(f'{m:.2f}' for m in master)} s after the last answer")
        table.add(fig_gap, value, method, runs=recs)
    else:
        table.not_measured(fig_gap, error or "no run", method_gap)
    back = [r for r in recs if "failover_normal_after_up" in r]
    if back:
        lost = [r["lost_during_return"][0] for r in back]
        sent = sum(r["lost_during_return"][1] for r in back)
        table.add(
            "alpha's return: VIP back on alpha / DHCP failover normal",
            f"{spread([r['vip_on_alpha_after_up'] for r in back], 's', 1)} / "
            f"{spread([r['failover_normal_after_up'] for r in back], 's', 1)}",
            "after `python3 -m lab up alpha` returns (node booted, sshd answers): VIP seen on alpha only by "
            "`ip -4 addr` on both peers, polled every 0.5 s; failover state by `salt -L alpha,beta "
            f"dhcpd_failover.status`, polled every 2 s; DNS queries on the VIP lost meanwhile: {sum(lost)} of {sent}",
        )
    _lease_rows(table, recs)
    return recs


def _lease_rows(table, recs):
    method = (
        "ISC dhclient -1 in a network namespace on the lab bridge with a new random MAC each time (a new "
        "client: dhcpd's ping check of a free address included), timed by the lab host from start to bound "
        "lease; the lease is released after; {when}"
    )
    for key, figure, when in (
        ("lease_both_up", "DHCP lease, new client, both peers up", "before each power loss"),
        ("lease_primary_down", "DHCP lease, new client, alpha down", "after DNS answered again on the VIP"),
    ):
        leases = [r.get(key) for r in recs if key in r]
        got = [lease for lease in leases if lease]
        if not leases:
            table.not_measured(figure, "no run got that far", method.format(when=when))
            continue
        servers = sorted({lease.get("server") for lease in got})
        value = spread([lease["seconds"] for lease in got], "s", 2) if got else "no lease"
        if len(got) < len(leases):
            value += f"; no lease in {len(leases) - len(got)} of {len(leases)} tries"
        table.add(figure, value, method.format(when=when) + f"; served by {', '.join(servers)}", leases=leases)


def dns_check(nodes):
    """Every server answers psi's name (a sanity check with the real dig)."""
    st = nodes.st
    for server in (st["vip"], st["nodes"]["alpha"]["ip"], st["nodes"]["beta"]["ip"]):
        if dig(server, f"psi.{st['domain']}") != [st["nodes"]["psi"]["ip"]]:
            raise BenchError(f"dig @{server} psi.{st['domain']} does not answer psi's address")
