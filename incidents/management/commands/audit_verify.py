"""Recompute the audit hash chain from genesis; exit 1 naming the first bad event (docs/operations.md).

    python manage.py audit_verify [--checkpoint SEQ:HASH ...] [--max-unsealed-age SECONDS]
"""
from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from incidents.audit_verification import audit_chain_verify

_CHECKPOINT = re.compile(r"^([1-9][0-9]{0,18}):([0-9a-fA-F]{64})$")
# Exit codes: 0 the chain holds, 1 it does not (or unsealed events are too old), 2 the command was misused.
EXIT_BROKEN = 1
EXIT_USAGE = 2


def checkpoint(value: str) -> tuple[int, str]:
    match = _CHECKPOINT.match(value.strip())
    if not match:
        raise CommandError(
            f"--checkpoint {value!r}: expected SEQ:HASH, SEQ a positive integer and HASH 64 hex characters "
            "(as a report's audit_chain_head or /.well-known/mir-audit-head.json gives them)",
            returncode=EXIT_USAGE,
        )
    return int(match.group(1)), match.group(2).lower()


class Command(BaseCommand):
    help = "Verify the tamper-evident audit chain from its first event; non-zero exit names the first bad event."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--checkpoint", action="append", default=[], metavar="SEQ:HASH",
                            help="a chain head an authority holds (from a report); repeatable")
        parser.add_argument("--max-unsealed-age", type=int, default=None, metavar="SECONDS",
                            help="fail if an event has waited longer than this to be sealed "
                                 "(default MIR_AUDIT_UNSEALED_MAX_AGE_SECONDS)")

    def handle(self, *args, **options) -> None:  # noqa: ANN002, ANN003
        checkpoints = [checkpoint(value) for value in options["checkpoint"]]
        max_age = options["max_unsealed_age"]
        if max_age is None:
            max_age = settings.MIR_AUDIT_UNSEALED_MAX_AGE_SECONDS
        if max_age < 1:
            raise CommandError("--max-unsealed-age must be at least 1 second", returncode=EXIT_USAGE)
        now = timezone.now()
        report = audit_chain_verify(checkpoints=checkpoints, unsealed_max_age=timedelta(seconds=max_age), now=now)

        if report.head_seq is None:
            self.stdout.write("chain: nothing sealed yet")
        else:
            sealed_at = report.head_sealed_at.isoformat() if report.head_sealed_at else "-"
            self.stdout.write(f"chain: {report.sealed} sealed event(s) verified; head {report.head_seq}:"
                              f"{report.head_hash} sealed at {sealed_at}")
        if report.unsealed:
            age = int((now - report.oldest_unsealed_at).total_seconds())
            self.stdout.write(f"unsealed: {report.unsealed} event(s), the oldest {age} s old (limit {max_age} s)")
        else:
            self.stdout.write("unsealed: none")
        for seq, digest in report.checkpoints_found:
            self.stdout.write(f"checkpoint {seq}:{digest} found in the chain")
        if not report.ok:
            for problem in report.problems:
                self.stderr.write(f"FAIL {problem}")
            raise CommandError(f"audit chain verification failed: {report.problems[0]}", returncode=EXIT_BROKEN)
        self.stdout.write(self.style.SUCCESS("OK: the audit chain is intact"))
