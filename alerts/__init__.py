"""Decisions and delivery: rules judge observations, the lifecycle turns judgements into alerts and outbox rows,
delivery sends outbox rows through Apprise."""
