"""Digest stages: one report per rule stage and period, batching the period's qualifying incidents.

Called from the obligation hook (reporting.services.obligations) in the incident change's transaction,
for each active rule with a digest stage that the incident matches. The digest is an ordinary Report
row (no incident; ``period_start``/``period_end``; ``DigestEntry`` rows for its incidents), so it goes
through the same outbox: lease, freeze once, signature, transports, retries, escalation, clock board.

Which period an incident joins: the one containing its detection time. If that period's digest is
already frozen (or was delivered or withdrawn), the next period whose digest is still open: a late
incident is never lost and never changes what was signed. An incident joins each digest stage once;
it stays in its digest when it is later escalated above the rule's severities (it also gets its own
stages from the rule that then matches) and is left out at freeze time only if a person decided it is
not reportable, or it became CHILD_SAFETY and the destination is not a child-protection one.

Concurrency: the digest row is created with a savepoint that tolerates a concurrent creator (unique
constraint ``report_unique_digest_period``), then read with ``FOR KEY SHARE``. Intakes do not block
each other on it, while a freeze (``FOR UPDATE``) waits for every intake that is adding an incident,
and an intake that arrives during a freeze waits for it, sees it frozen, and moves to the next period.
"""
from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, connection, transaction

from incidents.actors import Actor
from incidents.models import Incident
from incidents.services.audit import audit_record
from reporting.choices import OPEN_REPORT_STATUSES, ClockStart, ReportStatus, StageKind
from reporting.dispatch import enqueue_on_commit
from reporting.models import DigestEntry, Report, ReportingRule
from reporting.obligations import StageSpec
from reporting.periods import Period, period_after, period_containing

# An intake never loops for ever: past this many frozen periods in a row something is wrong.
_MAX_PERIODS_AHEAD = 1000


def digest_join(*, incident: Incident, rule: ReportingRule, stage: StageSpec, actor: Actor,
                now: datetime) -> Report | None:
    """Add the incident to the open digest of its period for this rule stage (once). Caller's transaction."""
    if DigestEntry.objects.filter(rule=rule, stage_key=stage.identity, incident=incident).exists():
        return None
    period = period_containing(stage.digest_period, incident.detected_at)
    for _ in range(_MAX_PERIODS_AHEAD):
        digest = _digest_for(rule=rule, stage=stage, period=period, actor=actor, now=now)
        if digest.frozen_at is None and digest.status in OPEN_REPORT_STATUSES:
            break
        period = period_after(period)
    else:
        raise RuntimeError(f"no open digest period for rule {rule.pk} stage {stage.identity!r}")
    DigestEntry.objects.create(digest=digest, incident=incident, rule=rule, stage_key=stage.identity, joined_at=now)
    audit_record(actor=actor, action="digest_joined", obj=incident,
                 changes={"report": str(digest.public_id), "destination": rule.destination.name,
                          "stage": stage.name, "period": [digest.period_start.isoformat(),
                                                          digest.period_end.isoformat()]})
    return digest


def _digest_for(*, rule: ReportingRule, stage: StageSpec, period: Period, actor: Actor, now: datetime) -> Report:
    found = _key_share_locked(rule.pk, stage.identity, period.start)
    if found is not None:
        return found
    sendable = not stage.requires_approval
    next_attempt = max(now, period.end) if sendable else None
    try:
        with transaction.atomic():
            digest = Report.objects.create(
                incident=None, destination=rule.destination, rule=rule, stage_id=stage.stage_id,
                stage_key=stage.identity, stage_name=stage.name, stage_kind=StageKind.DIGEST, sequence=1,
                period_start=period.start, period_end=period.end,
                status=ReportStatus.AWAITING_APPROVAL if stage.requires_approval else ReportStatus.PENDING,
                requires_approval=stage.requires_approval, clock_started_at=period.end,
                due_at=period.end + stage.offset, next_attempt_at=next_attempt,
            )
            audit_record(actor=actor, action="digest_opened", obj=digest,
                         changes={"report": str(digest.public_id), "destination": rule.destination.name,
                                  "stage": stage.name, "period": period.label, "due_at": digest.due_at.isoformat(),
                                  "status": digest.status})
    except IntegrityError:
        pass  # another intake opened it first; it is read below
    else:
        if next_attempt is not None and next_attempt <= now:
            enqueue_on_commit(digest.pk)  # a digest opened after its period ended (a late incident, a backfill)
    found = _key_share_locked(rule.pk, stage.identity, period.start)
    if found is None:
        raise RuntimeError("digest row vanished after creation")
    return found


def _key_share_locked(rule_id: int, stage_key: str, period_start: datetime) -> Report | None:
    """The digest row, read with FOR KEY SHARE (held until the caller's transaction ends)."""
    table = Report._meta.db_table
    lock = " FOR KEY SHARE" if connection.features.has_select_for_update else ""
    rows = list(Report.objects.raw(
        f"SELECT * FROM {table} WHERE rule_id = %s AND stage_key = %s AND period_start = %s "  # noqa: S608
        f"AND incident_id IS NULL{lock}", [rule_id, stage_key, period_start],
    ))
    return rows[0] if rows else None


def digest_stages(stages: tuple[StageSpec, ...]) -> list[StageSpec]:
    return [s for s in stages if s.kind == StageKind.DIGEST]


def digest_stage_errors(*, kind: str, clock_start: str, period: str, content: str, repeat_every: object,
                        on_material_change: bool) -> dict[str, str]:
    """What is wrong with a stage's digest settings (shared by rules_load and the admin form)."""
    errors: dict[str, str] = {}
    if kind == StageKind.DIGEST:
        if clock_start != ClockStart.PERIOD_END:
            errors["clock_start"] = "a digest stage's clock starts at period_end"
        if period not in ("weekly", "monthly"):
            errors["period"] = "a digest stage needs period: weekly or monthly"
        if content not in ("list", "aggregate"):
            errors["content"] = "a digest stage needs content: list or aggregate"
        if repeat_every:
            errors["repeat_every"] = "a digest repeats by its period, not repeat_every"
        if on_material_change:
            errors["on_material_change"] = "a digest stage is not opened on material change"
    else:
        if clock_start == ClockStart.PERIOD_END:
            errors["clock_start"] = "period_end is for digest stages only"
        if period or content:
            errors["period" if period else "content"] = "period and content are for digest stages only"
    return errors
