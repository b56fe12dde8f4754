"""The staff login form: username, password and a second-factor code in one submit.

django-otp's admin form makes people pick a device first (so a wrong guess is not counted against
every device they own). Our staff have at most two devices of different shapes, so the code picks
the device: six digits are the authenticator app, anything else is a backup code. A failed code
still counts against that one device only.
"""
from __future__ import annotations

from django import forms
from django_otp.admin import OTPAdminAuthenticationForm
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

ENROL_HINT = (
    "Your account has no second factor yet, so it cannot open the staff admin. Ask an administrator to run "
    "`python manage.py staff_otp_enrol {username}` and add the key it prints to your authenticator app."
)


class StaffLoginForm(OTPAdminAuthenticationForm):
    otp_token = forms.CharField(
        required=False, label="Authentication code", max_length=32,
        help_text="The 6-digit code from your authenticator app, or one of your backup codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "text"}),
    )

    def clean_otp(self, user) -> None:  # noqa: ANN001  (django-otp's signature)
        if user is None:
            return
        token = (self.cleaned_data.get("otp_token") or "").strip().replace(" ", "")
        self.cleaned_data["otp_token"] = token
        if not _has_device(user):
            raise forms.ValidationError(ENROL_HINT.format(username=user.get_username()), code="no_device")
        if token and not self.cleaned_data.get("otp_device"):
            device_model = TOTPDevice if token.isdigit() else StaticDevice
            device = device_model.objects.filter(user=user, confirmed=True).first()
            if device is None:  # e.g. digits from someone whose only device is a backup-code sheet
                raise forms.ValidationError(self.otp_error_messages["invalid_token"], code="invalid_token")
            self.cleaned_data["otp_device"] = device.persistent_id
        super().clean_otp(user)


def _has_device(user) -> bool:  # noqa: ANN001
    return (TOTPDevice.objects.filter(user=user, confirmed=True).exists()
            or StaticDevice.objects.filter(user=user, confirmed=True).exists())
