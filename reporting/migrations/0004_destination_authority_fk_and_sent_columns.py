"""Destination.authority becomes a foreign key to portal.Authority (one Authority per distinct former
string, matched exactly); delivered reports get the columns the reviewers' portal filters on, filled
from their frozen documents."""
import json

import django.db.models.deletion
from django.db import migrations, models
from django.utils.text import slugify


def _unique_slug(name, taken):
    base = (slugify(name) or "authority")[:70]
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def authorities_from_strings(apps, schema_editor):
    Authority = apps.get_model("portal", "Authority")
    Destination = apps.get_model("reporting", "Destination")
    taken = set(Authority.objects.values_list("slug", flat=True))
    for name in Destination.objects.values_list("authority_name", flat=True).distinct():
        authority = Authority.objects.filter(name=name).first()
        if authority is None:
            authority = Authority.objects.create(name=name, slug=_unique_slug(name, taken))
        Destination.objects.filter(authority_name=name).update(authority=authority)


def strings_from_authorities(apps, schema_editor):
    Destination = apps.get_model("reporting", "Destination")
    for destination in Destination.objects.select_related("authority"):
        destination.authority_name = destination.authority.name
        destination.save(update_fields=["authority_name"])


def sent_columns_from_payloads(apps, schema_editor):
    Report = apps.get_model("reporting", "Report")
    for report in Report.objects.exclude(payload="").only("id", "payload").iterator(chunk_size=500):
        try:
            document = json.loads(report.payload)["document"]
        except (ValueError, KeyError, TypeError):
            continue
        identity, classification = document.get("identity") or {}, document.get("classification") or {}
        Report.objects.filter(pk=report.pk).update(
            sent_reference=str(identity.get("incident_reference") or "")[:40],
            sent_title=str(identity.get("title") or "")[:300],
            sent_category=str(classification.get("category") or "")[:32],
            sent_severity=str(classification.get("severity") or "")[:16],
        )


class Migration(migrations.Migration):

    dependencies = [
        ("incidents", "0001_initial"),
        ("portal", "0001_authorities_reviewers_access_log"),
        ("reporting", "0003_digest_reports"),
    ]

    operations = [
        migrations.RenameField(model_name="destination", old_name="authority", new_name="authority_name"),
        migrations.AddField(
            model_name="destination",
            name="authority",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="destinations",
                to="portal.authority",
            ),
        ),
        migrations.RunPython(authorities_from_strings, strings_from_authorities),
        migrations.RemoveField(model_name="destination", name="authority_name"),
        migrations.AlterField(
            model_name="destination",
            name="authority",
            field=models.ForeignKey(
                help_text="The authority this endpoint belongs to; its reviewers see what was delivered here",
                on_delete=django.db.models.deletion.PROTECT, related_name="destinations", to="portal.authority",
            ),
        ),
        migrations.AddField(
            model_name="report", name="sent_category",
            field=models.CharField(blank=True, editable=False, max_length=32),
        ),
        migrations.AddField(
            model_name="report", name="sent_reference",
            field=models.CharField(blank=True, editable=False, max_length=40),
        ),
        migrations.AddField(
            model_name="report", name="sent_severity",
            field=models.CharField(blank=True, editable=False, max_length=16),
        ),
        migrations.AddField(
            model_name="report", name="sent_title",
            field=models.CharField(blank=True, editable=False, max_length=300),
        ),
        migrations.RunPython(sent_columns_from_payloads, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="report",
            index=models.Index(
                condition=models.Q(("status", "delivered")), fields=["destination", "-delivered_at", "-id"],
                name="report_delivered_by_dest",
            ),
        ),
        migrations.AddIndex(
            model_name="report",
            index=models.Index(
                condition=models.Q(("status", "delivered")), fields=["-delivered_at", "-id"],
                name="report_delivered_newest",
            ),
        ),
    ]
