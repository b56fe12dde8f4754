"""The data migration that turns Destination.authority strings into Authority rows."""
from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("reporting", "0003_digest_reports"), ("portal", None)]
AFTER = [("reporting", "0004_destination_authority_fk_and_sent_columns"),
         ("portal", "0001_authorities_reviewers_access_log")]


@pytest.mark.django_db(transaction=True)
def test_authority_strings_become_one_authority_each():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    try:
        old = executor.loader.project_state(BEFORE[0]).apps
        Destination = old.get_model("reporting", "Destination")
        for name, authority in (("a-hook", "CSIRT A"), ("a-mail", "CSIRT A"), ("b-hook", "CSIRT (B)")):
            Destination.objects.create(name=name, authority=authority, transport="webhook",
                                       address="https://x.example/", pseudonym_key_encrypted="k")
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(AFTER)
        new = executor.loader.project_state(AFTER).apps
        Authority = new.get_model("portal", "Authority")
        assert sorted(Authority.objects.values_list("name", "slug")) == [("CSIRT (B)", "csirt-b"), ("CSIRT A", "csirt-a")]
        Destination = new.get_model("reporting", "Destination")
        assert dict(Destination.objects.values_list("name", "authority__name")) == {
            "a-hook": "CSIRT A", "a-mail": "CSIRT A", "b-hook": "CSIRT (B)"}
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
