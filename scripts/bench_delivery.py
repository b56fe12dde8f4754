#!/usr/bin/env python3
"""Delivery benchmark: drain 2,000 due report stages to the sandbox receiver, next to a raw loop.

    make bench-delivery                                    # defaults below
    make bench-delivery BENCH_ARGS="--stages 500 --receiver gunicorn:2x4 --json"

One run does this, on loopback only, with processes it starts and stops itself:
1. drops and recreates the PostgreSQL database ``mir_bench_delivery`` (``--pg``, default
   postgres://postgres@127.0.0.1:5432) and migrates it; empties the Redis database ``--broker``
   (default redis://127.0.0.1:6379/12), after checking it holds nothing but Celery's own keys;
2. creates the signing key, a detector, and the webhook destination ``bench-sandbox`` with the default
   rules (reporting/rules/default.yaml), pointed at the sandbox receiver;
3. files ``--stages`` SEV-1 incidents through ``incident_create`` with no worker running: each owes the
   destination one early notice that needs no approval (plus an approval-gated full report, as under
   the default policy). The doorbells intake rang on commit are then dropped from Redis, so the drain
   starts at one known instant rather than trickling in while the worker boots;
4. starts the sandbox receiver (document check on, the published keys from a file) and a Celery worker
   (prefork, ``--concurrency``, the compose file's log level) and waits until it is ready;
5. t0: rings every stage's doorbell with ``reporting.dispatch.enqueue`` (what the fast path does on
   commit), then polls the database until every stage is delivered, printing progress;
6. idle latency: files ``--idle-samples`` more incidents one at a time and times each from detection
   (intake's commit) to delivered, with the pipeline otherwise idle;
7. raw baseline: stops the worker, restarts the receiver with an empty ledger, and POSTs the same
   frozen payloads with Standard Webhooks headers (made by the transport's own ``sign``) from one plain
   loop over an httpx keep-alive client; then again against a receiver that skips the document check,
   to price that check (the pipeline is never measured without it);
8. prints stages/s, due-to-delivered p50/p99, the raw rate, the ratio, and CPU per stage of each process.

Figures and their interpretation: docs/performance.md ("Delivery").
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import redis

BASE_DIR = Path(__file__).resolve().parent.parent
DB_NAME = "mir_bench_delivery"
DESTINATION = "bench-sandbox"
STAGE = "early_notice"
PORTS = range(18400, 18500)
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 90.0
# Celery's keys in a Redis database used as its broker; anything else means the database is not ours.
CELERY_KEY_PREFIXES = ("_kombu", "celery", "unacked", "reporting.", "incidents.")


# --- small helpers ----------------------------------------------------------------------------------

def percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))  # nearest rank
    return sorted_values[int(rank) - 1]


def free_port(exclude: tuple[int, ...] = ()) -> int:
    for port in PORTS:
        if port in exclude:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def with_db(url: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{dbname}"))


def source_revision() -> str:
    """The commit measured (read-only git), so figures can be tied to the code that produced them."""
    try:
        run = {"cwd": BASE_DIR, "capture_output": True, "text": True, "timeout": 10, "check": True}
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" with uncommitted changes" if dirty else "")


# --- CPU accounting (Linux /proc) -------------------------------------------------------------------

def proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            todo += [int(p) for p in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
    return found


STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_stat() -> dict[str, float]:
    """The machine's CPU seconds so far, by kind (/proc/stat; guest time is already counted in user)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return {name: value / CLK_TCK for name, value in zip(STAT_FIELDS, values, strict=True)}


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    stat = machine_stat()
    total = sum(stat.values())
    return total - stat["idle"] - stat["iowait"], total


def pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
    return pids


class SessionSampler:
    """What the worker's database sessions are doing: pg_stat_activity sampled 20 times a second by a thread."""

    def __init__(self, dsn: str, exclude_pid: int, interval: float = 0.05) -> None:
        import threading

        self.dsn, self.exclude_pid, self.interval = dsn, exclude_pid, interval
        self.samples = self.active = self.lock_waiting = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="session-sampler", daemon=True)

    def __enter__(self) -> SessionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, application_name="bench-sampler") as conn:
            own = conn.info.backend_pid
            while not self._stop.wait(self.interval):
                rows = conn.execute(
                    "SELECT state, wait_event_type FROM pg_stat_activity WHERE datname = %s AND pid NOT IN (%s, %s)",
                    [DB_NAME, own, self.exclude_pid],
                ).fetchall()
                self.samples += 1
                self.active += sum(1 for state, _ in rows if state == "active")
                self.lock_waiting += sum(1 for state, wait in rows if state == "active" and wait == "Lock")

    def averages(self) -> tuple[float | None, float | None]:
        if not self.samples:
            return None, None
        return round(self.active / self.samples, 2), round(self.lock_waiting / self.samples, 2)


