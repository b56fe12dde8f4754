"""The sandbox receiver, driven by the real WebhookTransport over loopback HTTP."""
from __future__ import annotations

import ast
import base64
import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reporting.choices import AttemptOutcome
from reporting.sandbox_receiver.app import SandboxApp
from reporting.sandbox_receiver.envelope import verify_document
from reporting.sandbox_receiver.keys import KeyStore
from reporting.sandbox_receiver.ledger import Ledger
from reporting.sandbox_receiver.server import running
from reporting.transports.base import SendResult
from reporting.transports.webhook import sign
from tests.reporting.local_http import LocalServer, Reply, free_port
from tests.reporting.sandbox_helpers import (
    SECRET,
    Receiver,
    document,
    envelope,
    frozen,
    key_id,
    keys_json,
    signed_report,
)

BASE_DIR = Path(__file__).resolve().parents[2]
PACKAGE_DIR = BASE_DIR / "reporting" / "sandbox_receiver"
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-secret-the-receiver-has!").decode()


@pytest.fixture
def signing_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def receiver(tmp_path, signing_key):
    keys_file = tmp_path / "keys.json"
    keys_file.write_bytes(keys_json(signing_key))
    ledger = Ledger(tmp_path / "sandbox")
    app = SandboxApp(secret=SECRET, ledger=ledger, keys=KeyStore(path=keys_file))
    with running(app) as server:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", ledger, keys_file, signing_key)


def test_a_signed_report_is_accepted_with_a_receipt(receiver):
    report = receiver.report()
    result = receiver.deliver(report)

    assert result.outcome == AttemptOutcome.DELIVERED and result.http_status == 200
    receipt = result.receipt
    assert set(receipt) == {"receipt_id", "webhook_id", "received_at", "payload_sha256", "duplicate"}
    assert receipt["webhook_id"] == report.message_id
    assert receipt["payload_sha256"] == report.payload_sha256
    assert receipt["duplicate"] is False and receipt["received_at"].endswith("Z")
    [entry] = receiver.entries()
    assert entry["webhook_id"] == report.message_id and entry["status"] == "accepted"
    assert entry["verified"] is True and entry["duplicates"] == 0 and entry["receipt_id"] == receipt["receipt_id"]
    assert entry["document"] == {
        "schema": "urn:mir:report:v1", "report_id": report.message_id,
        "incident_id": "6d1f0c2e-52a8-4a9e-9a53-0d7c1b8e2f10", "incident_reference": "INC-000042",
        "stage": "initial", "stage_kind": "initial", "sequence": 1, "version": 1,
        "title": "Intrusion tooling written with the model", "category": "CYBER", "severity": "SEV-1",
        "tlp": "TLP:AMBER+STRICT", "authority": "Authority A",
    }
    raw = httpx.get(f"{receiver.base}/ledger/{report.message_id}", timeout=5)
    assert raw.status_code == 200 and raw.content == report.payload  # the bytes as received


def test_a_repeat_is_a_duplicate_with_the_same_receipt(receiver):
    report = receiver.report()
    first, second, third = (receiver.deliver(report) for _ in range(3))

    assert first.receipt["duplicate"] is False
    assert second.outcome == third.outcome == AttemptOutcome.DELIVERED
    assert second.receipt == {**first.receipt, "duplicate": True} == third.receipt
    [entry] = receiver.entries()
    assert entry["duplicates"] == 2 and entry["mismatched_duplicates"] == 0


def test_a_repeat_with_other_bytes_is_still_a_duplicate_and_is_flagged(receiver):
    message_id = str(uuid.uuid4())
    first = receiver.deliver(receiver.report(message_id))
    second = receiver.deliver(receiver.report(message_id, title="Changed between retries"))
    assert second.receipt["receipt_id"] == first.receipt["receipt_id"] and second.receipt["duplicate"] is True
    [entry] = receiver.entries()
    assert entry["duplicates"] == 1 and entry["mismatched_duplicates"] == 1


