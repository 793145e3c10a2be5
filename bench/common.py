"""What every benchmark part shares: the lab's command line, commands on nodes, salt on the
deployer, a tiny DNS client on one clock, statistics and the result rows.

Every time here is read from ``time.monotonic()`` on the lab host. The nodes are containers
on the same kernel, without a time namespace, so it is also the clock of every node.
"""

import json
import os
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import time

from lab import access

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
now = time.monotonic


class BenchError(Exception):
    """A figure cannot be measured; the message says why (it goes into the table)."""


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# The lab and its nodes
# --------------------------------------------------------------------------------------


def lab(*args, timeout=900, check=True):
    """``python3 -m lab ARGS`` from the repository root: (seconds, CompletedProcess).

    The seconds are the wall time of the command on the lab host's monotonic clock.
    """
    started = now()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "lab", *args], cwd=REPO, capture_output=True, text=True,
            timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"python3 -m lab {' '.join(args)}: no end within {timeout} s") from exc
    took = now() - started
    if check and proc.returncode:
        tail = (proc.stdout[-1500:] + proc.stderr[-1500:]).strip()
        raise BenchError(f"python3 -m lab {' '.join(args)} exited {proc.returncode}: {tail}")
    return took, proc


def waited_for_lock(proc):
    """True when a lab command had to wait for another lab command first (its time then
    includes someone else's work)."""
    return "waiting for another lab command" in (proc.stderr or "")


def status():
    return json.loads(lab("status", "--json", timeout=120)[1].stdout)


class Nodes:
    """Shell commands on the lab's nodes over SSH (the admin's key, or pi while vanilla)."""

    def __init__(self, st):
        self.st = st
        self.ip = {name: n["ip"] for name, n in st["nodes"].items()}

    def run(self, node, cmd, timeout=120):
        """Run the shell command ``cmd`` on ``node``; CompletedProcess (text), rc 124 on timeout."""
        proc = None
        for argv in (access.as_admin(self.ip[node], [cmd]), access.as_pi(self.ip[node], [cmd])):
            try:
                proc = subprocess.run(
                    argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
                )
            except subprocess.TimeoutExpired:
                return subprocess.CompletedProcess(argv, 124, "", f"no answer within {timeout} s")
            if not access.auth_failed(proc):
                break
        return proc

    def timed(self, node, cmd, timeout=900):
        """Run ``cmd`` on ``node`` and time it there, around the command only (no SSH set-up):
        (seconds, CompletedProcess)."""
        script = (
            "import subprocess,sys,time\n"
            "t=time.monotonic()\n"
            "r=subprocess.run(sys.argv[1],shell=True).returncode\n"
            "sys.stdout.flush()\n"
            "print('\\nBENCH-TIMED %.3f %d' % (time.monotonic()-t, r), file=sys.stderr)\n"
            "sys.exit(r)\n"
        )
        proc = self.run(node, f"python3 -c {shlex.quote(script)} {shlex.quote(cmd)}", timeout=timeout)
        for line in reversed(proc.stderr.splitlines()):
            if line.startswith("BENCH-TIMED "):
                return float(line.split()[1]), proc
        raise BenchError(f"{node}: {cmd!r} was not timed (exit {proc.returncode}): {proc.stderr[-800:]}")

    def salt(self, args, timeout=120):
        """``salt ARGS`` on the deployer, JSON parsed ({} when nothing came back)."""
        proc = self.run("psi", f"sudo salt -t {timeout} --out json --static {args}", timeout=timeout + 60)
        try:
            return json.loads(proc.stdout or "{}")
        except ValueError:
            return {}

    def vip_holders(self):
        """The lanservices nodes whose LAN interface carries the VIP (from ``ip``, no Salt needed; the
        copy both keep on lo does not count)."""
        vip = self.st["vip"]
        held = []
        for name in ("alpha", "beta"):
            out = self.run(name, "ip -4 -o addr show dev host0", timeout=20).stdout
            if f" {vip}/" in out:
                held.append(name)
        return held

    def failover_states(self):
        """{node: (local_state, partner_state)} of the DHCP failover pair, via Salt."""
        ret = self.salt("-L alpha,beta dhcpd_failover.status", timeout=30)
        out = {}
        for node in ("alpha", "beta"):
            peers = ret.get(node)
            if isinstance(peers, dict) and peers:
                peer = next(iter(peers.values()))
                if isinstance(peer, dict):
                    out[node] = (peer.get("local_state"), peer.get("partner_state"))
        return out

    def failover_normal(self):
        states = self.failover_states()
        return len(states) == 2 and all(s == ("normal", "normal") for s in states.values()), states


def wait_until(what, probe, timeout, interval=1.0):
    """Call ``probe()`` until it returns something true, for at most ``timeout`` seconds;
    (seconds waited, last value)."""
    started = now()
    value = None
    while True:
        value = probe()
        if value:
            return now() - started, value
        if now() - started > timeout:
            raise BenchError(f"{what}: not reached within {timeout:.0f} s (last: {value!r})")
        time.sleep(interval)


