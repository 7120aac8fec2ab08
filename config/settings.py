"""Settings from the environment (never from files in the repo: secrets live here)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VENDORWATCH_", extra="ignore")

    config: Path = Path("config")
    data_dir: Path = Path("var")
    database_url: str | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    # A dead man's switch (healthchecks-style): beat pings it every few minutes; silence means beat is down.
    heartbeat_url: str | None = None
    timezone: str = "UTC"
    # How long a beat that stopped renewing its Redis lock (killed, host gone) keeps a standby beat waiting.
    beat_lock_seconds: int = Field(default=150, ge=5)
    # How long a beat waits for an unreachable Redis before it exits non-zero (0: forever; a supervisor that
    # restarts failed processes makes either choice safe).
    beat_give_up_seconds: int = Field(default=0, ge=0)
    # Retention (the daily `maintenance.purge`, `vendorwatch purge`): what is older goes. Observations, revisions,
    # alerts themselves, feed_file rows and digest runs are kept: they are the record the digest compares against.
    retain_files_days: int = Field(default=400, ge=1)  # archive/ and quarantine/ files
    retain_attempts_days: int = Field(default=400, ge=1)  # delivery_attempt rows
    retain_alert_events_days: int = Field(default=730, ge=1)  # events of alerts resolved longer ago than this
    # The console (`vendorwatch serve`): users as `name:password-hash` entries (`vendorwatch console-user` makes
    # one), separated by newlines or spaces, in the variable or in a file; never in the repo.
    console_users: str | None = None
    console_users_file: Path | None = None
    console_secret_key: str | None = None  # signs the session cookie; random per start when unset
    console_secure_cookie: bool = False  # set true behind HTTPS: the cookie is then never sent over plain HTTP
    console_metrics_token: str | None = None  # when set, /metrics wants `Authorization: Bearer <token>`

    @property
    def inbox(self) -> Path:
        return self.data_dir / "inbox"

    @property
    def archive(self) -> Path:
        return self.data_dir / "archive"

    @property
    def quarantine(self) -> Path:
        return self.data_dir / "quarantine"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.data_dir / 'vendorwatch.sqlite').resolve()}"

    @property
    def embedded_broker(self) -> bool:
        return not self.broker_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    settings = Settings()
    remember_secrets(settings)
    return settings


def remember_secrets(settings: Settings) -> None:
    """The passwords in the service URLs (and the heartbeat URL's token) are masked in every text we write."""
    from config.secrets import remember, url_secrets

    urls = (settings.database_url, settings.broker_url, settings.result_backend)
    remember(value for url in urls for value in url_secrets(url))
    remember(value for value in (settings.console_secret_key, settings.console_metrics_token) if value)
    remember(heartbeat_secrets(settings.heartbeat_url))


def heartbeat_secrets(url: str | None) -> set[str]:
    """A check URL is its own secret (healthchecks.io: /ping/<uuid>): every path segment and query value."""
    from urllib.parse import parse_qsl, urlsplit

    from config.secrets import url_secrets

    if not url:
        return set()
    parts = urlsplit(url)
    segments = {segment for segment in parts.path.split("/") if segment and segment != "ping"}
    return url_secrets(url) | segments | {value for _, value in parse_qsl(parts.query)}
