"""Form fields for the incident's list-shaped JSON columns: staff type plain text, not JSON."""
from __future__ import annotations

import json
from collections.abc import Callable

from django import forms
from django.core.exceptions import ValidationError


class CommaListWidget(forms.TextInput):
    def format_value(self, value: object) -> str | None:
        if isinstance(value, list | tuple):
            return ", ".join(str(item) for item in value)
        return super().format_value(value)


class CommaListField(forms.Field):
    """A comma-separated list stored as a JSON list; ``normalise`` is a validation.py normaliser."""

    widget = CommaListWidget

    def __init__(self, *, normalise: Callable[[list[str]], list[str]] | None = None, **kwargs) -> None:  # noqa: ANN003
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("class", "vLargeTextField")
        self.normalise = normalise

    def to_python(self, value: object) -> list[str]:
        if isinstance(value, list | tuple):
            return [str(item) for item in value]
        items = (part.strip() for part in str(value or "").split(","))
        return [item for item in items if item]

    def clean(self, value: object) -> list[str]:
        items = super().clean(value)
        if self.normalise is not None:
            try:
                items = self.normalise(items)
            except ValueError as exc:
                raise ValidationError(str(exc)) from None
        return items


_PARTY_KEYS = {"category", "count"}


class AffectedPartiesWidget(forms.Textarea):
    def __init__(self) -> None:
        super().__init__(attrs={"rows": 3, "placeholder": "bank customers: 120\nhospital staff: 3"})

    def format_value(self, value: object) -> str | None:
        if isinstance(value, list) and all(isinstance(item, dict) and _PARTY_KEYS <= item.keys() for item in value):
            return "\n".join(f"{item['category']}: {item['count']}" for item in value)
        if isinstance(value, list | dict):
            # A shape this field does not write (e.g. from a future API field): show it, don't hide it.
            return json.dumps(value)
        return super().format_value(value)


class AffectedPartiesField(forms.Field):
    """One ``category: count`` per line, stored as ``[{"category": ..., "count": n}]``.

    Victims are recorded as categories and counts only (BRIEF: privacy by default), which is why
    this is not a free-text field.
    """

    widget = AffectedPartiesWidget

    def __init__(self, **kwargs) -> None:  # noqa: ANN003
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "One affected group per line as “category: count”, e.g. “bank customers: 120”.")
        super().__init__(**kwargs)

    def to_python(self, value: object) -> list[dict]:
        if isinstance(value, list):
            return value
        parties = []
        for number, line in enumerate(str(value or "").splitlines(), start=1):
            if not line.strip():
                continue
            category, sep, count = line.rpartition(":")
            category, count = category.strip(), count.strip()
            if not sep or not category:
                raise ValidationError(f"line {number}: write “category: count”")
            if not count.isdigit():
                raise ValidationError(f"line {number}: the count must be a whole number")
            parties.append({"category": category[:200], "count": int(count)})
        return parties
