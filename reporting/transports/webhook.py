"""JSON over HTTPS with Standard Webhooks headers: the default way a report reaches an authority.

The payload is POSTed exactly as frozen; ``webhook-id`` is the report's message id, so a retry carries
the same id and the same bytes and the receiver can dedupe it. Only ``webhook-timestamp`` and the
signature change between attempts (a receiver rejects timestamps older than a few minutes, so an old
signature could not be replayed anyway).

Outcome classification (the delivery service decides what happens next):
- 2xx: delivered; the receiver's answer is kept as the receipt.
- timeouts, connection and protocol errors, 5xx, 408, 429: transient (retried within the deadline).
- 3xx and every other 4xx: permanent. Redirects are never followed: a report must not be re-sent to an
  address nobody configured, and a moved endpoint is something a person must confirm.
"""
from __future__ import annotations

import json
import os
import ssl
import threading
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from django.conf import settings
from standardwebhooks import Webhook

from reporting.choices import AttemptOutcome
from reporting.transports.base import Endpoint, FrozenReport, SendResult

EXCERPT_CHARS = 2000
# A receipt is a small JSON document; reading more than this from a receiver only costs memory.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "mir-webhook/1"
TRANSIENT_4XX = frozenset({408, 429})


class WebhookTransport:
    def send(self, report: FrozenReport, endpoint: Endpoint, *, timeout_seconds: float) -> SendResult:
        problem = _configuration_problem(report, endpoint)
        if problem is not None:
            return problem
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": report.message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(
                secret=endpoint.secret, message_id=report.message_id, timestamp=timestamp, payload=report.payload
            ),
        }
        timeout = httpx.Timeout(connect=timeout_seconds, read=timeout_seconds, write=timeout_seconds,
                                pool=timeout_seconds)
        # httpx's read timeout bounds each read, not the whole body: a receiver trickling bytes could
        # otherwise hold a worker far past its timeout. Connect, write and read each get the timeout once.
        deadline = time.monotonic() + 3 * timeout_seconds
        details = {"webhook_timestamp": timestamp}
        try:
            with shared_client().stream(
                "POST", endpoint.address, content=report.payload, headers=headers, timeout=timeout
            ) as response:
                body = _read_capped(response, deadline)
        except httpx.UnsupportedProtocol as exc:  # before TransportError: it is one, but retrying cannot help
            return _permanent("UnsupportedProtocol", str(exc), details)
        except httpx.InvalidURL as exc:
            return _permanent("InvalidURL", str(exc), details)
        except (httpx.TransportError, httpx.StreamError) as exc:
            # Timeouts, refused or reset connections, TLS failures, a receiver that hung up mid-answer.
            # All may clear on their own (a TLS failure too: an expired certificate gets renewed), and the
            # escalations tell people long before the deadline if they do not.
            return SendResult(
                outcome=AttemptOutcome.TRANSIENT, error_class=_error_class(exc),
                response_excerpt=str(exc)[:EXCERPT_CHARS], details=details,
            )
        return classify(response, body, details)


def sign(*, secret: str, message_id: str, timestamp: int, payload: bytes) -> str:
    """The ``webhook-signature`` value, made by the official library so any receiver can verify it with it."""
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(message_id, when, payload.decode("utf-8"))


def classify(response: httpx.Response, body: bytes, details: dict) -> SendResult:
    status = response.status_code
    excerpt = body.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    details = {**details, "content_type": response.headers.get("content-type", "")}
    if 200 <= status < 300:
        return SendResult(outcome=AttemptOutcome.DELIVERED, http_status=status, receipt=_receipt(body, excerpt),
                          response_excerpt=excerpt, details=details)
    if 300 <= status < 400:
        details["location"] = response.headers.get("location", "")
        outcome = AttemptOutcome.PERMANENT
    elif 400 <= status < 500 and status not in TRANSIENT_4XX:
        outcome = AttemptOutcome.PERMANENT
    else:
        # 5xx, 408, 429, and codes outside the known classes: the receiver dedupes by webhook-id, so
        # trying again is always safe, while giving up on an odd code could miss a deadline.
        outcome = AttemptOutcome.TRANSIENT
    return SendResult(
        outcome=outcome, http_status=status, response_excerpt=excerpt, error_class=f"HTTP {status}",
        retry_after_seconds=parse_retry_after(response.headers.get("retry-after")), details=details,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or HTTP-date), None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _configuration_problem(report: FrozenReport, endpoint: Endpoint) -> SendResult | None:
    """Errors no retry can fix: they need a person, so they are permanent at once."""
    if not endpoint.secret:
        return _permanent("MissingSecret", "the destination has no webhook secret; reports are never sent unsigned")
    try:
        Webhook(endpoint.secret)
    except Exception as exc:  # noqa: BLE001  (the library raises several types for a malformed secret)
        return _permanent("InvalidSecret", f"the webhook secret is not a whsec_ base64 value ({type(exc).__name__})")
    try:
        report.payload.decode("utf-8")
    except UnicodeDecodeError:
        return _permanent("InvalidPayload", "the frozen payload is not UTF-8 JSON")
    return None


def _permanent(error_class: str, message: str, details: dict | None = None) -> SendResult:
    return SendResult(outcome=AttemptOutcome.PERMANENT, error_class=error_class,
                      response_excerpt=message[:EXCERPT_CHARS], details=details or {})


def _read_capped(response: httpx.Response, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
            # The status line has arrived, which is what decides the outcome; the rest is only an excerpt.
            break
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]


def _receipt(body: bytes, excerpt: str) -> dict:
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"body": excerpt}


def _error_class(exc: Exception) -> str:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return "TLSCertificateError"
        cause = cause.__cause__ or cause.__context__
    return type(exc).__name__


# --- the shared client --------------------------------------------------------------------------
# One keep-alive client per process. Celery's prefork pool forks workers after import: a client
# inherited from the parent would share its sockets (and TLS state) with the parent and siblings, so a
# process only ever uses a client it created itself. The inherited one is abandoned, not closed:
# closing it would shut down sockets the parent still uses.
_client: httpx.Client | None = None
_client_key: tuple[int, str | None] | None = None
_client_lock = threading.Lock()


def shared_client() -> httpx.Client:
    global _client, _client_key
    ca_bundle = getattr(settings, "MIR_WEBHOOK_CA_BUNDLE", None) or None
    key = (os.getpid(), ca_bundle)
    with _client_lock:
        if _client is None or _client_key != key:
            if _client is not None and _client_key is not None and _client_key[0] == key[0]:
                _client.close()  # ours, made for another CA bundle (settings changed, e.g. in tests)
            # trust_env stays on: an operator's HTTPS_PROXY / NO_PROXY apply, as for any outbound client.
            _client = httpx.Client(verify=_verify(ca_bundle), follow_redirects=False)
            _client_key = key
        return _client


def _verify(ca_bundle: str | None) -> ssl.SSLContext | bool:
    if ca_bundle is None:
        return True  # httpx's default: the certifi bundle, hostname checked
    # With a bundle given, only that bundle is trusted: it is meant for an authority on a private CA
    # (or the sandbox), and mixing in the public roots would widen who can pose as the receiver.
    return ssl.create_default_context(cafile=ca_bundle)
