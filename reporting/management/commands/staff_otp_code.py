"""python manage.py staff_otp_code [USERNAME]   (development only)

Prints the current code of a user's authenticator device, so `make run` can be tried without a
phone. Refused outside MIR_ENV=development: anywhere else it would make the second factor a
property of shell access to the server instead of something the person holds.
"""
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice


class Command(BaseCommand):
    help = "Development only: print the current authenticator code of a staff user (default: admin)."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("username", nargs="?", default="admin")

    def handle(self, *args, username: str, **options) -> None:  # noqa: ANN002, ANN003
        if settings.MIR_ENV != "development":
            raise CommandError(f"staff_otp_code only works with MIR_ENV=development (this is {settings.MIR_ENV}); "
                               "use your authenticator app")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
        if device is None:
            raise CommandError(f"{username!r} has no authenticator device; run `manage.py staff_otp_enrol {username}`")
        totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
        totp.time = time.time()
        left = device.step - int(totp.time - device.t0) % device.step
        self.stdout.write(f"{totp.token():0{device.digits}d}")
        self.stderr.write(f"valid for about {left} s more, once (a used code is refused)")
