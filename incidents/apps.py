from django.apps import AppConfig


class IncidentsConfig(AppConfig):
    name = "incidents"
    verbose_name = "Incidents"

    def ready(self) -> None:
        from incidents.api import schema  # noqa: F401  (registers the OpenAPI auth extension)
        from incidents.models.fast_insert import psycopg_cache_wide_statements

        psycopg_cache_wide_statements()
