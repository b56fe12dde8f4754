"""The staff admin of the intake app. Importing the modules registers their ModelAdmins.

Every write from here goes through incidents.services (see incident.py for how the admin's save
hooks map onto them); reads of lists use list_select_related so a page costs a fixed few queries.
"""
from incidents.admin import audit, detectors, evidence, incident  # noqa: F401
