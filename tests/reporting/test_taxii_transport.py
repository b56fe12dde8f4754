"""The TAXII 2.1 transport against a real medallion server on loopback (tests/reporting/taxii_server.py)."""
from __future__ import annotations

import hashlib
import http.server
import json
import socket
import threading
import time
import uuid

import pytest
import stix2
from taxii2client.v21 import Collection

from reporting.choices import AttemptOutcome
from reporting.packaging.stix import MIR_EXTENSION, bundle_for
from reporting.signing import freeze, verify_envelope
from reporting.transports.base import Endpoint, FrozenReport
from reporting.transports.taxii import TaxiiTransport
from tests.reporting.taxii_server import (
    PENDING_COLLECTION_ID,
    PORT_RANGE,
    READ_ONLY_COLLECTION_ID,
    REFUSING_REPORTS_COLLECTION_ID,
    REJECTING_COLLECTION_ID,
    UNAVAILABLE_COLLECTION_ID,
    WRITE_ONLY_COLLECTION_ID,
    start_taxii_server,
    stop_taxii_server,
)
from tests.reporting.test_packaging import ACCOUNTS, full_incident, make_dest, make_report
from tests.reporting.test_stix import sample_document, signed


@pytest.fixture(scope="module")
def taxii(tmp_path_factory):
    server = start_taxii_server(tmp_path_factory.mktemp("medallion"))
    yield server
    stop_taxii_server(server)


def frozen(document: dict, message_id: str | None = None) -> FrozenReport:
    """What the delivery service hands a transport: the signed envelope, parsed, and its frozen bytes."""
    envelope, payload = signed(document)
    ident = document["identity"]
    return FrozenReport(message_id=message_id or str(uuid.uuid4()), payload=payload, document=envelope,
                        payload_sha256=hashlib.sha256(payload).hexdigest(), stage_name=ident["stage"],
                        stage_kind=ident["stage_kind"], sequence=ident["sequence"])


def fresh_document(**sections) -> dict:
    """Each test reports its own incident: the server's memory lives as long as the module."""
    document = sample_document(**sections)
    document["identity"]["incident_id"] = str(uuid.uuid4())
    return document


def endpoint(server, collection_id: str | None = None, **overrides) -> Endpoint:
    address = server.collection_url(collection_id) if collection_id else server.collection_url()
    values = {"transport": "taxii", "address": address, "username": server.username, "secret": server.password,
              "tlp": "TLP:AMBER+STRICT", **overrides}
    return Endpoint(**values)


def send(report: FrozenReport, where: Endpoint, timeout: float = 10.0):
    return TaxiiTransport().send(report, where, timeout_seconds=timeout)


def reader(server) -> Collection:
    return Collection(server.collection_url(), user=server.username, password=server.password)


def stored(server, object_id: str, version: str = "last") -> list[dict]:
    with reader(server) as collection:
        return collection.get_object(object_id, version=version).get("objects", [])


def sent_ids(report: FrozenReport) -> list[str]:
    bundle = bundle_for(report.document, message_id=report.message_id, tlp_floor="TLP:AMBER+STRICT",
                        payload=report.payload)
    return [obj["id"] for obj in bundle["objects"]]


def unused_port() -> int:
    for port in PORT_RANGE:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    # All of the range is taken: any port the OS hands out and we release is unused just as well.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_bundle_arrives_and_reads_back_with_the_same_ids(taxii):
    report = frozen(fresh_document())
    result = send(report, endpoint(taxii))

    assert result.outcome == AttemptOutcome.DELIVERED, result
    assert result.http_status == 202
    receipt = result.receipt
    assert receipt["status"] == "complete" and receipt["pending_count"] == 0
    assert receipt["id"] and receipt["status_url"].endswith(f"/status/{receipt['id']}/")
    assert receipt["report_object_id"] == sent_ids(report)[-1]
    assert set(receipt["successes"]) | set(receipt.get("already_present", [])) == set(sent_ids(report))

    with reader(taxii) as collection:
        objects = collection.get_objects(id=sent_ids(report)).get("objects", [])
    assert sorted(obj["id"] for obj in objects) == sorted(sent_ids(report))
    report_object = next(obj for obj in objects if obj["type"] == "report")
    assert report_object["extensions"] and report_object["published"] == "2025-03-02T09:30:00.123Z"


