"""The Temporal Web UI of `./dev run` shows a ticket decrypted, through the codec server (headless Chromium).

The history holds only ciphertext (tests/test_processes.py); the dev server's UI is started with the codec
server as its codec endpoint (token in the path, CORS for the UI's origin), so the browser decrypts the
ticket's input for the person looking at it.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from api.auth import DEV_API_KEY
from tests.processes import clean_env, free_port, spawn, wait_status

EMAIL, SUBJECT = "ui.secret@example.org", "Zebra subject 42"


async def test_web_ui_shows_the_decrypted_ticket(browser: Any, tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("dev_server_port", "dev_ui_port", "api_port", "codec_server_port")}
    env = clean_env(data_dir=tmp_path / "data", log_format="json", worker_health_port=free_port(), **ports)
    process = spawn("run", env, tmp_path)
    api = f"http://127.0.0.1:{ports['api_port']}"
    headers = {"X-API-Key": DEV_API_KEY}
    try:
        await asyncio.to_thread(wait_status, f"{api}/readyz", 200, 120, process)
        async with httpx.AsyncClient(base_url=api, headers=headers, timeout=30) as http:
            body = {"ticket_id": "UI-1", "subject": SUBJECT, "customer": {"id": "c1", "email": EMAIL}}
            assert (await http.post("/tickets", json=body)).status_code == 201
            for _ in range(150):
                if (await http.get("/tickets/UI-1")).status_code == 200:
                    break
                await asyncio.sleep(0.2)
        page = await browser.new_page()
        ui = f"http://127.0.0.1:{ports['dev_ui_port']}"
        await page.goto(f"{ui}/namespaces/default/workflows/ticket-UI-1", wait_until="load", timeout=90_000)
        # not "networkidle": the Web UI polls the server, so a busy machine may never look idle
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = await page.content()
            if EMAIL in text:
                break
            await page.wait_for_timeout(500)
        await page.screenshot(path=str(tmp_path / "web-ui.png"))
        await page.close()
        assert EMAIL in text and SUBJECT in text, f"the Web UI did not show the decrypted ticket ({tmp_path})"
    finally:
        process.stop()
