"""
k3s states: a node joined to the cluster and Ready (``k3s.joined``), and the kernel command
line a Raspberry Pi needs for k3s (``k3s.cmdline``). The work is done by the ``k3s``
execution module (``_modules/k3s.py``).

.. code-block:: yaml

    k3s-joined:
      k3s.joined:
        - name: epsilon
        - machine_id: {{ grains['machine_id'] }}
        - timeout: 300

    k3s-cmdline:
      k3s.cmdline:
        - name: /boot/firmware/cmdline.txt
        - tokens: [cgroup_memory=1, cgroup_enable=memory]
"""

import time

from salt.exceptions import CommandExecutionError

__virtualname__ = "k3s"


def __virtual__():
    if "k3s.join_args" in __salt__:
        return __virtualname__
    return (False, "the k3s execution module (_modules/k3s.py) is not loaded")


def joined(name, machine_id=None, timeout=300, interval=5, wait=True, kubeconfig=None):
    """
    Node ``name`` is registered in the k3s cluster and Ready.

    name
        the node's name (its inventory name)
    machine_id
        the ``/etc/machine-id`` of the machine that now holds the name. A Node object that is
        not Ready and was registered by another machine-id is a leftover of a re-flashed
        node: it is deleted (on the server, which has the admin kubeconfig) so that the node
        can register again instead of being refused with "Node password rejected".
    timeout, interval
        how long to wait for the node to be Ready, and how often to look (seconds)
    wait
        ``False``: only remove a stale Node object, do not wait (for an orchestration that
        runs before the rebuilt node starts its agent)
    kubeconfig
        defaults to the server's admin kubeconfig, or an agent's kubelet credentials
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    try:
        current = __salt__["k3s.node"](name, kubeconfig=kubeconfig)
        why_unknown = ""
    except CommandExecutionError as exc:
        current, why_unknown = None, str(exc)

    if current and current["ready"]:
        if machine_id and current.get("machine_id") and current["machine_id"] != machine_id:
            ret["comment"] = (
                f"node {name} is Ready but runs on machine-id {current['machine_id']}, not on this "
                f"machine ({machine_id}): two machines use the name {name}"
            )
            return ret
        ret["result"] = True
        ret["comment"] = f"node {name} is joined and Ready ({current.get('version') or 'unknown version'})"
        return ret

    stale = __salt__["k3s.stale_reason"](current, machine_id)
    now = (
        f"{current['status']}: {current.get('reason') or 'no reason given'}" if current
        else f"not registered{' (' + why_unknown + ')' if why_unknown else ''}"
    )

    if __opts__["test"]:
        ret["result"] = None
        todo = []
        if stale:
            todo.append(f"delete the stale node object ({stale})")
            ret["changes"] = {"deleted": name}
        todo.append(f"wait up to {timeout} s for node {name} to be Ready" if wait else "not wait for it")
        ret["comment"] = f"would {' and '.join(todo)}; now {now}"
        return ret

    if stale:
        try:
            __salt__["k3s.delete_node"](name, kubeconfig=kubeconfig)
        except CommandExecutionError as exc:
            ret["comment"] = f"{stale}; cannot delete it: {exc}"
            return ret
        ret["changes"] = {"deleted": {"node": name, "reason": stale}}

    if not wait:
        ret["result"] = True
        ret["comment"] = (
            f"deleted the stale node object {name}: the node registers when its k3s agent starts" if stale
            else f"node {name}: nothing blocks it from joining (now {now})"
        )
        return ret

    start = time.monotonic()
    final = __salt__["k3s.wait_ready"](name, timeout=timeout, interval=interval, kubeconfig=kubeconfig)
    took = int(time.monotonic() - start)
    if final and final["ready"]:
        ret["result"] = True
        ret["comment"] = f"node {name} is Ready after {took} s ({final.get('version') or 'unknown version'})"
        return ret
    state = f"{final['status']}: {final.get('reason') or 'no reason given'}" if final else "not registered"
    hint = ""
    if not stale and __salt__["k3s.agent_rejected"]():
        hint = (
            "; its k3s agent logs 'Node password rejected': a Node object from a previous life of this "
            "node blocks it; run `salt-run state.orch k3s.orch` (or `salt <k3s server> k3s.delete_node "
            f"{name}`) and apply again"
        )
    ret["comment"] = f"node {name} is not Ready after {timeout} s ({state}){hint}"
    return ret


def cmdline(name, tokens):
    """
    The one-line kernel command line in file ``name`` (a Raspberry Pi's ``cmdline.txt``) has
    every parameter of ``tokens``; only the missing ones are added (see
    ``k3s.merge_cmdline``). Reports ``changes`` only when the file was rewritten: use an
    ``onchanges`` requisite to reboot.

    name
        the file, e.g. ``/boot/firmware/cmdline.txt`` (bookworm) or ``/boot/cmdline.txt``
    tokens
        kernel parameters, e.g. ``[cgroup_memory=1, cgroup_enable=memory]``
    """
    ret = {"name": name, "changes": {}, "result": False, "comment": ""}
    try:
        check = __salt__["k3s.cmdline_check"](name, tokens)
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret
    if check["old"] == check["new"]:
        ret["result"] = True
        ret["comment"] = f"{name} already has {' '.join(tokens)}"
        return ret
    if __opts__["test"]:
        ret["result"] = None
        ret["changes"] = dict(check)
        ret["comment"] = f"would add to {name}: {_added(check)}"
        return ret
    try:
        done = __salt__["k3s.cmdline_set"](name, tokens)
    except CommandExecutionError as exc:
        ret["comment"] = str(exc)
        return ret
    ret["result"] = True
    ret["changes"] = dict(done)
    ret["comment"] = f"added to {name}: {_added(done)} (effective after a reboot)"
    return ret


def _added(change):
    old = set(change["old"].split())
    return " ".join(w for w in change["new"].split() if w not in old)