class CpuMeter:
    """CPU seconds spent by groups of processes between ``start`` and ``stop``.

    Group members are discovered again at every ``sample`` (prefork children, the database backends the
    worker opens on its first task); a process first seen after ``start`` counts from zero, since it was
    born during the measurement, and a process that ended keeps its last reading.
    """

    def __init__(self, finders: dict) -> None:
        self.finders = finders  # group name -> callable returning pids
        self.base: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.group_of: dict[int, str] = {}
        self.machine_start = (0.0, 0.0)
        self.machine_stop = (0.0, 0.0)

    def start(self) -> None:
        self.machine_start = machine_cpu()
        self.stat_start = machine_stat()
        for group, finder in self.finders.items():
            for pid in finder():
                value = proc_cpu(pid)
                if value is not None:
                    self.base[pid], self.last[pid], self.group_of[pid] = value, value, group

    def sample(self) -> None:
        for group, finder in self.finders.items():
            for pid in finder():
                value = proc_cpu(pid)
                if value is None:
                    continue
                self.base.setdefault(pid, 0.0)
                self.group_of.setdefault(pid, group)
                self.last[pid] = value

    def stop(self) -> None:
        self.sample()
        self.machine_stop = machine_cpu()
        self.stat_stop = machine_stat()

    def machine_split(self) -> dict[str, float]:
        """Busy CPU seconds of the whole machine during the measurement, by kind."""
        return {name: round(self.stat_stop[name] - self.stat_start[name], 2) for name in STAT_FIELDS
                if name not in ("idle", "iowait")}

    def seconds(self) -> dict[str, float]:
        totals: dict[str, float] = {group: 0.0 for group in self.finders}
        for pid, group in self.group_of.items():
            totals[group] += max(0.0, self.last[pid] - self.base[pid])
        busy = self.machine_stop[0] - self.machine_start[0]
        totals["everything else on the machine"] = max(0.0, busy - sum(totals.values()))
        return totals

    def machine_busy_cores(self, elapsed: float) -> float:
        return (self.machine_stop[0] - self.machine_start[0]) / elapsed if elapsed > 0 else 0.0


# --- processes we start ------------------------------------------------------------------------------

class Child:
    """A subprocess in its own process group (ours alone to stop), output to a log file."""

    def __init__(self, name: str, argv: list[str], env: dict, log_path: Path) -> None:
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(argv, env=env, cwd=BASE_DIR, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, process_group=0)
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = "\n".join(self.log_text().splitlines()[-30:])
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; last lines of its log:\n{tail}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        # Whatever is left in the group we created (pool processes, gunicorn workers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._log.close()


def wait_http_ok(url: str, child: Child, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def start_receiver(*, spec: tuple[str, int, int], port: int, data_dir: Path, keys_file: Path, secret: str,
                   env: dict, log_dir: Path, document_check: bool = True) -> Child:
    server, workers, threads = spec
    argv = [sys.executable, "-m", "reporting.sandbox_receiver", "--host", "127.0.0.1", "--port", str(port),
            "--data-dir", str(data_dir), "--quiet", "--server", server]
    argv += ["--keys-file", str(keys_file)] if document_check else ["--no-document-check"]
    if server == "gunicorn":
        argv += ["--workers", str(workers), "--threads", str(threads)]
    child = Child(f"receiver-{data_dir.name}", argv, {**env, "MIR_SANDBOX_SECRET": secret},
                  log_dir / f"receiver-{data_dir.name}.log")
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", child)
    except BaseException:
        child.stop()  # never leave a process behind, whatever failed
        raise
    return child


WORKER_NODE = "bench-delivery"


def broker_workers(timeout: float = 1.0) -> list[str]:
    """Names of the Celery workers that answer a ping on the benchmark's broker."""
    from reporting.celery import app

    return [name for reply in app.control.ping(timeout=timeout) for name in reply]


def start_worker(*, concurrency: int, loglevel: str, env: dict, log_dir: Path, extra: list[str]) -> Child:
    node = f"{WORKER_NODE}@{socket.gethostname()}"
    argv = [sys.executable, "-m", "celery", "-A", "reporting", "worker", "--pool", "prefork", "--concurrency",
            str(concurrency), "--loglevel", loglevel, "-n", node, *extra]
    child = Child("worker", argv, env, log_dir / "worker.log")
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        # Ready when it answers a ping (its consumer is running), whatever its log level prints.
        while node not in broker_workers(timeout=0.5):
            child.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker was not ready within {READY_TIMEOUT:.0f} s; see {child.log_path}")
        # The pool processes exist once the consumer runs; give them a moment to finish their start-up.
        time.sleep(1.0)
    except BaseException:
        child.stop()  # never leave a process behind, whatever failed
        raise
    return child


# --- the stack's state -----------------------------------------------------------------------------

def prepare_database(pg: str, env: dict, log) -> None:  # noqa: ANN001
    with psycopg.connect(with_db(pg, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    log(f"created database {DB_NAME}; migrating")
    subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), "migrate", "--verbosity", "0"], env=env,
                   cwd=BASE_DIR, check=True, timeout=300)


