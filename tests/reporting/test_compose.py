"""The docker compose stack and its image, checked as files: no Docker engine runs where the tests run.

`docker compose config` is not part of this module: this machine's docker CLI has no compose plugin
(`docker compose version` fails), so the file is checked by parsing it with PyYAML instead.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

BASE_DIR = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "web", "worker", "beat")
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$")
# A value that comes from the environment: "${NAME:?message}" (required) or "${NAME:-}" (empty default).
REQUIRED = re.compile(r"^\$\{([A-Z0-9_]+):\?[^}]+\}$")
INTERPOLATED_EMPTY = re.compile(r"^\$\{([A-Z0-9_]+):-\}$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((BASE_DIR / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _test(service: dict) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else test


def _command(service: dict) -> list[str]:
    command = service["command"]
    return command.split() if isinstance(command, str) else command


def test_every_service_of_the_stack_is_there(services):
    assert set(services) == {"db", "redis", "migrate", "web", "worker", "beat"}
    assert services["db"]["image"].startswith("postgres:16")
    assert services["redis"]["image"].startswith("redis:7")
    for name in APP_SERVICES:
        assert services[name]["build"] == "."


def test_processes_run_the_right_programs(services):
    assert _command(services["web"])[:2] == ["gunicorn", "reporting.wsgi:application"]
    assert _command(services["worker"])[:4] == ["celery", "-A", "reporting", "worker"]
    assert _command(services["beat"])[:4] == ["celery", "-A", "reporting", "beat"]
    assert _command(services["migrate"]) == ["python", "manage.py", "migrate", "--noinput"]
    assert services["migrate"]["restart"] == "no"  # a one-shot: restarting it would loop forever


def test_health_checks(services):
    assert "pg_isready" in _test(services["db"])
    assert "redis-cli" in _test(services["redis"]) and "ping" in _test(services["redis"])
    web = _test(services["web"])
    assert "http://localhost:8000/healthz" in web
    # The probe's Host header must be allowed, and /healthz must not be redirected to https.
    assert services["web"]["environment"]["ALLOWED_HOSTS"].split(",")[0] == "localhost"
    assert "inspect ping" in _test(services["worker"])


def test_start_order_waits_for_healthy_dependencies(services):
    assert services["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["db"] == {"condition": "service_healthy"}
        assert depends["redis"] == {"condition": "service_healthy"}
        assert depends["migrate"] == {"condition": "service_completed_successfully"}


def test_state_lives_in_named_volumes(compose, services):
    declared = set(compose["volumes"])
    assert declared == {"postgres-data", "redis-data", "beat-schedule"}
    mounts = {name: [v.split(":") for v in service.get("volumes", [])] for name, service in services.items()}
    assert ["postgres-data", "/var/lib/postgresql/data"] in mounts["db"]
    assert ["redis-data", "/data"] in mounts["redis"]
    assert ["beat-schedule", "/var/lib/mir-beat"] in mounts["beat"]
    schedule = _command(services["beat"])[_command(services["beat"]).index("--schedule") + 1]
    assert schedule.startswith("/var/lib/mir-beat/")
    used = {parts[0] for volumes in mounts.values() for parts in volumes}
    assert used == declared


def test_beat_runs_once(services):
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    assert "scale" not in services["beat"]


def test_app_environment_is_production_and_complete(services):
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["MIR_ENV"] == "production"
        assert REQUIRED.match(env["SECRET_KEY"]), "SECRET_KEY must be a required variable, never a default"
        assert REQUIRED.match(env["MIR_ENCRYPTION_KEY"]), "MIR_ENCRYPTION_KEY must be a required variable"
        assert env["DATABASE_URL"].startswith("postgres://") and "@db:5432/" in env["DATABASE_URL"]
        assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        assert env["CACHE_URL"].startswith("redis://redis:6379/")
        assert env["CACHE_URL"] != env["CELERY_BROKER_URL"]
        assert "ALLOWED_HOSTS" in env
        assert "DEBUG" not in env


def test_no_secret_is_hard_coded(services):
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                value = str(value)
                assert REQUIRED.match(value) or INTERPOLATED_EMPTY.match(value), f"{name}.{key} is hard-coded"
    text = (BASE_DIR / "docker-compose.yml").read_text()
    assert not re.search(r"://[^:/\s]+:(?!\$\{)[^@\s]+@", text), "a URL with a literal password"


def test_app_environment_names_only_variables_settings_reads(services):
    source = (BASE_DIR / "reporting" / "settings.py").read_text()
    read = set(re.findall(r"env_(?:str|bool|int|list)\(\s*\"([A-Z0-9_]+)\"", source))
    for name in APP_SERVICES:
        unknown = set(services[name]["environment"]) - read
        assert not unknown, f"{name} sets variables the settings never read: {sorted(unknown)}"


def test_dockerfile():
    text = (BASE_DIR / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install -r requirements.txt" in text
    assert "collectstatic --noinput" in text
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}, "the image must run as a non-root user"
    assert re.search(r'^CMD \["gunicorn", "reporting\.wsgi:application"', text, re.MULTILINE)
    assert "HEALTHCHECK" not in text.replace("No HEALTHCHECK", "")  # worker and beat share the image
    # The build-time key is generated in the build step, never written into the image.
    assert not re.search(r"SECRET_KEY=['\"]?[A-Za-z0-9_-]{20,}", text)


def test_dockerignore_keeps_secrets_and_local_state_out():
    entries = set((BASE_DIR / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", "var"} <= entries
