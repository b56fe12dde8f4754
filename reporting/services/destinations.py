"""Creating and changing destinations: validated addresses, secrets encrypted, every change audited."""
from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import transaction

from incidents.actors import Actor
from incidents.choices import Tlp
from incidents.services.audit import audit_record
from reporting.choices import Disclosure, Transport
from reporting.encryption import mask
from reporting.models import Destination
from reporting.portal.models import Authority
from reporting.portal.services.authorities import authority_get_or_create


def validate_address(*, transport: str, address: str) -> str:
    address = address.strip()
    if transport == Transport.EMAIL:
        try:
            EmailValidator()(address)
        except ValidationError:
            raise ValidationError({"address": ["an e-mail destination needs an e-mail address"]}) from None
        return address
    parts = urlsplit(address)
    allowed = {"https"} if settings.PRODUCTION else {"https", "http"}
    if parts.scheme not in allowed or not parts.hostname:
        need = "an https:// URL" if settings.PRODUCTION else "an http(s):// URL"
        raise ValidationError({"address": [f"a {transport} destination needs {need}"]})
    return address


def destination_create(
    *, actor: Actor, name: str, authority: Authority | str, transport: str, address: str, secret: str = "",
    username: str = "",
    max_disclosure: str = Disclosure.DIGESTS, tlp: str = Tlp.AMBER_STRICT, accepts_child_safety: bool = False,
    fallback: Destination | None = None,
) -> Destination:
    """``authority`` is an Authority or its exact name (made on first use, so scripts keep passing names)."""
    errors = {}
    if not name.strip():
        errors["name"] = ["must not be empty"]
    if isinstance(authority, str) and not authority.strip():
        errors["authority"] = ["must not be empty"]
    if transport not in Transport.values:
        errors["transport"] = [f"one of {', '.join(Transport.values)}"]
    if max_disclosure not in Disclosure.values:
        errors["max_disclosure"] = [f"one of {', '.join(Disclosure.values)}"]
    if tlp not in Tlp.values:
        errors["tlp"] = [f"one of {', '.join(Tlp.values)}"]
    if errors:
        raise ValidationError(errors)
    address = validate_address(transport=transport, address=address)
    if transport == Transport.WEBHOOK and not secret.startswith("whsec_"):
        raise ValidationError({"secret": ["a webhook destination needs a Standard Webhooks secret (whsec_...)"]})
    if fallback is not None and fallback.transport != Transport.EMAIL:
        raise ValidationError({"fallback": ["the fallback is a last-resort e-mail destination"]})
    with transaction.atomic():
        if Destination.objects.filter(name=name).exists():
            raise ValidationError({"name": [f"a destination named {name!r} already exists"]})
        if isinstance(authority, str):
            authority = authority_get_or_create(actor=actor, name=authority)
        destination = Destination(
            name=name, authority=authority, transport=transport, address=address, username=username,
            max_disclosure=max_disclosure, tlp=tlp, accepts_child_safety=accepts_child_safety, fallback=fallback,
        )
        destination.set_secret(secret)
        destination.new_pseudonym_key()
        destination.save()
        audit_record(
            actor=actor, action="destination_created", obj=destination,
            changes={"name": name, "authority": authority.name, "transport": transport, "address": address,
                     "secret": mask(secret), "max_disclosure": max_disclosure, "tlp": tlp,
                     "accepts_child_safety": accepts_child_safety, "fallback": fallback.name if fallback else None},
        )
    return destination
