"""The Makefile makes its virtual environment with Python >= 3.11 (tomllib reads server.toml), or stops with one line
saying so: `make -n` on a PATH that holds only fake interpreters of known versions."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

MAKEFILE = Path(__file__).resolve().parent.parent / "Makefile"
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs GNU make")


def make(tmp_path: Path, pythons: dict[str, bool], *arguments: str) -> subprocess.CompletedProcess:
    """`make -n` of a copy of the Makefile in tmp_path (no .venv yet), with PATH holding only the fake pythons
    (name → whether it says it is >= 3.11)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, new_enough in pythons.items():
        fake = bin_dir / name
        fake.write_text(f'#!/bin/sh\ncase "$*" in *version_info*) echo {int(new_enough)};; esac\n')
        fake.chmod(0o755)
    shutil.copy(MAKEFILE, tmp_path / "Makefile")
    return subprocess.run([MAKE, "-n", *arguments], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PATH": str(bin_dir)})


@pytest.mark.parametrize("pythons, chosen", [
    ({"python3": True}, "python3"),
    ({"python3": False, "python3.12": True}, "python3.12"),
    ({"python3.13": True, "python3.11": True, "python3": True}, "python3.11"),
])
def test_the_first_python_new_enough_makes_the_environment(tmp_path, pythons, chosen):
    done = make(tmp_path, pythons, ".venv/bin/python")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{tmp_path / 'bin' / chosen} -m venv .venv"]


@pytest.mark.parametrize("pythons, arguments, found", [
    ({"python3": False}, (), "none"),
    ({}, (), "none"),
    ({"python3.12": True}, ("PYTHON=python3.10",), "python3.10"),  # the operator's choice is checked too
])
def test_without_python_3_11_make_stops_with_one_line(tmp_path, pythons, arguments, found):
    done = make(tmp_path, pythons, ".venv/bin/python", *arguments)
    assert done.returncode != 0
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert "Python >= 3.11" in line and f"found {found}:" in line


def test_targets_that_need_no_python_do_not_ask_for_one(tmp_path):
    done = make(tmp_path, {}, "clean")
    assert done.returncode == 0 and done.stderr == ""
