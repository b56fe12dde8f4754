"""python manage.py signing_key_rotate: retire the current document-signing key and start a new one.

The retired key stays published at /.well-known/mir-signing-keys.json, so every report it signed
stays verifiable. Prints the new key id (and only that, for scripts).
"""
from django.core.management.base import BaseCommand

from incidents.actors import Actor
from reporting.signing import signing_key_rotate


class Command(BaseCommand):
    help = "Retire the current Ed25519 document-signing key and create a new one; prints the new key id."

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        key = signing_key_rotate(actor=Actor.system("manage.py signing_key_rotate"))
        self.stdout.write(key.key_id)
