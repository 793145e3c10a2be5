"""Render tier: every node of the project inventory rendered through Salt itself, nothing applied.

For each node, Salt's loaders (real ext_pillar, real secrets pillar, the real state tree with
its production defaults) run ``state.show_lowstate``: the node's whole
highstate rendered. Then the files of the services whose configs have a checker (bind, dhcpd,
keepalived, chrony) are rendered from those low chunks exactly as their states would write them
(``file.get_managed`` for ``source`` + ``template``, ``file.apply_template_on_contents`` for
``contents``, ``dnszone.plan`` for the zone files) into ``<tmp>/<node>/`` laid out like the node's
filesystem (``<tmp>/alpha/etc/bind/named.conf``). ``rendered`` hands those snapshots on.

What the test host cannot know about a Pi is given as the Pi would report it, nothing more: the
node's inventory address on ``eth0`` (the ``ip4_interfaces`` grain, which keepalived's and k3s's
maps read), ``virtual: physical``, and ``dhcpd:lookup:interface: eth0`` (dhcpd's map asks the
kernel, ``network.interfaces``, which on this host has no interface with that address).
"""

import concurrent.futures
import multiprocessing
import os
import resource
import shlex
import shutil
import subprocess
import time

import pytest
import yaml
from saltfactories.utils.functional import Loaders

from tests.conftest import INVENTORY, STATE_TREE, cluster_pillar_opts, make_secrets, secrets_opts

NODES = list(yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))["cluster"]["nodes"])
# the SLS whose files go into the snapshot: the services whose configs have a checker
SNAPSHOT_SLS = ("bind", "dhcpd", "keepalived", "chrony")
TIMINGS = {}  # what took how long (s), printed at the end of the run


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.section(f"render tier timings (load average {os.getloadavg()[0]:.1f})")
        for what, seconds in TIMINGS.items():
            terminalreporter.line(f"{what}: {seconds:.1f} s")


@pytest.fixture(scope="session")
def render_secrets(tmp_path_factory):
    """The cluster's secrets as bootstrap/generate-secrets makes them (the pillar needs them)."""
    path = tmp_path_factory.mktemp("render-secrets") / "cluster-secrets"
    make_secrets(path)
    return path


def minion_config(salt_factories, name, ip, secrets_dir):
    """The config of minion ``name`` as the master renders it: real pillar, real tree, no seams."""
    overrides = {
        "file_client": "local",
        "file_roots": {"base": [str(STATE_TREE)]},
        **cluster_pillar_opts(INVENTORY),
        **secrets_opts(secrets_dir),
        "grains": {"ip4_interfaces": {"lo": ["127.0.0.1"], "eth0": [ip]}, "virtual": "physical"},
        "dhcpd": {"lookup": {"interface": "eth0"}},
    }
    return salt_factories.salt_minion_daemon(name, overrides=overrides).config.copy()


def render_node(config, root):
    """Loaders of one node from its ``config``: its low chunks, and its snapshot under ``root``."""
    t0 = time.monotonic()
    loaders = Loaders(config, loaded_base_name=f"{__name__}.{config['id']}.loaded")
    try:
        low = loaders.modules.state.show_lowstate()
        files = snapshot(loaders.modules, low, root) if _renders(low) else {}
    finally:
        loaders.reset_state()
    return RenderedNode(config["id"], low, root, files, time.monotonic() - t0)


