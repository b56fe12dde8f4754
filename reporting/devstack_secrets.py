"""Secrets the development stack (`manage.py devstack`) keeps under var/, so they survive a reset of
the database: the admin's password, its authenticator secret, the sandbox webhook secret."""
from __future__ import annotations

import base64
import os
from pathlib import Path

from django.contrib.auth.models import AbstractBaseUser
from django_otp.plugins.otp_totp.models import TOTPDevice

from incidents.actors import Actor
from reporting.services.staff_otp import staff_otp_enrol

OTP_SECRET_FILE = "dev-admin-otp-secret"


def read_secret(path: Path) -> str:
    os.chmod(path, 0o600)
    return path.read_text(encoding="utf-8").strip()


def write_secret(path: Path, value: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def ensure_admin_otp(var_dir: Path, user: AbstractBaseUser) -> tuple[str, bool]:
    """The dev admin's authenticator secret (base32) and whether its device was (re)made now.

    The device follows the file: a new database gets a device with the kept secret, so an
    authenticator app set up on an earlier run keeps working.
    """
    path = var_dir / OTP_SECRET_FILE
    if path.exists():
        secret = read_secret(path)
    else:
        enrolment = staff_otp_enrol(actor=Actor.system("devstack command"), user=user, replace=True, backup_codes=0)
        return write_secret(path, enrolment.secret_base32), True
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    if device is not None and base64.b32encode(device.bin_key).decode("ascii").rstrip("=") == secret:
        return secret, False
    staff_otp_enrol(actor=Actor.system("devstack command"), user=user, replace=True, secret_base32=secret,
                    backup_codes=0)
    return secret, True
