"""Entry points: named Celery tasks, each a thin shell around a plain function the CLI and tests also call."""
