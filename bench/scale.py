"""The DNS and DHCP data of a 250-node cluster, timed in this process: no lab needed.

An inventory of ``NODES`` nodes is made from the lab's (lab/inventory.yaml: its deployer, its
lanservices pair and its compute nodes, then generated compute nodes) on a /22, with the DHCP
pool moved to the top of it, one line a node as in the lab's file. Then the path the primary
lanservices node's DNS and DHCP data take is timed, stage by stage (wall clock, after the imports
and the loaders' set-up):

- validate: ``model.load_inventory`` of the file, cold (a comment of the file changes every run,
  so the model's cache, keyed by the text, misses);
- pillar: Salt's pillar compile for the primary, as the master does for a pillar request (a new
  ``salt.pillar.Pillar``, then ``compile_pillar``): the project's pillar tree (top.sls,
  cluster) and the cluster ext_pillar (the node view), the model's cache warm from the stage
  before; the secrets are a stand-in given as pillar override (no GPG);
- states: the minion's render of the bind and dhcpd SLS with that pillar (a new ``HighState``:
  map.jinja, ``dhcpd_failover.peer_config``, the records and reservations through the SLS text);
- zones: ``dnszone.render`` of the forward and the reverse zone with the arguments of the
  rendered ``dnszone.managed`` states;
- dhcpd.conf: ``file.get_managed`` (what ``file.managed`` calls) renders
  salt://dhcpd/files/dhcpd.conf.jinja with the context of the rendered state.

Every run's output is checked (an A and a PTR record per node, a host block per node) so an
empty or partial render is an error, not a fast figure.
"""

import contextlib
import ipaddress
import os
import pathlib
import re
import statistics
import tempfile

import yaml

from . import REPO
from .common import BenchError, log, now, spread

NODES = 250
SUBNET = "10.77.0.0/22"
POOL = ("10.77.3.100", "10.77.3.250")  # the top of the /22; the generated nodes start at FIRST
FIRST = "10.77.1.1"
SERIAL = 2026010101
# stand-ins for the secrets pillar (the secrets' GPG decryption is not part of this figure)
SECRETS = {"omapi_key": "c2NhbGUtYmVuY2gtc3RhbmQtaW4ta2V5LTAwMDAwMDA=", "tsig_key": "c2NhbGUtYmVuY2g="}

STAGES = ("validate", "pillar", "states", "zones", "dhcpd.conf")
TOTAL = f"DNS+DHCP data for {NODES} nodes (validate, pillar, states, zones, dhcpd.conf)"
STAGE_ROWS = {
    "validate": f"  {NODES} nodes: validate the inventory file",
    "pillar": f"  {NODES} nodes: pillar of the primary",
    "states": f"  {NODES} nodes: bind + dhcpd SLS render",
    "zones": f"  {NODES} nodes: forward + reverse zone text",
    "dhcpd.conf": f"  {NODES} nodes: dhcpd.conf text",
}
FIGURES = [TOTAL, *STAGE_ROWS.values()]


# --------------------------------------------------------------------------------------
# The inventory
# --------------------------------------------------------------------------------------


def _flow(value):
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 20, sort_keys=False)
    return text.removesuffix("...\n").strip()  # a plain scalar's dump ends its document


def inventory(count=NODES, lab_file=REPO / "lab" / "inventory.yaml"):
    """The lab's inventory grown to ``count`` nodes (a mapping under ``cluster``): its nodes as
    they are, then compute nodes ``c001``... from ``FIRST`` up, on ``SUBNET``, with the DHCP pool
    ``POOL``; MACs follow the lab's rule (b8:27:eb:77: + the last two octets of the IP)."""
    cluster = yaml.safe_load(pathlib.Path(lab_file).read_text(encoding="utf-8"))["cluster"]
    net = cluster["network"]
    net["subnet"] = SUBNET
    net["dhcp_pool"] = {"start": POOL[0], "end": POOL[1]}
    subnet = ipaddress.IPv4Network(SUBNET)
    pool = (ipaddress.IPv4Address(POOL[0]), ipaddress.IPv4Address(POOL[1]))
    taken = {ipaddress.IPv4Address(a) for a in (net["gateway"], net["vip"])}
    taken |= {ipaddress.IPv4Address(n["ip"]) for n in cluster["nodes"].values()}
    model = next((n["model"] for n in cluster["nodes"].values() if "compute" in n["roles"]), "")
    addr, number = ipaddress.IPv4Address(FIRST), 0
    while len(cluster["nodes"]) < count:
        if addr not in subnet or pool[0] <= addr <= pool[1]:
            raise BenchError(f"no room for {count} nodes in {SUBNET} below the pool {POOL[0]}")
        if addr in taken or addr in (subnet.network_address, subnet.broadcast_address):
            addr += 1
            continue
        number += 1
        low = addr.packed[2:]
        cluster["nodes"][f"c{number:03d}"] = {
            "roles": ["compute"], "ip": str(addr), "mac": f"b8:27:eb:77:{low[0]:02x}:{low[1]:02x}", "model": model,
        }
        addr += 1
    return {"cluster": cluster}


