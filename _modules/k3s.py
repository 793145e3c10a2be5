"""
k3s on the compute nodes: join arguments, node list and readiness, stale node objects, and
the kernel command line a Raspberry Pi needs for k3s.

- :func:`join_args` is the configuration of one node (``/etc/rancher/k3s/config.yaml``; each
  key is a ``k3s server``/``k3s agent`` flag): agents join ``https://<server>:<port>`` with
  the cluster's pre-shared token.
- :func:`nodes` / :func:`node` / :func:`ready` read ``k3s kubectl get nodes -o json``. On the
  server they use the admin kubeconfig; on an agent, the kubelet's own credentials (a kubelet
  may read Node objects), so an agent can tell whether it has joined.
- A re-flashed node comes back with a new ``/etc/machine-id`` and a new node password. While
  the Node object of its previous life exists, the server answers "Node password rejected"
  and the node never joins. :func:`stale` recognises that object (NotReady, and another
  machine-id than the machine now holding the name); :func:`delete_node` removes it (k3s then
  drops the old node password too) so the rebuilt node can register.
- :func:`cmdline_check` / :func:`cmdline_set` add ``cgroup_memory=1 cgroup_enable=memory`` to
  the Pi's ``cmdline.txt`` (one line) when they are missing; nothing else is touched.

The state module of the same name (``_states/k3s.py``) provides ``k3s.joined`` and
``k3s.cmdline`` on top of these.

CLI Example:

.. code-block:: bash

    salt-call k3s.nodes
"""

import ipaddress
import json
import logging
import os
import time

from salt.exceptions import CommandExecutionError

log = logging.getLogger(__name__)

__virtualname__ = "k3s"

K3S_BIN = "/usr/local/bin/k3s"
# the server's admin kubeconfig (k3s writes it at start) and an agent's kubelet credentials
ADMIN_KUBECONFIG = "/etc/rancher/k3s/k3s.yaml"
KUBELET_KUBECONFIG = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig"
DEFAULT_PORT = 6443
ROLE_LABEL = "node-role.kubernetes.io/"
# what the k3s server answers a node whose password does not match the stored one
PASSWORD_REJECTED = "Node password rejected"
# kernel parameters that may appear more than once (each names one controller)
REPEATABLE = ("cgroup_enable", "cgroup_disable")


def __virtual__():
    return __virtualname__


# --------------------------------------------------------------------------------------
# Which node is the server, and how the others join it
# --------------------------------------------------------------------------------------


def server(name=None, compute=None):
    """
    The compute node that runs the k3s server: ``name`` when given (it must be a compute node
    of the inventory), else the first compute node by IP. ``compute``: the compute nodes' names
    by IP, default from this minion's ``node`` pillar (``node:compute``, the cluster model's).

    CLI Example:

    .. code-block:: bash

        salt-call k3s.server
        salt-call k3s.server epsilon
    """
    if compute is None:
        try:
            compute = [peer["name"] for peer in __pillar__["node"]["compute"]]
        except (NameError, KeyError) as exc:
            raise CommandExecutionError(
                "no 'node' pillar: is this minion in pillar/cluster/inventory.yaml, and does the "
                "pillar render (salt-call pillar.items)?"
            ) from exc
    if not name:
        return compute[0]
    if name not in compute:
        raise CommandExecutionError(
            f"k3s server {name!r} (k3s:lookup:server) is not a compute node of the inventory "
            f"(compute nodes: {', '.join(compute)})"
        )
    return name


