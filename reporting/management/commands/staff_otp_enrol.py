"""python manage.py staff_otp_enrol USERNAME [--replace] [--backup-codes N]

Gives a staff user the second factor the admin login asks for: prints the otpauth:// URI (for a QR
code), the secret (to type in) and single-use backup codes. They are shown once: the audit trail
records the enrolment, never the secret.
"""
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from incidents.actors import Actor
from reporting.services.staff_otp import DEFAULT_BACKUP_CODES, staff_otp_enrol


class Command(BaseCommand):
    help = "Enrol a staff user's authenticator app (TOTP) and print backup codes (shown once)."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("username")
        parser.add_argument("--replace", action="store_true",
                            help="Replace an existing second factor (a lost phone); old codes stop working.")
        parser.add_argument("--backup-codes", type=int, default=DEFAULT_BACKUP_CODES,
                            help=f"How many single-use backup codes (0-20, default {DEFAULT_BACKUP_CODES}).")

    def handle(self, *args, username: str, replace: bool, backup_codes: int, **options) -> None:  # noqa: ANN002, ANN003
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        try:
            enrolment = staff_otp_enrol(actor=Actor.system("staff_otp_enrol command"), user=user, replace=replace,
                                        backup_codes=backup_codes)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(f"Enrolled {username!r}. Shown once; keep them somewhere only {username} can read.")
        self.stdout.write(f"  Authenticator URI: {enrolment.uri}")
        self.stdout.write(f"  Secret (base32):   {enrolment.secret_base32}")
        if enrolment.backup_codes:
            self.stdout.write("  Backup codes (each works once): " + " ".join(enrolment.backup_codes))
