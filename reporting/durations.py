"""Durations in rule files: "90s", "15m", "24h", "5d", "2w", combined ("1d12h"), or whole seconds."""
from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+)([wdhms])")
_WHOLE = re.compile(r"^(\d+[wdhms])+$")


def parse_duration(value: str | int) -> timedelta:
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text like '24h'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    text = str(value).strip().lower().replace(" ", "")
    if text.isdigit():
        return timedelta(seconds=int(text))
    if not _WHOLE.match(text):
        raise ValueError(f"{value!r} is not a duration (examples: 90s, 15m, 24h, 5d, 2w, 1d12h)")
    return timedelta(seconds=sum(int(n) * _UNITS[unit] for n, unit in _PART.findall(text)))


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
