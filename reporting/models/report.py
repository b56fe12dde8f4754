"""The outbox: one Report row per stage owed to a destination, its attempts, and its escalations.

A Report row is written in the same transaction as the incident change that owes it; the worker
delivers it later. Deadlines are columns and the database is the queue (see the indexes).
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from reporting.choices import AttemptOutcome, Disclosure, EscalationLevel, ReportStatus, StageKind


class Report(models.Model):
    # The stable message id: webhook-id, STIX report id seed, receipt key. Same on every retry.
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Empty for a digest, which batches many incidents (DigestEntry) over one period.
    incident = models.ForeignKey(
        "incidents.Incident", null=True, blank=True, on_delete=models.PROTECT, related_name="reports"
    )
    destination = models.ForeignKey("reporting.Destination", on_delete=models.PROTECT, related_name="reports")
    rule = models.ForeignKey("reporting.ReportingRule", on_delete=models.PROTECT, related_name="reports")
    stage = models.ForeignKey("reporting.RuleStage", null=True, on_delete=models.SET_NULL, related_name="reports")
    # Snapshots of the stage at opening, so an edited rule never rewrites what was owed.
    # The stage's key (its identity); the name is a label a rename may change while the stage is unfrozen.
    stage_key = models.CharField(max_length=50)
    stage_name = models.CharField(max_length=50)
    stage_kind = models.CharField(max_length=8, choices=StageKind.choices)
    sequence = models.PositiveIntegerField(default=1, help_text="1, 2, ... for repeated update stages")
    supersedes = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")

    period_start = models.DateTimeField(null=True, blank=True, help_text="Digests: the period covered, from ...")
    period_end = models.DateTimeField(null=True, blank=True, help_text="... up to (not including) this time")

    status = models.CharField(max_length=20, choices=ReportStatus.choices)
    requires_approval = models.BooleanField(default=False)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    disclosure = models.CharField(max_length=16, choices=Disclosure.choices, default=Disclosure.DIGESTS)

    # Clock: unknown until its start event happens (e.g. resolution for a final report).
    clock_started_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField(null=True, blank=True)
    # Queue columns: next_attempt_at is set when the stage may be sent; a worker holds a lease while sending.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # Who holds the lease: the sweeper hands it to the task it enqueues, a worker takes it to send.
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    attempt_count = models.PositiveIntegerField(default=0)

    # Frozen at first send: every retry sends exactly these bytes.
    payload = models.TextField(blank=True, editable=False)
    payload_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    signature = models.CharField(max_length=200, blank=True, editable=False)
    signing_key_id = models.CharField(max_length=64, blank=True, editable=False)
    frozen_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Copied from the frozen document at freeze time, so the reviewers' portal filters and searches what
    # was sent (never the live incident, which re-triage may have changed) on plain indexed columns.
    sent_reference = models.CharField(max_length=40, blank=True, editable=False)
    sent_title = models.CharField(max_length=300, blank=True, editable=False)
    sent_category = models.CharField(max_length=32, blank=True, editable=False)
    sent_severity = models.CharField(max_length=16, blank=True, editable=False)

    delivered_at = models.DateTimeField(null=True, blank=True)
    receipt = models.JSONField(null=True, blank=True)
    late = models.BooleanField(default=False)
    late_reason = models.TextField(blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    withdrawn_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_reason = models.TextField(blank=True)
    # Set when an edit of its rule no longer owes this open stage: it stays open (only a person ends a
    # stage) and the clock board flags it until someone sends or withdraws it, or the rule owes it again.
    unowed_since = models.DateTimeField(null=True, blank=True, editable=False)
    unowed_note = models.TextField(blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "rule", "stage_key", "sequence"], name="report_unique_stage_sequence"
            ),
            # One digest per rule, stage and period: concurrent intakes that both open it make one row.
            models.UniqueConstraint(
                fields=["rule", "stage_key", "period_start"], condition=Q(incident__isnull=True),
                name="report_unique_digest_period",
            ),
            models.CheckConstraint(
                condition=(Q(incident__isnull=True, stage_kind="digest", period_start__isnull=False,
                             period_end__isnull=False)
                           | (Q(incident__isnull=False) & ~Q(stage_kind="digest"))),
                name="report_digest_has_period_and_no_incident",
            ),
            models.CheckConstraint(
                condition=~Q(status="delivered") | Q(delivered_at__isnull=False, payload_sha256__gt=""),
                name="report_delivered_has_proof",
            ),
            models.CheckConstraint(
                condition=~Q(status="withdrawn") | (Q(withdrawn_by__isnull=False) & ~Q(withdrawn_reason="")),
                name="report_withdrawn_by_a_person_with_reason",
            ),
        ]
        indexes = [
            # The sweeper: SELECT ... WHERE status='pending' AND next_attempt_at <= now()
            #   AND (lease_expires_at IS NULL OR lease_expires_at < now()) ORDER BY due_at FOR UPDATE SKIP LOCKED
            models.Index(
                fields=["next_attempt_at", "due_at"], name="report_sweep", condition=Q(status="pending")
            ),
            # Escalation scan and the clock board: open stages by deadline.
            models.Index(
                fields=["due_at"], name="report_open_by_due",
                condition=Q(status__in=["awaiting_approval", "pending", "failed"]),
            ),
            # The reviewers' portal: one authority's delivered stages, newest first. Per destination for an
            # authority with few reports among many; in delivery order, filtered by destination, for one with
            # many (LIMIT stops the scan early). The planner picks.
            models.Index(
                fields=["destination", "-delivered_at", "-id"], name="report_delivered_by_dest",
                condition=Q(status="delivered"),
            ),
            models.Index(
                fields=["-delivered_at", "-id"], name="report_delivered_newest",
                condition=Q(status="delivered"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} {self.stage_name}#{self.sequence} → {self.destination.name}"

    def save(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        # A row made by hand (a test, a script) names only its stage: that name is then its identity.
        if not self.stage_key:
            self.stage_key = self.stage_name
        super().save(*args, **kwargs)

    @property
    def is_digest(self) -> bool:
        return self.incident_id is None

    @property
    def subject(self) -> str:
        """What the report is about, for people: the incident reference, or the digest's period."""
        if self.incident_id is not None:
            return self.incident.reference
        return f"digest {self.period_start:%Y-%m-%d}…{self.period_end:%Y-%m-%d}"


