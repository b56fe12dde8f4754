"""Destinations and rules for the reporting tests."""
from __future__ import annotations

import base64
import secrets

import pytest

from incidents.actors import Actor
from reporting.services.destinations import destination_create
from reporting.services.rules import DEFAULT_RULES, read_rules_file, rules_load

SYSTEM = Actor.system("tests")


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def make_destination(name: str = "authority-a", *, address: str = "http://127.0.0.1:9/hook", rules: str | None = "default",
                     transport: str = "webhook", secret: str | None = None, **kwargs):
    destination = destination_create(
        actor=SYSTEM, name=name, authority=kwargs.pop("authority", f"Authority {name}"), transport=transport,
        address=address, secret=secret if secret is not None else new_webhook_secret(), **kwargs,
    )
    if rules == "default":
        rules_load(data=read_rules_file(DEFAULT_RULES), actor=SYSTEM, destination=destination)
    return destination


@pytest.fixture
def default_destination(db):
    return make_destination()
