"""The STIX 2.1 mapping of a report document (reporting.packaging.stix): valid, deterministic, marked."""
from __future__ import annotations

import copy
import hashlib
import json

import pytest
import stix2
from stix2patterns.validator import run_validator

from reporting.packaging.stix import (
    INCIDENT_CORE_EXTENSION,
    MIR_EXTENSION,
    TLP_MARKINGS,
    bundle_for,
    indicator_pattern,
    mir_extension_definition,
    tlp_marking_definition,
    validate_bundle,
)

INCIDENT_ID = "6f1c1d2e-1a57-4b87-8f0b-9d3f2f4a1c11"
MESSAGE_ID = "5b0f2f0e-3e8c-4c1a-9f57-3f1f0b8f4d21"
CLEAR = TLP_MARKINGS["TLP:CLEAR"][0]
AMBER_STRICT = TLP_MARKINGS["TLP:AMBER+STRICT"][0]
SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def sample_document(**sections) -> dict:
    """A document shaped like build_document's (urn:mir:report:v1); keyword sections replace or merge."""
    document = {
        "schema": "urn:mir:report:v1",
        "generated_at": "2025-03-02T09:30:00.123456Z",
        "identity": {
            "incident_id": INCIDENT_ID, "incident_reference": "INC-000042",
            "report_id": "8d1f3c2a-0b7e-4e52-9a55-1f6f5e0c9b10", "stage": "initial", "stage_kind": "initial",
            "sequence": 1, "version": 1, "supersedes": None, "title": "Phishing kit generation",
            "summary": "A cluster of accounts generated phishing pages.",
            "reporting_entity": {"name": "Example AI Lab", "contact": "security-oncall@lab.example (24/7)"},
        },
        "clocks": {
            "occurred": {"start": "2025-02-28T22:00:00Z", "end": None, "precision": "hour"},
            "detected_at": "2025-03-01T10:15:00Z", "aware_at": "2025-03-01T11:00:00Z", "determined_at": None,
            "resolved_at": None,
            "detection": {"source": "detector", "detector": {"name": "classifier-a", "version": "1.2"},
                          "score": 0.97, "threshold": 0.9},
        },
        "classification": {"category": "FRAUD", "severity": "SEV-1", "determination": "confirmed",
                           "harm_types": ["financial"], "imminent_risk_to_life": False, "cross_border": True,
                           "countries": ["DE", "FR"], "critical_infrastructure_sector": None, "near_miss": False,
                           "qualification": {"rule_id": "1f0c", "rule": "Test regime", "basis": None}},
        "ai_system": {"model_name": "Fable 5", "model_version": "5.0", "surface": "api", "internal_use": False,
                      "tools": [], "involvement": None, "safeguards_evaded": None},
        "actor": {"type": "criminal", "origin": None, "confidence": "medium", "account_count": 2,
                  "accounts": [{"pseudonym": "psn_7f3a", "enforcement_action": "banned"},
                               {"pseudonym": "psn_91bc", "enforcement_action": "banned"}]},
        "activity": {
            "event_chain": "Jailbreak, then generation of bank login pages.",
            "techniques": ["AML.T0054", "T1566.001"],
            "indicators": [
                {"type": "domain", "value": "login-bank.example", "pseudonymized": False},
                {"type": "ip", "value": "203.0.113.7", "pseudonymized": False},
                {"type": "ip", "value": "2001:db8::1", "pseudonymized": False},
                {"type": "url", "value": "https://login-bank.example/it's", "pseudonymized": False},
                {"type": "email", "value": "payouts@login-bank.example", "pseudonymized": False},
                {"type": "file_hash", "value": SHA256, "pseudonymized": False},
                {"type": "wallet", "value": "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "pseudonymized": False},
                {"type": "prompt_pattern_hash", "value": "a" * 64, "pseudonymized": False},
            ],
            "occurrences": 3, "last_seen_at": "2025-03-01T12:00:00Z",
        },
        "impact": {"affected_parties": [{"category": "end users", "count": 120}], "deaths": 0, "injuries": 0,
                   "economic_loss_usd": None},
        "response": {"actions_taken": "Accounts banned.", "actions_planned": None, "recommendation": "Take down.",
                     "notified_parties": [], "root_cause": None,
                     "unknowns": {"fields": ["clocks.determined_at"], "notes": "Operator identity."}},
        "handling": {"tlp": "TLP:AMBER+STRICT", "disclosure": "digests",
                     "recipient": {"destination_id": "2b8c", "authority": "Authority B"},
                     "evidence": [{"id": "9a1e", "kind": "prompt", "description": "The jailbreak prompt",
                                   "sha256": "b" * 64, "size_bytes": 120}]},
        "deadline": {"clock_start": "detected_at", "clock_started_at": "2025-03-01T10:15:00Z",
                     "due_at": "2025-03-02T10:15:00Z", "late": False, "late_reason": None},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(document.get(name), dict):
            document[name] = {**document[name], **value}
        else:
            document[name] = value
    return document


def signed(document: dict) -> tuple[dict, bytes]:
    """The envelope the delivery service hands a transport (parsed) and its frozen bytes."""
    envelope = {"document": document, "signature": {"alg": "Ed25519", "key_id": "0123456789abcdef",
                                                    "value": "c2lnbmF0dXJl", "canonicalization": "RFC8785"}}
    return envelope, json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()


def by_type(bundle: dict, object_type: str) -> list[dict]:
    return [obj for obj in bundle["objects"] if obj["type"] == object_type]


def one(bundle: dict, object_type: str) -> dict:
    (obj,) = by_type(bundle, object_type)
    return obj


def test_every_object_is_valid_stix_21_without_custom_content():
    bundle = bundle_for(sample_document(), message_id=MESSAGE_ID)
    validate_bundle(bundle)  # strict parse + every reference resolves inside the bundle
    ids = [obj["id"] for obj in bundle["objects"]]
    assert len(ids) == len(set(ids))
    for obj in bundle["objects"]:
        parsed = stix2.parse(obj, allow_custom=False, version="2.1")
        assert parsed.id == obj["id"]
    assert {obj["type"] for obj in bundle["objects"]} == {
        "marking-definition", "identity", "attack-pattern", "indicator", "incident", "relationship", "note",
        "report",
    }


def test_our_extension_definition_is_valid_and_names_what_the_bundle_uses():
    bundle = bundle_for(sample_document(), message_id=MESSAGE_ID)
    definition = mir_extension_definition(one(bundle, "identity")["id"])
    stix2.parse(definition, allow_custom=False, version="2.1")
    assert definition["id"] == MIR_EXTENSION
    assert MIR_EXTENSION in one(bundle, "incident")["extensions"]
    assert MIR_EXTENSION in one(bundle, "report")["extensions"]


def test_the_same_document_gives_byte_identical_bundles():
    document = sample_document()
    first = bundle_for(document, message_id=MESSAGE_ID)
    again = bundle_for(copy.deepcopy(document), message_id=MESSAGE_ID)
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)
    assert first["id"] == again["id"]


def test_ids_are_stable_by_meaning_across_stages():
    initial = bundle_for(sample_document(), message_id=MESSAGE_ID)
    update = bundle_for(
        sample_document(generated_at="2025-03-05T08:00:00Z",
                        identity={"stage": "update", "stage_kind": "update", "sequence": 2},
                        classification={"severity": "SEV-0"}),
        message_id="0c9a5d3e-7b61-4f0e-8f2a-6c1d9e4b7a30",
    )
    assert one(initial, "incident")["id"] == one(update, "incident")["id"]
    assert one(initial, "incident")["created"] == one(update, "incident")["created"] == "2025-03-01T10:15:00.000Z"
    assert one(update, "incident")["modified"] == "2025-03-05T08:00:00.000Z"
    assert one(initial, "identity") == one(update, "identity")
    assert by_type(initial, "attack-pattern") == by_type(update, "attack-pattern")
    assert [i["id"] for i in by_type(initial, "indicator")] == [i["id"] for i in by_type(update, "indicator")]
    assert one(initial, "report")["id"] != one(update, "report")["id"]
    assert one(initial, "note")["id"] != one(update, "note")["id"]
    assert one(update, "incident")["id"] in one(update, "report")["object_refs"]


def test_the_lab_identity_depends_only_on_its_name():
    a = one(bundle_for(sample_document(), message_id=MESSAGE_ID), "identity")
    b = one(bundle_for(sample_document(identity={"incident_id": "0e2b6c53-0000-4000-8000-000000000001"}),
                       message_id="1b6f0a57-0000-4000-8000-000000000002"), "identity")
    other = one(bundle_for(sample_document(identity={"reporting_entity": "Other Lab"}), message_id=MESSAGE_ID),
                "identity")
    assert a == b
    assert a["name"] == "Example AI Lab" and a["identity_class"] == "organization"
    assert other["id"] != a["id"]


def test_the_stage_report_names_the_reference_and_stage_and_refers_to_everything():
    envelope, payload = signed(sample_document())
    bundle = bundle_for(envelope, message_id=MESSAGE_ID, payload=payload)
    report = one(bundle, "report")
    assert report["name"] == "INC-000042 initial #1: Phishing kit generation"
    assert report["published"] == report["created"] == "2025-03-02T09:30:00.123Z"
    expected = {obj["id"] for obj in bundle["objects"]
                if obj["type"] not in ("marking-definition", "report")}
    assert set(report["object_refs"]) == expected
    extension = report["extensions"][MIR_EXTENSION]
    assert extension["message_id"] == MESSAGE_ID
    assert extension["payload"] == payload.decode()  # the signed bytes, so TAXII readers can verify them too
    assert extension["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    assert extension["document_schema"] == "urn:mir:report:v1"
    assert extension["reporting_entity"]["contact"] == "security-oncall@lab.example (24/7)"
    assert extension["identity"]["stage_kind"] == "initial"


def test_tlp_marks_every_object_and_uses_the_official_definitions():
    bundle = bundle_for(sample_document(), message_id=MESSAGE_ID)
    markings = by_type(bundle, "marking-definition")
    assert markings == [tlp_marking_definition("TLP:CLEAR"), tlp_marking_definition("TLP:AMBER+STRICT")]
    assert markings[1]["id"] == "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003"
    for obj in bundle["objects"]:
        if obj["type"] == "marking-definition":
            assert "object_marking_refs" not in obj  # published objects, sent exactly as OASIS defines them
        elif obj["type"] in ("identity", "attack-pattern"):
            assert obj["object_marking_refs"] == [CLEAR], obj["type"]  # public catalogue content only
        else:
            assert obj["object_marking_refs"] == [AMBER_STRICT], obj["type"]


@pytest.mark.parametrize(
    ("document_tlp", "floor", "expected"),
    [
        ("TLP:GREEN", None, "TLP:GREEN"),
        ("TLP:GREEN", "TLP:AMBER+STRICT", "TLP:AMBER+STRICT"),  # the destination tightens
        ("TLP:RED", "TLP:CLEAR", "TLP:RED"),  # but never loosens
        ("TLP:WHITE", None, "TLP:CLEAR"),  # TLP 1.0 spelling
        ("amber", None, "TLP:AMBER"),
        ("TLP:PURPLE", None, "TLP:RED"),  # a typo never loosens handling
        ("TLP:GREEN", "TLP:PURPL", "TLP:RED"),
        (None, None, "TLP:AMBER+STRICT"),
    ],
)
def test_effective_tlp(document_tlp, floor, expected):
    bundle = bundle_for(sample_document(handling={"tlp": document_tlp}), message_id=MESSAGE_ID, tlp_floor=floor)
    assert one(bundle, "incident")["object_marking_refs"] == [TLP_MARKINGS[expected][0]]
    validate_bundle(bundle)


@pytest.mark.parametrize(
    ("kind", "value", "pattern"),
    [
        ("domain", "login-bank.example", "[domain-name:value = 'login-bank.example']"),
        ("ip", "203.0.113.7", "[ipv4-addr:value = '203.0.113.7']"),
        ("ip", "2001:db8::1", "[ipv6-addr:value = '2001:db8::1']"),
        ("ip", "::ffff:203.0.113.7", "[ipv6-addr:value = '::ffff:203.0.113.7']"),
        ("url", "https://a.example/it's\\x", "[url:value = 'https://a.example/it\\'s\\\\x']"),
        ("email", "a@b.example", "[email-addr:value = 'a@b.example']"),
        ("file_hash", "d41d8cd98f00b204e9800998ecf8427e", "[file:hashes.MD5 = 'd41d8cd98f00b204e9800998ecf8427e']"),
        ("file_hash", "da39a3ee5e6b4b0d3255bfef95601890afd80709",
         "[file:hashes.'SHA-1' = 'da39a3ee5e6b4b0d3255bfef95601890afd80709']"),
        ("file_hash", SHA256, f"[file:hashes.'SHA-256' = '{SHA256}']"),
        ("file_hash", "c" * 128, f"[file:hashes.'SHA-512' = '{'c' * 128}']"),
        ("wallet", "0x52908400098527886e0f7030069857d2e4169ee7",
         "[cryptocurrency-wallet:value = '0x52908400098527886e0f7030069857d2e4169ee7']"),
        ("prompt_pattern_hash", SHA256, f"[x-mir-prompt-pattern:hashes.'SHA-256' = '{SHA256}']"),
    ],
)
def test_indicator_patterns_are_valid_stix_patterns(kind, value, pattern):
    assert indicator_pattern(kind, value) == pattern
    assert run_validator(pattern, stix_version="2.1") == []


@pytest.mark.parametrize(("kind", "value"), [("ip", "not-an-ip"), ("file_hash", "abc"), ("file_hash", "z" * 64),
                                             ("smoke_signal", "puff")])
def test_unmappable_indicators_get_no_pattern_and_stay_in_the_extension(kind, value):
    assert indicator_pattern(kind, value) is None
    document = sample_document(activity={"indicators": [{"type": kind, "value": value, "pseudonymized": False}]})
    bundle = bundle_for(document, message_id=MESSAGE_ID)
    assert by_type(bundle, "indicator") == []
    mir = one(bundle, "incident")["extensions"][MIR_EXTENSION]
    assert mir["activity"]["indicators"] == [{"type": kind, "value": value, "pseudonymized": False}]
    validate_bundle(bundle)


def test_repeated_indicators_and_techniques_give_one_object_each():
    indicator = {"type": "domain", "value": "login-bank.example", "techniques": ["T1566.001", "T1566.001"]}
    document = sample_document(activity={"techniques": ["T1566.001", "T1566.001"], "indicators": [indicator] * 2})
    bundle = bundle_for(document, message_id=MESSAGE_ID)
    validate_bundle(bundle)
    assert len(by_type(bundle, "indicator")) == len(by_type(bundle, "attack-pattern")) == 1
    assert len(by_type(bundle, "relationship")) == 3  # indicator-incident, indicates, incident-technique
    ids = [obj["id"] for obj in bundle["objects"]]
    assert len(ids) == len(set(ids))


def test_a_pseudonymized_indicator_is_not_an_observable():
    document = sample_document(activity={"indicators": [
        {"type": "email", "value": "psn_" + "d" * 64, "pseudonymized": True},
        {"type": "domain", "value": "login-bank.example", "pseudonymized": False}]})
    bundle = bundle_for(document, message_id=MESSAGE_ID)
    assert [i["pattern"] for i in by_type(bundle, "indicator")] == ["[domain-name:value = 'login-bank.example']"]
    assert "psn_" not in json.dumps(by_type(bundle, "indicator"))


def test_the_signed_envelope_maps_like_the_document_it_wraps():
    document = sample_document()
    envelope, _payload = signed(document)
    assert bundle_for(envelope, message_id=MESSAGE_ID) == bundle_for(document, message_id=MESSAGE_ID)


def test_the_note_tells_what_is_still_unknown_and_whom_to_call():
    content = one(bundle_for(sample_document(), message_id=MESSAGE_ID), "note")["content"]
    assert "Still unknown: Operator identity.; clocks.determined_at" in content
    assert "Recommendation: Take down." in content
    assert "Contact (24/7): security-oncall@lab.example (24/7)" in content


def test_flat_spellings_of_the_outline_are_read_too():
    document = sample_document(
        identity={"incident_reference": None, "reference": "INC-000077", "stage": None, "stage_name": "early"},
        clocks={"occurred": None, "occurred_start": "2025-02-27T00:00:00Z",
                "detection": {"source": "staff", "detector": "soc-b"}},
    )
    bundle = bundle_for(document, message_id=MESSAGE_ID)
    assert one(bundle, "report")["name"].startswith("INC-000077 early #1: ")
    assert {i["valid_from"] for i in by_type(bundle, "indicator")} == {"2025-02-27T00:00:00.000Z"}
    core = one(bundle, "incident")["extensions"][INCIDENT_CORE_EXTENSION]
    assert core["detection_methods"] == ["human-review", "soc-b"]


def test_attack_patterns_reference_atlas_and_attack():
    bundle = bundle_for(sample_document(), message_id=MESSAGE_ID)
    refs = {p["name"]: p["external_references"] for p in by_type(bundle, "attack-pattern")}
    assert refs["AML.T0054"] == [{"source_name": "mitre-atlas", "external_id": "AML.T0054",
                                  "url": "https://atlas.mitre.org/techniques/AML.T0054"}]
    assert refs["T1566.001"] == [{"source_name": "mitre-attack", "external_id": "T1566.001",
                                  "url": "https://attack.mitre.org/techniques/T1566/001/"}]


def test_relationships_link_through_the_incident_and_indicates_only_where_paired():
    plain = bundle_for(sample_document(), message_id=MESSAGE_ID)
    incident_id = one(plain, "incident")["id"]
    kinds = {(r["relationship_type"], r["source_ref"].split("--")[0], r["target_ref"].split("--")[0])
             for r in by_type(plain, "relationship")}
    assert kinds == {("related-to", "indicator", "incident"), ("related-to", "incident", "attack-pattern")}
    assert all(incident_id in (r["source_ref"], r["target_ref"]) for r in by_type(plain, "relationship"))

    paired = bundle_for(sample_document(activity={"indicators": [
        {"type": "domain", "value": "login-bank.example", "techniques": ["T1566.001", "T9999"]}]}),
        message_id=MESSAGE_ID)
    (indicates,) = [r for r in by_type(paired, "relationship") if r["relationship_type"] == "indicates"]
    assert indicates["source_ref"] == one(paired, "indicator")["id"]
    technique = next(p for p in by_type(paired, "attack-pattern") if p["id"] == indicates["target_ref"])
    assert technique["name"] == "T1566.001"


@pytest.mark.parametrize(
    ("classification", "determination", "criticality"),
    [
        ({"determination": "suspected", "severity": "SEV-2"}, "suspected", 40),
        ({"determination": "confirmed", "severity": "SEV-0"}, "successful-attempt", 95),
        ({"determination": "confirmed", "near_miss": True, "severity": "SEV-4"}, "blocked", 5),
        ({"determination": "false_positive", "severity": "SEV-3"}, "false-positive", 0),
        ({"determination": "something new", "severity": "SEV-9"}, "suspected", None),
    ],
)
def test_incident_core_extension(classification, determination, criticality):
    bundle = bundle_for(sample_document(classification=classification), message_id=MESSAGE_ID)
    core = one(bundle, "incident")["extensions"][INCIDENT_CORE_EXTENSION]
    assert core["determination"] == determination
    assert core.get("criticality") == criticality
    assert core["investigation_status"] == "open"
    assert core["detection_methods"] == ["automated-tool", "classifier-a"]
    assert core["scores"] == [{"name": "classifier-a score", "value": 0.97, "description": "threshold 0.9"}]
    assert core["impacted_entity_counts"] == {"end-users": 120}


def test_the_incident_carries_the_document_sections_without_empty_values():
    bundle = bundle_for(sample_document(), message_id=MESSAGE_ID)
    incident = one(bundle, "incident")
    mir = incident["extensions"][MIR_EXTENSION]
    assert mir["reference"] == "INC-000042"
    assert mir["actor"]["accounts"][0] == {"pseudonym": "psn_7f3a", "enforcement_action": "banned"}
    assert mir["handling"]["evidence"] == [{"id": "9a1e", "kind": "prompt", "description": "The jailbreak prompt",
                                            "sha256": "b" * 64, "size_bytes": 120}]
    assert mir["deadline"]["late"] is False and "late_reason" not in mir["deadline"]
    assert "determined_at" not in mir["clocks"] and "origin" not in mir["actor"]
    assert "economic_loss_usd" not in mir["impact"] and mir["impact"]["deaths"] == 0
    assert "identity" not in mir  # identity goes on the report, stage by stage


def test_a_final_stage_closes_the_investigation_and_times_become_utc():
    bundle = bundle_for(sample_document(identity={"stage_kind": "final", "stage": "final"},
                                        clocks={"detected_at": "2025-03-01T12:15:00+02:00"},
                                        generated_at="2025-04-01T00:00:00.5+00:00"),
                        message_id=MESSAGE_ID)
    incident = one(bundle, "incident")
    assert incident["extensions"][INCIDENT_CORE_EXTENSION]["investigation_status"] == "closed"
    assert incident["created"] == "2025-03-01T10:15:00.000Z"
    assert incident["modified"] == "2025-04-01T00:00:00.500Z"


def test_a_minimal_document_still_maps(settings):
    settings.MIR_REPORTING_ENTITY_NAME = "Fallback Lab"
    bundle = bundle_for({"identity": {"incident_id": INCIDENT_ID}, "clocks": {"detected_at": "2025-03-01T10:15:00Z"}},
                        message_id=MESSAGE_ID)
    validate_bundle(bundle)
    assert one(bundle, "identity")["name"] == "Fallback Lab"
    assert one(bundle, "report")["name"] == f"{INCIDENT_ID} report: {INCIDENT_ID}"
    assert one(bundle, "incident")["object_marking_refs"] == [AMBER_STRICT]


@pytest.mark.parametrize("document", [{}, {"identity": {"reference": "INC-1"}}, "not a dict",
                                      {"identity": {"incident_id": INCIDENT_ID}, "clocks": {"detected_at": "soon"}}])
def test_an_unmappable_document_is_refused(document):
    with pytest.raises(ValueError):
        bundle_for(document, message_id=MESSAGE_ID)


def test_validate_bundle_catches_dangling_references_and_invalid_objects():
    bundle = bundle_for(sample_document(), message_id=MESSAGE_ID)
    dangling = copy.deepcopy(bundle)
    dangling["objects"] = [obj for obj in dangling["objects"] if obj["type"] != "identity"]
    with pytest.raises(ValueError, match="not in the bundle"):
        validate_bundle(dangling)
    invalid = copy.deepcopy(bundle)
    one(invalid, "incident")["x_surprise"] = 1
    with pytest.raises(ValueError, match="not valid STIX"):
        validate_bundle(invalid)
