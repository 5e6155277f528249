"""Optional compiled engine: the per-event modules built with mypyc, loaded only while fresh.

The stream's per-event work (``services.figures.engine``, ``calls``, ``kpis`` ...) and the
checkpoints' copy of it (``checkpoint``, which pauses the worker's loop) are plain, fully typed
Python; mypyc compiles them, in one build, to C extension modules about 1.5 times as fast.
They are built into ``services/figures/.native/`` with a stamp of the exact sources they came
from, and ``services.figures`` puts that folder first on its package path only when the stamp
matches the sources as they are now: an edited engine is never shadowed by a stale build.
Without a build (no C compiler, or ``PACESETTER_PURE_PYTHON=1``) the same modules run as
Python, with identical results.

Build: ``make native`` (``make test``, ``demo`` and ``bench`` do it first).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

COMPILED: tuple[str, ...] = ("engine", "kpis", "calls", "incidents", "handlers", "checkpoint")
# One build of them all: calls from one module to another are C calls, not Python ones (the
# engine measured 8-10 % faster in CPU time than with a build per module), and it compiles in
# a third of the time. Its shared library is ``services/figures/native__mypyc``.
GROUP = "services.figures.native"
_SETUP = """
import sys
from setuptools import setup
from mypyc.build import mypycify
group, options, paths = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
sys.argv = [sys.argv[0], "build_ext", "--inplace"]
setup(name="pacesetter-figures-native", ext_modules=mypycify(options + paths, group_name=group))
"""
PACKAGE = Path(__file__).resolve().parent
NATIVE = PACKAGE / ".native"
STAMP = NATIVE / "stamp.json"

log = logging.getLogger(__name__)


def fingerprint() -> dict[str, str]:
    """What a build depends on: the compiled sources and the interpreter."""
    sources = {name: hashlib.sha256((PACKAGE / f"{name}.py").read_bytes()).hexdigest()
               for name in COMPILED}
    return {**sources, "python": sys.version, "abi": str(sysconfig.get_config_var("SOABI"))}


def is_fresh() -> bool:
    """Whether ``services/figures/.native`` holds a build of exactly the current sources."""
    try:
        return bool(json.loads(STAMP.read_text()) == fingerprint())
    except (OSError, ValueError):
        return False


def activate(package_path: list[str]) -> bool:
    """Put the native build first on the package path if it is fresh and not switched off."""
    if os.environ.get("PACESETTER_PURE_PYTHON", "") not in ("", "0"):
        return False
    if not is_fresh():
        return False
    package_path.insert(0, str(NATIVE))
    return True


def build() -> int:
    """Compile the modules with mypyc into ``services/figures/.native``; 0 also when it cannot."""
    if is_fresh():
        log.info("native engine: up to date")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        # mypyc type-checks the whole package: compile a copy, away from pyproject.toml
        work = Path(tmp)
        shutil.copytree(PACKAGE.parent, work / "services",
                        ignore=shutil.ignore_patterns(".native", "__pycache__"))
        # third-party stubs vary between installs (a Docker image, a venv): the engine's own
        # types are what mypyc compiles
        result = subprocess.run(
            [sys.executable, "-c", _SETUP, GROUP, "--ignore-missing-imports",
             *(f"services/figures/{name}.py" for name in COMPILED)], cwd=work,
            capture_output=True, text=True, check=False)
        # each module's entry and the group's code (``native__mypyc``), beside the sources
        built = [p for p in (work / "services" / "figures").iterdir()
                 if p.suffix in (".so", ".pyd")]
        names = {p.name.split(".")[0] for p in built}
        if result.returncode != 0 or not names >= {*COMPILED, GROUP.rsplit(".", 1)[1] + "__mypyc"}:
            log.warning("native engine: could not compile %s with mypyc; "
                        "running as pure Python (slower, same results):\n%s",
                        ", ".join(f"services/figures/{n}.py" for n in COMPILED),
                        (result.stdout + result.stderr)[-2000:])
            return 0
        shutil.rmtree(NATIVE, ignore_errors=True)
        NATIVE.mkdir()
        for path in built:
            shutil.copy2(path, NATIVE / path.name)
    STAMP.write_text(json.dumps(fingerprint(), indent=1))
    log.info("native engine: built %s", ", ".join(f"services.figures.{n}" for n in COMPILED))
    return 0


def main() -> int:
    """Build, saying what happened on standard error."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return build()


if __name__ == "__main__":
    sys.exit(main())
