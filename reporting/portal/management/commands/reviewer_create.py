"""python manage.py reviewer_create --username U --authority NAME --email E [--password-file PATH]

Creates a reviewer of an existing authority (a non-staff account with a TOTP device) and prints the
otpauth:// URI and the secret once. The password comes from a file or an interactive prompt, never
from the command line, where it would land in shell history and process listings.
"""
from __future__ import annotations

import getpass
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from incidents.actors import Actor
from reporting.portal.models import Authority
from reporting.portal.services.reviewers import reviewer_create


class Command(BaseCommand):
    help = "Create a reviewer of an authority; prints their TOTP secret once."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--username", required=True)
        parser.add_argument("--authority", required=True, help="The authority's exact name or slug")
        parser.add_argument("--email", required=True)
        parser.add_argument("--password-file", help="Read the password from the first line of this file")

    def _password(self, path: str | None) -> str:
        if path:
            try:
                lines = Path(path).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read the password file: {exc}") from None
            if not lines or not lines[0]:
                raise CommandError("the password file is empty")
            return lines[0]
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Password again: "):
            raise CommandError("the two passwords differ")
        return first

    def handle(self, *args, **o) -> None:  # noqa: ANN002, ANN003
        name = o["authority"].strip()
        authority = Authority.objects.filter(name=name).first() or Authority.objects.filter(slug=name).first()
        if authority is None:
            raise CommandError(f"no authority named {name!r} (create its destination first, or add it in the admin)")
        password = self._password(o["password_file"])
        try:
            issued = reviewer_create(actor=Actor.system("reviewer_create command"), username=o["username"],
                                     email=o["email"], authority=authority, password=password)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(f"Created reviewer {issued.reviewer.user.get_username()!r} of {authority.name} "
                          f"({issued.reviewer.public_id}).")
        self.stdout.write("Authenticator secret (shown once; give it to the reviewer over a secure channel):")
        self.stdout.write(f"otpauth URI: {issued.otpauth_uri}")
        self.stdout.write(f"secret: {issued.secret_base32}")
