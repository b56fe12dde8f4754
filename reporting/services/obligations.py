"""Turning what an incident owes into Report rows, in the incident change's own transaction.

Registered as the incident hook (reporting.apps): every incident service calls it inside its
transaction, so an incident and the stages it owes commit together or not at all.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import Reportability
from incidents.hooks import IncidentChange
from incidents.models import Incident
from incidents.services.audit import audit_record
from reporting.choices import OPEN_REPORT_STATUSES, ReportStatus, StageKind
from reporting.dispatch import enqueue_on_commit
from reporting.models import Report, ReportingRule
from reporting.obligations import (
    DeliveredStages,
    IncidentFacts,
    Owed,
    RuleSpec,
    StageSpec,
    is_material,
    rule_applies,
)
from reporting.obligations import owed_stages as compute_owed
from reporting.rule_set_cache import rule_set_cached
from reporting.services.digests import digest_join, digest_stages
from reporting.services.reports import report_set_status

# The incident columns obligations_sync reads (for a "delivered" change) and the audit trail names: a caller
# holding the incident only for the sync may load just these (delivery does: the row has some 60 columns).
INCIDENT_SYNC_FIELDS = (
    "public_id", "category", "severity", "determination", "reportability", "reportability_reason",
    "imminent_risk_to_life", "detected_at", "aware_at", "determined_at", "resolved_at",
)


def facts_of(incident: Incident) -> IncidentFacts:
    return IncidentFacts(
        category=incident.category, severity=incident.severity, determination=incident.determination,
        reportability=incident.reportability, imminent_risk_to_life=incident.imminent_risk_to_life,
        detected_at=incident.detected_at, aware_at=incident.aware_at, determined_at=incident.determined_at,
        resolved_at=incident.resolved_at,
    )


def rule_spec(rule: ReportingRule) -> RuleSpec:
    return RuleSpec(
        rule_id=rule.pk,
        destination_accepts_child_safety=rule.destination.accepts_child_safety,
        categories=tuple(rule.categories),
        min_severity=rule.min_severity,
        max_severity=rule.max_severity,
        determinations=tuple(rule.determinations),
        requires_imminent_risk=rule.requires_imminent_risk,
        requires_reportable_decision=rule.requires_reportable_decision,
        escalation_points=tuple(rule.escalation_points),
        stages=tuple(
            StageSpec(
                name=s.name, kind=s.kind, position=s.position, clock_start=s.clock_start, offset=s.offset,
                requires_approval=s.requires_approval, repeat_every=s.repeat_every,
                on_material_change=s.on_material_change, stage_id=s.pk, key=s.key,
                digest_period=s.digest_period, digest_content=s.digest_content,
            )
            for s in rule.stages.all()
        ),
    )


def active_rules() -> list[tuple[ReportingRule, RuleSpec]]:
    """The active rules with their specs; shared, read-only objects (reporting.rule_set_cache)."""
    return rule_set_cached(_load_active_rules)


def _load_active_rules() -> list[tuple[ReportingRule, RuleSpec]]:
    rules = (
        ReportingRule.objects.filter(is_active=True, destination__is_active=True)
        .select_related("destination")
        .prefetch_related("stages")
    )
    return [(rule, rule_spec(rule)) for rule in rules]


def _open(*, incident: Incident, rule: ReportingRule, owed: Owed, actor: Actor, now: datetime,
          supersedes: Report | None = None) -> Report:
    stage = owed.stage
    sendable = owed.clock_started_at is not None and not stage.requires_approval
    report = Report.objects.create(
        incident=incident, destination=rule.destination, rule=rule, stage_id=stage.stage_id,
        stage_key=stage.identity, stage_name=stage.name, stage_kind=stage.kind, sequence=owed.sequence,
        supersedes=supersedes,
        status=ReportStatus.AWAITING_APPROVAL if stage.requires_approval else ReportStatus.PENDING,
        requires_approval=stage.requires_approval, clock_started_at=owed.clock_started_at, due_at=owed.due_at,
        next_attempt_at=max(now, owed.not_before or now) if sendable else None,
    )
    audit_record(
        actor=actor, action="report_opened", obj=incident,
        changes={"report": str(report.public_id), "destination": rule.destination.name,
                 "stage": f"{stage.name}#{owed.sequence}", "due_at": owed.due_at.isoformat() if owed.due_at else None,
                 "status": report.status},
    )
    if sendable and report.next_attempt_at <= now:
        enqueue_on_commit(report.pk)
    return report


def _reschedule(*, report: Report, owed: Owed, actor: Actor, now: datetime) -> None:
    label = (owed.stage.name, owed.stage.kind)
    if (report.clock_started_at, report.due_at, report.stage_name, report.stage_kind) == (
            owed.clock_started_at, owed.due_at, *label) and report.unowed_since is None:
        return
    old_due = report.due_at
    report.clock_started_at, report.due_at = owed.clock_started_at, owed.due_at
    # An unfrozen stage carries its rule's current label (a rename); a frozen one keeps what was sent.
    report.stage_name, report.stage_kind = label
    # Owed again (the rule was edited back): no longer flagged on the clock board.
    report.unowed_since, report.unowed_note = None, ""
    fields = ["clock_started_at", "due_at", "stage_name", "stage_kind", "unowed_since", "unowed_note", "updated_at"]
    starts_now = report.status == ReportStatus.PENDING and report.next_attempt_at is None and owed.clock_started_at
    if starts_now:
        report.next_attempt_at = max(now, owed.not_before or now)
        fields.append("next_attempt_at")
    report.save(update_fields=fields)
    audit_record(
        actor=actor, action="report_rescheduled", obj=report.incident,
        changes={"report": str(report.public_id), "due_at": [old_due and old_due.isoformat(),
                                                              owed.due_at and owed.due_at.isoformat()]},
    )
    if starts_now and report.next_attempt_at <= now:
        enqueue_on_commit(report.pk)


def obligations_sync(*, incident: Incident, actor: Actor, kind: str = "updated", changes: dict | None = None,
                     now: datetime | None = None) -> list[Report]:
    """Open the stages the incident owes now, reschedule open ones whose clock moved, open supplemental
    stages on material change after delivery, and close open stages when a person decided not to report.
    Delivered stages are never reopened. Returns the reports opened."""
    now = now or timezone.now()
    changes = changes or {}
    opened: list[Report] = []
    # A new incident has no reports yet: skip the query on the intake hot path.
    existing = [] if kind == "created" else list(
        # Only the reports are locked (of=self): their destinations are read, not changed, and locking them
        # would make every delivery to one authority wait for the others (docs/performance.md).
        Report.objects.select_for_update(of=("self",)).filter(incident=incident).select_related("destination")
    )
    by_key = {(r.rule_id, r.stage_key, r.sequence): r for r in existing}
    delivered: dict[int, DeliveredStages] = defaultdict(DeliveredStages)
    for report in existing:
        if report.status == ReportStatus.DELIVERED:
            delivered[report.rule_id].at[(report.stage_key, report.sequence)] = report.delivered_at

    if incident.reportability == Reportability.NOT_REPORTABLE and kind == "reportability":
        for report in existing:
            if report.status in OPEN_REPORT_STATUSES:
                report_set_status(
                    report=report, actor=actor, to=ReportStatus.WITHDRAWN, reason=incident.reportability_reason,
                    fields={"withdrawn_by": actor.user, "withdrawn_at": now,
                            "withdrawn_reason": f"decided not reportable: {incident.reportability_reason}",
                            "next_attempt_at": None, "lease_expires_at": None, "lease_token": None},
                )
        return opened

    facts = facts_of(incident)
    for rule, spec in active_rules():
        for owed in compute_owed(facts, spec, delivered[rule.pk]):
            report = by_key.get((rule.pk, owed.stage.identity, owed.sequence))
            if report is None:
                opened.append(_open(incident=incident, rule=rule, owed=owed, actor=actor, now=now))
            elif report.status in (ReportStatus.PENDING, ReportStatus.AWAITING_APPROVAL) and report.frozen_at is None:
                _reschedule(report=report, owed=owed, actor=actor, now=now)
        for stage in digest_stages(spec.stages) if rule_applies(facts, spec) else ():
            digest_join(incident=incident, rule=rule, stage=stage, actor=actor, now=now)
        if delivered[rule.pk].at and is_material(changes, kind) and rule_applies(facts, spec):
            opened += _supplementals(incident=incident, rule=rule, spec=spec, existing=existing, actor=actor, now=now)
    return opened


def _supplementals(*, incident: Incident, rule: ReportingRule, spec: RuleSpec, existing: list[Report],
                   actor: Actor, now: datetime) -> list[Report]:
    """After something was delivered to this destination, a material change owes an update stage,
    unless one is already waiting (it will carry the latest facts when it is frozen at first send)."""
    opened = []
    for stage in spec.stages:
        if not stage.on_material_change:
            continue
        mine = [r for r in existing if r.rule_id == rule.pk and r.stage_key == stage.identity]
        if any(r.status in OPEN_REPORT_STATUSES and r.frozen_at is None for r in mine):
            continue
        last_delivered = max((r for r in existing if r.rule_id == rule.pk and r.status == ReportStatus.DELIVERED),
                             key=lambda r: r.delivered_at, default=None)
        owed = Owed(rule_id=rule.pk, stage=stage, sequence=max((r.sequence for r in mine), default=0) + 1,
                    clock_started_at=now, due_at=now + (stage.offset or timedelta(0)))
        opened.append(_open(incident=incident, rule=rule, owed=owed, actor=actor, now=now, supersedes=last_delivered))
    return opened


def report_open_supplemental(*, incident: Incident, rule: ReportingRule, stage_name: str, due_at: datetime,
                             supersedes: Report, actor: Actor, now: datetime | None = None) -> Report:
    """Open a supplemental stage no rule schedules (e.g. the answer to an authority's question), the way
    every other stage is opened: same row, same audit event, sendable at once, enqueued after commit.

    The caller holds the incident's lock (the sequence is the next free one for this stage name).
    """
    now = now or timezone.now()
    sequence = (Report.objects.filter(incident=incident, rule=rule, stage_name=stage_name)
                .order_by("-sequence").values_list("sequence", flat=True).first() or 0) + 1
    stage = StageSpec(name=stage_name, kind=StageKind.UPDATE, position=0, clock_start="", offset=timedelta(0))
    owed = Owed(rule_id=rule.pk, stage=stage, sequence=sequence, clock_started_at=now, due_at=due_at)
    return _open(incident=incident, rule=rule, owed=owed, actor=actor, now=now, supersedes=supersedes)


def on_incident_change(change: IncidentChange) -> None:
    """The incident hook (registered in reporting.apps)."""
    obligations_sync(incident=change.incident, actor=change.actor, kind=change.kind, changes=change.changes)


def obligations_after_delivery(*, report: Report, actor: Actor) -> None:
    """A delivery can start the clock of the next stage (previous_delivered) or a periodic update."""
    with transaction.atomic():
        incident = Incident.objects.select_for_update().get(pk=report.incident_id)
        obligations_sync(incident=incident, actor=actor, kind="delivered")
