"""The runtime: environment settings, the Celery app and its beat schedule, the CLI, the demo."""
