"""Which stages an incident owes, and when each is due: pure functions over plain data.

No database, no clock: given an incident's facts, the rules, and when earlier stages were delivered,
they say what is owed. ``reporting.services.obligations`` turns that into Report rows. Keeping this
pure lets the tests walk every branch (tests/reporting/test_obligations.py).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from incidents.choices import Category, Reportability, Severity

SEVERITY_ORDER = [s.value for s in Severity]  # most severe first
# Fields whose change after delivery is "material": it opens a supplemental stage where a rule asks.
MATERIAL_FIELDS = frozenset(
    {
        "category", "severity", "determination", "imminent_risk_to_life", "status", "deaths", "injuries",
        "economic_loss_usd", "affected_parties", "cross_border", "countries", "critical_infrastructure_sector",
        "actor_type", "actor_origin", "techniques", "root_cause", "actions_taken", "recommendation",
    }
)


@dataclass(frozen=True)
class IncidentFacts:
    category: str
    severity: str
    determination: str
    reportability: str
    imminent_risk_to_life: bool
    detected_at: datetime
    aware_at: datetime | None = None
    determined_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class StageSpec:
    name: str
    kind: str
    position: int
    clock_start: str  # a trigger-time field of the incident, or "previous_delivered"
    offset: timedelta
    requires_approval: bool = False
    repeat_every: timedelta | None = None
    on_material_change: bool = False
    stage_id: int | None = None
    key: str = ""
    digest_period: str = ""  # digest stages only (reporting.services.digests)
    digest_content: str = ""  # the stage's stable identity; a rename changes the name only

    @property
    def identity(self) -> str:
        return self.key or self.name


@dataclass(frozen=True)
class RuleSpec:
    rule_id: int
    destination_accepts_child_safety: bool
    stages: tuple[StageSpec, ...]
    categories: tuple[str, ...] = ()
    min_severity: str = Severity.SEV4
    max_severity: str = Severity.SEV0
    determinations: tuple[str, ...] = ()
    requires_imminent_risk: bool = False
    requires_reportable_decision: bool = False
    escalation_points: tuple[float, ...] = (0.5, 0.75, 0.9)


@dataclass(frozen=True)
class Owed:
    rule_id: int
    stage: StageSpec
    sequence: int
    clock_started_at: datetime | None  # None: the clock's start event has not happened yet
    due_at: datetime | None
    not_before: datetime | None = None  # a periodic update is not sent long before it is due


@dataclass
class DeliveredStages:
    """When each (stage key, sequence) of one rule was delivered, for clocks that start there."""

    at: dict[tuple[str, int], datetime] = field(default_factory=dict)

    def latest(self, stage_key: str) -> tuple[int, datetime] | None:
        found = [(seq, when) for (key, seq), when in self.at.items() if key == stage_key]
        return max(found) if found else None


def rule_applies(facts: IncidentFacts, rule: RuleSpec) -> bool:
    if facts.reportability == Reportability.NOT_REPORTABLE:
        return False  # a person decided not to report: no rule opens anything
    if rule.requires_reportable_decision and facts.reportability != Reportability.REPORTABLE:
        return False
    # Child-safety material goes to a child-protection destination only, whatever a rule says.
    if facts.category == Category.CHILD_SAFETY and not rule.destination_accepts_child_safety:
        return False
    if rule.categories and facts.category not in rule.categories:
        return False
    index = SEVERITY_ORDER.index(facts.severity)
    if not SEVERITY_ORDER.index(rule.max_severity) <= index <= SEVERITY_ORDER.index(rule.min_severity):
        return False
    if rule.determinations and facts.determination not in rule.determinations:
        return False
    return not (rule.requires_imminent_risk and not facts.imminent_risk_to_life)


def _clock_start(facts: IncidentFacts, stage: StageSpec, previous: StageSpec | None,
                 delivered: DeliveredStages) -> datetime | None:
    if stage.clock_start == "previous_delivered":
        if previous is None:
            return facts.detected_at  # a first stage with nothing before it starts at detection
        latest = delivered.latest(previous.identity)
        return latest[1] if latest else None
    return getattr(facts, stage.clock_start)


def _clocked_stages(rule: RuleSpec) -> list[StageSpec]:
    """The rule's stages with a clock of their own, in order. Stages opened on material change have none
    (reporting.services.obligations), and digest stages batch incidents per period
    (reporting.services.digests): neither is owed per incident by ``owed_stages``."""
    return sorted((s for s in rule.stages if not s.on_material_change and s.kind != "digest"),
                  key=lambda s: s.position)


def delivery_starts_clocks(rule: RuleSpec, stage_key: str) -> bool:
    """Whether delivering the stage ``stage_key`` of ``rule`` can change what ``owed_stages`` returns:
    the next stage's clock starts at this delivery (``previous_delivered``), or this stage repeats.

    ``owed_stages`` reads deliveries only there; the incident's facts do not change with a delivery, and a
    delivery is not a material change. When this is False, delivering the stage opens and moves nothing.
    """
    ordered = _clocked_stages(rule)
    for index, stage in enumerate(ordered):
        if stage.identity == stage_key and stage.repeat_every is not None:
            return True
        if index and stage.clock_start == "previous_delivered" and ordered[index - 1].identity == stage_key:
            return True
    return False


def owed_stages(facts: IncidentFacts, rule: RuleSpec, delivered: DeliveredStages) -> list[Owed]:
    """Every stage the rule currently owes: one per stage, plus the next round of a periodic update.

    A stage already delivered is still listed (with its clock) so callers can tell it apart from one
    that is no longer owed; callers never reopen delivered stages.
    """
    if not rule_applies(facts, rule):
        return []
    owed: list[Owed] = []
    ordered = _clocked_stages(rule)
    for index, stage in enumerate(ordered):
        previous = ordered[index - 1] if index else None
        start = _clock_start(facts, stage, previous, delivered)
        due = start + stage.offset if start else None
        # A periodic update is not sent long before it is due: a tenth of its period, at most an hour.
        lead = min(stage.repeat_every / 10, timedelta(hours=1)) if stage.repeat_every else None
        not_before = due - lead if due and lead else None
        owed.append(Owed(rule_id=rule.rule_id, stage=stage, sequence=1, clock_started_at=start, due_at=due,
                         not_before=not_before))
        if stage.repeat_every is None or facts.resolved_at is not None:
            continue
        latest = delivered.latest(stage.identity)
        if latest is None:
            continue
        # The next round: due one period after the last delivery.
        sequence, last = latest[0] + 1, latest[1]
        next_due = last + stage.repeat_every
        owed.append(
            Owed(rule_id=rule.rule_id, stage=stage, sequence=sequence, clock_started_at=last, due_at=next_due,
                 not_before=next_due - lead)
        )
    return owed


def is_material(changes: Mapping[str, object], kind: str) -> bool:
    """Whether a change after delivery is worth telling the authority about."""
    if kind in {"parts", "occurrence"}:
        return True
    return any(name in MATERIAL_FIELDS for name in changes)


def escalation_due(*, clock_started_at: datetime, due_at: datetime, now: datetime,
                   points: Iterable[float]) -> list[float]:
    """The escalation points (fractions of the window) already reached; 1.0 means overdue."""
    window = (due_at - clock_started_at).total_seconds()
    if window <= 0:
        return [*sorted(points), 1.0] if now >= due_at else []
    used = (now - clock_started_at).total_seconds() / window
    reached = [p for p in sorted(points) if used >= p]
    if now >= due_at:
        reached.append(1.0)
    return reached
