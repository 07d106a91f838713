"""The built wheel carries what an installed xit-dist reads at run time (the DeepSpeed configs, the
shipped model configs, the language metadata), and a DeepSpeed config name resolves from any
directory once installed, not only from a source checkout.

The wheel is built offline by setuptools' PEP 517 hook (what ``pip wheel`` and ``python -m build``
call) from a copy of the source, so the checkout gets no ``build/``; nothing is installed: the
wheel is unpacked into a temporary directory and imported from there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from xit_dist.config.ds_config import PACKAGED_DS_CONFIGS, load_ds_config

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL_DS_CONFIGS = REPO / "ds_configs"
BUILD_WHEEL = "import sys; from setuptools import build_meta; build_meta.build_wheel(sys.argv[1])"
RESOLVE_OUTSIDE = """
import json, sys
import xit_dist
from xit_dist.config.ds_config import REPO_DS_CONFIGS, load_ds_config
assert xit_dist.__file__.startswith(sys.argv[1]), xit_dist.__file__  # the unpacked wheel, not the checkout
assert not REPO_DS_CONFIGS.exists(), REPO_DS_CONFIGS  # no top-level ds_configs/ beside an installed package
print(json.dumps({name: load_ds_config(name) for name in sys.argv[2:]}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "xit_dist", source / "xit_dist", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run([sys.executable, "-W", "ignore", "-c", BUILD_WHEEL, str(out)], cwd=source,
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [path] = out.glob("*.whl")
    return path


def test_packaged_ds_configs_are_the_top_level_ones_byte_for_byte():
    """xit_dist/ds_configs/ is a copy of ds_configs/ (the one users read and edit): change both."""
    top_level = sorted(p.name for p in TOP_LEVEL_DS_CONFIGS.glob("*.json"))
    assert top_level and sorted(p.name for p in PACKAGED_DS_CONFIGS.glob("*.json")) == top_level
    for name in top_level:
        assert (PACKAGED_DS_CONFIGS / name).read_bytes() == (TOP_LEVEL_DS_CONFIGS / name).read_bytes(), (
            f"xit_dist/ds_configs/{name} differs from ds_configs/{name}: copy ds_configs/{name} over it"
        )


def test_the_wheel_ships_ds_configs_model_configs_and_language_metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for config in TOP_LEVEL_DS_CONFIGS.glob("*.json"):
            member = f"xit_dist/ds_configs/{config.name}"
            assert member in names
            assert archive.read(member) == config.read_bytes()
        model_configs = sorted((REPO / "xit_dist" / "builtin" / "configs").rglob("config.json"))
        assert model_configs
        for config in model_configs:
            assert config.relative_to(REPO).as_posix() in names
        assert "xit_dist/tasks/languages.yaml" in names


def test_a_ds_config_name_resolves_outside_the_repository(wheel, tmp_path):
    """Unpacked as pip would install it, and run from a directory with no ds_configs/ of its own."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    names = ["zero2", "zero3"]
    done = subprocess.run([sys.executable, "-c", RESOLVE_OUTSIDE, str(site), *names], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    resolved = json.loads(done.stdout)
    for name in names:
        assert resolved[name] == load_ds_config(TOP_LEVEL_DS_CONFIGS / f"{name}.json")
