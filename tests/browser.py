"""Headless Chromium for tests: Debian's `chromium` driven by Playwright's Python package.

Playwright never downloads a browser here (`executable_path` is the system one; `./dev setup`
installs Debian's package when it is missing). Use the `browser` fixture from `tests/conftest.py`:

    async def test_page(browser):
        page = await browser.new_page()
        await page.goto(url)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """The system Chromium, or a skip (a failure on CI, where `./dev test` installs it)."""
    path = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    if path is None:
        message = "Debian's chromium is not installed: run ./dev setup as root, or apt-get install chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@asynccontextmanager
async def launch() -> AsyncIterator[Any]:
    """A headless Chromium browser (Playwright async API), closed on exit."""
    from playwright.async_api import async_playwright

    path = chromium_path()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, headless=True, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()
