"""The incident record and its parts.

Core columns hold what is filtered or computed on (category, severity, status, the trigger times);
open-shaped details (harm types, affected parties, tools) live in JSON. Every write goes through
``incidents.services``; these classes hold only single-row arithmetic.
"""
from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from incidents.choices import (
    ActorType,
    Category,
    Confidence,
    DetectionSource,
    Determination,
    EnforcementAction,
    EvidenceKind,
    IndicatorType,
    Reportability,
    Severity,
    Status,
    Surface,
    TimePrecision,
    Tlp,
)


class Incident(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    # Identity
    title = models.CharField(max_length=200)
    summary = models.TextField(max_length=5000)

    # Classification
    category = models.CharField(max_length=32, choices=Category.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW, editable=False)
    determination = models.CharField(
        max_length=16, choices=Determination.choices, default=Determination.SUSPECTED, editable=False
    )
    harm_types = models.JSONField(default=list, blank=True)
    imminent_risk_to_life = models.BooleanField(default=False)
    cross_border = models.BooleanField(default=False)
    countries = models.JSONField(default=list, blank=True, help_text="ISO 3166-1 alpha-2 codes")
    critical_infrastructure_sector = models.CharField(max_length=64, blank=True)
    near_miss = models.BooleanField(default=False)

    # Clocks: each legal regime starts from a different one, so they are kept apart.
    occurred_start = models.DateTimeField(null=True, blank=True)
    occurred_end = models.DateTimeField(null=True, blank=True)
    occurred_precision = models.CharField(
        max_length=8, choices=TimePrecision.choices, default=TimePrecision.UNKNOWN
    )
    detected_at = models.DateTimeField()
    aware_at = models.DateTimeField(null=True, blank=True)
    determined_at = models.DateTimeField(null=True, blank=True, editable=False)
    resolved_at = models.DateTimeField(null=True, blank=True, editable=False)
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Detection provenance: a detector, a staff member, or an external tip.
    detection_source = models.CharField(max_length=16, choices=DetectionSource.choices, editable=False)
    detector = models.ForeignKey(
        "incidents.Detector", null=True, blank=True, on_delete=models.PROTECT, related_name="incidents",
        editable=False,
    )
    detector_version = models.CharField(max_length=64, blank=True)
    score = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    filed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        editable=False,
    )
    external_source = models.CharField(max_length=200, blank=True, help_text="Who tipped us off, for tips")

    # Grouping of repeated detector events (see incidents.services.intake)
    fingerprint = models.CharField(max_length=200, blank=True, editable=False)
    occurrence_count = models.PositiveIntegerField(default=1, editable=False)
    last_seen_at = models.DateTimeField(editable=False)

    # AI system
    model_name = models.CharField(max_length=100)
    model_version = models.CharField(max_length=100, blank=True)
    surface = models.CharField(max_length=16, choices=Surface.choices, blank=True)
    internal_use = models.BooleanField(default=False)
    model_tools = models.JSONField(default=list, blank=True)
    model_involvement = models.TextField(blank=True, max_length=5000)
    safeguards_evaded = models.TextField(blank=True, max_length=5000)

    # Actor
    actor_type = models.CharField(max_length=20, choices=ActorType.choices, default=ActorType.UNKNOWN)
    actor_origin = models.CharField(max_length=100, blank=True)
    actor_confidence = models.CharField(max_length=8, choices=Confidence.choices, blank=True)

    # Activity
    techniques = models.JSONField(default=list, blank=True, help_text="MITRE ATLAS / ATT&CK ids")
    event_chain = models.TextField(blank=True, max_length=20000)

    # Impact
    affected_parties = models.JSONField(default=list, blank=True, help_text='[{"category": ..., "count": n}]')
    deaths = models.PositiveIntegerField(null=True, blank=True)
    injuries = models.PositiveIntegerField(null=True, blank=True)
    economic_loss_usd = models.DecimalField(max_digits=16, decimal_places=2, null=True, blank=True)

    # Response
    actions_taken = models.TextField(blank=True, max_length=10000)
    actions_planned = models.TextField(blank=True, max_length=10000)
    recommendation = models.TextField(blank=True, max_length=5000)
    notified_parties = models.JSONField(default=list, blank=True)
    root_cause = models.TextField(blank=True, max_length=5000)
    unknowns = models.TextField(blank=True, max_length=5000, help_text="What is still unknown")

    # Handling
    tlp = models.CharField(max_length=20, choices=Tlp.choices, default=Tlp.AMBER_STRICT)

    # Reportability decision (who decided, when, why); obligations hang off it in `reporting`.
    reportability = models.CharField(
        max_length=16, choices=Reportability.choices, default=Reportability.PENDING, editable=False
    )
    reportability_reason = models.TextField(blank=True, editable=False)
    reportability_decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        editable=False,
    )
    reportability_decided_at = models.DateTimeField(null=True, blank=True, editable=False)
    dismissal_reason = models.TextField(blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The triage queue and the admin's status filter.
            models.Index(fields=["status", "-created_at"], name="incident_status_created"),
            # Grouping: open incident of one detector with a fingerprint (services.intake).
            models.Index(
                fields=["detector", "fingerprint", "-last_seen_at"],
                name="incident_grouping",
                condition=Q(status__in=["new", "triaged", "confirmed"]) & ~Q(fingerprint=""),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(score__isnull=True) | (Q(score__gte=0) & Q(score__lte=1)), name="incident_score_0_1"
            ),
            models.CheckConstraint(
                condition=Q(threshold__isnull=True) | (Q(threshold__gte=0) & Q(threshold__lte=1)),
                name="incident_threshold_0_1",
            ),
            models.CheckConstraint(
                condition=Q(occurred_start__isnull=True)
                | Q(occurred_end__isnull=True)
                | Q(occurred_end__gte=models.F("occurred_start")),
                name="incident_occurred_order",
            ),
            models.CheckConstraint(condition=Q(occurrence_count__gte=1), name="incident_occurrences_positive"),
            models.CheckConstraint(
                condition=~Q(detection_source="detector") | Q(detector__isnull=False),
                name="incident_detector_source_has_detector",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reference} {self.title}"

    @property
    def reference(self) -> str:
        """The human reference staff and detectors quote (stable: derived from the row id)."""
        return f"INC-{self.pk:06d}" if self.pk else "INC-(unsaved)"


class Evidence(models.Model):
    """Evidence is identified by its SHA-256; raw content is optional and size-capped."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="evidence")
    kind = models.CharField(max_length=16, choices=EvidenceKind.choices)
    description = models.TextField(max_length=5000)
    sha256 = models.CharField(max_length=64, editable=False)
    content = models.TextField(blank=True, editable=False)
    size_bytes = models.PositiveIntegerField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "evidence"
        constraints = [
            models.UniqueConstraint(fields=["incident", "sha256"], name="evidence_unique_digest"),
            models.CheckConstraint(condition=Q(sha256__regex=r"^[0-9a-f]{64}$"), name="evidence_sha256_hex"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.sha256[:12]}"


class Indicator(models.Model):
    """An observable, normalised and validated per type (incidents.indicators)."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="indicators")
    type = models.CharField(max_length=24, choices=IndicatorType.choices)
    value = models.CharField(max_length=2048)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "type", "value"], name="indicator_unique_per_incident"),
        ]
        indexes = [models.Index(fields=["type", "value"], name="indicator_lookup")]

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


class Account(models.Model):
    """An account involved, stored as given; only a keyed pseudonym ever leaves the lab."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="accounts")
    identifier = models.CharField(max_length=256)
    enforcement_action = models.CharField(
        max_length=16, choices=EnforcementAction.choices, default=EnforcementAction.NONE
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["incident", "identifier"], name="account_unique_per_incident"),
        ]

    def __str__(self) -> str:
        return f"account {self.identifier}"