def join_args(role, node_name, node_ip, token, server_ip=None, port=DEFAULT_PORT, iface=None, disable=None):
    """
    The k3s configuration of one node, as the mapping written to ``/etc/rancher/k3s/config.yaml``
    (keys are ``k3s server`` / ``k3s agent`` flags without ``--``).

    role
        ``server`` or ``agent``
    node_name, node_ip
        the node's inventory name and IPv4 address (advertised to the cluster)
    token
        the cluster's pre-shared token (pillar ``secrets:k3s_token``)
    server_ip, port
        where agents join: ``https://<server_ip>:<port>`` (required for agents)
    iface
        the interface holding ``node_ip`` (flannel's interface)
    disable
        server only: packaged components not to deploy (e.g. ``[traefik]``)

    CLI Example:

    .. code-block:: bash

        salt-call k3s.join_args agent epsilon 192.168.10.22 TOKEN server_ip=192.168.10.21
    """
    if role not in ("server", "agent"):
        raise CommandExecutionError(f"k3s role must be 'server' or 'agent', got {role!r}")
    if not token or not str(token).strip():
        raise CommandExecutionError(
            "no k3s token: pillar secrets:k3s_token is empty (run bootstrap/generate-secrets on the deployer)"
        )
    node_ip = _ipv4("node_ip", node_ip)
    try:
        port = int(port)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        raise CommandExecutionError(f"k3s server port must be 1-65535, got {port!r}")
    args = {"node-name": str(node_name), "node-ip": node_ip}
    if iface:
        args["flannel-iface"] = str(iface)
    if role == "agent":
        if not server_ip:
            raise CommandExecutionError(f"k3s agent {node_name}: no server address to join")
        server_ip = _ipv4("server_ip", server_ip)
        if server_ip == node_ip:
            raise CommandExecutionError(f"k3s agent {node_name}: cannot join itself ({node_ip} is the server)")
        args["server"] = f"https://{server_ip}:{port}"
    else:
        args.update({
            "advertise-address": node_ip,
            "tls-san": [node_ip],
            "write-kubeconfig-mode": "0600",
        })
        if port != DEFAULT_PORT:
            args["https-listen-port"] = port
        if disable:
            args["disable"] = [str(item) for item in disable]
    args["token"] = str(token).strip()
    return args


def _ipv4(what, value):
    try:
        return str(ipaddress.IPv4Address(str(value)))
    except ValueError as exc:
        raise CommandExecutionError(f"k3s {what}: {value!r} is not an IPv4 address") from exc


# --------------------------------------------------------------------------------------
# Nodes, as kubectl sees them
# --------------------------------------------------------------------------------------


def parse_nodes(doc):
    """
    Summaries of the nodes in ``kubectl get nodes -o json`` output (a NodeList, or one Node),
    ordered by name: ``name``, ``ready`` (the Ready condition is True), ``status`` (``Ready``,
    ``NotReady`` or ``Unknown`` when the kubelet stopped reporting), ``reason``, ``message``,
    ``roles``, ``internal_ip``, ``version``, ``machine_id``, ``unschedulable``,
    ``last_heartbeat``.

    CLI Example:

    .. code-block:: bash

        salt-call k3s.parse_nodes "$(k3s kubectl get nodes -o json)"
    """
    if isinstance(doc, str | bytes):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            raise CommandExecutionError(f"kubectl output is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("kind") not in ("NodeList", "Node", "List", None):
        raise CommandExecutionError(f"not a Node or NodeList: kind {doc.get('kind') if isinstance(doc, dict) else type(doc).__name__!r}")
    items = doc.get("items", []) if doc.get("kind") != "Node" else [doc]
    return sorted((_summary(item) for item in items), key=lambda n: n["name"])


def _summary(item):
    meta = item.get("metadata") or {}
    spec = item.get("spec") or {}
    status = item.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    state = {"True": "Ready", "False": "NotReady"}.get(ready.get("status"), "Unknown")
    labels = meta.get("labels") or {}
    roles = sorted(k[len(ROLE_LABEL):] for k in labels if k.startswith(ROLE_LABEL) and k[len(ROLE_LABEL):])
    addresses = status.get("addresses") or []
    info = status.get("nodeInfo") or {}
    return {
        "name": meta.get("name", ""),
        "ready": state == "Ready",
        "status": state,
        "reason": ready.get("reason", ""),
        "message": ready.get("message", ""),
        "roles": roles,
        "internal_ip": next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), ""),
        "version": info.get("kubeletVersion", ""),
        "machine_id": info.get("machineID", ""),
        "unschedulable": bool(spec.get("unschedulable", False)),
        "last_heartbeat": ready.get("lastHeartbeatTime", ""),
    }


def _kubeconfig(kubeconfig=None):
    if kubeconfig:
        return kubeconfig
    for path in (ADMIN_KUBECONFIG, KUBELET_KUBECONFIG):
        if os.path.isfile(path):
            return path
    raise CommandExecutionError(
        f"no kubeconfig here ({ADMIN_KUBECONFIG} on the server, {KUBELET_KUBECONFIG} on a joined agent): "
        "k3s has not started on this node yet"
    )


def _kubectl(args, kubeconfig=None, missing_ok=False):
    """stdout of ``k3s kubectl ARGS``; ``None`` when ``missing_ok`` and the object does not exist."""
    if not os.access(K3S_BIN, os.X_OK):
        raise CommandExecutionError(f"{K3S_BIN} is not installed: apply the k3s state first")
    cmd = [K3S_BIN, "kubectl", "--kubeconfig", _kubeconfig(kubeconfig), *args]
    ret = __salt__["cmd.run_all"](cmd, python_shell=False, ignore_retcode=True, output_loglevel="debug")
    if ret["retcode"] != 0:
        err = (ret.get("stderr") or ret.get("stdout") or "").strip()
        if missing_ok and "(NotFound)" in err:
            return None
        raise CommandExecutionError(f"k3s kubectl {' '.join(args)} failed (exit {ret['retcode']}): {err}")
    return ret["stdout"]


