"""The staff admin of the outbound side. Importing the modules registers their ModelAdmins.

Reports (the clock board) are read-only and change only through reporting.services.reports;
destinations, rules and escalations change through their services (admin_changes.py, destinations.py).
"""
from reporting.admin import destinations, escalations, reports, rules  # noqa: F401
