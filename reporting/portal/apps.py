from django.apps import AppConfig


class PortalConfig(AppConfig):
    """The reviewers' side: authorities, reviewer accounts, the portal pages and their access log."""

    default = True
    name = "reporting.portal"
    label = "portal"
    verbose_name = "Reviewers' portal"
