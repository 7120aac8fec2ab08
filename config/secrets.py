"""Keep configured secrets out of every text vendorwatch writes: log lines, error messages, `--json`, database rows.

Secrets reach the process from the environment only (database and broker URLs, channel URLs expanded in
channels.yaml, pull tokens, the heartbeat URL). Whoever reads one registers its secret parts here with `remember`,
and `redact` replaces each with '***'. Libraries log what they were given (urllib3 logs each request line with its
query, so a Teams Workflows `sig=`; Apprise's errors quote target URLs), so the same redaction runs as a
logging.Filter on the handlers (`install`) and over error texts before they are stored. A generic pass also masks
URL passwords and signature-like query values that were never registered.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import apprise

MASK = "***"
# Shorter values (a port, "1.0") would mask harmless text everywhere; no real token is this short. A shorter
# password is still masked where it sits in a URL (URL_PASSWORD below).
MIN_SECRET_LENGTH = 6
SECRET_QUERY_NAMES = r"sig|signature|token|access_token|api[_-]?key|apikey|key|secret|password|pass|pwd|auth"
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/?#@\s'\"]*:)(?P<secret>[^/?#@\s'\"]+)(?=@)", re.I)
QUERY_SECRET = re.compile(rf"(?P<head>[?&;](?:{SECRET_QUERY_NAMES})=)(?P<secret>[^&#\s'\"]+)", re.I)
BEARER = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token)\s+)(?P<secret>[A-Za-z0-9._~+/=-]{8,})")

_secrets: set[str] = set()
_lock = threading.Lock()
_pattern: re.Pattern[str] | None = None


def remember(values: Iterable[str | None]) -> None:
    """Register secret values (and their URL-quoted forms) to be masked from now on."""
    global _pattern
    fresh = {form for value in values if value for form in forms_of(value.strip())}
    fresh = {value for value in fresh if len(value) >= MIN_SECRET_LENGTH}
    with _lock:
        if fresh - _secrets:
            _secrets.update(fresh)
            _pattern = None


def forms_of(value: str) -> set[str]:
    """A secret as it may appear: itself, URL-quoted or unquoted, and each word of a 'Bearer <token>' value."""
    forms = {value, unquote(value), quote(value, safe=""), quote(value, safe="/:")}
    forms |= {word for word in value.split() if word not in ("Bearer", "Basic", "Token")}
    return forms


def url_secrets(url: str | None) -> set[str]:
    """The secret parts of a URL: its password and its signature-like query values."""
    if not url or "://" not in url:
        return set()
    parts = urlsplit(url)
    found = {parts.password} if parts.password else set()
    secret_names = re.compile(rf"^(?:{SECRET_QUERY_NAMES})$", re.I)
    found |= {value for name, value in parse_qsl(parts.query) if secret_names.match(name)}
    return {value for value in found if value}


def channel_secrets(url: str) -> set[str]:
    """What Apprise itself marks private in a channel URL (a Slack token, a Workflows signature, an SMTP
    password), plus the URL's generic secrets."""
    found = url_secrets(url)
    plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
    if plugin is None:
        return found
    specs = {**getattr(plugin, "template_tokens", {}), **getattr(plugin, "template_args", {})}
    for name, spec in specs.items():
        if not (isinstance(spec, dict) and spec.get("private")):
            continue
        value = getattr(plugin, str(spec.get("map_to", name)), None)
        values = value if isinstance(value, list | tuple | set) else [value]
        found |= {item for item in values if isinstance(item, str) and item}
    return found


def current_pattern() -> re.Pattern[str] | None:
    global _pattern
    with _lock:
        if _pattern is None and _secrets:
            # Longest first, so a secret that contains another is masked whole.
            alternatives = sorted(_secrets, key=len, reverse=True)
            _pattern = re.compile("|".join(re.escape(value) for value in alternatives))
        return _pattern


def redact(text: str) -> str:
    """The text with every registered secret, URL password, signature-like query value and bearer token masked."""
    pattern = current_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for generic in (URL_PASSWORD, QUERY_SECRET, BEARER):
        text = generic.sub(lambda match: match["head"] + MASK, text)
    return text


def redact_optional(text: str | None) -> str | None:
    return None if text is None else redact(text)


class RedactingFilter(logging.Filter):
    """Formats a record's message (and traceback) once, masked; every handler after it prints the masked text."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of `logger` (default: root) that lacks it. Called again after Celery
    sets up its own handlers."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(existing, RedactingFilter) for existing in handler.filters):
            handler.addFilter(RedactingFilter())