def test_concurrent_copies_make_one_entry(receiver):
    report = receiver.report()
    results: list[SendResult] = []
    threads = [threading.Thread(target=lambda: results.append(receiver.deliver(report))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert [r.outcome for r in results] == [AttemptOutcome.DELIVERED] * 8
    assert len({r.receipt["receipt_id"] for r in results}) == 1
    assert sorted(r.receipt["duplicate"] for r in results) == [False] + [True] * 7
    [entry] = receiver.entries()
    assert entry["duplicates"] == 7


def test_a_bad_webhook_signature_is_401_and_permanent(receiver):
    result = receiver.deliver(receiver.report(), secret=OTHER_SECRET)
    assert result.outcome == AttemptOutcome.PERMANENT and result.error_class == "HTTP 401"
    assert json.loads(result.response_excerpt)["error"] == "bad_webhook_signature"
    assert receiver.entries() == []  # strangers do not fill the ledger


@pytest.mark.parametrize("case", ["no headers", "stale timestamp", "garbled signature"])
def test_missing_stale_or_garbled_webhook_headers_are_401(receiver, case):
    payload = receiver.report().payload
    message_id, stamp = "msg-1", int(time.time())
    if case == "stale timestamp":
        stamp -= 600  # the library's tolerance is 5 minutes: an old capture cannot be replayed
    headers = {"webhook-id": message_id, "webhook-timestamp": str(stamp),
               "webhook-signature": sign(secret=SECRET, message_id=message_id, timestamp=stamp, payload=payload)}
    if case == "no headers":
        headers = {}
    elif case == "garbled signature":
        headers["webhook-signature"] = "v1 no-comma"
    response = httpx.post(f"{receiver.base}/webhook", content=payload, headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"] == "bad_webhook_signature"


def test_a_tampered_document_is_422_and_recorded_as_rejected(receiver):
    original = receiver.report()
    tampered_payload = original.payload.replace(b"Intrusion tooling", b"Harmless tooling")
    tampered = frozen(tampered_payload, original.message_id)
    result = receiver.deliver(tampered)

    assert result.outcome == AttemptOutcome.PERMANENT and result.error_class == "HTTP 422"
    assert json.loads(result.response_excerpt)["error"] == "bad_document_signature"
    [entry] = receiver.entries()
    assert entry["status"] == "rejected" and entry["verified"] is False and entry["receipt_id"] is None
    assert "does not match" in entry["reason"]
    assert httpx.get(f"{receiver.base}/ledger/{original.message_id}", timeout=5).content == tampered_payload
    # A rejection does not block the genuine copy with the same id.
    assert receiver.deliver(original).receipt["duplicate"] is False


def _not_canonical(key, message_id):
    return json.dumps(envelope(document(message_id), key), indent=1).encode()


def _wrong_document_digest(key, message_id):
    return rfc8785.dumps(envelope(document(message_id), key, document_sha256="0" * 64))


def _other_report_id(key, message_id):
    return rfc8785.dumps(envelope(document(str(uuid.uuid4())), key))


def _unsupported_canonicalization(key, message_id):
    return rfc8785.dumps(envelope(document(message_id), key, canonicalization="JCS-ish"))


def _extra_member(key, message_id):
    return rfc8785.dumps({**envelope(document(message_id), key), "note": "unsigned"})


def _not_json(key, message_id):
    return b"this is not json"


@pytest.mark.parametrize(("build", "reason"), [
    (_not_canonical, "not RFC 8785 canonical"),
    (_wrong_document_digest, "document_sha256 is not the SHA-256"),
    (_other_report_id, "is not the webhook-id"),
    (_unsupported_canonicalization, "unsupported signature"),
    (_extra_member, "exactly 'document' and 'signature'"),
    (_not_json, "not JSON"),
])
def test_the_format_rules_are_enforced_even_with_a_valid_signature(receiver, build, reason):
    """The sandbox is where sender bugs should surface: the format's stricter checks are 422s too."""
    message_id = str(uuid.uuid4())
    result = receiver.deliver(frozen(build(receiver.key, message_id), message_id))
    assert result.outcome == AttemptOutcome.PERMANENT and result.error_class == "HTTP 422"
    assert reason in json.loads(result.response_excerpt)["detail"]
    assert [e["status"] for e in receiver.entries()] == ["rejected"]


def test_a_key_published_under_an_id_not_derived_from_it_is_refused(tmp_path, signing_key):
    published = json.loads(keys_json(signing_key))
    forged_id = "f" * 16
    published["keys"][0]["key_id"] = forged_id
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(published))
    message_id = str(uuid.uuid4())
    payload = rfc8785.dumps(envelope(document(message_id), signing_key, key_id=forged_id))
    ok, reason = verify_document(payload, KeyStore(path=keys_file), webhook_id=message_id)
    assert not ok and "not derived from its published key" in reason


def test_an_unknown_key_is_looked_up_again_before_rejecting(receiver):
    rotated = Ed25519PrivateKey.generate()
    report = signed_report(rotated)
    result = receiver.deliver(report)
    assert result.outcome == AttemptOutcome.PERMANENT and f"unknown key_id '{key_id(rotated)}'" in result.response_excerpt

    receiver.keys_file.write_bytes(keys_json(receiver.key, rotated))  # the sender publishes its new key
    assert receiver.deliver(report).outcome == AttemptOutcome.DELIVERED


def test_keys_from_a_url_are_fetched_once_and_again_on_an_unknown_key(tmp_path, signing_key):
    rotated = Ed25519PrivateKey.generate()
    published = {"keys": keys_json(signing_key)}
    with LocalServer(lambda request: Reply(200, published["keys"])) as keys_server:
        app = SandboxApp(secret=SECRET, ledger=Ledger(tmp_path), keys=KeyStore(url=keys_server.url("/keys.json")))
        with running(app) as server:
            receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}", app.ledger, Path(), signing_key)
            assert receiver.deliver(receiver.report()).outcome == AttemptOutcome.DELIVERED
            assert receiver.deliver(receiver.report()).outcome == AttemptOutcome.DELIVERED
            assert len(keys_server.requests) == 1  # cached

            published["keys"] = keys_json(signing_key, rotated)
            rotated_report = signed_report(rotated)
            assert receiver.deliver(rotated_report).outcome == AttemptOutcome.DELIVERED
            assert len(keys_server.requests) == 2


def test_unreachable_keys_make_a_transient_503(tmp_path, signing_key):
    app = SandboxApp(secret=SECRET, ledger=Ledger(tmp_path), keys=KeyStore(url=f"http://127.0.0.1:{free_port()}/k"))
    with running(app) as server:
        receiver = Receiver(f"http://127.0.0.1:{server.server_address[1]}", app.ledger, Path(), signing_key)
        result = receiver.deliver(receiver.report())
    assert result.outcome == AttemptOutcome.TRANSIENT and result.error_class == "HTTP 503"
    assert result.retry_after_seconds == 5.0
    assert app.ledger.entries() == []


def test_fail_mode_is_503_and_transient(receiver):
    assert receiver.control(mode="fail", retry_after_seconds=30)["mode"] == "fail"
    assert httpx.get(f"{receiver.base}/control", timeout=5).json()["mode"] == "fail"
    for _ in range(2):
        result = receiver.deliver(receiver.report())
        assert result.outcome == AttemptOutcome.TRANSIENT and result.error_class == "HTTP 503"
        assert result.retry_after_seconds == 30.0
    receiver.control(mode="ok")
    assert receiver.deliver(receiver.report()).outcome == AttemptOutcome.DELIVERED


def test_fail_count_fails_the_next_n_then_returns_to_ok(receiver):
    assert receiver.control(fail_count=2) == {"mode": "fail", "delay_seconds": 5.0, "fail_count": 2,
                                              "retry_after_seconds": None}
    report = receiver.report()
    outcomes = [receiver.deliver(report).outcome for _ in range(3)]
    assert outcomes == [AttemptOutcome.TRANSIENT, AttemptOutcome.TRANSIENT, AttemptOutcome.DELIVERED]
    assert httpx.get(f"{receiver.base}/control", timeout=5).json()["mode"] == "ok"
    assert [e["webhook_id"] for e in receiver.entries()] == [report.message_id]


def test_slow_mode_times_the_transport_out_and_the_retry_is_a_duplicate(receiver):
    receiver.control(mode="slow", delay_seconds=1.0)
    report = receiver.report()
    started = time.monotonic()
    result = receiver.deliver(report, timeout=0.5)
    assert result.outcome == AttemptOutcome.TRANSIENT and result.error_class == "ReadTimeout"
    assert time.monotonic() - started < 1.0

    # The receiver still takes the slow copy in: the sender did not see the receipt, the ledger has it.
    receiver.control(mode="ok")
    deadline = time.monotonic() + 5
    while not receiver.entries() and time.monotonic() < deadline:
        time.sleep(0.05)
    retry = receiver.deliver(report)
    assert retry.outcome == AttemptOutcome.DELIVERED and retry.receipt["duplicate"] is True


def test_reject_mode_is_400_and_permanent(receiver):
    receiver.control(mode="reject")
    result = receiver.deliver(receiver.report())
    assert result.outcome == AttemptOutcome.PERMANENT and result.error_class == "HTTP 400"


def test_down_mode_hangs_up_and_is_transient(receiver):
    receiver.control(mode="down")
    result = receiver.deliver(receiver.report())
    assert result.outcome == AttemptOutcome.TRANSIENT and result.http_status is None
    assert result.error_class == "RemoteProtocolError"
    assert httpx.get(f"{receiver.base}/healthz", timeout=5).json() == {"status": "ok", "mode": "down"}


def test_the_ledger_lists_what_arrived_in_order(receiver):
    first, second = receiver.report(), receiver.report(stage="update", sequence=2)
    receiver.deliver(first)
    receiver.deliver(frozen(first.payload.replace(b"SEV-1", b"SEV-4"), first.message_id))  # tampered
    receiver.deliver(second)
    receiver.deliver(second)

    entries = receiver.entries()
    assert [(e["status"], e["duplicates"], e["verified"]) for e in entries] == [
        ("accepted", 0, True), ("rejected", 0, False), ("accepted", 1, True)]
    assert entries[2]["webhook_id"] == second.message_id and entries[2]["document"]["stage"] == "update"
    assert entries[2]["payload_sha256"] == second.payload_sha256
    latest = httpx.get(f"{receiver.base}/ledger", params={"limit": 1}, timeout=5).json()
    assert [e["webhook_id"] for e in latest] == [second.message_id]
    assert httpx.get(f"{receiver.base}/ledger/nothing-here", timeout=5).status_code == 404


@pytest.mark.parametrize("body", [
    {"mode": "explode"}, {"mode": "slow", "delay_seconds": -1}, {"fail_count": -2}, {"fail_count": True},
    {"colour": "red"}, [1, 2],
])
def test_bad_control_requests_are_400(receiver, body):
    response = httpx.post(f"{receiver.base}/control", json=body, timeout=5)
    assert response.status_code == 400 and response.json()["error"] == "bad_control"
    assert httpx.get(f"{receiver.base}/control", timeout=5).json()["mode"] == "ok"


def test_other_paths_and_methods(receiver):
    assert httpx.get(f"{receiver.base}/healthz", timeout=5).json() == {"status": "ok", "mode": "ok"}
    assert httpx.get(f"{receiver.base}/nope", timeout=5).status_code == 404
    wrong = httpx.get(f"{receiver.base}/webhook", timeout=5)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


def test_the_receiver_needs_neither_django_nor_the_project():
    """It plays an outside party: its folder, copied anywhere, imports and runs on its own."""
    for path in PACKAGE_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] in {"django", "reporting", "incidents"} for n in names), (path, names)


