"""The delivery stack as real processes on loopback, for end-to-end tests that break things on purpose.

``Stack(workdir)`` starts, each in a process group of its own with its output in a log file under
``workdir``: gunicorn serving ``reporting.wsgi`` (the detector API and the published signing keys), the
sandbox receiver, medallion (a real TAXII 2.1 server), Celery workers and beats, and, when asked, a
private ``redis-server`` (so a test may stop the broker without touching the machine's shared Redis).
Every process gets the test database (use pytest-django's ``transactional_db``: the test's rows are
committed, so the processes see them), one broker, a queue of its own (``MIR_CELERY_QUEUE``, so
leftovers in a shared Redis never reach this run) and short intervals (sweep, lease, timeout).
``close()`` stops exactly what the stack started, by pid: SIGTERM, a bounded wait, then SIGKILL for
the process group. Waits are bounded (``wait_until``) and a failure message carries the logs.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from django.db import connection

from tests.reporting.conftest import new_webhook_secret
from tests.reporting.taxii_server import TaxiiServer, start_taxii_server, stop_taxii_server

BASE_DIR = Path(__file__).resolve().parents[2]
SHARED_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
REDIS_SERVER = "/usr/bin/redis-server"
START_TIMEOUT = 45.0
STOP_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_database_url() -> str:
    """A URL for the database this test runs on (pytest-django's ``test_<name>``), for the child processes."""
    db = connection.settings_dict
    assert connection.vendor == "postgresql", "the delivery e2e tests need PostgreSQL: run them with `make test`"
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host, port = db["HOST"] or "127.0.0.1", db["PORT"] or 5432
    return f"postgres://{user}{password}@{host}:{port}/{quote(db['NAME'], safe='')}"


def wait_until(predicate: Callable[[], Any], timeout: float, *, what: str, stack: Stack | None = None,
               interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned) or ``timeout`` seconds pass (fail).

    With a ``stack``, a process of it that died unexpectedly fails the wait at once, with the logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if stack is not None:
            stack.assert_running(f"while waiting for {what}")
        if time.monotonic() >= deadline:
            logs = f"\n{stack.logs()}" if stack is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{logs}")
        time.sleep(interval)


@dataclass
class Proc:
    name: str
    process: subprocess.Popen
    log: Path
    expected_running: bool = True

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Stack:
    def __init__(self, workdir: Path, *, lease_seconds: int = 10, sweep_seconds: int = 1,
                 delivery_timeout_seconds: int = 10, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.queue = f"e2e-{uuid.uuid4().hex[:12]}"
        self.broker_url = SHARED_BROKER_URL
        self.secret = new_webhook_secret()
        self.procs: list[Proc] = []
        self.redis: Proc | None = None
        self.taxii: TaxiiServer | None = None
        self.web_port = free_port()
        self.receiver_port = free_port()
        self.extra_env = {
            "MIR_DELIVERY_LEASE_SECONDS": str(lease_seconds), "MIR_SWEEP_INTERVAL_SECONDS": str(sweep_seconds),
            "MIR_DELIVERY_TIMEOUT_SECONDS": str(delivery_timeout_seconds), **(env or {}),
        }
        self._counter = 0

    def __enter__(self) -> Stack:  # whatever happens in the test, everything the stack started is stopped
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- processes ---------------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"CACHE_URL", "DJANGO_SETTINGS_MODULE"}}
        env.update(
            DATABASE_URL=child_database_url(), CELERY_BROKER_URL=self.broker_url, MIR_ENV="test",
            MIR_VAR_DIR=str(self.workdir / "var"), MIR_CELERY_QUEUE=self.queue, PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="reporting.settings", MIR_SANDBOX_SECRET=self.secret, **self.extra_env,
        )
        return env

    def spawn(self, name: str, argv: list[str]) -> Proc:
        self._counter += 1
        log = self.workdir / f"{self._counter:02d}-{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603  (our interpreter and fixed arguments)
                argv, cwd=BASE_DIR, env=self.env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                process_group=0,  # its own group: a kill reaches its children (Celery's pool) too
            )
        proc = Proc(name=name, process=process, log=log)
        self.procs.append(proc)
        return proc

    def stop(self, *procs: Proc) -> None:
        """SIGTERM to each leader, one bounded wait, then SIGKILL for whatever is left of each process group."""
        for proc in procs:
            proc.expected_running = False
            with suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for proc in procs:
            with suppress(subprocess.TimeoutExpired):
                proc.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        for proc in procs:
            self.kill(proc)

    def kill(self, proc: Proc) -> None:
        """SIGKILL for the process and its group (a Celery worker's pool children die with it)."""
        proc.expected_running = False
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.process.wait(timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + 5
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.stop(*self.procs)
        if self.taxii is not None:
            stop_taxii_server(self.taxii)
        if self.redis is None:
            _forget_queue(self.broker_url, self.queue)

    def assert_running(self, when: str = "") -> None:
        dead = [p for p in self.procs if p.expected_running and not p.alive()]
        if dead:
            names = ", ".join(f"{p.name} (pid {p.pid}, exit {p.process.returncode})" for p in dead)
            raise AssertionError(f"{names} exited {when}\n{self.logs()}")

    def task_failures(self) -> list[str]:
        """Lines where a worker reports a task that raised (a deadlock, a bug): none is expected, ever."""
        return [line for p in self.procs if p.name.startswith("worker") for line in p.output().splitlines()
                if "raised unexpected" in line]

    def logs(self, chars: int = 2500) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}) ---\n{p.output()[-chars:]}" for p in self.procs)

    # --- components --------------------------------------------------------------------------------
    def start_redis(self, port: int | None = None) -> Proc:
        """A private broker: redis-server without persistence on a free loopback port (or ``port``, a restart)."""
        port = port or free_port()
        argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir)]
        self.redis = self.spawn("redis", argv)
        self.broker_url = f"redis://127.0.0.1:{port}/0"
        wait_until(lambda: _redis_ping(port), 10, what="redis-server to answer PING", stack=self)
        return self.redis

    @property
    def redis_port(self) -> int:
        return int(self.broker_url.rsplit(":", 1)[1].split("/")[0])

    def start_web(self) -> Proc:
        argv = [sys.executable, "-m", "gunicorn", "reporting.wsgi:application", "--bind", f"127.0.0.1:{self.web_port}",
                "--workers", "2", "--threads", "4", "--timeout", "60", "--graceful-timeout", "3",
                "--no-control-socket"]
        return self.spawn("web", argv)

    def start_receiver(self, **control: Any) -> Proc:
        argv = [sys.executable, "-m", "reporting.sandbox_receiver", "--port", str(self.receiver_port),
                "--keys-url", f"{self.api_url}/.well-known/mir-signing-keys.json",
                "--data-dir", str(self.workdir / "sandbox")]
        for name, value in control.items():
            argv += [f"--{name.replace('_', '-')}", str(value)]
        proc = self.spawn("receiver", argv)
        wait_until(lambda: _answers(f"{self.receiver_url}/healthz"), START_TIMEOUT, what="the receiver", stack=self)
        return proc

    def start_taxii(self) -> TaxiiServer:
        self.taxii = start_taxii_server(self.workdir / "taxii")
        return self.taxii

    def start_worker(self, name: str = "worker") -> Proc:
        argv = [sys.executable, "-m", "celery", "-A", "reporting", "worker", "-Q", self.queue, "-c", "2",
                "-n", f"{name}-{self.queue}@%h", "--without-heartbeat", "--without-gossip", "--without-mingle",
                "--loglevel", "INFO"]
        return self.spawn(name, argv)

    def start_beat(self, name: str = "beat") -> Proc:
        argv = [sys.executable, "-m", "celery", "-A", "reporting", "beat", "--loglevel", "INFO",
                "--schedule", str(self.workdir / f"{name}-schedule")]
        return self.spawn(name, argv)

    def wait_ready(self, *procs: Proc, timeout: float = START_TIMEOUT) -> None:
        """Wait until the web answers, each worker is consuming and each beat has started."""
        for proc in procs:
            if proc.name.startswith("web"):
                wait_until(lambda: _answers(f"{self.api_url}/healthz"), timeout, what="gunicorn", stack=self)
            elif proc.name.startswith("worker"):
                wait_until(lambda p=proc: " ready." in p.output(), timeout, what=f"{proc.name} ready", stack=self)
            elif proc.name.startswith("beat"):
                wait_until(lambda p=proc: "beat: Starting" in p.output(), timeout, what=f"{proc.name}", stack=self)

    def up(self, *, workers: int = 1, beats: int = 1, taxii: bool = False, **receiver_control: Any) -> None:
        """The usual stack: web, receiver, ``workers`` workers, ``beats`` beats (and medallion), all ready."""
        procs = [self.start_web()]
        procs += [self.start_worker(f"worker{i + 1}") for i in range(workers)]
        procs += [self.start_beat(f"beat{i + 1}") for i in range(beats)]
        if taxii:
            self.start_taxii()
        self.start_receiver(**receiver_control)
        self.wait_ready(*procs)

    # --- talking to it -----------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.receiver_port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.receiver_url}/webhook"

    def receiver_control(self, **control: Any) -> dict:
        answer = httpx.post(f"{self.receiver_url}/control", json=control, timeout=5)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def ledger(self) -> list[dict]:
        answer = httpx.get(f"{self.receiver_url}/ledger", params={"limit": 10_000}, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def manage(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``python manage.py ARGS`` as another process of the stack (same database, broker and queue)."""
        return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=self.env(),  # noqa: S603
                              capture_output=True, text=True, timeout=timeout, check=False)

    def post_incident(self, token: str, body: dict, *, key: str | None = None, timeout: float = 30) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key or str(uuid.uuid4())}
        return httpx.post(f"{self.api_url}/api/v1/incidents/", json=body, headers=headers, timeout=timeout)


def _forget_queue(broker_url: str, queue: str) -> None:
    """Delete this run's queue and its bindings from the shared Redis: whatever beat sent after the workers
    stopped would otherwise stay there for good (kombu keeps a list per priority step, 0 being the name)."""
    import redis

    client = redis.Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.delete(queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9)), f"_kombu.binding.{queue}",
                      f"_kombu.binding_permanent.{queue}")
    except redis.RedisError:
        pass  # only tidiness: a unique queue name already keeps leftovers away from other runs
    finally:
        client.close()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- what arrived against what the database says ------------------------------------------------------
def sendable_reports(**filters: Any) -> list:
    """Reports that must reach their destination by themselves (not held for a person's approval)."""
    from reporting.choices import ReportStatus
    from reporting.models import Report

    return list(Report.objects.exclude(status=ReportStatus.AWAITING_APPROVAL).filter(**filters)
                .select_related("destination", "incident").order_by("id"))


def all_delivered(expected: int) -> bool:
    reports = sendable_reports()
    return len(reports) >= expected and all(r.status == "delivered" for r in reports)


def assert_ledger_matches_db(stack: Stack, *destinations: Any, every_send_recorded: bool = True) -> dict[str, dict]:
    """The receiver's ledger and the database agree on the reports of ``destinations`` (the webhook ones
    pointing at the sandbox, which share its secret): each delivered report is
    accepted exactly once under its id, verified, with the bytes the database froze; nothing is missing and
    nothing extra arrived. A repeat is recognisable: the ledger counts it as a duplicate of the same id, and
    the database holds one delivery (one audit event) however often it was sent. With
    ``every_send_recorded``, every copy that reached the receiver is a DeliveryAttempt (nobody was killed)."""
    from incidents.models import AuditEvent

    assert not stack.task_failures(), "\n".join(stack.task_failures())
    entries = stack.ledger()
    assert not [e for e in entries if e["status"] != "accepted"], f"rejected deliveries: {entries}"
    ids = [e["webhook_id"] for e in entries]
    assert len(ids) == len(set(ids)), "the receiver accepted one id twice"
    by_id = {e["webhook_id"]: e for e in entries}
    reports = {str(r.public_id): r for r in sendable_reports(destination__in=destinations)}
    assert set(reports) == set(by_id), (f"missing at the receiver: {set(reports) - set(by_id)}; "
                                        f"unknown to the database: {set(by_id) - set(reports)}")
    for report_id, report in reports.items():
        entry = by_id[report_id]
        assert report.status == "delivered" and report.delivered_at, report
        assert entry["verified"] and entry["payload_sha256"] == report.payload_sha256, entry
        assert entry["mismatched_duplicates"] == 0, "a retry sent different bytes"
        assert entry["document"]["report_id"] == report_id, entry
        assert entry["document"]["incident_id"] == str(report.incident.public_id), entry
        assert report.receipt["webhook_id"] == report_id and report.receipt["receipt_id"] == entry["receipt_id"]
        assert report.lease_token is None and report.next_attempt_at is None
        if report.receipt.get("duplicate"):
            assert entry["duplicates"] >= 1, "a receipt says duplicate but the ledger counted no repeat"
        delivered = report.attempts.filter(outcome="delivered").count()
        assert 1 <= delivered <= 1 + entry["duplicates"], (report_id, delivered, entry)
        if every_send_recorded:
            assert delivered == 1 + entry["duplicates"], (report_id, delivered, entry)
        audits = AuditEvent.objects.filter(action="report_delivered", changes__report=report_id).count()
        assert audits == 1, f"report {report_id} delivered {audits} times in the audit trail"
    return by_id


def assert_taxii_matches_db(stack: Stack, destination: Any) -> None:
    """Every delivered report of ``destination`` is in the TAXII collection once, with its incident, and
    the collection holds no report the database does not know."""
    from taxii2client.v21 import Collection

    from reporting.packaging.stix import MIR_EXTENSION

    assert stack.taxii is not None
    reports = {str(r.public_id): r for r in sendable_reports(destination=destination)}
    server = stack.taxii
    with Collection(server.collection_url(), user=server.username, password=server.password) as collection:
        stored_reports = collection.get_objects(type="report").get("objects", [])
        assert {o["extensions"][MIR_EXTENSION]["message_id"] for o in stored_reports} == set(reports)
        for report_id, report in reports.items():
            assert report.status == "delivered" and report.receipt["status"] == "complete", report.receipt
            versions = collection.get_object(report.receipt["report_object_id"], version="all").get("objects", [])
            assert len(versions) == 1, f"report {report_id} stored {len(versions)} times"
            extension = versions[0]["extensions"][MIR_EXTENSION]
            assert extension["message_id"] == report_id and extension["payload_sha256"] == report.payload_sha256
            refs = collection.get_objects(id=versions[0]["object_refs"]).get("objects", [])
            incidents = [o for o in refs if o["type"] == "incident"]
            assert len(incidents) == 1, refs
            assert report.attempts.filter(outcome="delivered").count() == 1