def empty_broker(url: str, *, force: bool) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    foreign = [key.decode(errors="replace") for key in client.scan_iter(count=1000)
               if not key.decode(errors="replace").startswith(CELERY_KEY_PREFIXES)]
    if foreign and not force:
        raise SystemExit(f"{url} holds keys that are not Celery's (e.g. {foreign[:3]}): give the benchmark a "
                         "database of its own with --broker, or --force-broker to empty it anyway")
    client.flushdb()
    client.close()


def setup_django(env: dict) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(BASE_DIR))
    import logging

    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the raw loop's requests, one line each otherwise


def wait_until_quiet(*, limit: float, patience: float, log) -> float:  # noqa: ANN001
    """Cores the rest of the machine keeps busy; waits up to ``patience`` seconds for them to drop below
    ``limit``, since this benchmark shares the CPUs with PostgreSQL, Redis and whatever else runs."""
    deadline = time.monotonic() + patience
    while True:
        before, started = machine_cpu()[0], time.monotonic()
        time.sleep(2.0)
        busy = (machine_cpu()[0] - before) / (time.monotonic() - started)
        if busy < limit or time.monotonic() > deadline:
            if busy >= limit:
                log(f"the machine is busy ({busy:.2f} cores) before the run: the figures will be low")
            return busy
        log(f"the machine is busy ({busy:.2f} cores used by other processes); waiting for it to calm down")
        time.sleep(3.0)


def create_world(*, receiver_url: str, secret: str, keys_file: Path) -> tuple[object, object]:
    """Signing key (published to ``keys_file``), the destination with the default rules, and a detector."""
    from incidents.actors import Actor
    from incidents.services.detectors import detector_create
    from reporting.services.destinations import destination_create
    from reporting.services.rules import DEFAULT_RULES, read_rules_file, rules_load
    from reporting.signing import published_keys, signing_key_current

    actor = Actor.system("bench_delivery")
    signing_key_current(actor=actor)
    keys_file.write_text(json.dumps({"keys": published_keys()}))
    destination = destination_create(actor=actor, name=DESTINATION, authority="Benchmark sandbox authority",
                                     transport="webhook", address=f"{receiver_url}/webhook", secret=secret)
    rules_load(data=read_rules_file(DEFAULT_RULES), actor=actor, destination=destination)
    detector = detector_create(actor=actor, name="bench-detector", description="bench_delivery.py")
    return destination, Actor.for_detector(detector)


def file_incident(actor, seq: int) -> object:  # noqa: ANN001
    """A realistic SEV-1 detector submission: two accounts, two indicators, one evidence item."""
    from django.utils import timezone

    from incidents.services.intake import incident_create
    from incidents.services.parts import EvidenceInput

    fields = {
        "title": f"Intrusion tooling written with the model, cluster {seq}",
        "summary": "Several accounts had the model write and debug a credential-stealing implant and its "
                   "command-and-control server, then asked for help evading endpoint detection.",
        "category": "CYBER", "severity": "SEV-1", "detected_at": timezone.now() - timedelta(milliseconds=1),
        "model_name": "Fable 5", "model_version": "2026-10", "techniques": ["T1059", "T1071"],
        "actions_taken": f"Banned acct-{seq}-a and acct-{seq}-b; blocked the C2 domain.",
    }
    return incident_create(
        actor=actor, fields=fields,
        accounts=[{"id": f"acct-{seq}-a", "enforcement_action": "banned"}, {"id": f"acct-{seq}-b"}],
        indicators=[{"type": "domain", "value": f"c2-{seq}.example.net"}, {"type": "ip", "value": "192.0.2.7"}],
        evidence=[EvidenceInput(kind="prompt", description="first prompt of the session",
                                content=f"[{seq}] Write an implant that steals browser credentials.")],
    ).incident


# --- phases ----------------------------------------------------------------------------------------

@dataclass
class Drain:
    stages: int = 0
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    receipts: int = 0  # delivered stages whose Receipt holds the report's SHA-256
    enqueue_seconds: float = 0.0
    seconds: float = 0.0
    rate: float = 0.0
    due_p50_s: float | None = None
    due_p99_s: float | None = None
    detected_p50_s: float | None = None
    detected_p99_s: float | None = None
    http_p50_ms: float | None = None
    http_p99_ms: float | None = None
    ledger_accepted_verified: int = 0
    worker_start_seconds: float = 0.0
    cpu_ms_per_stage: dict = field(default_factory=dict)
    machine_busy_cores: float = 0.0
    # Of the worker's database sessions, on average: how many were running a statement, and how many
    # were waiting for a row lock another one held (sampled at every poll).
    machine_cpu_ms_per_stage_by_kind: dict = field(default_factory=dict)
    db_active_sessions: float | None = None
    db_lock_waiting_sessions: float | None = None


