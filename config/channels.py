"""Turn the `urls:` list of channels.yaml (Apprise's YAML format) into one Apprise target per entry.

We read the list ourselves rather than through apprise.AppriseConfig so that a bad URL is reported with its line,
and so that delivery can address one target at a time and record each attempt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import apprise

from config.loader import YamlDocument
from config.secrets import channel_secrets, remember


@dataclass(frozen=True)
class Channel:
    """One Apprise target. `url` holds secrets: never log it; log `label`."""

    key: str
    service: str
    tags: frozenset[str]
    url: str = field(repr=False)

    @property
    def label(self) -> str:
        return f"{self.service}[{', '.join(sorted(self.tags))}]"

    def with_query(self, **params: str) -> Channel:
        """The same target with query parameters replaced (e.g. the digest's `to=`)."""
        from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

        parts = urlsplit(self.url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        query.update(params)
        url = urlunsplit(parts._replace(query=urlencode(query, safe="@,:/")))
        return Channel(key=channel_key(url), service=self.service, tags=self.tags, url=url)


def channel_key(url: str) -> str:
    """A stable, secret-free identifier for a target: the delivery log keys attempts by it."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def parse_tags(value: object) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(tag.strip() for tag in value.replace(";", ",").split(",") if tag.strip())
    if isinstance(value, list):
        return frozenset(str(tag).strip() for tag in value if str(tag).strip())
    return frozenset()


def entry_url_and_tags(entry: str | dict[str, object]) -> tuple[str, frozenset[str]]:
    if isinstance(entry, str):
        return entry, frozenset()
    ((url, options),) = entry.items()
    tags: frozenset[str] = frozenset()
    option_list = options if isinstance(options, list) else [options]
    for option in option_list:
        if isinstance(option, dict):
            tags |= parse_tags(option.get("tag", option.get("tags")))
    return str(url), tags


def load_channels(
    document: YamlDocument, entries: list[str | dict[str, object]]
) -> tuple[list[Channel], list[str]]:
    channels: list[Channel] = []
    problems: list[str] = []
    for position, entry in enumerate(entries):
        if isinstance(entry, dict) and len(entry) != 1:
            problems.append(document.problem(("urls", position), "each entry is one URL with its options"))
            continue
        url, tags = entry_url_and_tags(entry)
        plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            scheme = url.split("://", 1)[0] if "://" in url else "(none)"
            problems.append(
                document.problem(("urls", position), f"Apprise cannot use this URL (scheme {scheme}://)")
            )
            continue
        service = str(getattr(plugin, "service_name", url.split("://", 1)[0]))
        remember(channel_secrets(url))
        channels.append(Channel(key=channel_key(url), service=service, tags=tags, url=url))
    return channels, problems
