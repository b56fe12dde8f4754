"""The audit trail in the admin: read-only everywhere (the model itself refuses updates and deletes)."""
from __future__ import annotations

import json

from django.contrib import admin

from incidents.admin.read_only import ReadOnlyAdminMixin
from incidents.models import AuditEvent, Incident
from incidents.selectors import incident_audit_trail

# Change values can be long (a list of indicators); the full record stays in the database.
_VALUE_CHARS = 300
# These actions store a list of added items, not an [old, new] pair.
_LIST_ACTIONS = frozenset({"parts_added"})


def _value_text(value: object) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict):
        text = ", ".join(f"{key} {_value_text(item)}" for key, item in value.items())
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


def describe_changes(action: str, changes: dict) -> list[str]:
    lines = []
    for key, value in (changes or {}).items():
        if action not in _LIST_ACTIONS and isinstance(value, list) and len(value) == 2:
            lines.append(f"{key}: {_value_text(value[0])} → {_value_text(value[1])}")
        else:
            lines.append(f"{key}: {_value_text(value)}")
    return lines


def audit_rows(incident: Incident) -> list[dict]:
    """Rows for the incident page's audit table (rendered by the template, which escapes them)."""
    return [
        {
            "at": event.created_at,
            "who": event.actor_label,
            "action": event.action,
            "object": "" if event.object_type == "incidents.incident" else event.object_type.split(".")[-1],
            "changes": describe_changes(event.action, event.changes),
            "reason": event.reason,
        }
        for event in incident_audit_trail(incident=incident)
    ]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Browse every event (detectors and tokens too); nothing here can add, change or delete one."""

    list_display = ("created_at", "actor_label", "action", "object_type", "object_id", "incident", "chain_seq")
    list_filter = ("action", "actor_kind", "object_type", "created_at")
    list_select_related = ("incident",)
    search_fields = ("object_id", "actor_label", "action")
    fields = (
        "created_at", "incident", "object_type", "object_id", "action", "actor_kind", "actor_label", "actor_user",
        "actor_detector", "changes_text", "reason", "public_id", "chain_seq", "prev_hash", "hash",
    )
    readonly_fields = fields

    @admin.display(description="Changes")
    def changes_text(self, obj: AuditEvent) -> str:
        return "\n".join(describe_changes(obj.action, obj.changes)) or "-"
