"""Headless Chromium from the system's packages, driven by Selenium: nothing downloads a browser.

`make test` installs Debian's `chromium` and `chromium-driver` where it can (root with apt); where
they are missing the browser tests are skipped, with the reason in pytest's summary (`-rs`) and a
warning, never silently.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("AIWORLD_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("AIWORLD_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
# Headless as root in a container: no sandbox, no GPU, and nothing that phones home.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1680,1050",
]
ARTIFACTS = Path(__file__).parents[2] / ".aiworld" / "test-artifacts" / "viewer"


def require_chromium(chromium: Path = CHROMIUM, driver: Path = CHROMEDRIVER) -> None:
    missing = [str(path) for path in (chromium, driver) if not path.is_file()]
    if missing:
        reason = (
            f"browser tests skipped: {', '.join(missing)} not installed "
            "(apt-get install chromium chromium-driver, or run `make test` as root)"
        )
        warnings.warn(reason, stacklevel=2)
        pytest.skip(reason)


class Browser:
    """One fresh Chromium profile; blocking calls, so tests run them in a thread."""

    def __init__(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service

        self._profile = tempfile.mkdtemp(prefix="aiworld-chromium-")
        options = Options()
        options.binary_location = str(CHROMIUM)
        for flag in [*FLAGS, f"--user-data-dir={self._profile}"]:
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        print(f"screenshot: {path}")
        return path

    def quit(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self._profile, ignore_errors=True)
