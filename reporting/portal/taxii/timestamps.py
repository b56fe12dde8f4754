"""TAXII / STIX timestamps: RFC 3339 in UTC, read strictly and written with microseconds."""
from __future__ import annotations

import re
from datetime import UTC, datetime

_TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def parse_timestamp(text: str) -> datetime:
    """An aware UTC datetime; ValueError for anything but an RFC 3339 timestamp with a zone, 1970 to 9000."""
    match = _TIMESTAMP.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp such as 2026-01-31T12:00:00.000000Z")
    whole, fraction, zone = match.groups()
    # Python keeps microseconds; a finer fraction is cut, never rounded up past the instant given.
    micro = (fraction or "0")[:6].ljust(6, "0")
    value = datetime.fromisoformat(f"{whole}.{micro}{'+00:00' if zone == 'Z' else zone}").astimezone(UTC)
    if not 1970 <= value.year <= 9000:
        raise ValueError(f"{text!r} is outside 1970 to 9000")
    return value


def format_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
