"""A node's filesystem on the test host: the host's own files, the node's changes kept apart.

The states write their real paths (/etc/dhcp/dhcpd.conf, /srv/tftp, /usr/local/...): production
code has no scratch-root switch. So each state apply, module call or daemon of a node runs in a
private mount namespace (and UTS namespace: its own hostname) where /etc, /srv, /usr, /var and
/run are overlays: the host's files below, the node's directory ``<root>/<top>`` above. What the
states write lands in ``<root>/etc/...`` (the test reads it there); the host's files never
change.

- ``NodeFs.call(loaders_config, fn)``: fork, enter the node's namespace (and a network
  namespace if asked), build Salt's loaders there and return ``fn(loaders)`` (pickled back).
- ``NodeFs.sls(config, name, test=False)``: a ``state.sls`` that way, as a ``MultiStateResult``.
- ``NodeFs.wrap(argv)``: argv that runs a command (a daemon, a checker) in the node's files.
- ``make_node(...)``: a ``Node``, one minion of the inventory with its ``NodeFs``: what the
  functional tests apply states with.

Mocked: systemd. PID 1 of the test host is not systemd, so ``systemctl`` in the namespace is a
recording stub (``<root>/.systemctl/log``; unit states in ``.../units.json``) and
``/run/systemd/system`` exists there, so Salt takes the node for a systemd one. Tests that
assert what the stub recorded say "mocked systemctl" in their name. Packages: the services'
packages are installed on the host (tests/host-packages.txt), so ``pkg.installed`` has nothing
to do; what it would install is proven on the lab.
"""

import ctypes
import itertools
import json
import os
import pathlib
import pickle
import shlex
import subprocess
import sys
import traceback

from saltfactories.utils.functional import Loaders, MultiStateResult

from tests.conftest import INVENTORY, STATE_TREE, cluster_pillar_opts, secrets_opts

TOPS = ("etc", "srv", "usr", "var", "run")
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_REC, MS_PRIVATE = 0x4000, 0x40000
_libc = ctypes.CDLL(None, use_errno=True)
# the systemctl verbs that change something (the others read: --version, status, is-active, ...)
CHANGE_VERBS = ("daemon-reload", "start", "restart", "reload", "try-restart", "reload-or-restart", "stop",
                "enable", "disable", "mask", "unmask")
_SEQ = itertools.count()

SYSTEMCTL_STUB = r'''#!/usr/bin/python3
"""systemctl, mocked (tests/functional/nodefs.py): records its arguments, keeps unit states."""
import json, os, sys
BASE = {base!r}
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
args = [a for a in sys.argv[1:] if not a.startswith("-") or a in ("--version",)]
with open(os.path.join(BASE, "log"), "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
path = os.path.join(BASE, "units.json")
units = json.load(open(path)) if os.path.exists(path) else {{}}
def unit(name):
    return name if "." in name else name + ".service"
def known(name):
    return any(os.path.exists(os.path.join(d, unit(name))) for d in UNIT_DIRS)
def save():
    json.dump(units, open(path, "w"), indent=1, sort_keys=True)
if not args:
    sys.exit(0)
verb, names = args[0], [unit(a) for a in args[1:]]
if verb in ("is-active", "is-enabled", "status", "is-failed") and not names:
    sys.exit(0)
if verb == "--version":
    print("systemd 252 (252-mocked)")
elif verb == "daemon-reload":
    pass
elif verb in ("is-active", "is-enabled", "status", "is-failed"):
    name = names[0]
    state = units.get(name, {{}})
    if verb == "is-active":
        print("active" if state.get("active") else "inactive")
        sys.exit(0 if state.get("active") else 3)
    if verb == "is-failed":
        sys.exit(1)
    if verb == "is-enabled":
        if not known(name):
            sys.exit(1)
        print("enabled" if state.get("enabled") else "disabled")
        sys.exit(0 if state.get("enabled") else 1)
    if not known(name):
        print(f"Unit {{name}} could not be found.", file=sys.stderr)
        sys.exit(4)
    print(f"* {{name}}\n     Loaded: loaded\n     Active: {{'active' if state.get('active') else 'inactive'}}")
    sys.exit(0 if state.get("active") else 3)
elif verb in ("start", "restart", "reload", "try-restart", "reload-or-restart", "force-reload", "stop",
              "enable", "disable", "mask", "unmask"):
    for name in names:
        if verb not in ("disable", "unmask", "stop") and not known(name):
            print(f"Unit {{name}} not found.", file=sys.stderr)
            sys.exit(5)
        state = units.setdefault(name, {{}})
        if verb in ("enable", "disable"):
            state["enabled"] = verb == "enable"
            if "--now" in sys.argv:
                state["active"] = verb == "enable"
        elif verb in ("mask", "unmask"):
            state["masked"] = verb == "mask"
        else:
            state["active"] = verb != "stop"
    save()
elif verb in ("show",):
    print("NeedDaemonReload=no")
'''


