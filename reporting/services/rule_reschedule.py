"""A rule edit reaches its open stages at once, not at each incident's next change.

Called by every rule write (``rules_load``, the admin's ``rule_record_change``) inside its transaction.
A fixed number of statements for any number of open stages: lock the incidents, lock the stages, read
the delivered stages the clocks depend on, compute in memory with the same pure functions as intake
(``reporting.obligations``), write back with ``bulk_update``, and record one audit event that lists
every stage touched.

Only open stages that are not frozen follow the rule: a frozen document was signed with its deadline
and label and is sent as it is. A stage the edited rule no longer owes is never closed here (only a
person ends a stage, with a reason): it stays open, keeps its deadline, and is flagged
(``unowed_since``) on the clock board until a person sends or withdraws it, or the rule owes it again.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import Reportability, Status
from incidents.models import Incident
from incidents.services.audit import audit_record
from reporting.choices import OPEN_REPORT_STATUSES, ReportStatus
from reporting.models import Report, ReportingRule
from reporting.obligations import DeliveredStages, Owed, RuleSpec, rule_applies
from reporting.obligations import owed_stages as compute_owed
from reporting.services.obligations import facts_of, obligations_sync, rule_spec

logger = logging.getLogger(__name__)

# Incidents whose obligations can still grow (a final stage is owed after resolution): not dismissed or
# closed, and not decided "not reportable".
IN_FLIGHT_STATUSES = (Status.NEW, Status.TRIAGED, Status.CONFIRMED, Status.RESOLVED)

_WRITTEN = ["clock_started_at", "due_at", "stage_name", "stage_kind", "next_attempt_at", "unowed_since",
            "unowed_note", "updated_at"]


@dataclass
class RescheduleSummary:
    rescheduled: list[dict] = field(default_factory=list)
    relabelled: list[dict] = field(default_factory=list)
    no_longer_owed: list[dict] = field(default_factory=list)
    owed_again: list[dict] = field(default_factory=list)

    def as_changes(self) -> dict:
        return {name: items for name, items in vars(self).items() if items}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _owed_now(report: Report, incident: Incident, rule: ReportingRule, spec: RuleSpec,
              delivered: DeliveredStages, cache: dict[int, dict]) -> tuple[Owed | None, str]:
    """What the edited rule owes for this open stage, or None with the reason it owes nothing."""
    if not rule.is_active:
        return None, "the rule is inactive"
    if not rule.destination.is_active:
        return None, "the destination is inactive"
    stage = next((s for s in spec.stages if s.identity == report.stage_key), None)
    if stage is None:
        return None, "the stage was removed from the rule"
    facts = facts_of(incident)
    if not rule_applies(facts, spec):
        return None, "the incident no longer matches the rule"
    if stage.on_material_change:
        # A supplemental's clock is the material change that opened it; only its offset can move.
        start = report.clock_started_at
        return Owed(rule_id=rule.pk, stage=stage, sequence=report.sequence, clock_started_at=start,
                    due_at=start + stage.offset if start else None), ""
    if incident.pk not in cache:
        cache[incident.pk] = {(o.stage.identity, o.sequence): o for o in compute_owed(facts, spec, delivered)}
    owed = cache[incident.pk].get((report.stage_key, report.sequence))
    return (owed, "") if owed else (None, "the rule no longer owes this round")


def _next_attempt(report: Report, owed: Owed, now: datetime) -> datetime | None:
    if report.status != ReportStatus.PENDING:
        return report.next_attempt_at  # awaiting approval or failed: a person moves it
    if owed.clock_started_at is None:
        return None  # the clock now starts at an event that has not happened yet
    if report.attempt_count == 0:
        if owed.not_before and owed.not_before > now:
            return owed.not_before
        return min(report.next_attempt_at or now, now)
    # Retrying: the backoff never schedules past the deadline, and neither does a tightened rule.
    if report.next_attempt_at and owed.due_at and report.next_attempt_at > max(now, owed.due_at):
        return max(now, owed.due_at)
    return report.next_attempt_at


def _digest_follows(digest: Report, rule: ReportingRule, spec: RuleSpec, summary: RescheduleSummary,
                    now: datetime) -> bool:
    """A digest's deadline is its period's end plus the stage's offset; its label follows a rename."""
    entry = {"report": str(digest.public_id), "incident": None, "stage": f"{digest.stage_key}#{digest.sequence}"}
    stage = next((s for s in spec.stages if s.identity == digest.stage_key and s.kind == "digest"), None)
    if stage is None or not rule.is_active or not rule.destination.is_active:
        if digest.unowed_since is not None:
            return False
        why = "the stage was removed from the rule" if stage is None else "the rule or destination is inactive"
        digest.unowed_since, digest.unowed_note = now, f"rule {rule.name!r} as edited owes nothing here: {why}"
        summary.no_longer_owed.append({**entry, "why": why})
        return True
    due = digest.period_end + stage.offset
    if (digest.due_at, digest.stage_name, digest.unowed_since) == (due, stage.name, None):
        return False
    if digest.due_at != due:
        summary.rescheduled.append({**entry, "due_at": [_iso(digest.due_at), _iso(due)]})
    if digest.stage_name != stage.name:
        summary.relabelled.append({**entry, "name": [digest.stage_name, stage.name], "kind": ["digest", "digest"]})
    if digest.unowed_since is not None:
        summary.owed_again.append(entry)
    digest.due_at, digest.stage_name, digest.unowed_since, digest.unowed_note = due, stage.name, None, ""
    return True