def _file_text(modules, chunk):
    """The content file.managed would write for ``chunk`` (salt/states/file.py, managed)."""
    template = chunk.get("template")
    if chunk.get("source"):
        sfn, _, comment = modules.file.get_managed(
            name=chunk["name"], template=template, source=chunk["source"],
            source_hash=chunk.get("source_hash", ""), source_hash_name=chunk.get("source_hash_name"),
            user=chunk.get("user"), group=chunk.get("group"), mode=chunk.get("mode"), attrs=None,
            saltenv=chunk.get("__env__", "base"), context=chunk.get("context"), defaults=chunk.get("defaults"),
            skip_verify=chunk.get("skip_verify", False),
        )
        if not sfn and not template:  # not a template: file.manage_file caches the source itself
            sfn = modules.cp.cache_file(chunk["source"], chunk.get("__env__", "base"))
        if not sfn:
            raise AssertionError(f"{chunk['__id__']}: file.get_managed rendered nothing: {comment}")
        with open(sfn, "rb") as handle:
            return handle.read()
    if "contents_pillar" in chunk:
        contents = modules.pillar.get(chunk["contents_pillar"])
    else:
        contents = chunk.get("contents", "")
    if isinstance(contents, list):
        contents = "".join(line.rstrip("\r\n") + os.linesep for line in contents)
    elif contents and chunk.get("contents_newline", True):
        contents = "".join(line.rstrip("\r\n") + os.linesep for line in contents.splitlines())
    if template:
        contents = modules.file.apply_template_on_contents(
            contents, template=template, context=chunk.get("context"), defaults=chunk.get("defaults"),
            saltenv=chunk.get("__env__", "base"))
    return contents.encode("utf-8")


def _under(root, path):
    return root / str(path).lstrip("/")


def _rndc_key(chunk, root):
    """bind's rndc key comes from a cmd.run (rndc-confgen ... -c PATH, ``creates``): run that
    command with PATH in the snapshot (without -u: the owner does not matter to a checker)."""
    argv = shlex.split(chunk["name"])
    path = argv[argv.index("-c") + 1]
    if "-u" in argv:
        i = argv.index("-u")
        del argv[i:i + 2]
    argv[argv.index("-c") + 1] = str(_under(root, path))
    _under(root, path).parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
    return path


