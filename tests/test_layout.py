"""The layout rules of ARCHITECTURE.md and STYLE.md, checked by parsing the source with ``ast``."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"services", "streams", "forecasting", "api", "pacesetter"}
# ARCHITECTURE.md, "Packages and what may import what" (a package may always import itself).
MAY_IMPORT = {
    "services": {"services"},
    "streams": {"streams", "services"},
    "forecasting": {"forecasting", "services"},
    "api": {"api", "services", "forecasting"},
}
FORBIDDEN_NAMES = {"utils.py", "helpers.py", "common.py"}
SKIP_DIRS = {".venv", ".git", "node_modules", "__pycache__", ".hypothesis", ".mypy_cache",
             ".ruff_cache", ".pytest_cache", "build", "dist", "data"}


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imported_packages(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import, at any depth, and import_module("x")."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
        elif (
            isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) == "import_module"
                 or getattr(node.func, "id", None) in {"import_module", "__import__"})
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value.split(".")[0]))
    return found


def test_the_packages_exist_and_parse() -> None:
    for package in MAY_IMPORT:
        files = sources(package)
        assert (ROOT / package / "__init__.py") in files, f"{package}/ is not a package"
        for path in files:
            parsed(path)  # a syntax error fails here, naming the file


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_packages_it_may(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in sources(package)
        for line, target in imported_packages(parsed(path))
        if target in OURS and target not in MAY_IMPORT[package]
    ]
    if offenders:
        pytest.fail(
            f"{package}/ may import only {sorted(MAY_IMPORT[package])} (ARCHITECTURE.md); "
            "offenders:\n" + "\n".join(offenders)
        )


def test_the_import_check_sees_every_form_of_import() -> None:
    tree = ast.parse(
        "import streams.app\n"
        "from api import deps\n"
        "from . import sibling\n"
        "def f():\n"
        "    from forecasting.plan import plan\n"
        "    importlib.import_module('pacesetter.cli')\n"
    )
    assert [t for _, t in imported_packages(tree)] == ["streams", "api", "forecasting",
                                                       "pacesetter"]


def test_there_is_no_utils_helpers_or_common_module() -> None:
    offenders = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        here = Path(folder).relative_to(ROOT)
        offenders += [str(here / name) for name in sorted(FORBIDDEN_NAMES & set(files))]
    if offenders:
        pytest.fail("split by responsibility, not by kind (STYLE.md): " + ", ".join(offenders))


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_no_print_outside_the_cli(package: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sources(package)
        for node in ast.walk(parsed(path))
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "print")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "print"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "builtins")
        )
    ]
    if offenders:
        pytest.fail(
            f"print() in {package}/ (STYLE.md: logging, not print): " + ", ".join(offenders)
        )
