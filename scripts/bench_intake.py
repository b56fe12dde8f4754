#!/usr/bin/env python3
"""Intake benchmark: POST /api/v1/incidents/ under gunicorn on PostgreSQL, next to a raw baseline.

    make bench-intake                                   # 8 clients, 3 s warm-up + 20 s counted per phase
    make bench-intake BENCH_ARGS="--rounds 3 --gunicorn gthread:2x2 --gunicorn gthread:2x4"

One run does this, on loopback only:
1. drops and recreates the database ``mir_bench`` (``--pg``, default postgres://postgres@127.0.0.1:5432),
   migrates it and creates a detector and token with ``manage.py detector_create``;
2. raw baseline: N client processes write the rows one accepted incident consists of (incident,
   account, two indicators, one evidence item, the audit event, the completed idempotency key)
   straight through psycopg, one transaction per incident, over persistent connections;
3. for each ``--gunicorn`` configuration: starts gunicorn (``reporting.wsgi``) on 127.0.0.1:18000-18099,
   waits for /healthz, and N client processes POST incidents over keep-alive HTTP connections, each
   with a realistic body and a fresh Idempotency-Key; only 201s count; gunicorn is stopped after;
4. with ``--rounds N``, repeats 2-3 alternately; then prints incidents/s, p50/p99 latency, the CPU
   gunicorn, PostgreSQL and the clients spent per incident, and the API/raw ratios (medians of rounds).

Each phase runs ``--warmup`` seconds uncounted, then ``--duration`` seconds counted. The data tables are
emptied and a CHECKPOINT taken before each phase so every phase starts from the same state.
One file on purpose: the client processes are spawned from it and import it without Django.
Figures and their interpretation: docs/performance.md.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import multiprocessing
import os
import queue
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

BASE_DIR = Path(__file__).resolve().parent.parent
DB_NAME = "mir_bench"
DETECTOR_NAME = "bench"
PORTS = range(18000, 18100)
API_PATH = "/api/v1/incidents/"
DEFAULT_GUNICORN = "gthread:2x2"
RAW_NAME = "raw psycopg"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- What one incident is: the request body, and the rows it becomes -----------------------

def incident_body(client: int, seq: int) -> dict:
    """A realistic detector submission; the indicator values are already in normalised form so the
    API and the raw baseline store identical rows."""
    detected = datetime.now(UTC) - timedelta(seconds=30)
    return {
        "title": f"Phishing kit generation, cluster {client}-{seq}",
        "summary": "Several accounts asked the model for phishing pages impersonating Example Bank, "
                   "with credential-harvesting forms posting to a look-alike domain.",
        "category": "FRAUD",
        "severity": "SEV-2",
        "detected_at": detected.isoformat().replace("+00:00", "Z"),
        "model": {"name": "Fable 5", "version": "2026-10"},
        "indicators": [
            {"type": "domain", "value": f"examp1e-bank-{client}-{seq}.com"},
            {"type": "ip", "value": f"192.0.2.{seq % 250 + 1}"},
        ],
        "evidence": [
            {"kind": "prompt", "description": "first prompt of the session",
             "content": f"[{client}-{seq}] Write a login page that looks exactly like Example Bank's."},
        ],
        "accounts": [{"id": f"acct-{client}-{seq}"}],
    }


def request_fingerprint(path: str, data: object) -> str:
    # Same computation as incidents.api.idempotency.request_fingerprint.
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\n{canonical}".encode()).hexdigest()


_INSERT_INCIDENT = """
INSERT INTO incidents_incident (
  public_id, title, summary, category, severity, status, determination, harm_types, imminent_risk_to_life,
  cross_border, countries, critical_infrastructure_sector, near_miss, occurred_start, occurred_end,
  occurred_precision, detected_at, aware_at, determined_at, resolved_at, closed_at, detection_source,
  detector_version, score, threshold, external_source, fingerprint, occurrence_count, last_seen_at,
  model_name, model_version, surface, internal_use, model_tools, model_involvement, safeguards_evaded,
  actor_type, actor_origin, actor_confidence, techniques, event_chain, affected_parties, deaths, injuries,
  economic_loss_usd, actions_taken, actions_planned, recommendation, notified_parties, root_cause, unknowns,
  tlp, reportability, reportability_reason, reportability_decided_at, dismissal_reason, created_at,
  updated_at, detector_id, filed_by_id, reportability_decided_by_id
) VALUES (
  %(public_id)s, %(title)s, %(summary)s, %(category)s, %(severity)s, 'new', 'suspected', %(empty)s, false,
  false, %(empty)s, '', false, NULL, NULL,
  'unknown', %(detected_at)s, NULL, NULL, NULL, NULL, 'detector',
  '', NULL, NULL, '', '', 1, %(detected_at)s,
  %(model_name)s, %(model_version)s, '', false, %(empty)s, '', '',
  'unknown', '', '', %(empty)s, '', %(empty)s, NULL, NULL,
  NULL, '', '', '', %(empty)s, '', '',
  'TLP:AMBER+STRICT', 'pending', '', NULL, '', %(now)s,
  %(now)s, %(detector_id)s, NULL, NULL
) RETURNING id"""
_INSERT_ACCOUNT = """INSERT INTO incidents_account (incident_id, identifier, enforcement_action, created_at)
VALUES (%s, %s, 'none', %s)"""
_INSERT_INDICATORS = """INSERT INTO incidents_indicator (incident_id, type, value, created_at)
VALUES (%s, %s, %s, %s), (%s, %s, %s, %s)"""
_INSERT_EVIDENCE = """INSERT INTO incidents_evidence
  (public_id, incident_id, kind, description, sha256, content, size_bytes, created_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"""
_INSERT_AUDIT = """INSERT INTO incidents_auditevent
  (public_id, incident_id, object_type, object_id, action, actor_kind, actor_user_id, actor_detector_id,
   actor_label, changes, reason, created_at)
VALUES (%s, %s, 'incidents.incident', %s, 'created', 'detector', NULL, %s, %s, %s, '', %s)"""
_INSERT_KEY = """INSERT INTO incidents_idempotencykey
  (detector_id, key, request_fingerprint, state, lease_expires_at, response_status, response_body,
   created_at, expires_at)
VALUES (%s, %s, %s, 'completed', NULL, 201, %s, %s, %s)"""


def write_incident_raw(conn: psycopg.Connection, detector_id: int, body: dict, key: str) -> None:
    """The rows the service writes for one new incident, in one transaction: nothing else."""
    now = datetime.now(UTC)
    public_id = uuid.uuid4()
    detected_at = datetime.fromisoformat(body["detected_at"].replace("Z", "+00:00"))
    evidence = body["evidence"][0]
    raw = evidence["content"].encode()
    ind = body["indicators"]
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_INSERT_INCIDENT, {
            "public_id": public_id, "title": body["title"], "summary": body["summary"],
            "category": body["category"], "severity": body["severity"], "detected_at": detected_at,
            "model_name": body["model"]["name"], "model_version": body["model"]["version"],
            "empty": Jsonb([]), "now": now, "detector_id": detector_id,
        })
        incident_id = cur.fetchone()[0]
        cur.execute(_INSERT_ACCOUNT, (incident_id, body["accounts"][0]["id"], now))
        cur.execute(_INSERT_INDICATORS, (incident_id, ind[0]["type"], ind[0]["value"], now,
                                         incident_id, ind[1]["type"], ind[1]["value"], now))
        cur.execute(_INSERT_EVIDENCE, (uuid.uuid4(), incident_id, evidence["kind"], evidence["description"],
                                       hashlib.sha256(raw).hexdigest(), evidence["content"], len(raw), now))
        changes = {"category": body["category"], "severity": body["severity"],
                   "parts": {"accounts": 1, "indicators": 2, "evidence": 1}}
        cur.execute(_INSERT_AUDIT, (uuid.uuid4(), incident_id, str(public_id), detector_id,
                                    f"detector:{DETECTOR_NAME}", Jsonb(changes), now))
        response = {"id": str(public_id), "reference": f"INC-{incident_id:06d}", "status": "new",
                    "grouped": False, "occurrence_count": 1, "url": f"{API_PATH}{public_id}"}
        cur.execute(_INSERT_KEY, (detector_id, key, request_fingerprint("incidents", body),
                                  Jsonb(response), now, now + timedelta(hours=48)))


# --- Client processes ------------------------------------------------------------------------

@dataclass
class ClientSpec:
    kind: str  # "api" or "raw"
    index: int
    warmup: float
    duration: float
    port: int = 0
    token: str = ""
    dsn: str = ""
    detector_id: int = 0


def client_main(spec: ClientSpec, barriers, counters, results) -> None:  # noqa: ANN001  (multiprocessing objects)
    """One client: connect, wait for all, warm up, then time requests until the end of the window.

    ``barriers`` are (start, finished, release): the parent reads CPU counters between the last two,
    while every client's connection (and so its PostgreSQL backend) is still open."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    if spec.kind == "api":
        conn = http.client.HTTPConnection("127.0.0.1", spec.port, timeout=30)
        headers = {"Authorization": f"Bearer {spec.token}", "Content-Type": "application/json"}

        def one(seq: int) -> int | str:
            body = json.dumps(incident_body(spec.index, seq)).encode()
            conn.request("POST", API_PATH, body, {**headers, "Idempotency-Key": str(uuid.uuid4())})
            response = conn.getresponse()
            response.read()
            if response.getheader("Connection", "").lower() == "close":
                conn.close()  # sync workers close after each response; the next request reconnects
            return response.status
    else:
        conn = psycopg.connect(spec.dsn, autocommit=True)

        def one(seq: int) -> int | str:
            try:
                write_incident_raw(conn, spec.detector_id, incident_body(spec.index, seq), str(uuid.uuid4()))
            except psycopg.Error as exc:
                return type(exc).__name__
            return 201

    latencies: list[float] = []
    errors: dict[str, int] = {}
    start_barrier, finished, release = barriers
    start_barrier.wait(timeout=60)
    counted_from = time.monotonic() + spec.warmup
    end = counted_from + spec.duration
    cpu_start = None
    seq = 0
    while True:
        start = time.monotonic()
        if start >= end:
            break
        if cpu_start is None and start >= counted_from:
            cpu_start = sum(os.times()[:2])
        seq += 1
        try:
            status = one(seq)
        except (OSError, http.client.HTTPException) as exc:
            status = type(exc).__name__  # counted as an error; reconnect and go on
            conn.close()
            time.sleep(0.01)
        done = time.monotonic()
        if counted_from <= start and done < end:
            if status == 201:
                latencies.append(done - start)
                counters[spec.index] += 1
            else:
                errors[str(status)] = errors.get(str(status), 0) + 1
    cpu = sum(os.times()[:2]) - (cpu_start if cpu_start is not None else sum(os.times()[:2]))
    finished.wait(timeout=120)
    release.wait(timeout=120)
    conn.close()
    results.put({"index": spec.index, "latencies": latencies, "errors": errors, "cpu_seconds": cpu})


# --- CPU accounting (Linux /proc) ----------------------------------------------------------------

def proc_cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    # user nice system idle iowait irq softirq steal; guest time is already counted in user.
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


def child_pids(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


# --- Phases ------------------------------------------------------------------------------------

@dataclass
class PhaseResult:
    name: str
    duration: float
    incidents: int = 0
    errors: dict = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    cpu_ms_per_incident: dict = field(default_factory=dict)
    machine_busy_pct: float | None = None

    @property
    def rate(self) -> float:
        return self.incidents / self.duration


def percentile(sorted_values: list[float], pct: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * pct // 100))  # nearest rank
    return sorted_values[int(rank) - 1]


def run_phase(name: str, specs: list[ClientSpec], *, progress: float, server_pids, backend_pids, log) -> PhaseResult:  # noqa: ANN001
    mp = multiprocessing.get_context("spawn")
    barriers = tuple(mp.Barrier(len(specs) + 1) for _ in range(3))
    counters = mp.Array("q", len(specs), lock=False)
    results = mp.Queue()
    procs = [mp.Process(target=client_main, args=(s, barriers, counters, results), daemon=True) for s in specs]
    warmup, duration = specs[0].warmup, specs[0].duration
    result = PhaseResult(name=name, duration=duration)
    try:
        for p in procs:
            p.start()
        barriers[0].wait(timeout=60)
        counted_from = time.monotonic() + warmup
        end = counted_from + duration
        time.sleep(max(0.0, counted_from - time.monotonic()))
        pids_server, pids_db = server_pids(), backend_pids()
        cpu0 = (proc_cpu_seconds(pids_server), proc_cpu_seconds(pids_db), machine_busy())
        last_n, last_t = 0, time.monotonic()
        while (now := time.monotonic()) < end:
            time.sleep(min(progress, end - now))
            n, t = sum(counters), time.monotonic()
            log(f"  {name:<22} {t - counted_from:5.1f} s  {n:7d} incidents  {(n - last_n) / (t - last_t):8.1f}/s")
            last_n, last_t = n, t
        barriers[1].wait(timeout=120)
        cpu1 = (proc_cpu_seconds(pids_server), proc_cpu_seconds(pids_db), machine_busy())
        barriers[2].wait(timeout=10)
        collected = []
        deadline = time.monotonic() + 60
        while len(collected) < len(procs) and time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                collected.append(results.get(timeout=1))
        for p in procs:
            p.join(timeout=10)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
    if len(collected) < len(procs):
        raise RuntimeError(f"{name}: only {len(collected)} of {len(procs)} clients reported")
    latencies = sorted(x for r in collected for x in r["latencies"])
    for r in collected:
        for status, count in r["errors"].items():
            result.errors[status] = result.errors.get(status, 0) + count
    result.incidents = len(latencies)
    result.p50_ms, result.p99_ms, result.max_ms = (
        (v * 1000 if v is not None else None) for v in (percentile(latencies, 50), percentile(latencies, 99),
                                                        latencies[-1] if latencies else None))
    busy, total = cpu1[2][0] - cpu0[2][0], cpu1[2][1] - cpu0[2][1]
    result.machine_busy_pct = 100 * busy / total if total else None
    if result.incidents:
        per = 1000 / result.incidents
        app, pg, client = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1], sum(r["cpu_seconds"] for r in collected)
        # "other": busy CPU nobody above accounts for: PostgreSQL's WAL writer and autovacuum, the
        # kernel, and anything else running on the machine (a noisy neighbour shows up here).
        result.cpu_ms_per_incident = {"app": app * per if pids_server else None, "postgres": pg * per,
                                      "client": client * per,
                                      "other": max(0.0, busy - app - pg - client) * per}
    return result


# --- Database and gunicorn -----------------------------------------------------------------------

def admin_dsn(pg: str, dbname: str) -> str:
    parts = urllib.parse.urlsplit(pg)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{dbname}"))


def prepare_database(pg: str, env: dict, log) -> tuple[str, int]:  # noqa: ANN001
    with psycopg.connect(admin_dsn(pg, "postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB_NAME}")
    log(f"created database {DB_NAME}; migrating")
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "--verbosity", "0"], env=env, cwd=BASE_DIR, check=True, timeout=300)
    out = subprocess.run([*manage, "detector_create", DETECTOR_NAME, "--expires-in-days", "1"], env=env,
                         cwd=BASE_DIR, check=True, timeout=120, capture_output=True, text=True).stdout
    token = out.strip().splitlines()[-1]
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        detector_id = conn.execute("SELECT id FROM incidents_detector WHERE name = %s", [DETECTOR_NAME]).fetchone()[0]
    return token, detector_id


# The intake tables the benchmark empties between phases; CASCADE takes every table that refers to
# them (the parts, and whatever the reporting side hangs off an incident), but not the detector.
_RESET = "TRUNCATE incidents_incident, incidents_auditevent, incidents_idempotencykey RESTART IDENTITY CASCADE"
# The tables TRUNCATE ... CASCADE empties: the three named and every table that refers to them, transitively.
_EMPTIED = """WITH RECURSIVE emptied(rel) AS (
    SELECT unnest(ARRAY['incidents_incident', 'incidents_auditevent', 'incidents_idempotencykey']::regclass[])
    UNION SELECT c.conrelid FROM pg_constraint c JOIN emptied e ON c.confrelid = e.rel WHERE c.contype = 'f'
) SELECT rel::text FROM emptied"""
_TABLES = "SELECT oid::regclass::text FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace"
_REFERRERS = """SELECT DISTINCT conrelid::regclass::text FROM pg_constraint
WHERE contype = 'f' AND confrelid = 'incidents_incident'::regclass ORDER BY 1"""


def reset_tables(dsn: str) -> None:
    """Empty the intake tables (the detector and its token stay) and flush dirty pages, so every phase
    starts from the same state. This database is the benchmark's own, dropped at the next run.

    The emptied tables are deliberately not vacuumed or analysed: statistics that say "empty" make the
    planner choose sequential scans for key lookups (the foreign-key checks every COMMIT runs, the
    idempotency completion UPDATE), and the phase's persistent connections keep those plans as their
    cached generic plans while the tables grow, so each phase slowed down as it went, the API's more than
    the raw side's. After TRUNCATE a table's size is unknown and the planner uses the indexes, as it does
    on a database that holds data. The tables that are not emptied are vacuumed and analysed as before.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        emptied = {row[0] for row in conn.execute(_EMPTIED)}
        conn.execute(_RESET)
        kept = [row[0] for row in conn.execute(_TABLES) if row[0] not in emptied]
        if kept:
            conn.execute(f"VACUUM ANALYZE {', '.join(kept)}")
        conn.execute("CHECKPOINT")


def rows_per_incident(dsn: str) -> dict:
    """Rows written per incident in every table that refers to an incident, and idempotency keys: the
    check that the API and the raw baseline wrote the same rows."""
    with psycopg.connect(dsn) as conn:
        tables = [row[0] for row in conn.execute(_REFERRERS)] + ["incidents_idempotencykey"]
        incidents = conn.execute("SELECT count(*) FROM incidents_incident").fetchone()[0]
        counts = {t.removeprefix("incidents_"): conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                  for t in tables}
    return {name: round(n / incidents, 3) if incidents else None for name, n in counts.items()}


def backend_pids(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [DB_NAME]
        ).fetchall()
    return [r[0] for r in rows]


def source_revision() -> str:
    """The commit measured (read-only git), so figures can be tied to the code that produced them."""
    try:
        run = {"cwd": BASE_DIR, "capture_output": True, "text": True, "timeout": 10, "check": True}
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" with uncommitted changes" if dirty else "")


def free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def parse_gunicorn(spec: str) -> tuple[str, int, int]:
    """``sync:5`` (5 sync workers) or ``gthread:2x4`` (2 workers of 4 threads)."""
    kind, _, size = spec.partition(":")
    workers, _, threads = size.partition("x")
    if kind not in {"sync", "gthread"} or not workers.isdigit() or (threads and not threads.isdigit()):
        raise argparse.ArgumentTypeError(f"expected sync:W or gthread:WxT, got {spec!r}")
    if kind == "sync" and threads:
        raise argparse.ArgumentTypeError("sync workers have no threads: use sync:W")
    if not 1 <= int(workers) <= 32 or not 1 <= int(threads or 1) <= 64:
        raise argparse.ArgumentTypeError("use 1-32 workers of 1-64 threads")
    return kind, int(workers), int(threads or 1)


class Gunicorn:
    """gunicorn in its own session, so it and its workers are stopped as one group, by its pid."""

    def __init__(self, spec: tuple[str, int, int], port: int, env: dict, log_dir: Path, app: str) -> None:
        kind, workers, threads = spec
        executable = Path(sys.executable).parent / "gunicorn"
        command = [str(executable)] if executable.exists() else [sys.executable, "-m", "gunicorn"]
        command += [app, "--bind", f"127.0.0.1:{port}", "--worker-class", kind,
                    "--workers", str(workers), "--threads", str(threads), "--keep-alive", "30",
                    "--log-level", "warning", "--error-logfile", "-", "--worker-tmp-dir", "/dev/shm"]
        self.port = port
        self.log_path = log_dir / f"gunicorn-{port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not healthy after {timeout:.0f} s:\n{self.log_tail()}")

    def pids(self) -> list[int]:
        return [self.proc.pid, *child_pids(self.proc.pid)]

    def log_tail(self) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._log.close()


# --- Report ------------------------------------------------------------------------------------

def _db_name(value: str) -> str:
    if not re.fullmatch(r"mir_bench[a-z0-9_]{0,30}", value):
        raise argparse.ArgumentTypeError("must start with mir_bench, then lower-case letters, digits or _")
    return value


def median(values: list[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    mid = len(known) // 2
    return known[mid] if len(known) % 2 else (known[mid - 1] + known[mid]) / 2


def summarise(results: list[PhaseResult]) -> list[dict]:
    """One line per phase name: the median of its rounds (the only value when there is one round)."""
    names = list(dict.fromkeys(r.name for r in results))
    lines = []
    for name in names:
        runs = [r for r in results if r.name == name]
        errors: dict = {}
        for r in runs:
            for status, count in r.errors.items():
                errors[status] = errors.get(status, 0) + count
        lines.append({
            "name": name, "rounds": len(runs), "incidents_per_second": median([r.rate for r in runs]),
            "p50_ms": median([r.p50_ms for r in runs]), "p99_ms": median([r.p99_ms for r in runs]),
            "cpu_ms_per_incident": {k: median([r.cpu_ms_per_incident.get(k) for r in runs])
                                    for k in ("app", "postgres", "client", "other")},
            "machine_busy_pct": median([r.machine_busy_pct for r in runs]),
            "incidents": sum(r.incidents for r in runs), "errors": errors,
        })
    for line in lines:
        cpu = line["cpu_ms_per_incident"]
        line["cpu_ms_total"] = (sum(cpu[k] or 0.0 for k in ("app", "postgres", "client"))
                                if cpu["postgres"] is not None else None)
    raw = next((line for line in lines if line["name"] == RAW_NAME), None)
    for line in lines:
        other = raw and line is not raw
        line["ratio_to_raw"] = (line["incidents_per_second"] / raw["incidents_per_second"]
                                if other and raw["incidents_per_second"] else None)
        # The same ratio from CPU spent per incident instead of wall-clock rate: what the API would
        # reach on a machine nobody else uses (the run is CPU-bound, so rate ~ cores / CPU per incident).
        line["cpu_ratio_to_raw"] = (raw["cpu_ms_total"] / line["cpu_ms_total"]
                                    if other and raw["cpu_ms_total"] and line["cpu_ms_total"] else None)
    return lines


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(title: str, lines: list[dict]) -> None:
    header = (f"{'phase':<20} {'incidents/s':>11} {'p50 ms':>7} {'p99 ms':>7} {'vs raw':>7} | "
              f"{'CPU ms per incident: app':>24} {'pg':>5} {'client':>6} {'total':>6} {'vs raw':>7} | "
              f"{'other':>5} {'busy':>5}  errors")
    print(f"\n{title}\n{header}\n{'-' * len(header)}")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    for line in lines:
        cpu = line["cpu_ms_per_incident"]
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(line["errors"].items())) or "none"
        print(f"{line['name']:<20} {line['incidents_per_second']:11.1f} {fmt(line['p50_ms']):>7} "
              f"{fmt(line['p99_ms']):>7} {pct(line['ratio_to_raw']):>7} | {fmt(cpu['app'], '.2f'):>24} "
              f"{fmt(cpu['postgres'], '.2f'):>5} {fmt(cpu['client'], '.2f'):>6} {fmt(line['cpu_ms_total'], '.2f'):>6} "
              f"{pct(line['cpu_ratio_to_raw']):>7} | {fmt(cpu['other'], '.2f'):>5} "
              f"{fmt(line['machine_busy_pct'], '.0f'):>4}%  {errors}")


def main(argv: list[str] | None = None) -> int:
    global DB_NAME  # noqa: PLW0603  (--db; read by prepare_database and backend_pids, in this process only)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="counted seconds per phase (20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="uncounted seconds before each phase (3)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, one process each (8)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="repeat raw and API phases alternately; the summary shows medians (1)")
    parser.add_argument("--gunicorn", action="append", type=parse_gunicorn, metavar="KIND:SIZE",
                        help=f"sync:W or gthread:WxT; repeat to compare ({DEFAULT_GUNICORN})")
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432",
                        help="PostgreSQL server on loopback (%(default)s); the benchmark owns its database (--db)")
    parser.add_argument("--db", default=DB_NAME, type=_db_name,
                        help="the benchmark's own database, dropped and recreated (%(default)s); pick another "
                             "name when someone else may be benchmarking on the same server")
    parser.add_argument("--conn-max-age", type=int, default=None,
                        help="DB_CONN_MAX_AGE for gunicorn (the settings' default: persistent)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for gunicorn only, e.g. CACHE_URL=redis://...; repeatable")
    parser.add_argument("--wsgi", default="reporting.wsgi", metavar="MODULE[:APP]",
                        help="the WSGI application gunicorn serves (%(default)s; another one only for experiments)")
    parser.add_argument("--skip-raw", action="store_true", help="API phases only (no ratio)")
    parser.add_argument("--progress", type=float, default=5.0, help="seconds between progress lines (5)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of tables")
    args = parser.parse_args(argv)
    if not 1 <= args.clients <= 64 or not 1 <= args.rounds <= 20 or args.duration <= 0 or args.warmup < 0 \
            or args.progress <= 0:
        parser.error("need 1-64 clients, 1-20 rounds, a positive duration and progress interval, warm-up >= 0")
    if urllib.parse.urlsplit(args.pg).hostname not in {"127.0.0.1", "localhost", "::1"}:
        parser.error("--pg must be on loopback")
    DB_NAME = args.db
    configs = args.gunicorn or [parse_gunicorn(DEFAULT_GUNICORN)]
    extra_env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--env takes NAME=VALUE, got {item!r}")
        extra_env[name] = value

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.json else sys.stdout, flush=True)

    def stop_on_term(signum, frame):  # noqa: ANN001, ANN202
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops cleanly even when backgrounded
    dsn = admin_dsn(args.pg, DB_NAME)
    work_dir = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    # DEBUG off as in production (no per-query log); MIR_ENV=development so the run needs none of the
    # production secrets, none of which is on the intake path. Celery's broker, should intake enqueue
    # anything, is the filesystem transport in a temporary folder.
    env = {**os.environ, "DATABASE_URL": dsn, "MIR_ENV": "development", "DEBUG": "0",
           "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "CELERY_BROKER_URL": "filesystem://", "MIR_VAR_DIR": str(work_dir), "LOG_LEVEL": "WARNING",
           "MIR_DETECTOR_RATE_PER_MINUTE": "100000000", "PYTHONUNBUFFERED": "1"}
    for name in ("DJANGO_SETTINGS_MODULE", "CACHE_URL", "DB_CONN_MAX_AGE", "DB_SERVER_SIDE_BINDING"):  # unless asked
        env.pop(name, None)
    server_env = dict(env)
    if args.conn_max_age is not None:
        server_env["DB_CONN_MAX_AGE"] = str(args.conn_max_age)
    server_env.update(extra_env)
    common = {"warmup": args.warmup, "duration": args.duration}
    server: Gunicorn | None = None
    results: list[PhaseResult] = []
    rows: dict = {}
    try:
        token, detector_id = prepare_database(args.pg, env, log)
        for round_no in range(1, args.rounds + 1):
            suffix = f" (round {round_no}/{args.rounds})" if args.rounds > 1 else ""
            if not args.skip_raw:
                reset_tables(dsn)
                log(f"{RAW_NAME}{suffix}: {args.clients} psycopg clients, one transaction per incident")
                specs = [ClientSpec("raw", i, dsn=dsn, detector_id=detector_id, **common)
                         for i in range(args.clients)]
                results.append(run_phase(RAW_NAME, specs, progress=args.progress, server_pids=list,
                                         backend_pids=lambda: backend_pids(dsn), log=log))
                rows[RAW_NAME] = rows_per_incident(dsn)
            for config in configs:
                kind, workers, threads = config
                name = f"API {kind} {workers}" + (f"x{threads}" if kind == "gthread" else "")
                reset_tables(dsn)
                server = Gunicorn(config, free_port(), server_env, work_dir, args.wsgi)
                server.wait_healthy()
                log(f"{name}{suffix}: gunicorn on 127.0.0.1:{server.port}, {args.clients} keep-alive HTTP clients")
                specs = [ClientSpec("api", i, port=server.port, token=token, **common) for i in range(args.clients)]
                results.append(run_phase(name, specs, progress=args.progress, server_pids=server.pids,
                                         backend_pids=lambda: backend_pids(dsn), log=log))
                server.stop()
                server = None
                rows[name] = rows_per_incident(dsn)
    except KeyboardInterrupt:
        log(f"interrupted; gunicorn logs are in {work_dir}")
        return 130
    except BaseException:
        log(f"failed; gunicorn logs are in {work_dir}")
        raise
    finally:
        if server is not None:
            server.stop()
    shutil.rmtree(work_dir, ignore_errors=True)
    with psycopg.connect(admin_dsn(args.pg, "postgres")) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    meta = {**common, "clients": args.clients, "rounds": args.rounds, "cpus": os.cpu_count(),
            "revision": source_revision(),
            "postgres": pg_version, "gunicorn_env": args.env, "wsgi": args.wsgi, "rows_per_incident": rows,
            "db_conn_max_age": server_env.get("DB_CONN_MAX_AGE", "settings default")}
    summary = summarise(results)
    if args.json:
        print(json.dumps({"meta": meta, "summary": summary,
                          "runs": [{**vars(r), "incidents_per_second": r.rate} for r in results]}, indent=2))
        return 0
    title = (f"Intake benchmark: {args.clients} clients, {args.duration:.0f} s counted after {args.warmup:.0f} s "
             f"warm-up, {os.cpu_count()} CPUs, PostgreSQL {pg_version}, code {meta['revision']}")
    if args.rounds > 1:
        for round_no in range(args.rounds):
            per_round = results[round_no * len(results) // args.rounds:(round_no + 1) * len(results) // args.rounds]
            print_table(f"Round {round_no + 1}", summarise(per_round))
        title += f"; median of {args.rounds} rounds"
    print_table(title, summary)
    distinct = {json.dumps(v, sort_keys=True) for v in rows.values()}
    print("\nrows per incident" + (" (every phase): " + distinct.pop() if len(distinct) == 1
                                   else ": " + json.dumps(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
