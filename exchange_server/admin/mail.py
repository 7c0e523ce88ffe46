"""E-mail through the configured SMTP server (stdlib ``smtplib``): UTF-8 subject and body, STARTTLS, sign-in."""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from ..config import Settings


def build_message(settings: Settings, to: list[str], subject: str, body: str) -> EmailMessage:
    """The message: headers encoded as RFC 2047 where not ASCII, the body as UTF-8 text."""
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    msg.set_content(body, charset="utf-8")
    return msg


def send_mail(settings: Settings, to: list[str], subject: str, body: str) -> None:
    """Send one message to ``to``; raises ``OSError`` or ``smtplib.SMTPException`` when the server fails or refuses."""
    msg = build_message(settings, to, subject, body)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(msg)
