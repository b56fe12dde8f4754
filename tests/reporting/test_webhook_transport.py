"""WebhookTransport against real HTTP(S) servers on 127.0.0.1 (no mocks of the network)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import rfc8785
from standardwebhooks import Webhook

from reporting.choices import AttemptOutcome
from reporting.transports import TRANSPORTS, transport_for
from reporting.transports.base import Endpoint, FrozenReport
from reporting.transports.webhook import WebhookTransport, parse_retry_after, shared_client
from tests.reporting.local_http import LocalServer, Reply, free_port, self_signed_certificate, server_tls_context

SECRET = "whsec_" + base64.b64encode(b"sandbox-secret-of-32-bytes-long!").decode()
MESSAGE_ID = "5f0c2b9e-3d1a-4c55-9d8e-0a6b1f2c3d4e"


def frozen_report(document: dict | None = None) -> FrozenReport:
    document = document or {"incident_id": "INC-1", "stage": "initial", "title": "Phishing kit", "note": "é ✓"}
    payload = rfc8785.dumps({"document": document, "signature": {"alg": "Ed25519", "key_id": "k", "value": "x"}})
    return FrozenReport(message_id=MESSAGE_ID, payload=payload, document=document,
                        payload_sha256=hashlib.sha256(payload).hexdigest(), stage_name="initial",
                        stage_kind="initial", sequence=1)


def endpoint(address: str, secret: str = SECRET) -> Endpoint:
    return Endpoint(transport="webhook", address=address, secret=secret)


def send(address: str, *, report: FrozenReport | None = None, timeout: float = 5.0, secret: str = SECRET):
    return WebhookTransport().send(report or frozen_report(), endpoint(address, secret), timeout_seconds=timeout)


def reply(status: int = 200, body: bytes = b"", **kwargs) -> LocalServer:
    return LocalServer(lambda request: Reply(status=status, body=body, **kwargs))


def test_the_receiver_verifies_the_signature_with_the_official_library():
    receipt = {"receipt_id": "r-1", "duplicate": False}
    with reply(200, json.dumps(receipt).encode(), headers={"Content-Type": "application/json"}) as server:
        report = frozen_report()
        result = send(server.url(), report=report)

    assert result.outcome == AttemptOutcome.DELIVERED
    assert result.http_status == 200 and result.receipt == receipt and result.error_class == ""
    [request] = server.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.body == report.payload  # exactly the frozen bytes, not re-encoded
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == MESSAGE_ID
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    Webhook(SECRET).verify(request.body, request.headers)  # raises if the signature is wrong


def test_a_receiver_with_another_secret_rejects_the_signature():
    with reply(204) as server:
        send(server.url())
    other = "whsec_" + base64.b64encode(b"another-secret-of-32-bytes-long!").decode()
    with pytest.raises(Exception, match="No matching signature"):
        Webhook(other).verify(server.requests[0].body, server.requests[0].headers)


def test_a_non_json_2xx_answer_is_kept_as_a_body_excerpt():
    with reply(202, b"accepted, thanks") as server:
        result = send(server.url())
    assert result.outcome == AttemptOutcome.DELIVERED
    assert result.receipt == {"body": "accepted, thanks"}


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(status):
    with reply(status) as server:
        assert send(server.url()).outcome == AttemptOutcome.DELIVERED


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_server_errors_timeouts_and_throttling_are_transient(status):
    with reply(status, b"try later") as server:
        result = send(server.url())
    assert result.outcome == AttemptOutcome.TRANSIENT
    assert result.http_status == status and result.error_class == f"HTTP {status}"
    assert result.response_excerpt == "try later"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 415, 422])
def test_other_4xx_are_permanent(status):
    with reply(status, b'{"error": "no"}') as server:
        result = send(server.url())
    assert result.outcome == AttemptOutcome.PERMANENT
    assert result.http_status == status and result.error_class == f"HTTP {status}"
    assert result.receipt is None


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_permanent_and_never_followed(status):
    with reply(200) as target, reply(status, headers={"Location": target.url()}) as server:
        result = send(server.url())
    assert result.outcome == AttemptOutcome.PERMANENT and result.error_class == f"HTTP {status}"
    assert result.details["location"] == target.url()
    assert len(server.requests) == 1 and target.requests == []


def test_retry_after_in_seconds():
    with reply(429, headers={"Retry-After": "7"}) as server:
        result = send(server.url())
    assert result.outcome == AttemptOutcome.TRANSIENT and result.retry_after_seconds == 7.0


def test_retry_after_as_an_http_date():
    when = datetime.now(UTC) + timedelta(seconds=30)
    with reply(503, headers={"Retry-After": format_datetime(when, usegmt=True)}) as server:
        result = send(server.url())
    assert result.outcome == AttemptOutcome.TRANSIENT
    assert 25 <= result.retry_after_seconds <= 31


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("", None), ("soon", None), ("-5", None), ("120", 120.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: retry now, not never
    ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
])
def test_parse_retry_after(value, expected):
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


def test_a_slow_receiver_is_a_quick_transient_read_timeout():
    with reply(200, delay=5) as server:
        started = time.monotonic()
        result = send(server.url(), timeout=0.5)
        elapsed = time.monotonic() - started
    assert result.outcome == AttemptOutcome.TRANSIENT and result.error_class == "ReadTimeout"
    assert result.http_status is None
    assert elapsed < 2


def test_connection_refused_is_transient():
    result = send(f"http://127.0.0.1:{free_port()}/hook", timeout=2)
    assert result.outcome == AttemptOutcome.TRANSIENT and result.error_class == "ConnectError"


def test_a_receiver_that_hangs_up_without_answering_is_transient():
    with reply(drop=True) as server:
        result = send(server.url())
    assert result.outcome == AttemptOutcome.TRANSIENT and result.error_class == "RemoteProtocolError"


def test_retries_send_identical_bytes_and_the_same_webhook_id():
    answers = iter([Reply(503), Reply(500), Reply(200, b'{"receipt_id": "r-9"}')])
    report = frozen_report()
    with LocalServer(lambda request: next(answers)) as server:
        outcomes = [send(server.url(), report=report).outcome for _ in range(3)]
    assert outcomes == [AttemptOutcome.TRANSIENT, AttemptOutcome.TRANSIENT, AttemptOutcome.DELIVERED]
    assert len(server.requests) == 3
    assert {r.body for r in server.requests} == {report.payload}
    assert {r.headers["webhook-id"] for r in server.requests} == {MESSAGE_ID}
    for request in server.requests:  # each attempt is signed afresh (new timestamp), each verifies
        Webhook(SECRET).verify(request.body, request.headers)


def test_the_response_excerpt_is_capped_at_2000_characters():
    with reply(500, b"x" * 10_000) as server:
        result = send(server.url())
    assert len(result.response_excerpt) == 2000


def test_a_huge_2xx_answer_is_read_only_up_to_the_cap():
    with reply(200, b"y" * 1_000_000) as server:
        result = send(server.url())
    assert result.outcome == AttemptOutcome.DELIVERED
    assert result.receipt == {"body": "y" * 2000}


@pytest.mark.parametrize(("secret", "error_class"), [("", "MissingSecret"), ("whsec_", "InvalidSecret")])
def test_a_missing_or_malformed_secret_is_permanent_and_nothing_is_sent(secret, error_class):
    with reply(200) as server:
        result = send(server.url(), secret=secret)
    assert result.outcome == AttemptOutcome.PERMANENT and result.error_class == error_class
    assert server.requests == []


@pytest.mark.parametrize(("address", "error_class"), [
    ("ftp://127.0.0.1/hook", "UnsupportedProtocol"), ("http://[::1/hook", "InvalidURL"),
])
def test_an_unusable_address_is_permanent(address, error_class):
    result = send(address)
    assert result.outcome == AttemptOutcome.PERMANENT and result.error_class == error_class


# --- TLS ------------------------------------------------------------------------------------------
@pytest.fixture
def tls_server(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    with LocalServer(lambda request: Reply(200, b'{"receipt_id": "tls"}'),
                     ssl_context=server_tls_context(cert, key)) as server:
        yield server, cert


def test_tls_with_the_custom_ca_bundle_is_delivered(tls_server, settings):
    server, cert = tls_server
    settings.MIR_WEBHOOK_CA_BUNDLE = str(cert)
    result = send(server.url())
    assert result.outcome == AttemptOutcome.DELIVERED and result.receipt == {"receipt_id": "tls"}
    Webhook(SECRET).verify(server.requests[0].body, server.requests[0].headers)


def test_tls_verification_is_on_by_default(tls_server, settings):
    server, _ = tls_server
    settings.MIR_WEBHOOK_CA_BUNDLE = None
    result = send(server.url())
    assert result.outcome == AttemptOutcome.TRANSIENT and result.error_class == "TLSCertificateError"
    assert server.requests == []


# --- the shared client ----------------------------------------------------------------------------
def test_the_client_is_shared_within_a_process():
    assert shared_client() is shared_client()


def test_a_forked_worker_makes_its_own_client():
    """Celery prefork: a child must not reuse the parent's client (and its pooled sockets)."""
    with reply(200, b'{"ok": true}') as server:
        assert send(server.url()).outcome == AttemptOutcome.DELIVERED  # the parent's pool holds a connection
        parent_client = shared_client()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report through the pipe, never return into pytest
            code = 1
            try:
                fresh = shared_client() is not parent_client
                outcome = send(server.url()).outcome
                os.write(write_end, json.dumps({"fresh": fresh, "outcome": outcome}).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        answer = json.loads(os.read(read_end, 1000) or b"{}")
        os.close(read_end)
        assert shared_client() is parent_client
        assert send(server.url()).outcome == AttemptOutcome.DELIVERED  # the parent's client still works
    assert answer == {"fresh": True, "outcome": "delivered"}


# --- the registry ---------------------------------------------------------------------------------
def test_transport_for_webhook():
    assert isinstance(transport_for("webhook"), WebhookTransport)
    assert "webhook" in TRANSPORTS


def test_an_unknown_transport_name_is_a_lookup_error():
    with pytest.raises(LookupError, match="no transport named 'pigeon'"):
        transport_for("pigeon")
