"""Fixed personas and helpers shared by every test module."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from incidents.actors import Actor
from incidents.choices import DetectorScope
from incidents.services.detectors import detector_create, detector_token_issue
from incidents.services.idempotency import ClaimResult, idempotency_claim
from incidents.services.intake import incident_create

SYSTEM = Actor.system("tests")


@pytest.fixture(autouse=True)
def _clear_cache(monkeypatch):
    """Rate-limit counters live in the cache; each test starts with none, and in one window.

    The limits count per minute of the clock: a test whose requests straddled a minute's end would
    see its count start again (or a 429 name other seconds left). The throttle's clock stands still
    in the middle of a window instead; the cache is emptied around every test.
    """
    from types import SimpleNamespace

    from django.core.cache import cache

    from incidents.api import throttling

    monkeypatch.setattr(throttling, "time", SimpleNamespace(time=lambda: 1_800_000_012.5))
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def staff_user(db):
    return get_user_model().objects.create_user(
        username="stella", email="stella@lab.example", password="correct horse battery staple", is_staff=True,
        is_superuser=True,
    )


def login_verified(client, user):
    """Log ``user`` in as the admin login would after a correct second-factor code: the admin refuses a
    session without a verified device, so every admin test goes through here rather than force_login."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="test authenticator", confirmed=True)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@pytest.fixture
def staff_client(client, staff_user):
    """The test client logged in as ``staff_user`` with a verified second factor."""
    return login_verified(client, staff_user)


@pytest.fixture
def staff_actor(staff_user):
    return Actor.for_user(staff_user)


def make_detector(name: str, scopes=(DetectorScope.SUBMIT, DetectorScope.READ_OWN), **token_kwargs):
    detector = detector_create(actor=SYSTEM, name=name)
    issued = detector_token_issue(actor=SYSTEM, detector=detector, scopes=scopes, **token_kwargs)
    return detector, issued.secret


@pytest.fixture
def detector_a(db):
    return make_detector("classifier-a")


@pytest.fixture
def detector_b(db):
    return make_detector("soc-b")


def api_client(secret: str | None) -> APIClient:
    client = APIClient()
    if secret:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


@pytest.fixture
def api_a(detector_a):
    return api_client(detector_a[1])


@pytest.fixture
def api_b(detector_b):
    return api_client(detector_b[1])


def valid_body(**overrides) -> dict:
    body = {
        "title": "Credential phishing kit generation",
        "summary": "A cluster of accounts generated phishing pages impersonating a bank.",
        "category": "FRAUD",
        "severity": "SEV-2",
        "detected_at": (timezone.now() - timedelta(minutes=5)).isoformat().replace("+00:00", "Z"),
        "model": {"name": "Fable 5", "version": "2026-10"},
    }
    body.update(overrides)
    return body


def incident_fields(**overrides) -> dict:
    fields = {
        "title": "Intrusion tooling",
        "summary": "Model used to write an intrusion toolkit.",
        "category": "CYBER",
        "severity": "SEV-1",
        "detected_at": timezone.now() - timedelta(hours=1),
        "model_name": "Mythos 5",
    }
    fields.update(overrides)
    return fields


def make_incident(actor: Actor = SYSTEM, **overrides):
    return incident_create(actor=actor, fields=incident_fields(**overrides)).incident


def post(client: APIClient, body, key: str | None = "key-1", path: str = "/api/v1/incidents/", **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return client.post(path, body, format="json", **headers, **extra)


@contextmanager
def key_held_elsewhere(detector, key: str, fingerprint: str):  # noqa: ANN001
    """Another request, on its own connection, holding ``key`` in its open transaction meanwhile
    (PostgreSQL: the key's advisory lock). It stores nothing and rolls back at the end."""
    held, done = threading.Event(), threading.Event()
    outcome: list = []

    def other() -> None:
        try:
            with transaction.atomic():
                outcome.append(idempotency_claim(detector=detector, key=key, fingerprint=fingerprint).result)
                held.set()
                done.wait(timeout=30)
                transaction.set_rollback(True)
        finally:
            held.set()
            connection.close()

    thread = threading.Thread(target=other)
    thread.start()
    assert held.wait(timeout=30)
    assert outcome == [ClaimResult.CLAIMED]
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=30)
