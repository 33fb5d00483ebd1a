"""A real SMTP server on 127.0.0.1 for tests (aiosmtpd): records every message it is given, and
keeps the mailbox a careful receiver keeps, deduplicated on Message-ID."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.ports import free_port


@dataclass
class Mailbox:
    """`received`: every DATA accepted or not; `messages`: deduplicated on Message-ID.
    `fail_after_storing`: answer that many deliveries with 451 after storing them (the sender
    cannot know it arrived, and tries again)."""

    received: list[EmailMessage] = field(default_factory=list)
    messages: dict[str, EmailMessage] = field(default_factory=dict)
    fail_after_storing: int = 0
    arrived: dict[str, float] = field(default_factory=dict)  # Message-ID -> first arrival (time.time())
    texts: dict[str, str] = field(default_factory=dict)  # Message-ID -> plain-text body
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.received.append(msg)
            self.messages.setdefault(str(msg["Message-ID"]), msg)
            self.arrived.setdefault(str(msg["Message-ID"]), time.time())
            self.texts.setdefault(str(msg["Message-ID"]), body(msg))
            if self.fail_after_storing > 0:
                self.fail_after_storing -= 1
                return "451 4.3.0 try again later"
        return "250 OK"

    def count(self, address_part: str, text_part: str = "") -> int:
        """Cheap: messages (deduplicated) to an address containing `address_part` whose text has `text_part`."""
        with self.lock:
            return sum(
                1
                for mid, m in self.messages.items()
                if address_part in str(m["To"]) and text_part in self.texts.get(mid, "")
            )

    def for_(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages.values() if address in str(m["To"])]


class SmtpServer:
    def __init__(self, port: int | None = None) -> None:
        self.mailbox = Mailbox()
        self.port = port or free_port()
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def endpoint(self, sender: str = "escalations@example.com") -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port, "security": "none", "sender": sender}


def body(message: EmailMessage, kind: str = "plain") -> str:
    """The text (or html) part of a parsed message."""
    part = message.get_body((kind,))
    assert part is not None, f"no {kind} part"
    return str(part.get_content())
