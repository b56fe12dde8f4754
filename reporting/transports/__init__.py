"""Transports by name: the one place that maps ``Destination.transport`` to the code that sends.

Each entry is a dotted path imported on first use, so a transport's own dependencies (httpx, stix2,
taxii2-client, SMTP) load only in processes that send with it, and adding a transport is one line here.
"""
from __future__ import annotations

from django.utils.module_loading import import_string

from reporting.transports.base import Transport

# name (reporting.choices.Transport value) -> "module.path.ClassName" of a class with no constructor args.
TRANSPORTS: dict[str, str] = {
    "webhook": "reporting.transports.webhook.WebhookTransport",
    "taxii": "reporting.transports.taxii.TaxiiTransport",
    "email": "reporting.transports.email.EmailTransport",
}


def transport_for(name: str) -> Transport:
    try:
        dotted = TRANSPORTS[name]
    except KeyError:
        raise LookupError(f"no transport named {name!r}; known: {', '.join(sorted(TRANSPORTS))}") from None
    return import_string(dotted)()