def nodes(kubeconfig=None):
    """
    The cluster's nodes (see :func:`parse_nodes`), from ``k3s kubectl get nodes -o json``.

    CLI Example:

    .. code-block:: bash

        salt-call k3s.nodes
    """
    return parse_nodes(_kubectl(["get", "nodes", "-o", "json"], kubeconfig))


def node(name, kubeconfig=None):
    """
    One node's summary (see :func:`parse_nodes`), or ``None`` when no Node object has that
    name. Reads that one object (``get node NAME``), which a kubelet may do for its own node.

    CLI Example:

    .. code-block:: bash

        salt-call k3s.node epsilon
    """
    out = _kubectl(["get", "node", str(name), "-o", "json"], kubeconfig, missing_ok=True)
    return parse_nodes(out)[0] if out is not None else None


def ready(name=None, kubeconfig=None):
    """
    Whether node ``name`` is registered and Ready; without ``name``, ``{name: ready}`` for all.

    CLI Example:

    .. code-block:: bash

        salt-call k3s.ready
        salt-call k3s.ready epsilon
    """
    if name is None:
        return {n["name"]: n["ready"] for n in nodes(kubeconfig)}
    found = node(name, kubeconfig)
    return bool(found and found["ready"])


def stale_reason(summary, machine_id):
    """
    Why the Node object ``summary`` (from :func:`parse_nodes`) is stale for the machine whose
    ``/etc/machine-id`` is ``machine_id``, or ``""`` when it is not: it is stale when it is
    not Ready and was registered by another machine (the node was re-flashed). A Ready node
    is never stale (its kubelet reports the machine-id it runs on).

    CLI Example:

    .. code-block:: bash

        salt-call k3s.stale_reason "$(salt-call --out=json k3s.node epsilon)" 0123abcd
    """
    if not summary or not machine_id or summary.get("ready"):
        return ""
    old = summary.get("machine_id") or ""
    if not old or old == machine_id:
        return ""
    since = f" since {summary['last_heartbeat']}" if summary.get("last_heartbeat") else ""
    return (
        f"node object {summary['name']} is {summary.get('status', 'NotReady')}{since} and belongs to "
        f"machine-id {old}, not to the machine now named {summary['name']} ({machine_id}): a rebuilt node"
    )


def stale(name, machine_id, kubeconfig=None):
    """
    Why the Node object ``name`` blocks the machine ``machine_id`` from joining (see
    :func:`stale_reason`), or ``""``.

    CLI Example:

    .. code-block:: bash

        salt-call k3s.stale epsilon "$(salt epsilon grains.get machine_id --out=newline_values_only)"
    """
    return stale_reason(node(name, kubeconfig), machine_id)


def delete_node(name, kubeconfig=None):
    """
    Delete the Node object ``name`` (k3s then removes its node password, so a rebuilt node of
    that name can register). Returns ``True`` when it was deleted, ``False`` when there was none.
    Needs the admin kubeconfig: run it on the k3s server.

    CLI Example:

    .. code-block:: bash

        salt delta k3s.delete_node epsilon
    """
    if not name:
        raise CommandExecutionError("k3s.delete_node: no node name")
    kubeconfig = kubeconfig or (ADMIN_KUBECONFIG if os.path.isfile(ADMIN_KUBECONFIG) else None)
    if not kubeconfig:
        raise CommandExecutionError(
            f"cannot delete node {name} here: no admin kubeconfig {ADMIN_KUBECONFIG} (this is not the k3s server)"
        )
    out = _kubectl(["delete", "node", name, "--ignore-not-found", "--wait=true", "--timeout=60s"], kubeconfig)
    return "deleted" in out


def password_rejected(journal):
    """
    Whether k3s log text shows the server refusing this node's password (a Node object from a
    previous life of the node still exists on the server).

    CLI Example:

    .. code-block:: bash

        salt-call k3s.password_rejected "$(journalctl -u k3s-agent -n 200)"
    """
    return PASSWORD_REJECTED.lower() in (journal or "").lower()


