"""python manage.py rules_export [--destination NAME] [--format yaml|json]: the rules as a loadable file."""
import json

import yaml
from django.core.management.base import BaseCommand, CommandError

from reporting.models import Destination
from reporting.services.rules import rules_export


class Command(BaseCommand):
    help = "Print the reporting rules in the file format rules_load reads."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--destination")
        parser.add_argument("--format", choices=["yaml", "json"], default="yaml")

    def handle(self, *args, destination: str | None, format: str, **options) -> None:  # noqa: A002, ANN002, ANN003
        target = None
        if destination:
            target = Destination.objects.filter(name=destination).first()
            if target is None:
                raise CommandError(f"no destination named {destination!r}")
        data = rules_export(destination=target)
        if format == "json":
            self.stdout.write(json.dumps(data, indent=2))
        else:
            self.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