def drain(*, report_ids: list[int], meter: CpuMeter, progress: float, timeout: float, log) -> Drain:  # noqa: ANN001
    from django.db.models import Count, F, Q
    from django.utils import timezone

    from reporting.dispatch import enqueue
    from reporting.models import DeliveryAttempt, Receipt, Report

    result = Drain(stages=len(report_ids))
    low, high = min(report_ids), max(report_ids)
    burst = Report.objects.filter(id__gte=low, id__lte=high, stage_name=STAGE)
    meter.start()
    t0 = timezone.now()
    started = time.monotonic()
    for report_id in report_ids:
        enqueue(report_id)  # the fast path's doorbell, as rung on commit
    result.enqueue_seconds = time.monotonic() - started
    log(f"t0: rang {len(report_ids):,} doorbells in {result.enqueue_seconds:.2f} s; draining")
    last_print, last_count = started, 0
    deadline = started + timeout
    while True:
        counts = burst.aggregate(delivered=Count("id", filter=Q(status="delivered")),
                                 failed=Count("id", filter=Q(status="failed")))
        meter.sample()
        now = time.monotonic()
        done = counts["delivered"] + counts["failed"]
        if now - last_print >= progress or done >= len(report_ids):
            window = counts["delivered"] - last_count
            log(f"{now - started:7.1f} s  delivered {counts['delivered']:>6,}/{len(report_ids):,}  "
                f"({window / (now - last_print):6.1f}/s last {now - last_print:.1f} s, "
                f"{counts['delivered'] / (now - started):6.1f}/s overall)  failed {counts['failed']}")
            last_print, last_count = now, counts["delivered"]
        if done >= len(report_ids):
            break
        if now > deadline:
            raise RuntimeError(f"only {done} of {len(report_ids)} stages finished within {timeout:.0f} s")
        time.sleep(0.25)
    meter.stop()

    rows = list(burst.values_list("delivered_at", "incident__detected_at", "attempt_count"))
    delivered_at = [r[0] for r in rows if r[0] is not None]
    result.delivered, result.failed = len(delivered_at), counts["failed"]
    result.retried = sum(1 for r in rows if r[2] > 1)
    result.receipts = Receipt.objects.filter(report__in=burst, payload_sha256=F("report__payload_sha256")).count()
    end = max(delivered_at)
    result.seconds = (end - t0).total_seconds()
    result.rate = result.delivered / result.seconds
    due = sorted((d - t0).total_seconds() for d in delivered_at)
    detected = sorted((r[0] - r[1]).total_seconds() for r in rows if r[0] is not None)
    result.due_p50_s, result.due_p99_s = percentile(due, 50), percentile(due, 99)
    result.detected_p50_s, result.detected_p99_s = percentile(detected, 50), percentile(detected, 99)
    durations = sorted(DeliveryAttempt.objects.filter(report__in=burst).values_list("duration_ms", flat=True))
    result.http_p50_ms, result.http_p99_ms = percentile(durations, 50), percentile(durations, 99)
    cpu = meter.seconds()
    result.cpu_ms_per_stage = {name: round(seconds * 1000 / result.stages, 2) for name, seconds in cpu.items()}
    result.machine_busy_cores = round(meter.machine_busy_cores(time.monotonic() - started), 2)
    result.machine_cpu_ms_per_stage_by_kind = {kind: round(seconds * 1000 / result.stages, 2)
                                               for kind, seconds in meter.machine_split().items()}
    return result


def idle_latency(*, actor, samples: int, timeout: float = 30.0) -> list[float]:  # noqa: ANN001
    """Detection to delivered for incidents filed one at a time, the pipeline otherwise idle."""
    from reporting.models import Report

    latencies = []
    for seq in range(samples):
        incident = file_incident(actor, 1_000_000 + seq)
        deadline = time.monotonic() + timeout
        while True:
            report = Report.objects.filter(incident=incident, stage_name=STAGE).only("status", "delivered_at").first()
            if report is not None and report.delivered_at is not None:
                latencies.append((report.delivered_at - incident.detected_at).total_seconds())
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"an idle-phase stage was not delivered within {timeout:.0f} s")
            time.sleep(0.005)
        time.sleep(0.2)
    return sorted(latencies)


@dataclass
class Raw:
    name: str
    posts: int = 0
    seconds: float = 0.0
    rate: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: dict = field(default_factory=dict)
    ledger_accepted_verified: int = 0
    cpu_ms_per_post: dict = field(default_factory=dict)


def raw_loop(*, name: str, url: str, secret: str, payloads: list[tuple[str, bytes]], meter: CpuMeter) -> Raw:
    """The same frozen payloads POSTed one after another from a plain loop, as the transport signs them."""
    from reporting.transports.webhook import USER_AGENT, sign

    result = Raw(name=name, posts=len(payloads))
    latencies = []
    with httpx.Client(timeout=20) as client:  # keep-alive, as the worker's shared client
        meter.start()
        started = time.monotonic()
        for message_id, payload in payloads:
            sent = time.monotonic()
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json", "Accept": "application/json", "User-Agent": USER_AGENT,
                "webhook-id": message_id, "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret=secret, message_id=message_id, timestamp=timestamp, payload=payload),
            }
            try:
                response = client.post(url, content=payload, headers=headers)
                ok = response.status_code == 200 and response.json().get("duplicate") is False
                key = None if ok else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            if key:
                result.errors[key] = result.errors.get(key, 0) + 1
            latencies.append((time.monotonic() - sent) * 1000)
        result.seconds = time.monotonic() - started
        meter.stop()
    result.rate = result.posts / result.seconds
    latencies.sort()
    result.p50_ms, result.p99_ms = percentile(latencies, 50), percentile(latencies, 99)
    cpu = meter.seconds()
    result.cpu_ms_per_post = {group: round(seconds * 1000 / result.posts, 2) for group, seconds in cpu.items()}
    return result


