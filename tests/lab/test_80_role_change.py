"""A role change is one command: beta (lanservices) is given compute too in the inventory on the
deployer, and ONE highstate of beta applies the compute services (the roles grain follows the
inventory before the top is matched, salt/roles/map.jinja); the grain is written to the
minion's grains file and the running minion re-reads it (salt/minion): no restart, `salt -G`
finds beta at once, and the next highstate (sent right away) changes nothing. Then the inventory
is put back and ONE highstate removes the compute services again (the cleans of the role table:
salt/distcc/clean.sls, salt/mpich/clean.sls), and the next one changes nothing."""

import time

import pytest

from tests.lab.conftest import INVENTORY_ON_DEPLOYER, changes, salt

pytestmark = pytest.mark.lab

NODE, BEFORE = "beta", "lanservices"


def _grain_roles(lab, node):
    ret = salt(lab, f"{node} grains.get roles", timeout=30)
    return ret.get(node)


def test_one_highstate_applies_a_new_role(rolled_out):
    lab = rolled_out
    inv = INVENTORY_ON_DEPLOYER
    lab.run("psi", f"sudo cp {inv} {inv}.before-role-change", check=True)
    try:
        lab.run("psi", f"sudo sed -i -E 's/^( +{NODE}: +\\{{roles: \\[){BEFORE}\\]/\\1{BEFORE}, compute]/' {inv}",
                check=True)
        assert f"{BEFORE}, compute" in lab.run("psi", f"grep -E '^ +{NODE}:' {inv}", check=True).stdout
        assert _grain_roles(lab, NODE) == [BEFORE]
        pid = lab.run(NODE, "systemctl show -p MainPID --value salt-minion", check=True).stdout.strip()

        started = time.monotonic()
        first = salt(lab, f"{NODE} state.apply", timeout=900)  # changes() fails on no return or a failed state
        took = time.monotonic() - started
        changed = changes(first)[NODE]
        for sid in ("minion-roles-grain-file-serialize", "minion-grains-refresh-cmd-run",
                    "distcc-server-service-running", "mpich-pkg-installed", "roles-compute-marker-file-managed"):
            assert sid in changed, (sid, changed)
        print(f"\n{NODE} given compute: one highstate, {len(changed)} changes, {took:.1f} s")

        assert "minion-config-file-managed" not in changed, changed
        # the running minion re-reads its grains (an event it handles within seconds): no restart
        deadline = time.monotonic() + 30
        while (roles := _grain_roles(lab, NODE)) != [BEFORE, "compute"] and time.monotonic() < deadline:
            time.sleep(3)
        assert roles == [BEFORE, "compute"]
        assert lab.run(NODE, "systemctl show -p MainPID --value salt-minion", check=True).stdout.strip() == pid
        targeted = salt(lab, "-G roles:compute test.ping", timeout=60)
        assert targeted.get(NODE) is True, targeted
        assert lab.run(NODE, "systemctl is-active distcc", check=False).stdout.strip() == "active"

        assert changes(salt(lab, f"{NODE} state.apply", timeout=600)) == {NODE: []}
    finally:
        lab.run("psi", f"sudo mv {inv}.before-role-change {inv}", check=True)


def test_one_highstate_removes_the_role_again(rolled_out):
    """The inventory as it was (the test above put it back): beta's next highstate runs the cleans
    of the compute services; distccd and MPICH are gone, the lanservices services untouched."""
    lab = rolled_out
    line = lab.run("psi", f"grep -E '^ +{NODE}:' {INVENTORY_ON_DEPLOYER}", check=True).stdout
    assert f"roles: [{BEFORE}]" in line, line
    started = time.monotonic()
    changed = changes(salt(lab, f"{NODE} state.apply", timeout=900))[NODE]
    took = time.monotonic() - started
    for sid in ("minion-roles-grain-file-serialize", "distcc-clean-distcc-service-dead",
                "mpich-clean-pkg-purged", "mpich-clean-computeadm-user-absent", "roles-compute-marker-file-absent"):
        assert sid in changed, (sid, changed)
    assert not [sid for sid in changed if sid.startswith(("bind-", "dhcpd-", "keepalived-"))], changed
    print(f"\n{NODE} back to {BEFORE}: one highstate, {len(changed)} changes, {took:.1f} s")
    gone = lab.run(NODE, "systemctl is-active distcc; dpkg-query -W -f '${Status}' mpich; id computeadm", check=False)
    assert "inactive" in gone.stdout and "install ok installed" not in gone.stdout and "uid=" not in gone.stdout, gone
    assert lab.run(NODE, "systemctl is-active named isc-dhcp-server keepalived", check=False).stdout.split() == [
        "active"] * 3
    deadline = time.monotonic() + 30
    while (roles := _grain_roles(lab, NODE)) != [BEFORE] and time.monotonic() < deadline:
        time.sleep(3)
    assert roles == [BEFORE]
    assert NODE not in salt(lab, "-G roles:compute test.ping", timeout=60)
    assert changes(salt(lab, f"{NODE} state.apply", timeout=600)) == {NODE: []}
