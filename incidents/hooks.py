"""The one seam through which intake tells the outbound side that an incident changed.

``reporting`` registers a hook at start-up (its AppConfig.ready); services call ``run_incident_hooks``
inside their own transaction, so the obligations an incident opens commit or roll back with it.
This keeps the dependency one-way (incidents never imports reporting) without Django signals:
the call is explicit in every service, and a test can see exactly which hooks ran.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import transaction

if TYPE_CHECKING:
    from incidents.actors import Actor
    from incidents.models import Incident


@dataclass(frozen=True)
class IncidentChange:
    """What happened: ``created``, ``occurrence``, ``updated``, ``transitioned``, ``reportability`` or
    ``parts`` (evidence, indicators or accounts added, changed or removed)."""

    kind: str
    incident: Incident
    actor: Actor
    changes: dict = field(default_factory=dict)


IncidentHook = Callable[[IncidentChange], None]
_hooks: list[IncidentHook] = []


def register_incident_hook(hook: IncidentHook) -> None:
    if hook not in _hooks:
        _hooks.append(hook)


def unregister_incident_hook(hook: IncidentHook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def run_incident_hooks(change: IncidentChange) -> None:
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("incident hooks must run inside the service's transaction")
    for hook in list(_hooks):
        hook(change)
