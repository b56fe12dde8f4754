"""The authority's side of the conversation: acknowledgements of delivered reports and questions to the lab.

An acknowledgement is the authority's, not one reviewer's: a report is delivered to one authority, so one
acknowledgement per report says "the authority has it", whichever of its reviewers gave it; later clicks
by colleagues change nothing. A question is work for staff until it is answered; the answer leaves the
lab as a supplemental report stage (``answer_report``), delivered like every other stage.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Acknowledgement(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    report = models.OneToOneField("reporting.Report", on_delete=models.PROTECT, related_name="acknowledgement")
    reviewer = models.ForeignKey("portal.Reviewer", on_delete=models.PROTECT, related_name="acknowledgements")
    acknowledged_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-acknowledged_at", "-id"]

    def __str__(self) -> str:
        return f"report {self.report_id} acknowledged by reviewer {self.reviewer_id}"

    @property
    def incident(self):  # noqa: ANN201  (audit_record files the event under the report's incident)
        return self.report.incident


class QuestionStatus(models.TextChoices):
    OPEN = "open", "Open (staff to answer)"
    ANSWERED = "answered", "Answered (sent as a supplemental stage)"


class Question(models.Model):
    """A request for information about one delivered report."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    report = models.ForeignKey("reporting.Report", on_delete=models.PROTECT, related_name="questions")
    reviewer = models.ForeignKey("portal.Reviewer", on_delete=models.PROTECT, related_name="questions")
    text = models.TextField()
    wished_by = models.DateField(help_text="The day (UTC) by which the authority would like the answer")
    asked_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=QuestionStatus.choices, default=QuestionStatus.OPEN)
    answer = models.TextField(blank=True)
    answered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")
    answered_at = models.DateTimeField(null=True, blank=True)
    # The supplemental stage that carries the answer; the reviewer reads the answer from its frozen document.
    answer_report = models.OneToOneField("reporting.Report", null=True, blank=True, on_delete=models.PROTECT,
                                         related_name="answered_question")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["wished_by", "asked_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(status="answered") | (Q(answered_by__isnull=False, answered_at__isnull=False,
                                                     answer_report__isnull=False) & ~Q(answer="")),
                name="question_answered_has_answer",
            ),
        ]
        indexes = [
            # The staff work list: open questions, soonest wished-by first.
            models.Index(fields=["wished_by", "asked_at"], name="question_open_by_wish",
                         condition=Q(status="open")),
        ]

    def __str__(self) -> str:
        return f"question {str(self.public_id)[:8]}, wished by {self.wished_by} ({self.get_status_display()})"

    @property
    def incident(self):  # noqa: ANN201  (audit_record files the event under the report's incident)
        return self.report.incident