def agent_rejected(unit="k3s-agent", lines=200):
    """
    Whether the last ``lines`` lines of ``unit``'s journal show "Node password rejected".

    CLI Example:

    .. code-block:: bash

        salt-call k3s.agent_rejected
    """
    ret = __salt__["cmd.run_all"](
        ["journalctl", "--no-pager", "-q", "-u", unit, "-n", str(int(lines))],
        python_shell=False,
        ignore_retcode=True,
        output_loglevel="debug",
    )
    return password_rejected(ret.get("stdout", ""))


def wait_ready(name, timeout=300, interval=5, kubeconfig=None):
    """
    Wait up to ``timeout`` seconds for node ``name`` to be Ready; return its last summary
    (``None`` if it never registered). Errors while k3s starts (no kubeconfig yet, API not
    answering) count as "not yet".

    CLI Example:

    .. code-block:: bash

        salt-call k3s.wait_ready epsilon timeout=120
    """
    deadline = time.monotonic() + float(timeout)
    last = None
    while True:
        try:
            last = node(name, kubeconfig)
        except CommandExecutionError as exc:
            log.debug("k3s: waiting for %s: %s", name, exc)
        if last and last["ready"]:
            return last
        if time.monotonic() >= deadline:
            return last
        time.sleep(max(0.1, float(interval)))


# --------------------------------------------------------------------------------------
# cmdline.txt (Raspberry Pi): the memory cgroup k3s needs
# --------------------------------------------------------------------------------------


def merge_cmdline(line, tokens):
    """
    The kernel command line ``line`` with ``tokens`` added where missing, everything else
    kept in order. A token already there is left alone; a single-valued ``key=value`` with
    another value is replaced in place; ``cgroup_enable=X`` also drops a ``cgroup_disable=X``
    (which would cancel it). Returns ``line`` itself when nothing is missing.

    CLI Example:

    .. code-block:: bash

        salt-call k3s.merge_cmdline "console=tty1 root=/dev/mmcblk0p2" "[cgroup_memory=1, cgroup_enable=memory]"
    """
    words = line.split()
    changed = False
    for token in _tokens(tokens):
        key, sep, value = token.partition("=")
        if token in words:
            pass
        elif key in REPEATABLE or not sep:
            words.append(token)
            changed = True
        else:
            same_key = [i for i, w in enumerate(words) if w.partition("=")[0] == key]
            if same_key:
                words[same_key[0]] = token
                words = [w for i, w in enumerate(words) if i not in same_key[1:]]
            else:
                words.append(token)
            changed = True
        if key == "cgroup_enable" and f"cgroup_disable={value}" in words:
            words = [w for w in words if w != f"cgroup_disable={value}"]
            changed = True
    return " ".join(words) if changed else line


def _tokens(tokens):
    if isinstance(tokens, str):
        tokens = tokens.split()
    out = []
    for token in tokens or []:
        token = str(token).strip()
        if not token or any(c.isspace() for c in token):
            raise CommandExecutionError(f"kernel parameter {token!r} is empty or contains whitespace")
        out.append(token)
    return out


def _read_cmdline(path):
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise CommandExecutionError(f"cannot read {path}: {exc.strerror}") from exc
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1:
        raise CommandExecutionError(
            f"{path} has {len(lines)} non-empty lines; the firmware reads one line only: fix it by hand first"
        )
    return (lines[0] if lines else "").strip(), text


def cmdline_check(path, tokens):
    """
    What :func:`cmdline_set` would do to the one-line kernel command line in ``path``:
    ``{"old": line, "new": line}`` (equal when nothing is missing).

    CLI Example:

    .. code-block:: bash

        salt-call k3s.cmdline_check /boot/firmware/cmdline.txt "[cgroup_memory=1, cgroup_enable=memory]"
    """
    line, _ = _read_cmdline(path)
    return {"old": line, "new": merge_cmdline(line, tokens)}


def cmdline_set(path, tokens):
    """
    Add the missing ``tokens`` to the kernel command line in ``path``, keeping it one line,
    and return ``{"old": line, "new": line}`` (the file is not written when they are equal).
    The file is replaced atomically, so a power cut leaves the old or the new line.

    CLI Example:

    .. code-block:: bash

        salt-call k3s.cmdline_set /boot/firmware/cmdline.txt "[cgroup_memory=1, cgroup_enable=memory]"
    """
    line, _ = _read_cmdline(path)
    new = merge_cmdline(line, tokens)
    if new != line:
        tmp = f"{path}.salt-new"
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(new + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            raise CommandExecutionError(f"cannot write {path}: {exc.strerror}") from exc
    return {"old": line, "new": new}
