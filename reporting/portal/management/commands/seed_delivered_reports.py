"""python manage.py seed_delivered_reports --count N --authority NAME [--batch 5000]

Adds N delivered, signed reports (with their incidents) for an authority that already has a destination:
data for the portal benchmark and demos. It only adds rows, so it refuses to run in production.
"""
from __future__ import annotations

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from incidents.actors import Actor
from reporting.portal.services.seeding import SeedRefused, delivered_reports_seed


class Command(BaseCommand):
    help = "Seed N delivered reports for one authority (benchmarks and demos; refused in production)."

    def add_arguments(self, parser) -> None:  # noqa: ANN001
        parser.add_argument("--count", type=int, required=True, help="How many delivered reports to add")
        parser.add_argument("--authority", required=True, help="The authority's exact name")
        parser.add_argument("--batch", type=int, default=5000, help="Rows per bulk insert and transaction")
        parser.add_argument("--seed", type=int, default=0, help="Random seed for the varied content")

    def handle(self, *args, count: int, authority: str, batch: int, seed: int, **options) -> None:  # noqa: ANN002, ANN003
        if settings.PRODUCTION:
            raise CommandError("seed_delivered_reports adds fake reports: refused with MIR_ENV=production")
        started = time.monotonic()

        def progress(done: int, total: int) -> None:
            self.stderr.write(f"seeded {done}/{total} ({time.monotonic() - started:.1f} s)")

        try:
            result = delivered_reports_seed(actor=Actor.system("seed_delivered_reports"), authority_name=authority,
                                            count=count, batch=batch, progress=progress, seed=seed)
        except SeedRefused as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Added {result.created} delivered reports for {result.authority} (destination {result.destination}) "
            f"in {time.monotonic() - started:.1f} s; the authority now has {result.total_delivered} delivered reports."
        )
