"""Creating and renaming authorities. The slug and public id never change once made."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from incidents.actors import Actor
from incidents.services.audit import audit_record
from reporting.portal.models import Authority

NAME_MAX = Authority._meta.get_field("name").max_length


def _clean_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError({"authority": ["must not be empty"]})
    if len(name) > NAME_MAX:
        raise ValidationError({"authority": [f"at most {NAME_MAX} characters"]})
    if "\x00" in name:
        raise ValidationError({"authority": ["must not contain NUL characters"]})
    return name


def _free_slug(name: str) -> str:
    base = (slugify(name) or "authority")[:70]
    slug, n = base, 2
    while Authority.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def authority_create(*, actor: Actor, name: str) -> Authority:
    name = _clean_name(name)
    with transaction.atomic():
        if Authority.objects.filter(name=name).exists():
            raise ValidationError({"authority": [f"an authority named {name!r} already exists"]})
        authority = Authority.objects.create(name=name, slug=_free_slug(name))
        audit_record(actor=actor, action="authority_created", obj=authority,
                     changes={"name": name, "slug": authority.slug})
    return authority


def authority_get_or_create(*, actor: Actor, name: str) -> Authority:
    """The authority called exactly ``name``, made (and audited) if there is none yet."""
    name = _clean_name(name)
    existing = Authority.objects.filter(name=name).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            return authority_create(actor=actor, name=name)
    except (IntegrityError, ValidationError):
        # Another request created it between our read and our insert.
        existing = Authority.objects.filter(name=name).first()
        if existing is None:
            raise
        return existing


def authority_rename(*, actor: Actor, authority: Authority, name: str, reason: str = "") -> Authority:
    name = _clean_name(name)
    with transaction.atomic():
        row = Authority.objects.select_for_update().get(pk=authority.pk)
        if row.name == name:
            return row
        if Authority.objects.filter(name=name).exclude(pk=row.pk).exists():
            raise ValidationError({"authority": [f"an authority named {name!r} already exists"]})
        old, row.name = row.name, name
        row.save(update_fields=["name"])
        audit_record(actor=actor, action="authority_renamed", obj=row, changes={"name": [old, name]}, reason=reason)
    return row
