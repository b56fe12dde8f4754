"""A rule-set version that every write to rules, stages or destinations bumps, on PostgreSQL.

Read by reporting.rule_set_cache to keep the active rules in process memory and still see every
change committed by any process (admin, ``rules_load``, a shell, a test factory): the triggers catch
every writer, so no service has to remember to bump it. The number comes from a sequence, so it never
repeats, even after a rolled-back change. On SQLite (make run) nothing is cached and nothing is created.
"""
from django.db import migrations

TABLES = ("reporting_reportingrule", "reporting_rulestage", "reporting_destination")

FORWARD = [
    "CREATE SEQUENCE reporting_rule_set_version_seq",
    "CREATE TABLE reporting_rule_set_version (id smallint PRIMARY KEY CHECK (id = 1), version bigint NOT NULL)",
    "INSERT INTO reporting_rule_set_version (id, version) VALUES (1, nextval('reporting_rule_set_version_seq'))",
    """CREATE FUNCTION reporting_rule_set_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE reporting_rule_set_version SET version = nextval('reporting_rule_set_version_seq') WHERE id = 1;
    RETURN NULL;
END
$$""",
    *(
        f"CREATE TRIGGER rule_set_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION reporting_rule_set_version_bump()"
        for table in TABLES
    ),
]
BACKWARD = [
    *(f"DROP TRIGGER IF EXISTS rule_set_changed ON {table}" for table in TABLES),
    "DROP FUNCTION IF EXISTS reporting_rule_set_version_bump()",
    "DROP TABLE IF EXISTS reporting_rule_set_version",
    "DROP SEQUENCE IF EXISTS reporting_rule_set_version_seq",
]


def _run(statements: list[str]):  # noqa: ANN202
    def run(apps, schema_editor) -> None:  # noqa: ANN001
        if schema_editor.connection.vendor != "postgresql":
            return
        for statement in statements:
            schema_editor.execute(statement)

    return run


class Migration(migrations.Migration):
    dependencies = [("reporting", "0005_report_receipts")]

    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD), elidable=False)]
