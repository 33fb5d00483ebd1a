"""`escalations receive`: a local webhook receiver that verifies signatures and prints each event.

For trying the product: the policies' default endpoint is http://127.0.0.1:8099/events. It
acknowledges a repeated `webhook-id` without printing it again, as any receiver should.
"""

from __future__ import annotations

import contextlib
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from activities.webhooks import WebhookVerificationError, verify


def serve(port: int, secret: str) -> None:
    seen: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verify(secret, body, headers)
            except WebhookVerificationError as err:
                print(f"REFUSED (bad signature: {err})", flush=True)
                self.send_response(401)
                self.end_headers()
                return
            event_id = headers.get("webhook-id", "")
            if event_id not in seen:
                seen.add(event_id)
                e = json.loads(body)
                who = ", ".join(p["id"] for p in e.get("recipients", [])) or "-"
                cc = ", ".join(p["id"] for p in e.get("cc", []))
                print(
                    f"{e['occurred_at']}  {e['type']:<18} ticket {e['ticket_id']} tier {e['tier']} "
                    f"{e['department']}  to: {who}{'  cc: ' + cc if cc else ''}  rule: {e.get('rule') or '-'}  "
                    f"({e['reason']})",
                    flush=True,
                )
            self.send_response(200)
            self.end_headers()

        do_PUT = do_POST  # the helpdesk reassignment call, when pointed here

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(f"receiving signed events on http://127.0.0.1:{port}/events (Ctrl-C to stop)", file=sys.stderr)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
