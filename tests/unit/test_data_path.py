"""One data path (issue 11): the model is the rpicluster package, imported normally, and the
state tree reads the cluster from the pillar. Greps the tree for the old ways back."""

import pathlib
import re

from tests.conftest import REPO

SKIP_DIRS = {".git", ".venv", "__pycache__", "var"}
THIS = pathlib.Path(__file__).resolve()
# the model loaded by file path: the old module's path in any spelling, or a path loader
OLD_MODEL_PATH = re.compile(r"_modules\W{1,6}cluster\.py")
PATH_LOADERS = re.compile(r"spec_from_file_location|SourceFileLoader|load_by_path\(")
MODEL_CALL_IN_TEMPLATES = re.compile(r"""salt(\[\s*['"]|\.)cluster\.""")
MODEL_CALL_IN_MODULES = re.compile(r"""__salt__\[\s*['"]cluster\.""")


def _files(*roots):
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file() or SKIP_DIRS & set(path.relative_to(REPO).parts):
                continue
            try:
                yield path, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def test_the_old_model_module_is_gone_and_nothing_names_its_path():
    assert not (REPO / "_modules" / "cluster.py").exists()
    named = [str(p.relative_to(REPO)) for p, text in _files(REPO) if p != THIS and OLD_MODEL_PATH.search(text)]
    assert named == []


def test_no_path_loader_is_pointed_at_the_model():
    found = []
    for path, text in _files(REPO):
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if PATH_LOADERS.search(line) and "rpicluster" in " ".join(lines[i:i + 3]) and path != THIS:
                found.append(f"{path.relative_to(REPO)}:{i + 1}")
    assert found == []


def test_the_state_tree_and_pillar_read_the_cluster_from_the_pillar():
    calls = [f"{p.relative_to(REPO)}: {m.group(0)}" for p, text in _files(REPO / "salt", REPO / "pillar")
             for m in MODEL_CALL_IN_TEMPLATES.finditer(text)]
    assert calls == []


def test_no_minion_module_calls_the_model():
    roots = [REPO / d for d in ("_modules", "_states", "_beacons", "_grains")]
    calls = [f"{p.relative_to(REPO)}: {m.group(0)}" for p, text in _files(*roots) for m in MODEL_CALL_IN_MODULES.finditer(text)]
    assert calls == []
