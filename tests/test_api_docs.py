"""/docs and /redoc work without internet: headless Chromium, every request outside the API refused.

The pages load Swagger UI and ReDoc from the project's own assets and show every operation of the
OpenAPI document; the document declares the API-key security schemes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from api.server import build_server
from config.settings import Settings
from tests.ports import free_port


async def test_docs_and_redoc_show_every_operation_offline(dev_env: WorkflowEnvironment, browser: Any) -> None:
    settings = Settings(_env_file=None, temporal_address="127.0.0.1:7233", api_port=free_port())
    server = build_server(settings, dev_env.client)
    task = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{settings.api_port}"
    context = None
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient() as http:
            document = (await http.get(f"{base}/openapi.json")).json()
        assert document["components"]["securitySchemes"] == {
            "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": _any()},
            "Bearer": {"type": "http", "scheme": "bearer", "description": _any()},
        }
        assert document["paths"]["/tickets"]["post"]["security"] == [{"ApiKey": []}, {"Bearer": []}]
        operations = [
            (method, path) for path, item in document["paths"].items() for method in item if method != "parameters"
        ]
        assert len(operations) >= 10

        outside: list[str] = []

        async def only_this_api(route: Any) -> None:
            if route.request.url.startswith(base):
                await route.continue_()
            else:  # no network: anything else the page asks for fails, and is noted
                outside.append(route.request.url)
                await route.abort()

        context = await browser.new_context()
        await context.route("**/*", only_this_api)
        page = await context.new_page()

        await page.goto(f"{base}/docs")
        await page.wait_for_selector(".opblock", timeout=60_000)
        assert await page.locator(".opblock").count() == len(operations)
        assert await page.locator(".opblock-summary-path", has_text="/tickets/{ticket_id}/timeline").count() == 1
        assert await page.locator("button.authorize").count() == 1  # the security schemes

        await page.goto(f"{base}/redoc")
        await page.wait_for_selector('[data-section-id^="operation/"]', timeout=60_000)
        assert await page.locator('[data-section-id^="operation/"]').count() == len(operations)

        assert outside == []
    finally:
        if context is not None:
            await context.close()
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)


class _any:  # reads as a wildcard in an expected value
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)
