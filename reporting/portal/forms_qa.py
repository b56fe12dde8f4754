"""The detail page's question form (the acknowledgement is a bare POST: there is nothing to fill in)."""
from __future__ import annotations

from datetime import UTC, timedelta

from django import forms
from django.utils import timezone

from reporting.portal.services.questions import QUESTION_MAX, WISHED_BY_HORIZON_DAYS, wished_by_problem


class QuestionForm(forms.Form):
    text = forms.CharField(
        label="Your question", max_length=QUESTION_MAX,
        help_text=f"What you need to know, in up to {QUESTION_MAX} characters. Staff at the lab answer it as a "
                  "supplemental report to your authority.",
        widget=forms.Textarea(attrs={"rows": 5, "maxlength": QUESTION_MAX}),
        error_messages={"required": "Write your question.",
                        "max_length": f"Keep the question to {QUESTION_MAX} characters."},
    )
    wished_by = forms.DateField(
        label="Answer wished by (date, UTC)", input_formats=["%Y-%m-%d"],
        help_text=f"Today or later, within {WISHED_BY_HORIZON_DAYS} days, as YYYY-MM-DD.",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"required": "Give the date you would like the answer by.",
                        "invalid": "Use a date as YYYY-MM-DD."},
    )

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        today = timezone.now().astimezone(UTC).date()
        self.fields["wished_by"].widget.attrs.update(
            {"min": today.isoformat(), "max": (today + timedelta(days=WISHED_BY_HORIZON_DAYS)).isoformat()})

    def clean_text(self) -> str:
        text = self.cleaned_data["text"].strip()
        if "\x00" in text:
            raise forms.ValidationError("The question must not contain NUL characters.")
        if not text:
            raise forms.ValidationError("Write your question.")
        return text

    def clean_wished_by(self):  # noqa: ANN201
        day = self.cleaned_data["wished_by"]
        problem = wished_by_problem(day, today=timezone.now().astimezone(UTC).date())
        if problem:
            raise forms.ValidationError(problem)
        return day
