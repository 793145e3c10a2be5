"""One data path (issue 11): the model is the rpicluster package, imported normally, and the
state tree reads the cluster from the pillar; in the state tree only the map.jinja files read
pillar, grains or execution modules. Greps the tree for the old ways back."""

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
# a read of the pillar, the grains or an execution module from Jinja (issue 11, item 4)
READS = re.compile(r"pillar\.get|pillar\[|grains\[|grains\.get|salt\[|salt\.[a-z_]+\.")
# {(file under salt/, the read as matched): why it stays outside a map.jinja}: keep it short,
# every entry justified; an entry that no longer matches fails the test too.
ALLOWED_READS = {}
# a test switch in the production state tree (issue 11, item 5): a prefix for a scratch root, a
# "leave the service alone" flag, a package list the tests empty, "do not set the hostname"
TEST_SWITCHES = re.compile(r"\.root\b|\bmanage_service\b|set_running_hostname|\{%-?\s*if\s+\w+\.pkgs\s*%\}"
                           r"|^\s+root:\s", re.MULTILINE)


def _files(*roots):
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.is_symlink() or not path.is_file() or SKIP_DIRS & set(path.relative_to(root).parts):
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


def _state_tree_reads(root=REPO / "salt"):
    """``{(path under root, read)}``: the reads of every file of the state tree ``root`` but the
    map.jinja files, the Python module folders (salt/_modules etc.: links to the custom
    modules) and the k3s artifacts (git-ignored binaries)."""
    found = set()
    for path, text in _files(root):
        rel = path.relative_to(root)
        if path.name == "map.jinja" or rel.parts[0].startswith("_"):
            continue
        if rel.parts[:3] == ("k3s", "files", "artifacts"):
            continue
        found.update((str(rel), m.group(0)) for m in READS.finditer(text))
    return found


def test_only_the_maps_read_pillar_grains_and_modules():
    """A service is a unit: its map.jinja reads pillar, grains and execution modules, its SLS
    files and templates use the map's dict (templates get it through context:)."""
    reads = _state_tree_reads()
    assert sorted(reads - set(ALLOWED_READS)) == []
    assert sorted(set(ALLOWED_READS) - reads) == [], "allow-list entries that match nothing: remove them"


def test_the_read_scan_finds_a_read_in_an_sls(tmp_path):
    """The scan above sees a read in an SLS file or a template, and not in a map.jinja."""
    tree = tmp_path / "salt"
    for rel, text in {"svc/init.sls": "{%- set x = pillar.get('x') %}\n",
                      "svc/files/conf.jinja": "{{ grains['id'] }} {{ salt['cmd.run']('id') }}\n",
                      "svc/map.jinja": "{%- set svc = {'x': pillar.get('x'), 'id': grains['id']} %}\n",
                      "_modules/svc.py": "__grains__['id']  # grains['id']\n"}.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text)
    assert _state_tree_reads(tree) == {("svc/init.sls", "pillar.get"), ("svc/files/conf.jinja", "grains["),
                                    ("svc/files/conf.jinja", "salt[")}


def _switches(root):
    return [f"{path.relative_to(root)}: {m.group(0).strip()}" for path, text in _files(root)
            for m in TEST_SWITCHES.finditer(text)]


def test_the_state_tree_has_no_test_switch():
    # the functional and integration tiers apply the states in a node's own files
    # (tests/functional/nodefs.py): the production defaults need no switch for them
    assert _switches(REPO / "salt") == []


def test_the_switch_scan_finds_each_kind_of_switch(tmp_path):
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "defaults.yaml").write_text("svc:\n  root: ''\n  manage_service: true\n  user: root\n")
    (tmp_path / "svc" / "init.sls").write_text("{%- if svc.pkgs %}\nx:\n  file.managed:\n    - name: {{ svc.root ~ '/etc/x' }}\n"
                                              "{%- endif %}\n")
    assert sorted(_switches(tmp_path)) == ["svc/defaults.yaml: manage_service", "svc/defaults.yaml: root:",
                                          "svc/init.sls: .root", "svc/init.sls: {%- if svc.pkgs %}"]
