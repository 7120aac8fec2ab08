"""The digest as an email, sent through Apprise.

The digest channel's mailto:// URL configures Apprise's own email plugin (server, port, TLS mode, login, sender),
exactly as for alert emails. DigestEmail changes one thing: instead of deriving a text part from the HTML, it sends
the multipart/alternative message composed here (a text part from its own template, then the HTML) to all of a
practice's recipients in one SMTP transaction, so a digest reaches the whole leadership or none of it.
"""

from __future__ import annotations

import contextlib
import email.policy
import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any

import apprise
from apprise.plugins.email import NotifyEmail

from config import Config
from config.channels import Channel
from digest.render import RenderedDigest
from storage.models import utcnow

PREVIEW_SENDER = "vendorwatch@localhost"
HEADER_POLICY = email.policy.SMTP.clone(max_line_length=998)


class DigestNotSent(Exception):
    """The mail server did not take the digest. permanent: retrying will not help (bad login, refused sender or
    recipients, a digest channel that is not email); the operator must fix the configuration."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class DigestEmail(NotifyEmail):
    """Apprise's email plugin, sending a message composed by compose_message instead of one of its own."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message: EmailMessage | None = None
        self.failure: DigestNotSent | None = None
        self.refused: dict[str, tuple[int, bytes]] = {}

    def send(self, body: str, title: str = "", *args: Any, **kwargs: Any) -> bool:
        if self.message is None:
            raise RuntimeError("compose the message before sending it")
        self.throttle()  # Apprise's rate limit for the target, as its own plugin applies it
        try:
            with smtp_session(self) as smtp:
                self.refused = smtp.send_message(self.message, self.from_addr[1], recipients_of(self))
        except (OSError, smtplib.SMTPException) as exc:
            self.failure = DigestNotSent(describe(exc), permanent=is_permanent(exc))
            self.logger.warning("the digest email was not sent: %s", self.failure)
            return False
        return True


@contextlib.contextmanager
def smtp_session(plugin: NotifyEmail) -> Iterator[smtplib.SMTP]:
    """Connect, secure and log in as Apprise's own email plugin does for its URL's mode (insecure, starttls,
    ssl)."""
    context = ssl.create_default_context()
    if not plugin.verify_certificate:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    timeout = plugin.socket_connect_timeout
    if plugin.secure_mode == "ssl":
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(plugin.smtp_host, plugin.port, timeout=timeout, context=context)
    else:
        smtp = smtplib.SMTP(plugin.smtp_host, plugin.port, timeout=timeout)
    try:
        if plugin.secure_mode == "starttls":
            smtp.starttls(context=context)
        if plugin.user and plugin.password:
            smtp.login(plugin.user, plugin.password)
        yield smtp
    finally:
        with contextlib.suppress(OSError, smtplib.SMTPException):
            smtp.quit()


def is_permanent(error: Exception) -> bool:
    """5xx replies and a refused login will fail the same way next time; dropped connections and 4xx may not."""
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return True
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code >= 500
    return False


def describe(error: Exception) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "every recipient refused: " + "; ".join(
            f"{address} ({code} {text_of(reply)})" for address, (code, reply) in error.recipients.items()
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{type(error).__name__}: {error.smtp_code} {text_of(error.smtp_error)}"
    return f"{type(error).__name__}: {error}"


def text_of(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def recipients_of(plugin: NotifyEmail) -> list[str]:
    return [address for _, address in plugin.targets]


def digest_channel(config: Config) -> Channel | None:
    if config.digest_tag is None:
        return None
    return next((channel for channel in config.channels if config.digest_tag in channel.tags), None)


def email_plugin(channel: Channel, recipients: list[str]) -> DigestEmail:
    """Apprise's email settings from the channel's URL; the recipients are the digest's, not the URL's `to=`."""
    if channel.url.split("://", 1)[0].lower() not in ("mailto", "mailtos"):
        raise DigestNotSent(f"the digest channel {channel.label} is not a mailto:// URL", permanent=True)
    settings = NotifyEmail.parse_url(channel.url)
    settings["targets"] = recipients
    return DigestEmail(**settings)


def sender_of(plugin: NotifyEmail | None) -> str:
    if plugin is None:
        return PREVIEW_SENDER
    name, address = plugin.from_addr
    return formataddr((name or "vendorwatch", address))


def compose_message(rendered: RenderedDigest, sender: str, recipients: list[str], *, resend: bool) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = rendered.subject
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = message_id(rendered, sender, resend=resend)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: keeps out-of-office replies away
    message["X-Vendorwatch-Digest"] = rendered.name
    message.set_content(rendered.text, cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    # The parts are encoded by now (quoted-printable, 76 columns). Headers fold when the message is written:
    # the default 78 columns would push a subject of 70-odd characters whole onto a continuation line, which
    # readers then show with a leading space. SMTP allows 998.
    message.policy = HEADER_POLICY
    return message


def message_id(rendered: RenderedDigest, sender: str, *, resend: bool) -> str:
    """The same for every attempt at one week's digest, a new one only for --resend: should a worker die after
    the server took the message but before the claim was marked sent, the second copy carries the same
    Message-ID, and mail systems that de-duplicate on it (Gmail does) show the digest once."""
    domain = sender.rsplit("@", 1)[-1].rstrip(">") or "localhost"
    if resend:
        return make_msgid(idstring=rendered.name, domain=domain)
    return f"<{rendered.name}@{domain}>"


def send_email(channel: Channel, rendered: RenderedDigest, recipients: list[str], *, resend: bool) -> str | None:
    """Send through Apprise; returns a note on recipients the server refused while taking the rest (the digest
    went out, and sending it again would reach the others twice). Raises DigestNotSent."""
    plugin = email_plugin(channel, recipients)
    plugin.message = compose_message(rendered, sender_of(plugin), recipients, resend=resend)
    target = apprise.Apprise()
    target.add(plugin)
    if not target.notify(body=rendered.text, title=rendered.subject):
        raise plugin.failure or DigestNotSent(f"{channel.label}: Apprise did not send the digest")
    if plugin.refused:
        return "refused: " + "; ".join(f"{address} ({code})" for address, (code, _) in plugin.refused.items())
    return None
