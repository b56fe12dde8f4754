"""Input and output serializers of the detector API (v1). Inputs validate; outputs only render."""
from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from rest_framework import serializers

from incidents.api.fields import (
    Rfc3339Field,
    StrictBooleanField,
    StrictCharField,
    StrictChoiceField,
    StrictFloatField,
    StrictSerializer,
)
from incidents.choices import Category, EnforcementAction, EvidenceKind, IndicatorType, Severity, Surface
from incidents.validation import (
    TECHNIQUE_PATTERN,
    is_sha256_hex,
    normalize_countries,
    normalize_indicator,
    normalize_techniques,
)


class ModelInput(StrictSerializer):
    name = StrictCharField(max_length=100)
    version = StrictCharField(max_length=100, required=False, allow_blank=True)


class AccountInput(StrictSerializer):
    id = StrictCharField(max_length=256, help_text="The account identifier as you know it; pseudonymised on export.")
    enforcement_action = StrictChoiceField(choices=EnforcementAction.choices, required=False)


class IndicatorInput(StrictSerializer):
    type = StrictChoiceField(choices=IndicatorType.choices)
    value = StrictCharField(max_length=2048)

    def validate(self, attrs: dict) -> dict:
        try:
            attrs["value"] = normalize_indicator(attrs["type"], attrs["value"])
        except ValueError as exc:
            raise serializers.ValidationError({"value": [str(exc)]}) from None
        return attrs


class EvidenceInput(StrictSerializer):
    kind = StrictChoiceField(choices=EvidenceKind.choices)
    description = StrictCharField(max_length=5000)
    content = StrictCharField(
        required=False, allow_blank=True, trim_whitespace=False,
        help_text="Raw content (UTF-8), capped by MIR_EVIDENCE_MAX_CONTENT_BYTES; the server computes its SHA-256.",
    )
    sha256 = StrictCharField(
        required=False, validators=[RegexValidator(r"^[0-9a-fA-F]{64}$", "Must be 64 hexadecimal characters.")],
        help_text="Hex SHA-256 of content kept elsewhere.",
    )

    def validate(self, attrs: dict) -> dict:
        if "content" not in attrs and "sha256" not in attrs:
            raise serializers.ValidationError("Give either content or sha256.")
        if "sha256" in attrs and not is_sha256_hex(attrs["sha256"].lower()):
            raise serializers.ValidationError({"sha256": ["Must be 64 hexadecimal characters."]})
        if "content" in attrs:
            size = len(attrs["content"].encode("utf-8"))
            if size > settings.MIR_EVIDENCE_MAX_CONTENT_BYTES:
                raise serializers.ValidationError(
                    {"content": [f"{size} bytes is over the {settings.MIR_EVIDENCE_MAX_CONTENT_BYTES}-byte cap."]}
                )
        return attrs


class IncidentInput(StrictSerializer):
    title = StrictCharField(max_length=200)
    summary = StrictCharField(max_length=5000)
    category = StrictChoiceField(choices=Category.choices)
    severity = StrictChoiceField(choices=Severity.choices)
    detected_at = Rfc3339Field()
    model = ModelInput()
    fingerprint = StrictCharField(
        max_length=200, required=False,
        help_text="Your stable key for 'the same thing again': repeats within the grouping window add occurrences.",
    )
    score = StrictFloatField(min_value=0, max_value=1, required=False)
    threshold = StrictFloatField(min_value=0, max_value=1, required=False)
    detector_version = StrictCharField(max_length=64, required=False, allow_blank=True)
    occurred_start = Rfc3339Field(required=False)
    occurred_end = Rfc3339Field(required=False)
    surface = StrictChoiceField(choices=Surface.choices, required=False)
    imminent_risk_to_life = StrictBooleanField(required=False)
    countries = serializers.ListField(
        child=StrictCharField(validators=[RegexValidator(r"^[A-Za-z]{2}$", "Must be two letters.")]),
        max_length=250, required=False,
        help_text="ISO 3166-1 alpha-2 codes.",
    )
    techniques = serializers.ListField(
        child=StrictCharField(validators=[RegexValidator(TECHNIQUE_PATTERN, "Must be an ATLAS or ATT&CK id.")]),
        max_length=100, required=False,
        help_text="MITRE ATLAS (AML.T0054) or ATT&CK (T1566.001) technique ids.",
    )
    accounts = serializers.ListField(child=AccountInput(), max_length=1000, required=False)
    indicators = serializers.ListField(child=IndicatorInput(), max_length=1000, required=False)
    evidence = serializers.ListField(child=EvidenceInput(), max_length=100, required=False)

    def validate_countries(self, value: list[str]) -> list[str]:
        try:
            return normalize_countries(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_techniques(self, value: list[str]) -> list[str]:
        try:
            return normalize_techniques(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict) -> dict:
        start, end = attrs.get("occurred_start"), attrs.get("occurred_end")
        if start and end and end < start:
            raise serializers.ValidationError({"occurred_end": ["Is before occurred_start."]})
        return attrs


class BatchInput(StrictSerializer):
    items = serializers.ListField(
        child=serializers.JSONField(), min_length=1, max_length=settings.MIR_API_MAX_BATCH_ITEMS,
        help_text="Incidents, each shaped like the body of POST /api/v1/incidents/.",
    )

    def validate_items(self, value: list) -> list:
        # Read at request time (the field's max_length is fixed at import, for the schema).
        cap = settings.MIR_API_MAX_BATCH_ITEMS
        if len(value) > cap:
            raise serializers.ValidationError(f"Ensure this field has no more than {cap} elements.")
        return value


class IncidentAccepted(serializers.Serializer):
    id = serializers.UUIDField(source="incident.public_id")
    reference = serializers.CharField(source="incident.reference")
    status = serializers.CharField(source="incident.status")
    grouped = serializers.BooleanField(help_text="True when this was added as an occurrence of an open incident.")
    occurrence_count = serializers.IntegerField(source="incident.occurrence_count")
    url = serializers.CharField()


class IncidentForDetector(serializers.Serializer):
    id = serializers.UUIDField(source="public_id")
    reference = serializers.CharField()
    title = serializers.CharField()
    category = serializers.CharField()
    severity = serializers.CharField()
    status = serializers.CharField()
    determination = serializers.CharField()
    reportability = serializers.CharField()
    fingerprint = serializers.CharField()
    occurrence_count = serializers.IntegerField()
    detected_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class BatchItemResult(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.IntegerField(help_text="201 created, 200 grouped or replayed, 4xx problem.")
    result = IncidentAccepted(required=False)
    problem = serializers.DictField(required=False)


class BatchResult(serializers.Serializer):
    created = serializers.IntegerField()
    grouped = serializers.IntegerField()
    failed = serializers.IntegerField()
    items = BatchItemResult(many=True)
