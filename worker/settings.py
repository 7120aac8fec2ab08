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
    timezone: str = "UTC"
    # How long a beat that stopped renewing its Redis lock (killed, host gone) keeps a standby beat waiting.
    beat_lock_seconds: int = Field(default=150, ge=5)
    # How long a beat waits for an unreachable Redis before it exits non-zero (0: forever; a supervisor that
    # restarts failed processes makes either choice safe).
    beat_give_up_seconds: int = Field(default=0, ge=0)

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
    return Settings()
