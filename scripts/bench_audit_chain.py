#!/usr/bin/env python3
"""Audit chain benchmark: seal a backlog of unsealed audit events, then verify the whole chain.

    make bench-audit                                   # 100,000 events
    make bench-audit BENCH_ARGS="--events 20000"

One run, on loopback only:
1. drops and recreates the PostgreSQL database ``mir_bench_audit`` (``--pg``, default
   postgres://postgres@127.0.0.1:5432) and migrates it;
2. inserts ``--events`` unsealed audit events in one INSERT ... SELECT (what a stopped sealer leaves
   behind while intake goes on), with realistic ``changes`` (a few fields, a nested list);
3. seals a tenth of it, then runs ``audit_seal`` (the service beat calls) until the backlog is gone,
   timing each run the way the Celery task bounds it (``--budget`` seconds per run), and prints events/s;
4. runs ``manage.py audit_verify`` (with the head as a checkpoint) in a child process after a tenth of
   the backlog is sealed and again after all of it, printing wall time and peak RSS (bounded memory: the
   peak should not grow with the chain).

Figures: docs/performance.md ("Audit chain").
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB_NAME = "mir_bench_audit"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per sealer run (the task's budget)")
    args = parser.parse_args()
    if args.events < 10:
        parser.error("--events must be at least 10")

    url = f"{args.pg}/{DB_NAME}"
    env = {**os.environ, "DATABASE_URL": url, "MIR_ENV": "test", "DJANGO_SETTINGS_MODULE": "reporting.settings"}
    subprocess.run(["psql", args.pg + "/postgres", "-qc", f"DROP DATABASE IF EXISTS {DB_NAME}"], check=True)
    subprocess.run(["psql", args.pg + "/postgres", "-qc", f"CREATE DATABASE {DB_NAME}"], check=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)

    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    from incidents.services.audit_chain import audit_seal

    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO incidents_auditevent (public_id, object_type, object_id, action, actor_kind, actor_label,
                   changes, reason, created_at)
               SELECT gen_random_uuid(), 'incidents.incident', gen_random_uuid()::text, 'status_confirmed', 'system',
                   'system:bench', jsonb_build_object('status', jsonb_build_array('triaged', 'confirmed'),
                   'severity', jsonb_build_array('SEV-2', 'SEV-1'), 'score', 0.93, 'n', i),
                   'confirmed by the SOC', now() - interval '1 hour' + i * interval '1 millisecond'
               FROM generate_series(1, %s) AS i""",
            [args.events],
        )
    print(f"backlog: {args.events} unsealed events")

    tenth = max(1, args.events // 10)
    from django.conf import settings

    # A tenth first, to compare verify's peak memory over a chain ten times shorter.
    audit_seal(batch_size=tenth, max_batches=1)
    _verify(env, "a tenth sealed", tenth)
    started, runs, sealed = time.monotonic(), 0, 0
    while True:
        run_started = time.monotonic()
        result = audit_seal(time_budget_seconds=args.budget)
        runs += 1
        sealed += result.sealed
        print(f"  run {runs}: sealed {result.sealed} in {time.monotonic() - run_started:.1f} s, head {result.head_seq}")
        if not result.more:
            break
    seconds = time.monotonic() - started
    print(f"seal: {sealed} events in {seconds:.1f} s ({sealed / seconds:.0f} events/s) in batches of "
          f"{settings.MIR_AUDIT_SEAL_BATCH}, {runs} run(s), peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB")
    _verify(env, "all sealed", result.head_seq)


def _verify(env: dict, label: str, sealed: int) -> None:
    from incidents.models import AuditEvent

    checkpoint = f"{sealed}:{AuditEvent.objects.get(chain_seq=sealed).hash}"
    started = time.monotonic()
    # The backlog was written an hour ago: allowed here, this run measures the chain walk.
    child = subprocess.Popen([sys.executable, "manage.py", "audit_verify", "--max-unsealed-age", "86400",
                              f"--checkpoint={checkpoint}"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    out, err = child.stdout.read(), child.stderr.read()
    # wait4 rather than wait: the peak RSS of this one child, not of every child so far (migrate).
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    print(f"verify ({label}, {sealed} events): exit {child.returncode} in {seconds:.1f} s "
          f"({sealed / seconds:.0f} events/s), peak RSS {usage.ru_maxrss // 1024} MiB")
    if child.returncode != 0:
        print(out, err)


if __name__ == "__main__":
    main()
