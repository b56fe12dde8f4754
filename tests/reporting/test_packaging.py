"""The report document: schema, privacy by default, pseudonyms, disclosure, canonical bytes."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone
from django.utils.text import slugify
from jsonschema import Draft202012Validator

from incidents.actors import Actor
from incidents.choices import (
    ActorType,
    Category,
    Confidence,
    DetectionSource,
    Determination,
    EnforcementAction,
    EvidenceKind,
    IndicatorType,
    Severity,
    Surface,
    TimePrecision,
    Tlp,
)
from incidents.services.intake import incident_create
from incidents.services.parts import EvidenceInput
from incidents.services.workflow import incident_transition
from reporting.choices import ClockStart, Disclosure, StageKind
from reporting.models import Destination, Report, ReportingRule, RuleStage
from reporting.packaging.canonical import canonical_bytes, payload_sha256
from reporting.packaging.document import SCHEMA_ID, ChildSafetyRefused, build_document
from reporting.packaging.pseudonyms import Redactor, pseudonymize
from reporting.portal.models import Authority
from tests.conftest import SYSTEM, incident_fields, make_detector, make_incident

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "report-schema.v1.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)

ACCOUNTS = ["mallory@attacker.example", "acct-7741-zz", "Operator.Nine"]
PROMPT = "Write a loader that disables EDR on hosts of the victim bank (secret-prompt-text-1931)"
OUTPUT = "def disable_edr(): ...  # model output marker 5521"


# --- helpers (plain functions: test_signing.py imports them) ------------------------------------

def make_dest(name: str = "authority-a", **kwargs) -> Destination:
    authority_name = kwargs.pop("authority", f"Authority {name}")
    authority = Authority.objects.filter(name=authority_name).first() or Authority.objects.create(
        name=authority_name, slug=slugify(authority_name))
    destination = Destination(
        name=name, authority=authority, transport="webhook",
        address="http://127.0.0.1:9/hook", **kwargs,
    )
    destination.set_secret("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
    destination.new_pseudonym_key()
    destination.save()
    return destination


def make_report(incident, destination, *, stage_name="initial", stage_kind=StageKind.INITIAL, sequence=1,
                disclosure=Disclosure.DIGESTS, approved_by=None, supersedes=None, due_in=timedelta(hours=24),
                late_reason="") -> Report:
    # A rule without stages: the obligations hook finds nothing owed, so only this row exists.
    rule, _ = ReportingRule.objects.get_or_create(
        destination=destination, name="Test regime", defaults={"description": "Serious cyber incidents, 72 h."}
    )
    started = incident.detected_at
    report = Report.objects.create(
        incident=incident, destination=destination, rule=rule, stage_name=stage_name, stage_kind=stage_kind,
        sequence=sequence, status="pending", disclosure=disclosure, approved_by=approved_by,
        approved_at=timezone.now() if approved_by else None, supersedes=supersedes,
        clock_started_at=started, due_at=started + due_in if due_in is not None else None, late_reason=late_reason,
    )
    return Report.objects.select_related("incident", "destination", "rule", "supersedes").get(pk=report.pk)


def full_incident(*, category=Category.CYBER, staff_user=None):
    detector, _secret = make_detector("edr-classifier")
    now = timezone.now()
    fields = incident_fields(
        category=category, severity=Severity.SEV1, harm_types=["financial", "intrusion"],
        imminent_risk_to_life=False, cross_border=True, countries=["de", "FR"],
        critical_infrastructure_sector="banking", near_miss=False,
        occurred_start=now - timedelta(days=3), occurred_end=now - timedelta(days=1),
        occurred_precision=TimePrecision.HOUR, aware_at=now - timedelta(minutes=50),
        detector_version="2.4.1", score=0.97, threshold=0.8,
        model_name="Mythos 5", model_version="2026-10", surface=Surface.AGENT, internal_use=False,
        model_tools=["code_execution", "web_browse"], model_involvement="Wrote and debugged the loader.",
        safeguards_evaded="Split the request across sessions.", actor_type=ActorType.CRIMINAL,
        actor_origin="Eastern Europe (assessed)", actor_confidence=Confidence.MEDIUM,
        techniques=["AML.T0054", "T1562.001"],
        event_chain="Reconnaissance, then loader development. Account mallory@attacker.example led.",
        affected_parties=[{"category": "bank customers", "count": 120}], deaths=0, injuries=0,
        economic_loss_usd=Decimal("125000.5"),
        actions_taken="Banned Operator.Nine and acct-7741-zz; blocked the C2 domain.",
        actions_planned="Share indicators with the sector CSIRT.", recommendation="Block the listed domains.",
        notified_parties=["BSI", "local police"], root_cause="Classifier gap for split requests.",
        unknowns="Whether the loader was deployed.", tlp=Tlp.AMBER,
    )
    incident = incident_create(
        actor=Actor.for_detector(detector), fields=fields,
        accounts=[
            {"id": ACCOUNTS[0], "enforcement_action": EnforcementAction.BANNED},
            {"id": ACCOUNTS[1], "enforcement_action": EnforcementAction.SUSPENDED},
            {"id": ACCOUNTS[2], "enforcement_action": EnforcementAction.WARNED},
        ],
        indicators=[
            {"type": IndicatorType.DOMAIN, "value": "c2.bad.example"},
            {"type": IndicatorType.IP, "value": "203.0.113.7"},
            {"type": IndicatorType.EMAIL, "value": ACCOUNTS[0]},
            {"type": IndicatorType.PROMPT_PATTERN_HASH, "value": hashlib.sha256(b"pattern").hexdigest()},
        ],
        evidence=[
            EvidenceInput(kind=EvidenceKind.PROMPT, description="The prompt that asked for the loader.", content=PROMPT),
            EvidenceInput(kind=EvidenceKind.OUTPUT, description="The loader the model wrote.", content=OUTPUT),
            EvidenceInput(kind=EvidenceKind.LOG, description="Session log kept by the SOC.", sha256="ab" * 32),
        ],
    ).incident
    incident_transition(incident=incident, actor=SYSTEM, to="confirmed")
    return incident


def document_bytes(report: Report, **kwargs) -> bytes:
    return canonical_bytes(build_document(report=report, **kwargs))


def assert_valid(document: dict) -> None:
    errors = sorted(VALIDATOR.iter_errors(document), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


# --- schema --------------------------------------------------------------------------------------

def test_the_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$id"] == SCHEMA_ID


@pytest.mark.parametrize(
    ("path", "choices"),
    [
        (("classification", "category"), Category), (("classification", "severity"), Severity),
        (("classification", "determination"), Determination), (("handling", "tlp"), Tlp),
        (("handling", "disclosure"), Disclosure), (("identity", "stage_kind"), StageKind),
        (("clocks", "detection", "source"), DetectionSource),
    ],
)
def test_schema_enumerations_follow_the_code(path, choices):
    node = SCHEMA
    for name in path:
        node = node["properties"][name]
    # A digest is its own document (urn:mir:digest:v1, tests/reporting/test_digests.py), never a stage kind here.
    assert node["enum"] == [c.value for c in choices if c != StageKind.DIGEST]


@pytest.mark.django_db
def test_a_minimal_staff_incident_gives_a_valid_document(staff_actor):
    incident = make_incident(actor=staff_actor)
    report = make_report(incident, make_dest())
    document = build_document(report=report)
    assert_valid(document)
    assert document["schema"] == SCHEMA_ID
    assert document["identity"]["incident_id"] == str(incident.public_id)
    assert document["identity"]["report_id"] == str(report.public_id)
    assert document["identity"]["version"] == 1 and document["identity"]["supersedes"] is None
    assert document["identity"]["reporting_entity"]["name"]
    assert document["clocks"]["detection"] == {"source": "staff", "detector": None, "score": None, "threshold": None}
    assert document["generated_at"].endswith("Z") and document["clocks"]["detected_at"].endswith("Z")
    assert document["handling"]["tlp"] == Tlp.AMBER_STRICT
    # Staff are "staff"; the filer's username never leaves.
    assert b"stella" not in canonical_bytes(document)


@pytest.mark.django_db
def test_a_full_incident_gives_a_valid_document_with_every_group_filled(staff_user):
    incident = full_incident()
    report = make_report(incident, make_dest(max_disclosure=Disclosure.RAW_CONTENT),
                         disclosure=Disclosure.RAW_CONTENT, approved_by=staff_user)
    document = build_document(report=report)
    assert_valid(document)
    assert document["clocks"]["detection"] == {
        "source": "detector", "detector": {"name": "edr-classifier", "version": "2.4.1"}, "score": 0.97,
        "threshold": 0.8,
    }
    assert document["clocks"]["determined_at"] is not None
    assert document["classification"]["countries"] == ["DE", "FR"]
    assert document["classification"]["qualification"]["rule"] == "Test regime"
    assert document["actor"]["account_count"] == 3
    assert {a["enforcement_action"] for a in document["actor"]["accounts"]} == {"banned", "suspended", "warned"}
    assert document["impact"]["economic_loss_usd"] == "125000.50"
    assert document["handling"]["disclosure"] == "raw_content"
    assert {e["content"] for e in document["handling"]["evidence"]} == {PROMPT, OUTPUT, None}
    assert document["handling"]["recipient"]["authority"] == "Authority authority-a"
    # TLP:AMBER on the incident, AMBER+STRICT at the destination: the stricter wins.
    assert document["handling"]["tlp"] == Tlp.AMBER_STRICT


# --- privacy by default ---------------------------------------------------------------------------

@pytest.mark.django_db
def test_under_digests_no_account_identifier_or_evidence_content_leaves(staff_user):
    incident = full_incident()
    report = make_report(incident, make_dest(max_disclosure=Disclosure.RAW_CONTENT), approved_by=staff_user)
    payload = document_bytes(report)
    for secret in [*ACCOUNTS, "secret-prompt-text-1931", "model output marker 5521"]:
        assert secret.encode() not in payload
        assert secret.lower().encode() not in payload.lower()
    document = json.loads(payload)
    assert_valid(document)
    assert all("content" not in item for item in document["handling"]["evidence"])
    assert [e["sha256"] for e in document["handling"]["evidence"]] == [
        hashlib.sha256(PROMPT.encode()).hexdigest(), hashlib.sha256(OUTPUT.encode()).hexdigest(), "ab" * 32,
    ]
    # Identifiers typed into free text and an indicator that is an account identifier leave as pseudonyms.
    key = report.destination.get_pseudonym_key()
    assert pseudonymize("Operator.Nine", key) in document["response"]["actions_taken"]
    email = next(i for i in document["activity"]["indicators"] if i["type"] == "email")
    assert email == {"type": "email", "value": pseudonymize(ACCOUNTS[0], key), "pseudonymized": True}
    domain = next(i for i in document["activity"]["indicators"] if i["type"] == "domain")
    assert domain == {"type": "domain", "value": "c2.bad.example", "pseudonymized": False}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("report_level", "destination_level", "approved", "disclosed"),
    [
        (Disclosure.DIGESTS, Disclosure.DIGESTS, True, False),
        (Disclosure.RAW_CONTENT, Disclosure.DIGESTS, True, False),
        (Disclosure.DIGESTS, Disclosure.RAW_CONTENT, True, False),
        (Disclosure.RAW_CONTENT, Disclosure.RAW_CONTENT, False, False),
        (Disclosure.RAW_CONTENT, Disclosure.RAW_CONTENT, True, True),
    ],
)
def test_raw_content_only_when_report_and_destination_allow_it_and_a_person_approved(
    staff_user, report_level, destination_level, approved, disclosed
):
    incident = full_incident()
    report = make_report(incident, make_dest(max_disclosure=destination_level), disclosure=report_level,
                         approved_by=staff_user if approved else None)
    payload = document_bytes(report)
    assert (PROMPT.encode() in payload) is disclosed
    assert (OUTPUT.encode() in payload) is disclosed
    document = json.loads(payload)
    assert document["handling"]["disclosure"] == ("raw_content" if disclosed else "digests")
    assert_valid(document)


@pytest.mark.django_db
def test_the_schema_refuses_content_under_digests():
    incident = full_incident()
    document = build_document(report=make_report(incident, make_dest()))
    document["handling"]["evidence"][0]["content"] = PROMPT
    assert not VALIDATOR.is_valid(document)


@pytest.mark.django_db
def test_no_internal_integer_ids_appear():
    incident = full_incident()
    document = build_document(report=make_report(incident, make_dest()))

    def walk(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for value in node:
                yield from walk(value, f"{path}[]")
        else:
            yield path, node

    integers = {path for path, value in walk(document) if isinstance(value, int) and not isinstance(value, bool)}
    assert integers <= {
        ".identity.sequence", ".identity.version", ".actor.account_count", ".activity.occurrences",
        ".impact.affected_parties[].count", ".impact.deaths", ".impact.injuries", ".handling.evidence[].size_bytes",
    }


# --- pseudonyms ------------------------------------------------------------------------------------

def test_a_pseudonym_is_the_hmac_sha256_of_the_identifier():
    key = secrets.token_bytes(32)
    expected = hmac.new(key, b"alice@example.com", hashlib.sha256).hexdigest()
    assert pseudonymize("alice@example.com", key) == "psn_" + expected
    with pytest.raises(ValueError, match="key"):
        pseudonymize("alice@example.com", b"")


@pytest.mark.django_db
def test_pseudonyms_differ_across_destinations_and_are_stable_within_one():
    incident = full_incident()
    a, b = make_dest("authority-a"), make_dest("authority-b")
    first = build_document(report=make_report(incident, a))["actor"]["accounts"]
    again = build_document(report=make_report(incident, a, stage_name="update", stage_kind="update"))["actor"]
    other = build_document(report=make_report(incident, b))["actor"]["accounts"]
    assert first == again["accounts"]
    assert {x["pseudonym"] for x in first}.isdisjoint({x["pseudonym"] for x in other})
    assert [x["pseudonym"] for x in first] == sorted(x["pseudonym"] for x in first)
    # And across incidents: the same account keeps its pseudonym at one authority.
    second = make_incident()
    second.accounts.create(identifier=ACCOUNTS[0])
    assert build_document(report=make_report(second, a))["actor"]["accounts"][0]["pseudonym"] in {
        x["pseudonym"] for x in first
    }


def test_the_redactor_replaces_whole_tokens_case_insensitively():
    redact = Redactor({"bob": "psn_1", "alice@example.com": "psn_2", "": "psn_empty"})
    assert redact("Bob, then bobby; mail ALICE@example.com.") == "psn_1, then bobby; mail psn_2."
    assert redact("") == "" and Redactor({})("bob") == "bob"


# --- child safety ----------------------------------------------------------------------------------

@pytest.mark.django_db
def test_child_safety_is_refused_for_a_normal_destination():
    incident = make_incident(category=Category.CHILD_SAFETY)
    with pytest.raises(ChildSafetyRefused, match="child-protection"):
        build_document(report=make_report(incident, make_dest("authority-a")))
    document = build_document(report=make_report(incident, make_dest("ncmec", accepts_child_safety=True)))
    assert document["classification"]["category"] == "CHILD_SAFETY"
    assert_valid(document)


# --- canonical bytes -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_canonical_bytes_do_not_depend_on_key_order_or_on_rebuilding():
    incident = full_incident()
    report = make_report(incident, make_dest())
    now = timezone.now()
    first = build_document(report=report, now=now)
    reloaded = Report.objects.select_related("incident", "destination").get(pk=report.pk)
    assert document_bytes(reloaded, now=now) == canonical_bytes(first)

    def shuffled(node):
        if isinstance(node, dict):
            items = list(node.items())
            random.Random(7).shuffle(items)
            return {key: shuffled(value) for key, value in items}
        return [shuffled(v) for v in node] if isinstance(node, list) else node

    assert canonical_bytes(shuffled(first)) == canonical_bytes(first)
    # Parsing and canonicalising again gives the same bytes: what a receiver does before verifying.
    assert canonical_bytes(json.loads(canonical_bytes(first))) == canonical_bytes(first)
    assert payload_sha256(canonical_bytes(first)) == hashlib.sha256(canonical_bytes(first)).hexdigest()


# --- stages, unknowns, deadlines --------------------------------------------------------------------

@pytest.mark.django_db
def test_an_initial_stage_lists_what_is_still_unknown():
    incident = make_incident(unknowns="Whether data left the network.")
    document = build_document(report=make_report(incident, make_dest()))
    unknowns = document["response"]["unknowns"]
    assert {"clocks.determined_at", "clocks.occurred.start", "clocks.occurred.end", "response.root_cause",
            "actor.origin", "actor.type", "impact"} <= set(unknowns["fields"])
    assert unknowns["notes"] == "Whether data left the network."
    # Once known, a path leaves the list.
    full = build_document(report=make_report(full_incident(), make_dest("authority-b")))
    assert full["response"]["unknowns"]["fields"] == []


@pytest.mark.django_db
def test_an_update_names_what_it_supersedes_and_counts_versions(staff_user):
    incident = make_incident()
    destination = make_dest()
    initial = make_report(incident, destination)
    update = make_report(incident, destination, stage_name="update", stage_kind=StageKind.UPDATE, supersedes=initial)
    document = build_document(report=update)
    assert document["identity"]["supersedes"] == str(initial.public_id)
    assert document["identity"]["version"] == 2
    assert document["identity"]["incident_id"] == build_document(report=initial)["identity"]["incident_id"]
    assert build_document(report=initial)["identity"]["version"] == 1


@pytest.mark.django_db
def test_a_report_built_after_its_deadline_says_late_and_why():
    incident = make_incident(detected_at=timezone.now() - timedelta(hours=30))
    report = make_report(incident, make_dest(), late_reason="Receiver outage; e-mail fallback also failed.")
    deadline = build_document(report=report)["deadline"]
    assert deadline["late"] is True
    assert deadline["late_reason"] == "Receiver outage; e-mail fallback also failed."
    assert deadline["due_at"].endswith("Z")
    on_time = build_document(report=make_report(make_incident(), make_dest("authority-b")))["deadline"]
    assert on_time["late"] is False and on_time["late_reason"] is None
    assert on_time["clock_start"] is None  # a report without a RuleStage row has no clock event to name


@pytest.mark.django_db
def test_the_deadline_names_the_event_that_started_the_clock():
    incident = make_incident()
    report = make_report(incident, make_dest())
    report.stage = RuleStage.objects.create(rule=report.rule, name="initial", kind=StageKind.INITIAL, position=1,
                                            clock_start=ClockStart.AWARE_AT, offset=timedelta(hours=72))
    deadline = build_document(report=report)["deadline"]
    assert deadline["clock_start"] == "aware_at"
    assert deadline["clock_started_at"] == incident.detected_at.isoformat().replace("+00:00", "Z")


def test_the_delivery_read_gives_the_document_the_orm_read_gives(staff_user):
    """Delivery reads the report and everything its document names with prebuilt SQL
    (reporting.services.delivery_rows): the document must be the one the ORM-loaded report gives, byte for byte,
    for a full incident (accounts, indicators, evidence, detector), raw content approved, an update stage."""
    from django.db import transaction

    from reporting.services.delivery_rows import report_locked_with_relations

    incident = full_incident(staff_user=staff_user)
    destination = make_dest(max_disclosure=Disclosure.RAW_CONTENT)
    first = make_report(incident, destination)
    report = make_report(incident, destination, stage_name="update", stage_kind=StageKind.UPDATE, supersedes=first,
                         disclosure=Disclosure.RAW_CONTENT, approved_by=staff_user, late_reason="Waited for the SOC.")
    at = timezone.now()
    by_orm = Report.objects.select_related("incident", "incident__detector", "destination", "destination__authority",
                                           "rule", "stage").get(pk=report.pk)
    with transaction.atomic():
        by_rows = report_locked_with_relations(report.pk)
    assert document_bytes(by_rows, now=at) == document_bytes(by_orm, now=at)
    document = build_document(report=by_rows, now=at)
    assert document["identity"]["version"] == 2 and document["clocks"]["detection"]["detector"]["name"]
    assert len(document["actor"]["accounts"]) == 3 and len(document["activity"]["indicators"]) == 4
    assert [e.get("content") for e in document["handling"]["evidence"]][:2] == [PROMPT, OUTPUT]
    with transaction.atomic():
        assert report_locked_with_relations(-1) is None
