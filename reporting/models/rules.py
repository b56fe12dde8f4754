"""Reporting rules as data: which incidents owe which destination which stages, on which clock."""
from __future__ import annotations

import uuid
from datetime import timedelta

from django.db import models
from django.db.models import Q

from incidents.choices import Severity
from reporting.choices import ClockStart, DigestContent, DigestPeriod, StageKind


def default_escalation_points() -> list[float]:
    return [0.5, 0.75, 0.9]


class ReportingRule(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    destination = models.ForeignKey("reporting.Destination", on_delete=models.PROTECT, related_name="rules")
    is_active = models.BooleanField(default=True)
    # Matching. Empty category list = every category (CHILD_SAFETY still only to a destination for it).
    categories = models.JSONField(default=list, blank=True)
    min_severity = models.CharField(
        max_length=8, choices=Severity.choices, default=Severity.SEV4,
        help_text="Matches incidents at least this severe (SEV-0 is the most severe)",
    )
    max_severity = models.CharField(
        max_length=8, choices=Severity.choices, default=Severity.SEV0,
        help_text="Matches incidents at most this severe (lets severities have rules of their own)",
    )
    determinations = models.JSONField(
        default=list, blank=True, help_text="Empty = any; e.g. [\"confirmed\"] for confirmed incidents only"
    )
    requires_imminent_risk = models.BooleanField(default=False)
    requires_reportable_decision = models.BooleanField(
        default=False, help_text="Only once staff decided 'reportable' (else: from triage, unless decided not)"
    )
    escalation_points = models.JSONField(
        default=default_escalation_points, help_text="Fractions of each window at which staff are alerted"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["destination__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["destination", "name"], name="rule_unique_name_per_destination"),
        ]

    def __str__(self) -> str:
        return f"{self.name} → {self.destination.name}"


class RuleStage(models.Model):
    rule = models.ForeignKey(ReportingRule, on_delete=models.CASCADE, related_name="stages")
    # The stage's identity: reports opened under it are matched by key, so a rename relabels them
    # instead of opening the stage again. Set once; defaults to the first name.
    key = models.SlugField(max_length=50, help_text="Stable identity of the stage (defaults to its first name)")
    name = models.SlugField(max_length=50, help_text="initial, early_warning, update, final, ...")
    kind = models.CharField(max_length=8, choices=StageKind.choices)
    position = models.PositiveSmallIntegerField(help_text="Order of the stages within the rule")
    clock_start = models.CharField(max_length=20, choices=ClockStart.choices)
    offset = models.DurationField(help_text="Deadline = clock start + offset")
    requires_approval = models.BooleanField(
        default=False, help_text="Sent only after a staff approval (else automatically when due)"
    )
    repeat_every = models.DurationField(
        null=True, blank=True,
        help_text="Periodic updates: another stage this long after the previous one was delivered, until resolved",
    )
    on_material_change = models.BooleanField(
        default=False, help_text="Opened again (supplemental) when the incident changes materially after delivery"
    )
    digest_period = models.CharField(
        max_length=8, choices=DigestPeriod.choices, blank=True, help_text="Digest stages: the period each one covers"
    )
    digest_content = models.CharField(
        max_length=10, choices=DigestContent.choices, blank=True,
        help_text="Digest stages: list the incidents, or statistics only",
    )

    class Meta:
        ordering = ["rule", "position"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "name"], name="stage_unique_name_per_rule"),
            models.UniqueConstraint(fields=["rule", "key"], name="stage_unique_key_per_rule"),
            models.UniqueConstraint(fields=["rule", "position"], name="stage_unique_position_per_rule"),
            models.CheckConstraint(condition=Q(offset__gte=timedelta(0)), name="stage_offset_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.rule.name}: {self.name}"
