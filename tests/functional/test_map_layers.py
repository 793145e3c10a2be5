"""salt/lib/map.jinja's layers, through Salt's own renderer: a service that names a layer kind
in its defaults gets the file for the node's grain merged; one that does not name it is not
looked up at all (each lookup is a round trip to the master, many times per highstate)."""

import json
import shutil

import pytest
import yaml
from saltfactories.utils.functional import Loaders

from tests.conftest import STATE_TREE

SERVICE = "maplayersdemo"


@pytest.fixture
def tree(tmp_path):
    """A state tree with the real lib/map.jinja and a demo service with an os_family layer."""
    root = tmp_path / "tree"
    shutil.copytree(STATE_TREE / "lib", root / "lib")
    svc = root / SERVICE
    (svc / "os_family").mkdir(parents=True)
    (svc / "map.jinja").write_text(
        "{%- from 'lib/map.jinja' import mapdata with context %}\n"
        f"{{%- set demo = mapdata('{SERVICE}') | load_json %}}\n")
    (svc / "init.sls").write_text(
        f"{{%- from '{SERVICE}/map.jinja' import demo with context %}}\n"
        "demo-map:\n  test.succeed_without_changes:\n    - name: {{ demo | json | json }}\n")
    (svc / "os_family" / "Debian.yaml").write_text(f"{SERVICE}:\n  port: 2\n  extra: layer\n")
    return root


def rendered_map(salt_factories, tree, layers, lookup=None):
    (tree / SERVICE / "defaults.yaml").write_text(
        f"{SERVICE}:\n  port: 1\n  name: demo\n" + (f"  layers: {layers}\n" if layers is not None else ""))
    overrides = {"file_client": "local", "file_roots": {"base": [str(tree)]}, "grains": {"os_family": "Debian"}}
    if lookup:
        overrides[SERVICE] = {"lookup": lookup}
    factory = salt_factories.salt_minion_daemon(f"layers-{layers is not None}-{bool(lookup)}", overrides=overrides)
    loaders = Loaders(factory.config.copy(), loaded_base_name=f"{__name__}.loaded")
    try:
        low = loaders.modules.state.show_low_sls(SERVICE)
        assert isinstance(low, list), low  # a list of strings would be render errors
        return json.loads(low[0]["name"])
    finally:
        loaders.reset_state()


def test_a_declared_layer_is_merged_over_the_defaults(salt_factories, tree):
    assert rendered_map(salt_factories, tree, "[os_family]") == {"port": 2, "name": "demo", "extra": "layer"}


def test_an_undeclared_layer_is_not_looked_up(salt_factories, tree):
    assert rendered_map(salt_factories, tree, None) == {"port": 1, "name": "demo"}


def test_lookup_wins_over_the_layer(salt_factories, tree):
    got = rendered_map(salt_factories, tree, "[os_family]", lookup={"port": 3})
    assert got == {"port": 3, "name": "demo", "extra": "layer"}


def test_every_layer_file_of_the_tree_is_declared_by_its_service():
    """A layer file nobody declares would be silently ignored."""
    forgotten = []
    for kind in ("os_family", "osarch"):
        for layer in sorted(STATE_TREE.glob(f"*/{kind}/*.yaml")):
            svc = layer.parent.parent.name
            defaults = yaml.safe_load((layer.parent.parent / "defaults.yaml").read_text())[svc]
            if kind not in defaults.get("layers", []):
                forgotten.append(str(layer.relative_to(STATE_TREE)))
    assert forgotten == []
