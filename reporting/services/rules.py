"""Rules as data: load them from (and export them to) the documented YAML/JSON shape, audited.

The file format is in docs/reporting-rules.md; reporting/rules/default.yaml is the default policy.
Loading is an upsert by (destination, rule name) that replaces the rule's stages; it validates the
whole file before writing anything, so a bad file changes nothing.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from incidents.actors import Actor
from incidents.choices import Category, Determination, Severity
from incidents.services.audit import audit_record
from reporting.choices import ANSWER_STAGE_NAME, ClockStart, StageKind
from reporting.durations import format_duration, parse_duration
from reporting.models import Destination, ReportingRule, RuleStage
from reporting.services.digests import digest_stage_errors
from reporting.services.rule_reschedule import rule_reschedule_open_reports, rules_open_owed_stages_on_commit

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules" / "default.yaml"
RULE_KEYS = {"name", "description", "destination", "is_active", "categories", "min_severity", "max_severity",
             "determinations", "requires_imminent_risk", "requires_reportable_decision", "escalation_points",
             "stages"}
STAGE_KEYS = {"key", "name", "kind", "clock_start", "offset", "requires_approval", "repeat_every", "on_material_change",
              "period", "content"}
_SEVERITIES = [s.value for s in Severity]
_SLUG = re.compile(r"^[-a-zA-Z0-9_]{1,50}$")
# Above any real position: stages park here while a load renames or reorders them (unique per rule).
_PARKING_POSITION = 20000


def read_rules_file(path: str | Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValidationError({"file": [f"cannot read {path}: {exc}"]}) from None
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(data.get("rules"), list):
        raise ValidationError({"file": ["expected a mapping with 'version: 1' and a 'rules' list"]})
    return data


def _bool(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError({where: ["must be true or false"]})
    return value


def _choices(where: str, values: object, allowed: list[str]) -> list[str]:
    if not isinstance(values, list) or any(v not in allowed for v in values):
        raise ValidationError({where: [f"must be a list of {', '.join(allowed)}"]})
    return list(values)


def _stage(where: str, raw: object, position: int) -> dict:
    required = {"name", "kind", "clock_start", "offset"}
    if not isinstance(raw, dict) or set(raw) - STAGE_KEYS or not required <= set(raw):
        optional = ", ".join(sorted(STAGE_KEYS - required))
        raise ValidationError({where: [f"a stage has name, kind, clock_start, offset (optional: {optional})"]})
    if str(raw["name"]) == ANSWER_STAGE_NAME:
        reserved = f"{ANSWER_STAGE_NAME!r} is reserved for answers to authorities' questions"
        raise ValidationError({f"{where}.name": [reserved]})
    if raw["kind"] not in StageKind.values:
        raise ValidationError({f"{where}.kind": [f"one of {', '.join(StageKind.values)}"]})
    if raw["clock_start"] not in ClockStart.values:
        raise ValidationError({f"{where}.clock_start": [f"one of {', '.join(ClockStart.values)}"]})
    try:
        offset = parse_duration(raw["offset"])
        repeat = parse_duration(raw["repeat_every"]) if raw.get("repeat_every") is not None else None
    except ValueError as exc:
        raise ValidationError({where: [str(exc)]}) from None
    if repeat is not None and repeat.total_seconds() < 60:
        raise ValidationError({f"{where}.repeat_every": ["at least a minute"]})
    name, key = str(raw["name"]), str(raw.get("key", raw["name"]))
    for label, value in (("name", name), ("key", key)):
        if not _SLUG.match(value):
            raise ValidationError({f"{where}.{label}": ["1 to 50 letters, digits, '-' or '_'"]})
    period, content = str(raw.get("period", "")), str(raw.get("content", ""))
    on_change = _bool(f"{where}.on_material_change", raw.get("on_material_change", False))
    errors = digest_stage_errors(kind=raw["kind"], clock_start=raw["clock_start"], period=period, content=content,
                                 repeat_every=repeat, on_material_change=on_change)
    if errors:
        raise ValidationError({f"{where}.{field}": [message] for field, message in errors.items()})
    return {
        "digest_period": period, "digest_content": content,
        "key": key, "name": name, "kind": raw["kind"], "clock_start": raw["clock_start"], "offset": offset,
        "position": position, "repeat_every": repeat,
        "requires_approval": _bool(f"{where}.requires_approval", raw.get("requires_approval", False)),
        "on_material_change": _bool(f"{where}.on_material_change", raw.get("on_material_change", False)),
    }


def _rule(where: str, raw: object, destination: Destination | None) -> tuple[Destination, dict, list[dict]]:
    if not isinstance(raw, dict) or set(raw) - RULE_KEYS or "name" not in raw or "stages" not in raw:
        raise ValidationError({where: [f"a rule has name and stages; allowed keys: {', '.join(sorted(RULE_KEYS))}"]})
    if destination is None:
        destination = Destination.objects.filter(name=raw.get("destination", "")).first()
        if destination is None:
            raise ValidationError({f"{where}.destination": [f"no destination named {raw.get('destination')!r}"]})
    fields = {
        "description": str(raw.get("description", "")),
        "is_active": _bool(f"{where}.is_active", raw.get("is_active", True)),
        "categories": _choices(f"{where}.categories", raw.get("categories", []), Category.values),
        "determinations": _choices(f"{where}.determinations", raw.get("determinations", []), Determination.values),
        "min_severity": raw.get("min_severity", Severity.SEV4),
        "max_severity": raw.get("max_severity", Severity.SEV0),
        "requires_imminent_risk": _bool(f"{where}.requires_imminent_risk", raw.get("requires_imminent_risk", False)),
        "requires_reportable_decision": _bool(f"{where}.requires_reportable_decision",
                                              raw.get("requires_reportable_decision", False)),
        "escalation_points": raw.get("escalation_points", [0.5, 0.75, 0.9]),
    }
    for key in ("min_severity", "max_severity"):
        if fields[key] not in _SEVERITIES:
            raise ValidationError({f"{where}.{key}": [f"one of {', '.join(_SEVERITIES)}"]})
    if _SEVERITIES.index(fields["max_severity"]) > _SEVERITIES.index(fields["min_severity"]):
        raise ValidationError({where: ["max_severity must be at least as severe as min_severity"]})
    points = fields["escalation_points"]
    if not isinstance(points, list) or not all(isinstance(p, (int, float)) and 0 < p < 1 for p in points):
        raise ValidationError({f"{where}.escalation_points": ["a list of fractions between 0 and 1"]})
    stages_raw = raw["stages"]
    if not isinstance(stages_raw, list) or not stages_raw:
        raise ValidationError({f"{where}.stages": ["at least one stage"]})
    stages = [_stage(f"{where}.stages[{i}]", s, i + 1) for i, s in enumerate(stages_raw)]
    if len({s["name"] for s in stages}) != len(stages):
        raise ValidationError({f"{where}.stages": ["stage names must be unique within a rule"]})
    if len({s["key"] for s in stages}) != len(stages):
        raise ValidationError({f"{where}.stages": ["stage keys must be unique within a rule"]})
    return destination, {"name": str(raw["name"]), **fields}, stages


def rules_load(*, data: dict, actor: Actor, destination: Destination | None = None,
               reason: str = "") -> list[ReportingRule]:
    """Validate every rule, then upsert them all in one transaction (each change audited), and bring the
    open stages of every loaded rule in line with it (reporting.services.rule_reschedule)."""
    parsed = [_rule(f"rules[{i}]", raw, destination) for i, raw in enumerate(data.get("rules", []))]
    keys = [(target.pk, fields["name"]) for target, fields, _ in parsed]
    if len(set(keys)) != len(keys):
        raise ValidationError({"rules": ["a rule name appears twice for one destination"]})
    loaded = []
    with transaction.atomic():
        for target, fields, stages in parsed:
            rule, created = ReportingRule.objects.update_or_create(
                destination=target, name=fields["name"], defaults=fields
            )
            _stages_replace(rule, stages)
            audit_record(actor=actor, action="rule_created" if created else "rule_replaced", obj=rule,
                         changes=rule_as_data(rule), reason=reason)
            if not created:
                rule_reschedule_open_reports(rule=rule, actor=actor, reason=reason)
            loaded.append(rule)
        if loaded:
            rules_open_owed_stages_on_commit(actor=actor)
    return loaded


def _stages_replace(rule: ReportingRule, stages: list[dict]) -> None:
    """Upsert stages by key: a stage that keeps its key keeps its row (and its reports' link to it), so a
    rename relabels instead of opening the stage anew. Stages left out of the file are deleted."""
    current = {stage.key: stage for stage in rule.stages.all()}
    for offset, stage in enumerate(current.values()):
        RuleStage.objects.filter(pk=stage.pk).update(position=_PARKING_POSITION + offset, name=f"parked-{stage.pk}")
    wanted = {stage["key"] for stage in stages}
    RuleStage.objects.filter(rule=rule).exclude(key__in=wanted).delete()
    for stage in stages:
        row = current.get(stage["key"]) or RuleStage(rule=rule)
        for name, value in stage.items():
            setattr(row, name, value)
        row.save()


def rule_as_data(rule: ReportingRule) -> dict:
    stages = []
    for stage in rule.stages.order_by("position"):
        item = {"key": stage.key, "name": stage.name, "kind": stage.kind, "clock_start": stage.clock_start,
                "offset": format_duration(stage.offset), "requires_approval": stage.requires_approval}
        if stage.repeat_every:
            item["repeat_every"] = format_duration(stage.repeat_every)
        if stage.on_material_change:
            item["on_material_change"] = True
        if stage.kind == StageKind.DIGEST:
            item["period"], item["content"] = stage.digest_period, stage.digest_content
        stages.append(item)
    return {
        "name": rule.name, "description": rule.description, "destination": rule.destination.name,
        "is_active": rule.is_active, "categories": rule.categories, "min_severity": rule.min_severity,
        "max_severity": rule.max_severity, "determinations": rule.determinations,
        "requires_imminent_risk": rule.requires_imminent_risk,
        "requires_reportable_decision": rule.requires_reportable_decision,
        "escalation_points": rule.escalation_points, "stages": stages,
    }


def rules_export(*, destination: Destination | None = None) -> dict:
    rules = ReportingRule.objects.select_related("destination").order_by("destination__name", "name")
    if destination is not None:
        rules = rules.filter(destination=destination)
    return {"version": 1, "rules": [rule_as_data(rule) for rule in rules]}
