"""Pages that show a secret once (a detector token, a webhook secret) and must never be cached."""
from __future__ import annotations

from django.contrib import admin
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers


def secret_once_page(
    model_admin: admin.ModelAdmin, request: HttpRequest, obj: models.Model, *, template: str, title: str, **extra
) -> HttpResponse:
    context = {**model_admin.admin_site.each_context(request), "title": title, "opts": model_admin.opts,
               "original": obj, **extra}
    request.current_app = model_admin.admin_site.name
    response = TemplateResponse(request, template, context)
    # The secret must not outlive this response in any cache (browser back button, proxies).
    add_never_cache_headers(response)
    return response
