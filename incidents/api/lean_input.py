"""The hot path of incident validation: plain Python that accepts what ``IncidentInput`` accepts.

DRF builds and deep-copies a tree of field objects for every request; on the intake path that was a
sixth of the API's CPU (docs/performance.md). ``incident_input_lean`` checks the same rules with
plain type tests and returns the same ``validated_data``, or ``None`` whenever anything is off.
On ``None`` the caller runs the serializer, so every error a detector sees still comes from
``IncidentInput`` and keeps its exact RFC 9457 shape; this module never has to word an error.

The one rule this module must keep: it may decline valid input (that only costs time), but it must
never accept what the serializer rejects, nor return a different value for what it accepts.
tests/incidents/test_lean_input.py holds it to that, with examples and with generated bodies.
"""
from __future__ import annotations

import re
from datetime import datetime

from django.conf import settings

from incidents.api.fields import parse_rfc3339
from incidents.choices import Category, EnforcementAction, EvidenceKind, IndicatorType, Severity, Surface
from incidents.validation import TECHNIQUE_PATTERN, normalize_countries, normalize_indicator, normalize_techniques

_CATEGORIES = frozenset(Category.values)
_SEVERITIES = frozenset(Severity.values)
_SURFACES = frozenset(Surface.values)
_ENFORCEMENT = frozenset(EnforcementAction.values)
_EVIDENCE_KINDS = frozenset(EvidenceKind.values)
_INDICATOR_TYPES = frozenset(IndicatorType.values)
_TECHNIQUE_RE = re.compile(TECHNIQUE_PATTERN)
_COUNTRY_RE = re.compile(r"^[A-Za-z]{2}$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
# What DRF's CharField refuses whatever its options: NUL and lone surrogates.
_FORBIDDEN_CHARS = re.compile("[\x00\ud800-\udfff]")

_TOP = frozenset({
    "title", "summary", "category", "severity", "detected_at", "model", "fingerprint", "score", "threshold",
    "detector_version", "occurred_start", "occurred_end", "surface", "imminent_risk_to_life", "countries",
    "techniques", "accounts", "indicators", "evidence",
})
_REQUIRED = ("title", "summary", "category", "severity", "detected_at", "model")
_MODEL = frozenset({"name", "version"})
_ACCOUNT = frozenset({"id", "enforcement_action"})
_INDICATOR = frozenset({"type", "value"})
_EVIDENCE = frozenset({"kind", "description", "content", "sha256"})


class _Decline(Exception):
    """Not for the fast path; the serializer decides (and words the error, if there is one)."""


def _text(value: object, max_length: int | None, *, allow_blank: bool = False) -> str:
    """DRF's CharField: a str, trimmed, not blank unless allowed, no NUL or surrogates, not too long."""
    if type(value) is not str:
        raise _Decline
    text = value.strip()
    if text == "":
        if not allow_blank:
            raise _Decline
        return ""
    if (max_length is not None and len(text) > max_length) or _FORBIDDEN_CHARS.search(text):
        raise _Decline
    return text


def _choice(value: object, allowed: frozenset[str]) -> str:
    if type(value) is not str or value not in allowed:
        raise _Decline
    return value


def _moment(value: object) -> datetime:
    if type(value) is not str:
        raise _Decline
    parsed = parse_rfc3339(value)
    if parsed is None:
        raise _Decline
    return parsed


def _unit_float(value: object) -> float:
    # Exact types: bool is a subclass of int, and the serializer refuses it. The range test comes
    # first so that neither NaN nor an integer too large for a float gets any further.
    if type(value) not in (int, float) or not 0 <= value <= 1:
        raise _Decline
    return float(value)


def _object(value: object, allowed: frozenset[str]) -> dict:
    if type(value) is not dict or not value.keys() <= allowed:
        raise _Decline
    return value


def _list(value: object, max_length: int) -> list:
    if type(value) is not list or len(value) > max_length:
        raise _Decline
    return value


def _model(value: object) -> dict:
    raw = _object(value, _MODEL)
    if "name" not in raw:
        raise _Decline
    result = {"name": _text(raw["name"], 100)}
    if "version" in raw:
        result["version"] = _text(raw["version"], 100, allow_blank=True)
    return result


def _account(value: object) -> dict:
    raw = _object(value, _ACCOUNT)
    if "id" not in raw:
        raise _Decline
    result = {"id": _text(raw["id"], 256)}
    if "enforcement_action" in raw:
        result["enforcement_action"] = _choice(raw["enforcement_action"], _ENFORCEMENT)
    return result


def _indicator(value: object) -> dict:
    raw = _object(value, _INDICATOR)
    if "type" not in raw or "value" not in raw:
        raise _Decline
    kind = _choice(raw["type"], _INDICATOR_TYPES)
    try:
        return {"type": kind, "value": normalize_indicator(kind, _text(raw["value"], 2048))}
    except ValueError:
        raise _Decline from None


def _evidence(value: object) -> dict:
    raw = _object(value, _EVIDENCE)
    if "kind" not in raw or "description" not in raw or ("content" not in raw and "sha256" not in raw):
        raise _Decline
    result = {"kind": _choice(raw["kind"], _EVIDENCE_KINDS), "description": _text(raw["description"], 5000)}
    if "content" in raw:
        content = raw["content"]
        if type(content) is not str or _FORBIDDEN_CHARS.search(content):
            raise _Decline
        if len(content.encode("utf-8")) > settings.MIR_EVIDENCE_MAX_CONTENT_BYTES:
            raise _Decline
        result["content"] = content
    if "sha256" in raw:
        digest = _text(raw["sha256"], None)
        if not _SHA256_RE.match(digest):
            raise _Decline
        result["sha256"] = digest
    return result


def _codes(value: object, max_length: int, pattern: re.Pattern, normalise) -> list[str]:  # noqa: ANN001
    items = [_text(item, None) for item in _list(value, max_length)]
    if not all(pattern.match(item) for item in items):
        raise _Decline
    try:
        return normalise(items)
    except ValueError:
        raise _Decline from None


def incident_input_lean(data: object) -> dict | None:
    """``IncidentInput(data=data).validated_data`` for input it accepts; ``None`` to defer to it."""
    try:
        raw = _object(data, _TOP)
        if not all(name in raw for name in _REQUIRED):
            return None
        result: dict = {
            "title": _text(raw["title"], 200),
            "summary": _text(raw["summary"], 5000),
            "category": _choice(raw["category"], _CATEGORIES),
            "severity": _choice(raw["severity"], _SEVERITIES),
            "detected_at": _moment(raw["detected_at"]),
            "model": _model(raw["model"]),
        }
        if "fingerprint" in raw:
            result["fingerprint"] = _text(raw["fingerprint"], 200)
        for name in ("score", "threshold"):
            if name in raw:
                result[name] = _unit_float(raw[name])
        if "detector_version" in raw:
            result["detector_version"] = _text(raw["detector_version"], 64, allow_blank=True)
        for name in ("occurred_start", "occurred_end"):
            if name in raw:
                result[name] = _moment(raw[name])
        if "surface" in raw:
            result["surface"] = _choice(raw["surface"], _SURFACES)
        if "imminent_risk_to_life" in raw:
            if type(raw["imminent_risk_to_life"]) is not bool:
                return None
            result["imminent_risk_to_life"] = raw["imminent_risk_to_life"]
        if "countries" in raw:
            result["countries"] = _codes(raw["countries"], 250, _COUNTRY_RE, normalize_countries)
        if "techniques" in raw:
            result["techniques"] = _codes(raw["techniques"], 100, _TECHNIQUE_RE, normalize_techniques)
        if "accounts" in raw:
            result["accounts"] = [_account(item) for item in _list(raw["accounts"], 1000)]
        if "indicators" in raw:
            result["indicators"] = [_indicator(item) for item in _list(raw["indicators"], 1000)]
        if "evidence" in raw:
            result["evidence"] = [_evidence(item) for item in _list(raw["evidence"], 100)]
    except _Decline:
        return None
    start, end = result.get("occurred_start"), result.get("occurred_end")
    if start and end and end < start:
        return None
    return result
