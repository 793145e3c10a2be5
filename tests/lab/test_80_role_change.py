"""A role change is one command: beta (lanservices) is given compute too in the inventory on the
deployer, and ONE highstate of beta applies the compute services (the roles grain follows the
inventory before the top is matched, salt/roles/map.jinja); the minion, whose configuration
changed, restarts only after that run returned (salt/minion), and then carries the new grain
for `salt -G`; the next highstate changes nothing. Late in the session: beta keeps the compute
services afterwards (the inventory is put back; removing a role's services is not tested here)."""

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

        started = time.monotonic()
        first = salt(lab, f"{NODE} state.apply", timeout=900)  # changes() fails on no return or a failed state
        took = time.monotonic() - started
        changed = changes(first)[NODE]
        for sid in ("minion-config-file-managed", "minion-restart-after-this-run-cmd-run",
                    "distcc-server-service-running", "mpich-pkg-installed", "roles-compute-marker-file-managed"):
            assert sid in changed, (sid, changed)
        print(f"\n{NODE} given compute: one highstate, {len(changed)} changes, {took:.1f} s")

        # the minion restarted after the run (not during it) and now carries the new grain
        deadline = time.monotonic() + 120
        while (roles := _grain_roles(lab, NODE)) != [BEFORE, "compute"] and time.monotonic() < deadline:
            time.sleep(3)
        assert roles == [BEFORE, "compute"]
        targeted = salt(lab, "-G roles:compute test.ping", timeout=60)
        assert targeted.get(NODE) is True, targeted
        assert lab.run(NODE, "systemctl is-active distcc", check=False).stdout.strip() == "active"

        assert changes(salt(lab, f"{NODE} state.apply", timeout=600)) == {NODE: []}
    finally:
        lab.run("psi", f"sudo mv {inv}.before-role-change {inv}", check=True)
