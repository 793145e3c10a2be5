"""The tests' own lab (LAB_INSTANCE=test) beside the default one: the same cluster on its own
subnet, and names that never let one instance's `lab down` take the other's parts."""

import ipaddress
import json
import os
import subprocess
import sys

import yaml

from tests.conftest import REPO

DEFAULT, TEST = REPO / "lab" / "inventory.yaml", REPO / "lab" / "inventory-test.yaml"


def _inventory(path):
    return yaml.safe_load(path.read_text())["cluster"]


def test_the_test_inventory_is_the_lab_on_another_subnet():
    lab, test = _inventory(DEFAULT), _inventory(TEST)
    assert not ipaddress.ip_network(lab["network"]["subnet"]).overlaps(ipaddress.ip_network(test["network"]["subnet"]))
    assert lab["nodes"].keys() == test["nodes"].keys()
    for name, node in lab["nodes"].items():
        other = test["nodes"][name]
        assert {k: v for k, v in node.items() if k not in ("ip", "mac")} == \
               {k: v for k, v in other.items() if k not in ("ip", "mac")}, name
        assert node["ip"].split(".")[-1] == other["ip"].split(".")[-1], name  # same host part
        assert node["mac"] != other["mac"] and node["mac"][-2:] == other["mac"][-2:], name
    for key in ("gateway", "vip"):
        assert lab["network"][key].split(".")[-1] == test["network"][key].split(".")[-1], key


def _names(instance):
    code = ("import json, lab; from lab import net; print(json.dumps({'state': str(lab.STATE), 'bridge': lab.BRIDGE, "
            "'cgroup': lab.CGROUP_PREFIX, 'inventory': str(lab.DEFAULT_INVENTORY), 'link': net.host_link('epsilon')}))")
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_INSTANCE", "LAB_STATE_DIR")} | {"LAB_INSTANCE": instance}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def test_no_name_of_one_instance_starts_with_the_others():
    default, test = _names(""), _names("test")
    assert default["inventory"] == str(DEFAULT) and test["inventory"] == str(TEST)
    assert default["link"] == "vb-epsilon" and len(test["link"]) <= 15  # Linux interface names
    for key in ("state", "bridge", "cgroup"):
        assert not default[key].startswith(test[key]) and not test[key].startswith(default[key]), key


def test_a_bad_instance_name_is_refused():
    env = dict(os.environ, LAB_INSTANCE="Test-1")
    proc = subprocess.run([sys.executable, "-c", "import lab"], cwd=REPO, env=env, capture_output=True, text=True,
                          check=False)
    assert proc.returncode != 0 and "LAB_INSTANCE='Test-1'" in proc.stderr
