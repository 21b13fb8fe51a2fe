from __future__ import annotations

from django import forms

from notifications.models import NotificationPreference


class NotificationPreferenceForm(forms.ModelForm):
    email = forms.EmailField(
        required=False, label="E-mail address", help_text="Leave empty to get no e-mails."
    )

    class Meta:
        model = NotificationPreference
        fields = ("email_candidates_ready", "email_identified", "email_seen_again")
