"""External tools the deployment tests run: missing is a skip on a laptop, a failure in CI."""

from __future__ import annotations

import os
import shutil

import pytest

# Debian package of each tool (the CI image is Debian).
PACKAGES = {
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "docker-compose": "docker-compose",
    "amtool": "prometheus-alertmanager",
}


def require_tool(name: str) -> str:
    """Path of ``name``; skips the test when it is missing, or fails it when ``CI`` is set."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed (Debian: apt-get install {PACKAGES[name]})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must install it", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def promtool() -> str:
    """Path of ``promtool``."""
    return require_tool("promtool")


@pytest.fixture
def amtool() -> str:
    """Path of Alertmanager's ``amtool``."""
    return require_tool("amtool")


@pytest.fixture
def prometheus() -> str:
    """Path of the ``prometheus`` server."""
    return require_tool("prometheus")


@pytest.fixture
def docker_compose() -> str:
    """Path of Debian's ``docker-compose`` (1.x: parsing needs no Docker engine)."""
    return require_tool("docker-compose")
