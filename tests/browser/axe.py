"""axe-core, installed from npm into a cache directory, run inside a page over CDP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.browser.cdp import Browser

AXE_VERSION = "4.14.1"


def axe_source() -> str:
    """The text of ``axe.min.js`` (``npm install axe-core`` once per machine and version)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    prefix = cache / "pacesetter-tests" / f"axe-core-{AXE_VERSION}"
    script = prefix / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                pytest.fail("npm is not installed (Debian package 'npm'); CI needs it for axe-core")
            pytest.skip("npm is not installed (apt-get install npm): no axe-core")
        prefix.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
             "--ignore-scripts", f"axe-core@{AXE_VERSION}"],
            capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0 or not script.exists():
            pytest.fail(f"npm install axe-core@{AXE_VERSION} failed: {result.stderr[-2000:]}")
    return script.read_text(encoding="utf-8")


def run_axe(browser: Browser, source: str) -> list[dict[str, Any]]:
    """axe's violations on the current page (WCAG 2 A and AA rules, best practices too)."""
    browser.send("Runtime.evaluate", {"expression": source})
    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                     "wcag21aa", "best-practice"]}}
    result = browser.send("Runtime.evaluate", {
        "expression": f"axe.run(document, {json.dumps(options)}).then(r => r.violations.map("
                      "v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 5)"
                      ".map(n => n.target.join(' ') + ': ' + n.failureSummary)})))",
        "awaitPromise": True, "returnByValue": True}, timeout=120)
    if "exceptionDetails" in result:
        raise RuntimeError(f"axe.run failed: {result['exceptionDetails']}")
    return list(result["result"]["value"])


def serious(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The violations axe rates serious or critical."""
    return [v for v in violations if v.get("impact") in ("serious", "critical")]
