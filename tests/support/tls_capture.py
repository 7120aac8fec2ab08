"""A real HTTPS server on 127.0.0.1 that records every request it receives.

The certificate comes from a throw-away ``trustme`` CA, so a client only
trusts the server when told to (for ``requests``, and therefore Apprise's
``workflows://`` plugin, by setting ``REQUESTS_CA_BUNDLE`` to
``server.ca_bundle_path``).  That keeps TLS verification switched on in tests,
exactly as in production.

Usage::

    with CapturingHTTPSServer(responses=[500, 200]) as server:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(server.ca_bundle_path))
        ...  # code under test posts to f"https://127.0.0.1:{server.port}/..."
        [first, second] = server.wait_for(2)

``responses`` is either a list of status codes answered in order (the last
one repeats once the list is used up, so ``[500, 200]`` means "fail once,
then succeed") or a callable that receives the :class:`CapturedRequest` and
returns a status code or a :class:`CannedResponse`.  The default is 200 with
the JSON body ``{}``.
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import trustme

# A client that connects and then stalls must not pin a server thread forever.
_CONNECTION_TIMEOUT_S = 10.0
_JSON_HEADERS: dict[str, str] = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class CapturedRequest:
    """One HTTP request as the server saw it, after TLS was terminated."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup, because HTTP header names are."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)


@dataclass(frozen=True)
class CannedResponse:
    """What the server answers; the default mimics a webhook that accepted the call."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: dict(_JSON_HEADERS))


Responder = Callable[[CapturedRequest], CannedResponse | int]


class _StatusSequence:
    """Answers with the given statuses in order, repeating the last one."""

    def __init__(self, statuses: Sequence[int]) -> None:
        if not statuses:
            raise ValueError("responses needs at least one status code")
        self._statuses = list(statuses)
        self._next = 0
        self._lock = threading.Lock()

    def __call__(self, _request: CapturedRequest) -> CannedResponse:
        # Concurrent requests must each consume exactly one entry.
        with self._lock:
            status = self._statuses[min(self._next, len(self._statuses) - 1)]
            self._next += 1
        return CannedResponse(status=status)


def _as_responder(responses: Responder | Sequence[int] | None) -> Responder:
    if responses is None:
        return lambda _request: CannedResponse()
    if callable(responses):
        return responses
    return _StatusSequence(responses)


class _Handler(BaseHTTPRequestHandler):
    server: _TLSHTTPServer

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_chunked_body(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                # Consume trailers up to the blank line that ends the message.
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _capture(self) -> CapturedRequest:
        url = urlsplit(self.path)
        return CapturedRequest(
            method=self.command,
            path=url.path,
            query=parse_qs(url.query, keep_blank_values=True),
            headers={key: value for key, value in self.headers.items()},
            body=self._read_body(),
        )

    def _send(self, response: CannedResponse) -> None:
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _handle(self) -> None:
        request = self._capture()
        # Record before answering so a client that saw the response can rely on wait_for().
        self.server.capture.record(request)
        answer = self.server.capture.responder(request)
        self._send(answer if isinstance(answer, CannedResponse) else CannedResponse(status=answer))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are asserted on via .requests; access logs would only add noise.
        return


class _TLSHTTPServer(ThreadingHTTPServer):
    """Does the TLS handshake in the per-connection thread, not in accept().

    Wrapping the listening socket would run handshakes on the serve_forever
    thread, so one stalled or rejected client would block every other one.
    """

    daemon_threads = True

    def __init__(self, capture: CapturingHTTPSServer, context: ssl.SSLContext) -> None:
        self.capture = capture
        self.ssl_context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_CONNECTION_TIMEOUT_S)
        try:
            tls_socket = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as error:
            # A client rejecting our certificate is an expected test outcome; keep it for assertions.
            self.capture.record_tls_failure(error)
            return
        try:
            _Handler(tls_socket, client_address, self)
        finally:
            tls_socket.close()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def _write_ca_bundle(ca: trustme.CA) -> Path:
    descriptor, name = tempfile.mkstemp(prefix="vendorwatch-test-ca-", suffix=".pem")
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(ca.cert_pem.bytes())
    return Path(name)


class CapturingHTTPSServer:
    """Threaded HTTPS server on 127.0.0.1:<ephemeral> that records requests."""

    def __init__(self, responses: Responder | Sequence[int] | None = None) -> None:
        self.ca = trustme.CA()
        self.responder: Responder = _as_responder(responses)
        self._requests: list[CapturedRequest] = []
        self._tls_failures: list[BaseException] = []
        self._changed = threading.Condition()
        self._server: _TLSHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._ca_bundle_path: Path | None = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> CapturingHTTPSServer:
        if self._server is not None:
            raise RuntimeError("CapturingHTTPSServer is already running")
        self._ca_bundle_path = _write_ca_bundle(self.ca)
        self._server = _TLSHTTPServer(self, _server_context(self.ca))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._ca_bundle_path is not None:
            self._ca_bundle_path.unlink(missing_ok=True)
            self._ca_bundle_path = None

    def __enter__(self) -> CapturingHTTPSServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._running_server().server_address[1])

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_bundle_path(self) -> Path:
        """PEM file with the CA certificate, for REQUESTS_CA_BUNDLE / SSL_CERT_FILE."""
        if self._ca_bundle_path is None:
            raise RuntimeError("CapturingHTTPSServer is not running; use it as a context manager")
        return self._ca_bundle_path

    def _running_server(self) -> _TLSHTTPServer:
        if self._server is None:
            raise RuntimeError("CapturingHTTPSServer is not running; use it as a context manager")
        return self._server

    # -- recording (called from handler threads) -----------------------------------
    def record(self, request: CapturedRequest) -> None:
        with self._changed:
            self._requests.append(request)
            self._changed.notify_all()

    def record_tls_failure(self, error: BaseException) -> None:
        with self._changed:
            self._tls_failures.append(error)
            self._changed.notify_all()

    # -- assertions ----------------------------------------------------------------
    @property
    def requests(self) -> list[CapturedRequest]:
        with self._changed:
            return list(self._requests)

    @property
    def tls_failures(self) -> list[BaseException]:
        """Handshakes that failed, e.g. because the client did not trust the CA."""
        with self._changed:
            return list(self._tls_failures)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[CapturedRequest]:
        """Block until at least ``count`` requests arrived; return all of them."""
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._requests) >= count, timeout=timeout)
            got = list(self._requests)
        if not arrived:
            summary = [f"{r.method} {r.path}" for r in got]
            raise AssertionError(
                f"expected {count} request(s) within {timeout}s, got {len(got)}: {summary}; "
                f"TLS handshake failures: {self.tls_failures!r}"
            )
        return got

    def wait_for_tls_failures(self, count: int = 1, timeout: float = 10.0) -> list[BaseException]:
        """Block until ``count`` handshakes failed.

        The client gives up as soon as it rejects the certificate, so its error can
        surface before the server thread has recorded its side of the failure.
        """
        with self._changed:
            arrived = self._changed.wait_for(lambda: len(self._tls_failures) >= count, timeout=timeout)
            got = list(self._tls_failures)
        if not arrived:
            raise AssertionError(
                f"expected {count} TLS handshake failure(s) within {timeout}s, got {got!r}; "
                f"requests: {[f'{r.method} {r.path}' for r in self.requests]}"
            )
        return got
