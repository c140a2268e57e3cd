"""Sending one e-mail through ``SMTP_URL`` (``smtp://`` with STARTTLS when offered, or
``smtps://``; optional ``user:password@``) from ``MAIL_FROM``."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

TIMEOUT_SECONDS = 20


class MailNotConfigured(RuntimeError):
    pass


def send(smtp_url: str | None, mail_from: str, to: str, subject: str, text: str) -> None:
    """Send or raise (``smtplib.SMTPException``/``OSError``: the outbox retries)."""
    if not smtp_url:
        raise MailNotConfigured("SMTP_URL is not set")
    parts = urlsplit(smtp_url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise MailNotConfigured("SMTP_URL must be smtp://host:port or smtps://host:port")
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = mail_from, to, subject
    message.set_content(text)
    context = ssl.create_default_context()
    if parts.scheme == "smtps":
        server = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=TIMEOUT_SECONDS, context=context)
    else:
        server = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=TIMEOUT_SECONDS)
    with server:
        server.ehlo()
        if parts.scheme == "smtp" and server.has_extn("starttls"):
            server.starttls(context=context)
            server.ehlo()
        if parts.username:
            server.login(unquote(parts.username), unquote(parts.password or ""))
        server.send_message(message)
