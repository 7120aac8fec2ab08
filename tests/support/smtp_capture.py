"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it receives.

The server speaks plain SMTP: no STARTTLS, no AUTH.  Apprise's email plugin
defaults to STARTTLS on port 587, so point it at this server with::

    mailto://127.0.0.1:{port}?mode=insecure&from=vendorwatch@localhost&to=a@example.com

* ``mailto://`` (not ``mailtos://``) with ``mode=insecure`` -> ``smtplib.SMTP``
  without ``starttls()``.  ``mailto://`` already defaults to insecure; the mode
  is spelled out because ``mode=starttls``/``ssl`` (or ``mailtos://``) make
  Apprise demand TLS, which this server does not offer, and notify() fails.
* No ``user:password@`` part -> Apprise skips ``login()``, which an
  unauthenticated server would reject anyway.  Without a user Apprise cannot
  derive a sender, so ``from=`` is required: without it ``Apprise.add()``
  rejects the URL.
* The host of the URL is the SMTP server (no ``smtp=`` needed) and the explicit
  ``:{port}`` overrides the per-mode default (25 for insecure).
* ``to=`` is the recipient; several can be given comma separated, or as path
  segments: ``mailto://127.0.0.1:{port}/a@example.com/b@example.com?...``.

Usage::

    with CapturingSMTPServer() as smtp:
        ...  # code under test sends mail to 127.0.0.1:smtp.port
        [captured] = smtp.wait_for(1)
        assert captured.message["To"] == "a@example.com"
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller

# Binding port 0 and then handing the number to aiosmtpd leaves a small window in
# which another process can take the port, so a few fresh ports are tried.
_START_ATTEMPTS = 5


@dataclass(frozen=True)
class CapturedMessage:
    """A delivered message, parsed with the modern email API, plus its SMTP envelope."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes


class _CapturingHandler:
    """aiosmtpd handler: accept every message and hand it to the owner."""

    def __init__(self, owner: CapturingSMTPServer) -> None:
        self._owner = owner

    # aiosmtpd dispatches on the upper-case SMTP verb, hence the name.
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self._owner.record(
            CapturedMessage(
                message=message,
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                raw=raw,
            )
        )
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class CapturingSMTPServer:
    """Plain SMTP server on 127.0.0.1:<ephemeral> recording each message."""

    def __init__(self) -> None:
        self._messages: list[CapturedMessage] = []
        self._changed = threading.Condition()
        self._controller: Controller | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> CapturingSMTPServer:
        if self._controller is not None:
            raise RuntimeError("CapturingSMTPServer is already running")
        last_error: Exception | None = None
        for _ in range(_START_ATTEMPTS):
            try:
                self._controller = self._start_controller(_free_port())
                return self
            except OSError as error:  # port taken between probe and bind
                last_error = error
        raise RuntimeError(f"could not start SMTP server on 127.0.0.1: {last_error!r}")

    def _start_controller(self, port: int) -> Controller:
        # server_hostname avoids aiosmtpd calling socket.getfqdn(), which can hang on
        # machines with slow or broken DNS.
        controller = Controller(
            _CapturingHandler(self), hostname="127.0.0.1", port=port, server_hostname="localhost"
        )
        try:
            controller.start()
        except BaseException:
            controller.stop(no_assert=True)
            # A failed bind returns before the loop ever runs, so nothing else closes it.
            if not controller.loop.is_running() and not controller.loop.is_closed():
                controller.loop.close()
            raise
        return controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> CapturingSMTPServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("CapturingSMTPServer is not running; use it as a context manager")
        return int(self._controller.port)

    # -- recording -----------------------------------------------------------------
    def record(self, captured: CapturedMessage) -> None:
        with self._changed:
            self._messages.append(captured)
            self._changed.notify_all()

    @property
    def messages(self) -> list[CapturedMessage]:
        with self._changed:
            return list(self._messages)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[CapturedMessage]:
        """Block until at least ``count`` messages arrived; return all of them."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._messages) >= count, timeout=timeout)
            got = list(self._messages)
        if not arrived:
            summary = [(m.message["Subject"], m.rcpt_tos) for m in got]
            raise AssertionError(f"expected {count} message(s) within {timeout}s, got {len(got)}: {summary}")
        return got
