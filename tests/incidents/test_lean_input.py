"""The lean validator may decline valid input, but never accept what IncidentInput refuses, nor
return a different value for what it accepts (incidents/api/lean_input.py)."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incidents.api.lean_input import incident_input_lean
from incidents.api.serializers import IncidentInput
from tests.conftest import valid_body
from tests.incidents.test_api_errors import INVALID_BODIES


def plain(value: object) -> object:
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def serializer_result(body: object) -> dict | None:
    serializer = IncidentInput(data=body)
    return plain(serializer.validated_data) if serializer.is_valid() else None


def assert_agrees(body: object) -> dict | None:
    lean = incident_input_lean(body)
    if lean is not None:
        assert serializer_result(body) == lean, body
    return lean


FULL = valid_body(
    title="  Phishing kit  ", summary="\tmany pages\n", fingerprint=" fp-1 ", score=0.93, threshold=1,
    detector_version="  ", occurred_start="2026-11-26T10:00:00.1234567+02:00", occurred_end="2026-11-26T09:00:00Z",
    surface="api", imminent_risk_to_life=False, countries=["de", " FR", "DE"], techniques=["AML.T0054", "T1566.001"],
    model={"name": " Fable 5 ", "version": ""},
    accounts=[{"id": " acct-1 "}, {"id": "acct-2", "enforcement_action": "banned"}],
    indicators=[{"type": "domain", "value": " Examp1e-Bank.COM. "}, {"type": "ip", "value": "::ffff:192.0.2.1"},
                {"type": "url", "value": "HTTPS://Example.ORG/a?b=C"}, {"type": "email", "value": "A@Example.ORG"}],
    evidence=[{"kind": "prompt", "description": " d ", "content": "  keeps its spaces  "},
              {"kind": "output", "description": "digest only", "sha256": " " + "AB" * 32 + " "},
              {"kind": "prompt", "description": "empty content", "content": ""}],
)


def test_a_full_valid_body_takes_the_lean_path_with_the_serializers_values():
    lean = assert_agrees(FULL)
    assert lean is not None
    assert lean["title"] == "Phishing kit" and lean["detector_version"] == ""
    assert lean["countries"] == ["DE", "FR"]
    assert lean["indicators"][0]["value"] == "examp1e-bank.com"
    assert lean["evidence"][0]["content"] == "  keeps its spaces  "
    assert lean["occurred_start"] == datetime(2026, 11, 26, 8, 0, 0, 123456, tzinfo=UTC)


def test_the_minimal_body_takes_the_lean_path():
    assert assert_agrees(valid_body()) is not None


@pytest.mark.parametrize(("overrides", "field"), INVALID_BODIES, ids=[f for _, f in INVALID_BODIES])
def test_every_known_bad_input_is_left_to_the_serializer_or_the_service(overrides, field):
    # Times in the future are the service's check (the serializer lets them through, so may we).
    assert_agrees(valid_body(**overrides))


@pytest.mark.parametrize("missing", ["title", "summary", "category", "severity", "detected_at", "model"])
def test_a_missing_required_field_is_left_to_the_serializer(missing):
    body = valid_body()
    del body[missing]
    assert incident_input_lean(body) is None


@pytest.mark.parametrize("overrides", [
    {"title": "\x00"}, {"title": "a\ud800"}, {"title": "   "}, {"summary": 5}, {"fingerprint": ""},
    {"fingerprint": None}, {"score": float("nan")}, {"score": float("inf")}, {"score": 10**400},
    {"countries": ["D"]}, {"countries": [" "]}, {"countries": [None]}, {"countries": ["DE"] * 251},
    {"techniques": "T1566"}, {"techniques": [" "]}, {"accounts": {"id": "u"}}, {"accounts": [None]},
    {"accounts": [{}]}, {"accounts": [{"id": "u"}] * 1001}, {"model": {"name": "x", "version": None}},
    {"model": {"version": "1"}}, {"model": None}, {"indicators": [{"type": "ip"}]},
    {"indicators": [{"type": "ip", "value": " "}]}, {"evidence": [{"kind": "prompt", "content": "x"}]},
    {"evidence": [{"kind": "prompt", "description": "d", "content": "a\x00"}]},
    {"evidence": [{"kind": "prompt", "description": "d", "sha256": ""}]},
    {"evidence": [{"kind": "prompt", "description": "d", "content": None}]},
    {"evidence": [{"kind": "prompt", "description": "d", "content": "x"}] * 101},
    {"detected_at": "1969-12-31T23:59:59Z"}, {"detected_at": "9001-01-01T00:00:00Z"},
    {"occurred_start": None}, {"surface": None}, {"detector_version": "v" * 65},
])
def test_more_bad_input_is_left_to_the_serializer(overrides):
    body = valid_body(**overrides)
    assert incident_input_lean(body) is None
    assert serializer_result(body) is None


@override_settings(MIR_EVIDENCE_MAX_CONTENT_BYTES=10)
def test_the_evidence_cap_is_read_at_request_time():
    assert incident_input_lean(valid_body(evidence=[{"kind": "prompt", "description": "d", "content": "é" * 5}]))
    assert incident_input_lean(valid_body(evidence=[{"kind": "prompt", "description": "d", "content": "é" * 6}])) \
        is None


def test_a_body_that_is_not_an_object_is_left_to_the_serializer():
    for body in ([], "x", None, 1):
        assert incident_input_lean(body) is None


# Values drawn for each field: some valid, some subtly not (types, blanks, bounds, unknown keys).
_TEXT = st.one_of(st.text(max_size=6), st.sampled_from(["", " ", " a ", "x" * 201, "\x00", "é"]), st.integers(),
                  st.none(), st.booleans())
_NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 2), st.booleans(),
                    st.sampled_from(["0.5", None, 10**400]))
_MOMENT = st.one_of(st.sampled_from(["2026-11-26T10:00:00Z", "2026-11-26T10:00:00+05:30", "2026-11-26 10:00:00z",
                                     "2026-11-26T10:00:00", "1969-01-01T00:00:00Z", "2026-02-30T10:00:00Z", ""]),
                    st.integers(), st.none())
_FIELD_VALUES = {
    "title": _TEXT, "summary": _TEXT, "fingerprint": _TEXT, "detector_version": _TEXT,
    "category": st.sampled_from(["CYBER", "FRAUD", "cyber", "", None, 3]),
    "severity": st.sampled_from(["SEV-0", "SEV-4", "SEV-5", None]),
    "detected_at": _MOMENT, "occurred_start": _MOMENT, "occurred_end": _MOMENT,
    "score": _NUMBER, "threshold": _NUMBER,
    "surface": st.sampled_from(["api", "agent", "web", "", None]),
    "imminent_risk_to_life": st.one_of(st.booleans(), st.sampled_from([0, 1, "true", None])),
    "model": st.one_of(st.fixed_dictionaries({"name": _TEXT}, optional={"version": _TEXT, "extra": _TEXT}),
                       st.none(), st.just("Fable")),
    "countries": st.one_of(st.lists(st.sampled_from(["DE", "de", " fr ", "XX", "D", "", "DEU", 1]), max_size=3),
                           st.just("DE")),
    "techniques": st.one_of(st.lists(st.sampled_from(["AML.T0054", " T1566.001 ", "T99", "t1566", ""]), max_size=3),
                            st.none()),
    "accounts": st.lists(st.fixed_dictionaries({"id": _TEXT}, optional={
        "enforcement_action": st.sampled_from(["banned", "none", "shot", None]), "x": _TEXT}), max_size=2),
    "indicators": st.lists(st.fixed_dictionaries({
        "type": st.sampled_from(["domain", "ip", "url", "email", "wallet", "file_hash", "registry", 1]),
        "value": st.one_of(_TEXT, st.sampled_from(["example.org", "192.0.2.1", "https://a.example/x", "a@b.example",
                                                   "0x" + "a" * 40, "d41d8cd98f00b204e9800998ecf8427e"]))}),
        max_size=2),
    "evidence": st.lists(st.fixed_dictionaries({"kind": st.sampled_from(["prompt", "output", "video"])}, optional={
        "description": _TEXT, "content": _TEXT, "sha256": st.sampled_from(["a" * 64, "A" * 64, " " + "a" * 64, "z" * 64,
                                                                           "", None])}), max_size=2),
    "status": st.just("closed"),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(_FIELD_VALUES)), st.none(), max_size=6).flatmap(
    lambda keys: st.fixed_dictionaries({name: _FIELD_VALUES[name] for name in keys})),
    st.sets(st.sampled_from(["title", "summary", "category", "severity", "detected_at", "model"]), max_size=1))
def test_generated_bodies_never_pass_the_lean_path_unless_the_serializer_agrees(overrides, dropped):
    body = valid_body(**overrides)
    for name in dropped:
        del body[name]
    assert_agrees(body)
