"""The suite's rule for CI (tests/conftest.py): run as root, a skipped test fails the run (every
tier can run there, so a skip is a missing package or a broken set-up); ALLOW_SKIPS=1 accepts it."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the rule applies to runs as root")


def _run(tmp_path, body, **env):
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from tests.conftest import pytest_runtest_logreport, pytest_sessionfinish, pytest_terminal_summary\n"
    )
    (tmp_path / "test_demo.py").write_text(f"import pytest\n\n\n{body}\n")
    environ = {k: v for k, v in os.environ.items() if k != "ALLOW_SKIPS"} | env
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, env=environ, timeout=120, check=False)


def test_a_skip_fails_the_run_and_says_which(tmp_path):
    proc = _run(tmp_path, 'def test_needs_named():\n    pytest.skip("needs named")')
    assert proc.returncode == 1, proc.stdout
    assert "skipped as root" in proc.stdout and "test_demo.py::test_needs_named: Skipped: needs named" in proc.stdout


def test_allow_skips_accepts_it(tmp_path):
    proc = _run(tmp_path, 'def test_needs_named():\n    pytest.skip("needs named")', ALLOW_SKIPS="1")
    assert proc.returncode == 0, proc.stdout


def test_a_run_without_skips_passes_and_a_failure_stays_a_failure(tmp_path):
    assert _run(tmp_path, "def test_ok():\n    pass").returncode == 0
    assert _run(tmp_path, "def test_bad():\n    assert False").returncode == 1
