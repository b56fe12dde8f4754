#!/usr/bin/env python3
"""Where one POST /api/v1/incidents/ spends its CPU: cProfile of a warm in-process loop.

    .venv/bin/python scripts/profile_intake.py --db mir_bench_profile --requests 2000

Prepares its own database as the intake benchmark does (dropped and recreated; the name must start
with ``mir_bench``), then, in this process, calls Django's WSGI handler directly (every middleware,
the URL resolver, the view) with the benchmark's request body, sequentially, on one persistent
PostgreSQL connection. ``--warmup`` requests run first (connections opened, statements prepared,
caches filled), then ``--requests`` timed without the profiler, then as many again profiled. Prints
the calls with most cumulative and most own CPU time (the profiler's clock is the process's CPU
time, so waits on PostgreSQL do not count) and the CPU per request, the app's and its PostgreSQL
backend's (read from /proc: the server must run on this machine). One client, no gunicorn, no
concurrency: it shows where the app's own CPU goes, not the rates (for those:
scripts/bench_intake.py; docs/performance.md).
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
import bench_intake  # noqa: E402  (the benchmark's body, database set-up and settings)


def environ_for(body: bytes, token: str) -> dict:
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": bench_intake.API_PATH, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000", "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Bearer {token}",
        "HTTP_IDEMPOTENCY_KEY": str(uuid.uuid4()), "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def backend_cpu(pid: int) -> float:
    """CPU seconds (user + system) a PostgreSQL backend on this machine has used, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="mir_bench_profile", type=bench_intake._db_name)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--requests", type=int, default=2000, help="profiled requests (2000)")
    parser.add_argument("--warmup", type=int, default=200, help="unprofiled requests first (200)")
    parser.add_argument("--top", type=int, default=45, help="rows per listing (45)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment")
    parser.add_argument("--dump", help="also write the raw profile here (for snakeviz, pstats)")
    args = parser.parse_args(argv)
    bench_intake.DB_NAME = args.db
    dsn = bench_intake.admin_dsn(args.pg, args.db)
    # The benchmark's gunicorn environment: DEBUG off, no production secrets, the throttle never refuses.
    env = {**os.environ, "DATABASE_URL": dsn, "MIR_ENV": "development", "DEBUG": "0",
           "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "CELERY_BROKER_URL": "filesystem://", "MIR_VAR_DIR": tempfile.mkdtemp(prefix="profile-intake-"),
           "LOG_LEVEL": "WARNING", "MIR_DETECTOR_RATE_PER_MINUTE": "100000000"}
    for name in ("DJANGO_SETTINGS_MODULE", "CACHE_URL", "DB_CONN_MAX_AGE", "DB_SERVER_SIDE_BINDING"):
        env.pop(name, None)
    env["DJANGO_SETTINGS_MODULE"] = "reporting.settings"
    env.update(item.split("=", 1) for item in args.env)
    token, _ = bench_intake.prepare_database(args.pg, env, print)
    os.environ.clear()
    os.environ.update(env)
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
    statuses: dict[str, int] = {}

    def start_response(status: str, headers: list) -> None:
        statuses[status] = statuses.get(status, 0) + 1

    bodies = [json.dumps(bench_intake.incident_body(0, seq)).encode() for seq in range(args.warmup + 2 * args.requests)]

    def one(body: bytes) -> None:
        response = application(environ_for(body, token), start_response)
        b"".join(response)
        response.close()

    for body in bodies[:args.warmup]:
        one(body)
    statuses.clear()
    from django.db import connection

    backend = connection.connection.info.backend_pid  # this thread's connection, opened by the warm-up
    cpu0, pg0 = time.process_time(), backend_cpu(backend)
    for body in bodies[args.warmup:args.warmup + args.requests]:
        one(body)
    plain = (time.process_time() - cpu0) / args.requests
    pg = (backend_cpu(backend) - pg0) / args.requests
    statuses.clear()
    # CPU time, not wall time: waits on PostgreSQL would otherwise dominate every listing.
    profile = cProfile.Profile(time.process_time)
    cpu0 = time.process_time()
    profile.enable()
    for body in bodies[args.warmup + args.requests:]:
        one(body)
    profile.disable()
    cpu = time.process_time() - cpu0
    if args.dump:
        profile.dump_stats(args.dump)
    for order in ("cumulative", "tottime"):
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats(order).print_stats(args.top)
        print(out.getvalue())
    print(f"statuses: {statuses}")
    print(f"CPU per request: {1000 * plain:.2f} ms unprofiled, {1000 * cpu / args.requests:.2f} ms profiled "
          f"({args.requests} requests each); its PostgreSQL backend, unprofiled: {1000 * pg:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
