"""The contract every transport keeps. Only transports talk to authorities.

A transport sends one frozen report and classifies the outcome; it never touches the database and
never retries by itself (retry timing is the delivery service's, driven by the deadline).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from reporting.choices import AttemptOutcome


@dataclass(frozen=True)
class FrozenReport:
    """Everything a transport needs, with no ORM objects: safe to use outside any transaction."""

    message_id: str  # Report.public_id: the same on every retry (webhook-id, STIX report id seed)
    payload: bytes  # canonical JSON (RFC 8785) of the signed report document, exactly as stored
    document: dict  # the same document, parsed (for transports that re-encode it, e.g. STIX)
    payload_sha256: str
    stage_name: str
    stage_kind: str
    sequence: int


@dataclass(frozen=True)
class Endpoint:
    transport: str
    address: str
    username: str = ""
    secret: str = ""  # decrypted webhook secret or TAXII password; never logged
    tlp: str = "TLP:AMBER+STRICT"


@dataclass(frozen=True)
class SendResult:
    outcome: AttemptOutcome
    http_status: int | None = None
    receipt: dict | None = None  # what the receiver answered, kept as proof of submission
    response_excerpt: str = ""  # at most 2,000 characters
    error_class: str = ""  # e.g. "ConnectTimeout", "HTTP 503", "SchemaRejected"
    retry_after_seconds: float | None = None  # a receiver's Retry-After, honoured within the deadline
    details: dict = field(default_factory=dict)


class Transport(Protocol):
    def send(self, report: FrozenReport, endpoint: Endpoint, *, timeout_seconds: float) -> SendResult: ...
