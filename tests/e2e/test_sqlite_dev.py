"""The development default, a SQLite file, under concurrent detector requests (what `make run` serves).

The suite's own database is PostgreSQL, so this starts a child process on a fresh SQLite file: it
migrates, creates a detector, and posts from 8 threads at once, first one Idempotency-Key 8 times,
then 8 different keys. SQLite serialises writers; a transaction that reads before it writes (the
idempotency claim does) could not take the write lock while another held it, and failed at once with
"database is locked", whatever the timeout. The settings begin SQLite transactions IMMEDIATE.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, threading
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.db import connection
from incidents.models import Incident
from tests.conftest import api_client, make_detector, post, valid_body

_, secret = make_detector("sqlite-dev")

def concurrently(body_for, key_for):
    barrier, out = threading.Barrier(8), [None] * 8
    def one(i):
        try:
            client = api_client(secret)
            barrier.wait(timeout=30)
            response = post(client, body_for(i), key=key_for(i))
            out[i] = [response.status_code, response.get("Idempotent-Replayed")]
        except Exception as exc:
            out[i] = repr(exc)
        finally:
            connection.close()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out

body = valid_body()
same = concurrently(lambda i: body, lambda i: "same-key")
after_same = Incident.objects.count()
distinct = concurrently(lambda i: valid_body(title=f"incident {i}"), lambda i: f"key-{i}")
print(json.dumps({"same": same, "after_same": after_same, "distinct": distinct,
                  "after_distinct": Incident.objects.count()}))
"""


@pytest.mark.e2e
def test_concurrent_requests_on_the_sqlite_default(tmp_path):
    env = {
        key: value for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL"}
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", MIR_VAR_DIR=str(tmp_path / "var"), MIR_ENV="test",
        DJANGO_SETTINGS_MODULE="reporting.settings", MIR_DETECTOR_RATE_PER_MINUTE="100000",
    )
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # One key: one incident; every answer a 201, all but the first a replay of it.
    assert all(isinstance(answer, list) and answer[0] == 201 for answer in result["same"]), result["same"]
    assert sorted(answer[1] or "" for answer in result["same"]) == [""] + ["true"] * 7
    assert result["after_same"] == 1
    # Eight keys: eight incidents, none refused.
    assert result["distinct"] == [[201, None]] * 8, result["distinct"]
    assert result["after_distinct"] == 9