def ledger_accepted_verified(data_dir: Path, ids: set[str]) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / "ledger.sqlite3")) as conn:
        rows = conn.execute("SELECT webhook_id FROM messages WHERE status = 'accepted' AND verified = 1").fetchall()
    return sum(1 for (webhook_id,) in rows if webhook_id in ids)


# --- the worker's CPU profile -------------------------------------------------------------------------

# Where a pool process's CPU went, by the outermost step of report_deliver on the stack (first match wins).
PROFILE_STEPS = [
    ("release_stale_connections", "connection checks around each task"),
    ("report_claim ", "claim (conditional UPDATE)"),
    ("_freeze_fields ", "freeze: destination share lock, then the steps below"),
    ("build_document ", "freeze: build the document (ORM reads, pseudonyms)"),
    ("canonical_bytes ", "freeze: RFC 8785 canonical JSON"),
    ("sign_payload ", "freeze: sign (current key, decrypt, Ed25519)"),
    ("report_freeze ", "freeze: locks, UPDATE, commit"),
    ("report_claim_frozen ", "claim + freeze: locks, report query, conditional UPDATE, commit"),
    ("obligations_sync ", "record: obligations sync (next stages)"),
    ("receipt_record ", "record: receipt, status, audit event"),
    ("_record ", "record: attempt, status, audit, commit"),
    ("_send ", "send: sign the webhook, POST (httpx), read receipt"),
    ("report_deliver ", "report_deliver, other"),
    ("trace_task", "Celery task wrapper in the pool process"),
]
# And by the library running (the innermost frame's file).
PROFILE_LIBRARIES = [
    ("django/db/models/sql/", "Django ORM: building and compiling SQL"),
    ("django/db/models/", "Django ORM: model instances, querysets"),
    ("django/db/", "Django database layer (backends, transactions)"),
    ("psycopg", "psycopg (sending, receiving, adapting)"),
    ("httpx", "httpx / httpcore"),
    ("httpcore", "httpx / httpcore"),
    ("rfc8785", "rfc8785 (canonical JSON)"),
    ("cryptography", "cryptography (Ed25519, Fernet)"),
    ("standardwebhooks", "standardwebhooks"),
    ("celery/", "Celery, kombu, billiard"),
    ("kombu/", "Celery, kombu, billiard"),
    ("billiard/", "Celery, kombu, billiard"),
    ("logging", "logging"),
    ("/reporting/", "this project's code"),
    ("/incidents/", "this project's code"),
]


def summarise_profile(path: str) -> dict:
    """Shares of the worker's sampled CPU by step of a delivery and by library, from py-spy's raw output."""
    steps: dict[str, int] = {}
    libraries: dict[str, int] = {}
    total = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        samples = int(count)
        total += samples
        pool = len(frames) > 1 and frames[1].startswith("process ")
        joined = ";".join(frames) + " "
        if not pool:
            step = "Celery main process (broker, dispatch to the pool, acks)"
        else:
            step = next((name for needle, name in PROFILE_STEPS if needle in joined), None)
            if step is None:
                # py-spy sometimes loses the outer frames of a stack inside psycopg or the ORM.
                step = ("database work, outer frames lost by the sampler" if "psycopg" in joined
                        or "django/db" in joined else "Celery pool process, between tasks")
        steps[step] = steps.get(step, 0) + samples
        leaf = frames[-1]
        library = next((name for needle, name in PROFILE_LIBRARIES if needle in leaf), "Python and the rest")
        libraries[library] = libraries.get(library, 0) + samples

    def shares(counts: dict[str, int]) -> dict[str, float]:
        return {k: round(100 * v / total, 1) for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}

    return {"samples": total, "by_step_pct": shares(steps), "by_library_pct": shares(libraries)} if total else {}


# --- output ----------------------------------------------------------------------------------------

PIPELINE_CPU = ("celery worker (main + pool)", "postgres backends of the worker", "sandbox receiver", "redis-server")
RAW_CPU = ("sandbox receiver", "this script (raw loop client)")


