"""A real HTTPS webhook receiver on 127.0.0.1 that verifies every delivery with the
``standardwebhooks`` package, and a real SMTP server (aiosmtpd) that keeps each message."""

from __future__ import annotations

import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    at: float  # time.time() when it arrived (the test's travelled clock)
    status: int
    verified: bool
    body: dict | None
    raw: str


@dataclass
class Receiver:
    """``status`` decides each answer (a callable of the request number, or a number)."""

    tls: dict
    secret: str | None = None
    status: object = 200
    hold: threading.Event | None = None  # when set: the first request waits on it
    received: list[Received] = field(default_factory=list)
    redirect_to: str | None = None

    def __post_init__(self):
        receiver = self
        self.arrived = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = False
                try:
                    Webhook(receiver.secret).verify(raw, headers)
                    verified = True
                except (WebhookVerificationError, TypeError, ValueError):
                    pass
                number = len(receiver.received)
                status = receiver.status(number) if callable(receiver.status) else receiver.status
                if not verified:
                    status = 400
                entry = Received(headers.get("webhook-id", ""), time.time(), status, verified,
                                 json.loads(raw) if verified else None, raw)
                receiver.received.append(entry)
                receiver.arrived.set()
                if receiver.hold is not None and number == 0:
                    receiver.hold.wait(60)
                self.send_response(status)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls["cert"], self.tls["key"])
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/hooks/tracker"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def delivered_ids(self) -> list[str]:
        return [r.webhook_id for r in self.received if 200 <= r.status < 300]


class SmtpSink:
    """aiosmtpd on a free loopback port, keeping (recipients, message) per mail."""

    def __init__(self):
        from email import message_from_bytes, policy

        from aiosmtpd.controller import Controller

        sink = self
        self.messages: list[tuple[list[str], object]] = []

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.messages.append((list(envelope.rcpt_tos),
                                      message_from_bytes(envelope.content, policy=policy.default)))
                return "250 OK"

        from conftest import free_port

        port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=port)
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{port}"

    def stop(self):
        self.controller.stop()

    def by_subject(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for rcpts, message in self.messages:
            found.setdefault(str(message["Subject"]), []).extend(rcpts)
        return found

    def texts(self) -> str:
        return "\n".join(str(m["Subject"]) + "\n" + m.get_content() for _, m in self.messages)


def run_outbox(app, rounds: int = 3) -> None:
    """A few rounds of the outbox worker's own loop step, in the test's process (fan-out, e-mail, webhooks)."""
    from app.extensions import db
    from app.outbound import outbox

    for _ in range(rounds):
        outbox.run_once(db.session, outbox.Settings.from_config(app.config), sweep_all=True)