def snapshot(modules, low, root):
    """Write the files of the SNAPSHOT_SLS chunks of ``low`` under ``root``; return
    ``{path on the node: chunk}`` of what was written (zone files: the dnszone chunk)."""
    written = {}
    for chunk in low:
        if chunk.get("__sls__") not in SNAPSHOT_SLS:
            continue
        kind = f"{chunk['state']}.{chunk['fun']}"
        if kind == "file.directory":
            _under(root, chunk["name"]).mkdir(parents=True, exist_ok=True)
        elif kind == "file.managed":
            target = _under(root, chunk["name"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(_file_text(modules, chunk))
            if chunk.get("mode"):
                target.chmod(int(str(chunk["mode"]), 8))
            written[chunk["name"]] = chunk
        elif kind == "dnszone.managed":
            # dnszone.managed writes dnszone.plan's text; serial_servers (the serials live named
            # servers serve) are a run-time fact: left out, the serial is today's first
            plan = modules.dnszone.plan(
                chunk["name"], str(_under(root, chunk["path"])), chunk["records"], chunk["ns"],
                mname=chunk.get("mname"), contact=chunk.get("contact"), ttl=chunk.get("ttl", 3600),
                soa=chunk.get("soa"), serial_servers=[])
            target = _under(root, chunk["path"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(plan["text"], encoding="utf-8")
            written[chunk["path"]] = chunk
        elif kind == "cmd.run" and chunk["name"].startswith("rndc-confgen "):
            written[_rndc_key(chunk, root)] = chunk
    return written


class RenderedNode:
    """One node rendered: its low chunks, its snapshot root and what was written there."""

    def __init__(self, name, low, root, files, seconds):
        self.name = name
        self.low = low
        self.root = root
        self.files = files
        self.seconds = seconds

    def checked(self):
        """``{path: check_cmd argv}`` of the snapshot's files whose state validates them."""
        return {path: shlex.split(chunk["check_cmd"]) for path, chunk in self.files.items()
                if chunk.get("check_cmd")}

    def zones(self):
        return {chunk["name"]: path for path, chunk in self.files.items() if chunk["state"] == "dnszone"}


@pytest.fixture(scope="session")
def rendered_nodes(salt_factories, render_secrets, tmp_path_factory):
    """``{node: RenderedNode}`` for every node of the project inventory, rendered in
    forked processes, one per core (the render is CPU-bound)."""
    inventory = yaml.safe_load(INVENTORY.read_text(encoding="utf-8"))["cluster"]["nodes"]
    base = tmp_path_factory.mktemp("rendered")
    start, cpu = time.monotonic(), _children_cpu()
    configs = {name: minion_config(salt_factories, name, inventory[name]["ip"], render_secrets) for name in NODES}
    for name in NODES:
        (base / name).mkdir()
    workers = max(1, min(len(NODES), os.cpu_count() or 1))
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        futures = {name: pool.submit(render_node, configs[name], base / name) for name in NODES}
        result = {name: future.result(timeout=300) for name, future in futures.items()}
    for name, node in result.items():
        TIMINGS[f"render {name} (show_lowstate + snapshot, in its process)"] = node.seconds
    TIMINGS[f"render of all {len(NODES)} nodes, {workers} at a time"] = time.monotonic() - start
    # the CPU the render processes used: what the wall time comes to on an idle host, / workers
    TIMINGS["CPU time of the render processes"] = _children_cpu() - cpu
    return result


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _renders(low):
    """show_lowstate returns the list of chunks, or a list of error strings."""
    return isinstance(low, list) and all(isinstance(chunk, dict) for chunk in low)


@pytest.fixture(scope="session")
def rendered(rendered_nodes):
    """``{node: Path}``: each node's rendered files, laid out like its filesystem
    (``rendered["alpha"] / "etc/bind/named.conf"``)."""
    return {name: node.root for name, node in rendered_nodes.items()}


def need(binary):
    """The path of checker ``binary``; skips when it is missing, except as root (CI), where
    tests/install-host-packages installs it: there a missing checker fails the test."""
    path = shutil.which(binary) or (binary if os.path.isabs(binary) and os.access(binary, os.X_OK) else None)
    if path:
        return path
    if os.geteuid() == 0:
        pytest.fail(f"checker {binary} is missing (tests/host-packages.txt, tests/install-host-packages)")
    pytest.skip(f"checker {binary} is missing and not root (tests/install-host-packages installs it as root)")
    return None


def run_in_snapshot(root, argv, timeout=60):
    """Run ``argv`` where the node's paths (/etc/bind/..., /var/lib/keepalived/...) are the
    snapshot's files.

    Why a mount namespace with read-only overlays: the configs name absolute paths (includes,
    key files, scripts, zone files) and the checkers follow them, and some check the owner and
    mode of what they find (keepalived's script security); a chroot would also need the
    checker's libraries and the host's /etc (passwd, ld.so.cache) under the snapshot. So each
    top-level directory of the snapshot (etc, var, usr, run) is laid over the host's as an
    overlay (snapshot first, then the host's own files), in a private mount namespace of the
    checker only (``unshare``; ``--map-root-user`` when not root): the checker runs unchanged
    on the real paths, and nothing on the host changes. Not root, this needs unprivileged user
    namespaces, and the kernel refuses to overlay a directory with mounts under it (on a host
    running the lab: /var/lib/rpi-cluster-lab/..., /run/netns): the check then fails with
    mount's message. As root (make test) there is no such limit."""
    mounts = []
    for top in sorted(p.name for p in root.iterdir() if p.is_dir()):
        lower = f"{root / top}:/{top}"
        mounts.append(f"mount -t overlay overlay -o ro,lowerdir={shlex.quote(lower)} /{top}")
    script = " && ".join([*mounts, 'exec "$@"'])
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare.append("--map-root-user")
    return subprocess.run([*unshare, "sh", "-c", script, "checker", *argv], capture_output=True, text=True,
                          timeout=timeout, check=False)