def cpu_ratio(drained: dict, raw: dict) -> float | None:
    """Raw CPU per POST over pipeline CPU per stage: what the ratio would be if both phases had the machine
    to themselves and were CPU-bound (this script's own polling and other processes left out)."""
    pipeline = sum(drained["cpu_ms_per_stage"].get(name, 0.0) for name in PIPELINE_CPU)
    plain = sum(raw["cpu_ms_per_post"].get(name, 0.0) for name in RAW_CPU)
    return round(plain / pipeline, 3) if pipeline else None


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_summary(report: dict) -> None:
    config, drained, raws = report["configuration"], report["pipeline"], report["raw"]
    raw = raws[0]
    print()
    print(f"Delivery benchmark: {drained['stages']:,} due stages, Celery prefork worker concurrency "
          f"{config['concurrency']}, receiver {config['receiver']} (document check on), "
          f"{config['cpus']} CPUs, revision {config['revision']}")
    print()
    head = f"{'':34} {'stages/s':>9} {'p50':>9} {'p99':>9}  latency measured"
    print(head)
    print("-" * len(head))
    print(f"{'pipeline (worker, PostgreSQL)':34} {drained['rate']:9.1f} {fmt(drained['due_p50_s'], '.2f'):>8}s "
          f"{fmt(drained['due_p99_s'], '.2f'):>8}s  due (t0) -> delivered, all {drained['stages']:,} due at once")
    print(f"{'raw loop (httpx, same POSTs)':34} {raw['rate']:9.1f} {fmt(raw['p50_ms'], '.1f'):>7}ms "
          f"{fmt(raw['p99_ms'], '.1f'):>7}ms  one POST, request -> answer")
    for extra in raws[1:]:
        print(f"{extra['name'][:34]:34} {extra['rate']:9.1f} {fmt(extra['p50_ms'], '.1f'):>7}ms "
              f"{fmt(extra['p99_ms'], '.1f'):>7}ms  (cost of the document check only)")
    idle = report["idle"]
    if idle["samples"]:
        print(f"{'idle: one stage at a time':34} {'':>9} {fmt(idle['p50_ms'], '.0f'):>7}ms "
              f"{fmt(idle['p99_ms'], '.0f'):>7}ms  detected (intake commit) -> delivered, {idle['samples']} samples")
    print()
    ratio = report["ratio"]
    verdict = "meets" if ratio >= 1 / 3 else "misses"
    print(f"pipeline / raw = {ratio:.2f}  ({verdict} the aim of at least 1/3); by CPU per stage "
          f"{fmt(report.get('cpu_ratio'), '.2f')} ({' + '.join(PIPELINE_CPU)} against {' + '.join(RAW_CPU)})")
    print(f"burst detected -> delivered: p50 {fmt(drained['detected_p50_s'], '.1f')} s, p99 "
          f"{fmt(drained['detected_p99_s'], '.1f')} s (includes filing all {drained['stages']:,} incidents and the "
          f"worker's start-up, {drained['worker_start_seconds']:.1f} s)")
    if drained["retried"] or drained["failed"]:
        print(f"WARNING: {drained['retried']} stages took more than one attempt and {drained['failed']} failed: "
              "the figures do not describe a clean drain (see the receiver's and the worker's logs with --keep)")
    print(f"HTTP part of each attempt (DeliveryAttempt.duration_ms): p50 {fmt(drained['http_p50_ms'], '.0f')} ms, "
          f"p99 {fmt(drained['http_p99_ms'], '.0f')} ms; retried {drained['retried']}, failed {drained['failed']}; "
          f"ledger: {drained['ledger_accepted_verified']:,} accepted and verified; "
          f"receipts: {drained.get('receipts', 0):,}")
    if drained.get("receipts", 0) != drained["delivered"]:
        print(f"WARNING: {drained['delivered']:,} stages delivered but {drained.get('receipts', 0):,} "
              "receipts match them")
    print()
    print("CPU milliseconds per stage (pipeline) and per POST (raw loop):")
    groups = list(dict.fromkeys([*drained["cpu_ms_per_stage"], *raw["cpu_ms_per_post"]]))
    print(f"  {'':34} {'pipeline':>9} {'raw loop':>9}")
    for group in groups:
        print(f"  {group:34} {fmt(drained['cpu_ms_per_stage'].get(group), '.2f'):>9} "
              f"{fmt(raw['cpu_ms_per_post'].get(group), '.2f'):>9}")
    total_pipe = sum(drained["cpu_ms_per_stage"].values())
    total_raw = sum(raw["cpu_ms_per_post"].values())
    print(f"  {'all (machine busy time)':34} {total_pipe:9.2f} {total_raw:9.2f}")
    print(f"  machine busy during the drain: {drained['machine_busy_cores']:.2f} of {config['cpus']} cores "
          f"(other processes before the run: {config['machine_busy_cores_before']:.2f})")
    kinds = ", ".join(f"{kind} {ms:.2f}" for kind, ms in drained["machine_cpu_ms_per_stage_by_kind"].items() if ms)
    print(f"  the machine's busy CPU per stage by kind (ms): {kinds}")
    print(f"worker's database sessions, sampled: {fmt(drained['db_active_sessions'], '.2f')} running a statement, "
          f"{fmt(drained['db_lock_waiting_sessions'], '.2f')} waiting for a row lock, on average")
    profile = report.get("profile") or {}
    if profile:
        cpu = drained["cpu_ms_per_stage"].get("celery worker (main + pool)", 0.0)
        print()
        print(f"The worker's CPU ({cpu:.2f} ms per stage), sampled with py-spy --gil ({profile['samples']:,} samples):")
        for title, key in (("by step", "by_step_pct"), ("by library", "by_library_pct")):
            print(f"  {title}:")
            for name, pct in profile[key].items():
                print(f"    {pct:5.1f} %  {cpu * pct / 100:5.2f} ms  {name}")


