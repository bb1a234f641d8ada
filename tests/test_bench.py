"""The benchmark scripts stay runnable: they import nothing from tests/ (so they need neither pytest nor
the fixtures), and each one answers `--help`."""

import ast
import os
import subprocess
import sys

import pytest

from .conftest import REPO

BENCH = REPO / "bench"
SCRIPTS = sorted(path.name for path in BENCH.glob("*.py") if not path.name.startswith("_"))


def imported_modules(path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("name", sorted(path.name for path in BENCH.glob("*.py")))
def test_bench_never_imports_tests(name):
    modules = imported_modules(BENCH / name)
    assert not {m for m in modules if m == "tests" or m.startswith("tests.")}, f"bench/{name} imports from tests/"


@pytest.mark.slow  # each script imports torch in a fresh process
@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_answers_help(name):
    completed = subprocess.run([sys.executable, str(BENCH / name), "--help"], cwd=REPO, capture_output=True,
                               text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: "), completed.stdout[:200]