def inventory_text(data, comment=""):
    """``data`` as an inventory file laid out as the lab's: the network's keys and the nodes one
    line each."""
    cluster = data["cluster"]
    lines = [f"# {comment}"] if comment else []
    lines += ["cluster:", f"  domain: {_flow(cluster['domain'])}", "  network:"]
    lines += [f"    {key}: {_flow(value)}" for key, value in cluster["network"].items()]
    lines += ["  nodes:"]
    lines += [f"    {name}: {_flow(spec)}" for name, spec in cluster["nodes"].items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# What the outputs must hold
# --------------------------------------------------------------------------------------


def check_outputs(cluster, forward, reverse, dhcpd_conf):
    """Problems of one run's texts (empty when right): an A record per node (and the VIP's ``ns``),
    a PTR record per node and the VIP, a host block per node with its MAC and address."""
    names = set(cluster["nodes"])
    problems = []
    a_records = dict(re.findall(r"^(\S+)\s+IN A\s+(\S+)$", forward, re.M))
    want = {n: s["ip"] for n, s in cluster["nodes"].items()} | {"ns": cluster["network"]["vip"]}
    if a_records != want:
        problems.append(f"forward zone: {len(a_records)} A records, {len(want)} wanted "
                        f"(first wrong: {sorted(set(want.items()) ^ set(a_records.items()))[:1]})")
    ptr = re.findall(r"^\S+\s+IN PTR\s+(\S+)$", reverse, re.M)
    want_ptr = {f"{n}.{cluster['domain']}." for n in [*names, "ns"]}
    if len(ptr) != len(want_ptr) or set(ptr) != want_ptr:
        problems.append(f"reverse zone: {len(ptr)} PTR records, {len(want_ptr)} wanted")
    hosts = {
        name: (mac, ip) for name, mac, ip in re.findall(
            r"^host (\S+) \{\n  hardware ethernet (\S+);\n  fixed-address (\S+);$", dhcpd_conf, re.M)
    }
    want_hosts = {n: (s["mac"], s["ip"]) for n, s in cluster["nodes"].items()}
    if hosts != want_hosts:
        problems.append(f"dhcpd.conf: {len(hosts)} host reservations, {len(want_hosts)} wanted")
    return problems


# --------------------------------------------------------------------------------------
# The path, through Salt
# --------------------------------------------------------------------------------------


class Path:
    """The stages of one lanservices node's DNS and DHCP data, with loaders set up once."""

    def __init__(self, workdir, inventory_file, minion_id):
        import salt.config  # pylint: disable=import-outside-toplevel
        import salt.loader  # pylint: disable=import-outside-toplevel

        self.inventory_file = str(inventory_file)
        self.minion_id = minion_id
        conf = pathlib.Path(workdir) / "minion"
        config = {
            "id": minion_id,
            "root_dir": str(workdir),
            "file_client": "local",
            "file_roots": {"base": [str(REPO / "salt")]},
            "pillar_roots": {"base": [str(REPO / "pillar")]},
            "module_dirs": [str(REPO / "_modules")],
            "states_dirs": [str(REPO / "_states")],
            # the cluster pillar as master.d/cluster.conf configures it
            "cluster_inventory": self.inventory_file,
            "pillar_dirs": [str(REPO / "_pillar")],
            "ext_pillar": [{"cluster": {}}],
            # nothing of the deployer's (SSH CA, TLS CA, keys): the nodes' pillars are all there is
            "cluster_secrets_dir": str(pathlib.Path(workdir) / "no-secrets"),
            "cluster_master_pub": str(pathlib.Path(workdir) / "no-master.pub"),
            # the interface is found by its address on a node; here there is none
            "dhcpd": {"lookup": {"interface": "eth0"}},
            "log_level": "warning",
        }
        conf.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.opts = salt.config.minion_config(str(conf))
        self.opts["grains"] = salt.loader.grains(self.opts)
        self.opts["grains"]["roles"] = ["lanservices"]

    def validate(self):
        from rpicluster import model  # pylint: disable=import-outside-toplevel

        return model.load_inventory(self.inventory_file)["cluster"]

    def pillar(self):
        import salt.pillar  # pylint: disable=import-outside-toplevel

        compiled = salt.pillar.get_pillar(
            self.opts, self.opts["grains"], self.minion_id, saltenv="base",
            pillar_override={"secrets": dict(SECRETS)},
        )
        try:
            pillar = compiled.compile_pillar()
        finally:
            compiled.destroy()
        if pillar.get("_errors"):
            raise BenchError(f"pillar of {self.minion_id}: {pillar['_errors']}")
        return pillar

    def states(self, pillar):
        """The high data of the bind and dhcpd SLS, and the HighState (its loaders render the
        files); the caller destroys it."""
        import salt.state  # pylint: disable=import-outside-toplevel

        high_state = salt.state.HighState(dict(self.opts, pillar=pillar), initial_pillar=pillar)
        high, errors = high_state.render_highstate({"base": ["bind", "dhcpd"]})
        if errors:
            high_state.destroy()
            raise BenchError(f"the bind and dhcpd SLS of {self.minion_id} do not render: {errors[:3]}")
        return high, high_state

    @staticmethod
    def _args(high, sid, module):
        args = {}
        for item in high[sid][module]:
            if isinstance(item, dict):
                args.update(item)
        return args

    def zones(self, high, high_state):
        render = high_state.state.functions["dnszone.render"]
        texts = []
        for kind in ("forward", "reverse"):
            args = self._args(high, f"bind-zone-{kind}-dnszone-managed", "dnszone")
            texts.append(render(args["name"], args["records"], SERIAL, args["ns"], mname=args["mname"],
                                contact=args["contact"], ttl=args["ttl"], soa=args["soa"]))
        return texts

    def dhcpd_conf(self, high, high_state):
        args = self._args(high, "dhcpd-config-file-managed", "file")
        sfn, _, comment = high_state.state.functions["file.get_managed"](
            name=args["name"], template=args["template"], source=args["source"], source_hash="",
            source_hash_name=None, user=args["user"], group=args["group"], mode=args["mode"], attrs=None,
            saltenv="base", context=args["context"], defaults=None,
        )
        if not sfn:
            raise BenchError(f"dhcpd.conf does not render: {comment}")
        try:
            return pathlib.Path(sfn).read_text(encoding="utf-8")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(sfn)


def run_once(path, data, run):
    """One timed pass: ({stage: seconds}, the texts)."""
    pathlib.Path(path.inventory_file).write_text(inventory_text(data, f"bench run {run}"), encoding="utf-8")
    times = {}
    started = now()
    cluster = path.validate()
    times["validate"] = now() - started
    started = now()
    pillar = path.pillar()
    times["pillar"] = now() - started
    started = now()
    high, high_state = path.states(pillar)
    times["states"] = now() - started
    try:
        started = now()
        forward, reverse = path.zones(high, high_state)
        times["zones"] = now() - started
        started = now()
        conf = path.dhcpd_conf(high, high_state)
        times["dhcpd.conf"] = now() - started
    finally:
        high_state.destroy()
    problems = check_outputs(cluster, forward, reverse, conf)
    if problems:
        raise BenchError(f"run {run}: wrong output: {'; '.join(problems)}")
    return times, {"forward": forward, "reverse": reverse, "dhcpd.conf": conf}


def scale(table, runs=3):
    """The rows of the part: the total (median of ``runs`` runs of the sums) and each stage."""
    from rpicluster import views  # pylint: disable=import-outside-toplevel

    data = inventory()
    primary = views.lanservices(data)["primary"]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as workdir:
        inventory_file = pathlib.Path(workdir) / "inventory.yaml"
        inventory_file.write_text(inventory_text(data), encoding="utf-8")
        path = Path(workdir, inventory_file, primary)
        warm, _ = run_once(path, data, 0)  # Salt's lazy loaders import their modules on first use
        log(f"scale: warm-up run {sum(warm.values()):.2f} s")
        samples = [run_once(path, data, run)[0] for run in range(1, runs + 1)]
    totals = [sum(s.values()) for s in samples]
    load = (load, os.getloadavg())
    method = (
        f"an inventory of {NODES} nodes (lab/inventory.yaml's 7 and generated compute nodes on a /22), "
        f"the path of the primary ({primary})'s data in this process, wall clock, after one untimed "
        "warm-up run: validate (model.load_inventory, cold) + pillar (Salt's pillar compile: pillar "
        "tree and the cluster ext_pillar) + states (bind and dhcpd SLS render) + zones (dnszone.render "
        "x2) + dhcpd.conf (file.get_managed of the real template); the output of every run checked "
        f"(A, PTR, host per node); load {load[0][0]:.1f} -> {load[1][0]:.1f} on {os.cpu_count()} CPUs"
    )
    table.add(TOTAL, spread(totals), method, seconds=totals, stages=samples, warm_up=warm, load=load)
    for stage in STAGES:
        values = [s[stage] for s in samples]
        table.add(STAGE_ROWS[stage], spread(values, digits=3), f"median of {runs}; see the row above",
                  seconds=values, median=statistics.median(values))
