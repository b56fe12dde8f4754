"""python manage.py reviewer_token_issue --username U [--expires-in 90d] [--label L]

Issues a read-only API token (reviewer API and TAXII) to an active reviewer and prints it once.
"""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from incidents.actors import Actor
from reporting.durations import parse_duration
from reporting.portal.models import Reviewer
from reporting.portal.services.tokens import reviewer_token_issue


class Command(BaseCommand):
    help = "Issue a read-only API token to a reviewer; prints the token once."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--username", required=True)
        parser.add_argument("--expires-in", default="90d", help="How long the token lives: 90d, 12w, 24h (max 366d)")
        parser.add_argument("--label", default="", help="What the token is for, e.g. the authority's TAXII client")

    def handle(self, *args, **o) -> None:  # noqa: ANN002, ANN003
        try:
            lifetime = parse_duration(o["expires_in"])
        except ValueError as exc:
            raise CommandError(f"--expires-in: {exc}") from None
        if lifetime.total_seconds() <= 0:
            raise CommandError("--expires-in must be more than zero")
        reviewer = (Reviewer.objects.select_related("user", "authority")
                    .filter(user__username=o["username"].strip()).first())
        if reviewer is None:
            raise CommandError(f"no reviewer with the username {o['username']!r}")
        try:
            issued = reviewer_token_issue(actor=Actor.system("reviewer_token_issue command"), reviewer=reviewer,
                                          expires_at=timezone.now() + lifetime, label=o["label"])
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        token = issued.token
        self.stdout.write(f"Issued token {token.prefix}… to {reviewer.user.get_username()!r} of "
                          f"{reviewer.authority.name}, read-only, expires {token.expires_at:%Y-%m-%dT%H:%M:%SZ}.")
        self.stdout.write("Token (shown once; give it to the reviewer over a secure channel):")
        self.stdout.write(issued.secret)
