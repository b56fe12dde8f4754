"""python manage.py detector_create NAME [--scope ...] [--expires-in-days N]

Creates a detector (or, with --new-token, issues another token for an existing one). The token is
the last line printed, shown once: only its SHA-256 is stored.
"""
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from incidents.actors import Actor
from incidents.choices import DetectorScope
from incidents.models import Detector
from incidents.services.detectors import detector_create, detector_token_issue


class Command(BaseCommand):
    help = "Create a detector and print its API token (shown once; the last line of output)."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("name")
        parser.add_argument("--description", default="")
        parser.add_argument(
            "--scope", action="append", choices=DetectorScope.values, dest="scopes",
            help="Repeat for several; default: all scopes (submit and read own).",
        )
        parser.add_argument("--expires-in-days", type=int, default=None, help="Default: no expiry.")
        parser.add_argument("--new-token", action="store_true", help="Issue a token for an existing detector.")
        parser.add_argument("--label", default="", help="A note on the token, e.g. where it is deployed.")

    def handle(self, *args, name: str, description: str, scopes: list[str] | None, expires_in_days: int | None,
               new_token: bool, label: str, **options) -> None:  # noqa: ANN002, ANN003
        actor = Actor.system("detector_create command")
        if expires_in_days is not None and expires_in_days <= 0:
            raise CommandError("--expires-in-days must be positive")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        try:
            if new_token:
                detector = Detector.objects.filter(name=name).first()
                if detector is None:
                    raise CommandError(f"no detector named {name!r}")
            else:
                detector = detector_create(actor=actor, name=name, description=description)
                self.stdout.write(f"Created detector {detector.name!r} ({detector.public_id}).")
            issued = detector_token_issue(
                actor=actor, detector=detector, scopes=scopes or DetectorScope.values, expires_at=expires_at,
                label=label,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        expiry = issued.token.expires_at.isoformat() if issued.token.expires_at else "never"
        self.stdout.write(f"Scopes: {', '.join(issued.token.scopes)}; expires: {expiry}.")
        self.stdout.write("Token (shown once, store it now):")
        self.stdout.write(issued.secret)
