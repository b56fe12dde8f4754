"""Forms of the staff admin. They validate with the services' own checks; they never save.

Saving is the admin classes' job, through incidents.services (see incidents/admin/incident.py).
"""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.admin import widgets
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.utils import timezone

from incidents.admin.fields import AffectedPartiesField, CommaListField
from incidents.admin.service_errors import ServiceErrorsForm, add_validation_error
from incidents.choices import DetectorScope
from incidents.models import Account, Detector, Evidence, Incident, Indicator
from incidents.services.intake import check_incident_consistency
from incidents.services.parts import EvidenceInput
from incidents.validation import is_sha256_hex, normalize_countries, normalize_indicator, normalize_techniques

# What check_incident_consistency reads; a form lacking one of them (read-only) uses the stored value.
_CONSISTENCY_FIELDS = ("detected_at", "aware_at", "occurred_start", "occurred_end", "score", "threshold")


class IncidentForm(ServiceErrorsForm):
    harm_types = CommaListField(help_text="Comma-separated, e.g. economic, physical, psychological.")
    countries = CommaListField(normalise=normalize_countries, help_text="ISO 3166-1 alpha-2 codes, comma-separated.")
    model_tools = CommaListField(help_text="Tools the model had, comma-separated (e.g. code execution, browsing).")
    techniques = CommaListField(
        normalise=normalize_techniques, help_text="MITRE ATLAS / ATT&CK ids, comma-separated (AML.T0054, T1566.001)."
    )
    notified_parties = CommaListField(help_text="Law enforcement and others already told, comma-separated.")
    affected_parties = AffectedPartiesField()
    change_reason = forms.CharField(
        required=False, max_length=5000, label="Reason for this change",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the audit trail with this save's changes, including evidence, indicators and accounts.",
    )
    # The version the staff member saw. Django's admin compares a POST with the row as it is *now*,
    # so without this a stale form would silently revert someone else's change (a severity lowered
    # back is a report deadline moved).
    seen_version = forms.CharField(required=False, widget=forms.HiddenInput)

    class Meta:
        model = Incident
        fields = "__all__"  # narrowed by IncidentAdmin's fieldsets
        labels = {"tlp": "TLP marking"}
        widgets = {"title": forms.TextInput(attrs={"class": "vLargeTextField"})}

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if self.instance.pk and "seen_version" in self.fields:
            self.initial["seen_version"] = self.instance.updated_at.isoformat()

    def clean(self) -> dict:
        cleaned = super().clean()
        seen = cleaned.get("seen_version")
        if self.instance.pk and seen and seen != self.instance.updated_at.isoformat():
            raise ValidationError(
                "Someone changed this incident after you opened it (see the audit trail). Your edits were not "
                "saved: reload the page and make them again."
            )
        if any(name in self.errors for name in _CONSISTENCY_FIELDS):
            return cleaned
        probe = Incident(**{name: cleaned.get(name, getattr(self.instance, name)) for name in _CONSISTENCY_FIELDS})
        if probe.detected_at is not None:
            try:
                check_incident_consistency(probe)
            except ValidationError as exc:
                add_validation_error(self, exc)
        return cleaned


class IndicatorForm(forms.ModelForm):
    class Meta:
        model = Indicator
        fields = ("type", "value")

    def clean(self) -> dict:
        cleaned = super().clean()
        indicator_type, value = cleaned.get("type"), cleaned.get("value")
        if indicator_type and value is not None:
            try:
                # Normalised before the unique check runs, so "Example.COM." and "example.com" collide.
                cleaned["value"] = normalize_indicator(indicator_type, value)
            except ValueError as exc:
                self.add_error("value", str(exc))
        return cleaned


class AccountForm(forms.ModelForm):
    class Meta:
        model = Account
        fields = ("identifier", "enforcement_action")


class EvidenceForm(forms.ModelForm):
    """Existing evidence: only how it is described can change; digest and content are facts."""

    class Meta:
        model = Evidence
        fields = ("kind", "description")
        widgets = {"description": forms.Textarea(attrs={"rows": 2, "cols": 50})}


