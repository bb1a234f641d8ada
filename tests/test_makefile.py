"""`make app` installs what the app needs and nothing more; `make test` adds the test tools. Checked with
`make -n` (print, do not run) on a copy of the Makefile and its inputs, so nothing is installed."""

import os
import shutil
import subprocess
import time

import pytest

from .conftest import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
INPUTS = ("Makefile", "requirements.txt", "requirements-dev.txt", "pyproject.toml")


@pytest.fixture
def checkout(tmp_path):
    for name in INPUTS:
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def planned(folder, target) -> str:
    # Under `make test` the outer make's MAKELEVEL/MAKEFLAGS would make this one print "Entering directory".
    env = {key: value for key, value in os.environ.items() if key not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    command = ["make", "--no-print-directory", "-n", target]
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=True).stdout


def stamp(path, age_seconds=0.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    moment = time.time() - age_seconds
    os.utime(path, (moment, moment))


def test_a_fresh_clone_gets_the_app_without_the_test_tools(checkout):
    app = planned(checkout, "app")
    assert "-m venv .venv" in app and "-r requirements.txt" in app and "-e ." in app
    assert "requirements-dev.txt" not in app
    test = planned(checkout, "test")
    assert "-r requirements.txt" in test and "-r requirements-dev.txt" in test and "-m pytest" in test


def test_the_stamps_skip_what_is_installed_and_redo_what_changed(checkout):
    for name in INPUTS:
        stamp(checkout / name, age_seconds=60)
    stamp(checkout / ".venv/bin/python", age_seconds=30)
    stamp(checkout / ".venv/bin/.installed-app", age_seconds=20)
    assert planned(checkout, "app").splitlines() == [".venv/bin/python app.py --port 7860"]
    assert "requirements-dev.txt" in planned(checkout, "test")  # the test tools are not there yet
    stamp(checkout / ".venv/bin/.installed-dev", age_seconds=10)
    assert planned(checkout, "test").splitlines() == [".venv/bin/python -m pytest"]
    stamp(checkout / "requirements-dev.txt")  # newer than the dev stamp: the test tools only
    assert "pip install" not in planned(checkout, "app")
    assert "-r requirements-dev.txt" in planned(checkout, "test") and "-e ." not in planned(checkout, "test")
