from django.db import migrations, models
from django.db.models import F


def keys_from_names(apps, schema_editor) -> None:
    # Existing stages and reports keep their current name as their identity.
    apps.get_model("reporting", "RuleStage").objects.update(key=F("name"))
    apps.get_model("reporting", "Report").objects.update(stage_key=F("stage_name"))


class Migration(migrations.Migration):
    dependencies = [("reporting", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="rulestage", name="key",
            field=models.SlugField(default="", max_length=50,
                                   help_text="Stable identity of the stage (defaults to its first name)"),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="report", name="stage_key", field=models.CharField(default="", max_length=50),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="report", name="unowed_since",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name="report", name="unowed_note", field=models.TextField(blank=True, editable=False),
        ),
        migrations.RunPython(keys_from_names, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="report", name="report_unique_stage_sequence"),
        migrations.AddConstraint(
            model_name="report",
            constraint=models.UniqueConstraint(fields=("incident", "rule", "stage_key", "sequence"),
                                               name="report_unique_stage_sequence"),
        ),
        migrations.AddConstraint(
            model_name="rulestage",
            constraint=models.UniqueConstraint(fields=("rule", "key"), name="stage_unique_key_per_rule"),
        ),
    ]