def last_json(text):
    """The last JSON object printed in ``text`` (runners may print progress before it)."""
    decoder = json.JSONDecoder()
    found, pos = None, 0
    while True:
        start = text.find("{", pos)
        if start < 0:
            return found
        try:
            obj, end = decoder.raw_decode(text, start)
        except ValueError:
            pos = start + 1
            continue
        found, pos = obj, end


# --------------------------------------------------------------------------------------
# A small DNS client (UDP, one query per datagram) timed on the host's monotonic clock
# --------------------------------------------------------------------------------------

TYPES = {"A": 1, "SOA": 6}


def dns_query(qid, name, rtype):
    labels = b"".join(bytes([len(p)]) + p.encode("ascii") for p in name.rstrip(".").split("."))
    return struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", TYPES[rtype], 1)


def _skip_name(msg, pos):
    while True:
        length = msg[pos]
        if length & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + length
        if length == 0:
            return pos


def dns_parse(msg):
    """(id, rcode, [(type, value)]): value is the address of an A record, the serial of a
    SOA record, None for other types."""
    qid, flags, qd, an = struct.unpack("!HHHH", msg[:8])
    pos = 12
    for _ in range(qd):
        pos = _skip_name(msg, pos) + 4
    answers = []
    for _ in range(an):
        pos = _skip_name(msg, pos)
        rtype, _cls, _ttl, length = struct.unpack("!HHIH", msg[pos:pos + 10])
        pos += 10
        rdata = msg[pos:pos + length]
        if rtype == 1 and length == 4:
            answers.append(("A", socket.inet_ntoa(rdata)))
        elif rtype == 6:
            serial_at = _skip_name(msg, _skip_name(msg, pos))
            answers.append(("SOA", struct.unpack("!I", msg[serial_at:serial_at + 4])[0]))
        else:
            answers.append((rtype, None))
        pos += length
    return qid, flags & 0xF, answers


def soa_serial(server, zone, timeout=0.3, qid=1):
    """One SOA query: (sent, received, serial or None); received is None on timeout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        sent = now()
        sock.sendto(dns_query(qid, zone, "SOA"), (server, 53))
        deadline = sent + timeout
        while True:
            sock.settimeout(max(0.001, deadline - now()))
            try:
                msg, _ = sock.recvfrom(4096)
            except (TimeoutError, ConnectionRefusedError):
                return sent, None, None
            got = now()
            try:
                rid, rcode, answers = dns_parse(msg)
            except (struct.error, IndexError):
                continue
            if rid != qid:
                continue
            serials = [v for t, v in answers if t == "SOA"]
            return sent, got, (serials[0] if rcode == 0 and serials else None)
    finally:
        sock.close()


# --------------------------------------------------------------------------------------
# Statistics and rows
# --------------------------------------------------------------------------------------


def spread(values, unit="s", digits=2):
    """'median X (range a-b, n=N)' of ``values``."""
    values = sorted(values)
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f} {unit} (n=1)"
    return f"median {med:.{digits}f} {unit} (range {values[0]:.{digits}f}-{values[-1]:.{digits}f}, n={len(values)})"


class Table:
    """The bench's result: rows of figure | value | method, plus the raw data of each."""

    def __init__(self):
        self.rows = []
        self.part = None  # the bench part that adds rows now

    def add(self, figure, value, method, measured=True, **data):
        row = {"figure": figure, "value": value, "method": method, "measured": measured, "part": self.part,
               "data": data}
        self.rows.append(row)
        log(f"{figure}: {value}")
        return row

    def not_measured(self, figure, why, method="", by_choice=False):
        return self.add(figure, f"not measured: {why}", method, measured=False, by_choice=by_choice)

    def render(self, width=None):
        import textwrap

        width = width or 150
        fig_w = min(44, max(len(r["figure"]) for r in self.rows))
        val_w = min(44, max(len(r["value"]) for r in self.rows))
        meth_w = max(40, width - fig_w - val_w - 6)
        lines = [f"{'FIGURE':{fig_w}} | {'VALUE':{val_w}} | METHOD", f"{'-' * fig_w}-+-{'-' * val_w}-+-{'-' * meth_w}"]
        for row in self.rows:
            cols = [
                textwrap.wrap(row["figure"], fig_w) or [""],
                textwrap.wrap(row["value"], val_w) or [""],
                textwrap.wrap(row["method"], meth_w) or [""],
            ]
            for i in range(max(map(len, cols))):
                parts = [c[i] if i < len(c) else "" for c in cols]
                lines.append(f"{parts[0]:{fig_w}} | {parts[1]:{val_w}} | {parts[2]}".rstrip())
        return "\n".join(lines)
