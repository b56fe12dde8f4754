"""The sandbox receiver as a plain WSGI application (no framework: it plays an outside party).

Routes:
  POST /webhook            a delivery: Standard Webhooks signature (401), document signature (422),
                           dedupe by webhook-id, 200 with a receipt
  GET  /ledger             what arrived, as a JSON list (?limit=N, latest N, oldest first)
  GET  /ledger/<webhook_id> the body exactly as received
  GET  /control            how deliveries are currently answered
  POST /control            change it: {"mode", "delay_seconds", "fail_count", "retry_after_seconds"}
  GET  /healthz            liveness (always answers, whatever the mode)
The failure modes apply to POST /webhook only, so a sandbox told to be "down" can still be told to recover.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from urllib.parse import parse_qs

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from .envelope import document_summary, verify_document
from .keys import KeysUnavailable
from .ledger import MODES, Control, Ledger

logger = logging.getLogger("sandbox_receiver")

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_CONTROL_BYTES = 64 * 1024
MAX_DELAY_SECONDS = 3600
KEYS_RETRY_AFTER_SECONDS = 5
CONTROL_FIELDS = frozenset({"mode", "delay_seconds", "fail_count", "retry_after_seconds"})

Response = tuple[int, list[tuple[str, str]], bytes]


class DropConnection(ConnectionAbortedError):
    """Hang up without answering ("down" mode).

    wsgiref's handler swallows a ConnectionAbortedError without writing anything, and gunicorn closes
    the socket quietly on an OSError whose errno is ECONNRESET: either way the sender sees a connection
    closed with no response, like a crashed backend behind a load balancer.
    """

    def __init__(self) -> None:
        super().__init__(errno.ECONNRESET, "sandbox receiver is in 'down' mode")


class RequestError(Exception):
    def __init__(self, status: int, error: str, detail: str):
        super().__init__(detail)
        self.response = json_response(status, {"error": error, "detail": detail})


def json_response(status: int, data: object, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return status, [("Content-Type", "application/json"), *headers], json.dumps(data).encode()


class SandboxApp:
    def __init__(self, *, secret: str, ledger: Ledger, keys: Mapping[str, bytes] | None,
                 max_body_bytes: int = MAX_BODY_BYTES):
        """``keys`` None turns the document check off: deliveries are accepted with ``verified`` false."""
        self.webhook = Webhook(secret)  # fails at start for a malformed secret, not at the first delivery
        self.ledger = ledger
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        # Set when the server stops, so a "slow" request does not hold the shutdown for its whole delay.
        self.stopping = threading.Event()

    def __call__(self, environ: dict, start_response: Callable) -> list[bytes]:
        try:
            status, headers, body = self.route(environ)
        except DropConnection:
            raise
        except RequestError as exc:
            status, headers, body = exc.response
        except Exception:  # noqa: BLE001  (a bug here must still answer, and say so, not kill the thread)
            logger.exception("sandbox receiver: error handling %s %s", environ.get("REQUEST_METHOD"),
                             environ.get("PATH_INFO"))
            status, headers, body = json_response(500, {"error": "internal", "detail": "see the receiver's log"})
        phrase = HTTPStatus(status).phrase
        start_response(f"{status} {phrase}", [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def route(self, environ: dict) -> Response:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        if path == "/webhook":
            return self.deliver(environ) if method == "POST" else _not_allowed("POST")
        if path == "/healthz":
            return json_response(200, {"status": "ok", "mode": self.ledger.control().mode}) if method == "GET" \
                else _not_allowed("GET")
        if path == "/control":
            if method == "GET":
                return json_response(200, self.ledger.control().as_dict())
            return self.set_control(environ) if method == "POST" else _not_allowed("GET, POST")
        if path == "/ledger":
            return self.list_ledger(environ) if method == "GET" else _not_allowed("GET")
        if path.startswith("/ledger/") and len(path) > len("/ledger/"):
            return self.raw_body(path[len("/ledger/"):]) if method == "GET" else _not_allowed("GET")
        raise RequestError(404, "not_found", f"no such path: {path}")

    # --- deliveries --------------------------------------------------------------------------------
    def deliver(self, environ: dict) -> Response:
        body = read_body(environ, self.max_body_bytes)
        control = self.ledger.take_control()
        if control.mode == "down":
            raise DropConnection
        if control.mode == "fail":
            retry = [("Retry-After", str(control.retry_after_seconds))] if control.retry_after_seconds is not None \
                else []
            return json_response(503, {"error": "unavailable", "detail": "sandbox receiver is in 'fail' mode"}, retry)
        if control.mode == "reject":
            return json_response(400, {"error": "rejected", "detail": "sandbox receiver is in 'reject' mode"})
        if control.mode == "slow":
            self.stopping.wait(control.delay_seconds)

        headers = {
            name: environ.get("HTTP_" + name.upper().replace("-", "_"), "")
            for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        }
        try:
            self.webhook.verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError, TypeError) as exc:
            # ValueError: malformed signature lists, bad base64, a body that is not UTF-8.
            return json_response(401, {"error": "bad_webhook_signature", "detail": str(exc) or type(exc).__name__})
        webhook_id = headers["webhook-id"]
        digest = hashlib.sha256(body).hexdigest()
        summary = document_summary(body)

        if self.keys is None:
            verified, reason = False, "document check disabled"
        else:
            try:
                verified, reason = verify_document(body, self.keys, webhook_id=webhook_id)
            except KeysUnavailable as exc:
                # Not the sender's fault: 503 so it retries, never a 4xx that would make it give up.
                logger.warning("sandbox receiver: cannot check %s: %s", webhook_id, exc)
                return json_response(503, {"error": "keys_unavailable", "detail": str(exc)},
                                     [("Retry-After", str(KEYS_RETRY_AFTER_SECONDS))])
            if not verified:
                self.ledger.reject(webhook_id=webhook_id, body=body, payload_sha256=digest, reason=reason,
                                   summary=summary)
                logger.info("sandbox receiver: rejected %s: %s", webhook_id, reason)
                return json_response(422, {"error": "bad_document_signature", "detail": reason})
            reason = ""
        accepted = self.ledger.accept(webhook_id=webhook_id, body=body, payload_sha256=digest, verified=verified,
                                      reason=reason, summary=summary)
        logger.info("sandbox receiver: %s %s (receipt %s)", "duplicate" if accepted.duplicate else "accepted",
                    webhook_id, accepted.receipt["receipt_id"])
        return json_response(200, accepted.receipt)

    # --- reading and control -----------------------------------------------------------------------
    def list_ledger(self, environ: dict) -> Response:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        raw = query.get("limit", ["500"])[-1]
        if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
            raise RequestError(400, "bad_limit", "limit must be an integer from 1 to 10000")
        return json_response(200, self.ledger.entries(limit=int(raw)))

    def raw_body(self, webhook_id: str) -> Response:
        body = self.ledger.body(webhook_id)
        if body is None:
            raise RequestError(404, "not_found", f"nothing received with webhook-id {webhook_id}")
        return 200, [("Content-Type", "application/json")], body

    def set_control(self, environ: dict) -> Response:
        try:
            data = json.loads(read_body(environ, MAX_CONTROL_BYTES) or b"{}")
        except ValueError:
            raise RequestError(400, "bad_control", "the body must be JSON") from None
        try:
            control = self.ledger.set_control(parse_control(data))
        except ValueError as exc:
            raise RequestError(400, "bad_control", str(exc)) from None
        logger.info("sandbox receiver: control set to %s", control.as_dict())
        return json_response(200, control.as_dict())


def parse_control(data: object) -> Control:
    """A complete new control state: omitted fields take their defaults, so a POST is never ambiguous."""
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(data) - CONTROL_FIELDS
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}; known: {', '.join(sorted(CONTROL_FIELDS))}")
    fail_count = _optional_int(data, "fail_count")
    # {"fail_count": 2} alone means "fail the next two", the common case.
    mode = data.get("mode", "fail" if fail_count is not None else "ok")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    delay = data.get("delay_seconds", Control.delay_seconds)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY_SECONDS:
        raise ValueError(f"delay_seconds must be a number from 0 to {MAX_DELAY_SECONDS}")
    return Control(mode=mode, delay_seconds=float(delay), fail_count=fail_count,
                   retry_after_seconds=_optional_int(data, "retry_after_seconds"))


def _optional_int(data: dict, name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer or null")
    return value


def read_body(environ: dict, limit: int) -> bytes:
    raw = environ.get("CONTENT_LENGTH") or ""
    if not raw.isdigit():
        raise RequestError(411, "length_required", "send a Content-Length")
    length = int(raw)
    if length > limit:
        raise RequestError(413, "too_large", f"at most {limit} bytes")
    return environ["wsgi.input"].read(length) if length else b""


def _not_allowed(allowed: str) -> Response:
    return json_response(405, {"error": "method_not_allowed", "detail": f"allowed: {allowed}"}, [("Allow", allowed)])