@pytest.mark.django_db
def test_a_real_frozen_report_arrives_and_its_signature_verifies_from_taxii(taxii, settings):
    """The whole path the worker takes: build_document, freeze (sign), the transport, a TAXII reader."""
    incident = full_incident()
    report = make_report(incident, make_dest("authority-taxii"))
    payload, digest, _key_id, _signature = freeze(report)
    frozen_report = FrozenReport(message_id=str(report.public_id), payload=payload, document=json.loads(payload),
                                 payload_sha256=digest, stage_name=report.stage_name, stage_kind=report.stage_kind,
                                 sequence=report.sequence)

    result = send(frozen_report, endpoint(taxii, tlp=report.destination.tlp))
    assert result.outcome == AttemptOutcome.DELIVERED, result

    (stored_report,) = stored(taxii, result.receipt["report_object_id"])
    extension = stored_report["extensions"][MIR_EXTENSION]
    assert extension["payload_sha256"] == digest
    document = verify_envelope(extension["payload"].encode())  # Ed25519 against the published key
    assert document["identity"]["report_id"] == str(report.public_id) == extension["message_id"]
    assert stored_report["name"].startswith(f"{incident.reference} initial #1: ")
    (stored_identity,) = stored(taxii, stored_report["created_by_ref"])
    assert stored_identity["name"] == settings.MIR_REPORTING_ENTITY_NAME
    with reader(taxii) as collection:
        objects = collection.get_objects(id=stored_report["object_refs"]).get("objects", [])
    patterns = [obj["pattern"] for obj in objects if obj["type"] == "indicator"]
    assert "[domain-name:value = 'c2.bad.example']" in patterns
    # The e-mail indicator is an account identifier: it left as a pseudonym, so it is no observable.
    assert not any("email-addr" in pattern for pattern in patterns)
    assert not any(account.lower() in json.dumps([*objects, stored_report]).lower() for account in ACCOUNTS)
    for obj in objects:
        stix2.parse(obj, allow_custom=False, version="2.1")


def test_every_stored_object_validates_as_stix_21(taxii):
    report = frozen(fresh_document())
    assert send(report, endpoint(taxii)).outcome == AttemptOutcome.DELIVERED
    with reader(taxii) as collection:
        objects = collection.get_objects(id=sent_ids(report)).get("objects", [])
    assert len(objects) == len(sent_ids(report))
    for obj in objects:
        stix2.parse(obj, allow_custom=False, version="2.1")


def test_sending_the_same_report_twice_is_not_a_failure_and_stores_nothing_twice(taxii):
    report = frozen(fresh_document())
    first = send(report, endpoint(taxii))
    again = send(report, endpoint(taxii))

    assert first.outcome == again.outcome == AttemptOutcome.DELIVERED
    assert again.receipt["failure_count"] == len(sent_ids(report))  # medallion refuses every duplicate...
    assert sorted(again.receipt["already_present"]) == sorted(sent_ids(report))  # ...and each was verified
    for object_id in sent_ids(report):
        assert len(stored(taxii, object_id, version="all")) == 1, object_id


def test_a_second_stage_references_the_same_incident(taxii):
    initial = fresh_document()
    update = copy_with_stage(initial)
    first, second = frozen(initial), frozen(update)
    assert send(first, endpoint(taxii)).outcome == AttemptOutcome.DELIVERED
    assert send(second, endpoint(taxii)).outcome == AttemptOutcome.DELIVERED

    incident_ids = {i for i in sent_ids(first) + sent_ids(second) if i.startswith("incident--")}
    assert len(incident_ids) == 1
    (incident_id,) = incident_ids
    versions = stored(taxii, incident_id, version="all")
    assert sorted(v["modified"] for v in versions) == ["2025-03-02T09:30:00.123Z", "2025-03-05T08:00:00.000Z"]
    reports = [stored(taxii, ids[-1])[0] for ids in (sent_ids(first), sent_ids(second))]
    assert reports[0]["id"] != reports[1]["id"]
    assert all(incident_id in report["object_refs"] for report in reports)
    assert reports[1]["name"].startswith(f"{initial['identity']['incident_reference']} update #2")


def copy_with_stage(document: dict) -> dict:
    update = json.loads(json.dumps(document))
    update["generated_at"] = "2025-03-05T08:00:00Z"
    update["identity"].update(stage="update", stage_kind="update", sequence=2)
    update["classification"]["severity"] = "SEV-0"
    return update


@pytest.mark.parametrize(("username", "secret"), [("authority-b", "wrong"), ("nobody", "taxii-test-password"),
                                                  ("", "")])
def test_bad_credentials_are_permanent(taxii, username, secret):
    result = send(frozen(fresh_document()), endpoint(taxii, username=username, secret=secret))
    assert result.outcome == AttemptOutcome.PERMANENT
    assert result.http_status == 401 and result.error_class == "HTTP 401"
    assert not secret or secret not in result.response_excerpt + json.dumps(result.details)


def test_a_server_that_is_not_running_is_transient():
    address = f"http://127.0.0.1:{unused_port()}/mir/collections/{uuid.uuid4()}/"
    result = send(frozen(fresh_document()), Endpoint(transport="taxii", address=address, username="u", secret="p"))
    assert result.outcome == AttemptOutcome.TRANSIENT
    assert result.error_class == "ConnectionError"


