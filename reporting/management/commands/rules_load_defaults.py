"""python manage.py rules_load_defaults --destination NAME: attach the default policy to a destination."""
from reporting.management.commands.rules_load import Command as LoadCommand
from reporting.services.rules import DEFAULT_RULES


class Command(LoadCommand):
    help = "Attach the default rule set (reporting/rules/default.yaml) to a destination."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--destination", required=True)

    def handle(self, *args, destination: str, **options) -> None:  # noqa: ANN002, ANN003
        super().handle(*args, file=str(DEFAULT_RULES), destination=destination, **options)
