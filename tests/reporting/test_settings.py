"""Settings from the environment: production refuses to start without what it needs, bad values name
their variable, and the deployment checklist is clean. Each case runs in a subprocess, so the settings
module is imported afresh with exactly the environment under test.
"""
from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from reporting.checks import check_time_zone

BASE_DIR = Path(__file__).resolve().parents[2]
# Variables this module sets itself; removed from the inherited environment so the machine's own
# values (or another test's) cannot leak in.
_CONTROLLED = {
    "MIR_ENV", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS", "DB_CONN_MAX_AGE", "SECURE_SSL_REDIRECT",
    "BEHIND_TLS_PROXY", "SECURE_HSTS_SECONDS", "CACHE_URL", "MIR_ENCRYPTION_KEY", "DB_SERVER_SIDE_BINDING",
}


def _production(**overrides: str) -> dict[str, str]:
    from cryptography.fernet import Fernet

    env = {
        "MIR_ENV": "production", "SECRET_KEY": secrets.token_urlsafe(48), "ALLOWED_HOSTS": "reports.example.org",
        "MIR_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    env.update(overrides)
    return env


def _manage(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in _CONTROLLED}
    full.update(MIR_VAR_DIR=str(tmp_path / "var"))
    full.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=full, capture_output=True, text=True, timeout=120,
    )


def test_a_generated_secret_key_is_64_characters():
    assert len(_production()["SECRET_KEY"]) == 64


def test_production_deploy_checklist_is_clean(tmp_path):
    result = _manage(tmp_path, "check", "--deploy", "--fail-level", "WARNING", env=_production())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_behind_a_tls_proxy_without_redirect_warns_only_about_the_redirect(tmp_path):
    env = _production(BEHIND_TLS_PROXY="1", SECURE_SSL_REDIRECT="0")
    result = _manage(tmp_path, "check", "--deploy", env=env)
    assert result.returncode == 0, result.stderr
    assert set(re.findall(r"\(([a-z_]+\.[WE]\d{3})\)", result.stdout + result.stderr)) == {"security.W008"}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"MIR_ENV": "production", "ALLOWED_HOSTS": "reports.example.org"}, "MIR_ENV=production needs SECRET_KEY"),
        (_production(SECRET_KEY="short"), "MIR_ENV=production needs SECRET_KEY"),
        (_production(SECRET_KEY="django-insecure-" + "x" * 60), "MIR_ENV=production needs SECRET_KEY"),
        (_production(MIR_ENCRYPTION_KEY=""), "MIR_ENV=production needs MIR_ENCRYPTION_KEY"),
        (_production(DEBUG="1"), "DEBUG must be off when MIR_ENV=production"),
        (_production(ALLOWED_HOSTS=""), "MIR_ENV=production needs ALLOWED_HOSTS"),
        ({"MIR_ENV": "staging"}, "MIR_ENV must be development, test or production, got 'staging'"),
        ({"DB_CONN_MAX_AGE": "abc"}, "DB_CONN_MAX_AGE must be an integer, got 'abc'"),
        ({"DB_CONN_MAX_AGE": "-1"}, "DB_CONN_MAX_AGE must be at least 0"),
        ({"DEBUG": "maybe"}, "DEBUG must be a boolean"),
        ({"MIR_API_MAX_BATCH_ITEMS": "0"}, "MIR_API_MAX_BATCH_ITEMS must be at least 1"),
    ],
    ids=["no-secret", "short-secret", "insecure-secret", "no-encryption-key", "debug", "no-hosts", "unknown-env", "int", "minimum",
         "bool", "api-limit"],
)
def test_bad_configuration_refuses_to_start_and_names_the_variable(tmp_path, env, expected):
    result = _manage(tmp_path, "check", env=env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert expected in result.stderr


def test_the_development_defaults_need_no_environment(tmp_path):
    """A fresh clone: no DATABASE_URL, broker or cache configured gives SQLite and the filesystem broker."""
    env = {k: v for k, v in os.environ.items() if k not in _CONTROLLED | {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(MIR_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="reporting.settings")
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DEBUG, s.CELERY_BROKER_URL, "
        "s.CELERY_BROKER_TRANSPORT_OPTIONS['control_folder'])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3", "True", "filesystem://", str(tmp_path / "var" / "celery" / "control"),
    ]


@pytest.mark.parametrize(("value", "expected"), [(None, "True 5"), ("1", "True 5"), ("0", "None None")])
def test_postgresql_binds_parameters_on_the_server_unless_switched_off(tmp_path, value, expected):
    env = {k: v for k, v in os.environ.items() if k not in _CONTROLLED}
    env.update(MIR_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="reporting.settings",
               DATABASE_URL="postgres://postgres@127.0.0.1:5432/unused")
    if value is not None:
        env["DB_SERVER_SIDE_BINDING"] = value
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "o = s.DATABASES['default'].get('OPTIONS', {}); print(o.get('server_side_binding'), o.get('prepare_threshold'))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


@pytest.mark.django_db
def test_statements_are_prepared_after_five_runs():
    from django.db import connection

    from incidents.models import Detector

    for _ in range(6):
        list(Detector.objects.filter(name="x"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cursor.fetchone()[0] >= 1


def test_time_zone_check_fires_when_use_tz_is_off():
    with override_settings(USE_TZ=False):
        assert [error.id for error in check_time_zone(None)] == ["reporting.E001"]


def test_time_zone_check_fires_when_time_zone_is_not_utc():
    with override_settings(TIME_ZONE="Europe/Paris"):
        assert [error.id for error in check_time_zone(None)] == ["reporting.E002"]


def test_time_zone_check_is_quiet_on_the_real_settings():
    assert check_time_zone(None) == []


def _variables_read_by_settings() -> set[str]:
    source = (BASE_DIR / "reporting" / "settings.py").read_text()
    return set(re.findall(r"env_(?:str|bool|int|list)\(\s*\"([A-Z0-9_]+)\"", source))


def test_every_variable_settings_reads_is_documented():
    names = _variables_read_by_settings()
    assert {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "MIR_ENV"} <= names  # the regex still finds them
    table = (BASE_DIR / "docs" / "operations.md").read_text()
    missing = sorted(name for name in names if f"| `{name}` |" not in table)
    assert not missing, f"docs/operations.md has no table row for {missing}"