class DigestEntry(models.Model):
    """An incident batched into a digest report. Each incident joins one digest per rule stage, once."""

    digest = models.ForeignKey(Report, on_delete=models.PROTECT, related_name="digest_entries")
    incident = models.ForeignKey("incidents.Incident", on_delete=models.PROTECT, related_name="digest_entries")
    rule = models.ForeignKey("reporting.ReportingRule", on_delete=models.PROTECT, related_name="+")
    stage_key = models.CharField(max_length=50)
    joined_at = models.DateTimeField()

    class Meta:
        ordering = ["digest", "incident"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "stage_key", "incident"], name="digest_entry_once_per_stage"),
        ]

    def __str__(self) -> str:
        return f"{self.incident_id} in digest {self.digest_id}"


class DeliveryAttempt(models.Model):
    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=AttemptOutcome.choices)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error_class = models.CharField(max_length=100, blank=True)
    response_excerpt = models.TextField(blank=True)
    address = models.CharField(max_length=500, help_text="Where this attempt was sent")
    via_fallback = models.BooleanField(default=False)

    class Meta:
        ordering = ["report", "number"]
        constraints = [models.UniqueConstraint(fields=["report", "number"], name="attempt_unique_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of report {self.report_id}: {self.outcome}"


class Escalation(models.Model):
    report = models.ForeignKey(Report, on_delete=models.CASCADE, related_name="escalations")
    level = models.CharField(max_length=20, choices=EscalationLevel.choices)
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["report", "level"], name="escalation_once_per_level")]

    def __str__(self) -> str:
        return f"{self.level} for report {self.report_id}"