def changes_made(calls):
    """The systemctl calls among ``calls`` (``NodeFs.systemctl_calls()``) that change something."""
    return [c for c in calls if c.split()[0] in CHANGE_VERBS]


class NodeFs:
    """The files of one node: ``root`` holds the node's upper directories (``root/etc`` ...)."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # daemons that drop privileges (named as bind) traverse it
        for top in TOPS:
            (self.root / top).mkdir(exist_ok=True)
        self.systemctl_dir = self.root / ".systemctl"
        self.systemctl_dir.mkdir(exist_ok=True)
        stub = self.root / "usr/bin/systemctl"
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text(SYSTEMCTL_STUB.format(base=str(self.systemctl_dir)))
        stub.chmod(0o755)
        (self.root / "run/systemd/system").mkdir(parents=True, exist_ok=True)
        (self.root / ".work").mkdir(exist_ok=True)

    # --- what the stub recorded ------------------------------------------------------------------
    def systemctl_calls(self):
        log = self.systemctl_dir / "log"
        return log.read_text().splitlines() if log.exists() else []

    def units(self):
        path = self.systemctl_dir / "units.json"
        return json.loads(path.read_text()) if path.exists() else {}

    # --- the namespace ---------------------------------------------------------------------------
    def _mount_script(self, work):
        """Shell commands that mount the node's overlays, their work directories under ``work``
        (a path, or "$W" for a script that makes its own at each start)."""
        return " && ".join(f'mkdir -p "{work}/{top}" && mount -t overlay overlay '
                           f'-o "lowerdir=/{top},upperdir={self.root / top},workdir={work}/{top}" /{top}'
                           for top in TOPS)

    def _work(self):
        """A fresh work directory for one mount of the overlays (a work directory serves one)."""
        return self.root / ".work" / f"{os.getpid()}-{next(_SEQ)}"

    def enter(self):
        """Move the calling (single-threaded, forked) process into a private mount namespace
        with the node's overlays, and a hostname of its own (common sets the node's)."""
        if _libc.unshare(CLONE_NEWNS | CLONE_NEWUTS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS | CLONE_NEWUTS)")
        if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
        subprocess.run(["sh", "-c", self._mount_script(self._work())], check=True, capture_output=True, text=True)

    def wrap(self, argv):
        """``argv`` run in the node's files (its own mount namespace, the overlays mounted)."""
        script = self._mount_script(self._work()) + ' && exec "$@"'
        return ["unshare", "--mount", "--uts", "--propagation", "private", "sh", "-c", script, "node", *map(str, argv)]

    def launcher(self, path, program):
        """Write ``path``: a script that runs ``program`` with its arguments in the node's files
        (fresh overlay work directories at each start), for a daemon that something else
        starts, e.g. a salt-minion of pytest-salt-factories (``python_executable``)."""
        inner = shlex.quote(self._mount_script("$W") + ' && exec "$@"')
        lines = [
            "#!/bin/sh",
            f"W=$(mktemp -d {shlex.quote(str(self.root / '.work'))}/run-XXXXXX) || exit 1",
            "export W",
            f'exec unshare --mount --uts --propagation private sh -c {inner} node {shlex.quote(str(program))} "$@"',
        ]
        path = pathlib.Path(path)
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o755)
        return path

    def call(self, config, fn, netns=None, loaders=None):
        """``fn(loaders)`` in a forked child in the node's files (and network namespace
        ``netns``, an ``ip netns`` name). ``loaders``: built in this process and never used
        here (their modules load in the child, in the node's files); else built in the child."""
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.close(read)
                if netns:
                    with open(f"/run/netns/{netns}", "rb") as target:
                        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
                            raise OSError(ctypes.get_errno(), f"setns({netns})")
                self.enter()
                if loaders is None:
                    loaders = Loaders(config, loaded_base_name=f"{__name__}.{config['id']}{next(_SEQ)}.loaded")
                result = ("ok", fn(loaders))
            except BaseException:  # pylint: disable=broad-except
                result = ("error", traceback.format_exc())
            try:
                data = pickle.dumps(result)
            except Exception:  # pylint: disable=broad-except
                data = pickle.dumps(("error", f"result not picklable: {result!r}"))
            with os.fdopen(write, "wb") as out:
                out.write(data)
            sys.stdout.flush()
            os._exit(0)
        os.close(write)
        with os.fdopen(read, "rb") as inp:
            data = inp.read()
        os.waitpid(pid, 0)
        kind, value = pickle.loads(data)
        if kind == "error":
            raise AssertionError(f"in {self.root}'s namespace:\n{value}")
        return value

    def sls(self, config, name, loaders=None, **kwargs):
        """``state.sls name`` applied in the node's files: a ``MultiStateResult``."""
        return MultiStateResult(self.call(config, lambda loaders: loaders.modules.state.sls(name, **kwargs).raw,
                                          loaders=loaders))

    def written(self):
        """The files the node wrote (paths relative to the root, sorted): the upper layers,
        without the systemctl stub and its records."""
        stub = self.root / "usr/bin/systemctl"
        return sorted(str(p.relative_to(self.root)) for top in TOPS for p in (self.root / top).rglob("*")
                      if (p.is_file() or p.is_symlink()) and p != stub)


