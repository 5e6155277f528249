"""The wheel the Docker image installs (``pip install .``) holds every package and runs.

The development checkout is installed editable, which imports from the source tree whatever
the wheel would hold: only a real wheel shows a package missing from it.
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

from tests.test_layout import OURS, ROOT


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel built from the checkout, and a folder it is installed in (no dependencies:
    they come from this environment), as the Docker image's build stage does."""
    tmp = tmp_path_factory.mktemp("packaging")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp / "wheel"), str(ROOT)],
        check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = (tmp / "wheel").glob("pacesetter-*.whl")
    target = tmp / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    return wheel, target


def test_the_wheel_holds_every_package_and_its_cli_runs_from_it(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, target = installed
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == OURS
    for package in OURS:
        sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / package).rglob("*.py")
                   if "__pycache__" not in p.parts and ".native" not in p.parts}
        assert sources <= set(names), sorted(sources - set(names))
    assert any(name.startswith("api/static/") for name in names)  # the dashboard ships too
    shipped = {p.name for p in (ROOT / "mappings").glob("*.toml")}
    assert shipped and {f"pacesetter/mappings/{n}" for n in shipped} <= set(names)

    # Installed on its own, away from the checkout, the command line runs.
    env = {**os.environ, "PYTHONPATH": str(target)}
    shown = subprocess.run(
        [sys.executable, "-c", "import services, streams, api, forecasting, sys;"
         "print(*(m.__file__ for m in (services, streams, api, forecasting)));"
         "from services.imports.mapping import load_mapping;"
         "assert load_mapping('sf-fire-units').kind == 'units';"
         "from pacesetter.cli import main; sys.argv = ['pacesetter', '--help']; main()"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert shown.returncode == 0, shown.stderr[-2000:]
    loaded, _, usage = shown.stdout.partition("\n")
    assert all(path.startswith(str(target)) for path in loaded.split()), loaded
    assert "worker" in usage


def run_in(target: Path, code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -c code`` importing our packages from ``target`` only (not the checkout)."""
    env = {**os.environ, "PYTHONPATH": str(target), "PACESETTER_PURE_PYTHON": "0"}
    return subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


BUILD = "import sys; from services.figures._native import main; sys.exit(main())"
USED = ("import services.figures, services.figures.engine as e; "
        "print(services.figures.NATIVE, e.__file__)")


def assert_native_used(target: Path, built: subprocess.CompletedProcess[str]) -> None:
    """The installed package runs the compiled engine from its own ``.native`` folder."""
    assert built.returncode == 0, built.stderr[-2000:]
    used = run_in(target, USED, 60)
    native, path = used.stdout.split()
    assert native == "True", built.stderr[-2000:]
    assert path.startswith(str(target / "services" / "figures" / ".native")), path


def test_the_installed_wheel_takes_the_engine_built_from_the_same_sources(
        installed: tuple[Path, Path]) -> None:
    # The Dockerfile's build stage runs _native.main() from the installed package. A build is
    # a function of its fingerprint (the compiled sources, byte for byte, and the interpreter):
    # when the installed package's fingerprint is the stamp of the checkout's fresh build
    # (`make native`, run before the tests), that build is what compiling beside the wheel
    # gives, and is placed there instead of compiled again (the compile itself: the slow test
    # below). Without a fresh build in the checkout, it is compiled here.
    from services.figures import _native

    _wheel, target = installed
    stamp = run_in(target, "import json; from services.figures._native import fingerprint; "
                           "print(json.dumps(fingerprint()))", 60)
    assert stamp.returncode == 0, stamp.stderr[-2000:]
    installed_fingerprint = json.loads(stamp.stdout)
    assert installed_fingerprint == _native.fingerprint()  # the wheel holds the same sources
    if _native.is_fresh():
        shutil.copytree(_native.NATIVE, target / "services" / "figures" / ".native",
                        dirs_exist_ok=True)
    assert_native_used(target, run_in(target, BUILD, 600))


@pytest.mark.slow
def test_the_engine_compiles_beside_an_installed_wheel_as_the_docker_build_does(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    # The Dockerfile's build stage: build the native engine from / against the installed
    # package (not the checkout), and require it to be used.
    _wheel, shared = installed
    target = tmp_path / "site"  # a copy of its own: the test above may have placed a build
    shutil.copytree(shared, target, ignore=shutil.ignore_patterns(".native"))
    assert_native_used(target, run_in(target, BUILD, 600))
