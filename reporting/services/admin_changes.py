"""Changes staff make in the admin to the outbound side: destinations, rules, escalations. Each audited.

Destination creation lives in reporting.services.destinations; this module holds the edits that only
the admin makes. Every function runs in its own transaction (nested as a savepoint when the admin's
change view already holds one) and writes its audit event with the explicit actor it was given.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import Tlp
from incidents.services.audit import audit_record
from reporting.choices import DISCLOSURE_ORDER, OPEN_REPORT_STATUSES, Disclosure, Transport
from reporting.encryption import mask
from reporting.models import Destination, Escalation, ReportingRule
from reporting.portal.models import Authority
from reporting.services.destinations import validate_address
from reporting.services.rule_reschedule import rule_reschedule_open_reports, rules_open_owed_stages_on_commit
from reporting.services.rules import rule_as_data

DESTINATION_UPDATE_FIELDS = frozenset({
    "authority", "address", "username", "max_disclosure", "tlp", "accepts_child_safety", "fallback", "is_active",
})


def _check_destination_fields(destination: Destination, fields: dict) -> dict:
    """Validate and normalise the changed fields the way destination_create does for new ones."""
    unknown = set(fields) - DESTINATION_UPDATE_FIELDS
    if unknown:
        raise ValidationError({name: ["cannot be changed"] for name in sorted(unknown)})
    cleaned = dict(fields)
    if "authority" in cleaned and not isinstance(cleaned["authority"], Authority):
        raise ValidationError({"authority": ["choose an authority"]})
    if "address" in cleaned:
        cleaned["address"] = validate_address(transport=destination.transport, address=cleaned["address"])
    if "max_disclosure" in cleaned and cleaned["max_disclosure"] not in Disclosure.values:
        raise ValidationError({"max_disclosure": [f"one of {', '.join(Disclosure.values)}"]})
    if "tlp" in cleaned and cleaned["tlp"] not in Tlp.values:
        raise ValidationError({"tlp": [f"one of {', '.join(Tlp.values)}"]})
    fallback = cleaned.get("fallback")
    if fallback is not None:
        if fallback.pk == destination.pk:
            raise ValidationError({"fallback": ["a destination cannot be its own fallback"]})
        if fallback.transport != Transport.EMAIL:
            raise ValidationError({"fallback": ["the fallback is a last-resort e-mail destination"]})
    return cleaned


def _change_value(value: object) -> object:
    return value.name if isinstance(value, (Destination, Authority)) else value


def destination_update(
    *, destination: Destination, actor: Actor, fields: dict, secret: str | None = None, reason: str = ""
) -> Destination:
    """Change a destination's settings and, when ``secret`` is given, replace its secret.

    The audit event names each changed field (old → new); a new secret appears only masked. The
    pseudonym key never changes here: a new key would make the authority's earlier pseudonyms unlinkable.
    """
    cleaned = _check_destination_fields(destination, fields)
    if secret is not None and destination.transport == Transport.WEBHOOK and not secret.startswith("whsec_"):
        raise ValidationError({"secret": ["a webhook destination needs a Standard Webhooks secret (whsec_...)"]})
    with transaction.atomic():
        row = Destination.objects.select_for_update().get(pk=destination.pk)
        changes: dict = {}
        for name, value in cleaned.items():
            old = getattr(row, name)
            if old != value:
                changes[name] = [_change_value(old), _change_value(value)]
                setattr(row, name, value)
        if "max_disclosure" in changes and row.max_disclosure == Disclosure.DIGESTS:
            # Lowering is always allowed (it is how staff stop raw content leaving in a hurry). Stages
            # approved with raw content and not frozen yet will go with digests only: packaging takes
            # the lower of the two. The audit event says how many were affected.
            changes["degraded_open_reports"] = degraded_open_reports(row)
        if secret is not None:
            row.set_secret(secret)
            changes["secret"] = ["(replaced)", mask(secret)]
        if not changes:
            return row
        update_fields = [name for name in cleaned if name in changes]
        if secret is not None:
            update_fields.append("secret_encrypted")
        row.save(update_fields=[*update_fields, "updated_at"])
        audit_record(actor=actor, action="destination_updated", obj=row, changes=changes, reason=reason)
    return row


def degraded_open_reports(destination: Destination) -> int:
    """Open, unfrozen stages approved with raw content that this destination no longer accepts."""
    if DISCLOSURE_ORDER.index(destination.max_disclosure) >= DISCLOSURE_ORDER.index(Disclosure.RAW_CONTENT):
        return 0
    return destination.reports.filter(
        status__in=OPEN_REPORT_STATUSES, frozen_at__isnull=True, disclosure=Disclosure.RAW_CONTENT
    ).count()


def rule_record_change(
    *, rule: ReportingRule, actor: Actor, created: bool, before: dict | None = None, reason: str = ""
) -> None:
    """One audit event for a rule saved with its stages in the admin: the whole rule as data, after and before;
    then the rule's open stages follow the edit at once (a second event lists what moved)."""
    with transaction.atomic():
        after = rule_as_data(rule)
        changes: dict = {"rule": after}
        if before is not None:
            if before == after:
                return  # saved without a change: nothing to record
            changes["before"] = before
            changes["changed"] = sorted(key for key in after if after[key] != before.get(key))
        audit_record(actor=actor, action="rule_created" if created else "rule_changed", obj=rule, changes=changes,
                     reason=reason)
        if not created:
            rule_reschedule_open_reports(rule=rule, actor=actor, reason=reason)
        rules_open_owed_stages_on_commit(actor=actor)


def rule_delete(*, rule: ReportingRule, actor: Actor) -> None:
    """Delete a rule no report refers to (reports keep their rule: PROTECT). Audited with the rule as data."""
    with transaction.atomic():
        row = ReportingRule.objects.select_for_update().select_related("destination").get(pk=rule.pk)
        count = row.reports.count()
        if count:
            raise ValidationError(
                f"rule {row.name!r} has {count} report(s) and cannot be deleted; deactivate it instead"
            )
        audit_record(actor=actor, action="rule_deleted", obj=row, changes={"rule": rule_as_data(row)})
        row.delete()


def escalation_acknowledge(*, escalation: Escalation, actor: Actor, reason: str = "") -> Escalation:
    """A person says they have seen an escalation (it stays on the record; the stage itself is unchanged)."""
    if actor.user is None:
        raise ValidationError({"actor": ["an escalation is acknowledged by a person"]})
    with transaction.atomic():
        row = (Escalation.objects.select_for_update(of=("self",))
               .select_related("report__incident", "report__destination", "acknowledged_by")
               .get(pk=escalation.pk))
        if row.acknowledged_at is not None:
            who = row.acknowledged_by.get_username() if row.acknowledged_by else "someone"
            raise ValidationError(f"already acknowledged by {who} at {row.acknowledged_at:%Y-%m-%d %H:%M} UTC")
        row.acknowledged_by, row.acknowledged_at = actor.user, timezone.now()
        row.save(update_fields=["acknowledged_by", "acknowledged_at"])
        report = row.report
        audit_record(
            actor=actor, action="escalation_acknowledged", obj=report.incident or report, reason=reason,
            changes={"report": str(report.public_id), "stage": f"{report.stage_name}#{report.sequence}",
                     "destination": report.destination.name, "level": row.level},
        )
    return row
