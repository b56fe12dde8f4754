"""Second factor for staff: enrolling a TOTP device (and backup codes) for a staff user.

The admin refuses staff without a verified device (reporting/admin_site.py), so enrolment is the one
way in. Secrets are returned to the caller to show once and are never written to the audit trail.
"""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice, default_key

from incidents.actors import Actor
from incidents.services.audit import audit_record

TOTP_DEVICE_NAME = "authenticator app"
BACKUP_DEVICE_NAME = "backup codes"
DEFAULT_BACKUP_CODES = 10


@dataclass(frozen=True)
class StaffOtpEnrolment:
    device: TOTPDevice
    secret_base32: str  # what a person types into an app that cannot scan the URI
    uri: str  # otpauth://totp/... for a QR code or an app that accepts links
    backup_codes: list[str]


def _key_from_base32(secret_base32: str) -> str:
    """The hex key django-otp stores, from the base32 form people and files carry; ValidationError if malformed."""
    cleaned = secret_base32.strip().replace(" ", "").upper()
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raise ValidationError({"secret": "not a base32 TOTP secret"}) from None
    if len(raw) < 16:
        raise ValidationError({"secret": "a TOTP secret needs at least 128 bits"})
    return raw.hex()


def staff_otp_enrol(
    *,
    actor: Actor,
    user: AbstractBaseUser,
    replace: bool = False,
    secret_base32: str | None = None,
    backup_codes: int = DEFAULT_BACKUP_CODES,
) -> StaffOtpEnrolment:
    """Give ``user`` a confirmed TOTP device and ``backup_codes`` single-use codes.

    A user who already has devices keeps them unless ``replace`` (a lost phone): then every earlier
    device goes, so a stolen phone or old backup sheet stops working in the same commit.
    ``secret_base32`` lets the development stack keep one secret across database resets.
    """
    if not user.is_active or not user.is_staff:
        raise ValidationError({"user": f"{user.get_username()!r} is not an active staff user"})
    if not 0 <= backup_codes <= 20:
        raise ValidationError({"backup_codes": "between 0 and 20 backup codes"})
    key = _key_from_base32(secret_base32) if secret_base32 else default_key()
    with transaction.atomic():
        # Lock the user row: two enrolments at once would otherwise both see "no device" and both add one.
        type(user).objects.select_for_update().get(pk=user.pk)
        existing_totp = TOTPDevice.objects.filter(user=user)
        existing_static = StaticDevice.objects.filter(user=user)
        removed = existing_totp.count() + existing_static.count()
        if removed and not replace:
            raise ValidationError(
                {"user": f"{user.get_username()!r} already has a second factor; replace it only if it is lost"}
            )
        existing_totp.delete()
        existing_static.delete()
        device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, key=key, confirmed=True)
        codes: list[str] = []
        if backup_codes:
            static = StaticDevice.objects.create(user=user, name=BACKUP_DEVICE_NAME, confirmed=True)
            codes = [StaticToken.random_token() for _ in range(backup_codes)]
            StaticToken.objects.bulk_create([StaticToken(device=static, token=code) for code in codes])
        audit_record(
            actor=actor, action="staff_otp.enrolled", obj=device,
            changes={"user": user.get_username(), "backup_codes": len(codes), "devices_replaced": removed},
        )
    return StaffOtpEnrolment(
        device=device, secret_base32=base64.b32encode(device.bin_key).decode("ascii").rstrip("="),
        uri=device.config_url, backup_codes=codes,
    )
