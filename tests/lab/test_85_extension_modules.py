"""Custom modules reach a minion when they change, not before every highstate (the minions run
with autoload_dynamic_modules off, salt/minion/extensions.sls): a changed module on the deployer
is on the node after ONE highstate, which reports the sync; the next highstate syncs nothing and
changes nothing."""

import pytest

from tests.lab.conftest import changes, salt

pytestmark = pytest.mark.lab

NODE = "gamma"
MODULE = "/srv/cluster/_modules/tftpd.py"  # a module gamma (compute) never calls: nothing else moves
SYNCED = "/var/cache/salt/minion/extmods/modules/tftpd.py"
SYNC = "minion-extension-modules-saltutil-sync-all"


def test_a_changed_custom_module_reaches_the_node_with_one_highstate(rolled_out):
    lab = rolled_out
    # the minion does not sync by itself: its configuration says so
    assert "autoload_dynamic_modules: false" in lab.run(NODE, "sudo cat /etc/salt/minion.d/cluster.conf").stdout
    assert changes(salt(lab, f"{NODE} state.apply", timeout=600)) == {NODE: []}

    mark = "# changed by tests/lab/test_85_extension_modules.py"
    lab.run("psi", f"sudo cp {MODULE} {MODULE}.before-test && echo '{mark}' | sudo tee -a {MODULE} >/dev/null",
            check=True)
    try:
        assert mark not in lab.run(NODE, f"sudo cat {SYNCED}", check=True).stdout
        first = salt(lab, f"{NODE} state.apply", timeout=600)
        assert SYNC in changes(first)[NODE], changes(first)
        synced = next(s for sid, s in first[NODE].items() if f"_|-{SYNC}_|-" in sid)
        assert "modules.tftpd" in str(synced["changes"]), synced["changes"]
        assert mark in lab.run(NODE, f"sudo cat {SYNCED}", check=True).stdout
        assert changes(salt(lab, f"{NODE} state.apply", timeout=600)) == {NODE: []}
    finally:
        lab.run("psi", f"sudo mv {MODULE}.before-test {MODULE}", check=True)
    # the original is back everywhere with the same one highstate
    back = salt(lab, f"{NODE} state.apply", timeout=600)
    assert SYNC in changes(back)[NODE], changes(back)
    assert mark not in lab.run(NODE, f"sudo cat {SYNCED}", check=True).stdout
