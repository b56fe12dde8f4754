"""Strict serializer fields: untrusted JSON gets no type coercion ("1" is not 1, 1 is not true)."""
from __future__ import annotations

import re
from datetime import UTC, datetime

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

_RFC3339 = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?P<frac>\.\d+)?(?P<tz>[Zz]|[+-]\d{2}:\d{2})$"
)


def _parse(text: str) -> datetime | None:
    match = _RFC3339.match(text)
    if not match:
        return None
    frac = (match["frac"] or "")[:7]  # microseconds: a dot and six digits
    tz = "+00:00" if match["tz"] in "Zz" else match["tz"]
    try:
        return datetime.fromisoformat(f"{match['date']}T{match['time']}{frac}{tz}")
    except ValueError:
        return None


def parse_rfc3339(text: str) -> datetime | None:
    """What ``Rfc3339Field`` accepts, as an aware UTC datetime; None for anything it refuses."""
    value = _parse(text)
    if value is None or not 1970 <= value.year <= 9000:
        return None
    return value.astimezone(UTC)


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data: object) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: object) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.DATETIME)
class Rfc3339Field(serializers.Field):
    """An RFC 3339 date-time with an explicit offset, from 1970 on; returned as an aware UTC datetime."""

    default_error_messages = {
        "invalid": "Must be an RFC 3339 date-time with a UTC offset, such as 2026-11-27T08:30:00Z.",
        "range": "Must be between 1970 and 9000.",
    }

    def to_internal_value(self, data: object) -> datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        value = _parse(data)
        if value is None:
            self.fail("invalid")
        if not 1970 <= value.year <= 9000:
            self.fail("range")
        return value.astimezone(UTC)

    def to_representation(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class StrictSerializer(serializers.Serializer):
    """Rejects fields it does not know: no mass assignment of what the service owns."""

    def to_internal_value(self, data: object) -> dict:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors = {name: ["Unknown field."] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                errors = {**exc.detail, **errors}
            elif not errors:
                raise
        if errors:
            raise serializers.ValidationError(errors)
        return value