def test_a_status_still_pending_when_time_is_up_is_transient_and_bounded(taxii):
    started = time.monotonic()
    result = send(frozen(fresh_document()), endpoint(taxii, PENDING_COLLECTION_ID), timeout=2.0)
    elapsed = time.monotonic() - started

    assert result.outcome == AttemptOutcome.TRANSIENT
    assert result.error_class == "TaxiiStatusPending"
    assert result.details["status"]["status"] == "pending"
    assert result.details["status"]["pending_count"] == result.details["object_count"]
    assert 1.0 < elapsed < 2.5  # polled for most of the budget, never beyond it


@pytest.mark.parametrize(
    ("collection_id", "outcome", "http_status", "error_class"),
    [
        (UNAVAILABLE_COLLECTION_ID, AttemptOutcome.TRANSIENT, 503, "HTTP 503"),
        (REJECTING_COLLECTION_ID, AttemptOutcome.PERMANENT, 422, "HTTP 422"),
        (READ_ONLY_COLLECTION_ID, AttemptOutcome.PERMANENT, None, "TaxiiAccessDenied"),
        ("0b7c3f1e-0000-4000-8000-00000000dead", AttemptOutcome.PERMANENT, 404, "HTTP 404"),  # no such collection
    ],
)
def test_server_answers_are_classified(taxii, collection_id, outcome, http_status, error_class):
    result = send(frozen(fresh_document()), endpoint(taxii, collection_id))
    assert (result.outcome, result.http_status, result.error_class) == (outcome, http_status, error_class)


def test_an_object_refused_and_not_stored_is_permanent(taxii):
    report = frozen(fresh_document())
    result = send(report, endpoint(taxii, REFUSING_REPORTS_COLLECTION_ID))
    assert result.outcome == AttemptOutcome.PERMANENT
    assert result.error_class == "TaxiiObjectsRejected"
    assert result.details["missing"] == [sent_ids(report)[-1]]
    assert result.details["status"]["failures"][0]["message"] == "report objects are refused"


def test_duplicates_in_a_collection_we_cannot_read_need_a_person(taxii):
    report = frozen(fresh_document())
    assert send(report, endpoint(taxii, WRITE_ONLY_COLLECTION_ID)).outcome == AttemptOutcome.DELIVERED
    again = send(report, endpoint(taxii, WRITE_ONLY_COLLECTION_ID))
    assert again.outcome == AttemptOutcome.PERMANENT
    assert again.error_class == "TaxiiUnverifiedFailures"


@pytest.mark.parametrize("address", ["", "taxii.authority.example/collections/1/", "ftp://127.0.0.1/collections/1/",
                                     "http:///collections/1/"])
def test_a_malformed_address_is_permanent(address):
    result = send(frozen(fresh_document()), Endpoint(transport="taxii", address=address))
    assert (result.outcome, result.error_class) == (AttemptOutcome.PERMANENT, "InvalidURL")


def test_a_document_that_cannot_be_mapped_is_permanent_and_never_sent():
    document = fresh_document()
    del document["identity"]["incident_id"]
    # An address nobody listens on: a send attempt would come back transient, not permanent.
    address = f"http://127.0.0.1:{unused_port()}/mir/collections/{uuid.uuid4()}/"
    result = send(frozen(document), Endpoint(transport="taxii", address=address))
    assert result.outcome == AttemptOutcome.PERMANENT
    assert result.error_class == "StixMappingError"


def test_a_server_that_never_answers_times_out_within_the_budget():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", unused_port()))
        silent.listen(8)  # connections are accepted by the kernel, then nothing is ever said
        address = f"http://127.0.0.1:{silent.getsockname()[1]}/mir/collections/{uuid.uuid4()}/"
        started = time.monotonic()
        result = send(frozen(fresh_document()), Endpoint(transport="taxii", address=address), timeout=1.0)
        elapsed = time.monotonic() - started
    assert result.outcome == AttemptOutcome.TRANSIENT
    assert result.error_class in ("ReadTimeout", "OutOfTime")
    assert elapsed < 2.0


class _Redirecting(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(307)
        self.send_header("Location", "http://127.0.0.1:9/elsewhere/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_redirects_are_not_followed_and_are_permanent():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", unused_port()), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"http://127.0.0.1:{server.server_address[1]}/mir/collections/{uuid.uuid4()}/"
        result = send(frozen(fresh_document()), Endpoint(transport="taxii", address=address))
    finally:
        server.shutdown()
        server.server_close()
    assert result.outcome == AttemptOutcome.PERMANENT
    assert (result.http_status, result.error_class) == (307, "HTTP 307")
    assert result.details["location"] == "http://127.0.0.1:9/elsewhere/"
