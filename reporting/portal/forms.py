"""Forms of the portal: sign-in (two steps) and the report list's query parameters."""
from __future__ import annotations

from django import forms

from incidents.choices import Category, Severity
from reporting.choices import StageKind
from reporting.portal.selectors import ReportFilters

SEARCH_MAX = 200
PAGE_MAX = 100_000


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise forms.ValidationError("must not contain NUL characters")
    return value


class AccessibleErrorsForm(forms.Form):
    """Fields with an error say so to screen readers and point at their message (portal/includes/field.html)."""

    def full_clean(self) -> None:
        super().full_clean()
        for name in self.errors:
            if name in self.fields:
                self.fields[name].widget.attrs.update(
                    {"aria-invalid": "true", "aria-describedby": f"{self[name].auto_id}-error"})


class LoginForm(AccessibleErrorsForm):
    username = forms.CharField(max_length=150, widget=forms.TextInput(attrs={"autocomplete": "username",
                                                                             "autofocus": True}))
    password = forms.CharField(max_length=1024, strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))

    def clean_username(self) -> str:
        return _no_nul(self.cleaned_data["username"])

    def clean_password(self) -> str:
        return _no_nul(self.cleaned_data["password"])


class TotpForm(AccessibleErrorsForm):
    token = forms.RegexField(
        regex=r"^\s*[0-9]{6}\s*$", label="Code from your authenticator app", max_length=12,
        error_messages={"invalid": "Enter the 6-digit code."},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True,
                                      "pattern": "[0-9]{6}"}),
    )

    def clean_token(self) -> str:
        return self.cleaned_data["token"].strip()


def _choices(values: list[str]) -> list[tuple[str, str]]:
    return [("", "Any"), *((value, value) for value in values)]


class ReportFilterForm(AccessibleErrorsForm):
    """The list's query string. Every field is optional; a bad value is a message, never a 500."""

    delivered_from = forms.DateField(required=False, label="Delivered from", input_formats=["%Y-%m-%d"],
                                     widget=forms.DateInput(attrs={"type": "date"}),
                                     error_messages={"invalid": "Use a date as YYYY-MM-DD."})
    delivered_to = forms.DateField(required=False, label="Delivered to", input_formats=["%Y-%m-%d"],
                                   widget=forms.DateInput(attrs={"type": "date"}),
                                   error_messages={"invalid": "Use a date as YYYY-MM-DD."})
    category = forms.ChoiceField(required=False, choices=_choices(list(Category.values)))
    severity = forms.ChoiceField(required=False, choices=_choices(list(Severity.values)))
    stage = forms.ChoiceField(required=False, label="Stage", choices=[("", "Any"), *StageKind.choices])
    acknowledged = forms.TypedChoiceField(
        required=False, label="Acknowledged", empty_value=None,
        choices=[("", "Any"), ("yes", "Acknowledged"), ("no", "Not acknowledged")],
        coerce=lambda value: value == "yes",
    )
    q = forms.CharField(required=False, max_length=SEARCH_MAX, label="Search reference or title",
                        widget=forms.TextInput(attrs={"type": "search"}))
    page = forms.IntegerField(required=False, min_value=1, max_value=PAGE_MAX, widget=forms.HiddenInput)

    def clean_q(self) -> str:
        return _no_nul(self.cleaned_data["q"].strip())

    def clean(self) -> dict:
        cleaned = super().clean()
        start, end = cleaned.get("delivered_from"), cleaned.get("delivered_to")
        if start and end and start > end:
            self.add_error("delivered_to", "The end date is before the start date.")
        for name in ("delivered_from", "delivered_to"):
            day = cleaned.get(name)
            if day is not None and not 1970 <= day.year <= 9000:
                self.add_error(name, "Use a year between 1970 and 9000.")
        return cleaned

    def filters(self) -> ReportFilters:
        data = self.cleaned_data
        return ReportFilters(delivered_from=data.get("delivered_from"), delivered_to=data.get("delivered_to"),
                             category=data.get("category") or "", severity=data.get("severity") or "",
                             stage_kind=data.get("stage") or "", q=data.get("q") or "",
                             acknowledged=data.get("acknowledged"))
