"""`vendorwatch demo` run in a fresh folder as a user runs it, and what it left there."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import subprocess_env
from tests.worker_process import BIN

TIMEOUT_S = 120


@dataclass(frozen=True)
class DemoRun:
    folder: Path
    result: subprocess.CompletedProcess[str]
    seconds: float

    @property
    def out(self) -> Path:
        return self.folder / "out"

    @property
    def stdout_words(self) -> str:
        """stdout with the console's line wrapping undone."""
        return " ".join(self.result.stdout.split())


def run_demo(folder: Path, *options: str) -> DemoRun:
    folder.mkdir(parents=True, exist_ok=True)
    env = subprocess_env({})
    assert not [name for name in env if name.startswith("VENDORWATCH_")]
    started = time.monotonic()
    result = subprocess.run(
        [str(BIN / "vendorwatch"), *options, "demo"],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    return DemoRun(folder, result, time.monotonic() - started)
