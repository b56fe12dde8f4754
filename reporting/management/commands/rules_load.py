"""python manage.py rules_load FILE [--destination NAME]: upsert rules from a YAML or JSON file."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from incidents.actors import Actor
from reporting.models import Destination
from reporting.services.rules import read_rules_file, rules_load


class Command(BaseCommand):
    help = "Load reporting rules from a file (docs/reporting-rules.md); the whole file or nothing."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("file")
        parser.add_argument("--destination", help="Attach every rule to this destination (else each rule names one)")
        parser.add_argument("--reason", default="", help="Why the rules change (kept in the audit trail)")

    def handle(self, *args, file: str, destination: str | None, reason: str, **options) -> None:  # noqa: ANN002, ANN003
        target = None
        if destination:
            target = Destination.objects.filter(name=destination).first()
            if target is None:
                raise CommandError(f"no destination named {destination!r}")
        try:
            rules = rules_load(data=read_rules_file(file), actor=Actor.system("rules_load command"),
                               destination=target, reason=reason)
        except ValidationError as exc:
            raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from None
        for rule in rules:
            self.stdout.write(f"loaded {rule.name} → {rule.destination.name} ({rule.stages.count()} stages)")
        self.stdout.write(f"{len(rules)} rules loaded.")
