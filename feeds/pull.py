"""HTTPS pull: fetch a vendor's feed from its `pull.url` into inbox/<practice>/<vendor>/, once per new content.

The auth header's value (a token) comes from the environment variable named by `pull.auth_env`, never from a
file. It is never logged and never stored: every error text that could quote it is scrubbed before it reaches a
log line, an exception or a `feed_pull` row.

A fetched body is written as `pull-<UTC timestamp>.<csv|json>` the way uploaders write: to a `.part` name first,
then renamed, so the inbox never shows half a file. If its SHA-256 equals the last successful pull's, nothing is
written (status "unchanged"): a daily pull of a feed that did not change leaves no files. Every attempt is one
`feed_pull` row; the caller ingests a fetched file through the usual path (validation, archive, quarantine).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from config import Config, Practice, Vendor
from config.secrets import redact
from storage.models import FeedPull

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30
# A feed of aggregate KPIs is small; a body this large is a misconfigured URL, not a feed.
MAX_BYTES = 50 * 1024 * 1024
MAX_ERROR_CHARS = 500
USER_AGENT = "vendorwatch feed pull"


class PullFailed(Exception):
    """The pull did not produce the feed (HTTP status, connection, TLS): worth retrying later."""

    def __init__(self, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class PullMisconfigured(PullFailed):
    """The pull cannot work until an operator acts (no `pull:` entry, token variable unset): no retry helps."""


@dataclass(frozen=True)
class PullOutcome:
    practice: str
    vendor: str
    status: str  # fetched | unchanged | failed
    http_status: int | None = None
    sha256: str | None = None
    path: Path | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "practice": self.practice,
            "vendor": self.vendor,
            "status": self.status,
            "http_status": self.http_status,
            "sha256": self.sha256,
            "path": str(self.path) if self.path is not None else None,
            "error": self.error,
        }


def pull_targets(config: Config) -> list[tuple[Practice, Vendor]]:
    """Every (practice, vendor) with a `pull:` entry, in configuration order."""
    return [(practice, vendor) for practice in config.practices for vendor in practice.vendors if vendor.pull]


def pull_due(
    config: Config,
    inbox: Path,
    session: Session,
    now: dt.datetime,
    *,
    http: requests.Session | None = None,
) -> list[PullOutcome]:
    """Pull every vendor that has `pull:` configured; one vendor's failure does not stop the others."""
    outcomes = []
    for practice, vendor in pull_targets(config):
        try:
            outcomes.append(pull_vendor(practice, vendor, inbox, session, now, http=http))
        except PullFailed as exc:
            outcomes.append(PullOutcome(practice.id, vendor.id, "failed", http_status=exc.http_status, error=str(exc)))
    return outcomes


def pull_vendor(
    practice: Practice,
    vendor: Vendor,
    inbox: Path,
    session: Session,
    now: dt.datetime,
    *,
    http: requests.Session | None = None,
) -> PullOutcome:
    """GET the vendor's feed; write it to the inbox unless the bytes equal the last successful pull's.

    The attempt's `feed_pull` row is committed before this returns or raises PullFailed, so a caller that
    rolls back on the exception (session_scope does) still keeps the record of the failure."""
    source = vendor.pull
    if source is None:
        raise PullMisconfigured(f"{practice.id}/{vendor.id} has no pull: entry in practices.yaml")
    now = now.astimezone(dt.UTC)
    token = header_value(source.auth_env)
    try:
        if token is None and source.auth_env is not None:
            raise PullMisconfigured(
                f"environment variable {source.auth_env} is not set (it holds the {source.auth_header} header "
                f"for {practice.id}/{vendor.id})"
            )
        headers = {"User-Agent": USER_AGENT, "Accept": "text/csv, application/json;q=0.9, */*;q=0.5"}
        if token is not None:
            headers[source.auth_header] = token
        status, content_type, body = fetch(source.url, headers, http)
    except PullFailed as exc:
        message = scrub(str(exc), token)
        record(session, practice, vendor, now, "failed", http_status=exc.http_status, error=message)
        log.warning("pull %s/%s failed: %s", practice.id, vendor.id, message)
        raise type(exc)(message, exc.http_status) from None

    sha256 = hashlib.sha256(body).hexdigest()
    if sha256 == last_pulled_sha256(session, practice.id, vendor.id):
        record(session, practice, vendor, now, "unchanged", http_status=status, sha256=sha256)
        log.info("pull %s/%s: unchanged (%d bytes)", practice.id, vendor.id, len(body))
        return PullOutcome(practice.id, vendor.id, "unchanged", http_status=status, sha256=sha256)

    suffix = file_suffix(content_type, source.url)
    path = write_atomically(inbox / practice.id / vendor.id, f"pull-{now:%Y%m%dT%H%M%SZ}", suffix, sha256, body)
    record(session, practice, vendor, now, "fetched", http_status=status, sha256=sha256, file_name=path.name)
    log.info("pull %s/%s: fetched %s (%d bytes)", practice.id, vendor.id, path.name, len(body))
    return PullOutcome(practice.id, vendor.id, "fetched", http_status=status, sha256=sha256, path=path)


