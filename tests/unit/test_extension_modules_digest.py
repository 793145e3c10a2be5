"""deploy:extension_modules (pillar/cluster/init.sls): the digest salt/minion/extensions.sls compares
with the one a minion synced last. It must change with any synced module (content or name) and
with nothing else, or minions would sync for nothing or miss a change."""

import importlib.machinery
import importlib.util
import shutil

from tests.conftest import PILLAR_TREE, STATE_TREE


def _cluster_pillar(file_roots):
    loader = importlib.machinery.SourceFileLoader("cluster_pillar_under_test", str(PILLAR_TREE / "cluster" / "init.sls"))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    module.__opts__ = {"file_roots": {"base": [str(root) for root in file_roots]}}
    return module


def test_the_digest_changes_with_a_synced_module_and_nothing_else(tmp_path):
    root = tmp_path / "salt"
    shutil.copytree(STATE_TREE / "_modules", root / "_modules")  # the real modules (salt/_modules is a link)
    (root / "_states").mkdir()
    (root / "_states" / "example.py").write_text("VALUE = 1\n")
    (root / "bind").mkdir()
    (root / "bind" / "init.sls").write_text("{}\n")
    digest = _cluster_pillar([root])._extension_modules_digest

    first = digest()
    assert first == digest() and len(first) == 64
    (root / "bind" / "init.sls").write_text("changed: {}\n")  # a state file is not synced
    (root / "_modules" / "README").write_text("notes\n")  # nor a file that is not a module
    assert digest() == first
    (root / "_states" / "example.py").write_text("VALUE = 2\n")
    second = digest()
    assert second != first
    (root / "_states" / "example.py").rename(root / "_states" / "renamed.py")
    assert digest() not in (first, second)
    (root / "_states" / "renamed.py").unlink()
    assert digest() not in (first, second)


def test_the_real_tree_has_a_digest_over_its_module_folders():
    digest = _cluster_pillar([STATE_TREE])._extension_modules_digest()
    assert digest != _cluster_pillar([])._extension_modules_digest()
