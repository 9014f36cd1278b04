"""The package as users get it.

The sdist and the wheel are built as a release builds them (`python -m build`: the sdist, then
the wheel from it). The wheel goes into a fresh virtual environment: not editable, the source
tree nowhere on its path, every process started in a directory of its own with a clean
environment; from there, `syncctl migrate` brings a schema to its head.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from sync_pipeline.state.migrate import current_revision, head_revision
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

PACKAGES = ("sync_pipeline", "workers")
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".sync-data", "__pycache__", "*.py[cod]", "*.egg-info", "build", "dist"
)


def run(
    argv: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{shlex.join(argv)}\n{done.stdout}\n{done.stderr}"
    return done


# -- the builds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path  # from the sdist, as a release is made
    log: str  # what `python -m build` printed


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    source = tmp_path_factory.mktemp("source") / "sync_pipeline"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    dist = tmp_path_factory.mktemp("dist")
    # Without PYTHONDONTWRITEBYTECODE, whose only effect is a warning about byte-compiling.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = run([sys.executable, "-m", "build", "--outdir", str(dist), str(source)], dist, env)
    [sdist], [wheel] = list(dist.glob("*.tar.gz")), list(dist.glob("*.whl"))
    return Built(sdist, wheel, done.stdout + done.stderr)


def source_files() -> set[str]:
    """Every file of the packages in the source tree, as a path inside a wheel."""
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if ".dist-info/" not in n}


def test_given_the_release_build_then_setuptools_warns_of_nothing(built: Built) -> None:
    # "WARNING Package 'sync_pipeline.state.migrations' is absent from the `packages`
    # configuration" was the sign that the wheel lacked the migrations.
    warnings = [line for line in built.log.splitlines() if re.search(r"(?i)\bwarning\b", line)]

    assert warnings == []


def test_given_the_wheel_then_it_holds_every_file_of_the_packages(built: Built) -> None:
    assert wheel_files(built.wheel) == source_files()


def test_given_the_sdist_then_it_holds_the_packages_and_the_configuration(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}

    assert {"config/connectors.yaml", "Dockerfile"} | source_files() <= names


# -- the installed wheel ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh virtual environment holding the wheel. Its dependencies resolve from
    the wheel's own metadata, pinned to the versions this environment runs (so the install
    takes seconds and tests what CI tests)."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    pins: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if name != "sync-pipeline":
            pins.setdefault(name, dist.version)
    constraints = root.parent / "constraints.txt"
    constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())), "utf-8")
    python = root / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet"]
    run([*install, "--constraint", str(constraints), str(built.wheel)], root.parent, None)
    return root / "bin"


def clean_env(venv: Path, home: Path, **settings: str) -> dict[str, str]:
    """A process environment of the installed package alone: no PYTHONPATH, no source tree."""
    return {"PATH": f"{venv}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8", **settings}


def test_given_the_wheel_then_its_python_imports_the_install_not_the_source_tree(
    venv: Path, tmp_path: Path
) -> None:
    code = "import sync_pipeline, workers; print(sync_pipeline.__file__); print(workers.__file__)"

    done = run([str(venv / "python"), "-c", code], tmp_path, clean_env(venv, tmp_path))

    for line in done.stdout.split():
        assert Path(line).is_relative_to(venv.parent), line
        assert not Path(line).is_relative_to(ROOT), line


def test_given_the_wheel_then_migrate_brings_the_schema_to_head(
    venv: Path, redis_url: str, database_url: str, tmp_path: Path
) -> None:
    env = clean_env(venv, tmp_path, REDIS_URL=redis_url, DATABASE_URL=database_url)

    first = run([str(venv / "syncctl"), "migrate"], tmp_path, env)
    again = run([str(venv / "syncctl"), "migrate"], tmp_path, env)

    assert "schema migrated" in first.stdout
    assert "nothing to do" in again.stdout
    assert current_revision(database_url) == head_revision()