class Node:
    """One minion of the inventory on the test host: its config (real pillar, real state tree,
    the production defaults of every service) and its files (``fs``, a ``NodeFs``)."""

    def __init__(self, config, root):
        self.config = config
        self.name = config["id"]
        self.fs = NodeFs(root)
        self.root = self.fs.root
        self._loaders = None
        self._forked_loaders = None  # built here once (grains, pillar: seconds), used in children only

    def _for_children(self):
        if self._forked_loaders is None:
            self._forked_loaders = Loaders(self.config, loaded_base_name=f"{__name__}.{self.name}{next(_SEQ)}.forked")
        return self._forked_loaders

    def sls(self, name, **kwargs):
        """``state.sls name`` applied in the node's files (a ``MultiStateResult``)."""
        return self.fs.sls(self.config, name, loaders=self._for_children(), **kwargs)

    def dry_then_real(self, name, **kwargs):
        """``state.sls name`` in test mode, then for real: ``{dry, written_by_dry_run, calls_dry,
        real, calls_first}`` (what the node's files and the mocked systemctl held after each)."""
        dry = self.sls(name, test=True, **kwargs)
        written, calls_dry = self.fs.written(), self.fs.systemctl_calls()
        real = self.sls(name, **kwargs)
        return {"dry": dry, "written_by_dry_run": written, "calls_dry": calls_dry, "real": real,
                "calls_first": self.fs.systemctl_calls()}

    def sls_id(self, state_id, name, **kwargs):
        """``state.sls_id state_id name`` applied in the node's files."""
        return MultiStateResult(self.call(lambda loaders: loaders.modules.state.sls_id(state_id, name, **kwargs).raw))

    @property
    def loaders(self):
        """Loaders in the test's own process, for modules that touch none of the node's files
        (e.g. a status read over a daemon's socket)."""
        if self._loaders is None:
            self._loaders = Loaders(self.config, loaded_base_name=f"{__name__}.{self.name}{next(_SEQ)}.host")
        return self._loaders

    def call(self, fn, netns=None):
        """``fn(loaders)`` in the node's files (and network namespace ``netns``)."""
        return self.fs.call(self.config, fn, netns=netns, loaders=self._for_children())

    def wrap(self, argv):
        return self.fs.wrap(argv)

    def exists(self, path):
        """Whether ``path`` exists as the node sees it (its files over the host's)."""
        return self.call(lambda _loaders: os.path.lexists(path))


def make_node(salt_factories, name, root, secrets_dir, grains=None, inventory=None, **lookups):
    """Node ``name`` of ``inventory`` (the project's by default) with its files under ``root``;
    ``lookups``: ``<svc>:lookup`` values in the minion config (e.g. ``dhcpd={"interface":
    "eth0"}``: what the test host cannot know about a Pi)."""
    overrides = {
        "file_client": "local",
        "file_roots": {"base": [str(STATE_TREE)]},
        **cluster_pillar_opts(inventory or INVENTORY),
        **secrets_opts(secrets_dir),
        "grains": {**(grains or {})},
        # systemd-run --scope: not on this host (systemctl is the stub)
        "systemd.scope": False,
        **{svc: {"lookup": lookup} for svc, lookup in lookups.items()},
    }
    factory = salt_factories.salt_minion_daemon(name, overrides=overrides)
    return Node(factory.config.copy(), root)
