"""Pick up edited configuration files in a running process, validated first.

A long-running process (each prefork child of a worker, and the parent that forks them) holds one Config.
`ConfigWatch.check()`, called when a task starts, asks whether the files changed: a stat of each (at most every
CHECK_SECONDS), and only when a stat moved, a hash of the contents, so a `touch` reloads nothing. Files are read
only once they have held still for SETTLE_SECONDS, as the inbox does with uploads, so a file an editor is still
writing is neither refused nor taken half-written. Changed contents are loaded with `load_config`, which
validates every file before anything is used: a valid version replaces the one in use; a broken one is refused,
the one in use stays, and `check` returns a Refusal naming each file and line, once per broken version in this
process, for the caller to tell the operator.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config import Config, ConfigError, config_file, load_config

log = logging.getLogger(__name__)

CONFIG_FILES = ("practices.yaml", "kpis.yaml", "channels.yaml", "surveys.yaml")
# Tasks start many times a second; four stats a second per process are enough to notice an edit at once.
CHECK_SECONDS = 1.0
# A file changed this recently may still be being written (an editor saving in place, a copy), and may change again
# within the same timestamp tick keeping its size, unseen by a stat: it is left for a later check.
SETTLE_SECONDS = 2.0

Stamp = tuple[str, int, int, int, int]  # path, size, mtime_ns, ctime_ns, inode


@dataclass(frozen=True)
class Refusal:
    """A changed configuration that did not validate; `digest` identifies that broken version of the files."""

    digest: str
    problems: list[str]


def config_paths(directory: Path) -> list[Path]:
    return [config_file(directory, name) for name in CONFIG_FILES]


def stamps_of(directory: Path, now: float) -> tuple[Stamp, ...] | None:
    """The files' stats, or None while one is missing (an editor between delete and write) or not settled."""
    stamps = []
    for path in config_paths(directory):
        try:
            stat = os.stat(path)
        except OSError:
            return None
        if now - stat.st_mtime < SETTLE_SECONDS:
            return None
        stamps.append((str(path), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino))
    return tuple(stamps)


def digest_of(directory: Path) -> str:
    """A hash of what the files say now (a missing file counts as its own content)."""
    digest = hashlib.sha256()
    for path in config_paths(directory):
        try:
            content = path.read_bytes()
        except OSError:
            content = b"\0missing"
        digest.update(f"{path}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


class ConfigWatch:
    """The configuration in use by this process. Call it for the Config; `check()` at a task's start reloads."""

    def __init__(self, directory: Callable[[], Path]) -> None:
        self.directory_setting = directory
        self.cache_clear()

    def cache_clear(self) -> None:
        """Forget the configuration in use: the next call loads the files again (tests, a changed setting)."""
        self.config: Config | None = None
        self.directory: Path | None = None
        self.stamps: tuple[Stamp, ...] | None = None
        self.digest: str | None = None
        self.refused: str | None = None
        self.checked_at = 0.0

    def __call__(self) -> Config:
        directory = self.directory_setting()
        if self.config is None or directory != self.directory:
            self.load(directory)
        assert self.config is not None
        return self.config

    def load(self, directory: Path) -> None:
        """The first load: nothing to keep, so a broken configuration raises ConfigError."""
        stamps, digest = stamps_of(directory, time.time()), digest_of(directory)
        config = load_config(directory)
        self.config, self.directory, self.stamps, self.digest, self.refused = config, directory, stamps, digest, None
        self.checked_at = time.monotonic()

    def check(self) -> Refusal | None:
        """Reload the files if they changed and validate; a Refusal the first time this process sees a broken
        version of them. Nothing happens before the first load (it raises instead)."""
        now = time.monotonic()
        if self.config is None or self.directory is None or now - self.checked_at < CHECK_SECONDS:
            return None
        self.checked_at = now
        # Stat before reading: an edit landing between the two moves the stat again, so the next check rereads.
        stamps = stamps_of(self.directory, time.time())
        if stamps is None or stamps == self.stamps:
            return None
        self.stamps = stamps
        digest = digest_of(self.directory)
        if digest in (self.digest, self.refused):
            return None
        return self.reload(self.directory, digest)

    def reload(self, directory: Path, digest: str) -> Refusal | None:
        try:
            config = load_config(directory)
        except ConfigError as exc:
            self.refused = digest
            return Refusal(digest=digest, problems=exc.problems)
        self.config, self.digest, self.refused = config, digest, None
        log.info("configuration reloaded from %s", directory)
        return None

    def check_again(self) -> None:
        """Telling the operator about a refusal failed (database down): refuse that version again next time."""
        self.refused, self.stamps = None, None
