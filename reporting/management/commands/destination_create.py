"""python manage.py destination_create NAME --authority A --transport webhook --address URL [...]

The secret (webhook whsec_... or TAXII password) is read from an environment variable
(--secret-env) or standard input (--secret-stdin), never from the command line, where it would
land in shell history and process listings. --generate-secret makes a new whsec_ secret and prints it
once, for the authority to configure on its side.
"""
import base64
import os
import secrets
import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from incidents.actors import Actor
from incidents.choices import Tlp
from reporting.choices import Disclosure, Transport
from reporting.models import Destination
from reporting.services.destinations import destination_create
from reporting.services.rules import DEFAULT_RULES, read_rules_file, rules_load


class Command(BaseCommand):
    help = "Create a destination (an authority's endpoint), optionally with the default rule set."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("name")
        parser.add_argument("--authority", required=True,
                            help="The authority's name; made if no authority has this exact name yet")
        parser.add_argument("--transport", required=True, choices=Transport.values)
        parser.add_argument("--address", required=True, help="https URL, TAXII collection URL, or e-mail address")
        parser.add_argument("--username", default="", help="TAXII basic-auth user")
        secret = parser.add_mutually_exclusive_group()
        secret.add_argument("--secret-env", help="Name of an environment variable holding the secret")
        secret.add_argument("--secret-stdin", action="store_true", help="Read the secret from standard input")
        secret.add_argument("--generate-secret", action="store_true", help="Make a whsec_ secret and print it once")
        parser.add_argument("--max-disclosure", default=Disclosure.DIGESTS, choices=Disclosure.values)
        parser.add_argument("--tlp", default=Tlp.AMBER_STRICT, choices=Tlp.values)
        parser.add_argument("--child-safety", action="store_true", help="A child-protection destination (NCMEC)")
        parser.add_argument("--fallback", default=None, help="Name of an e-mail destination to fall back to")
        parser.add_argument("--rules", choices=["default", "none"], default="none",
                            help="Attach the default rule set (reporting/rules/default.yaml)")

    def handle(self, *args, **o) -> None:  # noqa: ANN002, ANN003
        secret = ""
        if o["secret_env"]:
            secret = os.environ.get(o["secret_env"], "")
            if not secret:
                raise CommandError(f"environment variable {o['secret_env']} is empty or not set")
        elif o["secret_stdin"]:
            secret = sys.stdin.readline().strip()
        elif o["generate_secret"]:
            secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        fallback = None
        if o["fallback"]:
            fallback = Destination.objects.filter(name=o["fallback"]).first()
            if fallback is None:
                raise CommandError(f"no destination named {o['fallback']!r}")
        actor = Actor.system("destination_create command")
        try:
            destination = destination_create(
                actor=actor, name=o["name"], authority=o["authority"], transport=o["transport"],
                address=o["address"], secret=secret, username=o["username"], max_disclosure=o["max_disclosure"],
                tlp=o["tlp"], accepts_child_safety=o["child_safety"], fallback=fallback,
            )
            if o["rules"] == "default":
                rules = rules_load(data=read_rules_file(DEFAULT_RULES), actor=actor, destination=destination)
                self.stdout.write(f"Attached {len(rules)} default rules.")
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        self.stdout.write(f"Created destination {destination.name!r} ({destination.public_id}) for "
                          f"{destination.authority.name} via {destination.transport} at {destination.address}.")
        if o["generate_secret"]:
            self.stdout.write("Webhook secret (shown once; give it to the receiver):")
            self.stdout.write(secret)
