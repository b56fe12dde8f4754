"""OpenAPI descriptions that drf-spectacular cannot infer on its own."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class DetectorTokenScheme(OpenApiAuthenticationExtension):
    target_class = "incidents.api.authentication.DetectorTokenAuthentication"
    name = "detectorToken"

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A detector token from `manage.py detector_create NAME` (shown once).",
        }
