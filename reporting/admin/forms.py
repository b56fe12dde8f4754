"""Forms of the outbound admin. They validate; saving goes through reporting.services."""
from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from incidents.admin.fields import CommaListField
from incidents.admin.forms import ReasonForm
from incidents.admin.service_errors import ServiceErrorsForm
from incidents.choices import Category, Determination, Severity
from reporting.choices import ANSWER_STAGE_NAME, DISCLOSURE_ORDER, Disclosure, Transport
from reporting.durations import format_duration, parse_duration
from reporting.models import Destination, ReportingRule, RuleStage
from reporting.services.digests import digest_stage_errors

_SEVERITIES = [s.value for s in Severity]


class ApproveForm(forms.Form):
    required_css_class = "required"
    disclosure = forms.ChoiceField(widget=forms.RadioSelect, label="Disclosure")
    reason = forms.CharField(
        required=False, max_length=5000, label="Note", widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Optional: recorded with the approval in the audit trail.",
    )

    def __init__(self, *args, max_disclosure: str = Disclosure.DIGESTS, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        allowed = DISCLOSURE_ORDER[: DISCLOSURE_ORDER.index(max_disclosure) + 1]
        self.fields["disclosure"].choices = [(level.value, level.label) for level in allowed]
        self.fields["disclosure"].initial = Disclosure.DIGESTS.value
        self.fields["disclosure"].help_text = (
            "How much of the incident this stage may carry. Only levels the destination accepts are offered; "
            "raw evidence content leaves the lab only with this approval on record."
        )


class SendNowForm(forms.Form):
    late_reason = forms.CharField(
        required=False, max_length=5000, label="Late reason", widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Optional. Why the stage is late: the authority sees it in the report (if not already sent once).",
    )


class WithdrawForm(ReasonForm):
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["reason"].help_text = (
            "Why this stage will not be delivered. Required: it is kept with the report and in the audit trail."
        )


class LateReasonForm(ReasonForm):
    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["reason"].label = "Late reason"
        self.fields["reason"].help_text = "Sent to the authority with the report (a late notice must state reasons)."


class _SecretFields(forms.Form):
    """Write-only: the secret is typed (or generated) and never rendered back."""

    secret = forms.CharField(
        required=False, strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhook: the Standard Webhooks secret (whsec_…). TAXII: the password. Never shown again.",
    )
    generate_secret = forms.BooleanField(
        required=False, label="Generate a webhook secret",
        help_text="Creates whsec_ + 32 random bytes and shows it once after saving, for the authority's receiver.",
    )

    def clean_secret_fields(self, cleaned: dict, transport: str, required: bool) -> None:
        secret, generate = cleaned.get("secret", ""), cleaned.get("generate_secret")
        if generate and secret:
            self.add_error("generate_secret", "Type a secret or generate one, not both.")
        elif generate and transport != Transport.WEBHOOK:
            self.add_error("generate_secret", "Generated secrets are Standard Webhooks secrets, for webhooks only.")
        elif transport == Transport.WEBHOOK and secret and not secret.startswith("whsec_"):
            self.add_error("secret", "A webhook secret starts with whsec_ (or tick “Generate a webhook secret”).")
        elif transport == Transport.WEBHOOK and required and not secret and not generate:
            self.add_error("secret", "A webhook destination needs a secret: type one or tick “Generate”.")


def _fallback_choices(exclude: Destination | None = None):  # noqa: ANN202
    choices = Destination.objects.filter(transport=Transport.EMAIL)
    return choices.exclude(pk=exclude.pk) if exclude is not None and exclude.pk else choices


class DestinationAddForm(_SecretFields, ServiceErrorsForm):
    field_order = ["name", "authority", "transport", "address", "username", "secret", "generate_secret"]

    class Meta:
        model = Destination
        fields = ("name", "authority", "transport", "address", "username", "max_disclosure", "tlp",
                  "accepts_child_safety", "fallback")
        labels = {"tlp": "TLP marking"}

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        if "fallback" in self.fields:
            self.fields["fallback"].queryset = _fallback_choices()

    def clean(self) -> dict:
        cleaned = super().clean()
        self.clean_secret_fields(cleaned, cleaned.get("transport", ""), required=True)
        return cleaned


class DestinationChangeForm(_SecretFields, ServiceErrorsForm):
    change_reason = forms.CharField(
        required=False, max_length=5000, label="Reason for this change", widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the audit trail with this save's changes.",
    )

    class Meta:
        model = Destination
        fields = ("authority", "address", "username", "max_disclosure", "tlp", "accepts_child_safety", "fallback",
                  "is_active")
        labels = {"tlp": "TLP marking"}

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["secret"].label = "New secret"
        self.fields["secret"].help_text = "Leave empty to keep the current secret. " + self.fields["secret"].help_text
        self.fields["generate_secret"].label = "Generate a new webhook secret"
        if "fallback" in self.fields:
            self.fields["fallback"].queryset = _fallback_choices(self.instance)

    def clean(self) -> dict:
        cleaned = super().clean()
        self.clean_secret_fields(cleaned, self.instance.transport, required=False)
        return cleaned


class RuleDurationField(forms.Field):
    """Durations as the rule files write them: 90s, 15m, 24h, 5d, 2w, 1d12h."""

    def __init__(self, **kwargs) -> None:  # noqa: ANN003
        kwargs.setdefault("help_text", "e.g. 24h, 72h, 5d, 1d12h")
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("size", 8)

    def prepare_value(self, value: object) -> object:
        return format_duration(value) if hasattr(value, "total_seconds") else value

    def to_python(self, value: object):  # noqa: ANN201
        if value in self.empty_values:
            return None
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class RuleStageForm(forms.ModelForm):
    offset = RuleDurationField(label="Offset", help_text="Deadline = clock start + this")
    repeat_every = RuleDurationField(required=False, label="Repeat every", help_text="Periodic updates only")

    class Meta:
        model = RuleStage
        fields = ("name", "key", "kind", "position", "clock_start", "offset", "requires_approval", "repeat_every",
                  "on_material_change", "digest_period", "digest_content")

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.fields["key"].required = False
        self.fields["key"].help_text = "Stable identity; empty = the name. Fixed once saved: rename with “name”."

    def clean_key(self) -> str:
        key = self.cleaned_data.get("key") or ""
        if self.instance.pk and key and key != self.instance.key:
            raise ValidationError("A stage's key is its identity in the reports already opened and cannot change; "
                                  "rename the stage with its name, or add a new stage.")
        return self.instance.key if self.instance.pk else key

    def clean(self) -> dict:
        cleaned = super().clean()
        if not cleaned.get("key") and cleaned.get("name"):
            cleaned["key"] = cleaned["name"]
            self.instance.key = cleaned["name"]
        errors = digest_stage_errors(
            kind=cleaned.get("kind", ""), clock_start=cleaned.get("clock_start", ""),
            period=cleaned.get("digest_period", ""), content=cleaned.get("digest_content", ""),
            repeat_every=cleaned.get("repeat_every"), on_material_change=cleaned.get("on_material_change", False),
        )
        for field, message in errors.items():
            self.add_error({"period": "digest_period", "content": "digest_content"}.get(field, field), message)
        return cleaned

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if name == ANSWER_STAGE_NAME:
            raise ValidationError(f"{ANSWER_STAGE_NAME!r} is reserved for answers to authorities' questions")
        return name

    def clean_repeat_every(self):  # noqa: ANN201
        value = self.cleaned_data.get("repeat_every")
        if value is not None and value.total_seconds() < 60:
            raise ValidationError("at least a minute")
        return value


class ReportingRuleForm(forms.ModelForm):
    categories = forms.MultipleChoiceField(
        choices=Category.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked = every category (CHILD_SAFETY still only to a child-protection destination).",
    )
    determinations = forms.MultipleChoiceField(
        choices=Determination.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked = any determination.",
    )
    escalation_points = CommaListField(
        help_text="Fractions of each window at which staff are alerted, e.g. 0.5, 0.75, 0.9"
    )
    change_reason = forms.CharField(
        required=False, max_length=5000, label="Reason for this change", widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded in the audit trail with the rule as saved.",
    )

    class Meta:
        model = ReportingRule
        fields = ("name", "description", "destination", "is_active", "categories", "min_severity", "max_severity",
                  "determinations", "requires_imminent_risk", "requires_reportable_decision", "escalation_points")

    def clean_escalation_points(self) -> list[float]:
        points = []
        for item in self.cleaned_data.get("escalation_points") or []:
            try:
                point = float(item)
            except ValueError:
                raise ValidationError(f"{item!r} is not a number") from None
            if not 0 < point < 1:
                raise ValidationError(f"{item} is not a fraction between 0 and 1")
            points.append(point)
        return sorted(set(points))

    def clean(self) -> dict:
        cleaned = super().clean()
        low, high = cleaned.get("min_severity"), cleaned.get("max_severity")
        if low in _SEVERITIES and high in _SEVERITIES and _SEVERITIES.index(high) > _SEVERITIES.index(low):
            self.add_error("max_severity", "must be at least as severe as the minimum severity")
        return cleaned
