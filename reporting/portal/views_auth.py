"""Sign-in (password, then code), sign-out, and the guard every portal page sits behind."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlencode

from django.contrib.auth import login, logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login

from reporting.portal.forms import LoginForm, TotpForm
from reporting.portal.selectors import reviewer_for_user
from reporting.portal.services.reviewers import reviewer_logged_out, reviewer_login_succeeded
from reporting.portal.signin import (
    CODE_REFUSAL,
    GENERIC_REFUSAL,
    client_ip,
    code_step,
    password_step,
    pending_clear,
    pending_reviewer,
    pending_set,
)

NEXT_KEY = "portal_next"


def reviewer_required(view: Callable) -> Callable:
    """Only a signed-in, second-factor-verified, active reviewer passes; everyone else goes to sign-in.

    A staff session is treated like no session: staff are not reviewers.
    """
    @wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:  # noqa: ANN002, ANN003
        reviewer = None
        if request.user.is_authenticated and request.user.is_verified():
            reviewer = reviewer_for_user(request.user)
        if reviewer is None:
            return HttpResponseRedirect(f"{reverse('portal:login')}?{urlencode({'next': request.get_full_path()})}")
        request.reviewer = reviewer
        return view(request, *args, **kwargs)

    return never_cache(wrapped)


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and candidate.startswith("/portal/") and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("portal:report-list")


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = LoginForm(request.POST)
        if form.is_valid():
            reviewer = password_step(request, username=form.cleaned_data["username"],
                                     password=form.cleaned_data["password"])
            if reviewer is not None:
                next_url = _safe_next(request, request.POST.get("next"))
                pending_set(request, reviewer)
                request.session[NEXT_KEY] = next_url
                return redirect("portal:login-code")
        form = LoginForm(initial={"username": request.POST.get("username", "")[:150]})
        return render(request, "portal/login.html", {"form": form, "refusal": GENERIC_REFUSAL,
                                                      "next": request.POST.get("next", "")}, status=400)
    return render(request, "portal/login.html", {"form": LoginForm(), "next": request.GET.get("next", "")})


@sensitive_post_parameters("token")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def login_code_view(request: HttpRequest) -> HttpResponse:
    reviewer = pending_reviewer(request)
    if reviewer is None:
        pending_clear(request)
        return redirect("portal:login")
    if request.method == "POST":
        form = TotpForm(request.POST)
        if not form.is_valid():
            # Not a code at all: nothing was guessed, so nothing is counted.
            return render(request, "portal/login_code.html", {"form": form}, status=400)
        device = code_step(request, reviewer=reviewer, token=form.cleaned_data["token"])
        if device is not None:
            next_url = request.session.pop(NEXT_KEY, None) or reverse("portal:report-list")
            pending_clear(request)
            login(request, reviewer.user, backend="django.contrib.auth.backends.ModelBackend")
            otp_login(request, device)
            reviewer_login_succeeded(reviewer=reviewer, ip=client_ip(request))
            return HttpResponseRedirect(_safe_next(request, next_url))
        if pending_reviewer(request) is None:
            # That failure locked the account: start again from the password (which will be refused).
            pending_clear(request)
            return render(request, "portal/login.html", {"form": LoginForm(), "refusal": GENERIC_REFUSAL},
                          status=400)
        return render(request, "portal/login_code.html", {"form": TotpForm(), "refusal": CODE_REFUSAL}, status=400)
    return render(request, "portal/login_code.html", {"form": TotpForm()})


@csrf_protect
@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    reviewer = reviewer_for_user(request.user)
    if reviewer is not None:
        reviewer_logged_out(reviewer=reviewer, ip=client_ip(request))
    logout(request)
    return redirect("portal:login")
