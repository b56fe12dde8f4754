"""A real Celery worker (and beat) against the real Redis broker and the PostgreSQL test database.

The worker is a separate process: it sees only what the test committed, hence ``transactional_db``,
and it is told the test database's name through DATABASE_URL. Each test uses its own queue, so a
stale message left in the broker by an earlier run cannot satisfy (or disturb) this one.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from incidents.models import IdempotencyKey
from reporting.celery import app as celery_app
from reporting.devstack_processes import Supervisor
from tests.conftest import make_detector

pytestmark = pytest.mark.e2e

BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
BASE_DIR = Path(settings.BASE_DIR)
DEADLINE_SECONDS = 60.0

# Starts celery beat on the project's app with the schedule replaced by one fast entry. Values set on
# app.conf take precedence over the Django settings the app loads.
BEAT_SCRIPT = """
import os, sys
from reporting.celery import app
app.conf.beat_schedule = {
    "e2e-purge": {"task": "incidents.purge_idempotency_keys", "schedule": 1.0,
                  "options": {"queue": os.environ["E2E_QUEUE"]}},
}
sys.exit(app.start(["beat", "--schedule", sys.argv[1], "--loglevel", "INFO"]) or 0)
"""


class Transcript:
    """A thread-safe text sink for the supervisor: what the processes printed, for waits and failures."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._lines.append(text)

    def flush(self) -> None:
        pass

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)


def _test_database_url() -> str:
    db = connection.settings_dict
    assert connection.vendor == "postgresql", "the worker e2e tests need PostgreSQL: run them with `make test`"
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    return f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


def _child_env(queue: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MIR_ENV": "test", "E2E_QUEUE": queue}
    env.update(DATABASE_URL=_test_database_url(), CELERY_BROKER_URL=BROKER_URL)
    return env


def _start_worker(supervisor: Supervisor, queue: str) -> None:
    argv = [
        sys.executable, "-m", "celery", "-A", "reporting", "worker", "--queues", queue,
        "--hostname", f"{queue}@%h", "--concurrency", "1", "--without-mingle", "--without-gossip",
        "--loglevel", "INFO",
    ]
    supervisor.start("worker", argv, env=_child_env(queue), cwd=str(BASE_DIR))


def _wait_for(condition, what: str, supervisor: Supervisor, transcript: Transcript) -> None:  # noqa: ANN001
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if condition():
            return
        dead = supervisor.first_exited()
        if dead is not None:
            pytest.fail(f"{dead.name} exited with {dead.process.returncode} while waiting for {what}:\n{transcript.text()}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {DEADLINE_SECONDS:.0f} s waiting for {what}:\n{transcript.text()}")


def _keys(detector) -> tuple[IdempotencyKey, IdempotencyKey]:  # noqa: ANN001
    now = timezone.now()
    common = {"detector": detector, "request_fingerprint": "0" * 64, "response_status": 201, "response_body": {}}
    expired = IdempotencyKey.objects.create(key="expired", expires_at=now - timedelta(hours=1), **common)
    fresh = IdempotencyKey.objects.create(key="fresh", expires_at=now + timedelta(hours=47), **common)
    return expired, fresh


def test_beat_schedule_names_registered_tasks():
    celery_app.loader.import_default_modules()
    for entry, spec in settings.CELERY_BEAT_SCHEDULE.items():
        assert spec["task"] in celery_app.tasks, f"beat entry {entry!r} names an unregistered task {spec['task']!r}"
        assert spec["schedule"] > 0


def test_worker_purges_expired_idempotency_keys(transactional_db):
    detector, _ = make_detector("e2e-worker")
    expired, fresh = _keys(detector)
    queue = f"e2e-{uuid.uuid4().hex[:12]}"
    transcript = Transcript()
    supervisor = Supervisor(out=transcript, stop_timeout=15)
    try:
        _start_worker(supervisor, queue)
        _wait_for(lambda: " ready." in transcript.text(), "the worker to be ready", supervisor, transcript)
        with celery_app.connection_for_write(BROKER_URL) as broker:
            celery_app.send_task("incidents.purge_idempotency_keys", queue=queue, connection=broker)
        _wait_for(lambda: not IdempotencyKey.objects.filter(pk=expired.pk).exists(),
                  "the expired key to be purged", supervisor, transcript)
        _wait_for(lambda: "succeeded" in transcript.text(), "the task to report success", supervisor, transcript)
    finally:
        supervisor.stop_all()
    assert IdempotencyKey.objects.filter(pk=fresh.pk).exists(), "a key that has not expired was purged"
    assert "incidents.purge_idempotency_keys" in transcript.text()
    assert all(child.process.returncode is not None for child in supervisor.children)


def test_beat_schedules_the_purge_and_the_worker_runs_it(transactional_db, tmp_path):
    detector, _ = make_detector("e2e-beat")
    expired, fresh = _keys(detector)
    queue = f"e2e-{uuid.uuid4().hex[:12]}"
    transcript = Transcript()
    supervisor = Supervisor(out=transcript, stop_timeout=15)
    try:
        _start_worker(supervisor, queue)
        beat = [sys.executable, "-c", BEAT_SCRIPT, str(tmp_path / "celerybeat-schedule")]
        supervisor.start("beat", beat, env=_child_env(queue), cwd=str(BASE_DIR))
        _wait_for(lambda: "Sending due task e2e-purge" in transcript.text(), "beat to send the task",
                  supervisor, transcript)
        _wait_for(lambda: not IdempotencyKey.objects.filter(pk=expired.pk).exists(),
                  "the expired key to be purged", supervisor, transcript)
    finally:
        supervisor.stop_all()
    assert IdempotencyKey.objects.filter(pk=fresh.pk).exists(), "a key that has not expired was purged"
    assert all(child.process.returncode is not None for child in supervisor.children)