def header_value(auth_env: str | None) -> str | None:
    """The token from the environment; surrounding whitespace (a trailing newline from a file) is dropped."""
    if auth_env is None:
        return None
    value = os.environ.get(auth_env, "").strip()
    return value or None


def fetch(url: str, headers: dict[str, str], http: requests.Session | None) -> tuple[int, str, bytes]:
    """(status, content type, body) of a 200 answer; anything else raises PullFailed.

    TLS is verified (REQUESTS_CA_BUNDLE names a private CA). Redirects are not followed: requests would carry a
    custom auth header to whatever host the redirect names."""
    client = http or requests.Session()
    try:
        with client.get(
            url, headers=headers, timeout=TIMEOUT_SECONDS, verify=True, allow_redirects=False, stream=True
        ) as response:
            if response.status_code != 200:
                detail = (
                    "redirect not followed; set pull.url to the final address"
                    if response.is_redirect
                    else (response.reason or "unexpected answer")
                )
                raise PullFailed(f"HTTP {response.status_code} from {safe_url(url)}: {detail}", response.status_code)
            body = read_limited(response)
            return response.status_code, response.headers.get("Content-Type", ""), body
    except requests.exceptions.SSLError as exc:
        raise PullFailed(f"TLS error talking to {safe_url(url)}: {exc}") from None
    except requests.exceptions.Timeout:
        raise PullFailed(f"no answer from {safe_url(url)} within {TIMEOUT_SECONDS} s") from None
    except requests.exceptions.ConnectionError as exc:
        raise PullFailed(f"cannot connect to {safe_url(url)}: {exc}") from None
    except requests.exceptions.InvalidHeader:
        # Its message quotes the header value: the token. Say what is wrong without it.
        raise PullFailed(
            f"a request header for {safe_url(url)} holds a newline or control character; check the auth variable"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise PullFailed(f"request to {safe_url(url)} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if http is None:
            client.close()


def read_limited(response: Any) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=1 << 16):
        size += len(chunk)
        if size > MAX_BYTES:
            raise PullFailed(f"body larger than {MAX_BYTES} bytes", response.status_code)
        chunks.append(chunk)
    return b"".join(chunks)


def safe_url(url: str) -> str:
    """The URL without user info or query string, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def scrub(message: str, token: str | None) -> str:
    if token:
        message = message.replace(token, "[redacted]").replace(repr(token)[1:-1], "[redacted]")
        # A "Bearer <secret>" value: the secret alone may be quoted too.
        for part in token.split():
            if len(part) >= 8:
                message = message.replace(part, "[redacted]")
    return redact(message)[:MAX_ERROR_CHARS]


def file_suffix(content_type: str, url: str) -> str:
    """csv or json, by Content-Type when it says which, else by the URL's suffix; CSV is the canonical default."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("application/json", "text/json") or media.endswith("+json"):
        return "json"
    if media in ("text/csv", "application/csv", "text/comma-separated-values"):
        return "csv"
    path = urlsplit(url).path.lower()
    return "json" if path.endswith(".json") else "csv"


def write_atomically(folder: Path, stem: str, suffix: str, sha256: str, body: bytes) -> Path:
    """Write to <name>.part, flush to disk, then rename: the inbox (and its watcher) never sees a partial file."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{stem}.{suffix}"
    if target.exists():  # two different bodies within one second
        target = folder / f"{stem}-{sha256[:12]}.{suffix}"
    part = target.with_name(target.name + ".part")
    try:
        with part.open("wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return target


def last_pulled_sha256(session: Session, practice_id: str, vendor_id: str) -> str | None:
    """The SHA-256 of the last successful pull (fetched or unchanged) of this vendor."""
    query = (
        select(FeedPull.sha256)
        .where(
            FeedPull.practice_id == practice_id,
            FeedPull.vendor_id == vendor_id,
            FeedPull.status.in_(("fetched", "unchanged")),
        )
        .order_by(FeedPull.id.desc())
        .limit(1)
    )
    return session.scalars(query).first()


def record(
    session: Session,
    practice: Practice,
    vendor: Vendor,
    now: dt.datetime,
    status: str,
    *,
    http_status: int | None = None,
    sha256: str | None = None,
    error: str | None = None,
    file_name: str | None = None,
) -> None:
    session.add(
        FeedPull(
            practice_id=practice.id,
            vendor_id=vendor.id,
            attempted_at=now,
            status=status,
            http_status=http_status,
            sha256=sha256,
            error=error,
            file_name=file_name,
        )
    )
    session.commit()