def rule_reschedule_open_reports(*, rule: ReportingRule, actor: Actor, reason: str = "",
                                 now: datetime | None = None) -> RescheduleSummary:
    """Bring every open, unfrozen stage of ``rule`` in line with the rule as it now stands. Caller's transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("rule_reschedule_open_reports runs inside the rule change's transaction")
    now = now or timezone.now()
    summary = RescheduleSummary()
    rule = ReportingRule.objects.select_related("destination").prefetch_related("stages").get(pk=rule.pk)
    spec = rule_spec(rule)
    open_stages = Report.objects.filter(rule=rule, status__in=OPEN_REPORT_STATUSES, frozen_at__isnull=True)
    # Lock order as everywhere: the incidents, then their reports. A freeze holds the incident lock, so
    # once we hold it no stage of these incidents can freeze under us.
    incidents = {
        incident.pk: incident for incident in
        Incident.objects.select_for_update(of=("self",))
        .filter(pk__in=open_stages.values("incident_id")).order_by("pk")
    }
    digests = list(open_stages.filter(incident__isnull=True).select_for_update(of=("self",)).order_by("pk"))
    changed: list[Report] = [d for d in digests if _digest_follows(d, rule, spec, summary, now)]
    reports = list(open_stages.select_for_update(of=("self",)).filter(incident_id__in=incidents).order_by("pk"))
    delivered: dict[int, DeliveredStages] = defaultdict(DeliveredStages)
    for incident_id, key, sequence, at in Report.objects.filter(
        rule=rule, incident_id__in=incidents, status=ReportStatus.DELIVERED
    ).values_list("incident_id", "stage_key", "sequence", "delivered_at"):
        delivered[incident_id].at[(key, sequence)] = at

    cache: dict[int, dict] = {}
    for report in reports:
        incident = incidents[report.incident_id]
        entry = {"report": str(report.public_id), "incident": incident.reference,
                 "stage": f"{report.stage_key}#{report.sequence}"}
        owed, why = _owed_now(report, incident, rule, spec, delivered[incident.pk], cache)
        if owed is None:
            if report.unowed_since is None:
                report.unowed_since = now
                report.unowed_note = f"rule {rule.name!r} as edited owes nothing here: {why}"
                summary.no_longer_owed.append({**entry, "why": why})
                changed.append(report)
            continue
        before = (report.clock_started_at, report.due_at, report.stage_name, report.stage_kind,
                  report.next_attempt_at, report.unowed_since)
        if report.unowed_since is not None:
            summary.owed_again.append(entry)
        if (report.stage_name, report.stage_kind) != (owed.stage.name, owed.stage.kind):
            summary.relabelled.append({**entry, "name": [report.stage_name, owed.stage.name],
                                       "kind": [report.stage_kind, owed.stage.kind]})
        if report.due_at != owed.due_at:
            summary.rescheduled.append({**entry, "due_at": [_iso(report.due_at), _iso(owed.due_at)]})
        report.next_attempt_at = _next_attempt(report, owed, now)
        report.clock_started_at, report.due_at = owed.clock_started_at, owed.due_at
        report.stage_name, report.stage_kind = owed.stage.name, owed.stage.kind
        report.unowed_since, report.unowed_note = None, ""
        if before != (report.clock_started_at, report.due_at, report.stage_name, report.stage_kind,
                      report.next_attempt_at, report.unowed_since):
            changed.append(report)
    if not changed:
        return summary
    for report in changed:
        report.updated_at = now
    Report.objects.bulk_update(changed, _WRITTEN, batch_size=500)
    # Newly sendable stages are picked up by the next sweep (every MIR_SWEEP_INTERVAL_SECONDS): one rule edit
    # can free thousands, and the sweeper hands them out earliest deadline first without flooding the broker.
    audit_record(actor=actor, action="rule_reports_rescheduled", obj=rule, reason=reason,
                 changes={"rule": rule.name, "destination": rule.destination.name, **summary.as_changes()})
    return summary


def rules_open_owed_stages(*, actor: Actor, now: datetime | None = None) -> int:
    """Open what the rules as they now stand owe the in-flight incidents: a stage added to a rule, a new
    rule or destination, a rule that now matches more. Without this those stages would open only at each
    incident's next change, and their clocks may already be running.

    Runs after the rule write has committed (``rules_open_owed_stages_on_commit``), one short transaction
    per incident with the incident locked first, as every path locks it; ``obligations_sync`` is the same
    code an incident change runs, so nothing delivered is reopened and nothing is closed. An incident that
    fails is logged and left for its next change; the others go on. Returns the number of reports opened.
    """
    opened = 0
    ids = list(Incident.objects.filter(status__in=IN_FLIGHT_STATUSES)
               .exclude(reportability=Reportability.NOT_REPORTABLE).order_by("pk").values_list("pk", flat=True))
    for pk in ids:
        try:
            with transaction.atomic():
                incident = Incident.objects.select_for_update(of=("self",)).filter(pk=pk).first()
                if incident is not None:
                    opened += len(obligations_sync(incident=incident, actor=actor, kind="rules_changed", now=now))
        except Exception:  # noqa: BLE001  (one incident's failure must not stop the others)
            logger.exception("rules changed: could not open the owed stages of incident %s", pk)
    return opened


def rules_open_owed_stages_on_commit(*, actor: Actor) -> None:
    """Schedule ``rules_open_owed_stages`` for when the rule write's transaction commits."""
    transaction.on_commit(lambda: rules_open_owed_stages(actor=actor))