class EvidenceAddForm(forms.ModelForm):
    """New evidence: pasted content (the server computes its SHA-256) or just a SHA-256."""

    pasted_content = forms.CharField(
        required=False, strip=False, label="Content",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 50}),
        help_text="Paste the prompt, output or log excerpt; its SHA-256 is computed on save.",
    )
    given_sha256 = forms.CharField(
        required=False, max_length=64, label="or SHA-256",
        widget=forms.TextInput(attrs={"size": 40}),
        help_text="When the content is kept elsewhere.",
    )

    class Meta:
        model = Evidence
        fields = ("kind", "description")
        widgets = {"description": forms.Textarea(attrs={"rows": 3, "cols": 40})}

    evidence_input: EvidenceInput | None = None

    def clean(self) -> dict:
        cleaned = super().clean()
        content = cleaned.get("pasted_content") or None
        digest = (cleaned.get("given_sha256") or "").strip().lower() or None
        if content is None and digest is None:
            raise ValidationError("Paste the content or give its SHA-256.")
        if digest is not None and not is_sha256_hex(digest):
            self.add_error("given_sha256", "must be 64 hexadecimal characters")
            return cleaned
        if content is not None:
            size = len(content.encode("utf-8"))
            cap = settings.MIR_EVIDENCE_MAX_CONTENT_BYTES
            if size > cap:
                self.add_error("pasted_content", f"{size} bytes is over the {cap}-byte cap; give the SHA-256 instead")
                return cleaned
        if "kind" not in cleaned or "description" not in cleaned:
            return cleaned
        candidate = EvidenceInput(
            kind=cleaned["kind"], description=cleaned["description"], content=content, sha256=digest
        )
        try:
            sha256, _size = candidate.digest_and_size()
        except ValueError as exc:
            self.add_error("given_sha256" if digest else None, str(exc))
            return cleaned
        incident_id = self.instance.incident_id
        if incident_id and Evidence.objects.filter(incident_id=incident_id, sha256=sha256).exists():
            raise ValidationError(f"This incident already has evidence with SHA-256 {sha256}.")
        self.instance.sha256 = sha256  # for the formset's duplicate check and the admin's log
        self.evidence_input = candidate
        return cleaned


class EvidenceAddFormSet(BaseInlineFormSet):
    @classmethod
    def get_default_prefix(cls) -> str:
        # Its own prefix: it sits beside the inline of existing evidence, which has "evidence".
        return "new_evidence"

    def clean(self) -> None:
        super().clean()
        seen: set[str] = set()
        for form in self.forms:
            if form in self.deleted_forms or form.evidence_input is None:
                continue
            if form.instance.sha256 in seen:
                form.add_error(None, "The same content is given twice.")
            seen.add(form.instance.sha256)


class ReasonForm(forms.Form):
    required_css_class = "required"
    reason = forms.CharField(max_length=5000, widget=forms.Textarea(attrs={"rows": 4, "cols": 60}))


class DismissForm(ReasonForm):
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["reason"].help_text = "Why this is not misuse (recorded with the dismissal and in the audit trail)."


class ReportabilityForm(ReasonForm):
    decision = forms.ChoiceField(
        choices=[("reportable", "Reportable"), ("not_reportable", "Not reportable")],
        widget=forms.RadioSelect,
    )
    field_order = ["decision", "reason"]

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["reason"].help_text = "Why, in a sentence or two: a decision not to report is a record too."


class RevokeForm(forms.Form):
    required_css_class = "required"
    reason = forms.CharField(
        required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Optional, e.g. “leaked in a CI log” (recorded in the audit trail).",
    )


class TokenFieldsMixin(forms.Form):
    """Fields of detector_token_issue, shared by the detector add and change forms."""

    scopes = forms.MultipleChoiceField(
        choices=DetectorScope.choices, widget=forms.CheckboxSelectMultiple, required=False,
        initial=list(DetectorScope.values),
    )
    expires_at = forms.SplitDateTimeField(
        required=False, widget=widgets.AdminSplitDateTime, label="Token expires at",
        help_text="UTC. Empty: the token never expires.",
    )
    token_label = forms.CharField(
        required=False, max_length=100, label="Token label", help_text="Where it is deployed, e.g. “prod cluster”."
    )

    def clean_token_fields(self, cleaned: dict) -> None:
        if not cleaned.get("scopes"):
            self.add_error("scopes", "Choose at least one scope.")
        expires_at = cleaned.get("expires_at")
        if expires_at is not None and expires_at <= timezone.now():
            self.add_error("expires_at", "is in the past")


class DetectorAddForm(TokenFieldsMixin, ServiceErrorsForm):
    class Meta:
        model = Detector
        fields = ("name", "description")

    def clean(self) -> dict:
        cleaned = super().clean()
        self.clean_token_fields(cleaned)
        return cleaned


class DetectorChangeForm(TokenFieldsMixin, ServiceErrorsForm):
    issue_token = forms.BooleanField(required=False, label="Issue a new token")
    field_order = ["description", "is_active", "rate_limit_per_minute", "issue_token", "scopes", "expires_at",
                   "token_label"]

    class Meta:
        model = Detector
        fields = ("description", "is_active", "rate_limit_per_minute")

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("issue_token"):
            self.clean_token_fields(cleaned)
        return cleaned