# --- main ------------------------------------------------------------------------------------------

def parse_receiver(spec: str) -> tuple[str, int, int]:
    """``threaded`` (the standard library's server) or ``gunicorn:WxT`` (W gthread workers of T threads)."""
    if spec == "threaded":
        return "threaded", 1, 1
    kind, _, size = spec.partition(":")
    workers, _, threads = size.partition("x")
    if kind != "gunicorn" or not workers.isdigit() or not threads.isdigit():
        raise argparse.ArgumentTypeError(f"expected threaded or gunicorn:WxT, got {spec!r}")
    return "gunicorn", int(workers), int(threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--stages", type=int, default=2000, help="due stages to drain")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes (prefork)")
    parser.add_argument("--receiver", type=parse_receiver, default="threaded", metavar="threaded|gunicorn:WxT",
                        help="how the sandbox receiver serves")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL server (trust auth)")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/12",
                        help="Redis database of the benchmark's own (emptied before and after)")
    parser.add_argument("--force-broker", action="store_true", help="empty --broker even if it holds other keys")
    parser.add_argument("--worker-loglevel", default="INFO", help="the worker's --loglevel (compose runs INFO)")
    parser.add_argument("--worker-args", default="", metavar="ARGS",
                        help="more `celery worker` options, e.g. \"--prefetch-multiplier 4 --without-mingle\"")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for every process, e.g. DB_CONN_MAX_AGE=0")
    parser.add_argument("--idle-samples", type=int, default=20, help="single stages timed with the pipeline idle")
    parser.add_argument("--skip-check-cost", action="store_true",
                        help="skip the raw loop against a receiver without the document check")
    parser.add_argument("--progress", type=float, default=3.0, help="seconds between progress lines")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up the drain after this many seconds")
    parser.add_argument("--profile", metavar="FILE",
                        help="sample the worker's CPU (threads holding the GIL) with py-spy, if installed, into FILE: "
                             "speedscope JSON, or collapsed stacks if FILE ends in .txt (then summarised)")
    parser.add_argument("--quiet-limit", type=float, default=0.3,
                        help="wait (up to --patience s) until other processes use fewer cores than this")
    parser.add_argument("--patience", type=float, default=300.0, help="longest wait for a quiet machine")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, ledgers)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    args = parser.parse_args(argv)
    if args.stages < 1 or args.concurrency < 1:
        parser.error("--stages and --concurrency must be positive")
    extra_env = dict(item.split("=", 1) for item in args.env)

    def log(text: str) -> None:
        print(f"[bench-delivery] {text}", file=sys.stderr if args.json else sys.stdout, flush=True)

    work = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    env = {
        **os.environ, "DATABASE_URL": with_db(args.pg, DB_NAME), "CELERY_BROKER_URL": args.broker,
        "MIR_VAR_DIR": str(work / "var"), "MIR_ENV": "development", "DEBUG": "0", "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "reporting.settings", **extra_env,
    }
    env.pop("CACHE_URL", None)
    children: list[Child] = []
    profiler = None
    profile_summary: dict = {}
    try:
        empty_broker(args.broker, force=args.force_broker)
        busy_before = wait_until_quiet(limit=args.quiet_limit, patience=args.patience, log=log)
        prepare_database(args.pg, env, log)
        setup_django(env)
        from django.conf import settings
        from django.db import connection

        from reporting.models import Report

        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        port = free_port()
        receiver_url = f"http://127.0.0.1:{port}"
        keys_file = work / "keys.json"
        destination, actor = create_world(receiver_url=receiver_url, secret=secret, keys_file=keys_file)
        strangers = broker_workers()
        if strangers:
            raise SystemExit(f"Celery workers already consume from {args.broker}: {', '.join(strangers)}. They would "
                             "take part in the drain; stop them or give the benchmark another --broker")

        log(f"filing {args.stages:,} SEV-1 incidents through incident_create (no worker running)")
        started = time.monotonic()
        for seq in range(args.stages):
            file_incident(actor, seq)
        filing = time.monotonic() - started
        log(f"filed in {filing:.1f} s ({args.stages / filing:.0f}/s); dropping the doorbells intake rang")
        empty_broker(args.broker, force=False)
        report_ids = list(Report.objects.filter(destination=destination, stage_name=STAGE, status="pending")
                          .order_by("due_at", "id").values_list("id", flat=True))
        if len(report_ids) != args.stages:
            raise RuntimeError(f"expected {args.stages} due {STAGE} stages, found {len(report_ids)}")

        receiver = start_receiver(spec=args.receiver, port=port, data_dir=work / "ledger-pipeline",
                                  keys_file=keys_file, secret=secret, env=env, log_dir=work)
        children.append(receiver)
        log(f"receiver ({args.receiver[0]}) on {receiver_url}; starting the worker")
        worker = start_worker(concurrency=args.concurrency, loglevel=args.worker_loglevel, env=env, log_dir=work,
                              extra=shlex.split(args.worker_args))
        children.append(worker)
        worker_start = time.monotonic() - worker.started
        log(f"worker ready after {worker_start:.1f} s (pid {worker.pid}, pool {descendants(worker.pid)[1:]})")
        if args.profile:
            py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
            if py_spy is None:
                raise SystemExit("--profile needs py-spy on the PATH (pip install py-spy; not a project dependency)")
            profiler = subprocess.Popen(
                [py_spy, "record", "--pid", str(worker.pid), "--subprocesses",
                 "--rate", "200", "--gil", "--format", "raw" if args.profile.endswith(".txt") else "speedscope",
                 "--output", args.profile, "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, process_group=0,
            )
            time.sleep(1.0)

        connection.ensure_connection()
        own_backend = connection.connection.info.backend_pid

        def db_backends() -> list[int]:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s "
                               "AND application_name <> 'bench-sampler'", [DB_NAME, own_backend])
                return [row[0] for row in cursor.fetchall()]

        redis_pids = pids_named("redis-server")
        meter = CpuMeter({
            "celery worker (main + pool)": lambda: descendants(worker.pid),
            "postgres backends of the worker": db_backends,
            "sandbox receiver": lambda: descendants(receiver.pid),
            "redis-server": lambda: redis_pids,
            "this script (doorbells, polling)": lambda: [os.getpid(), own_backend],
        })
        with SessionSampler(env["DATABASE_URL"], exclude_pid=own_backend) as sessions:
            drained = drain(report_ids=report_ids, meter=meter, progress=args.progress, timeout=args.timeout,
                            log=log)
        drained.db_active_sessions, drained.db_lock_waiting_sessions = sessions.averages()
        drained.worker_start_seconds = round(worker_start, 2)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                profiler.wait(timeout=30)
            log(f"py-spy profile of the worker written to {args.profile}")
            profiler = None
            if args.profile.endswith(".txt"):
                profile_summary = summarise_profile(args.profile)
        public_ids = {str(u) for u in Report.objects.filter(id__in=report_ids).values_list("public_id", flat=True)}
        drained.ledger_accepted_verified = ledger_accepted_verified(work / "ledger-pipeline", public_ids)

        idle = []
        if args.idle_samples:
            log(f"idle latency: {args.idle_samples} incidents filed one at a time")
            idle = idle_latency(actor=actor, samples=args.idle_samples)
        worker.stop()
        receiver.stop()

        payloads = [(str(public_id), payload.encode()) for public_id, payload in
                    Report.objects.filter(id__in=report_ids).order_by("id").values_list("public_id", "payload")]
        raws = []
        phases = [("raw loop", True)] + ([] if args.skip_check_cost else [("raw loop, no document check", False)])
        for name, check in phases:
            data_dir = work / ("ledger-raw" if check else "ledger-raw-unchecked")
            receiver = start_receiver(spec=args.receiver, port=port, data_dir=data_dir, keys_file=keys_file,
                                      secret=secret, env=env, log_dir=work, document_check=check)
            children.append(receiver)
            log(f"{name}: {len(payloads):,} POSTs to a fresh receiver ledger")
            meter = CpuMeter({
                "sandbox receiver": lambda r=receiver: descendants(r.pid),
                "this script (raw loop client)": lambda: [os.getpid()],
            })
            raw = raw_loop(name=name, url=f"{receiver_url}/webhook", secret=secret, payloads=payloads, meter=meter)
            raw.ledger_accepted_verified = ledger_accepted_verified(data_dir, public_ids)
            receiver.stop()
            log(f"{name}: {raw.rate:.1f} POSTs/s, errors {raw.errors or 'none'}")
            raws.append(raw)

        idle_summary = {"samples": len(idle), "p50_ms": percentile(idle, 50) and percentile(idle, 50) * 1000,
                        "p99_ms": percentile(idle, 99) and percentile(idle, 99) * 1000,
                        "max_ms": idle[-1] * 1000 if idle else None}
        report = {
            "configuration": {
                "stages": args.stages, "concurrency": args.concurrency, "pool": "prefork",
                "receiver": args.receiver[0] if args.receiver[0] == "threaded"
                else f"gunicorn {args.receiver[1]}x{args.receiver[2]}",
                "conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
                "worker_loglevel": args.worker_loglevel, "worker_args": args.worker_args, "broker": args.broker,
                "database": DB_NAME,
                "cpus": os.cpu_count(), "python": platform.python_version(), "revision": source_revision(),
                "extra_env": extra_env, "filing_rate": round(args.stages / filing, 1),
                "machine_busy_cores_before": round(busy_before, 2),
            },
            "pipeline": asdict(drained),
            "raw": [asdict(r) for r in raws],
            "ratio": drained.rate / raws[0].rate,
            "cpu_ratio": cpu_ratio(asdict(drained), asdict(raws[0])),
            "idle": idle_summary,
            "profile": profile_summary,
            "finished_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print_summary(report)
        return 0
    finally:
        if profiler is not None:
            profiler.kill()
            profiler.wait()
        for child in reversed(children):
            child.stop()
        with contextlib.suppress(Exception):
            empty_broker(args.broker, force=False)
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
