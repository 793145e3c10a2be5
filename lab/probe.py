"""Probes of the lab's LAN services from outside the cluster (tests and benchmarks share them).

- ``DhcpClient``: a network namespace on the lab bridge with a chosen MAC, running ISC dhclient
  once and reporting the lease (address, DNS, NTP, boot file) without configuring anything;
- ``dig``: a DNS query from the host over the bridge (the host's dig, from bind9-dnsutils).
"""

import os
import subprocess
import tempfile
import time

from . import BRIDGE, LabError
from .host import ensure_tools

_SCRIPT = """#!/bin/sh
# dhclient-script stand-in: report the lease into a file, configure nothing
case "$reason" in BOUND|RENEW|REBOOT|REBIND)
  echo "LEASE|ip=$new_ip_address|server=$new_dhcp_server_identifier|dns=$new_domain_name_servers|ntp=$new_ntp_servers|domain=$new_domain_name|filename=$new_filename" >> "$(dirname "$0")/lease" ;;
esac
exit 0
"""
_CONF = """timeout {timeout};
retry 1;
request subnet-mask, broadcast-address, domain-name, domain-name-servers, ntp-servers;
"""


class DhcpClient:
    """``with DhcpClient("b8:27:eb:...") as c: lease = c.lease()`` on the lab bridge."""

    def __init__(self, mac, tag="c"):
        self.mac = mac
        self.ns = f"rpicdhcp{tag}{os.getpid() % 10000}"
        self.host_if = f"vdh{tag}{os.getpid() % 10000}"[:15]
        self.tmp = None

    def __enter__(self):
        ensure_tools("dhclient", "ip")
        self.tmp = tempfile.mkdtemp(prefix="rpic-dhcp-")
        with open(os.path.join(self.tmp, "script"), "w", encoding="ascii") as handle:
            handle.write(_SCRIPT)
        os.chmod(os.path.join(self.tmp, "script"), 0o755)
        cmds = [
            ["ip", "netns", "add", self.ns],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "eth0", "netns", self.ns],
            ["ip", "link", "set", self.host_if, "master", BRIDGE, "up"],
            ["ip", "netns", "exec", self.ns, "ip", "link", "set", "eth0", "address", self.mac],
            ["ip", "netns", "exec", self.ns, "ip", "link", "set", "eth0", "up"],
            ["ip", "netns", "exec", self.ns, "ip", "link", "set", "lo", "up"],
        ]
        for cmd in cmds:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                self.__exit__()
                raise LabError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
        return self

    def lease(self, timeout=30):
        """Run dhclient once; return the lease as a dict (and 'seconds'), or None."""
        conf = os.path.join(self.tmp, "dhclient.conf")
        with open(conf, "w", encoding="ascii") as handle:
            handle.write(_CONF.format(timeout=timeout))
        leases, report = os.path.join(self.tmp, "leases"), os.path.join(self.tmp, "lease")
        pidfile = os.path.join(self.tmp, "pid")
        for path in (leases, report):
            if os.path.exists(path):
                os.unlink(path)
        started = time.monotonic()
        # -1: one attempt (bounded by `timeout`); once bound, dhclient goes to the background
        subprocess.run(
            ["ip", "netns", "exec", self.ns, "dhclient", "-1", "-cf", conf, "-sf", os.path.join(self.tmp, "script"),
             "-lf", leases, "-pf", pidfile, "eth0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=timeout + 30, check=False,
        )
        took = time.monotonic() - started
        self._stop_client(pidfile)
        if not os.path.exists(report):
            return None
        with open(report, encoding="ascii") as handle:
            line = handle.read().splitlines()[0]
        lease = dict(kv.split("=", 1) for kv in line.split("|")[1:] if "=" in kv)
        lease["seconds"] = took
        return lease

    @staticmethod
    def _stop_client(pidfile):
        try:
            with open(pidfile, encoding="ascii") as handle:
                os.kill(int(handle.read().strip()), 15)
        except (OSError, ValueError):
            pass

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)
        if self.tmp:
            subprocess.run(["rm", "-rf", self.tmp], check=False)


def dig(server, name, rtype="A", timeout=1, tries=1):
    """``dig +short`` from the host: the answer lines ([] when there is none), None when the
    query failed. ``rtype="PTR"`` looks up the address ``name`` in reverse."""
    query = ["-x", name] if rtype == "PTR" else [name, rtype]
    proc = subprocess.run(
        ["dig", f"@{server}", *query, "+short", f"+time={timeout}", f"+tries={tries}"],
        capture_output=True, text=True, check=False, timeout=timeout * tries + 5,
    )
    if proc.returncode != 0 or proc.stdout.startswith(";;"):
        return None
    return [line for line in proc.stdout.splitlines() if line and not line.startswith(";")]
