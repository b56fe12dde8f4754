"""python manage.py dispatch_due_reports [--dry-run]: the sweeper, by hand (beat runs it every 30 s)."""
from django.core.management.base import BaseCommand

from reporting.models import Report
from reporting.services.sweep import reports_sweep


class Command(BaseCommand):
    help = "Enqueue every due report (earliest deadline first) and raise escalations; --dry-run only lists them."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--limit", type=int, default=None)

    def handle(self, *args, dry_run: bool, limit: int | None, **options) -> None:  # noqa: ANN002, ANN003
        result = reports_sweep(dry_run=dry_run, limit=limit)
        reports = Report.objects.filter(pk__in=result.due).select_related("incident", "destination")
        for report in sorted(reports, key=lambda r: (r.due_at is None, r.due_at)):
            due = report.due_at.isoformat() if report.due_at else "-"
            self.stdout.write(f"{report.subject} {report.stage_name}#{report.sequence} → "
                              f"{report.destination.name} due {due} attempts {report.attempt_count}")
        if dry_run:
            self.stdout.write(f"{len(result.due)} due reports (dry run: nothing enqueued).")
        else:
            self.stdout.write(f"{len(result.due)} due, {result.enqueued} enqueued, "
                              f"{result.escalations} escalations raised.")
