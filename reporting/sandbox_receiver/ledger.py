"""The receiver's memory: what arrived (the ledger) and how it is told to behave (the control state).

Both live in one SQLite file under the data folder, so every thread of the threaded server, and every
worker process under gunicorn, sees the same ledger and counts down the same ``fail_count``. Writes
take SQLite's write lock up front (BEGIN IMMEDIATE): the dedupe check and the insert are one step, so
two copies of a message arriving at once still make one accepted entry and one duplicate.
"""
from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

MODES = ("ok", "fail", "slow", "reject", "down")
BUSY_TIMEOUT_SECONDS = 30.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('accepted', 'rejected')),
    received_at TEXT NOT NULL,
    last_received_at TEXT NOT NULL,
    payload_sha256 TEXT NOT NULL,
    duplicates INTEGER NOT NULL DEFAULT 0,
    -- duplicates whose bytes differed from the first copy: the sender broke "retries resend the same bytes"
    mismatched_duplicates INTEGER NOT NULL DEFAULT 0,
    verified INTEGER NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    receipt TEXT,
    summary TEXT NOT NULL DEFAULT '{}',
    body BLOB NOT NULL
);
-- Dedupe: one accepted entry per webhook-id. Rejections are a log (a later, valid copy is still accepted).
CREATE UNIQUE INDEX IF NOT EXISTS messages_accepted_once ON messages (webhook_id) WHERE status = 'accepted';
CREATE TABLE IF NOT EXISTS control (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL
);
"""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Control:
    mode: str = "ok"
    delay_seconds: float = 5.0  # how long "slow" waits before it answers
    fail_count: int | None = None  # apply the mode to this many deliveries, then back to "ok"; None: until changed
    retry_after_seconds: int | None = None  # sent as Retry-After with "fail" (503)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Accepted:
    receipt: dict
    duplicate: bool


class Ledger:
    def __init__(self, data_dir: str | Path):
        folder = Path(data_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "ledger.sqlite3"
        with self._connect() as conn:
            # WAL: readers (GET /ledger) never wait for a writer, nor a writer for them.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: cheap for SQLite, and never shared between threads or across a fork.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        conn.row_factory = sqlite3.Row
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- deliveries --------------------------------------------------------------------------------
    def accept(self, *, webhook_id: str, body: bytes, payload_sha256: str, verified: bool, reason: str,
               summary: dict) -> Accepted:
        """Record a delivery, or count it as a duplicate of the accepted one with the same webhook-id."""
        now = utc_now()
        with self._write() as conn:
            row = conn.execute(
                "SELECT id, receipt, payload_sha256 FROM messages WHERE webhook_id = ? AND status = 'accepted'",
                (webhook_id,),
            ).fetchone()
            if row is not None:
                mismatch = int(row["payload_sha256"] != payload_sha256)
                conn.execute(
                    "UPDATE messages SET duplicates = duplicates + 1, mismatched_duplicates = mismatched_duplicates"
                    " + ?, last_received_at = ? WHERE id = ?",
                    (mismatch, now, row["id"]),
                )
                return Accepted(receipt={**json.loads(row["receipt"]), "duplicate": True}, duplicate=True)
            receipt = {"receipt_id": str(uuid.uuid4()), "webhook_id": webhook_id, "received_at": now,
                       "payload_sha256": payload_sha256}
            conn.execute(
                "INSERT INTO messages (webhook_id, status, received_at, last_received_at, payload_sha256, verified,"
                " reason, receipt, summary, body) VALUES (?, 'accepted', ?, ?, ?, ?, ?, ?, ?, ?)",
                (webhook_id, now, now, payload_sha256, int(verified), reason, json.dumps(receipt),
                 json.dumps(summary), body),
            )
        return Accepted(receipt={**receipt, "duplicate": False}, duplicate=False)

    def reject(self, *, webhook_id: str, body: bytes, payload_sha256: str, reason: str, summary: dict) -> None:
        now = utc_now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO messages (webhook_id, status, received_at, last_received_at, payload_sha256, verified,"
                " reason, summary, body) VALUES (?, 'rejected', ?, ?, ?, 0, ?, ?, ?)",
                (webhook_id, now, now, payload_sha256, reason, json.dumps(summary), body),
            )

    def entries(self, *, limit: int = 500) -> list[dict]:
        """The latest ``limit`` entries, oldest first (the order they arrived in)."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM (SELECT * FROM messages ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,)
            ).fetchall()
        return [
            {
                "webhook_id": row["webhook_id"],
                "status": row["status"],
                "received_at": row["received_at"],
                "last_received_at": row["last_received_at"],
                "payload_sha256": row["payload_sha256"],
                "duplicates": row["duplicates"],
                "mismatched_duplicates": row["mismatched_duplicates"],
                "verified": bool(row["verified"]),
                "reason": row["reason"],
                "receipt_id": json.loads(row["receipt"])["receipt_id"] if row["receipt"] else None,
                "document": json.loads(row["summary"]),
            }
            for row in rows
        ]

    def body(self, webhook_id: str) -> bytes | None:
        """The bytes as received: of the accepted copy, else of the latest rejected one."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT body FROM messages WHERE webhook_id = ? ORDER BY status = 'accepted' DESC, id DESC LIMIT 1",
                (webhook_id,),
            ).fetchone()
        return bytes(row["body"]) if row is not None else None

    # --- control -----------------------------------------------------------------------------------
    def control(self) -> Control:
        with self._connect() as conn:
            row = conn.execute("SELECT state FROM control WHERE id = 1").fetchone()
        return Control(**json.loads(row["state"])) if row is not None else Control()

    def set_control(self, control: Control) -> Control:
        if control.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if control.mode == "ok" or control.fail_count == 0:
            control = Control(delay_seconds=control.delay_seconds)  # nothing left to count down
        with self._write() as conn:
            self._store(conn, control)
        return control

    def take_control(self) -> Control:
        """The behaviour for one delivery request, counting it against ``fail_count``."""
        current = self.control()
        if current.fail_count is None:
            return current  # no countdown: nothing to write, no write lock for every delivery
        with self._write() as conn:
            row = conn.execute("SELECT state FROM control WHERE id = 1").fetchone()
            current = Control(**json.loads(row["state"])) if row is not None else Control()
            if current.fail_count is not None:
                remaining = current.fail_count - 1
                after = Control(delay_seconds=current.delay_seconds) if remaining <= 0 else Control(
                    **{**current.as_dict(), "fail_count": remaining})
                self._store(conn, after)
        return current

    @staticmethod
    def _store(conn: sqlite3.Connection, control: Control) -> None:
        conn.execute(
            "INSERT INTO control (id, state) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            (json.dumps(control.as_dict()),),
        )
