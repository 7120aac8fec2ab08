"""What `vendorwatch worker` does before Celery starts: a node name when given one, Apprise's plugins imported."""

from __future__ import annotations

import subprocess
import sys

from worker.cli import worker_argv

LOAD_AND_COUNT = """
import sys
from alerts.delivery import load_channel_plugins
before = sum(1 for name in sys.modules if name.startswith("apprise.plugins."))
load_channel_plugins()
after = sum(1 for name in sys.modules if name.startswith("apprise.plugins."))
print(before, after)
"""


def test_a_worker_can_be_given_its_own_node_name() -> None:
    assert worker_argv("INFO", 2, False, None) == ["worker", "--loglevel=INFO", "--concurrency=2"]
    assert worker_argv("INFO", 1, True, "billing@%h")[-2:] == ["--hostname=billing@%h", "--beat"]


def test_channel_plugins_are_imported_before_the_first_task() -> None:
    """In a fresh interpreter (this one may have loaded them already): none before, all of them after."""
    result = subprocess.run([sys.executable, "-c", LOAD_AND_COUNT], capture_output=True, text=True, check=True)
    before, after = map(int, result.stdout.split())
    assert before < 5 < 100 < after