def test_a_copy_of_the_folder_runs_without_django(tmp_path):
    shutil.copytree(PACKAGE_DIR, tmp_path / "sandbox_receiver", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; import sandbox_receiver.__main__, sandbox_receiver.server; "
            "sys.exit(any(m == 'django' or m.startswith('django.') for m in sys.modules))")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)


# --- the command line, in a real process ------------------------------------------------------------
@pytest.mark.parametrize("server", ["threaded", "gunicorn"])
def test_the_command_line_runs_it(tmp_path, signing_key, server):
    keys_file = tmp_path / "keys.json"
    keys_file.write_bytes(keys_json(signing_key))
    port = free_port()
    argv = [sys.executable, "-m", "reporting.sandbox_receiver", "--port", str(port), "--keys-file", str(keys_file),
            "--data-dir", str(tmp_path / "data"), "--fail-count", "2", "--quiet", "--server", server]
    if server == "gunicorn":
        argv += ["--workers", "2"]  # the countdown and the ledger are shared by both worker processes
    process = subprocess.Popen(argv, cwd=BASE_DIR, env={"PATH": "/usr/bin:/bin", "MIR_SANDBOX_SECRET": SECRET},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, process)
        receiver = Receiver(base, Ledger(tmp_path / "data"), keys_file, signing_key)
        report = receiver.report()
        outcomes = [receiver.deliver(report).outcome for _ in range(3)]
        assert outcomes == [AttemptOutcome.TRANSIENT, AttemptOutcome.TRANSIENT, AttemptOutcome.DELIVERED]
        receiver.control(mode="down")
        down = receiver.deliver(report)
        assert down.outcome == AttemptOutcome.TRANSIENT and down.http_status is None
        receiver.control(mode="ok")
        again = receiver.deliver(report)
        assert again.receipt["duplicate"] is True
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        stderr = process.stderr.read().decode()
        process.stderr.close()
    assert process.returncode in (0, -15), stderr


def _wait_healthy(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"receiver exited with {process.returncode}: {process.stderr.read().decode()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail("receiver did not become healthy within 20 s")
