"""OpenAPI description of the reviewer token (drf-spectacular cannot infer a custom authentication)."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ReviewerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "reporting.portal.api.authentication.ReviewerTokenAuthentication"
    name = "reviewerToken"

    def get_security_definition(self, auto_schema):  # noqa: ANN001, ANN201
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A read-only reviewer token (`manage.py reviewer_token_issue --username U`, or the admin; "
                           "shown once). HTTP Basic with the reviewer's username and the token as the password "
                           "works too.",
        }
